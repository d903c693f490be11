"""The charts' `database.*` values: a user's own database on the cluster (docs/cluster.md).

Rendered by the real helm (tests/helm.py); each option's set and unset case. The commands the pods run are parsed
by the real `sqlmaster` CLI (click's parser, nothing run); a password is never in the manifests nor in helm's
messages; the Secret is referenced by name only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from tests.helm import CHARTS, JOBS, render, render_error, run_helm
from tests.test_charts import container, env_of, one, schema_errors

Obj = dict[str, Any]
PASSWORD = "Zq9-hUnter2-S3cret"  # distinctive: found anywhere it leaked
SERVER = "postgresql://sqlmaster_reader@db.shop.svc:5432/shop"
SECRET_DIR = "/var/run/secrets/sqlmaster-db"


def _job(task: str, sets: list[str], *, model: str = "mistral7b") -> Obj:
    return one(render(task, [JOBS / task / f"{model}.yaml"], ["runId=db-1", *sets]), "Job")


def _pod(job: Obj) -> Obj:
    spec: Obj = job["spec"]["template"]["spec"]
    return spec


def _parse_sqlmaster(argv: list[str]) -> dict[str, Any]:
    """The params `sqlmaster` parses from ``argv`` (its click parser; the command is not run). A command line
    the CLI refuses raises click's UsageError."""
    from sqlmaster.cli import app

    assert argv[0] == "sqlmaster", argv
    command: Any = typer.main.get_command(app)  # typer's own (vendored) click
    ctx = command.make_context("sqlmaster", list(argv[1:]))
    while hasattr(command, "resolve_command"):  # a group: descend to the subcommand
        name, sub, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None and name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx.params


# ---------------------------------------------------------------- unset: nothing changes


@pytest.mark.parametrize("task", ["train", "eval"])
def test_unset_renders_no_database_step(task: str) -> None:
    job = _job(task, [])
    pod = _pod(job)
    assert "initContainers" not in pod
    assert "db-password" not in {v["name"] for v in pod["volumes"]}
    command = container(job)["command"]
    assert "--dataset" not in command and not any(a.startswith("data.source=") for a in command)
    assert "SQLMASTER_DB_PASSWORD_FILE" not in env_of(job)
    assert len(job["spec"]["podFailurePolicy"]["rules"]) == 2  # exit 2 of sqlmaster; disruptions


# ---------------------------------------------------------------- database.dataDir: a folder already on the claim


def test_train_reads_a_from_db_folder_on_the_claim() -> None:
    job = _job("train", ["database.dataDir=/data/from-db/shop/"])
    command = container(job)["command"]
    assert command[-2:] == ["--set", "data.source=/data/from-db/shop"]
    params = _parse_sqlmaster(command)
    assert params["set_"] == ["data.source=/data/from-db/shop"] and params["model"] == "mistral7b"
    assert "initContainers" not in _pod(job)


def test_eval_reads_the_test_split_of_a_from_db_folder() -> None:
    job = _job("eval", ["database.dataDir=/data/from-db/shop"])
    command = container(job)["command"]
    assert command[-2:] == ["--dataset", "/data/from-db/shop/test.jsonl"]
    assert _parse_sqlmaster(command)["dataset"] == ["/data/from-db/shop/test.jsonl"]


def test_multi_gpu_train_passes_the_folder_to_sqlmaster_through_torchrun() -> None:
    job = _job("train", ["database.dataDir=/data/from-db/shop", "runs[0].gpus=4"])
    command = container(job)["command"]
    assert command[0] == "sqlmaster-torchrun"
    start = command.index("sqlmaster")
    assert _parse_sqlmaster(command[start:])["set_"] == ["data.source=/data/from-db/shop"]


# ---------------------------------------------------------------- database.source: built in the pod first


