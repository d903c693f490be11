"""`sqlctl submit train --stage grpo --from SFT_RUN_ID`, without a cluster: the flags' errors, the Job it renders
(jobs/grpo/<model>.yaml through the train chart), the checks on the SFT run (against the stand-in API of
tests/test_sqlctl_adapter_run.py) and the --local mapping. The chart's own refusals are in tests/test_charts.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlctl.errors import SqlctlError
from sqlctl.main import app
from sqlctl.paths import resolve_paths
from sqlctl.submission import UserValues, init_from_extras, render_model
from typer.testing import CliRunner

from tests.test_sqlctl_adapter_run import FakeKube, data_claim, train_job

REPO = Path(__file__).resolve().parents[1]
SFT_ID = "train-tiny-20240315-142501-9f3c"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def error_lines(result: Any) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage", "grpo"], "--stage grpo needs --from SFT_RUN_ID"),
        (["--from", SFT_ID], "--from is for --stage grpo"),
        (["--stage", "sft", "--from", SFT_ID], "--from is for --stage grpo"),
        (["--stage", "rl"], "--stage 'rl' is not a stage"),
        (["--stage", "grpo", "--from", "Bad_Id"], "--from 'Bad_Id' is not a valid run id"),
        (["--stage", "grpo", "--from", SFT_ID, "--set", "runs[0].initFromRunId=x"], "both choose the training run"),
        (["--stage", "grpo", "--from", SFT_ID, "--set", "runs[0].stage=sft"], "both choose the training run"),
    ],
)
def test_stage_and_from_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    result = invoke("submit", "train", "--model", "tiny", "--dry-run", *args)
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert message in line, result.output


def test_from_with_model_all_and_a_model_without_grpo_values(tmp_path: Path) -> None:
    result = invoke("submit", "train", "--model", "all", "--stage", "grpo", "--from", SFT_ID, "--dry-run")
    assert result.exit_code == 2 and "--model all submits several" in error_lines(result)[0]
    jobs = tmp_path / "jobs"  # every model has GRPO values in the repository: take one away in a copy
    shutil.copytree(REPO / "jobs", jobs)
    (jobs / "grpo" / "mistral7b.yaml").unlink()
    args = ["--stage", "grpo", "--from", SFT_ID, "--dry-run", "--jobs-dir", str(jobs)]
    result = invoke("submit", "train", "--model", "mistral7b", *args)
    assert result.exit_code == 2
    assert "unknown model 'mistral7b' for train --stage grpo" in error_lines(result)[0]
    assert "jobs/grpo" in error_lines(result)[0]


def test_dry_run_renders_the_grpo_job() -> None:
    result = invoke(
        "submit",
        "train",
        "-m",
        "tiny",
        "--stage",
        "grpo",
        "--from",
        SFT_ID,
        "--run-id",
        "grpo-1",
        "--dry-run",
        "-n",
        "team",
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-4:] == ["--stage", "grpo", "--init-from", f"/data/runs/{SFT_ID}/tiny"]
    assert command[command.index("--output-dir") + 1] == "/data/runs/grpo-1/tiny"
    assert job["metadata"]["labels"]["sqlmaster.io/init-from"] == SFT_ID
    assert "claim is not looked up" in result.stderr
    recipe = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["recipe.yaml"])
    assert recipe["grpo"]["num_generations"] >= 2  # jobs/grpo/tiny.yaml's recipe, not jobs/train/tiny.yaml's


def test_the_sft_runs_claim_is_mounted() -> None:
    paths = resolve_paths()
    kube = FakeKube([train_job(SFT_ID, "tiny", "sft-claim")])
    extras = init_from_extras(kube, paths, "tiny", UserValues(), SFT_ID)
    assert (extras.claim, extras.init_from_run, extras.stage) == ("sft-claim", SFT_ID, "grpo")
    manifests = render_model(paths, "train", "tiny", "grpo-2", "team", UserValues(), extras)
    assert data_claim(manifests) == "sft-claim"
    # A claim the user names wins (their --values come after the looked-up claim).
    mine = UserValues(sets=("storage.existingClaim=my-claim",))
    assert data_claim(render_model(paths, "train", "tiny", "grpo-2", "team", mine, extras)) == "my-claim"


def _grpo_job(run_id: str) -> dict[str, Any]:
    job = train_job(run_id, "tiny", "sft-claim")
    job["metadata"]["labels"]["sqlmaster.io/stage"] = "grpo"
    return job


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([], "no training run"),
        ([train_job(SFT_ID, "tiny", "c", task="eval")], "is not a training run"),
        ([train_job(SFT_ID, "mistral7b", "c")], "did not train tiny"),
        ([train_job(SFT_ID, "tiny", "c", condition="Failed")], "failed"),
        ([train_job(SFT_ID, "tiny", "c", condition=None)], "has not finished yet: GRPO starts from a completed run"),
        ([_grpo_job(SFT_ID)], "is a GRPO run: GRPO starts from a finished SFT run"),
    ],
)
def test_the_sft_run_is_checked_before_anything_is_created(jobs: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(SqlctlError, match=message):
        init_from_extras(FakeKube(jobs), resolve_paths(), "tiny", UserValues(), SFT_ID)


def _local_sft(runs: Path, status: str) -> None:
    run = runs / SFT_ID / "tiny"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": status, "stage": "sft"}))


def test_local_maps_the_sft_run_into_the_runs_dir(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _local_sft(runs, "completed")
    result = invoke(
        "submit", "train", "-m", "tiny", "--stage", "grpo", "--from", SFT_ID, "--local", "--runs-dir", str(runs),
        "--run-id", "grpo-3", "--dry-run", "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)
    argv = run["argv"]
    assert argv[argv.index("--stage") + 1] == "grpo"
    assert argv[argv.index("--init-from") + 1] == str((runs / SFT_ID / "tiny").resolve())
    assert argv[argv.index("--output-dir") + 1] == str((runs / "grpo-3" / "tiny").resolve())
    assert "grpo:" in next(iter(run["files"].values()))  # the GRPO recipe, written beside the run


@pytest.mark.parametrize(("status", "message"), [(None, "no local training run"), ("running", "has not completed")])
def test_local_refuses_a_missing_or_unfinished_sft_run(tmp_path: Path, status: str | None, message: str) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    if status:
        _local_sft(runs, status)
    result = invoke(
        "submit", "train", "-m", "tiny", "--stage", "grpo", "--from", SFT_ID, "--local", "--runs-dir", str(runs),
        "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in error_lines(result)[0]
    assert not (runs / "grpo").exists()
