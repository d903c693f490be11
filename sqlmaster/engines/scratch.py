"""Scratch copies of an example's synthesized databases on another engine: the same rows as SQLite's, in tables
typed from the ``CREATE TABLE`` context, for scoring gold and predictions on DuckDB, PostgreSQL or MySQL.

These are the tool's own databases, never a user's. One :class:`ScratchHost` per worker process holds one
connection to the engine (opening one costs ~60 ms on DuckDB, a login on a server) and builds each example's
databases into namespaces of their own (a schema per database on DuckDB and PostgreSQL, a database per database on
MySQL), dropped when the example is done (:meth:`ScratchExample.close`); a query runs with its database's
namespace as the default one, so the transpiled SQL names tables as the context does.

Types: a column's kind is its SQLite affinity (:func:`sqlmaster.engines.transpile.column_types`), checked against
the values SQLite stored: SQLite lets an INTEGER column hold text (a gold that compares it with a word puts one
there); such a column is created as text on the engine and reported in ``mixed`` (its comparisons cannot mean the
same on both). Names are lower-cased (the transpiler lower-cases every identifier: SQLite's names are
case-insensitive).

DuckDB: one in-memory connection opened with external access and extension loading off (DuckDB refuses to turn
either back on while running); queries go through :class:`sqlmaster.engines.duckdb.DuckDBSession` (one SELECT,
timer interrupt, row and byte caps).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlmaster.engines.base import DEFAULT_LIMITS, Limits, QueryError, Row, fetch_capped
from sqlmaster.engines.transpile import BLOB, INTEGER, NUMERIC, REAL, TEXT, sqlite_text

# kind -> the engine's column type
TYPE_NAMES: dict[str, dict[str, str]] = {
    "duckdb": {INTEGER: "BIGINT", REAL: "DOUBLE", NUMERIC: "DOUBLE", TEXT: "VARCHAR", BLOB: "BLOB"},
    "postgresql": {
        INTEGER: "BIGINT",
        REAL: "DOUBLE PRECISION",
        NUMERIC: "DOUBLE PRECISION",
        TEXT: 'TEXT COLLATE "C"',
        BLOB: "BYTEA",
    },
    "mysql": {INTEGER: "BIGINT", REAL: "DOUBLE", NUMERIC: "DOUBLE", TEXT: "TEXT", BLOB: "LONGBLOB"},
}


@dataclass(frozen=True)
class ScratchTable:
    name: str  # lower-cased
    columns: tuple[tuple[str, str], ...]  # (lower-cased name, kind)


@dataclass
class ScratchData:
    """One example's databases as read back from SQLite: tables with their kinds and each database's rows."""

    tables: list[ScratchTable]
    rows: list[dict[str, list[Row]]]  # per database: table -> rows
    mixed: list[str] = field(default_factory=list)  # "table.column" holding text under a numeric affinity

    @property
    def types(self) -> dict[str, dict[str, str]]:
        return {t.name: dict(t.columns) for t in self.tables}


def read_synthesized(databases: Sequence[bytes]) -> ScratchData:
    """The tables, kinds and rows of an example's synthesized databases (``SynthesizedExample.databases``)."""
    from sqlmaster.evaluate.synth import read_schema

    per_db: list[dict[str, list[Row]]] = []
    tables: list[Any] = []
    for data in databases:
        conn = sqlite3.connect(":memory:")
        try:
            conn.deserialize(data)
            tables = read_schema(conn)
            per_db.append(
                {
                    t.name.lower(): conn.execute(f'SELECT * FROM "{t.name.replace(chr(34), chr(34) * 2)}"').fetchall()
                    for t in tables
                }
            )
        finally:
            conn.close()
    return _with_kinds(tables, per_db)


def _with_kinds(tables: list[Any], per_db: list[dict[str, list[Row]]]) -> ScratchData:
    out: list[ScratchTable] = []
    mixed: list[str] = []
    for t in tables:
        name = t.name.lower()
        columns = []
        for i, c in enumerate(t.columns):
            values = [r[i] for db in per_db for r in db.get(name, []) if r[i] is not None]
            kind = _kind(c.affinity, values)
            if c.affinity in (INTEGER, REAL, NUMERIC) and kind == TEXT:
                mixed.append(f"{name}.{c.name.lower()}")
            columns.append((c.name.lower(), kind))
        out.append(ScratchTable(name, tuple(columns)))
    return ScratchData(out, per_db, mixed)


