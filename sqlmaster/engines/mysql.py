"""MySQL and MariaDB: a server database read through PyMySQL, read-only at every level the server offers.

* **Connect** without ``CLIENT.MULTI_STATEMENTS`` (the server then refuses a second statement in one call) and
  without ``LOCAL INFILE``; ``SET SESSION TRANSACTION READ ONLY`` for the whole session. Which server it is
  (``VERSION()`` names MariaDB) decides the time-limit setting below.
* **One statement.** :func:`.statement.check_read_statement` refuses a second statement, a non-read, ``INTO``
  (``OUTFILE``, ``DUMPFILE``, variables), row locks, ``LOAD_FILE`` and named locks before anything is sent.
* **Each statement** runs inside ``START TRANSACTION READ ONLY`` … ``ROLLBACK``, with the server's own limit set
  first — MariaDB's ``max_statement_time`` (seconds), MySQL's ``max_execution_time`` (milliseconds) — so the
  *server* stops it, and an unbuffered cursor (``SSCursor``) fetched in batches up to the row and byte caps, so a huge
  result never reaches memory. A watchdog thread sends ``KILL QUERY`` through a second connection if the statement
  outlives the limit anyway (MySQL's limit does not cover every statement) or a cap abandons it.
* **Schema** from information_schema: tables of the URL's database, columns with their types, primary and foreign
  keys; row counts exact (``COUNT(*)`` under the time limit) below :data:`ESTIMATE_ABOVE` rows, else
  ``TABLE_ROWS`` (InnoDB's estimate).

The password comes from the URL, else MySQL's option file (``~/.my.cnf``, ``[client]``), else ``MYSQL_PWD``, else
``SQLMASTER_DB_PASSWORD_FILE``.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import threading
from pathlib import Path
from typing import Any

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
ESTIMATE_ABOVE = 1_000_000  # rows (information_schema.TABLES.TABLE_ROWS) above which the estimate is the count
OPTION_FILE = Path("~/.my.cnf")
FIX = (
    "Check that the server runs and the host and port are right, and the login: pass the password through "
    "~/.my.cnf, MYSQL_PWD or SQLMASTER_DB_PASSWORD_FILE rather than in the URL"
)
# ER_STATEMENT_TIMEOUT (MariaDB), ER_QUERY_TIMEOUT (MySQL), ER_QUERY_INTERRUPTED (KILL QUERY)
_TIMEOUT_CODES = frozenset({1969, 3024, 1317})
# ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, access denied (table, column, command, specific privilege, database)
_DENIED_CODES = frozenset({1792, 1142, 1143, 1227, 1044, 1045, 1370})


def _option_file_password() -> bool:
    path = OPTION_FILE.expanduser()
    parser = configparser.RawConfigParser(strict=False, allow_no_value=True)
    try:
        parser.read(path)
    except configparser.Error:
        return False
    return parser.has_option("client", "password")


def connect_params(url: str) -> dict[str, Any]:
    """pymysql.connect's arguments for ``url`` (password found the documented way; never a multi-statement flag)."""
    try:
        parts = ServerURL.parse(url)
    except ValueError as exc:
        raise DatabaseUnavailable(f"{exc}. Write mysql://USER@HOST:PORT/DATABASE") from None
    if parts.query:
        raise DatabaseUnavailable(f"{parts.shown()} has URL parameters ({parts.query}), which are not supported. "
                                  "Put client settings in ~/.my.cnf")  # fmt: skip
    params: dict[str, Any] = {"host": parts.host or "localhost", "user": parts.user, "database": parts.database,
                              "connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True, "charset": "utf8mb4",
                              "local_infile": False, "client_flag": 0}  # fmt: skip
    if parts.port:
        params["port"] = parts.port
    if OPTION_FILE.expanduser().is_file():
        params["read_default_file"] = str(OPTION_FILE.expanduser())
    password = parts.password
    if password is None and not _option_file_password():
        password = os.environ.get("MYSQL_PWD") or password_from_file()
    if password is not None:
        params["password"] = password
    return params


def connect(url: str, readonly: bool = True) -> Any:
    import pymysql

    params = connect_params(url)
    shown = ServerURL.parse(url).shown()
    if not params.get("database"):
        raise DatabaseUnavailable(f"{shown} names no database. Write mysql://USER@HOST:PORT/DATABASE")
    try:
        conn = pymysql.connect(**params)
        if readonly:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
        return conn
    except pymysql.Error as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        password = params.get("password")
        reason = str(reason).replace(password, "***") if password else str(reason)
        raise DatabaseUnavailable(f"cannot connect to {shown}: {reason}. {FIX}") from None


