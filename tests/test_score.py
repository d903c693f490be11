"""score_file: outputs, input validation, and a run that survives crashing and hanging examples."""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _scorer_data import seeded_subset

from sqlmaster.evaluate import isolated
from sqlmaster.evaluate.isolated import run_isolated
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS, run_query
from sqlmaster.evaluate.score import (
    ScoreInputError,
    ScorerState,
    ScoreSettings,
    failure_record,
    score_example,
    score_file,
)

CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"
GOLD = 'SELECT name FROM t WHERE age > 30 AND name = "bob"'


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


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


METHODS = pytest.mark.parametrize("method", ["fork", "spawn"])  # the pool forks when it is safe, else spawns


def _failed(reason: str) -> dict[str, Any]:
    """The pool's failure result for these dict-returning tasks (the scorer's is a Score: failure_record)."""
    return {"error": reason, "worker_failure": True}


def test_a_failed_task_is_a_miss_naming_the_reason() -> None:
    score = failure_record("watchdog: example took longer than 30s")
    assert not (score.execution_match or score.executes or score.exact_match) and score.gold_valid
    assert score.worker_failure and score.error == "scorer: watchdog: example took longer than 30s"


@METHODS
def test_pool_survives_crashing_and_hanging_examples(method: str) -> None:
    payloads = ["a", "crash", "b", "hang", "raise", "c"]
    start = time.monotonic()
    results = run_isolated(_misbehave, payloads, 2, 3.0, _failed, method=method)
    assert time.monotonic() - start < 30
    assert [r.get("payload") for r in results] == ["a", None, "b", None, None, "c"]
    assert "crashed (exit code 13)" in results[1]["error"]
    assert "watchdog" in results[3]["error"]
    assert "RuntimeError: boom" in results[4]["error"]
    assert all(results[i]["worker_failure"] for i in (1, 3, 4))


@METHODS
def test_pool_blames_the_payload_in_flight_when_answers_come_per_chunk(method: str) -> None:
    # One worker, chunks of 4: "a" and "b" are finished but not yet answered when "crash" kills the worker; they
    # are scored again, and only the payload that was running gets the failure.
    payloads = ["a", "b", "crash", "c", "d", "hang", "e", "raise", "f"]
    results = run_isolated(_misbehave, payloads, 1, 3.0, _failed, chunk=4, method=method)
    assert [r.get("payload") for r in results] == ["a", "b", None, "c", "d", None, "e", None, "f"]
    assert "crashed (exit code 13)" in results[2]["error"]
    assert "watchdog" in results[5]["error"]
    assert "RuntimeError: boom" in results[7]["error"]
    assert not any(r.get("worker_failure") for i, r in enumerate(results) if i not in (2, 5, 7))


def _pid(payload: str) -> dict[str, Any]:
    return {"payload": payload, "pid": os.getpid()}


@METHODS
def test_pool_keeps_a_group_in_one_worker(method: str) -> None:
    # Chunks of 2, groups of 5: each group still lands in one worker (its caches serve the whole group).
    payloads = [f"{g}{i}" for g in "abcdef" for i in range(5)]
    results = run_isolated(_pid, payloads, 2, 30, _failed, chunk=2, group=lambda p: p[0], method=method)
    assert [r["payload"] for r in results] == payloads
    for g in "abcdef":
        assert len({r["pid"] for r in results if r["payload"][0] == g}) == 1, g
    assert len({r["pid"] for r in results}) == 2  # and both workers took part


def _interrupt_self(payload: str) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole process group
    time.sleep(0.05)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return {"payload": payload, "address_space_limit": soft, "mapped": isolated._mapped_bytes()}


@METHODS
def test_workers_leave_ctrl_c_to_the_parent_and_cap_what_they_map(method: str) -> None:
    # A worker ignores SIGINT (the parent stops the pool; a worker's own KeyboardInterrupt would only print a
    # traceback), and its address-space cap counts from what it started with: a worker forked from a large
    # parent gets the same headroom as a spawned one.
    parent_mapped = isolated._mapped_bytes()
    results = run_isolated(_interrupt_self, ["a", "b"], 1, 30, _failed, method=method)
    assert [r.get("payload") for r in results] == ["a", "b"], results
    started_with = results[0]["address_space_limit"] - isolated.ADDRESS_SPACE_BYTES
    assert 0 < started_with <= results[0]["mapped"]  # what it mapped at its start, no more than it maps now
    if method == "fork":  # a forked worker starts with its parent's mappings, and keeps its full headroom
        assert started_with >= 0.9 * parent_mapped


