"""Two `--set`s, each in its own tool's syntax, and `--recipe-set` to bridge them.

- `sqlctl submit --set` is Helm's `--set` on the chart's values, passed to helm as given:
  `--set runs[0].recipe.training.max_steps=5`, `--set job.backoffLimit=5`, `--set runs[0].gpus=2`.
- `sqlmaster train --set` is the recipe's `section.key=value` (YAML values): `--set training.max_steps=5`.
They stay different because they address different things: a values file holds several runs, each with its
own recipe, next to chart settings; a recipe is one run's. Typing sqlmaster's form into sqlctl would reach
helm as an unknown top-level value, so a sqlctl `--set` whose first key is a recipe section is refused here
with both ways to say it. `sqlctl submit --recipe-set section.key=value` takes sqlmaster's syntax (parsed by
sqlmaster's own parser) and applies it to the recipe of every runs[] entry, after every `--set`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from typing import Any

from sqlctl.errors import SqlctlError

# A number as YAML 1.2 and JSON read it: `3e-4` is a float there, though YAML 1.1 (PyYAML) keeps it a string.
# sqlmaster coerces such strings itself; the chart's schema checks types, so helm must see the number.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def recipe_sections() -> list[str]:
    """The recipe's sections, read from sqlmaster's recipe dataclass (torch-free)."""
    from sqlmaster.config import Recipe

    return [f.name for f in fields(Recipe)]


def _first_key(assignment: str) -> str:
    return re.split(r"[.\[]", assignment.partition("=")[0].strip(), maxsplit=1)[0]


def set_assignments(text: str) -> list[str]:
    """`a=1,b={x,y},c=d\\,e` -> ["a=1", "b={x,y}", "c=d\\,e"]: helm's commas (outside {lists}, unescaped)."""
    parts, start, depth, escaped = [], 0, 0, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "{}":
            depth += 1 if char == "{" else -1
        elif char == "," and depth <= 0:
            parts.append(text[start:index])
            start = index + 1
    return [*parts, text[start:]]


def check_chart_sets(sets: list[str]) -> None:
    """Refuse a Helm `--set` written in sqlmaster's recipe syntax (`training.max_steps=5`)."""
    sections = set(recipe_sections())
    for assignment in sets:
        for part in set_assignments(assignment):
            if "=" in part and _first_key(part) in sections:
                key, _, value = part.partition("=")
                raise SqlctlError(
                    f"--set {part} names a recipe key, but sqlctl's --set sets chart values (Helm syntax)",
                    f"Use --recipe-set {key.strip()}={value} (every run) or "
                    f"--set runs[0].recipe.{key.strip()}={value} (one run).",
                )


def _typed(value: Any, item: str) -> Any:
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise SqlctlError(f"--recipe-set {item}: the value is not a finite number", "Give a finite number.")
    return value


def parse_recipe_set(item: str) -> tuple[str, Any]:
    """`training.max_steps=5` -> ("training.max_steps", 5), with sqlmaster's parser (YAML values)."""
    from sqlmaster.boundedyaml import YamlTooBig
    from sqlmaster.config import parse_override
    from sqlmaster.errors import ConfigError

    try:
        section, key, value = parse_override(item)
    except YamlTooBig as exc:  # well-formed but too big: say so, not "not section.key=value"
        what, _, fix = str(exc).rpartition(". ")
        raise SqlctlError(f"--recipe-set: {what}", fix + ".") from exc
    except ConfigError as exc:
        raise SqlctlError(f"--recipe-set {item!r} is not section.key=value", "E.g. training.max_steps=100.") from exc
    sections = recipe_sections()
    if section not in sections:
        raise SqlctlError(
            f"--recipe-set {item}: {section!r} is not a recipe section",
            f"Sections: {', '.join(sections)} (`sqlmaster recipe keys` lists every key).",
        )
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise SqlctlError(f"--recipe-set {item}: {key!r} is not a recipe key name", "E.g. training.max_steps=100.")
    return f"{section}.{key}", _typed(value, item)


def recipe_set_json(items: list[str], runs: int) -> list[str]:
    """Helm `--set-json` assignments putting each `--recipe-set` into the recipe of runs[0..runs-1]."""
    parsed = [parse_recipe_set(item) for item in items]
    return [
        f"runs[{index}].recipe.{dotted}={json.dumps(value, allow_nan=False)}"
        for dotted, value in parsed
        for index in range(runs)
    ]
