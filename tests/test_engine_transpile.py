"""SQLite-flavoured SQL on DuckDB: each transpile rule checked by running the SQL on both engines over the same rows,
and the scratch databases (the synthesized databases rebuilt on DuckDB: same rows, typed, locked down)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from sqlmaster.engines.base import Limits, QueryError
from sqlmaster.engines.scratch import DuckDBScratchHost, ScratchData, ScratchTable, read_synthesized
from sqlmaster.engines.transpile import TranspileError, sqlite_text, transpile
from sqlmaster.evaluate.execution import normalize_rows, prepare_example, results_match

# sql-create-context's shape: most columns VARCHAR, compared with numbers and summed
CONTEXT = (
    "CREATE TABLE games (Team VARCHAR, year VARCHAR, points VARCHAR, wins INTEGER, losses INTEGER);"
    "CREATE TABLE coach (team VARCHAR, name VARCHAR)"
)
ROWS = {
    "games": [
        ("Ajax", "2009", "12", 7, 2),
        ("ajax", "2010", "9", 7, 4),
        ("PSV", "1998", "n/a", 3, 0),
        ("Feyenoord", "2010", "30", 9, 3),
        ("PSV", None, "4", 2, 7),
    ],
    "coach": [("Ajax", "Ten Hag"), ("PSV", "Bosz"), ("Feyenoord", None)],
}


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[sqlite3.Connection, DuckDBScratchHost, ScratchData]]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(CONTEXT)
    for table, rows in ROWS.items():
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    data = read_synthesized([conn.serialize()])
    host = DuckDBScratchHost()
    yield conn, host, data
    host.close()
    conn.close()


def _both(engines: tuple[sqlite3.Connection, DuckDBScratchHost, ScratchData], sql: str) -> tuple[list, list, str]:
    conn, host, data = engines
    expected = conn.execute(sql).fetchall()
    engine_sql = transpile(sql, "duckdb", data.types)
    example = host.build(data)
    try:
        got = example.run(0, engine_sql)
    finally:
        example.close()
    return normalize_rows(expected), got, engine_sql


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT Team FROM games WHERE year = "2009"',  # DQS: a string, not a column
        "SELECT team FROM games WHERE year = 2010",  # text column meets a number: compared as text
        "SELECT team FROM games WHERE year > 1999",  # ... as text, not as numbers
        "SELECT team FROM games WHERE year IN (2009, 1998) OR year BETWEEN 2010 AND 2011",
        "SELECT team FROM games WHERE wins = '7'",  # numeric column meets a string that reads as a number
        "SELECT SUM(points), AVG(points) FROM games",  # text summed: 'n/a' counts 0, NULL is skipped
        "SELECT team, points + 1 FROM games",
        "SELECT wins / losses, wins / 2, 7 / 2 FROM games",  # integer division; by zero is NULL
        "SELECT team FROM games WHERE TEAM LIKE 'AJ%'",  # LIKE ignores case, names too
        "SELECT team FROM games WHERE team GLOB 'A*'",  # GLOB does not
        "SELECT team FROM games WHERE wins LIKE '7%'",  # LIKE on a number
        "SELECT team, MAX(wins) FROM games",  # bare column from the MAX row
        "SELECT team, losses, MIN(losses) FROM games",
        "SELECT team, year, COUNT(*) FROM games GROUP BY team",  # bare column from the group's first row
        "SELECT team FROM games GROUP BY team ORDER BY COUNT(*) DESC LIMIT 1",  # a tie cut by LIMIT
        "SELECT team FROM games GROUP BY team ORDER BY COUNT(*) LIMIT 2",
        "SELECT year FROM games ORDER BY year LIMIT 2",  # NULL sorts first
        "SELECT year FROM games ORDER BY year DESC",
        'SELECT 2010 FROM games WHERE 2009 = "a" OR 2010 < "b"',  # numbers before strings, never converted
        "SELECT team FROM games WHERE points = 9 - 9 = 1",  # a comparison as an operand: 0 or 1
        "SELECT T1.team, T2.name FROM games AS T1 JOIN coach AS T2 ON T1.team = T2.team WHERE T1.year = 2010",
        "SELECT name FROM coach WHERE team IN (SELECT team FROM games WHERE wins > 5) ORDER BY name",
        # an outer column inside a grouped subquery is one value there, not a bare column
        "SELECT name FROM coach AS c WHERE c.team IN (SELECT c.team FROM games AS g GROUP BY g.year) ORDER BY name",
    ],
)
def test_duckdb_returns_what_sqlite_returns(engines, sql: str) -> None:
    expected, got, engine_sql = _both(engines, sql)
    ordered = "ORDER BY" in sql
    assert results_match(expected, got, ordered, column_order_matters=True), (engine_sql, expected, got)


def test_what_the_rules_write() -> None:
    types = {"t": {"a": "text", "b": "integer"}}
    assert transpile("SELECT A FROM T WHERE a = 5 AND b > '3'", "duckdb", types) == (
        """SELECT "a" FROM "t" WHERE "a" = '5' AND "b" > 3"""
    )
    assert transpile("SELECT a FROM t WHERE a LIKE 'x%'", "postgresql", types) == (
        """SELECT "a" FROM "t" WHERE "a" ILIKE 'x%'"""
    )
    assert transpile("SELECT a FROM t WHERE a LIKE 'x%'", "mysql", types) == (
        "SELECT `a` FROM `t` WHERE LOWER(`a`) LIKE LOWER('x%')"
    )
    assert transpile("SELECT b / 2 FROM t", "mysql", types) == "SELECT `b` DIV 2 FROM `t`"
    assert transpile("SELECT a, MAX(b) FROM t", "postgresql", types) == (
        """SELECT (ARRAY_AGG("a" ORDER BY "b" DESC NULLS LAST))[1], MAX("b") FROM "t\""""
    )
    assert transpile("SELECT anything", "sqlite") == "SELECT anything"  # SQLite's own SQL is left alone
    assert (sqlite_text(5), sqlite_text(5.5), sqlite_text(2.0)) == ("5", "5.5", "2.0")