def test_a_second_thread_means_spawn() -> None:
    # Forking a process with other threads can copy a lock one of them holds; the pool then spawns.
    before = isolated.threads_in_this_process()
    assert before is not None and before >= 1
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert isolated.threads_in_this_process() == before + 1
        assert isolated.start_method() == "spawn"
    finally:
        release.set()
        thread.join()


def _exit_at_start() -> None:
    os._exit(3)


def _exit_at_first_start() -> None:
    marker = Path(os.environ["SQLMASTER_TEST_MARKER"])
    if not marker.exists():
        marker.write_text("started once")
        os._exit(3)


@METHODS
def test_a_worker_that_dies_as_it_starts_charges_no_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # The first worker exits before its first payload; its chunk goes to the next, and every payload is answered.
    monkeypatch.setenv("SQLMASTER_TEST_MARKER", str(tmp_path / "marker"))
    with isolated.IsolatedPool(_pid, 1, 30, _failed, _exit_at_first_start, method=method) as pool:
        results = pool.map(["a", "b", "c"], chunk=2)
    assert (tmp_path / "marker").exists()
    assert [r.get("payload") for r in results] == ["a", "b", "c"]
    assert not any(r.get("worker_failure") for r in results)


@METHODS
def test_workers_that_cannot_start_stop_the_pool_at_once_naming_why(method: str) -> None:
    # Not one failure record per payload, one process start at a time: the third start that fails ends the map.
    start = time.monotonic()
    failing = pytest.raises(isolated.WorkerStartError, match=r"3 worker processes in a row .*exit code 3")
    with isolated.IsolatedPool(_pid, 2, 30, _failed, _exit_at_start, method=method) as pool, failing:
        pool.map([str(i) for i in range(200)], chunk=2)
    assert time.monotonic() - start < 30


_STDIN_SCRIPT = """
import threading
from sqlmaster.evaluate.isolated import run_isolated, start_method
from sqlmaster.evaluate.score import failure_record
threading.Thread(target=threading.Event().wait, daemon=True).start()  # a second thread: the pool spawns
assert start_method() == "spawn"
print(run_isolated(abs, [-1, -2, -3], 2, 30, failure_record, chunk=1))
"""


def test_a_script_read_from_stdin_can_spawn_workers(tmp_path: Path) -> None:
    # `python - <<EOF`: a spawned worker would re-import the main script from the path "<stdin>" and die.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-"], input=_STDIN_SCRIPT, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[1, 2, 3]"


@METHODS
def test_workers_leave_the_parents_cached_databases_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # This process holds a scorer state with cached databases (open SQLite connections); a worker forked
    # meanwhile inherits them and must leave them untouched. Same verdicts, and the parent's still work.
    rows = [_row(GOLD), _row("SELECT name FROM t WHERE age > 30"), _row("SELECT nope FROM t")]
    path = _write(tmp_path / "in.jsonl", rows)
    score_file(path, tmp_path / "in-process", workers=0)
    state = ScorerState()
    held = score_example(state, ScoreSettings(), (None, rows[0]["context"], GOLD, GOLD))
    assert held.execution_match
    prepared = state.examples.values()[0]
    monkeypatch.setattr(isolated, "start_method", lambda: method)
    score_file(path, tmp_path / "pool", workers=2)
    verdicts = {
        name: [(r["execution_match"], r["executes"]) for r in _records(tmp_path / name)]
        for name in ("in-process", "pool")
    }
    assert verdicts["pool"] == verdicts["in-process"] == [(True, True), (False, True), (False, False)]
    conn = prepared.connections(DEFAULT_LIMITS)[0]
    assert run_query(conn, "SELECT count(*) FROM t") == [(len(run_query(conn, "SELECT name FROM t")),)]


def test_settings_are_validated(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row(GOLD)])
    with pytest.raises(ScoreInputError, match="databases_per_example"):
        score_file(path, tmp_path / "out", workers=0, settings=ScoreSettings(databases_per_example=0))
