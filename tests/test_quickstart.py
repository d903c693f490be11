"""README command 1 in miniature: `sqlmaster quickstart` trains, evaluates and reports from jobs/ values files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from _micro import MICRO_MODEL
from typer.testing import CliRunner

from sqlmaster.cli import app
from sqlmaster.errors import ConfigError

TRAIN = {
    "data": {"source": "shipped", "max_train_rows": 200, "test_size": 6, "validation_size": 8},
    "prompt": {"template": "terse"},
    "training": {
        "max_steps": 3, "time_budget_minutes": None, "per_device_train_batch_size": 4, "warmup_steps": 0,
        "logging_steps": 1, "eval_steps": 3, "save_steps": 3, "early_stopping_patience": None, "num_threads": 1,
        "cpu_processes": 1,
    },
    "tracking": {"wandb_mode": "disabled"},
}  # fmt: skip
EVAL = {
    "data": {"source": "shipped", "test_size": 6, "validation_size": 8},
    "evaluation": {"limit": 4, "batch_size": 4, "max_new_tokens": 8, "databases_per_example": 1, "backend": "hf"},
}


def _values(recipe: dict) -> str:
    return yaml.safe_dump({"runs": [{"model": "tiny", "recipe": recipe}]})


def test_quickstart_trains_evaluates_and_reports_with_set_values(tmp_path: Path) -> None:
    model = {}
    for item in MICRO_MODEL:
        key, value = item.split("=", 1)
        model[key.split(".", 1)[1]] = yaml.safe_load(value)
    jobs = tmp_path / "jobs"
    (jobs / "train").mkdir(parents=True)
    (jobs / "eval").mkdir()
    (jobs / "train" / "tiny.yaml").write_text(_values({**TRAIN, "model": model}))
    (jobs / "eval" / "tiny.yaml").write_text(_values(EVAL))
    out = tmp_path / "qs"

    result = CliRunner().invoke(
        app,
        # an evaluation value reaches the evaluation (it was silently dropped: issue 20)
        [
            "quickstart",
            "--model",
            "tiny",
            "-o",
            str(out),
            "--jobs-dir",
            str(jobs),
            "--set",
            "training.seed=7",
            "--set",
            "evaluation.limit=3",
        ],
    )

    assert result.exit_code == 0, result.output[-3000:]
    assert "quickstart finished" in result.output
    info = json.loads((out / "tiny" / "run.json").read_text())
    assert info["status"] == "completed" and info["recipe"]["training"]["seed"] == 7
    metrics = json.loads((out / "tiny" / "eval" / "sql-create-context-test" / "metrics.json").read_text())
    assert metrics["n"] == 3 and 0.0 <= metrics["execution_accuracy"] <= 1.0
    assert (out / "report" / "leaderboard.md").is_file()
    # report.html beside it, named in the summary, with the evaluation's three examples (tests/test_html_report.py)
    page = (out / "report" / "report.html").read_text()
    assert str(out / "report" / "report.html") in result.output and page.count('"evaluation":0,') == 3


def test_zero_shot_on_tiny_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """tiny starts from random weights: a zero-shot row would measure nothing, so the flag is a configuration error
    (``main`` turns it into one line and exit 2)."""
    out = tmp_path / "qs"
    result = CliRunner().invoke(app, ["quickstart", "--model", "tiny", "--zero-shot", "-o", str(out)])
    assert isinstance(result.exception, ConfigError), result.output[-3000:]
    assert "--zero-shot" in str(result.exception) and "tiny starts from random weights" in str(result.exception)
    assert not (out / "tiny").exists()
