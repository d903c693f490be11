"""Run untrusted SQL against in-memory SQLite databases without letting it escape or run away.

Generated SQL (and, in principle, the `context` and gold of an input file) is untrusted. Every query runs
under these guards:

* **In-memory only.** Databases are ``:memory:`` connections, built from bytes (``deserialize``) or from a
  copy of a real file opened read-only and immutable (``file:...?mode=ro&immutable=1`` + ``backup``), which
  creates no ``-wal``/``-shm``/``-journal`` file beside it, also for a WAL-mode file. Nothing is ever opened
  for writing on disk. :func:`database_file_problem` checks a real file before any scoring (see there for
  locks and write-ahead logs).
* **Authorizer (allow-list).** A query may only read: SELECT, column reads, function calls and recursive
  CTEs are
  allowed; everything else — INSERT/UPDATE/DELETE, CREATE/DROP/ALTER, ATTACH/DETACH (which is also how
  ``VACUUM INTO`` is authorised), PRAGMA (but reading ``data_version``, which FTS5 does), transactions,
  ANALYZE, REINDEX — is denied. ``load_extension`` is denied by name (extension loading is also left disabled
  on the connection). A real database's virtual tables (FTS5, R-tree) are connected before the policy is set,
  so that they can be read, never written. Building a database from a ``CREATE TABLE`` context uses a wider
  policy that still denies ATTACH/DETACH, writing PRAGMAs and extensions.
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
import stat
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
# PRAGMAs a query may read (no argument): the internal statements of virtual tables need them.
_QUERY_READ_PRAGMAS = frozenset({"data_version"})


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
        # FTS5 reads PRAGMA data_version before each query of its table: a read-only counter (the only PRAGMA).
        pragma_read = action == sqlite3.SQLITE_PRAGMA and arg2 is None and (arg1 or "").lower() in _QUERY_READ_PRAGMAS
        return sqlite3.SQLITE_OK if pragma_read else sqlite3.SQLITE_DENY
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
    data: bytes, limits: Limits = DEFAULT_LIMITS, cache_kib: int | None = None, virtual_tables: bool = False
) -> sqlite3.Connection:
    """A fresh in-memory database from ``Connection.serialize()`` bytes, locked to read-only queries.

    Each call gets its own copy, so nothing one query does can leak into the next. ``cache_kib``: SQLite's page
    cache for this connection (default 2 MiB), which also bounds what a sort or GROUP BY keeps in memory before
    it spills to a temporary file. ``virtual_tables``: connect the database's virtual tables first (a real
    database may hold FTS5 or R-tree tables; see :func:`_connect_virtual_tables`).
    """
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.deserialize(data)
    if cache_kib is not None:
        conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")  # before the authorizer, which denies PRAGMAs
    if virtual_tables:
        _connect_virtual_tables(conn, limits)
    return _lock_down(conn, limits)


def _connect_virtual_tables(conn: sqlite3.Connection, limits: Limits) -> None:
    """Connect every virtual table (FTS3/4/5, R-tree) once, before the query authorizer is set.

    A virtual table's constructor prepares statements on its shadow tables (reads of sqlite_schema, and the
    INSERT/DELETE it would use for writes); under the read-only policy it fails ("vtable constructor failed").
    Connected here, the constructor runs once per connection without the policy; the queries that come later
    only read the shadow tables, which the policy allows, and a query that writes a virtual table is still
    denied. A table whose module this SQLite lacks is left alone: the queries that read it fail with SQLite's
    own message.
    """
    _apply_limits(conn, limits)
    names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE %'")
    for (name,) in names.fetchall():
        quoted = '"' + str(name).replace('"', '""') + '"'
        try:
            conn.execute(f"SELECT * FROM {quoted} LIMIT 0").close()
        except sqlite3.Error:
            continue


# ------------------------------------------------------------------------------------------------ real files

# Bytes 18 and 19 of an SQLite file: its read and write format versions; 2 means WAL mode, 1 rollback journal.
_FORMAT_VERSION_BYTES = slice(18, 20)
_WAL_FORMAT = b"\x02\x02"
SQLITE_HEADER = b"SQLite format 3\x00"
# How long the pre-scoring check waits for another process's write lock on a database (SQLite's busy timeout).
LOCK_WAIT_S = 5.0
# Files up to this size get a full PRAGMA quick_check (it reads every page, as the scorer's copy does anyway);
# larger ones are queried in place and only their schema is read: a full check would cost minutes.
QUICK_CHECK_MAX_BYTES = 256 << 20


def database_uri(path: str | Path, immutable: bool = True) -> str:
    """The URI that opens a real database file read-only; ``immutable`` (the default) also tells SQLite that
    nothing changes the file while it is open, so SQLite takes no lock and never creates a ``-wal``, ``-shm`` or
    ``-journal`` file beside it (a WAL-mode file included). It then reads the main file only: a write-ahead log
    with changes not yet checkpointed, or a writer's lock, are checked for before scoring
    (:func:`database_file_problem`)."""
    return f"{Path(path).resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")


def read_database_file(path: str | Path) -> bytes:
    """The bytes of a real SQLite file, read through a read-only, immutable connection and an in-memory copy.

    The file is never opened for writing; serve the bytes with :func:`connection_from_bytes`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database not found: {path}. Pass the path of an existing .sqlite file.")
    src = sqlite3.connect(database_uri(path), uri=True)
    mem = sqlite3.connect(":memory:")
    try:
        src.backup(mem)
        data = mem.serialize()
    finally:
        src.close()
        mem.close()
    if data[_FORMAT_VERSION_BYTES] == _WAL_FORMAT:
        # The copy keeps the file's WAL-mode header, and an in-memory database cannot open a WAL-mode image
        # ("unable to open database file"): mark it rollback-journal, as PRAGMA journal_mode=DELETE would.
        data = data[:18] + b"\x01\x01" + data[20:]
    return data


