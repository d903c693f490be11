"""Scratch databases on a PostgreSQL or MySQL/MariaDB server (``--engine postgresql|mysql``): the server a user
names for the purpose, in which the tool creates its own namespaces and drops them again.

Where: ``SQLMASTER_SCRATCH_POSTGRESQL`` / ``SQLMASTER_SCRATCH_MYSQL`` hold a URL (``postgresql://scorer@db/scratch``,
``mysql://scorer@db/scratch``); the password, as everywhere, comes from the usual places (``PGPASSWORD``,
``~/.pgpass``, ``MYSQL_PWD``, ``SQLMASTER_DB_PASSWORD_FILE``) or the URL, and is never shown. Give the tool a role
of its own that may create schemas (PostgreSQL) or databases named ``sx_*`` (MySQL) and nothing else: no
superuser, no FILE privilege.

PostgreSQL: one connection per worker; an example's databases are schemas created **inside one transaction that
is rolled back** when the example is done, so nothing is ever committed and thousands of examples leave no
catalog behind. Each query runs under a savepoint that is rolled back after it (``SET LOCAL search_path`` to its
database, ``SET LOCAL statement_timeout``): even a write that got past the checks is undone.

MySQL/MariaDB: DDL commits there, so each database is a database ``sx_<machine>_<pid>_<n>_<i>`` created and
dropped (a new host first drops those of this machine's processes that are gone: workers end without cleaning up);
queries run inside ``START TRANSACTION READ ONLY`` (the server refuses writes), under the session's statement
time limit, with the binary collation (case-sensitive ``=`` as in SQLite) and without ``ONLY_FULL_GROUP_BY``
(SQLite's bare columns).

On both, a statement must parse (sqlglot, the engine's dialect) to exactly one query with no data-changing or
schema-changing part (``WITH d AS (DELETE ...)`` included) before it is sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from sqlmaster.engines.base import DEFAULT_LIMITS, DatabaseUnavailable, Limits, QueryError, Row, fetch_capped
from sqlmaster.engines.scratch import (
    TYPE_NAMES,
    ScratchData,
    ScratchExample,
    ScratchHost,
    cell_value,
    namespace_name,
    stale,
)
from sqlmaster.engines.source import ServerURL, password_from_file
from sqlmaster.engines.values import normalise_row

URL_ENV = {"postgresql": "SQLMASTER_SCRATCH_POSTGRESQL", "mysql": "SQLMASTER_SCRATCH_MYSQL"}
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Copy,
    exp.Into,
)
# Functions that reach past the scratch data (server files, other sessions, settings, locks); a role without
# superuser or FILE privileges is refused them anyway, this refuses them before they are sent.
DENIED_FUNCTIONS = re.compile(
    r"^(load_file|sys_\w+|pg_read_\w*file|pg_ls_\w+|pg_stat_file|lo_\w+|pg_terminate_backend|pg_cancel_backend|"
    r"set_config|dblink\w*|get_lock|release_\w*lock|pg_advisory\w*|benchmark|sleep|pg_sleep\w*|current_setting)$",
    re.IGNORECASE,
)


def check_read_only(sql: str, dialect: str, limits: Limits) -> None:
    """Refuse anything but one query without data- or schema-changing parts (``QueryError``)."""
    import sqlglot
    from sqlglot.errors import SqlglotError

    if len(sql) > limits.max_sql_chars:
        raise QueryError("sql", f"statement longer than {limits.max_sql_chars} characters")
    try:
        trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise QueryError("sql", str(exc).splitlines()[0]) from None
    if not trees:
        raise QueryError("empty", "no SQL statement")
    if len(trees) > 1:
        raise QueryError("multiple_statements", "more than one SQL statement")
    if not isinstance(trees[0], exp.Query) or trees[0].find(*_WRITES) is not None:
        raise QueryError("denied", "only a query (SELECT) is allowed")
    for func in trees[0].find_all(exp.Func):
        name = func.name if isinstance(func, exp.Anonymous) else func.sql_name()
        if DENIED_FUNCTIONS.match(name or ""):
            raise QueryError("denied", f"function {name.lower()} is not allowed")


def _url(engine: str) -> ServerURL:
    value = os.environ.get(URL_ENV[engine])
    example = "postgresql://scorer@db/scratch" if engine == "postgresql" else "mysql://scorer@db/scratch"
    if not value:
        raise DatabaseUnavailable(
            f"--engine {engine} needs a server to build its scratch databases on. Set {URL_ENV[engine]}={example} "
            "(a database where the tool may create and drop its own schemas)"
        )
    return ServerURL.parse(value)


def _host(url: ServerURL) -> str | None:
    """The host, or a Unix socket's directory (``postgresql://u@%2Frun%2Fpostgresql/db``, ``?host=/run/...``)."""
    from urllib.parse import parse_qs, unquote

    if url.host:
        return unquote(url.host)
    hosts = parse_qs(url.query).get("host")
    return hosts[0] if hosts else None


