"""Why a prediction missed (issue 33): a cause for each kind of miss, stored per record, counted in metrics.json and
printed under the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sqlmaster.evaluate.causes import CAUSES, Cause, cause_of, classify, count_causes, error_cause, record_cause
from sqlmaster.evaluate.report import leaderboard_rows, render_markdown
from sqlmaster.evaluate.score import ScoreSettings, failure_record, score_file

T = "SELECT name FROM t WHERE city = 'paris'"
J = "SELECT T1.name FROM t AS T1 JOIN u AS T2 ON T1.id = T2.tid"

# (cause, prediction, gold, the scorer's error) — one or more per cause id; the detail says what differs.
CASES: list[tuple[str, str, str, str | None, str | None]] = [
    ("parse_error", "SELEC name FROM t", T, 'sql: near "SELEC": syntax error', "syntax error"),
    ("parse_error", "SELECT name FROM t WHERE (", T, "sql: incomplete input", "incomplete input"),
    ("parse_error", "", T, "empty: no SQL to execute", "empty prediction"),
    ("execution_error", "SELECT nme FROM t", T, "sql: no such column: nme", "no such column"),
    ("execution_error", "SELECT name FROM tt", T, "sql: no such table: tt", "no such table"),
    ("execution_error", "SELECT x", T, "sql: misuse of aggregate: COUNT()", "misuse of aggregate"),
    ("execution_error", "SELECT 1; SELECT 2", T, "multiple_statements: more than one SQL statement", None),
    ("timeout", "WITH RECURSIVE ...", T, "timeout: exceeded 2s", "timeout: exceeded 2s"),
    ("timeout", "SELECT ...", T, "scorer: watchdog: example took longer than 30s", None),
    ("wrong_table", "SELECT name FROM u WHERE city = 'paris'", T, None, "table u for t"),
    ("join", "SELECT name FROM t", J, None, "1 table(s) for 2: table u missing"),
    ("join", J.replace("tid", "uid"), J, None, "join JOIN ON id = uid for JOIN ON id = tid"),
    ("aggregate", "SELECT COUNT(name) FROM t WHERE city = 'paris'", T, None, "aggregate COUNT extra"),
    ("aggregate", "SELECT name FROM t", "SELECT MAX(name) FROM t", None, "aggregate MAX missing"),
    ("aggregate", "SELECT MIN(age) FROM t", "SELECT MAX(age) FROM t", None, "aggregate MIN for MAX"),
    ("wrong_column", "SELECT title FROM t WHERE city = 'paris'", T, None, "selects title for name"),
    ("wrong_column", "SELECT name, age FROM t WHERE city = 'paris'", T, None, "selects 2 items for 1"),
    ("wrong_column", "SELECT name FROM t WHERE town = 'paris'", T, None, "condition on town for city"),
    ("distinct", "SELECT DISTINCT name FROM t WHERE city = 'paris'", T, None, "DISTINCT extra"),
    ("condition_missing", "SELECT name FROM t", T, None, "city = 'paris'"),
    ("condition_extra", T + " AND age > 3", T, None, "age > 3"),
    ("wrong_operator", "SELECT name FROM t WHERE city LIKE 'paris'", T, None, "city LIKE for ="),
    ("wrong_operator", "SELECT name FROM t WHERE age >= 3", "SELECT name FROM t WHERE age > 3", None, "age >= for >"),
    ("wrong_operator", "SELECT a FROM t WHERE b = 1 OR c = 2", "SELECT a FROM t WHERE b = 1 AND c = 2", None, None),
    ("wrong_literal", "SELECT name FROM t WHERE city = 'pariss'", T, None, "'pariss' for 'paris'"),
    ("wrong_literal", "SELECT name FROM t WHERE age > 4", "SELECT name FROM t WHERE age > 3", None, "4 for 3"),
    ("literal_case", "SELECT name FROM t WHERE city = 'Paris'", T, None, "'Paris' for 'paris'"),
    ("literal_case", 'SELECT name FROM t WHERE city = "Paris"', 'SELECT name FROM t WHERE city = "paris"', None, None),
    ("group_by", "SELECT a, COUNT(*) FROM t GROUP BY b", "SELECT a, COUNT(*) FROM t GROUP BY a", None, None),
    ("order_by", "SELECT a FROM t ORDER BY a DESC", "SELECT a FROM t ORDER BY a", None, "a DESC for ASC"),
    ("order_by", "SELECT a FROM t", "SELECT a FROM t ORDER BY a", None, "ORDER BY a missing"),
    ("limit", "SELECT a FROM t ORDER BY a LIMIT 2", "SELECT a FROM t ORDER BY a LIMIT 1", None, "LIMIT 2 for LIMIT 1"),
    ("other", "SELECT a + 1 FROM t", "SELECT a - 1 FROM t", None, None),
    ("other", "SELECT a FROM t", "SELECT a FROM t", None, "the same query after normalisation"),
]


@pytest.mark.parametrize(
    ("cause", "prediction", "gold", "error", "detail"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_each_kind_of_miss_gets_its_cause(
    cause: str, prediction: str, gold: str, error: str | None, detail: str | None
) -> None:
    found = classify(prediction, gold, error)
    assert found.cause == cause, found
    if detail is not None:
        assert found.detail == detail


def test_every_cause_is_tested_and_labelled() -> None:
    assert {c[0] for c in CASES} == set(CAUSES)
    assert all(label and "\n" not in label for label in CAUSES.values())
    assert all(key.isidentifier() and key == key.lower() for key in CAUSES)


def test_qualifiers_aliases_and_quoting_are_not_differences() -> None:
    """What exact match normalises away never names a cause: the first real difference does."""
    gold = 'SELECT T1.name FROM t AS T1 WHERE T1.city = "paris" AND T1.age > 3'
    prediction = "select NAME from t where age > 3 and city = 'pariss'"
    assert classify(prediction, gold) == Cause("wrong_literal", "'pariss' for 'paris'")


def test_scorer_failures_have_a_cause() -> None:
    assert failure_record("watchdog: example took longer than 30s").cause == "timeout"
    assert failure_record("CPU-time limit: a statement ran past its CPU budget").cause == "timeout"
    crashed = failure_record("worker process crashed (exit code -11)")
    assert crashed.cause == "execution_error" and "crashed" in (crashed.cause_detail or "")
    assert error_cause("sql: 1st ORDER BY term out of range - should be between 1 and 1").detail == (
        "ORDER BY term out of range"
    )


def test_records_written_before_causes_get_one_from_cause_of() -> None:
    old = {"answer": T, "prediction": "SELECT name FROM t WHERE city = 'Paris'", "execution_match": False}
    assert cause_of({**old, "executes": True, "error": None, "gold_valid": True}) == "literal_case"
    assert cause_of({**old, "execution_match": True}) is None
    assert cause_of({**old, "gold_valid": False}) is None
    assert cause_of({**old, "cause": "wrong_column", "cause_detail": "x"}) == "wrong_column"
    assert record_cause({**old, "cause": None}) is None
    # official convention (strict written beside it): DISTINCT is removed before the trees are compared
    official = {
        **old,
        "prediction": "SELECT DISTINCT name FROM t WHERE city = 'Paris'",
        "execution_match_strict": False,
    }
    assert cause_of(official) == "literal_case"


CTX = "CREATE TABLE t (name VARCHAR, city VARCHAR, age INTEGER)"


def _score(
    tmp_path: Path, rows: list[dict[str, Any]], convention: str = "strict"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"context": CTX, **r}) + "\n" for r in rows), encoding="utf-8")
    metrics = score_file(inp, tmp_path / "out", workers=0, settings=ScoreSettings(convention=convention))
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    return metrics, records


def test_the_scorer_stores_a_cause_per_miss_and_counts_them(tmp_path: Path) -> None:
    gold = 'SELECT name FROM t WHERE city = "paris" AND age > 30'
    rows = [
        {"answer": gold, "prediction": gold},
        {"answer": gold, "prediction": 'SELECT name FROM t WHERE city = "Paris" AND age > 30'},
        {"answer": gold, "prediction": 'SELECT name FROM t WHERE city = "paris"'},
        {"answer": gold, "prediction": 'SELECT nme FROM t WHERE city = "paris"'},
        {"answer": gold, "prediction": "SELECT name FROM t WHERE city = 'paris' AND age >"},
        {"answer": gold, "prediction": 'SELECT name FROM t WHERE town = "paris"'},
        {"answer": "SELECT nope FROM t", "prediction": "SELECT name FROM t"},  # gold does not run: not scored
    ]
    metrics, records = _score(tmp_path, rows)
    assert [r["cause"] for r in records] == [
        None,
        "literal_case",
        "condition_missing",
        "execution_error",
        "parse_error",
        "execution_error",
        None,
    ]
    assert records[3]["cause_detail"] == "no such column" and records[1]["cause_detail"] == "'Paris' for 'paris'"
    assert all(r["cause"] in CAUSES for r in records if not r["execution_match"] and r["gold_valid"])
    assert metrics["miss_causes"] == {"execution_error": 2, "parse_error": 1, "condition_missing": 1, "literal_case": 1}
    assert metrics["execution_errors"] == {"no such column": 2}


def test_the_cause_is_of_the_sql_that_ran_under_the_convention(tmp_path: Path) -> None:
    """Under official DISTINCT is removed before running, so it is never the cause there."""
    gold = 'SELECT name FROM t WHERE city = "paris"'
    rows = [{"answer": gold, "prediction": 'SELECT DISTINCT name FROM t WHERE city = "Paris"'}]
    _, (strict,) = _score(tmp_path / "strict", rows)
    _, (official,) = _score(tmp_path / "official", rows, "official")
    assert strict["cause"] == "distinct" and official["cause"] == "literal_case"


def test_the_leaderboard_prints_the_top_causes(tmp_path: Path) -> None:
    for model, causes in (("a", {"wrong_literal": 30, "wrong_column": 10}), ("b", {"parse_error": 5})):
        folder = tmp_path / model / "eval" / "scc"
        folder.mkdir(parents=True)
        metrics = {"dataset": "scc", "model": model, "execution_accuracy": 0.5, "n": 100, "gold_invalid": 0}
        metrics["scorer"] = {"miss_causes": causes}  # where `eval run` keeps the scorer's output
        (folder / "metrics.json").write_text(json.dumps(metrics))
    from sqlmaster.evaluate.report import find_metrics

    markdown = render_markdown(leaderboard_rows(find_metrics([tmp_path / "a", tmp_path / "b"])))
    assert "| a | 40 | wrong_literal 75% (30), wrong_column 25% (10) |" in markdown
    assert "| b | 5 | parse_error 100% (5) |" in markdown
    assert f"wrong_literal: {CAUSES['wrong_literal']}" in markdown and "limit:" not in markdown


def test_count_causes_orders_by_count_then_by_the_table() -> None:
    assert list(count_causes(["other", "limit", "parse_error", "limit", None])) == ["limit", "parse_error", "other"]


# What each kind of single-edit mutant (sqlmaster/evaluate/mutants.py) must be named; a flipped JOIN ... ON
# comparison is a join that differs.
MUTANT_CAUSES = {
    "flip_comparison": {"wrong_operator", "join"},
    "min_max": {"aggregate"},
    "sum_avg": {"aggregate"},
    "drop_condition": {"condition_missing"},
    "change_literal": {"wrong_literal"},
    "and_or": {"wrong_operator"},
    "asc_desc": {"order_by"},
    "distinct": {"distinct"},
}


def test_single_edit_mutants_of_real_golds_are_named_by_their_edit() -> None:
    """Mutants of 80 sql-create-context and 80 Spider dev golds: each named by what was edited, never "other"."""
    from _scorer_data import seeded_subset

    from sqlmaster.data.spider import dev_examples
    from sqlmaster.evaluate.mutants import mutants

    golds = [r["answer"] for r in seeded_subset(80)] + [e.query for e in dev_examples()[:80]]
    named: dict[str, set[str]] = {}
    for gold in golds:
        for mutant in mutants(gold):
            found = classify(mutant.sql, gold)
            named.setdefault(mutant.kind, set()).add(found.cause)
            assert found.cause in MUTANT_CAUSES[mutant.kind], (mutant, gold, found)
    assert set(named) == set(MUTANT_CAUSES)
