"""``sqlmaster db``: look at a database the way SQLMaster reads it, and create the SELECT-only login it should use.

    sqlmaster db schema postgresql://reader@db:5432/shop              # tables, columns, keys, row counts (read-only)
    sqlmaster db create-readonly-role postgresql://admin@db/shop --role sqlmaster_reader           # prints the SQL
    sqlmaster db create-readonly-role mysql://root@db/shop --role sqlmaster_reader --apply         # and runs it

A URL's password is never printed: give it through PGPASSWORD/~/.pgpass, ~/.my.cnf/MYSQL_PWD or
SQLMASTER_DB_PASSWORD_FILE (docs/databases.md).
"""

from __future__ import annotations

from typing import Annotated

import typer

from sqlmaster.errors import ConfigError

db_app = typer.Typer(help="Read a database's schema; print or apply the SQL of a SELECT-only login.")

SourceArg = Annotated[str, typer.Argument(help="A database file, or postgresql://USER@HOST:PORT/DB, mysql://...")]


@db_app.command("schema")
def schema_command(
    source: SourceArg,
    counts: Annotated[bool, typer.Option("--counts/--no-counts", help="Count each table's rows.")] = True,
) -> None:
    """Print SOURCE's tables with their columns, keys and row counts, read through the read-only engine layer."""
    from sqlmaster.engines import open_database
    from sqlmaster.engines.source import redact

    with open_database(source) as session:
        schema = session.schema(count_rows=counts)
        typer.echo(f"# {redact(source)} ({session.engine.name}): {len(schema.tables)} tables")
        for table in schema.tables:
            rows = "?" if table.row_count is None else str(table.row_count)
            typer.echo(f"{table.name} ({rows} rows)")
            for column in table.columns:
                flags = " PRIMARY KEY" * column.primary_key + " NOT NULL" * (column.not_null and not column.primary_key)
                typer.echo(f"  {column.name} {column.type}{flags}")
            for key in table.foreign_keys:
                typer.echo(f"  FOREIGN KEY ({', '.join(key.columns)}) -> {key.ref_table}({', '.join(key.ref_columns)})")


@db_app.command("create-readonly-role")
def create_readonly_role(
    url: Annotated[str, typer.Argument(help="The server and database, as an administrator: postgresql://... mysql://")],
    role: Annotated[str, typer.Option("--role", help="Name of the login to create.")] = "sqlmaster_reader",
    schema: Annotated[str, typer.Option("--schema", help="PostgreSQL: the schema to grant.")] = "public",
    apply: Annotated[bool, typer.Option("--apply", help="Run the SQL as URL's user (default: only print it).")] = False,
) -> None:
    """Print the SQL that creates a SELECT-only login for SQLMaster on URL's database (run it with --apply)."""
    from sqlmaster.engines import engine_for
    from sqlmaster.engines.roles import readonly_role_script, readonly_role_sql
    from sqlmaster.engines.source import ServerURL, is_url

    if not is_url(url):
        raise ConfigError(f"{url!r} is not a server URL. Pass postgresql://USER@HOST:PORT/DB or mysql://...")
    engine = engine_for(url).name
    database = ServerURL.parse(url).database
    if engine not in ("postgresql", "mysql") or not database:
        raise ConfigError(f"{ServerURL.parse(url).shown()} names no database on a PostgreSQL or MySQL server. "
                          "Write postgresql://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB")  # fmt: skip
    if not apply:
        typer.echo(readonly_role_script(engine, role, database, schema), nl=False)
        return
    statements = readonly_role_sql(engine, role, database, schema)
    _apply(engine, url, statements)
    how = (
        f"in psql: \\password {role}"
        if engine == "postgresql"
        else f"ALTER USER '{role}'@'%' IDENTIFIED BY '<password>' ACCOUNT UNLOCK"
    )
    typer.echo(f"created {role}; set its password next ({how}), then connect SQLMaster as {role}")


def _apply(engine: str, url: str, statements: list[str]) -> None:
    try:
        _run_statements(engine, url, statements)
    except ConfigError:
        raise
    except Exception as exc:  # the driver's error: an existing role, a missing privilege
        reason = str(exc.args[-1] if exc.args else exc).strip().splitlines()[0]
        raise ConfigError(f"the server refused it: {reason}. Run the printed SQL by hand, or fix and retry") from None


def _run_statements(engine: str, url: str, statements: list[str]) -> None:
    if engine == "postgresql":
        from sqlmaster.engines.postgresql import connect as pg_connect

        conn = pg_connect(url, readonly=False)
        try:
            for statement in statements:
                conn.execute(statement)
                typer.echo(f"ran: {statement};")
        finally:
            conn.close()
        return
    from sqlmaster.engines.mysql import connect as my_connect

    conn = my_connect(url, readonly=False)
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                typer.echo(f"ran: {statement};")
    finally:
        conn.close()
