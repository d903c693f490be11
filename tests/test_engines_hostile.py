"""Hostile SQL against every engine: nothing is written (tables, row counts, sequences and large objects unchanged,
no file created), nothing is read from the server's files (a secret file's content never appears in a result or an
error), nothing runs past its limit, and the next query still answers.

Each server engine is attacked twice: as the SELECT-only role the fixture creates (``reader``), and as the owner with
every privilege (``owner``: a PostgreSQL superuser, a MariaDB ``ALL PRIVILEGES`` user), to show that the session's own
guards hold without the role. What holds where, honestly:

* writes, DDL, ``nextval``, temporary tables, ``SELECT … INTO``: the statement check, and behind it the server's
  read-only transaction (proved alone in ``test_the_read_only_transaction_holds_without_the_statement_check``);
* ``pg_read_file``, ``lo_import``, ``LOAD_FILE``, ``INTO OUTFILE``, ``COPY … TO PROGRAM``, ``dblink``, named locks:
  for ``reader`` the missing privilege (and the check); for ``owner`` only the statement check's refusal (a superuser
  *may* read files on its own server) — which is why docs/databases.md says to connect with the SELECT-only role;
* ``pg_sleep``/``SLEEP``/``BENCHMARK``: the server's own statement time limit, then the client's cancel/KILL QUERY.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from sqlmaster.engines import open_database
from sqlmaster.engines.base import Limits, QueryError
from tests._servers import OWNER_PASSWORD, Server

LIMITS = Limits(timeout_s=1.0)
MARGIN_S = 4.0  # generous: a shared 2-core machine
SECRET = f"TOPSECRET-{secrets.token_hex(8)}"

PG_CORPUS = [
    "SELECT pg_read_file('{secret}')",
    "SELECT pg_catalog.pg_read_file('{secret}', 0, 100)",
    "SELECT \"pg_read_file\"('{secret}')",
    "SELECT pg_read_binary_file('{secret}')",
    "SELECT * FROM pg_ls_dir('{files}')",
    "SELECT lo_import('{secret}')",
    "SELECT lo_create(0)",
    "SELECT query_to_xml('SELECT pg_read_file(''{secret}'')', true, true, '')",
    "SELECT query_to_xml('DELETE FROM team', true, true, '')",
    "COPY team TO PROGRAM 'touch {marker}'",
    "COPY (SELECT 1) TO '{marker}'",
    "COPY team FROM '{secret}'",
    "SELECT dblink('dbname=shop', 'DROP TABLE team')",
    "SELECT pg_sleep(30)",
    "SELECT count(*) FROM generate_series(1, 10000000000)",
    "SELECT * INTO newtable FROM team",
    "CREATE TABLE newtable AS SELECT * FROM team",
    "SELECT nextval('ticket')",
    "SELECT setval('ticket', 99)",
    "LOCK TABLE team",
    "SELECT * FROM team FOR UPDATE",
    "SET ROLE owner",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "CREATE TEMP TABLE scratch AS SELECT 1",
    "WITH gone AS (DELETE FROM team RETURNING *) SELECT * FROM gone",
    "SELECT pg_advisory_lock(1)",
    "SELECT 1; DROP TABLE team",
    "select 1 ; DELETE FROM player",
    "BEGIN; DELETE FROM team; COMMIT",
    "DO $$ BEGIN DELETE FROM team; END $$",
    "VACUUM team",
]
MYSQL_CORPUS = [
    "SELECT * FROM team INTO OUTFILE '{marker}'",
    "SELECT name FROM team LIMIT 1 INTO DUMPFILE '{marker}'",
    "SELECT LOAD_FILE('{secret}')",
    "SELECT `load_file`('{secret}')",
    "LOAD DATA INFILE '{secret}' INTO TABLE team",
    "SELECT SLEEP(30)",
    "SELECT BENCHMARK(100000000000, MD5('x'))",
    "SELECT GET_LOCK('sqlmaster', 30)",
    "SELECT * FROM team FOR UPDATE",
    "SELECT * FROM team LOCK IN SHARE MODE",
    "LOCK TABLES team WRITE",
    "CREATE TEMPORARY TABLE scratch (a INT)",
    "CREATE TABLE newtable AS SELECT * FROM team",
    "SELECT name INTO @stolen FROM team LIMIT 1",
    "SET SESSION TRANSACTION READ WRITE",
    "SET ROLE NONE",
    "SELECT 1; DROP TABLE team",
    "DO SLEEP(30)",
    "HANDLER team OPEN",
    "DELETE FROM player",
]
DUCKDB_CORPUS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM glob('{files}/*')",
    "ATTACH '{marker}' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "COPY team TO '{marker}'",
    "EXPORT DATABASE '{files}/export'",
    "CREATE TABLE newtable AS SELECT * FROM team",
    "SET enable_external_access = true",
    "SELECT 1; DROP TABLE team",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
]


def _state(server: Server) -> Any:
    """What a write would change, read as the owner outside SQLMaster: tables, row counts, sequences, objects."""
    if server.engine == "postgresql":
        import psycopg

        with psycopg.connect(server.owner_url, autocommit=True) as conn:
            return conn.execute(
                "SELECT (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class "
                "WHERE relnamespace = 'public'::regnamespace), (SELECT count(*) FROM team), "
                "(SELECT count(*) FROM player), (SELECT last_value FROM ticket), "
                "(SELECT count(*) FROM pg_largeobject_metadata)"
            ).fetchone()
    import pymysql

    conn = pymysql.connect(host=server.host, port=server.port, user="owner", password=OWNER_PASSWORD, database="shop")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = 'shop'), (SELECT COUNT(*) FROM team), (SELECT COUNT(*) FROM player)"
            )
            return cur.fetchone()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def secret_files(pg_server: Server, mysql_server: Server) -> Iterator[dict[str, Path]]:
    """A secret file each server's user can read (inside MariaDB's secure_file_priv), removed afterwards."""
    paths = {}
    for server in (pg_server, mysql_server):
        path = server.files / f"secret-{secrets.token_hex(4)}.txt"
        path.write_text(SECRET + "\n")
        path.chmod(0o644)
        paths[server.engine] = path
    yield paths
    for path in paths.values():
        path.unlink(missing_ok=True)


def _attack(session: Any, sql: str) -> tuple[str, float]:
    """Run one hostile statement; what came back (rows or error text) and how long it took."""
    start = time.monotonic()
    try:
        outcome = repr(session.run(sql, LIMITS))
    except QueryError as exc:
        outcome = f"{exc.kind}: {exc.message}"
    return outcome, time.monotonic() - start


def _cases(corpus: list[str], engine: str) -> list[Any]:
    return [pytest.param(engine, role, sql, id=f"{engine}-{role}-{i}") for role in ("reader", "owner")
            for i, sql in enumerate(corpus)]  # fmt: skip


@pytest.mark.parametrize(
    "engine, role, template", _cases(PG_CORPUS, "postgresql") + _cases(MYSQL_CORPUS, "mysql")
)  # fmt: skip
def test_hostile_sql_on_a_server(
    request: pytest.FixtureRequest, secret_files: dict[str, Path], engine: str, role: str, template: str
) -> None:
    server: Server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mysql_server")
    marker = server.files / f"written-{secrets.token_hex(4)}"
    sql = template.format(secret=secret_files[engine], files=server.files, marker=marker)
    before = _state(server)
    with open_database(server.owner_url if role == "owner" else server.url()) as session:
        outcome, elapsed = _attack(session, sql)
        assert SECRET not in outcome, f"{sql!r} read the secret file"
        assert elapsed < LIMITS.timeout_s + MARGIN_S, f"{sql!r} ran {elapsed:.1f}s"
        assert session.run("SELECT COUNT(*) FROM team", LIMITS) == [(3,)], f"no answer after {sql!r}"
    assert not marker.exists(), f"{sql!r} wrote {marker}"
    assert _state(server) == before, f"{sql!r} changed the database"
    if not any(word in template for word in ("SLEEP", "pg_sleep", "BENCHMARK", "generate_series")):
        assert outcome.split(":")[0] in ("denied", "sql", "multiple_statements"), f"{sql!r} ran: {outcome}"


@pytest.mark.parametrize("sql", DUCKDB_CORPUS)
def test_hostile_sql_on_duckdb(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "club.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE team (id INTEGER PRIMARY KEY, name VARCHAR); INSERT INTO team VALUES (1, 'a')")
    conn.close()
    secret, marker = tmp_path / "secret.txt", tmp_path / "written"
    secret.write_text(SECRET + "\n")
    before = path.read_bytes()
    with open_database(str(path), LIMITS) as session:
        outcome, elapsed = _attack(session, sql.format(secret=secret, files=tmp_path, marker=marker))
        assert SECRET not in outcome and "root:" not in outcome
        assert elapsed < LIMITS.timeout_s + MARGIN_S
        assert outcome.split(":")[0] in ("denied", "sql", "multiple_statements", "timeout"), outcome
        assert session.run("SELECT COUNT(*) FROM team", LIMITS) == [(1,)]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["club.duckdb", "secret.txt"]


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_the_read_only_transaction_holds_without_the_statement_check(
    request: pytest.FixtureRequest, engine: str
) -> None:
    """As the owner, with the token check bypassed (``_read`` is what ``run`` calls after it): the server refuses."""
    server: Server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mysql_server")
    before = _state(server)
    writes = (
        ["SELECT nextval('ticket')", "SELECT query_to_xml('SELECT nextval(''ticket'')', true, true, '')"]
        if engine == "postgresql"
        else ["DELETE FROM player", "CREATE TABLE newtable (a INT)", "SELECT 1; DROP TABLE team"]
    )  # fmt: skip
    with open_database(server.owner_url) as session:
        for sql in writes:
            with pytest.raises(QueryError) as caught:
                session._read(sql, None if engine == "mysql" else (), LIMITS)  # type: ignore[attr-defined]
            assert caught.value.kind in ("denied", "sql"), sql
        if engine == "postgresql":  # allowed in a read-only transaction; the ROLLBACK after every statement undoes it
            assert session._read("SELECT lo_create(0)", (), LIMITS)  # type: ignore[attr-defined]
    assert _state(server) == before
