"""`--local`: helm renders the release as for the cluster, and the rendered Job's command, recipe and env run
here with the chart's paths mapped to --runs-dir. The two modes are compared: same command, same recipe."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlctl.logstream import StreamCursor, parse_timestamp, split_timestamp
from sqlctl.main import app
from typer.testing import CliRunner

from sqlmaster.rundir import RunDir

FAKE_SQLMASTER = """
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
out = Path(argv[argv.index("--output-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
recipe = Path(argv[argv.index("--recipe") + 1])
env = {k: v for k, v in os.environ.items() if k.startswith(("SQLMASTER_", "HF_HOME", "EXTRA_"))}
record = {"argv": argv, "recipe_seen": recipe.read_text(), "env": env}
(out / "called.json").write_text(json.dumps(record))
print("training step 1", flush=True)
print("training step 2", flush=True)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A stand-in `sqlmaster` that records its argv, the recipe it was given and its environment."""
    script = tmp_path / "fake_sqlmaster.py"
    script.write_text(FAKE_SQLMASTER)
    monkeypatch.setenv("SQLMASTER_BIN", f"{sys.executable} {script}")
    monkeypatch.delenv("HF_HOME", raising=False)
    return [sys.executable, str(script)]


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    root = tmp_path / "jobs"
    (root / "train").mkdir(parents=True)
    (root / "eval").mkdir(parents=True)
    run = {"model": "tiny", "gpus": 1, "recipe": {"training": {"max_steps": 5, "learning_rate": 0.001}}}
    (root / "train" / "tiny.yaml").write_text(yaml.safe_dump({"runs": [run]}))
    (root / "eval" / "tiny.yaml").write_text(
        yaml.safe_dump({"runs": [{"model": "tiny", "gpus": 1, "adapterRunId": "train-1", "recipe": {}}]})
    )
    return root


def sqlctl(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def local_plan(task: str, jobs: Path, runs: Path, *args: str) -> list[dict[str, Any]]:
    result = sqlctl(
        *("submit", task, "-m", "tiny", "--local", "--dry-run", "-o", "json"),
        *("--jobs-dir", str(jobs), "--runs-dir", str(runs), *args),
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cluster_manifests(task: str, jobs: Path, *args: str) -> list[dict[str, Any]]:
    result = sqlctl("submit", task, "-m", "tiny", "--dry-run", "-o", "json", "--jobs-dir", str(jobs), *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["items"]


def container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [m for m in manifests if m["kind"] == "Job"]
    return job["spec"]["template"]["spec"]["containers"][0]


def recipe_text(manifests: list[dict[str, Any]]) -> str:
    (configmap,) = [m for m in manifests if m["kind"] == "ConfigMap"]
    return configmap["data"]["recipe.yaml"]


def as_local(command: list[str], runs: Path, run_id: str, program: list[str]) -> list[str]:
    """The cluster command with the mapping docs/cluster.md states: /data/runs -> --runs-dir, the mounted recipe
    -> <runs-dir>/<run-id>/tiny/recipe.yaml, the program sqlmaster -> $SQLMASTER_BIN."""
    recipe = str(runs / run_id / "tiny" / "recipe.yaml")
    mapped = [a.replace("/etc/sqlmaster/recipe.yaml", recipe).replace("/data/runs", str(runs)) for a in command]
    at = mapped.index("sqlmaster")
    return [*mapped[:at], *program, *mapped[at + 1 :]]


# --- the two modes render the same ------------------------------------------------------------------------

OPTIONS = {
    "plain": [],
    "baseModel": ["--set", "runs[0].baseModel=/models/my-tiny"],
    "extraArgs": ["--set", "runs[0].extraArgs={--max-steps=3,--eval-steps=2}"],
    "gpus=2 (torchrun)": ["--set", "runs[0].gpus=2"],
    "--recipe-set": ["--recipe-set", "data.seed=7", "--recipe-set", "prompt.template=compact"],
    "--set recipe key": ["--set", "runs[0].recipe.data.test_size=50"],
}


@pytest.mark.parametrize("task", ["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS, ids=list(OPTIONS))
def test_local_and_cluster_render_the_same_command_and_recipe(
    task: str, option: str, jobs: Path, tmp_path: Path, fake: list[str]
) -> None:
    runs = tmp_path / "runs"
    args = ["--run-id", f"{task}-x", *OPTIONS[option]]
    cluster = cluster_manifests(task, jobs, *args)
    (plan,) = local_plan(task, jobs, runs, *args)
    command = [*container(cluster)["command"], *container(cluster).get("args", [])]
    assert plan["argv"] == as_local(command, runs, f"{task}-x", fake)
    recipe_file = RunDir(runs / f"{task}-x" / "tiny").recipe  # the run directory's name for it
    assert plan["files"] == {str(recipe_file): recipe_text(cluster)}
    plain_env = {e["name"]: e["value"] for e in container(cluster)["env"] if "value" in e}
    plain_env.pop("HF_HOME")  # the claim's cache has no local meaning: the local default cache is used
    assert plan["env"] == plain_env


def test_every_chart_option_reaches_the_command_in_both_modes(jobs: Path, tmp_path: Path, fake: list[str]) -> None:
    runs = tmp_path / "runs"

    def both(*args: str) -> tuple[list[str], list[str]]:
        cluster = container(cluster_manifests("train", jobs, "--run-id", "r1", *args))
        (plan,) = local_plan("train", jobs, runs, "--run-id", "r1", *args)
        return [*cluster["command"], *cluster.get("args", [])], plan["argv"]

    for command in both("--set", "runs[0].baseModel=/models/my-tiny"):
        assert command[command.index("--model") + 1] == "/models/my-tiny"
    for command in both("--set", "runs[0].extraArgs={--max-steps=3,--eval-steps=2}"):
        assert command[-2:] == ["--max-steps=3", "--eval-steps=2"]
    for command in both("--set", "runs[0].gpus=2"):
        assert command[:4] == ["sqlmaster-torchrun", "--no-python", "--standalone", "--nproc_per_node=2"]
    recipe = yaml.safe_load(
        local_plan("train", jobs, runs, "--recipe-set", "training.learning_rate=3e-4")[0]["files"].popitem()[1]
    )
    assert recipe["training"] == {"max_steps": 5, "learning_rate": 0.0003}


def test_local_train_runs_the_charts_command(jobs: Path, tmp_path: Path, fake: list[str]) -> None:
    runs = tmp_path / "runs"
    extra = tmp_path / "more.yaml"
    run = {"model": "tiny", "gpus": 1, "recipe": {"training": {"max_steps": 2}, "prompt": {"template": "compact"}}}
    extra.write_text(yaml.safe_dump({"runs": [run]}))
    result = sqlctl(
        *("submit", "train", "-m", "tiny", "--local", "--run-id", "train-1"),
        *("--jobs-dir", str(jobs), "--runs-dir", str(runs), "--values", str(extra)),
        *("--set", "runs[0].recipe.training.seed=7", "--set", "runs[0].env[0].name=EXTRA_X,runs[0].env[0].value=y"),
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
    assert called["env"]["SQLMASTER_RUN_ID"] == "train-1" and called["env"]["EXTRA_X"] == "y"
    assert "HF_HOME" not in called["env"]


def test_local_eval_points_at_the_training_run(jobs: Path, tmp_path: Path, fake: list[str]) -> None:
    runs = tmp_path / "runs"
    result = sqlctl(
        *("submit", "eval", "-m", "tiny", "--local", "--run-id", "eval-1"),
        *("--jobs-dir", str(jobs), "--runs-dir", str(runs)),
    )
    assert result.exit_code == 0, result.output
    called = json.loads((runs / "eval-1" / "tiny" / "eval" / "called.json").read_text())
    assert called["argv"][:4] == ["eval", "run", "--model", "tiny"]
    assert called["argv"][called["argv"].index("--adapter") + 1] == str(runs / "train-1" / "tiny")


def test_local_failure_propagates_the_exit_code(
    jobs: Path, tmp_path: Path, fake: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "2")
    result = sqlctl("submit", "train", "-m", "tiny", "--local", "--jobs-dir", str(jobs), "--runs-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "exited with code 2" in result.output and "configuration error" in result.output


def test_local_dry_run_prints_the_plan_and_writes_nothing(jobs: Path, tmp_path: Path, fake: list[str]) -> None:
    runs = tmp_path / "runs"
    (plan,) = local_plan("train", jobs, runs, "--run-id", "train-9")
    assert plan["runId"] == "train-9" and plan["model"] == "tiny"
    assert not runs.exists()


# --- what --local refuses -----------------------------------------------------------------------------------


def test_local_writes_nothing_outside_the_runs_dir(jobs: Path, tmp_path: Path, fake: list[str]) -> None:
    runs = tmp_path / "deep" / "er" / "runs"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    cases = {
        "runs[0].model=../../../../tmp/x": "refused these values",  # the chart's schema: model is an enum
        "runs[0].extraArgs={--output-dir,/data/runs/../../../escape}": "points outside the runs folder",
        "runs[0].extraArgs={--output-dir=/data/runs/../../escape}": "points outside the runs folder",
        "runs[0].extraArgs={--cache,/data/hf-cache}": "has no local equivalent",
        "runs[0].nodes=2,storage.existingClaim=shared": "--local runs on this machine only",
    }
    for assignment, message in cases.items():
        result = sqlctl(
            *("submit", "train", "-m", "tiny", "--local", "--jobs-dir", str(jobs), "--runs-dir", str(runs)),
            *("--set", assignment),
        )
        assert result.exit_code == 2, (assignment, result.output)
        assert result.output.startswith("error: ") and message in result.output, result.output
        assert "Traceback" not in result.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_recipe_syntax_in_set_is_refused_with_both_fixes(jobs: Path, tmp_path: Path) -> None:
    result = sqlctl(
        "submit", "train", "-m", "tiny", "--dry-run", "--jobs-dir", str(jobs), "--set", "training.max_steps=5"
    )
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        "error: --set training.max_steps=5 names a recipe key, but sqlctl's --set sets chart values (Helm syntax). "
        "Use --recipe-set training.max_steps=5 (every run) or --set runs[0].recipe.training.max_steps=5 (one run)."
    )
    from sqlctl.recipeset import check_chart_sets, set_assignments

    assert set_assignments(r"a=1,b={x,y},c=d\,e") == ["a=1", "b={x,y}", r"c=d\,e"]
    check_chart_sets(["runs[0].extraArgs={--x,training.x=1}", r"env=a\,training.x=1"])  # values, not keys
    for bad, message in {
        "max_steps=5": "is not section.key=value",
        "trainin.max_steps=5": "'trainin' is not a recipe section",
        "training.max_stepz=5": "refused these values",  # the chart's schema knows every recipe key
        "training.learning_rate=.inf": "not a finite number",
    }.items():
        result = sqlctl("submit", "train", "-m", "tiny", "--dry-run", "--jobs-dir", str(jobs), "--recipe-set", bad)
        assert result.exit_code == 2 and message in result.output, (bad, result.output)


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
