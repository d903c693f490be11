"""One scorer for context rows and real-database rows: conventions, ORDER BY ties, mixed files, bad rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sqlmaster.data.spider import database_path
from sqlmaster.evaluate.conventions import apply_convention, first_statement
from sqlmaster.evaluate.exact_match import exact_match, normalize_sql, signature
from sqlmaster.evaluate.execution import plan_gold, score_on_database_file
from sqlmaster.evaluate.score import SCORER_FIELDS, Score, ScoreInputError, ScoreSettings, score_file

SPIDER_DB_DIR = database_path("concert_singer").parent  # the shipped flat layout: <db_id>.sqlite
CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def ties_db(tmp_path: Path) -> Path:
    """A real database whose ORDER BY keys tie: three singers aged 30, two aged 40."""
    path = tmp_path / "ties" / "ties.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE singer (name TEXT, age INTEGER, country TEXT);"
        "INSERT INTO singer VALUES ('ann', 30, 'fr'), ('bob', 40, 'fr'), ('cid', 30, 'us'), ('dan', 40, 'us'),"
        " ('eve', 30, 'fr'), ('fay', 50, 'fr');"
    )
    conn.commit()
    conn.close()
    return path


# ------------------------------------------------------------------------------------------------ conventions


def test_official_convention_removes_distinct_outside_strings() -> None:
    sql = "SELECT DISTINCT name, 'distinct' FROM t WHERE \"distinct\" > = 1 AND count(distinct x) != 2 -- distinct"
    assert apply_convention(sql, "official") == (
        "SELECT  name, 'distinct' FROM t WHERE \"distinct\" >= 1 AND count( x) != 2 -- distinct"
    )
    assert apply_convention(sql, "strict") == sql
    with pytest.raises(ValueError, match="unknown convention"):
        apply_convention(sql, "lenient")


def test_each_convention_on_a_real_database() -> None:
    gold = "SELECT DISTINCT country FROM singer"
    missing_distinct = "SELECT country FROM singer"  # concert_singer has several singers per country
    db = database_path("concert_singer")
    assert not score_on_database_file(db, gold, missing_distinct, convention="strict")[1].match
    assert score_on_database_file(db, gold, missing_distinct, convention="official")[1].match
    # A wrong query is wrong under both.
    assert not score_on_database_file(db, gold, "SELECT name FROM singer", convention="official")[1].match


@pytest.mark.parametrize("convention", ["official", "strict"])
def test_convention_is_recorded_with_the_other_beside_it(tmp_path: Path, convention: str) -> None:
    rows = [
        {"db_id": "concert_singer", "answer": "SELECT DISTINCT country FROM singer", "prediction": p}
        for p in ("SELECT country FROM singer", "SELECT DISTINCT country FROM singer", "SELECT name FROM singer")
    ]
    settings = ScoreSettings(convention=convention)
    metrics = score_file(
        _write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0, settings=settings, db_dir=SPIDER_DB_DIR
    )
    other = "strict" if convention == "official" else "official"
    official, strict = (2 / 3, 1 / 3)
    assert metrics["convention"] == convention and metrics["settings"]["convention"] == convention
    assert metrics["execution_accuracy"] == pytest.approx(official if convention == "official" else strict)
    assert metrics[f"execution_accuracy_{other}"] == pytest.approx(strict if convention == "official" else official)
    records = _records(tmp_path / "out")
    assert [r["execution_match"] for r in records] == [convention == "official", True, False]
    assert [r[f"execution_match_{other}"] for r in records] == [convention != "official", True, False]


@pytest.mark.parametrize(
    ("sql", "first"),
    [
        ("SELECT a FROM t; DROP TABLE t", "SELECT a FROM t;"),
        ("SELECT a FROM t;", "SELECT a FROM t;"),
        ("SELECT a FROM t", "SELECT a FROM t"),
        # a ; inside a string, a quoted name or a comment does not end the statement
        ("SELECT 'a;b' FROM t; SELECT 2", "SELECT 'a;b' FROM t;"),
        ('SELECT "x;y", [p;q] FROM t -- c;d\n; SELECT 2', 'SELECT "x;y", [p;q] FROM t -- c;d\n;'),
        ("SELECT a /* ; */ FROM t ; SELECT 2 ; SELECT 3", "SELECT a /* ; */ FROM t ;"),
    ],
)
def test_official_convention_keeps_the_first_statement(sql: str, first: str) -> None:
    # The official evaluator rebuilds each query from the first statement sqlparse finds; strict runs it as written.
    assert first_statement(sql) == first
    assert apply_convention(sql, "official") == first
    assert apply_convention(sql, "strict") == sql
    assert apply_convention("SELECT DISTINCT a FROM t; SELECT DISTINCT b FROM t", "official") == "SELECT  a FROM t;"


def test_a_trailing_statement_is_ignored_by_official_and_refused_by_strict(tmp_path: Path) -> None:
    gold = "SELECT name FROM singer WHERE age > 30"
    db = database_path("concert_singer")
    for trailing in ("; SELECT 1", ";SELECT name FROM singer", "; DROP TABLE singer"):
        valid, official = score_on_database_file(db, gold, gold + trailing, convention="official")
        assert valid and official.match and official.executes
        valid, strict = score_on_database_file(db, gold, gold + trailing, convention="strict")
        assert valid and not strict.match and not strict.executes
        assert strict.error is not None and "more than one SQL statement" in strict.error
    # Only the first statement counts: a wrong first statement is wrong whatever follows it.
    assert not score_on_database_file(db, gold, f"SELECT name FROM singer; {gold}", convention="official")[1].match
    rows = [{"db_id": "concert_singer", "answer": gold, "prediction": p} for p in (f"{gold}; SELECT 1", gold)]
    settings = ScoreSettings(convention="official")
    score_file(
        _write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0, settings=settings, db_dir=SPIDER_DB_DIR
    )
    records = _records(tmp_path / "out")
    assert [(r["execution_match"], r["execution_match_strict"]) for r in records] == [(True, False), (True, True)]
    assert records[0]["executes"] and records[0]["error"] is None


# ------------------------------------------------------------------------------------------------ ORDER BY ties


@pytest.mark.parametrize(
    ("gold", "prediction", "match"),
    [
        # key not in the output: the gold is re-run with its sort key to find the tied rows
        ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age, name DESC", True),
        ("SELECT name FROM singer ORDER BY age DESC", "SELECT name FROM singer ORDER BY age DESC, country", True),
        # key in the output
        ("SELECT name, age FROM singer ORDER BY age", "SELECT name, age FROM singer ORDER BY age, name DESC", True),
        ("SELECT age, name FROM singer ORDER BY 1", "SELECT age, name FROM singer ORDER BY age, name DESC", True),
        # rows that are not tied must stay in order
        ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC", False),
        ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY name", False),
        # no ties: plain order
        ("SELECT name FROM singer ORDER BY name", "SELECT name FROM singer ORDER BY name DESC", False),
    ],
)
def test_order_by_ties(ties_db: Path, gold: str, prediction: str, match: bool) -> None:
    valid, result = score_on_database_file(ties_db, gold, prediction)
    assert valid and result.executes
    assert result.match is match


def test_order_by_ties_on_synthesized_databases(tmp_path: Path) -> None:
    gold = "SELECT name FROM t ORDER BY age"
    rows = [
        {"context": CTX, "answer": gold, "prediction": "SELECT name FROM t ORDER BY age, name DESC"},
        {"context": CTX, "answer": gold, "prediction": "SELECT name FROM t ORDER BY age DESC"},
    ]
    score_file(_write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0)
    assert [r["execution_match"] for r in _records(tmp_path / "out")] == [True, False]


def test_gold_plan_keeps_plain_order_where_keys_cannot_be_added() -> None:
    assert plan_gold("SELECT DISTINCT name FROM singer ORDER BY age").tie_sql is None
    assert plan_gold("SELECT name FROM a UNION SELECT name FROM b ORDER BY name").key_columns == (0,)
    assert not plan_gold("SELECT x FROM (SELECT x FROM t ORDER BY x)").ordered


# ------------------------------------------------------------------------------------------------ one pipeline


def test_a_mixed_file_scores_context_and_database_rows_in_input_order(tmp_path: Path, ties_db: Path) -> None:
    spider = tmp_path / "dbs"
    spider.mkdir()
    (spider / "concert_singer").mkdir()
    (spider / "concert_singer" / "concert_singer.sqlite").symlink_to(database_path("concert_singer"))
    (spider / "ties.sqlite").symlink_to(ties_db)  # the flat layout works too
    rows = [
        {"question": "q1", "context": CTX, "answer": "SELECT name FROM t WHERE age > 3", "prediction": "SELECT 1"},
        {
            "question": "q2",
            "db_id": "concert_singer",
            "answer": "SELECT count(*) FROM singer",
            "prediction": "SELECT COUNT(*) FROM singer",
            "context": "CREATE TABLE unused (x)",
        },
        {
            "question": "q3",
            "db_path": str(ties_db),
            "answer": "SELECT name FROM singer WHERE age = 30",
            "prediction": "SELECT name FROM singer WHERE age = 30",
        },
        {"question": "q4", "context": CTX, "answer": "SELECT name FROM t", "prediction": "SELECT name FROM t"},
        {"question": "q5", "db_id": "ties", "answer": "SELECT max(age) FROM singer", "prediction": None},
    ]
    path = _write(tmp_path / "in.jsonl", rows)
    results = {}
    for workers in (0, 2):
        out = tmp_path / f"out{workers}"
        metrics = score_file(path, out, workers=workers, db_dir=spider)
        records = _records(out)
        assert [r["question"] for r in records] == ["q1", "q2", "q3", "q4", "q5"]
        assert all(type(r["execution_match"]) is bool for r in records)
        assert [r["execution_match"] for r in records] == [False, True, True, True, False]
        assert metrics["databases"] == {"real": 3, "synthesized": 2} and metrics["n_scored"] == 5
        results[workers] = [{k: v for k, v in r.items() if k != "error"} for r in records]
    assert results[0] == results[2]


# ------------------------------------------------------------------------------------------------ bad rows


@pytest.mark.parametrize(
    ("row", "db_dir", "message"),
    [
        ({"db_id": "no_such_db"}, "spider", r"in.jsonl:2: unknown db_id 'no_such_db': neither .* nor .* exists"),
        ({"db_id": "concert_singer"}, None, r"in.jsonl:2: the row names db_id 'concert_singer' but no --db-dir"),
        ({"db_path": "missing/x.sqlite"}, None, r"in.jsonl:2: database file for db_path .* not found"),
        ({"db_path": "{notdb}"}, None, r"in.jsonl:2: .* is not an SQLite database file"),
        ({"db_id": "../etc"}, "spider", r"in.jsonl:2: field 'db_id' must be a database name"),
        ({"db_id": 7}, "spider", r"in.jsonl:2: field 'db_id' must be a database name"),
        ({}, None, r"in.jsonl:2: no database for this row"),
        ({"line": 5}, None, r"in.jsonl:2: field\(s\) 'line' would be overwritten: the scorer writes them"),
        ({"error": None, "execution_match_strict": 1}, None, r"field\(s\) 'error', 'execution_match_strict' would"),
    ],
)
def test_bad_rows_are_errors_naming_the_line(
    tmp_path: Path, row: dict[str, Any], db_dir: str | None, message: str
) -> None:
    notdb = tmp_path / "notdb.sqlite"
    notdb.write_text("not a database")
    good = {"context": CTX, "answer": "SELECT name FROM t", "prediction": "SELECT name FROM t"}
    bad = {"answer": "SELECT 1", "prediction": "SELECT 1"}
    bad.update({k: (v.format(notdb=notdb) if isinstance(v, str) else v) for k, v in row.items()})
    path = _write(tmp_path / "in.jsonl", [good, bad])
    with pytest.raises(ScoreInputError, match=message):
        score_file(path, tmp_path / "out", workers=0, db_dir=SPIDER_DB_DIR if db_dir else None)
    assert not (tmp_path / "out" / "metrics.json").exists()


# ------------------------------------------------------------------------------------------------ exact match


def test_signature_never_rejects_what_normalisation_accepts() -> None:
    """The cheap token filter in front of exact match must be a necessary condition: on queries that sqlglot
    reprints differently (quotes, case, AS, ON TRUE, LIMIT -1, !=), every normalised match passes it."""
    from _scorer_data import seeded_subset

    from sqlmaster.evaluate import sqlast

    checked = 0
    for row in seeded_subset(400):
        tree = sqlast.parse(row["answer"])
        if tree is None:
            continue
        for variant in (tree.sql(dialect="sqlite"), tree.sql(dialect="sqlite").lower()):
            if normalize_sql(variant) == normalize_sql(row["answer"]):
                checked += 1
                assert signature(variant) == signature(row["answer"]), (variant, row["answer"])
                assert exact_match(variant, row["answer"])
    assert checked > 300
    assert exact_match("SELECT \"T1\".name FROM t AS T1 WHERE a != 'x'", "select t1.name from t t1 where a <> 'x'")
    assert not exact_match("SELECT name FROM t WHERE a > 1", "SELECT name FROM t WHERE a > 2")


def test_eval_score_command_scores_a_mixed_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    rows = [
        {"context": CTX, "answer": "SELECT name FROM t", "prediction": "SELECT name FROM t"},
        {
            "db_id": "concert_singer",
            "answer": "SELECT DISTINCT country FROM singer",
            "prediction": "SELECT country FROM singer",
        },
    ]
    path = _write(tmp_path / "in.jsonl", rows)
    env = {**os.environ, "PYTHONPATH": f"{repo}:{repo / 'cli'}"}
    args = ["-i", str(path), "-o", str(tmp_path / "out"), "--db-dir", str(SPIDER_DB_DIR), "--convention", "official"]
    proc = subprocess.run(
        [sys.executable, "-m", "sqlmaster.cli", "eval", "score", *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "execution accuracy 100.0% (official; strict 50.0%)" in proc.stdout
    assert [r["execution_match"] for r in _records(tmp_path / "out")] == [True, True]


def test_every_input_field_comes_back_untouched(tmp_path: Path) -> None:
    """Fields starting with "_" were once dropped and a user's "line" overwritten; now every field comes back as
    read, first and in its order, and a field named like one of the scorer's is refused (above)."""
    row = {
        "_id": 7,
        "__meta": {"run": [1, None, "x"]},
        "Line": "mine",
        "question": "q",
        "context": CTX,
        "answer": "SELECT name FROM t",
        "prediction": "SELECT name FROM t",
        "db_id": None,
    }
    score_file(_write(tmp_path / "in.jsonl", [row]), tmp_path / "out", workers=0)
    (record,) = _records(tmp_path / "out")
    assert list(record)[: len(row)] == list(row) and {k: record[k] for k in row} == row
    assert record["line"] == 1 and record["execution_match"] is True


def test_the_reserved_names_are_the_fields_the_scorer_writes() -> None:
    failed = Score(False, False, False, True, False, "scorer: crash", worker_failure=True)
    written = {*failed.record_fields(ScoreSettings().other_conventions), "line"}
    other = {*failed.record_fields(ScoreSettings(convention="official").other_conventions)}
    assert written | other == set(SCORER_FIELDS)