class MySQLSession(Session):
    def __init__(self, engine: MySQLEngine, conn: Any, url: str) -> None:
        self.engine = engine
        self._conn = conn
        self._url = url
        self._thread_id = conn.thread_id()
        self.mariadb = "mariadb" in conn.get_server_info().lower()

    def run(self, sql: str, limits: Limits = DEFAULT_LIMITS) -> list[Row]:
        statement = check_read_statement(sql, self.engine.dialect, limits)
        return self._read(statement, None, limits)

    def _limit_statement(self, limits: Limits) -> str:
        if self.mariadb:
            return f"SET SESSION max_statement_time = {max(limits.timeout_s, 0.001):.3f}"
        return f"SET SESSION max_execution_time = {max(1, int(limits.timeout_s * 1000))}"

    def _read(self, statement: str, params: tuple[Any, ...] | None, limits: Limits) -> list[Row]:
        """Run ``statement`` in a read-only transaction that is rolled back, under the server's time limit."""
        import pymysql
        from pymysql.cursors import SSCursor

        try:
            with self._conn.cursor() as plain:
                plain.execute(self._limit_statement(limits))
                plain.execute("START TRANSACTION READ ONLY")
        except pymysql.Error as exc:
            raise _query_error(exc, limits) from None
        timer = threading.Timer(limits.timeout_s + 0.5, self._kill)
        timer.start()
        cursor = self._conn.cursor(SSCursor)
        try:
            cursor.execute(statement, params)
            return fetch_capped(cursor.fetchmany, limits, normalise_row)
        except QueryError:
            self._kill()  # abandoned at a cap: stop the server sending the rest
            raise
        except pymysql.Error as exc:
            raise _query_error(exc, limits) from None
        finally:
            timer.cancel()
            self._finish(cursor)

    def _finish(self, cursor: Any) -> None:
        import pymysql

        with contextlib.suppress(pymysql.Error):
            cursor.close()
        for _ in range(2):  # a late KILL QUERY may interrupt the ROLLBACK itself: once more
            try:
                with self._conn.cursor() as plain:
                    plain.execute("ROLLBACK")
                return
            except pymysql.Error:
                continue

    def _kill(self) -> None:
        """``KILL QUERY`` our statement through a second connection (the session itself is busy reading)."""
        import pymysql

        try:
            killer = pymysql.connect(**connect_params(self._url))
            try:
                with killer.cursor() as cur:
                    cur.execute(f"KILL QUERY {int(self._thread_id)}")
            finally:
                killer.close()
        except pymysql.Error:
            pass  # the statement ended meanwhile, or the server is gone: the session reports it

    def schema(self, count_rows: bool = True) -> Schema:
        meta = Limits(timeout_s=30, max_rows=1_000_000)
        tables = self._read(
            "SELECT TABLE_NAME, COALESCE(TABLE_ROWS, -1) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() ORDER BY CREATE_TIME, TABLE_NAME",
            None,
            meta,
        )
        return Schema(tuple(self._table(name, int(estimate), count_rows, meta) for name, estimate in tables))

    def _table(self, name: str, estimate: int, count_rows: bool, meta: Limits) -> Table:
        cols = self._read(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'NO', COLUMN_KEY = 'PRI' FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (name,),
            meta,
        )
        keys = self._read(
            "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME "
            "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
            "AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION",
            (name,),
            meta,
        )
        grouped: dict[str, list[tuple[str, str, str]]] = {}
        for constraint, column, ref_table, ref_column in keys:
            grouped.setdefault(constraint, []).append((column, ref_table, ref_column))
        foreign = tuple(
            ForeignKey(tuple(p[0] for p in parts), parts[0][1], tuple(p[2] for p in parts))
            for parts in grouped.values()
        )
        columns = tuple(Column(n, t, bool(nn), bool(pk)) for n, t, nn, pk in cols)
        return Table(name, columns, foreign, self._count(name, estimate) if count_rows else None)

    def _count(self, name: str, estimate: int) -> int | None:
        if estimate > ESTIMATE_ABOVE:
            return estimate
        try:
            sql = f"SELECT COUNT(*) FROM {self.engine.quote_identifier(name)}"
            return int(self._read(sql, None, DEFAULT_LIMITS)[0][0])
        except QueryError:
            return estimate if estimate >= 0 else None

    def close(self) -> None:
        self._conn.close()


def _query_error(exc: Exception, limits: Limits) -> QueryError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if code in _TIMEOUT_CODES:
        return QueryError("timeout", f"exceeded {limits.timeout_s:g}s")
    if code in _DENIED_CODES:
        return QueryError("denied", message)
    return QueryError("sql", message)


class MySQLEngine(Engine):
    name = "mysql"
    dialect = "mysql"
    url_schemes = ("mysql", "mariadb")
    quote = "`"
    string_quotes = ("'", '"')  # without ANSI_QUOTES in sql_mode, as MySQL and MariaDB start
    answer_words = ("CHAR", "SIGNED", "DOUBLE")

    def open_readonly(self, source: str, limits: Limits = DEFAULT_LIMITS) -> MySQLSession:
        return MySQLSession(self, connect(source, readonly=True), source)