def _kind(affinity: str, values: list[Any]) -> str:
    if affinity == TEXT:
        return BLOB if values and all(isinstance(v, bytes) for v in values) else TEXT
    if any(isinstance(v, str | bytes) for v in values):
        return TEXT
    if any(isinstance(v, float) for v in values) or affinity == REAL:
        return REAL
    if affinity == BLOB and not values:
        return TEXT
    return INTEGER


class ScratchExample(ABC):
    """One example's databases on the engine: run a (transpiled) query on database ``index``."""

    engine: str
    data: ScratchData

    @abstractmethod
    def run(self, index: int, sql: str, limits: Limits = DEFAULT_LIMITS, stop_after: int | None = None) -> list[Row]:
        """Rows of ``sql`` on database ``index`` (values normalised), or ``QueryError``.

        ``stop_after``: the caller needs at most that many rows (the gold's count): a result with more is cut
        short and comes back as ``stop_after + 1`` empty rows (it cannot match; it did execute), as the SQLite
        scorer abandons such a prediction.
        """

    @abstractmethod
    def close(self) -> None:
        """Drop the databases."""

    def __len__(self) -> int:
        return len(self.data.rows)


class ScratchHost(ABC):
    """One process's connection to an engine, on which examples' databases are built and dropped."""

    engine: str
    max_examples: int = 16  # examples whose databases may exist at once (the caller drops one before building)

    @abstractmethod
    def build(self, data: ScratchData) -> ScratchExample: ...

    @abstractmethod
    def close(self) -> None: ...


_counter = itertools.count()
# names this machine in namespace names, so that a host can tell its own dead workers' leftovers (MySQL) apart
MACHINE = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def namespace_name(index: int) -> str:
    """``sx_<machine>_<pid>_<example>_<database>``: unique per process and example; see :func:`stale`."""
    return f"sx_{MACHINE}_{os.getpid()}_{next(_counter)}_{index}"