def database_file_problem(path: str | Path) -> tuple[str, str] | None:
    """Why a real database file cannot be scored, as ``(reason, fix)``; ``None`` when it can.

    Run once per file before any scoring, so that a file the workers could not read is one clear error instead
    of every row scored as a miss. Checks, in order: a regular file (not a directory, device or FIFO, which
    would block), the SQLite header, then a WAL-mode file's log or a rollback-journal file's lock, then the
    content (the schema, and ``PRAGMA quick_check`` up to ``QUICK_CHECK_MAX_BYTES``). Creates no file.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            return "it is a directory", "Pass the .sqlite file inside it"
        if not stat.S_ISREG(mode):
            return "not a regular file: a device, FIFO or socket", "Pass a .sqlite file"
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        return exc.strerror or type(exc).__name__, "Check the path and its permissions"
    if not header.startswith(SQLITE_HEADER):
        return "it is not an SQLite database file: its header is not 'SQLite format 3'", "Point it at a .sqlite file"
    wal_mode = header[_FORMAT_VERSION_BYTES] == _WAL_FORMAT
    return (_wal_problem(path) if wal_mode else _lock_problem(path)) or _content_problem(path)


def _wal_problem(path: Path) -> tuple[str, str] | None:
    """A WAL-mode file is read immutable, i.e. without its log: refuse it while ``-wal`` holds anything."""
    wal = path.with_name(path.name + "-wal")
    try:
        if wal.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot inspect its write-ahead log {wal}: {exc.strerror}", "Check the folder's permissions"
    return (
        f"it is in WAL mode and {wal} holds changes not yet checkpointed into it, which a read-only immutable "
        "open cannot see",
        f"Once the program writing it is done, run: sqlite3 {path} 'PRAGMA wal_checkpoint(TRUNCATE)'",
    )


def _lock_problem(path: Path) -> tuple[str, str] | None:
    """A rollback-journal file: take and drop a shared lock, as any reader does, waiting up to ``LOCK_WAIT_S``.

    ``immutable=1`` (how the workers read) ignores locks. That is not good enough while a writer holds one: a
    writer spills pages of an uncommitted transaction into the file itself, so a read could see half a
    transaction. So the lock decides once, here: free (or only RESERVED, a writer that has not touched the
    file yet) and the file is scored; held past the wait, or a hot journal left by an interrupted writer, and
    it is refused. This plain read-only connection creates no file (only WAL mode would need ``-shm``).
    """
    try:
        conn = sqlite3.connect(database_uri(path, immutable=False), uri=True, timeout=LOCK_WAIT_S)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith("SQLITE_BUSY"):
            return (
                f"another process holds a write lock on it, still after waiting {LOCK_WAIT_S:g} s",
                "Rerun when the program writing it is done, or score a copy of the file",
            )
        if name == "SQLITE_READONLY_ROLLBACK":
            return (
                f"{path}-journal holds an interrupted write that must be rolled back first",
                f"Open it once with sqlite3 {path} (which rolls the write back), or use a clean copy",
            )
        return None  # anything else (a damaged file): the content check names it
    return None


def _content_problem(path: Path) -> tuple[str, str] | None:
    """Open it as the workers will (read-only, immutable), read the schema and run ``PRAGMA quick_check``."""
    try:
        conn = sqlite3.connect(database_uri(path), uri=True)
        try:
            conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            if path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                first = conn.execute("PRAGMA quick_check(1)").fetchone()
                if first is not None and first[0] != "ok":
                    # One line: quick_check heads its report with "*** in database main ***" and a newline.
                    detail = " ".join(line for line in str(first[0]).splitlines() if not line.startswith("***"))
                    return f"damaged: {detail}", "Restore it from a good copy"
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"SQLite: {exc}", "Restore it from a good copy, or point at another file"
    return None


def connection_from_file_readonly(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """A large real SQLite file queried in place: opened read-only and immutable, locked to read-only queries."""
    conn = sqlite3.connect(database_uri(path), uri=True, isolation_level=None, check_same_thread=False)
    _connect_virtual_tables(conn, limits)
    return _lock_down(conn, limits)


def connection_from_file(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> sqlite3.Connection:
    """An in-memory copy of a real SQLite file (opened read-only), locked to read-only queries."""
    return connection_from_bytes(read_database_file(path), limits, virtual_tables=True)


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