def _pq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _mq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class PostgresScratchHost(ScratchHost):
    engine = "postgresql"
    max_examples = 1  # one transaction holds the current example's schemas

    def __init__(self) -> None:
        import psycopg

        url = _url("postgresql")
        password = url.password if url.password is not None else password_from_file()
        try:
            self._conn = psycopg.connect(
                host=_host(url), port=url.port, user=url.user, dbname=url.database, password=password, autocommit=False
            )
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(f"cannot reach {url.shown()}: {first}. Check {URL_ENV['postgresql']}") from None

    def build(self, data: ScratchData) -> ScratchExample:
        names = [namespace_name(i) for i in range(len(data.rows))]
        self._conn.rollback()  # a fresh transaction: the example's schemas live and die in it
        with self._conn.cursor() as cur:
            _fill(cur, data, names, "postgresql", _pq, "CREATE SCHEMA {}")
        return ServerScratchExample(self, data, names)

    def run(self, schema: str, sql: str, limits: Limits) -> list[Row]:
        import psycopg

        check_read_only(sql, "postgres", limits)
        with self._conn.cursor() as cur:
            cur.execute("SAVEPOINT q")
            try:
                cur.execute(f"SET LOCAL search_path TO {_pq(schema)}")
                cur.execute(f"SET LOCAL statement_timeout = {max(1, int(limits.timeout_s * 1000))}")
                cur.execute(sql)
                return fetch_capped(cur.fetchmany, limits, normalise_row)
            except psycopg.errors.QueryCanceled:
                raise QueryError("timeout", f"exceeded {limits.timeout_s:g}s") from None
            except psycopg.errors.InsufficientPrivilege as exc:
                raise QueryError("denied", str(exc).splitlines()[0]) from None
            except psycopg.Error as exc:
                raise QueryError("sql", (str(exc).splitlines() or [type(exc).__name__])[0]) from None
            finally:
                cur.execute("ROLLBACK TO SAVEPOINT q")

    def drop(self, names: list[str]) -> None:
        self._conn.rollback()  # the schemas were never committed

    def close(self) -> None:
        self._conn.rollback()
        self._conn.close()


class ServerScratchExample(ScratchExample):
    def __init__(self, host: Any, data: ScratchData, names: list[str]) -> None:
        self.host, self.data, self.names = host, data, names
        self.engine = host.engine
        self.closed = False

    def run(self, index: int, sql: str, limits: Limits = DEFAULT_LIMITS, stop_after: int | None = None) -> list[Row]:
        if self.closed:
            raise ValueError("the example's scratch databases were dropped")
        rows: list[Row] = self.host.run(self.names[index], sql, limits)
        if stop_after is not None and len(rows) > stop_after:
            return [()] * (stop_after + 1)
        return rows

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.host.drop(self.names)


