"""Spider 1.0 dev, shipped with 19 of its 20 real SQLite databases (``wta_1`` is missing upstream).

sql-create-context contains Spider dev questions, so Spider dev is a fair held-out set only after the training
data drops them (``data.exclude_spider_dev``); ``dev_questions()`` is the list that filter uses.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class SpiderExample:
    question: str
    db_id: str
    query: str


def spider_dir() -> Path:
    return Path(str(resources.files("sqlmaster.data").joinpath("shipped", "spider")))


def database_path(db_id: str) -> Path:
    return spider_dir() / "database" / f"{db_id}.sqlite"


@cache
def _dev_rows() -> tuple[SpiderExample, ...]:
    with gzip.open(spider_dir() / "dev.json.gz", "rt", encoding="utf-8") as fh:
        rows = json.load(fh)
    return tuple(SpiderExample(r["question"], r["db_id"], r["query"]) for r in rows)


def dev_questions() -> set[str]:
    """Every Spider dev question (all 1,034, including the 62 whose database is missing)."""
    return {ex.question for ex in _dev_rows()}


def dev_examples(executable_only: bool = True) -> list[SpiderExample]:
    """Spider dev examples, by default only those whose database ships (972 of 1,034)."""
    rows = list(_dev_rows())
    if executable_only:
        rows = [ex for ex in rows if database_path(ex.db_id).exists()]
    return rows


@cache
def schema_context(db_id: str) -> str:
    """The database's CREATE TABLE statements, as sql-create-context gives them in its ``context`` field."""
    uri = f"file:{database_path(db_id)}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        statements = [
            row[0]
            for row in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
    return "; ".join(" ".join(s.split()) for s in statements)
