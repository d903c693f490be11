"""House rules a newcomer relies on: each big package's map names exactly its modules, and no product function is
longer than a screen (60 lines)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def map_modules(package: str) -> list[str]:
    """The module names in the first column of a package docstring's map table."""
    doc = importlib.import_module(package).__doc__ or ""
    return re.findall(r"^\| `(\w+)` \|", doc, re.MULTILINE)


@pytest.mark.parametrize("package", ["sqlmaster.evaluate", "sqlmaster.train", "sqlmaster.data.fromdb"])
def test_the_package_map_names_every_module_once(package: str) -> None:
    folder = REPO / package.replace(".", "/")
    files = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    named = map_modules(package)
    assert len(named) == len(set(named)), f"{package}'s map names a module twice"
    assert sorted(named) == files, f"{package}'s map and its files differ: update the table in {folder}/__init__.py"


@pytest.mark.parametrize("package", ["sqlmaster.evaluate", "sqlmaster.train", "sqlmaster.data.fromdb"])
def test_the_path_in_each_map_names_only_real_modules(package: str) -> None:
    doc = importlib.import_module(package).__doc__ or ""
    path = doc[doc.index("The path of one") :]
    own = set(map_modules(package))
    # every ``module.name`` in the path (lower case: a module, not a class) is one of the map's, or sqlmaster's
    outside = {m for m in re.findall(r"``(\w+)\.\w+", path) if m.islower() and m not in own | {"sqlmaster"}}
    assert not outside, f"{package}'s path names {sorted(outside)}, which are not its modules"


def _long_functions(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_product_function_is_longer_than_60_lines() -> None:
    long = _long_functions(REPO / "sqlmaster") + _long_functions(REPO / "cli" / "sqlctl")
    assert not long, f"split these functions: {long}"
