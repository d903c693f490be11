"""Rendering through helm: dry runs print the chart's manifests and bad input names its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlctl.main import app
from sqlctl.render import RenderRequest, render
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
CHARTS = REPO / "charts"


def write_jobs(root: Path) -> Path:
    """A jobs/ folder with small values files (the real jobs/ files are the charts part's)."""
    for task in ("train", "eval"):
        (root / task).mkdir(parents=True, exist_ok=True)
        for model in ("tiny", "gemma7b", "mistral7b"):
            run = {
                "model": model,
                "gpus": 1,
                "recipe": {"training": {"max_steps": 3}} if task == "train" else {},
            }
            (root / task / f"{model}.yaml").write_text(yaml.safe_dump({"runs": [run]}))
    return root


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    return write_jobs(tmp_path / "jobs")


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_dry_run_prints_the_charts_manifests(jobs_dir: Path) -> None:
    result = invoke(
        "submit",
        "train",
        "--model",
        "tiny",
        "--dry-run",
        "-o",
        "yaml",
        "--run-id",
        "train-tiny-t1",
        "--jobs-dir",
        str(jobs_dir),
        "-n",
        "team",
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert "Job" in kinds and "ConfigMap" in kinds
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["metadata"]["labels"]["sqlmaster.io/run-id"] == "train-tiny-t1"
    assert job["metadata"]["labels"]["sqlmaster.io/task"] == "train"
    assert job["metadata"]["namespace"] == "team"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "sqlmaster"
    assert "/data/runs/train-tiny-t1/tiny" in container["command"]


def test_dry_run_json_and_generated_run_ids(jobs_dir: Path) -> None:
    result = invoke("submit", "eval", "-m", "tiny", "--dry-run", "-o", "json", "--jobs-dir", str(jobs_dir))
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    run_id = items[0]["metadata"]["labels"]["sqlmaster.io/run-id"]
    import re

    assert re.fullmatch(r"eval-tiny-\d{8}-\d{6}-[0-9a-f]{8}", run_id)


def test_model_all_submits_the_four_7b_models(tmp_path: Path) -> None:
    from sqlmaster.models.registry import MODELS, SEVEN_B_MODELS

    jobs = tmp_path / "jobs"
    (jobs / "train").mkdir(parents=True)
    for name in MODELS:
        (jobs / "train" / f"{name}.yaml").write_text(yaml.safe_dump({"runs": [{"model": name, "gpus": 1}]}))
    result = invoke("submit", "train", "-m", "all", "--dry-run", "-o", "json", "--jobs-dir", str(jobs))
    assert result.exit_code == 0, result.output
    jobs_rendered = [i for i in json.loads(result.stdout)["items"] if i["kind"] == "Job"]
    models = sorted(j["metadata"]["labels"]["sqlmaster.io/model"] for j in jobs_rendered)
    assert models == sorted(SEVEN_B_MODELS)
    assert len({j["metadata"]["labels"]["sqlmaster.io/run-id"] for j in jobs_rendered}) == len(SEVEN_B_MODELS)


def test_unknown_model_lists_the_valid_ones(jobs_dir: Path) -> None:
    result = invoke("submit", "train", "-m", "gpt5", "--dry-run", "--jobs-dir", str(jobs_dir))
    assert result.exit_code == 2
    assert "error: unknown model 'gpt5' for train." in result.output
    assert "gemma7b, mistral7b, tiny" in result.output


def test_schema_refusal_shows_helms_message(jobs_dir: Path) -> None:
    result = invoke(
        "submit", "train", "-m", "tiny", "--dry-run", "--jobs-dir", str(jobs_dir), "--set", "runs[0].gpus=0"
    )
    assert result.exit_code == 2
    assert "error: the chart sqlmaster-train refused these values" in result.output
    assert "gpus" in result.output  # helm's own message names the key


def test_bad_run_id_and_missing_values_file(jobs_dir: Path, tmp_path: Path) -> None:
    bad = invoke("submit", "train", "-m", "tiny", "--dry-run", "--run-id", "Bad_ID", "--jobs-dir", str(jobs_dir))
    assert bad.exit_code == 2 and "run id 'Bad_ID' is not a valid run id" in bad.output
    missing = invoke(
        "submit",
        "train",
        "-m",
        "tiny",
        "--dry-run",
        "--jobs-dir",
        str(jobs_dir),
        "--values",
        str(tmp_path / "nope.yaml"),
    )
    assert missing.exit_code == 2 and "nope.yaml does not exist" in missing.output


def test_user_values_apply_after_the_jobs_file(jobs_dir: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"runs": [{"model": "tiny", "gpus": 2, "recipe": {"training": {"max_steps": 7}}}]}))
    result = invoke(
        "submit",
        "train",
        "-m",
        "tiny",
        "--dry-run",
        "-o",
        "json",
        "--jobs-dir",
        str(jobs_dir),
        "--values",
        str(extra),
        "--set",
        "job.backoffLimit=5",
    )
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    job = next(i for i in items if i["kind"] == "Job")
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    recipe = yaml.safe_load(next(i for i in items if i["kind"] == "ConfigMap")["data"]["recipe.yaml"])
    assert recipe["training"]["max_steps"] == 7


def test_artifacts_chart_renders_a_gpu_free_read_only_reader() -> None:
    docs = render(
        RenderRequest(
            release="r",
            chart=CHARTS / "sqlmaster-artifacts",
            namespace="ns",
            set_strings=["runId=train-tiny-1", "claimName=data", "name=train-tiny-1-rab12"],
        )
    )
    assert [d["kind"] for d in docs] == ["Pod"]
    pod = docs[0]
    assert pod["metadata"]["labels"]["sqlmaster.io/role"] == "artifact-reader"
    assert pod["metadata"]["labels"]["sqlmaster.io/run-id"] == "train-tiny-1"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    container = spec["containers"][0]
    assert all(m["readOnly"] for m in container["volumeMounts"] if m["name"] == "data")
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    from sqlctl.errors import SqlctlError

    with pytest.raises(SqlctlError, match=r"refused these values|helm template failed"):
        render(
            RenderRequest(release="r", chart=CHARTS / "sqlmaster-artifacts", namespace="ns", set_strings=["runId=x"])
        )


def test_generated_run_ids_fit_every_derived_name_and_do_not_collide() -> None:
    """`<task>-<model>-<yyyymmdd-hhmmss>-<8 hex>`: valid for every registry model (and a very long name), at most
    52 characters (helm's release-name limit is 53; the chart derives every name within 63 from it), and 200 made in
    the same second are distinct (32 random bits: a clash has probability ~5e-6; submit retries one anyway)."""
    from datetime import UTC, datetime

    from sqlctl.runid import MAX_RUN_ID, new_run_id, validate_run_id

    from sqlmaster.models.registry import MODELS

    now = datetime(2026, 11, 30, 0, 0, 0, tzinfo=UTC)
    for task in ("train", "eval"):
        for model in [*MODELS, "x" * 80, "Qwen2.5-7B_Instruct"]:
            run_id = new_run_id(task, model, now)
            assert validate_run_id(run_id) == run_id and len(run_id) <= MAX_RUN_ID
            assert run_id.startswith(f"{task}-") and "-20261130-000000-" in run_id
    ids = {new_run_id("train", "tiny", now) for _ in range(200)}
    assert len(ids) == 200
