"""SQLite: a database file queried in place, read-only and immutable, through the scorer's sandbox.

The guards are :mod:`sqlmaster.evaluate.sandbox`'s (authorizer allow-list, progress-handler time limit, size
limits, no ATTACH); this module only adapts them to the engine contract and reads the schema through a second
read-only connection (PRAGMAs, which the query policy denies).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlmaster.engines.base import (
    DEFAULT_LIMITS,
    Column,
    DatabaseUnavailable,
    Engine,
    ForeignKey,
    Limits,
    QueryError,
    Row,
    Schema,
    Session,
    Table,
)
from sqlmaster.engines.values import normalise_row
from sqlmaster.evaluate import sandbox


class SQLiteSession(Session):
    def __init__(self, engine: SQLiteEngine, path: Path, limits: Limits) -> None:
        self.engine = engine
        self.path = path
        self._conn = sandbox.connection_from_file_readonly(path, limits)
        self._meta = sqlite3.connect(sandbox.database_uri(path), uri=True, check_same_thread=False)

    def run(self, sql: str, limits: Limits = DEFAULT_LIMITS) -> list[Row]:
        return [normalise_row(r) for r in sandbox.run_query(self._conn, sql, limits)]

    def schema(self, count_rows: bool = True) -> Schema:
        names = [
            r[0]
            for r in self._meta.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        return Schema(tuple(self._table(name, count_rows) for name in names))

    def _table(self, name: str, count_rows: bool) -> Table:
        quoted = self.engine.quote_identifier(name)
        columns = tuple(
            Column(name=r[1], type=r[2] or "", not_null=bool(r[3]), primary_key=bool(r[5]))
            for r in self._meta.execute(f"PRAGMA table_info({quoted})")
        )
        keys: dict[int, list[tuple[str, str, str]]] = {}
        for r in self._meta.execute(f"PRAGMA foreign_key_list({quoted})"):
            keys.setdefault(r[0], []).append((r[3], r[2], r[4]))  # (from, table, to)
        foreign = tuple(
            ForeignKey(tuple(p[0] for p in parts), parts[0][1], tuple(p[2] or "" for p in parts))
            for parts in keys.values()
        )
        return Table(name, columns, foreign, self._count(quoted) if count_rows else None)

    def _count(self, quoted: str) -> int | None:
        try:
            return int(self.run(f"SELECT COUNT(*) FROM {quoted}")[0][0])
        except QueryError:
            return None

    def close(self) -> None:
        self._conn.close()
        self._meta.close()


class SQLiteEngine(Engine):
    name = "sqlite"
    dialect = "sqlite"
    file_suffixes = (".sqlite", ".sqlite3", ".db")
    string_quotes = ('"', "'")  # a double-quoted word that names no column is a string (sql-create-context's gold)

    def open_readonly(self, source: str, limits: Limits = DEFAULT_LIMITS) -> SQLiteSession:
        path = Path(source)
        problem = sandbox.database_file_problem(path)
        if problem is not None:
            reason, fix = problem
            raise DatabaseUnavailable(f"cannot open SQLite database {path}: {reason}. {fix}")
        return SQLiteSession(self, path, limits)
