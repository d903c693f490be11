"""Hostile SQL cannot escape the sandbox, write, or run away."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from sqlmaster.evaluate.execution import score_on_database_file
from sqlmaster.evaluate.sandbox import (
    ConnectionPool,
    Limits,
    QueryError,
    connection_from_bytes,
    lock_setup_connection,
    new_setup_connection,
    run_query,
    run_script,
    serialize_setup,
)
from sqlmaster.evaluate.synth import synthesize

CONTEXT = "CREATE TABLE t (id INTEGER, name VARCHAR, score INTEGER)"
GOLD = "SELECT name FROM t WHERE score > 3"


@pytest.fixture()
def conn() -> sqlite3.Connection:
    example = synthesize(CONTEXT, GOLD, k=1)
    assert example.gold_error is None
    return connection_from_bytes(example.databases[0], Limits(timeout_s=0.5, max_rows=500))


def _kind(conn: sqlite3.Connection, sql: str, limits: Limits | None = None) -> str:
    with pytest.raises(QueryError) as info:
        run_query(conn, sql, limits or Limits(timeout_s=0.5, max_rows=500))
    return info.value.kind


def test_attach_to_a_file_creates_no_file(conn: sqlite3.Connection, tmp_path: Path) -> None:
    target = tmp_path / "escape.db"
    assert _kind(conn, f"ATTACH DATABASE '{target}' AS x") == "denied"
    assert _kind(conn, f"VACUUM INTO '{tmp_path / 'copy.db'}'") == "denied"
    assert _kind(conn, "DETACH DATABASE main") == "denied"
    assert list(tmp_path.iterdir()) == []


def test_runaway_recursive_cte_stops_within_the_limit(conn: sqlite3.Connection) -> None:
    start = time.monotonic()
    sql = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"
    assert _kind(conn, sql) == "timeout"
    assert time.monotonic() - start < 2.0


def test_huge_cartesian_product_is_capped(conn: sqlite3.Connection) -> None:
    assert _kind(conn, "SELECT * FROM t a, t b, t c, t d") == "row_cap"
    # Aggregated, it streams nothing: the time limit stops it instead.
    assert _kind(conn, "SELECT COUNT(*) FROM t a, t b, t c, t d, t e, t f, t g") == "timeout"


def test_load_extension_denied(conn: sqlite3.Connection) -> None:
    assert _kind(conn, "SELECT load_extension('/tmp/evil.so')") == "denied"


def test_pragmas_denied(conn: sqlite3.Connection) -> None:
    assert _kind(conn, "PRAGMA user_version = 7") == "denied"
    assert _kind(conn, "PRAGMA writable_schema = ON") == "denied"
    assert _kind(conn, "PRAGMA journal_mode") == "denied"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1, 'x', 2)",
        "UPDATE t SET score = 0",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u (a)",
        "CREATE TEMP TABLE u (a)",
        "ALTER TABLE t ADD COLUMN z",
        "BEGIN",
    ],
)
def test_writes_denied(conn: sqlite3.Connection, sql: str) -> None:
    before = run_query(conn, "SELECT * FROM t")
    assert _kind(conn, sql) == "denied"
    assert run_query(conn, "SELECT * FROM t") == before


def test_oversized_values_and_multiple_statements_refused(conn: sqlite3.Connection) -> None:
    assert _kind(conn, "SELECT zeroblob(100000000)") == "sql"
    assert _kind(conn, "SELECT 1; SELECT 2") == "multiple_statements"
    assert _kind(conn, "SELEC name FROM t") == "sql"
    assert _kind(conn, "  ;  ") == "empty"
    assert run_query(conn, "SELECT 1;") == [(1,)]  # a trailing semicolon is fine


def test_setup_policy_denies_escapes_in_a_context(tmp_path: Path) -> None:
    setup = new_setup_connection()
    with pytest.raises(QueryError):
        run_script(setup, f"CREATE TABLE a (x); ATTACH '{tmp_path / 'z.db'}' AS z")
    assert list(tmp_path.iterdir()) == []
    example = synthesize("CREATE TABLE a (x); PRAGMA user_version = 3", "SELECT x FROM a")
    assert example.gold_error is not None and "context" in example.gold_error


def test_real_database_file_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "real.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE singer (name TEXT, age INT); INSERT INTO singer VALUES ('a', 30), ('b', 40)")
    db.commit()
    db.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    gold = "SELECT name FROM singer WHERE age > 35"
    assert score_on_database_file(path, gold, "SELECT name FROM singer WHERE age >= 36")[1].match
    assert not score_on_database_file(path, gold, "SELECT name FROM singer")[1].match
    valid, result = score_on_database_file(path, gold, "DELETE FROM singer")
    assert valid and not result.executes and not result.match
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.sqlite"]  # no journal, no copies
    with pytest.raises(FileNotFoundError):
        score_on_database_file(tmp_path / "missing.sqlite", gold, gold)


def test_pooled_connection_comes_back_clean() -> None:
    # A connection reused for another database keeps nothing of its last one: not its tables, not the query
    # policy, not a lenient text factory, not a progress handler; a double release never hands it out twice.
    pool = ConnectionPool(size=2)
    first = new_setup_connection()
    run_script(first, "CREATE TABLE secret (x); INSERT INTO secret VALUES ('old')")
    lock_setup_connection(first)
    first.text_factory = bytes
    first.set_progress_handler(lambda: 1, 1)  # would abort every statement
    pool.release(first)
    pool.release(first)
    fresh = new_setup_connection()
    run_script(fresh, "CREATE TABLE t (y)")
    image = serialize_setup(fresh)
    reused = pool.setup_connection(Limits(), image)
    assert reused is first
    run_script(reused, "INSERT INTO t VALUES ('new')")  # the setup policy again: inserts are allowed
    assert [r[0] for r in reused.execute("SELECT name FROM sqlite_master")] == ["t"]
    assert reused.execute("SELECT y FROM t").fetchall() == [("new",)]  # str again, and no abort
    assert pool.setup_connection(Limits(), image) is not first  # released twice, handed out once
    in_tx = new_setup_connection()
    in_tx.execute("BEGIN")
    pool.release(in_tx)  # inside a transaction: closed, not kept
    with pytest.raises(sqlite3.ProgrammingError):
        in_tx.execute("SELECT 1")
