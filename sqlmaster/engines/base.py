"""The contract every engine module fulfils: open a database read-only, run one statement under limits, describe
its schema, and hand back rows whose values mean the same on every engine.

One class per engine, in its own module (sqlite.py, duckdb.py, postgresql.py, mysql.py), declaring what differs as
data (``name``, ``dialect``, ``url_schemes``, ``file_suffixes``) and overriding only :meth:`Engine.open_readonly`.
The shared parts live here: the schema types, :class:`Session`'s contract, and :func:`fetch_capped`, the one place
that enforces the row and byte caps while fetching.

Errors a query can raise are :class:`sqlmaster.evaluate.sandbox.QueryError` with a ``kind`` from one vocabulary on
every engine: ``sql`` (the engine refused it), ``denied`` (not a read, or a forbidden function), ``timeout``,
``row_cap``, ``multiple_statements``, ``empty``. A database that cannot be opened is a :class:`DatabaseUnavailable`
(one ``error:`` line naming the source, redacted, and the fix).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS, Limits, QueryError, Row

__all__ = [
    "DEFAULT_LIMITS",
    "Column",
    "DatabaseUnavailable",
    "Engine",
    "ForeignKey",
    "Limits",
    "QueryError",
    "Row",
    "Schema",
    "Session",
    "Table",
    "fetch_capped",
]


class DatabaseUnavailable(ConfigError):
    """The database named by a source cannot be opened: missing file, unreachable server, refused login.

    The message names the source in its redacted form (never a password) and the fix; exit 2.
    """


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the declared type as the engine reports it ("" when none is declared, as SQLite allows)
    not_null: bool = False
    primary_key: bool = False


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]  # in the table that declares the key
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    row_count: int | None = None  # None when counting was skipped (too slow) or failed

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.primary_key)


@dataclass(frozen=True)
class Schema:
    """The tables of one database (one schema on a server), in the engine's order."""

    tables: tuple[Table, ...] = field(default_factory=tuple)

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)


class Session(ABC):
    """An open, read-only database. Not thread-safe; one statement at a time."""

    engine: Engine

    @abstractmethod
    def run(self, sql: str, limits: Limits = DEFAULT_LIMITS) -> list[Row]:
        """Execute one read-only statement and return its rows with values normalised
        (:func:`sqlmaster.engines.values.normalise_row`), or raise ``QueryError``.

        The statement is cancelled where it runs (on the server, for servers) after ``limits.timeout_s``; more than
        ``limits.max_rows`` rows or ``limits.max_result_bytes`` bytes abandon it (``row_cap``).
        """

    @abstractmethod
    def schema(self, count_rows: bool = True) -> Schema:
        """Tables, columns, declared types, primary and foreign keys, and (``count_rows``) row counts."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Engine(ABC):
    """One database engine. Subclasses declare their differences as class attributes."""

    name: ClassVar[str]  # "sqlite", "duckdb", "postgresql", "mysql": what --engine and data.dialect take
    dialect: ClassVar[str]  # sqlglot's name for the dialect ("sqlite", "duckdb", "postgres", "mysql")
    url_schemes: ClassVar[tuple[str, ...]] = ()  # URL schemes that name this engine's servers
    file_suffixes: ClassVar[tuple[str, ...]] = ()  # file suffixes that name this engine's database files
    quote: ClassVar[str] = '"'  # identifier quote character
    string_quotes: ClassVar[tuple[str, ...]] = ("'",)  # the characters that quote a string literal
    # What transpile (data.dialect) writes for this engine beyond the words and operators SQLite answers use:
    # constrained decoding (evaluate/constrain.py) admits them. Measured over the shipped training split.
    answer_words: ClassVar[tuple[str, ...]] = ()
    answer_operators: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def open_readonly(self, source: str, limits: Limits = DEFAULT_LIMITS) -> Session:
        """Open the database ``source`` names (a file path or a URL) so that nothing can write to it."""

    def quote_identifier(self, name: str) -> str:
        q = self.quote
        return f"{q}{name.replace(q, q + q)}{q}"


_SIZED = (str, bytes, bytearray, memoryview)


def fetch_capped(
    fetchmany: Callable[[int], Sequence[Sequence[Any]]],
    limits: Limits,
    normalise: Callable[[Iterable[Any]], Row],
    batch: int = 512,
) -> list[Row]:
    """Fetch a result in batches, normalising each row, and raise ``row_cap`` past the row or byte cap."""
    rows: list[Row] = []
    size = 0
    while True:
        chunk = fetchmany(min(batch, limits.max_rows + 1 - len(rows)))
        if not chunk:
            return rows
        for raw in chunk:
            size += sum(len(v) for v in raw if isinstance(v, _SIZED))
            rows.append(normalise(raw))
        if len(rows) > limits.max_rows:
            raise QueryError("row_cap", f"more than {limits.max_rows} rows")
        if size > limits.max_result_bytes:
            raise QueryError("row_cap", f"result larger than {limits.max_result_bytes} bytes")
