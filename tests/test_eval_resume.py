"""`sqlmaster eval run` in a pod: progress lines at least every interval through a pipe, and a resume after SIGKILL
that generates only the rest and writes the same records as an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eval_fixtures import scramble, tiny_model, tiny_tokenizer, write_lora_run

from sqlmaster.config import load_recipe
from sqlmaster.data.pipeline import build_splits

ROOT = Path(__file__).resolve().parents[1]
DATA = {"source": "shipped", "validation_size": 10, "test_size": 20, "seed": 7}
DATASET = "sql-create-context-test"
ROWS = 8
BATCH = 2  # 4 batches of 2
TIMING = {"latency_s", "batch_latency_s"}  # wall times: the only fields two runs may differ in

# Runs `sqlmaster eval run` as the CLI does, with a word-count embedder (no embedding model to load). Test hooks
# through the environment: KILL_AFTER_BATCHES=k SIGKILLs the process once k batches are on disk (deterministic: the
# partial file's k-th line is fsynced before the kill); BATCHES_LOG=path appends each generated batch's indices.
SCRIPT = """
import json, os, signal, sys
from contextlib import contextmanager

from sqlmaster.evaluate import embedding, generate, resume

class Words:
    name = "test:words"
    def embed(self, texts):
        return [[float(t.count(w)) + 1e-3 for w in ("SELECT", "FROM", "WHERE", "COUNT")] for t in texts]

embedding.select_embedder = lambda kind="auto": Words()
kill_after = int(os.environ.get("KILL_AFTER_BATCHES") or 0)
appending = resume.PartialPredictions.appending

@contextmanager
def killing(self):
    with appending(self) as save:
        saved = 0
        def save_then_die(records):
            nonlocal saved
            save(records)
            saved += 1
            if saved == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        yield save_then_die

resume.PartialPredictions.appending = killing
batch = generate.HFGenerator._generate_batch

def logged(self, indices, *args):
    with open(os.environ["BATCHES_LOG"], "a") as handle:
        handle.write(json.dumps(indices) + "\\n")
    return batch(self, indices, *args)

generate.HFGenerator._generate_batch = logged
from sqlmaster.cli import main
sys.argv = ["sqlmaster", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA run of a scrambled tiny model (varied output) as `sqlmaster train` lays it out."""

    recipe = load_recipe(overrides=[f"data.{k}={v}" for k, v in DATA.items()] + ["prompt.template=compact"])
    splits = build_splits(recipe.data)
    tokenizer = tiny_tokenizer()
    base = scramble(tiny_model(tokenizer, hidden=32, layers=1), std=0.2)
    root = tmp_path_factory.mktemp("run") / "tiny"
    write_lora_run(root, base, tokenizer, recipe, splits, "resume-test", rank=2)
    return root


def _eval_run(
    run_dir: Path, out: Path, log: Path, *sets: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["eval", "run", "--model", "tiny", "--adapter", str(run_dir), "--output-dir", str(out)]
    args += ["--dataset", DATASET, "--limit", str(ROWS), "--set", f"evaluation.batch_size={BATCH}"]
    args += ["--set", "evaluation.max_new_tokens=12", *(a for s in sets for a in ("--set", s))]
    environ = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'cli'}",
        "OMP_NUM_THREADS": "1",
        "BATCHES_LOG": str(log),
        **(env or {}),
    }
    environ.pop("OPENAI_API_KEY", None)
    environ.pop("LANGSMITH_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], env=environ, capture_output=True, text=True, timeout=600, check=False
    )


def _records(out: Path) -> list[dict[str, Any]]:
    path = out / "eval" / DATASET / "records.jsonl"
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


def _batches(log: Path) -> list[list[int]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _whole(run_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An uninterrupted `eval run`, in this process (its stdout is not a TTY), progress lines every 0.05 s."""
    from typer.testing import CliRunner

    from sqlmaster.cli import app
    from sqlmaster.evaluate import embedding, score
    from sqlmaster.evaluate.generate import HFGenerator

    class Words:
        name = "test:words"

        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[float(t.count(w)) + 1e-3 for w in ("SELECT", "FROM", "WHERE", "COUNT")] for t in texts]

    monkeypatch.setattr(embedding, "select_embedder", lambda kind="auto": Words())
    # Each batch and each scored row takes a while, so that several progress lines fall within each phase.
    batch, scored = HFGenerator._generate_batch, score._ScoringProgress.scored
    monkeypatch.setattr(HFGenerator, "_generate_batch", lambda *a: time.sleep(0.2) or batch(*a))
    monkeypatch.setattr(score._ScoringProgress, "scored", lambda *a: time.sleep(0.1) or scored(*a))
    monkeypatch.setenv("SQLMASTER_PROGRESS_INTERVAL_S", "0.05")
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    args = ["eval", "run", "--model", "tiny", "--adapter", str(run_dir), "--output-dir", str(out), "--dataset"]
    args += [DATASET, "--limit", str(ROWS), "--set", f"evaluation.batch_size={BATCH}"]
    result = CliRunner().invoke(app, [*args, "--set", "evaluation.max_new_tokens=12"])
    assert result.exit_code == 0, result.output
    return result.output


