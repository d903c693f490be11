"""Seeded subsets of the shipped sql-create-context sample for the scorer tests."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parent.parent
_CANDIDATES = [
    *sorted((_REPO / "sqlmaster" / "data" / "shipped").glob("*.jsonl*")),
    Path("/work/shared/data/sql-create-context/sample-15716.jsonl"),
]


def sample_path() -> Path:
    for path in _CANDIDATES:
        if path.is_file():
            return path
    pytest.skip("no sql-create-context sample found (expected sqlmaster/data/shipped/*.jsonl[.gz])")


def load_sample() -> list[dict[str, str]]:
    path = sample_path()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def seeded_subset(n: int, seed: int = 1399) -> list[dict[str, str]]:
    rows = load_sample()
    random.Random(seed).shuffle(rows)
    return rows[:n]
