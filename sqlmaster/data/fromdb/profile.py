"""What ``data from-db`` knows of one database: its schema and a few values per column, read within bounds.

Every read goes through the engine layer (:func:`sqlmaster.engines.open_database`), read-only, and is bounded
whatever the database's size: a column's values come from ``SELECT DISTINCT c FROM (SELECT c FROM t LIMIT
window) LIMIT k`` (a window of the table's first rows, never a full scan), each statement under a time limit, and
rows are counted only up to ``max_table_rows + 1``, and a table whose rows cannot be counted in time or exceed
``max_table_rows`` is described but not queried by the synthesizer (it is counted in ``skipped`` with its reason).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from sqlmaster.engines import Session
from sqlmaster.engines.base import Column, Limits, QueryError, Schema, Table

SAMPLE_WINDOW = 1000  # rows of a table looked at for its values
SAMPLE_VALUES = 8  # distinct values kept per column
MAX_VALUE_CHARS = 60  # longer text values are not used as literals (free text, not categories)
MAX_TABLE_ROWS = 1_000_000  # larger tables are described and sampled, never queried by synthesized SQL
READ_LIMITS = Limits(timeout_s=1.0, max_rows=SAMPLE_VALUES, max_result_bytes=1 << 20)


@dataclass(frozen=True)
class ColumnProfile:
    table: str
    column: Column
    values: tuple[object, ...]  # distinct non-NULL values from the window, as the engine returns them

    @property
    def numeric(self) -> bool:
        return bool(self.values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)

    @property
    def categorical(self) -> bool:
        """Text values short enough to appear in a question."""
        return bool(self.values) and all(isinstance(v, str) and 0 < len(v) <= MAX_VALUE_CHARS for v in self.values)


@dataclass(frozen=True)
class TableTerms:
    """What a question can mention of one table: its name's words, each column's words, its values' texts."""

    table: str
    name: frozenset[str]
    columns: tuple[frozenset[str], ...]
    values: tuple[str, ...]


@dataclass
class DbProfile:
    source: str  # as given (a path or a redacted URL)
    dialect: str
    quote: str
    schema: Schema
    columns: dict[tuple[str, str], ColumnProfile] = field(default_factory=dict)
    queryable: tuple[str, ...] = ()  # tables the synthesizer may query
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it is not queried
    lines: dict[str, tuple[str, str]] = field(default_factory=dict)  # render.py's cache: table -> (valued, bare)
    terms: list[TableTerms] = field(default_factory=list)  # schema_filter.py's cache, one per table

    def profile(self, table: str, column: str) -> ColumnProfile:
        return self.columns[(table, column)]

    def table(self, name: str) -> Table:
        found = self.schema.table(name)
        assert found is not None
        return found


def read_profile(
    session: Session, source: str, deadline: float, max_table_rows: int = MAX_TABLE_ROWS, window: int = SAMPLE_WINDOW
) -> DbProfile:
    """Schema, row counts and sampled values of ``session``'s database; stops sampling at ``deadline``."""
    schema = _counted(session, session.schema(count_rows=False), max_table_rows, deadline)
    engine = session.engine
    profile = DbProfile(source, engine.dialect, engine.quote, schema)
    queryable = []
    for table in schema.tables:
        reason = _skip_reason(table, max_table_rows)
        if reason is None and time.monotonic() > deadline:
            reason = "time budget spent before it was sampled"
        for column in table.columns:
            values = () if reason else _sample(session, table.name, column.name, window)
            profile.columns[(table.name, column.name)] = ColumnProfile(table.name, column, values)
        if reason is None and table.row_count and table.row_count > max_table_rows:
            reason = f"more than {max_table_rows} rows: described and sampled, not queried"
        if reason:
            profile.skipped[table.name] = reason
        else:
            queryable.append(table.name)
    profile.queryable = tuple(queryable)
    return profile


def _counted(session: Session, schema: Schema, max_table_rows: int, deadline: float) -> Schema:
    """``schema`` with each table's rows counted up to ``max_table_rows + 1`` (``count(*)`` over a ``LIMIT``ed
    subquery: a huge table costs no more than the cap), under the read time limit, none after ``deadline``."""
    q = session.engine.quote_identifier
    tables = []
    for table in schema.tables:
        count = None
        if time.monotonic() < deadline:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM {q(table.name)} LIMIT {int(max_table_rows) + 1}) AS w"
            try:
                count = int(session.run(sql, READ_LIMITS)[0][0])
            except QueryError:
                count = None
        tables.append(dataclasses.replace(table, row_count=count))
    return Schema(tuple(tables))


def _skip_reason(table: Table, max_table_rows: int) -> str | None:
    if not table.columns:
        return "no columns"
    if table.row_count is None:
        return "its rows could not be counted within the time limit"
    if table.row_count == 0:
        return "no rows"
    return None


def _sample(session: Session, table: str, column: str, window: int) -> tuple[object, ...]:
    q = session.engine.quote_identifier
    sql = (
        f"SELECT DISTINCT {q(column)} FROM (SELECT {q(column)} FROM {q(table)} LIMIT {int(window)}) AS w "
        f"WHERE {q(column)} IS NOT NULL LIMIT {SAMPLE_VALUES}"
    )
    try:
        rows = session.run(sql, READ_LIMITS)
    except QueryError:
        return ()
    return tuple(r[0] for r in rows if r and r[0] is not None and not isinstance(r[0], bytes))


def load_profile(source: str, time_budget_s: float = 30.0) -> DbProfile:
    """Open ``source`` read-only and read its profile (for prompts at evaluation: the same as at synthesis)."""
    from sqlmaster.engines import open_database
    from sqlmaster.engines.source import redact

    with open_database(source) as session:
        return read_profile(session, redact(source), time.monotonic() + time_budget_s)