def test_killed_evaluation_resumes_with_the_rest_and_equal_records(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    lines = _whole(run_dir, whole, monkeypatch).splitlines()
    assert not (whole / "eval" / DATASET / "predictions.partial.jsonl").exists()  # removed once results are written
    # Progress through a pipe: plain lines with rows done of total, rows/s, elapsed, time left, for both phases.
    generating = [x for x in lines if re.search(rf"generating {DATASET}: \d/{ROWS} rows \(.*%\) \| ", x)]
    rate = r" \| [\d.]+ rows/s \| elapsed \dm\d\ds \| left \dm\d\ds"
    assert generating and any(re.search(rate, x) for x in generating), lines
    scoring = [x for x in lines if re.search(rf"scoring {DATASET}: \d/{ROWS} rows", x)]
    assert any(re.search(rate + r" \| execution accuracy \d+\.\d% so far$", x) for x in scoring), lines

    first = _eval_run(run_dir, killed, tmp_path / "first.log", env={"KILL_AFTER_BATCHES": "2"})
    assert first.returncode == -signal.SIGKILL, first.stderr
    partial = killed / "eval" / DATASET / "predictions.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 1 + 2  # the fingerprint and two batches
    before = _batches(tmp_path / "first.log")
    assert len(before) == 2 and not (killed / "eval" / DATASET / "metrics.json").exists()
    with partial.open("a") as handle:
        handle.write('{"batch": [{"index": 0, "pro')  # as if killed in the middle of writing a third batch

    # Another setting (or model, adapter, dataset): one error line, nothing generated, the partial file kept.
    kept = partial.read_bytes()
    other = _eval_run(run_dir, killed, tmp_path / "other.log", "evaluation.max_new_tokens=20")
    assert other.returncode == 2
    errors = other.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and "(generation differ)" in errors[0], other.stderr
    assert "delete the file to start over" in errors[0]
    assert partial.read_bytes() == kept and not _batches(tmp_path / "other.log")

    second = _eval_run(run_dir, killed, tmp_path / "second.log")
    assert second.returncode == 0, second.stderr
    after = _batches(tmp_path / "second.log")
    assert sorted(i for b in before + after for i in b) == list(range(ROWS))  # only the rest was generated
    assert "dropping a last batch cut short" in second.stdout
    assert f"resuming an interrupted evaluation: {2 * BATCH} of {ROWS} predictions" in second.stdout
    assert _records(killed) == _records(whole)
    metrics = json.loads((killed / "eval" / DATASET / "metrics.json").read_text())
    assert metrics["resumed_rows"] == 2 * BATCH and metrics["n"] == ROWS
    assert not partial.exists()
