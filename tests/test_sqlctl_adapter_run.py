"""`sqlctl submit eval --adapter-run TRAIN_RUN_ID`, without a cluster: the values it produces, the checks on
the training run (against a stand-in API that answers `list` with prepared Jobs), and the --local mapping.
The same path against a real control plane is in tests/test_sqlctl_k8s.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlctl.adapter_run import check_user_sets, training_claim
from sqlctl.errors import SqlctlError
from sqlctl.main import app
from sqlctl.paths import resolve_paths
from sqlctl.submission import Extras, UserValues, adapter_extras, render_model
from typer.testing import CliRunner

from sqlmaster.models.registry import MODELS as REGISTRY
from sqlmaster.models.registry import SEVEN_B_MODELS

MODELS = tuple(REGISTRY)
TRAIN_ID = "train-tiny-20240315-142501-9f3c"


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    """jobs/ files shaped like the real ones: eval defaults to the plain-helm claim sqlmaster-train-data."""
    root = tmp_path / "jobs"
    for task in ("train", "eval"):
        (root / task).mkdir(parents=True)
        for model in MODELS:
            values: dict[str, Any] = {"runs": [{"model": model, "gpus": 1, "recipe": {}}]}
            if task == "eval":
                values["runs"][0]["adapterRunId"] = "sqlmaster-train"
                values["storage"] = {"existingClaim": "sqlmaster-train-data"}
            (root / task / f"{model}.yaml").write_text(yaml.safe_dump(values))
    return root


def train_job(
    run_id: str, model: str, claim: str, task: str = "train", condition: str | None = "Complete"
) -> dict[str, Any]:
    """A Job as the API returns it, reduced to what --adapter-run reads."""
    return {
        "metadata": {
            "name": f"{run_id}-{model}",
            "labels": {"sqlmaster.io/run-id": run_id, "sqlmaster.io/model": model, "sqlmaster.io/task": task},
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "sqlmaster", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                }
            }
        },
        "status": {"conditions": [{"type": condition, "status": "True"}]} if condition else {},
    }


class FakeKube:
    """Answers `list(..., label_selector="sqlmaster.io/run-id=X")` from a fixed set of Jobs."""

    namespace = "team"

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = jobs

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        assert (api_version, kind, namespace) == ("batch/v1", "Job", "team")
        key, _, value = label_selector.partition("=")
        return [j for j in self.jobs if j["metadata"]["labels"].get(key) == value]


def data_claim(manifests: list[dict[str, Any]]) -> str:
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    return next(v["persistentVolumeClaim"]["claimName"] for v in volumes if v["name"] == "data")


def job_command(manifests: list[dict[str, Any]]) -> list[str]:
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    return [*container.get("command", []), *container.get("args", [])]


# --- values produced ----------------------------------------------------------------------------------


def test_adapter_run_sets_the_run_and_the_training_runs_claim(jobs_dir: Path) -> None:
    kube = FakeKube([train_job(TRAIN_ID, "tiny", f"{TRAIN_ID}-data")])
    paths = resolve_paths(None, jobs_dir)
    extras = adapter_extras(kube, paths, "eval", "tiny", UserValues(), TRAIN_ID)
    assert extras == Extras(adapter_run=TRAIN_ID, claim=f"{TRAIN_ID}-data")
    manifests = render_model(paths, "eval", "tiny", "eval-tiny-1", "team", UserValues(), extras)
    assert data_claim(manifests) == f"{TRAIN_ID}-data"  # not the jobs file's sqlmaster-train-data
    command = job_command(manifests)
    assert command[command.index("--adapter") + 1] == f"/data/runs/{TRAIN_ID}/tiny"
    assert not [m for m in manifests if m["kind"] == "PersistentVolumeClaim"]  # no new claim


def test_a_claim_the_user_chose_is_kept(jobs_dir: Path, tmp_path: Path) -> None:
    """helm layers the training run's claim below the user's --values and --set, so theirs wins."""
    kube = FakeKube([train_job(TRAIN_ID, "tiny", f"{TRAIN_ID}-data")])
    paths = resolve_paths(None, jobs_dir)
    by_set = UserValues(sets=("storage.existingClaim=shared-claim",))
    extras = adapter_extras(kube, paths, "eval", "tiny", by_set, TRAIN_ID)
    assert data_claim(render_model(paths, "eval", "tiny", "eval-1", "team", by_set, extras)) == "shared-claim"
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"storage": {"existingClaim": "from-file"}}))
    by_file = UserValues(files=(mine,))
    assert data_claim(render_model(paths, "eval", "tiny", "eval-1", "team", by_file, extras)) == "from-file"


def test_model_all_sets_every_models_adapter_run(jobs_dir: Path) -> None:
    multi = "train-all-in-one-0001"  # one training release that trained the 7B models
    kube = FakeKube([train_job(multi, m, f"{multi}-data") for m in SEVEN_B_MODELS])
    paths = resolve_paths(None, jobs_dir)
    for model in SEVEN_B_MODELS:
        extras = adapter_extras(kube, paths, "eval", model, UserValues(), multi)
        release = f"eval-{model.replace('.', '-')}-1"  # a run id is a DNS label: qwen2.5-7b -> qwen2-5-7b
        command = job_command(render_model(paths, "eval", model, release, "team", UserValues(), extras))
        assert command[command.index("--adapter") + 1] == f"/data/runs/{multi}/{model}"


def test_dry_run_sets_the_adapter_and_says_the_claim_was_not_looked_up(jobs_dir: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "submit",
            "eval",
            "-m",
            "mistral7b",
            "-a",
            TRAIN_ID,
            "--dry-run",
            "-o",
            "json",
            "--jobs-dir",
            str(jobs_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    manifests = json.loads(result.stdout)
    manifests = manifests if isinstance(manifests, list) else manifests["items"]
    command = job_command(manifests)
    assert command[command.index("--adapter") + 1] == f"/data/runs/{TRAIN_ID}/mistral7b"
    assert "claim is not looked up" in result.stderr


def test_adapter_run_and_a_set_adapter_run_id_conflict(jobs_dir: Path) -> None:
    with pytest.raises(SqlctlError, match="both choose the training run"):
        check_user_sets(["runs[0].recipe.evaluation.limit=5,runs[0].adapterRunId=x"])
    check_user_sets(["runs[0].recipe.evaluation.limit=5"])
    result = CliRunner().invoke(
        app,
        [
            *("submit", "eval", "-m", "tiny", "-a", TRAIN_ID, "--dry-run", "--jobs-dir", str(jobs_dir)),
            *("--set", "runs[0].adapterRunId=other"),
        ],
    )
    assert result.exit_code == 2 and "both choose the training run" in result.output
    bad = CliRunner().invoke(app, ["submit", "eval", "-m", "tiny", "-a", "Not_An_Id", "--dry-run"])
    assert bad.exit_code == 2 and "is not a valid run id" in bad.output


# --- checks on the training run ---------------------------------------------------------------------------


def test_no_such_training_run() -> None:
    with pytest.raises(SqlctlError, match="no training run 'train-nope' in namespace 'team'"):
        training_claim(FakeKube([]), "team", "train-nope", ["tiny"])  # type: ignore[arg-type]


def test_an_eval_run_is_not_a_training_run() -> None:
    kube = FakeKube([train_job("eval-tiny-1", "tiny", "c", task="eval")])
    with pytest.raises(SqlctlError, match=r"is not a training run \(its task is eval\)"):
        training_claim(kube, "team", "eval-tiny-1", ["tiny"])  # type: ignore[arg-type]


def test_wrong_model_lists_what_the_run_trained() -> None:
    kube = FakeKube([train_job(TRAIN_ID, "tiny", "c"), train_job(TRAIN_ID, "gemma7b", "c")])
    with pytest.raises(SqlctlError) as err:
        training_claim(kube, "team", TRAIN_ID, ["mistral7b"])  # type: ignore[arg-type]
    assert f"training run {TRAIN_ID!r} did not train mistral7b; it trained gemma7b, tiny" in err.value.what


def test_failed_training_is_an_error_running_training_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    failed = FakeKube([train_job(TRAIN_ID, "tiny", "c", condition="Failed")])
    with pytest.raises(SqlctlError, match=r"failed \(Job train-tiny-.*-tiny\): it left no adapter"):
        training_claim(failed, "team", TRAIN_ID, ["tiny"])  # type: ignore[arg-type]
    running = FakeKube([train_job(TRAIN_ID, "tiny", "claim-1", condition=None)])
    assert training_claim(running, "team", TRAIN_ID, ["tiny"]) == "claim-1"  # type: ignore[arg-type]
    assert f"warning: training run {TRAIN_ID} has not finished yet" in capsys.readouterr().err


# --- --local ----------------------------------------------------------------------------------------------

FAKE_SQLMASTER = """
import json, sys
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("--output-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
if argv[0] == "train":
    (out / "run.json").write_text(json.dumps({"status": "completed"}))
(out / "called.json").write_text(json.dumps(argv))
"""


def test_local_train_then_eval_with_adapter_run(
    jobs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake_sqlmaster.py"
    fake.write_text(FAKE_SQLMASTER)
    monkeypatch.setenv("SQLMASTER_BIN", f"{sys.executable} {fake}")
    runs = tmp_path / "runs"
    common = ["-m", "tiny", "--local", "--jobs-dir", str(jobs_dir), "--runs-dir", str(runs)]

    trained = CliRunner().invoke(app, ["submit", "train", *common, "--run-id", "train-1"])
    assert trained.exit_code == 0, trained.output
    assert f"sqlctl submit eval --model tiny --local --adapter-run train-1 --runs-dir {runs}" in trained.output

    evaluated = CliRunner().invoke(app, ["submit", "eval", *common, "--run-id", "eval-1", "-a", "train-1"])
    assert evaluated.exit_code == 0, evaluated.output
    argv = json.loads((runs / "eval-1" / "tiny" / "eval" / "called.json").read_text())
    assert argv[:4] == ["eval", "run", "--model", "tiny"]
    assert argv[argv.index("--adapter") + 1] == str(runs / "train-1" / "tiny")

    missing = CliRunner().invoke(app, ["submit", "eval", *common, "-a", "train-2"])
    assert missing.exit_code == 2 and "no local training run 'train-2'" in missing.output
    assert not (runs / "train-2").exists()
    other = [*common[:1], "gemma7b", *common[2:]]
    wrong = CliRunner().invoke(app, ["submit", "eval", *other, "-a", "train-1"])
    assert wrong.exit_code == 2 and "did not train gemma7b; it trained tiny" in wrong.output
    not_train = CliRunner().invoke(app, ["submit", "eval", *common, "-a", "eval-1"])
    assert not_train.exit_code == 2 and "is not a training run" in not_train.output
    assert sorted(p.name for p in runs.iterdir()) == ["eval-1", "train-1"]  # the failures created nothing
