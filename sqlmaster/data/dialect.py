"""Training examples in another SQL dialect (``data.dialect``): each SQLite gold answer transpiled with the schema's
types (:mod:`sqlmaster.engines.transpile`), the rows that cannot be carried over left out and counted.

Only the answers the model *learns from* change (the training and validation rows' completions); the splits
themselves, their fingerprints and the held-out test rows keep SQLite's gold, which is what execution accuracy
synthesizes its databases from (``sqlmaster eval score --engine`` then checks each transpiled gold by execution).
Names are quoted only where the engine needs it (``quote="needed"``): the model learns answers as short as SQLite's
(quoting every name made PostgreSQL's answers ~30% more tokens, and a 3-minute budget fewer steps).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from sqlmaster.data.examples import Example
from sqlmaster.engines.transpile import TranspileError, column_types, transpile


def context_types(context: str) -> dict[str, dict[str, str]] | None:
    """The column kinds of a CREATE TABLE context (run on an empty in-memory SQLite), or None if it does not run."""
    from sqlmaster.evaluate.synth import read_schema

    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(context)
        return column_types(read_schema(conn))
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def to_dialect(examples: Iterable[Example], dialect: str) -> tuple[list[Example], dict[str, int]]:
    """``examples`` with their answers in ``dialect``, and how many were left out, by cause
    (``dialect_<cause>_dropped``: ``context`` when the context does not run, else a transpile cause)."""
    if dialect == "sqlite":
        return list(examples), {}
    kept: list[Example] = []
    dropped: Counter[str] = Counter()
    for ex in examples:
        types = context_types(ex.context)
        if types is None:
            dropped["context"] += 1
            continue
        try:
            kept.append(replace(ex, answer=transpile(ex.answer, dialect, types, quote="needed")))
        except TranspileError as exc:
            dropped[exc.cause] += 1
    return kept, {f"dialect_{cause}_dropped": n for cause, n in sorted(dropped.items())}