def stale(names: Sequence[str]) -> list[str]:
    """Namespaces left by processes of this machine that are gone (a worker killed by the scorer's watchdog, or
    one that exited without cleaning up): safe to drop."""
    gone = []
    for name in names:
        parts = name.split("_")
        if len(parts) == 5 and parts[0] == "sx" and parts[1] == MACHINE and parts[2].isdigit():
            try:
                os.kill(int(parts[2]), 0)
            except ProcessLookupError:
                gone.append(name)
            except PermissionError:  # alive, someone else's
                continue
    return gone


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Watchdog:
    """One thread that interrupts the statement running past its deadline: a ``threading.Timer`` per statement
    (a new thread each) cost more than the statement itself on a busy machine (3 ms against 1.5 ms)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: tuple[float, Any] | None = None  # (deadline on the monotonic clock, what to interrupt)
        self._closed = False
        threading.Thread(target=self._loop, name="scratch-watchdog", daemon=True).start()

    def arm(self, timeout_s: float, target: Any) -> None:
        with self._cond:
            self._armed = (time.monotonic() + timeout_s, target)
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                if self._armed is None:
                    self._cond.wait()
                    continue
                deadline, target = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._armed = None
                target.interrupt()


class DuckDBScratchHost(ScratchHost):
    """One in-memory DuckDB database per process. Database ``i`` of the current example is queried through
    cursor ``i`` (a connection of its own to the same database), whose default schema is switched once per
    example rather than once per query."""

    engine = "duckdb"

    def __init__(self) -> None:
        import duckdb

        from sqlmaster.engines.duckdb import CONNECT_CONFIG

        # the sandbox settings, less lock_configuration: the host switches schemas between examples (SET schema);
        # only one SELECT per statement reaches the database from outside (DuckDBSession._one_select)
        config = {k: v for k, v in CONNECT_CONFIG.items() if k != "lock_configuration"}
        self._conn = duckdb.connect(":memory:", config=config)
        self._cursors: list[Any] = []
        self._schemas: list[str | None] = []
        self._watchdog = Watchdog()

    def build(self, data: ScratchData) -> ScratchExample:
        names = [namespace_name(i) for i in range(len(data.rows))]
        types = TYPE_NAMES["duckdb"]
        for schema, rows in zip(names, data.rows, strict=True):
            self._conn.execute(f"CREATE SCHEMA {_quote(schema)}")
            for t in data.tables:
                cols = ", ".join(f"{_quote(n)} {types[k]}" for n, k in t.columns)
                target = f"{_quote(schema)}.{_quote(t.name)}"
                self._conn.execute(f"CREATE TABLE {target} ({cols})")
                table_rows = rows.get(t.name, [])
                if table_rows:
                    marks = "(" + ", ".join("?" * len(t.columns)) + ")"
                    values = [cell_value(v, k) for r in table_rows for v, (_, k) in zip(r, t.columns, strict=True)]
                    self._conn.execute(f"INSERT INTO {target} VALUES {', '.join([marks] * len(table_rows))}", values)
        return DuckDBScratchExample(self, data, names)

    def run(self, schema: str, index: int, sql: str, limits: Limits) -> list[Row]:
        """One SELECT on database ``index`` (in ``schema``), with DuckDBSession's checks and errors."""
        import duckdb

        from sqlmaster.engines.duckdb import DuckDBSession
        from sqlmaster.engines.values import normalise_row

        cursor = self._cursor(index, schema)
        statement = DuckDBSession._one_select(sql, limits)
        self._watchdog.arm(limits.timeout_s, cursor)
        try:
            return fetch_capped(cursor.execute(statement).fetchmany, limits, normalise_row)
        except duckdb.InterruptException:
            raise QueryError("timeout", f"exceeded {limits.timeout_s:g}s") from None
        except duckdb.PermissionException as exc:
            raise QueryError("denied", str(exc).splitlines()[0]) from None
        except duckdb.Error as exc:
            raise QueryError("sql", str(exc).splitlines()[0]) from None
        finally:
            self._watchdog.disarm()

    def _cursor(self, index: int, schema: str) -> Any:
        while len(self._cursors) <= index:
            self._cursors.append(self._conn.cursor())
            self._schemas.append(None)
        if self._schemas[index] != schema:
            self._cursors[index].execute(f"SET schema = '{schema}'")
            self._schemas[index] = schema
        return self._cursors[index]

    def drop(self, names: list[str]) -> None:
        for i, current in enumerate(self._schemas):
            if current in names:
                self._cursors[i].execute("SET schema = 'main'")
                self._schemas[i] = None
        for schema in names:
            self._conn.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")

    def close(self) -> None:
        self._watchdog.close()
        for cursor in self._cursors:
            cursor.close()
        self._conn.close()


def cell_value(value: Any, kind: str) -> Any:
    """A stored value for a column of ``kind``: numbers in a mixed column (text on the engine) as SQLite's text."""
    if kind == TEXT and isinstance(value, int | float):
        return sqlite_text(value)
    return value


class DuckDBScratchExample(ScratchExample):
    engine = "duckdb"

    def __init__(self, host: DuckDBScratchHost, data: ScratchData, names: list[str]) -> None:
        self.host, self.data, self.names = host, data, names
        self.closed = False

    def run(self, index: int, sql: str, limits: Limits = DEFAULT_LIMITS, stop_after: int | None = None) -> list[Row]:
        if self.closed:
            raise ValueError("the example's scratch databases were dropped")
        if stop_after is None or stop_after >= limits.max_rows:
            return self.host.run(self.names[index], index, sql, limits)
        try:
            return self.host.run(self.names[index], index, sql, replace(limits, max_rows=stop_after))
        except QueryError as exc:
            if exc.kind == "row_cap" and "rows" in str(exc) and "larger" not in str(exc):
                return [()] * (stop_after + 1)
            raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.host.drop(self.names)


HOSTS: dict[str, str] = {
    "duckdb": "sqlmaster.engines.scratch:DuckDBScratchHost",
    "postgresql": "sqlmaster.engines.scratch_servers:PostgresScratchHost",
    "mysql": "sqlmaster.engines.scratch_servers:MySQLScratchHost",
}


def scratch_host(engine: str) -> ScratchHost:
    """A new host for ``engine`` (one per process; servers are reached through the engine's environment)."""
    import importlib

    spec = HOSTS.get(engine)
    if spec is None:
        from sqlmaster.errors import ConfigError

        raise ConfigError(f"no scratch databases on engine {engine!r} yet. Use one of: {', '.join(HOSTS)}")
    module, cls = spec.split(":")
    host: ScratchHost = getattr(importlib.import_module(module), cls)()
    return host
