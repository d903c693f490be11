"""DuckDB: a database file opened read-only with every escape hatch closed at connect time.

DuckDB takes its safety settings when the connection opens (``duckdb.connect(path, read_only=True, config=...)``):
``enable_external_access=false`` refuses files, URLs, ``ATTACH``, ``COPY`` and ``read_csv('/etc/passwd')``;
``autoinstall/autoload_known_extensions=false`` refuses ``INSTALL``/``LOAD``; ``lock_configuration=true`` refuses a
``SET`` that would undo them. Beside the settings, a statement must parse to exactly one SELECT (DuckDB's own
parser: ``duckdb.extract_statements``). A timer interrupts a statement past its time limit.
"""

from __future__ import annotations

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
from sqlmaster.engines.values import normalise_row

# Settings fixed when the connection opens; the ones DuckDB documents as its sandbox.
CONNECT_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "threads": 1,  # a scorer runs one worker per core
    "memory_limit": "1GB",
    "lock_configuration": True,  # last: nothing can be SET back afterwards
}


class DuckDBSession(Session):
    def __init__(self, engine: DuckDBEngine, conn: Any) -> None:
        self.engine = engine
        self._conn = conn

    def run(self, sql: str, limits: Limits = DEFAULT_LIMITS) -> list[Row]:
        import duckdb

        statement = self._one_select(sql, limits)
        timer = threading.Timer(limits.timeout_s, self._conn.interrupt)
        timer.start()
        try:
            cursor = self._conn.execute(statement)
            return fetch_capped(cursor.fetchmany, limits, normalise_row)
        except duckdb.InterruptException:
            raise QueryError("timeout", f"exceeded {limits.timeout_s:g}s") from None
        except duckdb.PermissionException as exc:
            raise QueryError("denied", str(exc).splitlines()[0]) from None
        except duckdb.Error as exc:
            raise QueryError("sql", str(exc).splitlines()[0]) from None
        finally:
            timer.cancel()

    @staticmethod
    def _one_select(sql: str, limits: Limits) -> str:
        import duckdb

        if len(sql) > limits.max_sql_chars:
            raise QueryError("sql", f"statement longer than {limits.max_sql_chars} characters")
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError("sql", str(exc).splitlines()[0]) from None
        if not statements:
            raise QueryError("empty", "no SQL statement")
        if len(statements) > 1:
            raise QueryError("multiple_statements", "more than one SQL statement")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise QueryError("denied", f"only SELECT is allowed, not {statements[0].type.name}")
        return statements[0].query

    def schema(self, count_rows: bool = True) -> Schema:
        names = self._conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = current_schema() ORDER BY table_oid"
        ).fetchall()
        return Schema(tuple(self._table(n, count_rows) for (n,) in names))

    def _table(self, name: str, count_rows: bool) -> Table:
        cols = self._conn.execute(
            "SELECT column_name, data_type, NOT is_nullable FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = ? "
            "ORDER BY column_index",
            [name],
        ).fetchall()
        constraints = self._conn.execute(
            "SELECT constraint_type, constraint_column_names, referenced_table, referenced_column_names "
            "FROM duckdb_constraints() WHERE database_name = current_database() "
            "AND schema_name = current_schema() AND table_name = ?",
            [name],
        ).fetchall()
        primary = {c for kind, columns, _, _ in constraints if kind == "PRIMARY KEY" for c in columns}
        foreign = tuple(
            ForeignKey(tuple(columns), ref_table, tuple(ref_columns))
            for kind, columns, ref_table, ref_columns in constraints
            if kind == "FOREIGN KEY"
        )
        columns = tuple(Column(n, t, bool(nn), n in primary) for n, t, nn in cols)
        count = None
        if count_rows:
            try:
                count = int(self.run(f"SELECT COUNT(*) FROM {self.engine.quote_identifier(name)}")[0][0])
            except QueryError:
                count = None
        return Table(name, columns, foreign, count)

    def close(self) -> None:
        self._conn.close()


class DuckDBEngine(Engine):
    name = "duckdb"
    dialect = "duckdb"
    url_schemes = ("duckdb",)
    file_suffixes = (".duckdb", ".ddb")
    answer_words = ("NULLS", "FIRST", "LAST", "ILIKE", "TRY_CAST", "DOUBLE", "ARG_MIN", "ARG_MAX")

    def open_readonly(self, source: str, limits: Limits = DEFAULT_LIMITS) -> DuckDBSession:
        import duckdb

        path = Path(source.removeprefix("duckdb://"))
        if not path.is_file():
            raise DatabaseUnavailable(
                f"cannot open DuckDB database {path}: no such file. Pass an existing .duckdb file"
            )
        try:
            conn = duckdb.connect(str(path), read_only=True, config=dict(CONNECT_CONFIG))
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            raise DatabaseUnavailable(
                f"cannot open DuckDB database {path}: {first}. Close the process that holds it for writing, "
                "or pass a copy"
            ) from None
        return DuckDBSession(self, conn)
