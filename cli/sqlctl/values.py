"""Helm's value layering, in Python, for `--local` runs that never call the cluster.

`sqlctl submit --local` must run the same recipe a cluster run would, so it layers values exactly as
`helm template` does: chart `values.yaml`, then `-f jobs/<task>/<model>.yaml`, then each `--values FILE`,
then each `--set`. Maps merge key by key, everything else (lists included) replaces, `null` deletes.
`--set` follows Helm's strvals rules: `a.b=c`, `list[0].k=v`, `{x,y}` lists, `\\,`/`\\.` escapes,
and only `true`/`false`/`null`/integers are typed — `1e-4` stays the string "1e-4", as in Helm.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from sqlctl.errors import SqlctlError

Values = dict[str, Any]


def load_values_file(path: Path) -> Values:
    """Read one values file; a missing or non-mapping file is a configuration error."""
    if not path.is_file():
        raise SqlctlError(f"values file {path} does not exist", "Check the path given to --values.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SqlctlError(f"values file {path} is not valid YAML", "Fix the YAML syntax.", detail=str(exc)) from exc
    if not isinstance(data, dict):
        raise SqlctlError(f"values file {path} must hold a mapping at the top level", "Fix the file.")
    return data


def merge(base: Values, override: Values) -> Values:
    """Helm coalescing: nested maps merge, other values replace, `None` removes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` unless escaped with a backslash or inside `{...}`."""
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _typed(raw: str) -> Any:
    """Helm strvals typing: booleans, null and plain integers; anything else stays a string."""
    if raw.lower() == "true":
        return True
    if raw.lower() == "false":
        return False
    if raw.lower() == "null":
        return None
    if raw == "0":
        return 0
    if raw and raw[0] != "0" and re.fullmatch(r"[-+]?\d+", raw):
        return int(raw)
    return _unescape(raw)


_SEGMENT = re.compile(r"^(?P<name>[^\[\]]*)(?P<idx>(\[\d+\])*)$")


def _path(key: str, assignment: str) -> list[str | int]:
    """`runs[0].recipe.training.max_steps` -> ["runs", 0, "recipe", "training", "max_steps"]."""
    path: list[str | int] = []
    for segment in _split_unescaped(key, "."):
        match = _SEGMENT.match(segment)
        if not match or (not match.group("name") and not path):
            raise SqlctlError(f"cannot parse --set {assignment!r}", "Use key.sub=value or list[0].key=value.")
        if match.group("name"):
            path.append(_unescape(match.group("name")))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group("idx")))
    return path


def _assign(target: Any, path: list[str | int], value: Any) -> Any:
    """Set `value` at `path` inside `target`, creating maps and growing lists as Helm does."""
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(target) if isinstance(target, list) else []
        while len(items) <= head:
            items.append(None)
        items[head] = value if not rest else _assign(items[head], rest, value)
        return items
    mapping = dict(target) if isinstance(target, dict) else {}
    if not rest:
        if value is None:
            mapping.pop(head, None)
        else:
            mapping[head] = value
    else:
        mapping[head] = _assign(copy.deepcopy(mapping.get(head)), rest, value)
    return mapping


def apply_set(values: Values, assignment: str) -> Values:
    """Apply one `--set` argument (which may hold several comma-separated assignments)."""
    out = copy.deepcopy(values)
    for part in _split_unescaped(assignment, ","):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        if not sep or not key:
            raise SqlctlError(f"cannot parse --set {assignment!r}", "Use --set key=value.")
        value: Any
        if raw.startswith("{") and raw.endswith("}"):
            value = [_typed(v) for v in _split_unescaped(raw[1:-1], ",") if v != ""]
        else:
            value = _typed(raw)
        out = _assign(out, _path(key, assignment), value)
    return out


def layered_values(files: list[Path], sets: list[str]) -> Values:
    """Values as Helm would see them: files in order, then `--set` assignments in order."""
    values: Values = {}
    for path in files:
        values = merge(values, load_values_file(path))
    for assignment in sets:
        values = apply_set(values, assignment)
    return values
