"""`sqlmaster eval compare RUN_A RUN_B` (issue 33): paired difference, paired bootstrap, flips by cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.compare import compare_records, compare_runs, render_text

REPO = Path(__file__).resolve().parent.parent

# Hand-computed case. Ids 1-8 are scored in both runs:
#   A right on 1 2 3 7       (4/8 = 50.0%)
#   B right on 1 3 4 5 7 8   (6/8 = 75.0%)
#   B - A per example, in A's order: 0 -1 0 +1 +1 0 0 +1  -> +2/8 = +0.25
#   fixed (A missed, B right): 4 5 8 (A's causes: wrong_literal, wrong_literal, parse_error); broken: 2 (B's cause
#   wrong_column). Id 9's gold does not run (left out), id 10 is only in B, id 11 only in A.
A_MATCH = {1: True, 2: True, 3: True, 4: False, 5: False, 6: False, 7: True, 8: False}
B_MATCH = {1: True, 2: False, 3: True, 4: True, 5: True, 6: False, 7: True, 8: True}
A_CAUSE = {4: "wrong_literal", 5: "wrong_literal", 6: "other", 8: "parse_error"}
B_CAUSE = {2: "wrong_column", 6: "aggregate"}
DIFFS = [0, -1, 0, 1, 1, 0, 0, 1]


def _record(i: int, match: bool | None, cause: str | None, run: str) -> dict[str, Any]:
    valid = match is not None
    return {
        "id": str(i),
        "question": f"question {i}",
        "answer": f"SELECT a FROM t WHERE b = {i}",
        "prediction": f"SELECT {run} FROM t",
        "execution_match": bool(match),
        "exact_match": False,
        "executes": cause != "parse_error",
        "gold_valid": valid,
        "gold_nontrivial": True,
        "error": None,
        "cause": None if match or not valid else cause,
        "cause_detail": None,
        "execution_match_official": bool(match) if valid else None,
        "line": i,
    }


def _write_run(root: Path, records: list[dict[str, Any]], dataset: str = "sql-create-context-test") -> Path:
    folder = root / "eval" / dataset
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "metrics.json").write_text(json.dumps({"dataset": dataset, "execution_accuracy": 0.5}))
    return root


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    a = [_record(i, A_MATCH[i], A_CAUSE.get(i), "a") for i in A_MATCH]
    a += [_record(9, None, None, "a"), _record(11, False, "other", "a")]
    b = [_record(i, B_MATCH[i], B_CAUSE.get(i), "b") for i in reversed(B_MATCH)]  # another order: paired by id
    b += [_record(9, None, None, "b"), _record(10, True, None, "b")]
    return _write_run(tmp_path / "run_a", a), _write_run(tmp_path / "run_b", b)


def test_the_paired_difference_matches_the_hand_computed_case(tmp_path: Path) -> None:
    run_a, run_b = _runs(tmp_path)
    (c,) = compare_runs(run_a, run_b, seed=3)
    assert (c.n_pairs, c.accuracy_a, c.accuracy_b, c.difference) == (8, 0.5, 0.75, 0.25)
    assert (c.fixed, c.broken) == (3, 1)
    assert c.fixed_by_cause == {"wrong_literal": 2, "parse_error": 1}
    assert c.broken_by_cause == {"wrong_column": 1}
    assert (c.unpaired_a, c.unpaired_b, c.left_out) == (1, 1, 1)
    assert [e["key"] for e in c.examples_fixed] == ["id:4", "id:5", "id:8"]
    assert c.examples_broken[0]["a"] == "SELECT a FROM t" and c.examples_broken[0]["b"] == "SELECT b FROM t"
    # The paired bootstrap: the 8 per-example differences resampled together (1000 resamples, seed 3).
    rng = np.random.default_rng(3)
    means = np.asarray(DIFFS, dtype=float)[rng.integers(0, 8, size=(1000, 8))].mean(axis=1)
    assert c.difference_ci == tuple(np.quantile(means, [0.025, 0.975]))
    assert c.difference_ci[0] < 0.25 < c.difference_ci[1]
    text = render_text([c], run_a, run_b)
    assert "B - A  +25.0 points" in text and "3 fixed (A missed, B right), 1 broken" in text
    assert "fixed, by A's cause:  wrong_literal 2, parse_error 1" in text


def test_a_records_folder_and_a_run_directory_compare(tmp_path: Path) -> None:
    run_a, run_b = _runs(tmp_path)
    (c,) = compare_runs(run_a / "eval" / "sql-create-context-test", run_b / "eval")
    assert (c.n_pairs, c.difference) == (8, 0.25)


def test_without_ids_records_pair_by_question_and_gold() -> None:
    a = [{k: v for k, v in _record(i, A_MATCH[i], A_CAUSE.get(i), "a").items() if k != "id"} for i in A_MATCH]
    b = [{k: v for k, v in _record(i, B_MATCH[i], B_CAUSE.get(i), "b").items() if k != "id"} for i in B_MATCH]
    c = compare_records("x", a, b[::-1])
    assert (c.n_pairs, c.fixed, c.broken, c.difference) == (8, 3, 1, 0.25)


def test_a_miss_under_the_other_convention_gets_a_computed_cause() -> None:
    a = [_record(1, False, "other", "a") | {"answer": "SELECT a FROM t WHERE c = 'x'", "prediction": "SELECT a FROM t"}]
    b = [_record(1, True, None, "b") | {"answer": "SELECT a FROM t WHERE c = 'x'"}]
    a[0]["execution_match_official"] = False
    c = compare_records("x", a, b, "official")
    assert c.fixed_by_cause == {"condition_missing": 1}


def test_different_datasets_are_refused(tmp_path: Path) -> None:
    run_a, _ = _runs(tmp_path)
    other = [_record(i, True, None, "b") | {"question": f"another question {i}"} for i in range(1, 4)]
    run_b = _write_run(tmp_path / "other", other)
    with pytest.raises(ConfigError, match="different question in each run"):
        compare_runs(run_a, run_b)


def _cli(*args: Path | str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}"}
    cmd = [sys.executable, "-m", "sqlmaster.cli", "eval", "compare", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_the_command_prints_the_comparison_and_refuses_bad_input(tmp_path: Path) -> None:
    run_a, run_b = _runs(tmp_path)
    good = _cli(run_a, run_b, "--json")
    assert good.returncode == 0, good.stderr
    (result,) = json.loads(good.stdout)
    assert (result["difference"], result["fixed"], result["broken"]) == (0.25, 3, 1)

    disjoint = _write_run(tmp_path / "disjoint", [_record(i, True, None, "c") for i in range(100, 103)])
    spider = _write_run(tmp_path / "spider", [_record(1, True, None, "d")], dataset="spider-dev")
    (tmp_path / "empty").mkdir()
    cases = {
        "does not exist": (tmp_path / "missing", run_b),
        "no records.jsonl under": (tmp_path / "empty", run_b),
        "no example is in both runs": (run_a, disjoint),
        "evaluated different datasets: A sql-create-context-test, B spider-dev": (run_a, spider),
        "share no dataset": (run_a, spider / "eval" / "spider-dev", "--dataset", "sql-create-context-test"),
    }
    for message, args in cases.items():
        proc = _cli(*args)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(errors) == 1 and message in errors[0], proc.stderr
