"""The SQL that creates a SELECT-only login for SQLMaster on a PostgreSQL or MySQL/MariaDB server.

``sqlmaster db create-readonly-role URL --role NAME`` prints it (and runs it only with ``--apply``, connected as the
URL's user, who must be allowed to create roles); docs/databases.md shows the same statements. The role can connect
and read the tables of one database (one schema on PostgreSQL), nothing else: it cannot write, read the server's
files, run programs or reach other servers, and on PostgreSQL every session it opens is read-only and time-limited
by default, whichever client opens it. No password is ever written into the SQL: the role is created without one
(PostgreSQL: it cannot log in by password until you set one; MySQL: the account is locked), and the last comment
says how to set it without it landing in a shell history.
"""

from __future__ import annotations

import re

from sqlmaster.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# PostgreSQL's predefined roles that reach the server's files and programs, or every table (PostgreSQL 14+).
_PG_POWERFUL = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program", "pg_write_all_data")
STATEMENT_TIMEOUT = "30s"  # the role's default; SQLMaster also sets a shorter one per statement
IDLE_TIMEOUT = "60s"  # idle_in_transaction_session_timeout: a stuck client's transaction is ended


def _checked(what: str, name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a plain SQL name. Use letters, digits and underscores (at most 63), "
            "starting with a letter"
        )
    return name


def readonly_role_sql(engine: str, role: str, database: str, schema: str = "public", create: bool = True) -> list[str]:
    """The statements, in order (``create=False`` leaves out creating the login, e.g. when it exists)."""
    role, database, schema = _checked("role", role), _checked("database", database), _checked("schema", schema)
    if engine == "postgresql":
        return _postgresql(role, database, schema, create)
    if engine == "mysql":
        return _mysql(role, database, create)
    raise ConfigError(f"no read-only role SQL for engine {engine!r}. Pass a postgresql:// or mysql:// URL")


def _postgresql(role: str, database: str, schema: str, create: bool) -> list[str]:
    r = f'"{role}"'
    head = [f"CREATE ROLE {r} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"]
    return [
        *(head if create else []),
        f'GRANT CONNECT ON DATABASE "{database}" TO {r}',
        f'GRANT USAGE ON SCHEMA "{schema}" TO {r}',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {r}',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO {r}',
        *(f"REVOKE {powerful} FROM {r}" for powerful in _PG_POWERFUL),
        f"ALTER ROLE {r} SET default_transaction_read_only = on",
        f"ALTER ROLE {r} SET statement_timeout = '{STATEMENT_TIMEOUT}'",
        f"ALTER ROLE {r} SET idle_in_transaction_session_timeout = '{IDLE_TIMEOUT}'",
    ]


def _mysql(role: str, database: str, create: bool) -> list[str]:
    account = f"'{role}'@'%'"
    return [
        *([f"CREATE USER {account} ACCOUNT LOCK"] if create else []),
        f"GRANT SELECT, SHOW VIEW ON `{database}`.* TO {account}",
    ]


def readonly_role_script(engine: str, role: str, database: str, schema: str = "public") -> str:
    """The statements as a script to read or paste, with what each part is for and how to set the password."""
    statements = readonly_role_sql(engine, role, database, schema)
    if engine == "postgresql":
        notes = [
            f"-- A SELECT-only login for SQLMaster on database {database} (schema {schema}). Run as a superuser or",
            "-- a role with CREATEROLE. Each session of this role is read-only and time-limited by default.",
        ]
        tail = [
            "-- Optional, for every user of the database: no temporary tables for PUBLIC.",
            f'-- REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC;',
            f"-- Then set the password in psql (it is not echoed nor kept in history): \\password {role}",
        ]
    else:
        notes = [f"-- A SELECT-only account for SQLMaster on database {database}. Run as a user with CREATE USER."]
        tail = [
            "-- Then set the password and unlock the account, from a client that does not keep history:",
            f"-- ALTER USER '{role}'@'%' IDENTIFIED BY '<password>' ACCOUNT UNLOCK;",
        ]
    return "\n".join([*notes, *(f"{s};" for s in statements), *tail]) + "\n"
