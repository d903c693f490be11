"""score_file: outputs, input validation, and a run that survives crashing and hanging examples."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from _scorer_data import seeded_subset

from sqlmaster.evaluate.score import ScoreInputError, ScoreSettings, run_isolated, score_file

CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"
GOLD = 'SELECT name FROM t WHERE age > 30 AND name = "bob"'


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(prediction: str | None, **extra: Any) -> dict[str, Any]:
    return {"question": "q", "context": CTX, "answer": GOLD, "prediction": prediction, **extra}


def test_score_file_writes_metrics_and_records(tmp_path: Path) -> None:
    rows = [
        _row("SELECT name FROM t WHERE name = 'bob' AND age > 30", latency_s=0.5, tokens=12),  # right
        _row(GOLD, latency_s=1.5, tokens=10),  # right, exact
        _row("SELECT name FROM t WHERE age > 30", latency_s=1.0, tokens=9),  # wrong
        _row("SELEC nonsense", latency_s=2.0, tokens=3),  # does not run
        _row(None),  # no prediction
        # gold that does not run on its own schema
        {"question": "q", "context": CTX, "answer": "SELECT missing FROM t", "prediction": "SELECT 1"},
    ]
    metrics = score_file(_write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0)
    assert metrics["n"] == 6 and metrics["n_scored"] == 5 and metrics["gold_invalid"] == 1
    assert metrics["execution_accuracy"] == pytest.approx(2 / 5)
    assert metrics["executes"] == pytest.approx(3 / 5)
    assert metrics["exact_match"] == pytest.approx(1 / 6)
    lo, hi = metrics["execution_accuracy_ci"]
    assert 0 <= lo <= 2 / 5 <= hi <= 1
    assert metrics["latency_s"]["p50"] == pytest.approx(1.25)
    assert metrics["tokens"]["total"] == 34
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["execution_accuracy"] == metrics["execution_accuracy"]
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["execution_match"] for r in records] == [True, True, False, False, False, False]
    assert [r["exact_match"] for r in records] == [False, True, False, False, False, False]
    assert [r["executes"] for r in records] == [True, True, True, False, False, False]
    assert [r["gold_valid"] for r in records] == [True] * 5 + [False]
    assert records[3]["error"].startswith("sql:") and records[5]["error"].startswith("gold invalid")
    assert records[0]["latency_s"] == 0.5  # extra fields are kept


def test_worker_pool_matches_in_process_scoring(tmp_path: Path) -> None:
    rows = seeded_subset(60, seed=7)
    for i, r in enumerate(rows):
        r["prediction"] = r["answer"] if i % 2 else r["answer"].replace("=", "<>", 1)
    path = _write(tmp_path / "in.jsonl", rows)
    pooled = score_file(path, tmp_path / "pool", workers=2)
    inline = score_file(path, tmp_path / "inline", workers=0)
    for key in ("execution_accuracy", "executes", "exact_match", "gold_invalid", "execution_accuracy_ci"):
        assert pooled[key] == inline[key], key
    assert pooled["worker_failures"] == 0
    pooled_records = (tmp_path / "pool" / "records.jsonl").read_text()
    assert pooled_records == (tmp_path / "inline" / "records.jsonl").read_text()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q"'], "in.jsonl:1: not valid JSON"),
        ([json.dumps(_row("SELECT 1")), "[1, 2]"], "in.jsonl:2: expected a JSON object"),
        (
            [json.dumps(_row("SELECT 1")), "", json.dumps({"question": "q", "context": CTX})],
            "in.jsonl:3: missing",
        ),
        ([json.dumps(_row(5))], "in.jsonl:1: field 'prediction'"),
        ([], "no records"),
    ],
)
def test_malformed_input_names_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ScoreInputError, match=message):
        score_file(path, tmp_path / "out", workers=0)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(ScoreInputError, match="not found"):
        score_file(tmp_path / "nope.jsonl", tmp_path / "out")


def _misbehave(payload: str) -> dict[str, Any]:
    """Module-level (picklable) task for the pool: crash, hang, raise, or answer."""
    if payload == "crash":
        os._exit(13)
    if payload == "hang":
        time.sleep(60)
    if payload == "raise":
        raise RuntimeError("boom")
    return {"execution_match": True, "payload": payload}


def test_pool_survives_crashing_and_hanging_examples() -> None:
    payloads = ["a", "crash", "b", "hang", "raise", "c"]
    start = time.monotonic()
    results = run_isolated(_misbehave, payloads, workers=2, task_timeout_s=3.0)
    assert time.monotonic() - start < 30
    assert [r.get("payload") for r in results] == ["a", None, "b", None, None, "c"]
    assert "crashed (exit code 13)" in results[1]["error"]
    assert "watchdog" in results[3]["error"]
    assert "RuntimeError: boom" in results[4]["error"]
    assert all(results[i]["worker_failure"] for i in (1, 3, 4))


def test_pool_blames_the_payload_in_flight_when_answers_come_per_chunk() -> None:
    # One worker, chunks of 4: "a" and "b" are finished but not yet answered when "crash" kills the worker; they
    # are scored again, and only the payload that was running gets the failure.
    payloads = ["a", "b", "crash", "c", "d", "hang", "e", "raise", "f"]
    results = run_isolated(_misbehave, payloads, workers=1, task_timeout_s=3.0, chunk=4)
    assert [r.get("payload") for r in results] == ["a", "b", None, "c", "d", None, "e", None, "f"]
    assert "crashed (exit code 13)" in results[2]["error"]
    assert "watchdog" in results[5]["error"]
    assert "RuntimeError: boom" in results[7]["error"]
    assert not any(r.get("worker_failure") for i, r in enumerate(results) if i not in (2, 5, 7))


def _pid(payload: str) -> dict[str, Any]:
    return {"payload": payload, "pid": os.getpid()}


def test_pool_keeps_a_group_in_one_worker() -> None:
    # Chunks of 2, groups of 5: each group still lands in one worker (its caches serve the whole group).
    payloads = [f"{g}{i}" for g in "abcdef" for i in range(5)]
    results = run_isolated(_pid, payloads, workers=2, task_timeout_s=30, chunk=2, group=lambda p: p[0])
    assert [r["payload"] for r in results] == payloads
    for g in "abcdef":
        assert len({r["pid"] for r in results if r["payload"][0] == g}) == 1, g
    assert len({r["pid"] for r in results}) == 2  # and both workers took part


def test_settings_are_validated(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row(GOLD)])
    with pytest.raises(ScoreInputError, match="databases_per_example"):
        score_file(path, tmp_path / "out", workers=0, settings=ScoreSettings(databases_per_example=0))
