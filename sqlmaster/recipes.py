"""Where a run's recipe comes from: a model's own ``jobs/<task>/<model>.yaml`` is its default.

    dataclass defaults  <  recipe file (--recipe, else the model's jobs/ file)  <  --set section.key=value

``sqlmaster train``, ``sqlmaster eval run``, ``sqlmaster recipe show`` and ``quickstart`` all resolve their
recipe here, so ``sqlmaster train --model tiny`` trains tiny with tiny's recipe, as ``helm install -f
jobs/train/tiny.yaml`` and ``sqlctl submit`` do. The jobs/ files are found in ``--jobs-dir`` /
``SQLMASTER_JOBS_DIR``, in the installed package (pyproject maps jobs/ to ``sqlmaster.jobs``) or in the
checkout this package runs from. Each value remembers its source (default, file, --set) for ``recipe show``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmaster.config import Recipe, parse_override, read_recipe_file, recipe_from_dict, recipe_keys

log = logging.getLogger("sqlmaster")

TASKS = ("train", "eval", "grpo")  # the jobs/ folders; grpo holds the GRPO stage's training recipes
DEFAULT = "default"
SET = "--set"


def jobs_dirs(jobs_dir: Path | None = None) -> list[Path]:
    """The folders that may hold ``<task>/<model>.yaml``, in the order they are searched."""
    if jobs_dir is not None:
        return [jobs_dir]
    if os.environ.get("SQLMASTER_JOBS_DIR"):
        return [Path(os.environ["SQLMASTER_JOBS_DIR"])]
    found: list[Path] = []
    try:
        spec = importlib.util.find_spec("sqlmaster.jobs")  # installed: jobs/ is package data
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        found += [Path(location) for location in spec.submodule_search_locations]
    checkout = Path(__file__).resolve().parent.parent / "jobs"
    if checkout not in found:
        found.append(checkout)
    return found


def find_jobs_file(task: str, model: str, jobs_dir: Path | None = None) -> Path | None:
    """``jobs/<task>/<model>.yaml`` for a registry model name, or None when the model ships none."""
    for root in jobs_dirs(jobs_dir):
        path = root / task / f"{model}.yaml"
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class ResolvedRecipe:
    """A recipe and where each of its values came from."""

    recipe: Recipe
    file: Path | None  # the recipe file read (--recipe or the model's jobs/ file), None for defaults only
    origin: str  # why that file: "--recipe", "the model's recipe", or "defaults"
    sources: dict[str, str]  # "section.key" -> "default" | the file's path | "--set"

    def describe(self) -> str:
        """One line for the log, e.g. ``recipe: jobs/train/tiny.yaml (tiny's own recipe) + 2 --set values``."""
        sets = sum(1 for source in self.sources.values() if source == SET)
        base = f"{self.file} ({self.origin})" if self.file else self.origin
        return f"recipe: {base}" + (f" + {sets} --set value{'s' * (sets != 1)}" if sets else "")


def resolve_recipe(
    task: str,
    model: str | None = None,
    recipe_file: Path | None = None,
    overrides: list[str] | None = None,
    jobs_dir: Path | None = None,
) -> ResolvedRecipe:
    """The recipe for ``task`` on ``model``: ``recipe_file`` if given, else the model's jobs/ file, else defaults."""
    file, origin = _recipe_file(task, model, recipe_file, jobs_dir)
    raw: dict[str, Any] = read_recipe_file(file) if file is not None else {}
    sources = {spec.key: DEFAULT for spec in recipe_keys()}
    for section, values in raw.items():
        for key in values if isinstance(values, dict) else ():
            sources[f"{section}.{key}"] = str(file)
    for item in overrides or []:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raw[section] = {}
        raw[section][key] = value
        sources[f"{section}.{key}"] = SET
    return ResolvedRecipe(recipe_from_dict(raw), file, origin, sources)


def _recipe_file(
    task: str, model: str | None, recipe_file: Path | None, jobs_dir: Path | None
) -> tuple[Path | None, str]:
    if recipe_file is not None:
        return recipe_file, "--recipe"
    if model is None:
        return None, "defaults"
    from sqlmaster.models.registry import MODELS, resolve_model

    spec = resolve_model(model)  # an unknown name is an error listing the registry, as in `train`
    name = spec.name if spec.name in MODELS else None  # a registry model named by its hub id is that model
    path = find_jobs_file(task, name, jobs_dir) if name else None
    if path is None:
        why = f"model {name!r} has no jobs/{task}/{name}.yaml" if name else f"{model!r} is not a registry model"
        return None, f"defaults: {why}; pass --recipe to choose one"
    return path, f"{name}'s own recipe; --recipe replaces it"