class MySQLScratchHost(ScratchHost):
    engine = "mysql"
    max_examples = 1  # an example's databases are dropped before the next is built: fewer left by a killed worker

    def __init__(self) -> None:
        import pymysql

        url = _url("mysql")
        password = url.password if url.password is not None else password_from_file()
        host = _host(url)
        where: dict[str, Any] = (
            {"unix_socket": host} if host and host.startswith("/") else {"host": host or "localhost"}
        )
        if url.port:
            where["port"] = url.port
        try:
            self._conn = pymysql.connect(
                user=url.user,
                password=password or os.environ.get("MYSQL_PWD") or "",
                charset="utf8mb4",
                autocommit=True,
                **where,
            )
        except pymysql.Error as exc:
            raise DatabaseUnavailable(f"cannot reach {url.shown()}: {exc.args[-1]}. Check {URL_ENV['mysql']}") from None
        with self._conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            self._mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
            # SQLite's bare columns (no ONLY_FULL_GROUP_BY); averages with a double's digits, not 4 decimals
            cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
            cur.execute("SET SESSION div_precision_increment = 30")
        self._timeout: float | None = None
        self._current: str | None = None
        self._sweep()

    def _sweep(self) -> None:
        """Drop the databases of this machine's workers that are gone (a worker leaves the scorer by ``os._exit``
        or the watchdog's SIGKILL, without cleaning up)."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'sx\\_%'")
            for name in stale([row[0] for row in cur.fetchall()]):
                cur.execute(f"DROP DATABASE IF EXISTS {_mq(name)}")

    def build(self, data: ScratchData) -> ScratchExample:
        names = [namespace_name(i) for i in range(len(data.rows))]
        with self._conn.cursor() as cur:
            _fill(cur, data, names, "mysql", _mq, "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return ServerScratchExample(self, data, names)

    def run(self, schema: str, sql: str, limits: Limits) -> list[Row]:
        import pymysql

        check_read_only(sql, "mysql", limits)
        with self._conn.cursor() as cur:
            self._prepare(cur, schema, limits.timeout_s)
            cur.execute("START TRANSACTION READ ONLY")
            try:
                cur.execute(sql)  # no parameters: a % in it stays as written
                return fetch_capped(cur.fetchmany, limits, normalise_row)
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else 0
                if code in (1969, 3024):  # MariaDB max_statement_time, MySQL max_execution_time
                    raise QueryError("timeout", f"exceeded {limits.timeout_s:g}s") from None
                raise QueryError("sql", str(exc.args[-1])) from None
            except pymysql.Error as exc:
                raise QueryError("sql", str(exc.args[-1])) from None
            finally:
                cur.execute("ROLLBACK")

    def _prepare(self, cur: Any, schema: str, timeout_s: float) -> None:
        if self._current != schema:
            cur.execute(f"USE {_mq(schema)}")
            self._current = schema
        if self._timeout != timeout_s:
            if self._mariadb:
                cur.execute(f"SET SESSION max_statement_time = {timeout_s:g}")
            else:
                cur.execute(f"SET SESSION max_execution_time = {max(1, int(timeout_s * 1000))}")
            self._timeout = timeout_s

    def drop(self, names: list[str]) -> None:
        with self._conn.cursor() as cur:
            for schema in names:
                cur.execute(f"DROP DATABASE IF EXISTS {_mq(schema)}")
        self._current = None

    def close(self) -> None:
        self._conn.close()


def _fill(cur: Any, data: ScratchData, names: list[str], engine: str, quote: Callable[[str], str], create: str) -> None:
    """Each synthesized database as a namespace (``create``: its SQL, ``{}`` the quoted name) holding the example's
    tables, typed for ``engine``, and their rows: the same on PostgreSQL (schemas) and MySQL (databases)."""
    types = TYPE_NAMES[engine]
    for schema, rows in zip(names, data.rows, strict=True):
        cur.execute(create.format(quote(schema)))
        for t in data.tables:
            target = f"{quote(schema)}.{quote(t.name)}"
            cur.execute(f"CREATE TABLE {target} ({', '.join(f'{quote(n)} {types[k]}' for n, k in t.columns)})")
            table_rows = [
                tuple(cell_value(v, k) for v, (_, k) in zip(r, t.columns, strict=True)) for r in rows.get(t.name, [])
            ]
            if table_rows:
                marks = ", ".join(["%s"] * len(t.columns))
                cur.executemany(f"INSERT INTO {target} VALUES ({marks})", table_rows)
