"""`--local`: the jobs/ recipe (with --values/--set layered as helm does) runs as a local process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from sqlctl.logstream import StreamCursor, parse_timestamp, split_timestamp
from sqlctl.main import app
from typer.testing import CliRunner

FAKE_SQLMASTER = """
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("--output-dir") + 1])
recipe = Path(argv[argv.index("--recipe") + 1])
record = {"argv": argv, "recipe_seen": recipe.read_text()}
(out / "called.json").write_text(json.dumps(record))
print("training step 1", flush=True)
print("training step 2", flush=True)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


def setup(tmp_path: Path, monkeypatch: object) -> tuple[Path, Path]:
    jobs = tmp_path / "jobs"
    (jobs / "train").mkdir(parents=True)
    (jobs / "eval").mkdir(parents=True)
    run = {"model": "tiny", "gpus": 1, "recipe": {"training": {"max_steps": 5, "learning_rate": 0.001}}}
    (jobs / "train" / "tiny.yaml").write_text(yaml.safe_dump({"runs": [run]}))
    (jobs / "eval" / "tiny.yaml").write_text(
        yaml.safe_dump({"runs": [{"model": "tiny", "gpus": 1, "adapterRunId": "train-1", "recipe": {}}]})
    )
    fake = tmp_path / "fake_sqlmaster.py"
    fake.write_text(FAKE_SQLMASTER)
    monkeypatch.setenv("SQLMASTER_BIN", f"{sys.executable} {fake}")  # type: ignore[attr-defined]
    return jobs, tmp_path / "runs"


def test_local_train_runs_the_jobs_recipe(tmp_path: Path, monkeypatch: object) -> None:
    jobs, runs = setup(tmp_path, monkeypatch)
    extra = tmp_path / "more.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "runs": [
                    {
                        "model": "tiny",
                        "gpus": 1,
                        "recipe": {"training": {"max_steps": 2}, "prompt": {"template": "compact"}},
                    }
                ]
            }
        )
    )
    result = CliRunner().invoke(
        app,
        [
            "submit",
            "train",
            "-m",
            "tiny",
            "--local",
            "--run-id",
            "train-1",
            "--jobs-dir",
            str(jobs),
            "--runs-dir",
            str(runs),
            "--values",
            str(extra),
            "--set",
            "runs[0].recipe.training.seed=7",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "training step 2" in result.output
    run_dir = runs / "train-1" / "tiny"
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert recipe == {"training": {"max_steps": 2, "seed": 7}, "prompt": {"template": "compact"}}
    called = json.loads((run_dir / "called.json").read_text())
    assert called["argv"] == [
        "train",
        "--model",
        "tiny",
        "--recipe",
        str(run_dir / "recipe.yaml"),
        "--output-dir",
        str(run_dir),
    ]


def test_local_eval_points_at_the_training_run(tmp_path: Path, monkeypatch: object) -> None:
    jobs, runs = setup(tmp_path, monkeypatch)
    result = CliRunner().invoke(
        app,
        [
            "submit",
            "eval",
            "-m",
            "tiny",
            "--local",
            "--run-id",
            "eval-1",
            "--jobs-dir",
            str(jobs),
            "--runs-dir",
            str(runs),
        ],
    )
    assert result.exit_code == 0, result.output
    called = json.loads((runs / "eval-1" / "tiny" / "called.json").read_text())
    assert called["argv"][:4] == ["eval", "run", "--model", "tiny"]
    assert called["argv"][-2:] == ["--adapter", str(runs / "train-1" / "tiny")]


def test_local_failure_propagates_the_exit_code(tmp_path: Path, monkeypatch: object) -> None:
    jobs, runs = setup(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_EXIT", "2")  # type: ignore[attr-defined]
    result = CliRunner().invoke(
        app, ["submit", "train", "-m", "tiny", "--local", "--jobs-dir", str(jobs), "--runs-dir", str(runs)]
    )
    assert result.exit_code == 2
    assert "exited with code 2" in result.output and "configuration error" in result.output


def test_local_dry_run_prints_the_plan(tmp_path: Path, monkeypatch: object) -> None:
    jobs, runs = setup(tmp_path, monkeypatch)
    result = CliRunner().invoke(
        app,
        [
            "submit",
            "train",
            "-m",
            "tiny",
            "--local",
            "--dry-run",
            "-o",
            "json",
            "--run-id",
            "train-9",
            "--jobs-dir",
            str(jobs),
            "--runs-dir",
            str(runs),
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan[0]["runId"] == "train-9" and plan[0]["model"] == "tiny"
    assert not runs.exists()  # a dry run writes nothing


# --- log stream bookkeeping (used by `logs -f` reconnects) ---------------------------------------------


def test_timestamps_parse_with_any_precision() -> None:
    a = parse_timestamp("2024-03-15T14:25:01.5Z")
    b = parse_timestamp("2024-03-15T14:25:01.500000000Z")
    c = parse_timestamp("2024-03-15T14:25:01Z")
    assert a == b and c is not None and a - c == 500_000_000
    assert split_timestamp("2024-03-15T14:25:01.000000001Z hello world") == (c + 1, "hello world")
    assert split_timestamp("no timestamp here") == (None, "no timestamp here")


def test_reconnect_skips_exactly_the_lines_already_printed() -> None:
    cursor = StreamCursor()
    t1, t2 = 1_000, 2_000
    for ts in (t1, t2, t2):  # printed: one line at t1, two at t2; then the stream dropped
        cursor.record(ts)
    keep = cursor.skipper()
    # the server resends from sinceTime (second precision): old lines, the two t2 lines, then new ones
    resent = [t1, t2, t2, t2, 3_000]
    assert [keep(ts) for ts in resent] == [False, False, False, True, True]
