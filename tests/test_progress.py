"""sqlmaster/progress.py: plain lines at least every interval outside a terminal, a live bar in one."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlmaster.errors import ConfigError
from sqlmaster.progress import Progress, duration, interval_s


class Lines(logging.Handler):
    """The progress lines logged (sqlmaster.progress), as their text."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def caught() -> Iterator[Lines]:
    logger = logging.getLogger("sqlmaster.progress")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_plain_lines_come_every_interval_even_while_a_step_runs_long(
    caught: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLMASTER_PROGRESS_INTERVAL_S", "0.05")
    with Progress("generating spider-dev", 100, done=40) as bar:  # 40 rows were on disk already (a resume)
        time.sleep(0.2)  # one long batch: lines keep coming, saying nothing is done yet
        bar.advance(10)
        bar.note("execution accuracy", "50.0% so far")
        time.sleep(0.2)
    lines = list(caught.lines)
    assert len(lines) >= 4, lines
    first = "generating spider-dev: 40/100 rows (40.0%) | none done yet in this process | elapsed 0m00s"
    assert lines[0] == first, lines
    last = lines[-1]
    # rows/s and the time left count this process's 10 rows, not the 40 read back
    match = re.fullmatch(
        r"generating spider-dev: 50/100 rows \(50\.0%\) \| ([\d.]+) rows/s \| elapsed 0m00s \| left (\dm\d\ds) \| "
        r"execution accuracy 50\.0% so far",
        last,
    )
    assert match, last
    assert 0 < float(match.group(1)) < 10 / 0.2  # counting the 40 read back would give over 50/0.2


def test_nothing_is_printed_for_a_loop_shorter_than_the_interval(caught: Lines) -> None:
    with Progress("scoring", 3) as bar:
        bar.advance(3)
    assert caught.lines == []


def test_the_interval_defaults_to_30_s_and_a_bad_one_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQLMASTER_PROGRESS_INTERVAL_S", raising=False)
    assert interval_s() == 30.0
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("SQLMASTER_PROGRESS_INTERVAL_S", bad)
        with pytest.raises(ConfigError, match="SQLMASTER_PROGRESS_INTERVAL_S"):
            interval_s()
    assert duration(3725) == "1h02m05s" and duration(65) == "1m05s"


def test_a_terminal_gets_a_live_bar_with_rate_and_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from sqlmaster import logs

    buffer = io.StringIO()
    monkeypatch.setattr(logs, "console_override", Console(file=buffer, force_terminal=True, width=160))
    with Progress("scoring spider-dev", 4) as bar:
        time.sleep(0.05)
        bar.advance(4)
        bar.note("execution accuracy", "75.0% so far")
    out = buffer.getvalue()
    assert "scoring spider-dev" in out and "4/4" in out and "rows/s" in out and "execution accuracy 75.0%" in out


def test_validation_loss_gets_progress_lines_during_training(caught: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from sqlmaster.train.callbacks import LogLineCallback

    monkeypatch.setenv("SQLMASTER_PROGRESS_INTERVAL_S", "0.05")
    callback = LogLineCallback()
    args = TrainingArguments(output_dir="/nonexistent", report_to="none")
    state, control = TrainerState(), TrainerControl()
    for _ in range(3):
        callback.on_prediction_step(args, state, control, eval_dataloader=[0] * 5)
        time.sleep(0.1)
    callback.on_evaluate(args, state, control)
    lines = list(caught.lines)
    assert lines and all(x.startswith("validation loss: ") for x in lines)
    assert re.match(r"validation loss: 3/5 batches \(60\.0%\) \| [\d.]+ batches/s \| elapsed", lines[-1]), lines
    time.sleep(0.15)
    assert len(caught.lines) == len(lines)  # stopped with the evaluation


def test_eval_score_prints_progress_with_the_accuracy_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sqlmaster eval score` through a pipe: progress lines with rows, rate, time left and execution accuracy."""
    from typer.testing import CliRunner

    from sqlmaster.cli import app
    from sqlmaster.evaluate import score

    rows = [
        {"context": "CREATE TABLE t (a INTEGER, b VARCHAR)", "answer": "SELECT a FROM t WHERE b = 'x'", "prediction": p}
        for p in ("SELECT a FROM t WHERE b = 'x'", "SELECT b FROM t", "SELECT a FROM t WHERE b = 'x'", "SELEC")
    ]
    source = tmp_path / "predictions.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("SQLMASTER_PROGRESS_INTERVAL_S", "0.05")
    scored = score._ScoringProgress.scored
    monkeypatch.setattr(score._ScoringProgress, "scored", lambda *a: scored(*a) or time.sleep(0.15))
    args = ["eval", "score", "--input", str(source), "--output-dir", str(tmp_path / "out"), "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [x for x in result.output.splitlines() if "scoring: " in x]
    rate = r"scoring: [1-3]/4 rows \(\d+\.\d%\) \| [\d.]+ rows/s \| elapsed 0m0\ds \| left"
    assert any(re.search(rate, x) for x in lines), result.output
    assert re.search(r"scoring: 4/4 rows .* \| execution accuracy 50\.0% so far$", lines[-1]), lines
