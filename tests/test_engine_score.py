"""``sqlmaster eval score --engine duckdb``: the same verdicts as SQLite on the same synthesized rows, golds that do
not carry over left out and counted by cause, and bad requests refused with one error line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _scorer_data import seeded_subset

from sqlmaster.evaluate.mutants import mutants
from sqlmaster.evaluate.score import ScoreInputError, ScoreSettings, score_file

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_duckdb_verdicts_agree_with_sqlite_on_golds_and_mutants(tmp_path: Path) -> None:
    rows = []
    for ex in seeded_subset(12, seed=7):
        rows.append({**ex, "prediction": ex["answer"]})
        rows += [{**ex, "prediction": m.sql} for m in mutants(ex["answer"], per_kind=1)[:3]]
    source = _write(tmp_path / "in.jsonl", rows)
    sqlite = score_file(source, tmp_path / "sqlite", workers=0)
    duck = score_file(source, tmp_path / "duckdb", workers=0, settings=ScoreSettings(engine="duckdb"))
    pairs = [
        (a, b)
        for a, b in zip(_records(tmp_path / "sqlite"), _records(tmp_path / "duckdb"), strict=True)
        if b["gold_valid"]
    ]
    assert len(pairs) >= len(rows) - 4  # nearly every gold carries over
    assert [a["execution_match"] for a, _ in pairs] == [b["execution_match"] for _, b in pairs]
    assert any(a["execution_match"] for a, _ in pairs) and not all(a["execution_match"] for a, _ in pairs)
    # every miss says why, as on SQLite (the mutants' causes: the same classifier over the same SQL)
    misses = [(a, b) for a, b in pairs if not b["execution_match"]]
    assert misses and all(b["cause"] for _, b in misses)
    assert sum(a["cause"] == b["cause"] for a, b in misses) >= 0.8 * len(misses)
    engine = duck["engine"]
    assert engine["name"] == "duckdb" and duck["settings"]["engine"] == "duckdb"
    assert duck["gold_invalid"] == sqlite["gold_invalid"] + engine["gold_left_out"]


def test_a_gold_that_does_not_carry_over_is_left_out_and_counted(tmp_path: Path) -> None:
    ctx = "CREATE TABLE t (name VARCHAR, team VARCHAR)"
    rows = [
        # SQLite-only function: DuckDB refuses the transpiled gold
        {"context": ctx, "answer": "SELECT name FROM t WHERE likelihood(team = 'x', 0.5)", "prediction": "SELECT 1"},
        # runs on both, but another answer: 'text' in SQLite, 'VARCHAR' in DuckDB
        {"context": ctx, "answer": "SELECT typeof(name) FROM t WHERE team = 'x'", "prediction": "SELECT 1"},
        {"context": ctx, "answer": "SELECT name FROM t WHERE team = 'x'", "prediction": "SELECT name FROM t"},
    ]
    settings = ScoreSettings(engine="duckdb")
    metrics = score_file(_write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0, settings=settings)
    records = _records(tmp_path / "out")
    assert metrics["n_scored"] == 1 and metrics["gold_invalid"] == 2 and metrics["engine"]["gold_left_out"] == 2
    assert metrics["engine"]["gold_disagrees"] == {"different_rows": 1, "engine_error": 1}
    assert records[0]["gold_valid"] is False
    assert records[0]["error"].startswith("engine gold disagrees with SQLite (engine_error)")
    assert records[1]["error"].startswith("engine gold disagrees with SQLite (different_rows)")
    assert records[2]["gold_valid"] is True and records[2]["execution_match"] is False


def test_a_prediction_that_does_not_transpile_is_a_miss_that_does_not_execute(tmp_path: Path) -> None:
    rows = [
        {"context": "CREATE TABLE t (a VARCHAR)", "answer": "SELECT a FROM t", "prediction": "SELECT a FROM t WHERE ("}
    ]
    score_file(
        _write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0, settings=ScoreSettings(engine="duckdb")
    )
    (record,) = _records(tmp_path / "out")
    assert (
        record["execution_match"] is False
        and record["executes"] is False
        and record["error"].startswith("transpile: parse")
    )


def test_workers_score_on_duckdb_too(tmp_path: Path) -> None:
    rows = [{**ex, "prediction": ex["answer"]} for ex in seeded_subset(6, seed=3)]
    metrics = score_file(
        _write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=2, settings=ScoreSettings(engine="duckdb")
    )
    assert metrics["worker_failures"] == 0 and metrics["execution_accuracy"] == 1.0


def test_real_databases_and_unknown_engines_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    sqlite3.connect(db).executescript("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)")
    source = _write(
        tmp_path / "in.jsonl", [{"answer": "SELECT a FROM t", "prediction": "SELECT a FROM t", "db_path": str(db)}]
    )
    with pytest.raises(ScoreInputError, match="--engine duckdb scores rows with a 'context' only"):
        score_file(source, tmp_path / "out", workers=0, settings=ScoreSettings(engine="duckdb"))
    assert not (tmp_path / "out").exists()
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}"}
    args = ["eval", "score", "-i", str(source), "--output-dir", str(tmp_path / "o"), "--engine", "oracle"]
    proc = subprocess.run([sys.executable, "-m", "sqlmaster.cli", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    choices = "sqlite, duckdb, postgresql, mysql"
    assert proc.stderr.strip() == f"error: cannot score on engine 'oracle'. Use one of: {choices}"


def test_a_server_engine_without_a_server_is_one_error_line(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "in.jsonl",
        [{"context": "CREATE TABLE t (a INTEGER)", "answer": "SELECT a FROM t", "prediction": "SELECT a FROM t"}],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLMASTER_SCRATCH_")}
    env["PYTHONPATH"] = f"{REPO}:{REPO / 'cli'}"
    for engine, var in (("postgresql", "SQLMASTER_SCRATCH_POSTGRESQL"), ("mysql", "SQLMASTER_SCRATCH_MYSQL")):
        args = ["eval", "score", "-i", str(source), "--output-dir", str(tmp_path / engine), "--engine", engine]
        proc = subprocess.run([sys.executable, "-m", "sqlmaster.cli", *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(f"error: --engine {engine} needs a server") and f"Set {var}=" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
