"""Run untrusted SQL against in-memory SQLite databases without letting it escape or run away.

Generated SQL (and, in principle, the `context` and gold of an input file) is untrusted. Every query runs
under these guards:

* **In-memory only.** Databases are ``:memory:`` connections, built from bytes (``deserialize``) or from a
  read-only copy of a real file (``file:...?mode=ro`` + ``backup``). Nothing is ever opened for writing on
  disk.
* **Authorizer (allow-list).** A query may only read: SELECT, column reads, function calls and recursive
  CTEs are
  allowed; everything else — INSERT/UPDATE/DELETE, CREATE/DROP/ALTER, ATTACH/DETACH (which is also how
  ``VACUUM INTO`` is authorised), PRAGMA, transactions, ANALYZE, REINDEX — is denied. ``load_extension`` is
  denied by name (extension loading is also left disabled on the connection). Building a database from a
  ``CREATE TABLE`` context uses a wider policy that still denies ATTACH/DETACH, writing PRAGMAs and
  extensions.
* **Time limit.** A progress handler aborts a statement after ``timeout_s`` of wall time (runaway recursive
  CTEs,
  huge cartesian products under ORDER BY or aggregates).
* **Row and byte caps.** Results are fetched in batches and abandoned past ``max_rows`` rows or
  ``max_result_bytes`` bytes (a cartesian product that streams; ``zeroblob`` rows, which live in Python's memory
  and so escape SQLite's heap limit).
* **Size limits.** ``SQLITE_LIMIT_LENGTH`` caps any string/blob (``zeroblob(1e9)``),
  ``SQLITE_LIMIT_SQL_LENGTH`` the statement text, ``SQLITE_LIMIT_LIKE_PATTERN_LENGTH`` a LIKE/GLOB pattern;
  SQLite's heap is capped per worker process (:func:`set_process_heap_limit`) and so is the address space
  (:func:`limit_address_space`).
* **One statement.** SQL holding more than one statement is refused (``QueryError`` kind
  ``multiple_statements``) rather than executing only its first statement: under the ``strict`` convention a
  grader scores what was submitted. The ``official`` convention cuts a prediction to its first statement before
  it gets here, as the official evaluator does (:func:`.execution.first_statement`). A trailing ``;`` is fine.

* **CPU time (worker processes).** The progress handler only runs between VM instructions, so one long
  function call (``printf('%.*c', 2000000000, 'x')``, ``instr`` on megabyte strings) slips past the time limit.
  In scorer workers :func:`enable_cpu_guard` arms ``RLIMIT_CPU`` before every statement: a statement that
  burns more CPU than its budget gets SIGXCPU, which kills the worker; the pool records the example as a miss
  and starts a fresh worker. Core dumps are disabled first, so the kill writes no file.

Crash isolation (a segfault or a hang inside SQLite itself) is a process-level concern handled by the worker
pool in :mod:`sqlmaster.evaluate.score`; this module guarantees that SQL errors surface as :class:`QueryError`.
"""

from __future__ import annotations

import math
import resource
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]

# Authorizer action codes that a read-only query needs. Everything else is denied for queries.
_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, 33})  # 33: RECURSIVE
# Setup (executing a CREATE TABLE context and inserting synthesized rows) may also create and insert.
_SETUP_ACTIONS = _READ_ACTIONS | frozenset(
    {
        sqlite3.SQLITE_CREATE_TABLE,
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_CREATE_VIEW,
        sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_UPDATE,  # sqlite_master is updated by CREATE TABLE
        sqlite3.SQLITE_TRANSACTION,
    }
)
# Functions that touch the outside world or the extension loader. load_extension is the one stock SQLite has;
# the others exist in common shells/builds and cost nothing to deny.
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
# PRAGMAs the setup phase may read (no argument) to learn the schema.
_SETUP_READ_PRAGMAS = frozenset({"table_info", "table_xinfo"})