def test_a_database_file_on_the_claim_is_built_in_an_init_container_without_a_secret() -> None:
    job = _job("train", ["database.source=/data/db/shop.sqlite"])
    pod = _pod(job)
    (init,) = pod["initContainers"]
    out = "/data/runs/db-1/mistral7b/from-db"
    assert init["name"] == "from-db"
    assert init["command"] == ["sqlmaster", "data", "from-db", "/data/db/shop.sqlite", "--output-dir", out]
    params = _parse_sqlmaster(init["command"])
    assert params["sources"] == ["/data/db/shop.sqlite"] and str(params["output_dir"]) == out
    assert init["image"] == container(job)["image"]
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == {"data": "/data"}
    assert "nvidia.com/gpu" not in init["resources"]["limits"]  # the GPU stays with the main container
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert "SQLMASTER_DB_PASSWORD_FILE" not in {e["name"] for e in init["env"]}
    assert "db-password" not in {v["name"] for v in pod["volumes"]}
    assert container(job)["command"][-2:] == ["--set", f"data.source={out}"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {"containerName": "from-db", "operator": "In", "values": [2]} in [r.get("onExitCodes") for r in rules]
    assert schema_errors(job) == []


def test_a_server_password_comes_only_from_the_secret_by_name_into_the_init_container() -> None:
    job = _job("eval", [f"database.source={SERVER}", "database.passwordSecret=shop-db"])
    pod = _pod(job)
    (init,) = pod["initContainers"]
    assert init["command"][3] == SERVER
    env = {e["name"]: e for e in init["env"]}
    assert env["SQLMASTER_DB_PASSWORD_FILE"] == {
        "name": "SQLMASTER_DB_PASSWORD_FILE",
        "value": f"{SECRET_DIR}/password",
    }
    assert {"name": "db-password", "mountPath": SECRET_DIR, "readOnly": True} in init["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "db-password"]
    assert volume["secret"]["secretName"] == "shop-db"
    assert volume["secret"]["items"] == [{"key": "password", "path": "password"}]
    # The main container (the model, the GPU) neither mounts nor names the password.
    main = container(job)
    assert "db-password" not in {m["name"] for m in main["volumeMounts"]}
    assert "SQLMASTER_DB_PASSWORD_FILE" not in env_of(job)
    assert main["command"][-2:] == ["--dataset", "/data/runs/db-1/mistral7b/from-db/test.jsonl"]
    assert schema_errors(job) == []


def test_password_key_and_data_dir_are_honoured() -> None:
    sets = [f"database.source={SERVER}", "database.passwordSecret=shop-db", "database.passwordKey=pg-password"]
    job = _job("train", [*sets, "database.dataDir=/data/from-db/shop"])
    (volume,) = [v for v in _pod(job)["volumes"] if v["name"] == "db-password"]
    assert volume["secret"]["items"] == [{"key": "pg-password", "path": "password"}]
    (init,) = _pod(job)["initContainers"]
    assert init["command"][-1] == "/data/from-db/shop"
    assert container(job)["command"][-1] == "data.source=/data/from-db/shop"


# ---------------------------------------------------------------- refused, the password never shown


@pytest.mark.parametrize(
    "source",
    [
        f"postgresql://sqlmaster_reader:{PASSWORD}@db:5432/shop",
        f"mysql://reader@db:3306/shop?ssl=1&password={PASSWORD}",
        f"postgres://reader:{PASSWORD}/x@db/shop",  # an unescaped '/' in the password
        f"reader:{PASSWORD}@db/shop",  # no scheme
    ],
)
@pytest.mark.parametrize("task", ["train", "eval"])
def test_a_password_in_the_values_is_refused_and_never_echoed(task: str, source: str) -> None:
    sets = ["runId=db-1", f"database.source={source}", "database.passwordSecret=shop-db"]
    for extra in ([], ["--skip-schema-validation"]):
        err = render_error(task, [JOBS / task / "mistral7b.yaml"], sets, *extra)
        assert "VALUES VALIDATION" in err and "database.source" in err, err
        assert PASSWORD not in err, err
        if "://" in source:
            assert "Fix: put it in a Secret" in err and "--db-secret" in err, err
            assert "database.source=" + source.split("://")[0] + "://" in err, err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["database.source=shop.sqlite"], "Fix: --set database.source=/data/db/shop.sqlite"),
        (["database.source=/data/../etc/passwd"], "has a '..'"),
        (["database.source=sqlite:///data/shop.sqlite"], "not a server URL sqlmaster reads"),
        (["database.dataDir=from-db/shop"], "Fix: --set database.dataDir=/data/from-db/shop"),
        (["database.dataDir=/data/../x"], "absolute path under /data without '..'"),
        (["database.passwordSecret=shop-db"], "database.source is empty: nothing connects to a server"),
        (
            [f"database.source={SERVER}", "runs[0].nodes=2", "storage.existingClaim=rwx"],
            "runs[0].nodes=2 with database.source",
        ),
    ],
)
def test_validate_values_names_the_fix(sets: list[str], message: str) -> None:
    err = render_error("train", [JOBS / "train" / "mistral7b.yaml"], sets, "--skip-schema-validation")
    assert "VALUES VALIDATION" in err and message in err, err


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["database.passwordSecret=Shop_DB"], "database.passwordSecret"),
        (["database.passwordKey=a/b"], "database.passwordKey"),
        (["database.host=db"], "database"),
    ],
)
def test_schema_refuses_bad_database_values(sets: list[str], field: str) -> None:
    err = render_error("eval", [JOBS / "eval" / "mistral7b.yaml"], sets)
    assert "values don't meet the specifications of the schema" in err and field in err, err


def test_nothing_rendered_holds_a_password(tmp_path: Path) -> None:
    """Every place a user might put the password is refused (above); what is accepted renders no password: the
    whole output of the set case is searched."""
    sets = ["--set", f"database.source={SERVER}", "--set", "database.passwordSecret=shop-db"]
    args = ["template", "r", str(CHARTS / "sqlmaster-train"), "-f", str(JOBS / "train" / "mistral7b.yaml"), *sets]
    out = run_helm(*args).stdout
    assert PASSWORD not in out and "password=" not in out.lower()
    secrets = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Secret"]
    assert secrets == []  # the chart never creates the Secret: it references the user's by name


# ---------------------------------------------------------------- NOTES.txt


def _notes(tmp_path: Path, task: str, sets: list[str]) -> str:
    chart = tmp_path / f"sqlmaster-{task}"
    shutil.copytree(CHARTS / f"sqlmaster-{task}", chart)
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "sqlmaster-lib.notes" . | toJson }}\n'
    )
    args = ["template", "r", str(chart), "-n", "ml", "-f", str(JOBS / task / "mistral7b.yaml"), "--set", "runId=db-1"]
    for s in sets:
        args += ["--set", s]
    notes: str = yaml.safe_load(run_helm(*args, "--show-only", "templates/notes.yaml").stdout)["data"]["notes"]
    return notes


def test_notes_say_where_the_data_comes_from(tmp_path: Path) -> None:
    assert "Data:" not in _notes(tmp_path / "a", "train", [])
    notes = _notes(tmp_path / "b", "eval", [f"database.source={SERVER}", "database.passwordSecret=shop-db"])
    assert f"Data: built in each pod first from {SERVER}" in notes
    assert "Secret shop-db (key password)" in notes
    assert "kubectl logs -n ml -l sqlmaster.io/run-id=db-1 -c from-db" in notes
    notes = _notes(tmp_path / "c", "train", ["database.dataDir=/data/from-db/shop"])
    assert "Data: the from-db folder /data/from-db/shop on PVC" in notes and "train.jsonl" in notes
