"""PostgreSQL: a server database read through psycopg 3, read-only at every level the server offers.

* **Connect.** ``options`` sets ``default_transaction_read_only=on``, ``idle_in_transaction_session_timeout`` and
  ``lock_timeout`` for the whole session, before any statement of ours runs.
* **One statement.** :func:`.statement.check_read_statement` refuses a second statement, a non-read, ``INTO``, row
  locks and the functions that reach the server's files or other servers before anything is sent; then the
  statement goes through the extended protocol, which the server refuses to run with a second statement in it.
* **Each statement** runs inside ``BEGIN READ ONLY`` … ``ROLLBACK`` with ``SET LOCAL statement_timeout`` (the
  *server* cancels it after ``limits.timeout_s``), through a server-side cursor (``DECLARE … CURSOR``, which takes
  only a SELECT or VALUES) fetched in batches up to the row and byte caps, so a huge result never reaches memory. A
  watchdog thread sends PostgreSQL's cancel request (a second connection) if the whole statement, fetches
  included, outlives the limit.
* **Schema** from pg_catalog: tables of the current schema, columns with their types, primary and foreign keys;
  row counts exact (``COUNT(*)`` under the time limit) for tables the planner estimates below
  :data:`ESTIMATE_ABOVE` rows, the estimate (``pg_class.reltuples``) above.

The password comes from the URL, else from libpq's own places (``PGPASSWORD``, ``~/.pgpass``), else from
``SQLMASTER_DB_PASSWORD_FILE``; ``PGHOST``, ``PGPORT``, ``PGUSER`` and ``PGDATABASE`` fill what the URL leaves out.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

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
    fetch_capped,
)
from sqlmaster.engines.source import ServerURL, password_from_file
from sqlmaster.engines.statement import check_read_statement
from sqlmaster.engines.values import normalise_row

CONNECT_TIMEOUT_S = 10
ESTIMATE_ABOVE = 1_000_000  # rows (pg_class.reltuples) above which a table's count is the planner's estimate
SESSION_SETTINGS = {
    "default_transaction_read_only": "on",
    "idle_in_transaction_session_timeout": "60s",
    "lock_timeout": "2s",
    "application_name": "sqlmaster",
}
FIX = (
    "Check that the server runs and the host and port are right, and the login: pass the password through "
    "PGPASSWORD, ~/.pgpass or SQLMASTER_DB_PASSWORD_FILE rather than in the URL"
)
_TIMEOUT_STATES = ("57014",)  # query_canceled: statement_timeout or our cancel request
_DENIED_STATES = ("25006", "42501")  # read_only_sql_transaction, insufficient_privilege


def _settings_option(settings: dict[str, str]) -> str:
    return " ".join(f"-c {key}={value}" for key, value in settings.items())


def connect(url: str, readonly: bool = True) -> Any:
    """A psycopg connection (autocommit: our transactions are explicit) to the server ``url`` names."""
    import psycopg

    try:
        parts = ServerURL.parse(url)
    except ValueError as exc:
        raise DatabaseUnavailable(f"{exc}. Write postgresql://USER@HOST:PORT/DATABASE") from None
    params: dict[str, Any] = dict(parse_qsl(parts.query))
    params.update({k: v for k, v in [("host", parts.host), ("port", parts.port), ("user", parts.user),
                                     ("dbname", parts.database)] if v})  # fmt: skip
    password = parts.password if parts.password is not None else _fallback_password()
    if password is not None:
        params["password"] = password
    if readonly:
        params["options"] = f"{params.get('options', '')} {_settings_option(SESSION_SETTINGS)}".strip()
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    try:
        return psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        reason = _scrub(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, password)
        raise DatabaseUnavailable(f"cannot connect to {parts.shown()}: {reason}. {FIX}") from None


def _fallback_password() -> str | None:
    """SQLMASTER_DB_PASSWORD_FILE's password, unless libpq has its own (PGPASSWORD, a password file)."""
    if os.environ.get("PGPASSWORD"):
        return None
    if Path(os.environ.get("PGPASSFILE", Path.home() / ".pgpass")).is_file():
        return None
    return password_from_file()


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