class QueryError(Exception):
    """A query failed: SQL error, denied by the authorizer, timed out, or hit the row cap."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind  # "sql" | "denied" | "timeout" | "row_cap" | "multiple_statements" | "empty"
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Per-query limits; the defaults suit synthesized tables of a few dozen rows and Spider databases."""

    timeout_s: float = 2.0  # wall time per statement
    max_rows: int = 10_000  # rows fetched before the query is abandoned
    max_result_bytes: int = 64 << 20  # text/blob bytes of one result before it is abandoned
    max_value_bytes: int = 1_000_000  # SQLITE_LIMIT_LENGTH: largest string/blob/row
    max_sql_chars: int = 100_000  # SQLITE_LIMIT_SQL_LENGTH
    max_like_pattern: int = 10_000  # SQLITE_LIMIT_LIKE_PATTERN_LENGTH (matching cost grows with it)
    progress_every: int = 2_000  # VM instructions between clock checks
    cpu_s_per_statement: float = 3.0  # RLIMIT_CPU budget of one statement (worker processes only)


DEFAULT_LIMITS = Limits()


def _query_authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None) -> int:
    if action not in _READ_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _setup_authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None) -> int:
    if action == sqlite3.SQLITE_PRAGMA:
        ok = (arg1 or "").lower() in _SETUP_READ_PRAGMAS and arg2 is not None and db is None
        # PRAGMA table_info(t) passes the table as arg2; a write such as `PRAGMA x = 1` also has an arg2, but
        # table_info/table_xinfo are read-only whatever their argument.
        return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
    if action not in _SETUP_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _apply_limits(conn: sqlite3.Connection, limits: Limits) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, limits.max_sql_chars)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)  # belt and braces next to the authorizer
    conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, limits.max_like_pattern)


def new_setup_connection(limits: Limits = DEFAULT_LIMITS, image: bytes | None = None) -> sqlite3.Connection:
    """An in-memory database (empty, or a copy of ``image``) under the setup policy (create tables, insert
    rows; no escape hatches)."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if image is not None:
        conn.deserialize(image)  # before the authorizer, which would refuse deserialize's internal statements
    _apply_limits(conn, limits)
    conn.set_authorizer(_setup_authorizer)
    return conn


class ConnectionPool:
    """Spare in-memory connections, reused for new databases: ``deserialize`` replaces a connection's whole
    database, and opening and closing a connection cost as much as filling a synthesized database's tables.

    A connection comes back under the setup policy, its limits re-applied, no progress handler and the default
    text factory; only its prepared-statement cache survives (statements on the old schema are re-prepared by
    SQLite before they could run). A connection left inside a transaction is closed, not kept.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._free: list[sqlite3.Connection] = []
        self._inherited: list[sqlite3.Connection] = []  # see forget()

    def setup_connection(self, limits: Limits, image: bytes) -> sqlite3.Connection:
        """A setup connection holding a copy of ``image`` (as :func:`new_setup_connection` gives)."""
        while self._free:
            conn = self._free.pop()
            try:
                conn.set_authorizer(None)  # deserialize runs internal statements that the policies deny
                conn.set_progress_handler(None, 0)
                conn.text_factory = str
                conn.deserialize(image)
            except sqlite3.Error:
                conn.close()
                continue
            _apply_limits(conn, limits)
            conn.set_authorizer(_setup_authorizer)
            return conn
        return new_setup_connection(limits, image)

    def forget(self) -> None:
        """Drop the spare connections without closing them: in a forked worker they are the parent's (SQLite
        connections must never be used, or closed, on both sides of a fork). They stay referenced, so that
        garbage collection never closes them either."""
        self._inherited += self._free
        self._free = []

    def release(self, conn: sqlite3.Connection) -> None:
        """Give back a connection that nothing else uses any more (close it otherwise)."""
        try:
            keep = len(self._free) < self.size and not conn.in_transaction
        except sqlite3.ProgrammingError:  # already closed
            return
        if any(c is conn for c in self._free):  # released twice: one connection must never serve two databases
            return
        if keep:
            self._free.append(conn)
        else:
            conn.close()


