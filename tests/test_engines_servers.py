"""The engine contract on real servers (tests/_servers.py starts a PostgreSQL and a MariaDB of our own): schema with
keys and counts, values normalised like the file engines', one read statement under limits, passwords found where
each client documents them, and a server that cannot be reached or refuses the login named without its password."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sqlmaster.engines import DatabaseUnavailable, engine_for, open_database
from sqlmaster.engines.base import Limits, QueryError
from tests._servers import OWNER_PASSWORD, READER_PASSWORD, Server

FAST = Limits(timeout_s=1.0)


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue("pg_server" if request.param == "postgresql" else "mysql_server")


def test_urls_name_their_engines() -> None:
    for url, name in [
        ("postgresql://a@h/d", "postgresql"),
        ("postgres://a@h/d", "postgresql"),
        ("mysql://a@h/d", "mysql"),
        ("mariadb://a@h/d", "mysql"),
    ]:
        assert engine_for(url).name == name


def test_schema_values_and_a_read(server: Server) -> None:
    with open_database(server.url()) as session:
        schema = session.schema()
        assert [t.name for t in sorted(schema.tables, key=lambda t: t.name)] == ["player", "team"]
        team, player = schema.table("team"), schema.table("player")
        assert team is not None and player is not None
        assert team.primary_key == ("id",) and (team.row_count, player.row_count) == (3, 4)
        keys = [(k.columns, k.ref_table, k.ref_columns) for k in player.foreign_keys]
        assert keys == [(("team_id",), "team", ("id",))]
        assert [c.name for c in team.columns] == ["id", "name", "founded", "budget"]
        assert team.columns[1].not_null and not team.columns[2].not_null
        rows = session.run(
            "SELECT t.name, t.founded, t.budget, p.active, p.age / 2 FROM team t JOIN player p ON p.team_id = t.id "
            "WHERE t.name LIKE '%a%' AND p.id = 1"
        )
        assert rows == [("Ajax", "1900-03-18", 12.5, 1, 10)]  # Decimal, date, bool and 20/2 as the file engines give


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("DELETE FROM team", "denied"),
        ("DROP TABLE team", "denied"),
        ("SELECT 1; DROP TABLE team", "multiple_statements"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("", "empty"),
        ("SELECT nope FROM team", "sql"),
        ("SELECT * FROM team FOR UPDATE", "denied"),
    ],
)
def test_only_one_read_statement(server: Server, sql: str, kind: str) -> None:
    with open_database(server.url()) as session:
        with pytest.raises(QueryError) as caught:
            session.run(sql, FAST)
        assert caught.value.kind == kind
        assert session.run("SELECT COUNT(*) FROM team", FAST) == [(3,)]


def test_rows_are_capped_without_reading_everything(server: Server) -> None:
    big = "SELECT a.id FROM team a, team b, team c, team d, team e, team f, team g, team h, team i, team j, team k"
    with open_database(server.url()) as session:
        start = time.monotonic()
        with pytest.raises(QueryError) as caught:
            session.run(big, Limits(max_rows=100, timeout_s=5))
        assert caught.value.kind == "row_cap"
        assert time.monotonic() - start < 5  # 3**11 = 177,147 rows were not all sent first
        assert session.run("SELECT 1", FAST) == [(1,)]


def test_the_server_cancels_a_long_statement(server: Server) -> None:
    sleep = "SELECT pg_sleep(30)" if server.engine == "postgresql" else "SELECT SLEEP(30) FROM team"
    with open_database(server.url()) as session:
        start = time.monotonic()
        try:
            session.run(sleep, FAST)
        except QueryError as exc:
            assert exc.kind == "timeout"
        assert time.monotonic() - start < FAST.timeout_s + 3
        assert session.run("SELECT 1", FAST) == [(1,)]


@pytest.mark.parametrize("how", ["url", "password_file", "client_env"])
def test_password_sources(server: Server, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass or ~/.my.cnf of the machine's
    for name in ("PGPASSWORD", "MYSQL_PWD", "SQLMASTER_DB_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    url = server.url() if how == "url" else server.url(password=None)
    if how == "password_file":
        (tmp_path / "pw").write_text(READER_PASSWORD + "\n")
        monkeypatch.setenv("SQLMASTER_DB_PASSWORD_FILE", str(tmp_path / "pw"))
    elif how == "client_env":
        monkeypatch.setenv("PGPASSWORD" if server.engine == "postgresql" else "MYSQL_PWD", READER_PASSWORD)
    with open_database(url) as session:
        assert session.run("SELECT COUNT(*) FROM player") == [(4,)]


def test_a_refused_login_and_an_unreachable_server_are_named_without_the_password(server: Server) -> None:
    wrong = server.url(password="Wrong-pw-c0ffee")
    with pytest.raises(DatabaseUnavailable) as refused:
        open_database(wrong)
    text = str(refused.value)
    assert "Wrong-pw-c0ffee" not in text and f"{server.host}:{server.port}/shop" in text and ":***@" in text
    assert "SQLMASTER_DB_PASSWORD_FILE" in text  # the fix
    closed = f"{server.engine}://owner:{OWNER_PASSWORD}@127.0.0.1:1/shop"
    with pytest.raises(DatabaseUnavailable) as unreachable:
        open_database(closed)
    assert OWNER_PASSWORD not in str(unreachable.value) and "127.0.0.1:1" in str(unreachable.value)


def test_large_tables_are_counted_by_the_servers_estimate(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ESTIMATE_ABOVE rows the planner's estimate is the count (no COUNT(*) runs); below, COUNT(*) does."""
    import importlib

    module = importlib.import_module(f"sqlmaster.engines.{server.engine}")
    _analyze(server)
    with open_database(server.url()) as session:
        ran: list[str] = []
        read = session._read  # type: ignore[attr-defined]
        monkeypatch.setattr(session, "_read", lambda sql, *a: ran.append(sql) or read(sql, *a))
        monkeypatch.setattr(module, "ESTIMATE_ABOVE", 0)
        estimated = session.schema()
        assert not [sql for sql in ran if sql.startswith("SELECT COUNT(*)")]
        assert estimated.table("team").row_count == 3  # type: ignore[union-attr]
        monkeypatch.setattr(module, "ESTIMATE_ABOVE", 1_000_000)
        ran.clear()
        assert session.schema().table("team").row_count == 3  # type: ignore[union-attr]
        assert len([sql for sql in ran if sql.startswith("SELECT COUNT(*)")]) == 2


def _analyze(server: Server) -> None:
    """Statistics for the estimate (ANALYZE changes no table's rows)."""
    if server.engine == "postgresql":
        import psycopg

        with psycopg.connect(server.owner_url, autocommit=True) as conn:
            conn.execute("ANALYZE team; ANALYZE player")
        return
    import pymysql

    conn = pymysql.connect(host=server.host, port=server.port, user="owner", password=OWNER_PASSWORD, database="shop")
    try:
        with conn.cursor() as cur:
            cur.execute("ANALYZE TABLE team, player")
    finally:
        conn.close()


def test_a_lost_connection_is_a_query_error(server: Server) -> None:
    """The server ends the session (restart, admin kill): the next statement is a QueryError, not a driver crash."""
    with open_database(server.url()) as session:
        assert session.run("SELECT 1") == [(1,)]
        if server.engine == "postgresql":
            import psycopg

            with psycopg.connect(server.owner_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'reader'")
        else:
            import pymysql

            conn = pymysql.connect(host=server.host, port=server.port, user="owner", password=OWNER_PASSWORD)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"KILL {session._thread_id}")  # type: ignore[attr-defined]
            finally:
                conn.close()
        with pytest.raises(QueryError):
            session.run("SELECT 1")