class PostgreSQLSession(Session):
    def __init__(self, engine: PostgreSQLEngine, conn: Any) -> None:
        self.engine = engine
        self._conn = conn

    def run(self, sql: str, limits: Limits = DEFAULT_LIMITS) -> list[Row]:
        statement = check_read_statement(sql, self.engine.dialect, limits)
        return self._read(statement, (), limits)

    def _read(self, statement: str, params: tuple[Any, ...], limits: Limits) -> list[Row]:
        """Run ``statement`` in a read-only transaction that is rolled back, under the server's statement timeout."""
        import psycopg

        timeout_ms = max(1, int(limits.timeout_s * 1000))
        timer = threading.Timer(limits.timeout_s + 0.5, self._conn.cancel_safe)
        timer.start()
        try:
            self._conn.execute("BEGIN TRANSACTION READ ONLY")
            self._conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            with self._conn.cursor(name="sqlmaster_read") as cursor:
                # The extended protocol (params given) refuses a second statement; %% is how psycopg writes %.
                cursor.execute(statement if params else statement.replace("%", "%%"), params or [])
                return fetch_capped(cursor.fetchmany, limits, normalise_row)
        except psycopg.Error as exc:
            raise _query_error(exc, limits) from None
        finally:
            timer.cancel()
            self._rollback()

    def _rollback(self) -> None:
        """End the statement's transaction; a lost connection surfaces at the next statement, as a QueryError."""
        import psycopg

        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel_safe()
                self._conn.execute("ROLLBACK")

    def schema(self, count_rows: bool = True) -> Schema:
        meta = Limits(timeout_s=30, max_rows=1_000_000)
        tables = self._read(
            "SELECT c.oid, c.relname, c.reltuples::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.oid",
            (),
            meta,
        )
        return Schema(tuple(self._table(oid, name, estimate, count_rows, meta) for oid, name, estimate in tables))

    def _table(self, oid: int, name: str, estimate: int, count_rows: bool, meta: Limits) -> Table:
        cols = self._read(
            "SELECT attnum, attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
            meta,
        )
        keys = self._read(
            "SELECT k.contype, array_to_string(k.conkey, ' '), r.relname, array_to_string(k.confkey, ' '), "
            "k.confrelid FROM pg_constraint k "
            "LEFT JOIN pg_class r ON r.oid = k.confrelid WHERE k.conrelid = %s AND k.contype IN ('p', 'f') "
            "ORDER BY k.conname",
            (oid,),
            meta,
        )
        by_number = {num: col for num, col, _, _ in cols}
        primary = {by_number[n] for kind, conkey, *_ in keys if kind == "p" for n in _numbers(conkey)}
        foreign = tuple(
            ForeignKey(
                tuple(by_number[n] for n in _numbers(conkey)), ref, self._column_names(ref_oid, _numbers(confkey))
            )
            for kind, conkey, ref, confkey, ref_oid in keys
            if kind == "f"
        )
        columns = tuple(Column(col, typ, bool(nn), col in primary) for _, col, typ, nn in cols)
        return Table(name, columns, foreign, self._count(name, estimate) if count_rows else None)

    def _column_names(self, oid: int, numbers: list[int]) -> tuple[str, ...]:
        rows = self._read("SELECT attnum, attname FROM pg_attribute WHERE attrelid = %s", (oid,), DEFAULT_LIMITS)
        names = {num: name for num, name in rows}
        return tuple(names[n] for n in numbers)

    def _count(self, name: str, estimate: int) -> int | None:
        if estimate > ESTIMATE_ABOVE:
            return estimate
        try:
            sql = f"SELECT COUNT(*) FROM {self.engine.quote_identifier(name)}"
            return int(self._read(sql, (), DEFAULT_LIMITS)[0][0])
        except QueryError:
            return estimate if estimate >= 0 else None

    def close(self) -> None:
        self._conn.close()


def _numbers(value: str | None) -> list[int]:
    """Column numbers from pg_constraint's conkey/confkey, as ``array_to_string(..., ' ')`` gives them."""
    return [int(v) for v in (value or "").split()]


def _query_error(exc: Exception, limits: Limits) -> QueryError:
    state = getattr(exc, "sqlstate", None) or ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state in _TIMEOUT_STATES:
        return QueryError("timeout", f"exceeded {limits.timeout_s:g}s")
    if state in _DENIED_STATES:
        return QueryError("denied", first)
    return QueryError("sql", first)


class PostgreSQLEngine(Engine):
    name = "postgresql"
    dialect = "postgres"
    url_schemes = ("postgresql", "postgres")
    answer_words = ("NULLS", "FIRST", "LAST", "ILIKE", "ARRAY_AGG", "DOUBLE", "PRECISION")
    answer_operators = ("[", "]", "~")  # (ARRAY_AGG(x ORDER BY y))[1]; ~ '^...$': text that reads as a number

    def open_readonly(self, source: str, limits: Limits = DEFAULT_LIMITS) -> PostgreSQLSession:
        return PostgreSQLSession(self, connect(source, readonly=True))
