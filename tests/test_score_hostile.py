"""A scoring file of hostile predictions finishes: every example scored, metrics.json written, valid JSON out.

Each prediction once starved or crashed the scorer (issue 12): single long function calls that the statement
time limit cannot interrupt, results too big for memory, input too big to parse, text that cannot be encoded,
numbers that are not JSON. The CPU-time guard (RLIMIT_CPU per statement in worker processes) stops the first
two kinds within ``cpu_s_per_statement`` of CPU.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from sqlmaster.evaluate.score import ScoreSettings, score_file, summary_line

CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"
GOLD = "SELECT name FROM t WHERE age > 30"
INSTR = "instr(printf('%.*c', 999000, 'x') || 'y', printf('%.*c', 400000, 'x') || 'y')"

HOSTILE = {
    "printf bomb": "SELECT printf('%.*c', 2000000000, 'x')",
    "40 instr on 1 MB strings": "SELECT " + " + ".join([INSTR] * 40),
    "zeroblob rows": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) "
        "SELECT zeroblob(999999), zeroblob(999999), zeroblob(999999) FROM c"
    ),
    "2 MB prediction": "SELECT " + "1 + " * 500_000 + "1",
    "90 kB prediction": "SELECT " + "1 + " * 22_000 + "1",
    "runaway recursive CTE": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "cartesian product": "SELECT * FROM t a, t b, t c, t d, t e",
    "deep nesting": "SELECT " + "(" * 5000 + "1" + ")" * 5000,
    "long LIKE pattern": "SELECT name FROM t WHERE name LIKE '" + "%a" * 6000 + "'",
    "ATTACH": "ATTACH DATABASE 'escape.db' AS x",
    "lone surrogate": "SELECT name FROM t WHERE name = '\ud800'",
    "two statements": "SELECT 1; DROP TABLE t",
}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    # json.dumps writes NaN/Infinity (as Python's json reads them) and escapes the lone surrogate.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _strict_json(line: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_hostile_predictions_are_all_scored(tmp_path: Path) -> None:
    rows = [
        {"question": f"{name} \ud800", "context": CTX, "answer": GOLD, "prediction": sql, "latency_s": float("nan")}
        for name, sql in HOSTILE.items()
    ]
    rows.append({"question": "fine", "context": CTX, "answer": GOLD, "prediction": GOLD, "latency_s": float("inf")})
    out = tmp_path / "out"
    start = time.monotonic()
    metrics = score_file(_write(tmp_path / "in.jsonl", rows), out, workers=2)
    elapsed = time.monotonic() - start

    lines = (out / "records.jsonl").read_bytes().decode("utf-8").splitlines()  # valid UTF-8, whole file
    records = [_strict_json(line) for line in lines]
    assert len(records) == len(rows) == metrics["n"] == metrics["n_scored"]
    assert [r["question"] for r in records] == [r["question"] for r in rows]  # the surrogate reads back unchanged
    assert records[-1]["execution_match"] and all(not r["execution_match"] for r in records[:-1])
    errors = {name: r["error"] for name, r in zip(HOSTILE, records[:-1], strict=True)}
    # Stopped by the CPU guard (the 30 s wall-clock watchdog only when a loaded machine starves the worker).
    for bomb in ("printf bomb", "40 instr on 1 MB strings"):
        assert "CPU-time limit" in errors[bomb] or "watchdog" in errors[bomb], errors[bomb]
    # Streaming results are read only up to one row past the gold's count (a match needs equally many rows): a
    # plain miss, or the byte cap when even that many rows of 3 MB would be too much.
    executes = {name: r["executes"] for name, r in zip(HOSTILE, records[:-1], strict=True)}
    zeroblob = errors["zeroblob rows"]
    assert (zeroblob is None and executes["zeroblob rows"]) or "bytes" in zeroblob, zeroblob
    assert "longer than" in errors["2 MB prediction"] and not records[3]["exact_match"]
    assert "timeout" in errors["runaway recursive CTE"]
    assert errors["cartesian product"] is None and executes["cartesian product"]
    assert "denied" in errors["ATTACH"] and not (tmp_path / "escape.db").exists()
    assert "multiple_statements" in errors["two statements"]
    assert all(r["latency_s"] is None for r in records)  # NaN and Infinity are not JSON
    assert _strict_json((out / "metrics.json").read_text(encoding="utf-8"))["n"] == len(rows)
    # Each bomb stops within its CPU budget; the whole file is far from the minutes these once took.
    assert ScoreSettings().cpu_s_per_statement <= 5 and ScoreSettings().example_timeout_s <= 30
    assert elapsed < 180


def test_no_valid_gold_still_writes_metrics(tmp_path: Path) -> None:
    rows = [{"context": CTX, "answer": "SELECT missing FROM t", "prediction": "SELECT 1"}] * 2
    metrics = score_file(_write(tmp_path / "in.jsonl", rows), tmp_path / "out", workers=0)
    assert metrics["n_scored"] == 0 and metrics["execution_accuracy"] is None
    assert metrics["execution_accuracy_ci"] == [None, None]
    saved = _strict_json((tmp_path / "out" / "metrics.json").read_text())
    assert saved["gold_invalid"] == 2 and not math.isnan(saved["exact_match"])
    assert "execution accuracy n/a" in summary_line(metrics)


def test_worker_failures_are_misses_under_every_convention(tmp_path: Path) -> None:
    """3 right + 3 predictions stopped by the CPU guard: 50% under both conventions (the other convention's
    figure once dropped the failed rows from its denominator and read 100%)."""
    bomb = HOSTILE["printf bomb"]
    rows = [{"context": CTX, "answer": GOLD, "prediction": p} for p in [GOLD, bomb] * 3]
    settings = ScoreSettings(convention="official", cpu_s_per_statement=1.0)
    out = tmp_path / "out"
    metrics = score_file(_write(tmp_path / "in.jsonl", rows), out, workers=1, settings=settings)
    records = [_strict_json(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert metrics["worker_failures"] == 3, [r["error"] for r in records]
    assert metrics["execution_accuracy"] == metrics["execution_accuracy_strict"] == 0.5
    assert metrics["execution_accuracy_by_convention"] == {"official": 0.5, "strict": 0.5}
    assert [r["execution_match_strict"] for r in records] == [True, False] * 3
    assert "50.0% (official; strict 50.0%)" in summary_line(metrics)
