"""`sqlctl submit train|eval --from-db SOURCE --db-secret NAME | --data-dir DIR` (sqlctl.database): rendered by the
real charts with `--dry-run` (no cluster); a password never reaches helm, the manifests or a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlctl.main import app
from typer.testing import CliRunner

from tests.test_charts_database import _parse_sqlmaster
from tests.test_sqlctl_render import write_jobs

PASSWORD = "Zq9-hUnter2-S3cret"
SERVER = "postgresql://sqlmaster_reader@db.shop.svc:5432/shop?sslmode=require,application_name=a=b"
Obj = dict[str, Any]


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    return write_jobs(tmp_path / "jobs")


def _submit(jobs_dir: Path, task: str, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["submit", task, "-m", "tiny", "--run-id", f"{task}-db-1", "--jobs-dir", str(jobs_dir), *args]
    )


def _job(jobs_dir: Path, task: str, *args: str) -> Obj:
    result = _submit(jobs_dir, task, "--dry-run", *args)
    assert result.exit_code == 0, result.output
    (job,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Job"]
    return job


@pytest.mark.parametrize("flag", ["--from-db", "--db"])
@pytest.mark.parametrize(("task", "read"), [("train", ["--set"]), ("eval", ["--dataset"])])
def test_from_db_and_db_secret_render_the_init_container(jobs_dir: Path, flag: str, task: str, read: list[str]) -> None:
    job = _job(jobs_dir, task, flag, SERVER, "--db-secret", "shop-db")
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    folder = f"/data/runs/{task}-db-1/tiny/from-db"
    assert init["command"] == ["sqlmaster", "data", "from-db", SERVER, "--output-dir", folder]  # the ',' kept
    assert _parse_sqlmaster(init["command"])["sources"] == [SERVER]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "db-password"]
    assert volume["secret"] == {
        "secretName": "shop-db",
        "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}],
    }
    main = pod["containers"][0]
    assert main["command"][-2] == read[0]
    assert main["command"][-1].endswith(folder + ("/test.jsonl" if task == "eval" else ""))
    _parse_sqlmaster(main["command"])  # what sqlmaster accepts


def test_data_dir_alone_reads_a_folder_already_on_the_claim(jobs_dir: Path) -> None:
    job = _job(jobs_dir, "eval", "--data-dir", "/data/from-db/shop")
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["containers"][0]["command"][-2:] == ["--dataset", "/data/from-db/shop/test.jsonl"]


def test_unset_flags_change_nothing(jobs_dir: Path) -> None:
    pod = _job(jobs_dir, "train")["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "db-password" not in {v["name"] for v in pod["volumes"]}


def test_preflight_checks_the_db_secret_and_its_key(jobs_dir: Path) -> None:
    from sqlctl.manifests import secret_needs

    needs = secret_needs([_job(jobs_dir, "train", "--from-db", SERVER, "--db-secret", "shop-db")])
    assert needs.required_keys["shop-db"] == {"password"}


@pytest.mark.parametrize(
    "source",
    [
        f"postgresql://reader:{PASSWORD}@db:5432/shop",
        f"mysql://reader@db/shop?ssl=1&password={PASSWORD}",
        f"postgres://reader:{PASSWORD}/x@db/shop",
        f"reader:{PASSWORD}@db/shop",
    ],
)
@pytest.mark.parametrize("task", ["train", "eval"])
def test_a_password_in_from_db_is_refused_before_helm_and_never_shown(jobs_dir: Path, task: str, source: str) -> None:
    result = _submit(jobs_dir, task, "--dry-run", "--from-db", source, "--db-secret", "shop-db")
    assert result.exit_code == 2, result.output
    assert PASSWORD not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --from-db") and "--db-secret my-db" in lines[0], lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db-secret", "shop-db"], "no --from-db server is given"),
        (["--from-db", SERVER, "--db-secret", PASSWORD], "--db-secret is not a Secret name"),
        (["--from-db", "/data/db/shop.sqlite", "--local"], "are for the cluster"),
        (["--from-db", "shop.sqlite"], "/data/db/shop.sqlite"),  # the chart's validateValues, through helm
    ],
)
def test_bad_database_flags_are_one_error(jobs_dir: Path, args: list[str], message: str) -> None:
    result = _submit(jobs_dir, "train", "--dry-run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and PASSWORD not in result.output, result.output
    assert "Traceback" not in result.output


def test_local_refuses_a_values_file_that_builds_in_the_pod(jobs_dir: Path, tmp_path: Path) -> None:
    values = tmp_path / "db.yaml"
    values.write_text(yaml.safe_dump({"database": {"source": "/data/db/shop.sqlite"}}))
    result = _submit(jobs_dir, "train", "--local", "--dry-run", "--values", str(values))
    assert result.exit_code == 2, result.output
    assert "builds its data in the pod first" in result.output and "sqlmaster data from-db" in result.output


def test_next_steps_evaluate_on_the_held_out_split_the_training_built() -> None:
    from sqlctl.commands.submit import _from_db_folder
    from sqlctl.submission import Planned

    init = {"name": "from-db", "command": ["sqlmaster", "data", "from-db", SERVER, "--output-dir", "/data/x/from-db"]}
    job = {"kind": "Job", "spec": {"template": {"spec": {"initContainers": [init], "containers": []}}}}
    assert _from_db_folder(Planned("tiny", "r", [job])) == "/data/x/from-db"
    assert _from_db_folder(Planned("tiny", "r", [{"kind": "Job", "spec": {"template": {"spec": {}}}}])) is None