def serialize_setup(conn: sqlite3.Connection) -> bytes:
    """The bytes of a setup connection's database; the setup policy stays in force afterwards.

    ``serialize()`` runs internal queries that the setup policy would deny, so it is lifted for that call only.
    """
    conn.set_authorizer(None)
    try:
        return conn.serialize()
    finally:
        conn.set_authorizer(_setup_authorizer)


def _lock_down(conn: sqlite3.Connection, limits: Limits) -> sqlite3.Connection:
    _apply_limits(conn, limits)
    conn.set_authorizer(_query_authorizer)
    return conn


def connection_from_bytes(
    data: bytes, limits: Limits = DEFAULT_LIMITS, cache_kib: int | None = None
) -> sqlite3.Connection:
    """A fresh in-memory database from ``Connection.serialize()`` bytes, locked to read-only queries.

    Each call gets its own copy, so nothing one query does can leak into the next. ``cache_kib``: SQLite's page
    cache for this connection (default 2 MiB), which also bounds what a sort or GROUP BY keeps in memory before
    it spills to a temporary file.
    """
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.deserialize(data)
    if cache_kib is not None:
        conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")  # before the authorizer, which denies PRAGMAs
    return _lock_down(conn, limits)


def read_database_file(path: str | Path) -> bytes:
    """The bytes of a real SQLite file, read through a read-only (``mode=ro``) connection and an in-memory
    copy.

    The file is never opened for writing; serve the bytes with :func:`connection_from_bytes`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database not found: {path}. Pass the path of an existing .sqlite file.")
    src = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    mem = sqlite3.connect(":memory:")
    try:
        src.backup(mem)
        return mem.serialize()
    finally:
        src.close()
        mem.close()


def connection_from_file_readonly(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """A large real SQLite file queried in place: opened ``mode=ro`` and locked to read-only queries."""
    conn = sqlite3.connect(
        f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    return _lock_down(conn, limits)


def connection_from_file(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """An in-memory copy of a real SQLite file (opened read-only), locked to read-only queries."""
    return connection_from_bytes(read_database_file(path), limits)


def lock_setup_connection(conn: sqlite3.Connection, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """Switch a setup connection to the read-only query policy (for gold queries right after synthesis)."""
    return _lock_down(conn, limits)


def run_query(
    conn: sqlite3.Connection, sql: str, limits: Limits = DEFAULT_LIMITS, stop_after: int | None = None
) -> list[Row]:
    """Execute one statement and return its rows, or raise :class:`QueryError`.

    The connection must come from this module (so that the authorizer and limits are in place). With
    ``stop_after`` the statement is abandoned as soon as it has returned ``stop_after + 1`` rows, which are
    returned: a caller that compares with a result of ``stop_after`` rows only needs to know that there are more,
    and SQLite stops computing a streaming result there (a join turned into a near cartesian product).
    """
    sql = sql.strip()
    if not sql.rstrip(";").strip():
        raise QueryError("empty", "no SQL to execute")
    if len(sql) > limits.max_sql_chars:
        raise QueryError("sql", f"statement longer than {limits.max_sql_chars} characters")
    try:
        return _execute(conn, sql, limits, stop_after)
    except UnicodeDecodeError:
        # Text that is not UTF-8 in a real database: decode it leniently rather than failing the query.
        conn.text_factory = _lenient_text
        return _execute(conn, sql, limits, stop_after)


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


_SIZED = (str, bytes)


def _batch_bytes(batch: list[Row]) -> int:
    """Text and blob bytes of a batch of rows (numbers are small and bounded by the row cap)."""
    return sum(len(v) for row in batch for v in row if type(v) in _SIZED)


_BATCH = 512  # rows per fetchmany


def _execute(conn: sqlite3.Connection, sql: str, limits: Limits, stop_after: int | None) -> list[Row]:
    deadline = time.monotonic() + limits.timeout_s
    timed_out = False

    def _progress() -> int:
        nonlocal timed_out
        if time.monotonic() > deadline:
            timed_out = True
            return 1  # non-zero aborts the statement with "interrupted"
        return 0

    conn.set_progress_handler(_progress, limits.progress_every)
    cursor: sqlite3.Cursor | None = None
    _arm_cpu_guard(limits.cpu_s_per_statement)
    try:
        cursor = conn.execute(sql)
        rows: list[Row] = []
        size = 0
        wanted = limits.max_rows + 1 if stop_after is None else min(stop_after + 1, limits.max_rows + 1)
        while True:
            batch = cursor.fetchmany(min(_BATCH, wanted - len(rows)))
            if not batch:
                return rows
            rows.extend(batch)
            if len(rows) > limits.max_rows:
                raise QueryError("row_cap", f"more than {limits.max_rows} rows")
            size += _batch_bytes(batch)
            if size > limits.max_result_bytes:
                raise QueryError("row_cap", f"result larger than {limits.max_result_bytes} bytes")
            if stop_after is not None and len(rows) > stop_after:
                return rows
    except (QueryError, UnicodeDecodeError):
        raise
    except sqlite3.ProgrammingError as exc:
        if "one statement at a time" in str(exc):
            raise QueryError("multiple_statements", "more than one SQL statement") from None
        raise QueryError("sql", str(exc)) from None
    except sqlite3.DatabaseError as exc:  # OperationalError, IntegrityError, ... (DataError from limits)
        if timed_out:
            raise QueryError("timeout", f"exceeded {limits.timeout_s:g}s") from None
        message = str(exc)
        kind = "denied" if "authoriz" in message or "prohibited" in message else "sql"
        raise QueryError(kind, message) from None
    except (OverflowError, MemoryError, ValueError) as exc:
        raise QueryError("sql", f"{type(exc).__name__}: {exc}") from None
    finally:
        _disarm_cpu_guard()
        if cursor is not None:
            cursor.close()
        conn.set_progress_handler(None, 0)


# ------------------------------------------------------------------------------------------------ CPU guard

_CPU_GUARD = False  # armed only in scorer worker processes (SIGXCPU kills the process)
_IDLE_CPU_S = 600  # soft limit between statements: generous, the pool's watchdog covers the rest


def enable_cpu_guard() -> None:
    """Let :func:`run_query` bound each statement's CPU time with RLIMIT_CPU (kills this process past it).

    Only for disposable worker processes. Core dumps are turned off first: SIGXCPU's default action dumps
    core, and the sandbox writes no files.
    """
    global _CPU_GUARD
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _CPU_GUARD = True


def _set_cpu_soft_limit(budget_s: float) -> None:
    used = time.process_time()
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + budget_s)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _arm_cpu_guard(budget_s: float) -> None:
    if _CPU_GUARD:
        _set_cpu_soft_limit(budget_s)


def _disarm_cpu_guard() -> None:
    if _CPU_GUARD:
        _set_cpu_soft_limit(_IDLE_CPU_S)


def run_script(conn: sqlite3.Connection, script: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Run a (setup) script such as a ``CREATE TABLE`` context, under the time limit."""
    deadline = time.monotonic() + limits.timeout_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), limits.progress_every)
    _arm_cpu_guard(limits.cpu_s_per_statement)
    try:
        conn.executescript(script)
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        kind = "denied" if "authoriz" in message else "sql"
        raise QueryError(kind, message) from None
    finally:
        _disarm_cpu_guard()
        conn.set_progress_handler(None, 0)


def set_process_heap_limit(max_bytes: int) -> None:
    """Cap SQLite's heap for this whole process (PRAGMA hard_heap_limit is process-wide).

    Called in scorer worker processes so that a hostile query that allocates (a huge ORDER BY) fails with
    "out of memory" instead of swapping the machine. Not called in the parent process.
    """
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA hard_heap_limit = {int(max_bytes)}")
    finally:
        conn.close()


def limit_address_space(max_bytes: int) -> None:
    """Cap this process's virtual memory (RLIMIT_AS): Python-side allocations past it raise MemoryError
    instead of pushing the machine into swap. For scorer worker processes only."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, hard))
