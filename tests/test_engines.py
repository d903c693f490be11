"""The engine layer's contract on the file engines (SQLite, DuckDB): read-only opening, one statement under limits,
schema with keys and row counts, values normalised alike, sources told apart and passwords redacted."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from sqlmaster.engines import DatabaseUnavailable, engine_for, open_database
from sqlmaster.engines.base import Limits, QueryError
from sqlmaster.engines.source import ServerURL, redact
from sqlmaster.engines.values import normalise_row

FAST = Limits(timeout_s=0.5)


def _sqlite(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE team (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "CREATE TABLE player (id INTEGER PRIMARY KEY, team_id INTEGER REFERENCES team(id), age INT);"
        "INSERT INTO team VALUES (1, 'Ajax'), (2, 'PSV'); INSERT INTO player VALUES (1, 1, 20), (2, 2, 31);"
    )
    conn.commit()
    conn.close()
    return path


def _duckdb(path: Path) -> Path:
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE team (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, founded DATE, budget DECIMAL(10, 2));"
        "CREATE TABLE player (id INTEGER, team_id INTEGER REFERENCES team(id), active BOOLEAN);"
        "INSERT INTO team VALUES (1, 'Ajax', '1900-03-18', 12.50); INSERT INTO player VALUES (1, 1, true);"
    )
    conn.close()
    return path


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.mark.parametrize("make, suffix", [(_sqlite, ".sqlite"), (_duckdb, ".duckdb")])
def test_schema_keys_counts_and_an_untouched_file(tmp_path: Path, make, suffix: str) -> None:
    path = make(tmp_path / f"club{suffix}")
    before = _fingerprint(path)
    with open_database(str(path)) as session:
        schema = session.schema()
        team, player = schema.table("team"), schema.table("PLAYER")
        assert team is not None and player is not None
        assert team.primary_key == ("id",) and team.row_count in (1, 2)
        keys = [(k.columns, k.ref_table, k.ref_columns) for k in player.foreign_keys]
        assert keys == [(("team_id",), "team", ("id",))]
        assert session.run("SELECT name FROM team WHERE id = 1") == [("Ajax",)]
    assert _fingerprint(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no -wal, -journal or .wal beside it


@pytest.mark.parametrize("make, suffix", [(_sqlite, ".sqlite"), (_duckdb, ".duckdb")])
@pytest.mark.parametrize(
    "sql, kind",
    [
        ("DELETE FROM team", "denied"),
        ("DROP TABLE team", "denied"),
        ("ATTACH ':memory:' AS m", "denied"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("SELECT nope FROM team", "sql"),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", "timeout"),
    ],
)
def test_writes_and_runaways_are_refused(tmp_path: Path, make, suffix: str, sql: str, kind: str) -> None:
    path = make(tmp_path / f"club{suffix}")
    before = _fingerprint(path)
    with open_database(str(path), FAST) as session:
        with pytest.raises(QueryError) as caught:
            session.run(sql, FAST)
        assert caught.value.kind == kind
        assert session.run("SELECT count(*) FROM team", FAST)[0][0] >= 1  # the session still answers
    assert _fingerprint(path) == before


def test_duckdb_cannot_reach_files_extensions_or_its_settings(tmp_path: Path) -> None:
    path = _duckdb(tmp_path / "club.duckdb")
    with open_database(str(path), FAST) as session:
        for sql in [
            "SELECT * FROM read_csv('/etc/passwd')",
            f"COPY team TO '{tmp_path / 'out.csv'}'",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET enable_external_access = true",
            "SELECT * FROM read_text('/etc/hostname')",
        ]:
            with pytest.raises(QueryError) as caught:
                session.run(sql, FAST)
            assert caught.value.kind in ("denied", "sql"), sql
    assert not (tmp_path / "out.csv").exists()


def test_rows_are_capped(tmp_path: Path) -> None:
    path = _duckdb(tmp_path / "club.duckdb")
    with open_database(str(path)) as session, pytest.raises(QueryError) as caught:
        session.run("SELECT * FROM range(100)", Limits(max_rows=10))
    assert caught.value.kind == "row_cap"


def test_values_mean_the_same_on_every_engine(tmp_path: Path) -> None:
    path = _duckdb(tmp_path / "club.duckdb")
    with open_database(str(path)) as session:
        assert session.run("SELECT founded, budget, true, 7 / 2, CAST(3 AS DECIMAL(5, 1)) FROM team") == [
            ("1900-03-18", 12.5, 1, 3.5, 3)
        ]
    assert normalise_row(
        [Decimal("2.50"), Decimal("4"), False, dt.datetime(2009, 1, 31, 12), dt.time(8, 5), dt.timedelta(hours=-1)]
    ) == (2.5, 4, 0, "2009-01-31 12:00:00", "08:05:00", "-01:00:00")


def test_sources_are_told_apart(tmp_path: Path) -> None:
    sqlite_file = _sqlite(tmp_path / "a.data")  # no telling suffix: the header decides
    duck_file = _duckdb(tmp_path / "b.data")
    assert engine_for(str(sqlite_file)).name == "sqlite"
    assert engine_for(str(duck_file)).name == "duckdb"
    text = tmp_path / "c.data"
    text.write_text("hello")
    with pytest.raises(DatabaseUnavailable, match="neither an SQLite nor a DuckDB"):
        engine_for(str(text))
    with pytest.raises(DatabaseUnavailable, match="no such file"):
        open_database(str(tmp_path / "missing.duckdb"))
    with pytest.raises(DatabaseUnavailable, match=r"oracle://scott:\*\*\*@db"):
        engine_for("oracle://scott:tiger@db/x")


def test_passwords_are_redacted() -> None:
    url = "postgresql://reader:s3cr%40t@db.example:5432/shop?sslmode=require"
    assert redact(f"cannot connect to {url}: refused") == (
        "cannot connect to postgresql://reader:***@db.example:5432/shop?sslmode=require: refused"
    )
    parsed = ServerURL.parse(url)
    assert (parsed.user, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "reader",
        "s3cr@t",
        "db.example",
        5432,
        "shop",
    )
    assert "s3cr" not in parsed.shown() and parsed.shown() == "postgresql://reader:***@db.example:5432/shop"
    assert parsed.without_password() == "postgresql://reader@db.example:5432/shop"  # what from-db's pairs store


@pytest.mark.parametrize(
    "text, shown",
    [
        ("postgres://reader:pw/x@db/shop", "postgres://reader:***@db/shop"),  # an unescaped '/' in the password
        ("mysql://r@db/shop?password=pw", "mysql://r@db/shop?password=***"),  # libpq/MySQL's query parameter
        ("postgresql://a:b@h/db?sslmode=require&PWD=zz", "postgresql://a:***@h/db?sslmode=require&PWD=***"),
        ('x "postgresql://a:b@c/d" and mysql://x:y@z/w, ok', 'x "postgresql://a:***@c/d" and mysql://x:***@z/w, ok'),
        ("see https://example.com/a@b", "see https://example.com/a@b"),  # no userinfo: unchanged
    ],
)
def test_every_form_of_url_password_is_redacted(text: str, shown: str) -> None:
    assert redact(text) == shown