@pytest.mark.parametrize(
    "sql, engine, cause",
    [
        ("SELECT * FROM t WHERE (", "duckdb", "parse"),
        ("SELECT 1; SELECT 2", "duckdb", "parse"),
        ("SELECT a FROM t WHERE a GLOB 'x*'", "postgresql", "unsupported"),
    ],
)
def test_what_cannot_be_carried_over_says_why(sql: str, engine: str, cause: str) -> None:
    with pytest.raises(TranspileError) as info:
        transpile(sql, engine, {"t": {"a": "text"}})
    assert info.value.cause == cause


def test_scratch_databases_hold_the_synthesized_rows_typed_and_locked(engines) -> None:
    _, host, _ = engines
    schemas = "SELECT count(*) FROM duckdb_schemas() WHERE schema_name LIKE 'sx_%'"
    before = host._conn.execute(schemas).fetchone()
    prepared = prepare_example("CREATE TABLE t (Name VARCHAR, Age INTEGER)", "SELECT name FROM t WHERE age > 30")
    data = read_synthesized(prepared.synth.databases)
    assert data.types == {"t": {"name": "text", "age": "integer"}} and len(data.rows) == len(prepared.synth.databases)
    example = host.build(data)
    try:
        for index, rows in enumerate(data.rows):
            assert sorted(example.run(index, 'SELECT * FROM "t"'), key=repr) == sorted(rows["t"], key=repr)
            gold = prepared.synth.gold_rows[index]
            assert results_match(
                normalize_rows(gold),
                example.run(index, transpile("SELECT name FROM t WHERE age > 30", "duckdb", data.types)),
                False,
            )
        for sql, kind in [
            ('DELETE FROM "t"', "denied"),
            ("SELECT * FROM read_csv('/etc/passwd')", "denied"),
            ("SET enable_external_access = true", "denied"),
            ("SELECT 1; SELECT 2", "multiple_statements"),
            ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", "timeout"),
        ]:
            with pytest.raises(QueryError) as info:
                example.run(0, sql, Limits(timeout_s=0.3))
            assert info.value.kind == kind, sql
        assert len(example.run(0, 'SELECT * FROM "t"', stop_after=1)) == 2  # more rows than asked for: cut short
    finally:
        example.close()
    with pytest.raises(ValueError, match="dropped"):  # the databases are gone once the example is done
        example.run(0, 'SELECT * FROM "t"')
    assert host._conn.execute(schemas).fetchone() == before


def test_a_numeric_column_holding_words_is_text_and_reported() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t (n INTEGER, m INTEGER); INSERT INTO t VALUES (1, 2), ('two', 3)")
    data = read_synthesized([conn.serialize()])
    assert data.types == {"t": {"n": "text", "m": "integer"}} and data.mixed == ["t.n"]
    example = ScratchData([ScratchTable("t", (("n", "text"),))], [{"t": [("1",)]}])
    assert example.types == {"t": {"n": "text"}}
