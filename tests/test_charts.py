"""The Helm charts, rendered by the real helm 3.17.3 and validated against Kubernetes 1.29-1.33 schemas.

helm comes from $SQLMASTER_HELM or .tools/bin/helm (scripts/tools.sh); a missing helm fails these tests.
Every jobs/ file is linted and rendered once (module-scoped fixtures); variants render the set and unset
case of each option. Measured on 2 cores: the whole file runs in about 10 s.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from sqlmaster.models.registry import MODELS as REGISTRY
from sqlmaster.models.registry import SEVEN_B_MODELS
from tests.helm import CHARTS, JOBS, render, render_error, run_helm

K8S_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]
MODELS = list(REGISTRY)  # every registry model has a jobs/train and a jobs/eval file
TASKS = ["train", "eval"]
KEYS = ["HF_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY", "LANGSMITH_API_KEY"]
JOB_FILES = [(task, model) for task in TASKS for model in MODELS]
Obj = dict[str, Any]


# ---------------------------------------------------------------- helpers


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(job: Obj) -> Obj:
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return c


def env_of(job: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container(job)["env"]}


@cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """A strict validator for one kind at one Kubernetes version (the schemas kubernetes-validate ships)."""
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = schema_contents(f"{folder}/{kind.lower()}-{api}.json", version)
    definitions = schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: Obj) -> list[str]:
    """Every schema error of ``obj`` at every version (kubernetes_validate.validate stops at the first)."""
    errors = []
    for version in K8S_VERSIONS:
        validator = _validator(version, obj["kind"], obj["apiVersion"])
        for err in validator.iter_errors(obj):
            where = "/".join(str(p) for p in err.absolute_path) or "(root)"
            errors.append(f"k8s {version} {obj['kind']}/{obj['metadata']['name']} {where}: {err.message}")
    return errors


# ---------------------------------------------------------------- fixtures: one helm run per case


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], list[Obj]]:
    """Every jobs/<task>/<model>.yaml rendered as `helm install sqlmaster-<task> ... -f FILE` would."""
    return {(task, model): render(task, [JOBS / task / f"{model}.yaml"]) for task, model in JOB_FILES}


MULTI_NODE_SETS = [
    "runId=multi-1",
    "runs[0].nodes=2",
    "runs[0].gpus=8",
    "storage.existingClaim=shared-rwx",
    "kueue.queueName=gpu-queue",
    "priorityClassName=research-high",
]


@pytest.fixture(scope="module")
def variants() -> dict[str, list[Obj]]:
    """The set case of each option (the unset case is the plain jobs/ file)."""
    mistral = [JOBS / "train" / "mistral7b.yaml"]
    return {
        "multi_gpu": render("train", mistral, ["runId=multi-gpu", "runs[0].gpus=4"]),
        "multi_node": render("train", mistral, MULTI_NODE_SETS),
        "eval_base": render("eval", [JOBS / "eval" / "mistral7b.yaml"], ["runs[0].adapterRunId="]),
    }


# ---------------------------------------------------------------- every jobs/ file


@pytest.mark.parametrize(("task", "model"), JOB_FILES)
def test_lint_strict(task: str, model: str) -> None:
    proc = run_helm("lint", "--strict", str(CHARTS / f"sqlmaster-{task}"), "-f", str(JOBS / task / f"{model}.yaml"))
    assert "0 chart(s) failed" in proc.stdout


def test_every_manifest_valid_against_k8s_1_29_to_1_33(
    rendered: dict[tuple[str, str], list[Obj]], variants: dict[str, list[Obj]]
) -> None:
    objs = [o for objs in [*rendered.values(), *variants.values()] for o in objs]
    errors = [e for o in objs for e in schema_errors(o)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(("task", "model"), JOB_FILES)
def test_one_job_per_run_with_design_command(task: str, model: str, rendered: dict) -> None:
    objs = rendered[task, model]
    job = one(objs, "Job")
    runs = yaml.safe_load((JOBS / task / f"{model}.yaml").read_text())["runs"]
    assert len(runs) == 1
    run_id = f"sqlmaster-{task}"  # no runId in the file: the release name
    out = f"/data/runs/{run_id}/{model}"
    cmd = container(job)["command"]
    recipe_args = ["--recipe", "/etc/sqlmaster/recipe.yaml"]
    if task == "train":
        assert cmd == ["sqlmaster", "train", "--model", model, *recipe_args, "--output-dir", out]
    else:
        adapter = f"/data/runs/{runs[0]['adapterRunId']}/{model}"
        assert cmd == [
            "sqlmaster",
            "eval",
            "run",
            "--model",
            model,
            "--adapter",
            adapter,
            "--output-dir",
            f"{out}/eval",
            *recipe_args,
        ]
    assert len(job["metadata"]["name"]) <= 56
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])


@pytest.mark.parametrize(("task", "model"), JOB_FILES)
def test_labels_on_job_and_pod_template(task: str, model: str, rendered: dict) -> None:
    job = one(rendered[task, model], "Job")
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["sqlmaster.io/run-id"] == f"sqlmaster-{task}"
        assert labels["sqlmaster.io/model"] == model
        assert labels["sqlmaster.io/task"] == task
        assert labels["app.kubernetes.io/component"] == task
        assert labels["app.kubernetes.io/part-of"] == "sqlmaster"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/name"] == f"sqlmaster-{task}"
        assert labels["app.kubernetes.io/instance"] == f"sqlmaster-{task}"


@pytest.mark.parametrize(("task", "model"), JOB_FILES)
def test_keys_only_from_secret(task: str, model: str, rendered: dict) -> None:
    objs = rendered[task, model]
    env = env_of(one(objs, "Job"))
    for key in KEYS:
        assert "value" not in env[key], f"{key} must not be a literal"
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "sqlmaster-keys" and ref["key"] == key
        gated = REGISTRY[model].gated
        assert ref["optional"] is not (key == "HF_TOKEN" and gated), f"{key} optional for {model}"
    # No object of the release carries a key's value, and no Secret is created by the chart.
    assert not of_kind(objs, "Secret")


@pytest.mark.parametrize(("task", "model"), JOB_FILES)
def test_recipe_configmap_matches_values(task: str, model: str, rendered: dict) -> None:
    objs = rendered[task, model]
    job = one(objs, "Job")
    cm = one(objs, "ConfigMap")
    values = yaml.safe_load((JOBS / task / f"{model}.yaml").read_text())
    assert yaml.safe_load(cm["data"]["recipe.yaml"]) == values["runs"][0]["recipe"]
    (vol,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "recipe"]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    (mount,) = [m for m in container(job)["volumeMounts"] if m["name"] == "recipe"]
    assert mount["mountPath"] + "/" + vol["configMap"]["items"][0]["path"] == "/etc/sqlmaster/recipe.yaml"


# ---------------------------------------------------------------- the done-when Job (train mistral7b)


def test_mistral_train_job_gpu_scheduling(rendered: dict) -> None:
    job = one(rendered["train", "mistral7b"], "Job")
    pod = job["spec"]["template"]["spec"]
    res = container(job)["resources"]
    assert res["requests"]["nvidia.com/gpu"] == 1 and res["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "priorityClassName" not in pod  # unset case
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert "completionMode" not in job["spec"] and "subdomain" not in pod


def test_tiny_drops_the_a100_selector(rendered: dict) -> None:
    pod = one(rendered["train", "tiny"], "Job")["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert container(one(rendered["train", "tiny"], "Job"))["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_mistral_train_job_failure_policy(rendered: dict) -> None:
    spec = one(rendered["train", "mistral7b"], "Job")["spec"]
    assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] > 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # required by podFailurePolicy
    rules = spec["podFailurePolicy"]["rules"]
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "sqlmaster", "operator": "In", "values": [2]},
    } in rules
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules


def test_mistral_train_job_security(rendered: dict) -> None:
    job = one(rendered["train", "mistral7b"], "Job")
    pod_sc = job["spec"]["template"]["spec"]["securityContext"]
    sc = container(job)["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_mistral_train_job_storage_and_shm(rendered: dict) -> None:
    objs = rendered["train", "mistral7b"]
    job = one(objs, "Job")
    pvc = one(objs, "PersistentVolumeClaim")  # unset case: existingClaim "" -> the chart creates one
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["name"]: m["mountPath"] for m in container(job)["volumeMounts"]}
    assert mounts["data"] == "/data" and mounts["shm"] == "/dev/shm"
    assert env_of(job)["HF_HOME"]["value"] == "/data/hf-cache"
    assert container(job)["name"] == "sqlmaster"


def test_eval_uses_the_training_claim(rendered: dict) -> None:
    objs = rendered["eval", "mistral7b"]
    assert not of_kind(objs, "PersistentVolumeClaim")  # existingClaim set -> nothing created
    vols = one(objs, "Job")["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in vols if v["name"] == "data")["persistentVolumeClaim"]["claimName"]
    train_pvc = one(rendered["train", "mistral7b"], "PersistentVolumeClaim")
    assert claim == train_pvc["metadata"]["name"] == "sqlmaster-train-data"


def test_eval_without_adapter_evaluates_base_model(variants: dict) -> None:
    assert "--adapter" not in container(one(variants["eval_base"], "Job"))["command"]


# ---------------------------------------------------------------- multi-GPU, multi-node and the set options


def test_multi_gpu_uses_sqlmaster_torchrun(variants: dict) -> None:
    job = one(variants["multi_gpu"], "Job")
    cmd = container(job)["command"]
    assert cmd[:4] == ["sqlmaster-torchrun", "--no-python", "--standalone", "--nproc_per_node=4"]
    assert cmd[4:6] == ["sqlmaster", "train"]
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert "completionMode" not in job["spec"] and not of_kind(variants["multi_gpu"], "Service")


def test_multi_node_indexed_job_and_headless_service(variants: dict) -> None:
    objs = variants["multi_node"]
    job, svc = one(objs, "Job"), one(objs, "Service")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 2 and spec["parallelism"] == 2
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert pod["subdomain"] == svc["metadata"]["name"] == job["metadata"]["name"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    name = job["metadata"]["name"]
    cmd = container(job)["command"]
    assert cmd[:7] == [
        "sqlmaster-torchrun",
        "--no-python",
        "--nnodes=2",
        "--node_rank=$(NODE_RANK)",
        "--nproc_per_node=8",
        f"--master_addr={name}-0.{name}",
        "--master_port=29500",
    ]
    assert "--output-dir" in cmd and "/data/runs/multi-1/mistral7b" in cmd
    rank = env_of(job)["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert container(job)["resources"]["requests"]["nvidia.com/gpu"] == 8


def test_set_options_existing_claim_queue_priority(variants: dict) -> None:
    objs = variants["multi_node"]
    job = one(objs, "Job")
    assert not of_kind(objs, "PersistentVolumeClaim")
    vols = job["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in vols if v["name"] == "data")["persistentVolumeClaim"]["claimName"] == "shared-rwx"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "research-high"
    assert job["metadata"]["labels"]["sqlmaster.io/run-id"] == "multi-1"


def test_long_run_id_gives_unique_dns_names() -> None:
    long_id = "a" * 30 + "-" + "b" * 30
    names = set()
    for model in ("mistral7b", "llama2-7b"):
        sets = [f"runId={long_id}", f"runs[0].model={model}"]
        job = one(render("train", [JOBS / "train" / "mistral7b.yaml"], sets), "Job")
        name = job["metadata"]["name"]
        assert len(name) <= 56 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
        names.add(name)
    assert len(names) == 2


def test_notes_print_the_follow_commands(tmp_path: Path) -> None:
    """NOTES.txt is the library's notes; render them through a copy of the chart (no cluster for install)."""
    for task in TASKS:
        assert (CHARTS / f"sqlmaster-{task}" / "templates" / "NOTES.txt").read_text().strip() == (
            '{{ include "sqlmaster-lib.notes" . }}'
        )
    chart = tmp_path / "sqlmaster-train"
    shutil.copytree(CHARTS / "sqlmaster-train", chart)
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ include "sqlmaster-lib.notes" . | toJson }}\n'
    )
    args = [
        "template",
        "sqlmaster-train",
        str(chart),
        "-n",
        "ml",
        "-f",
        str(JOBS / "train" / "mistral7b.yaml"),
        "--set",
        "runId=notes-1",
        "--show-only",
        "templates/notes.yaml",
    ]
    notes = yaml.safe_load(run_helm(*args).stdout)["data"]["notes"]
    assert "kubectl get pods -n ml -l sqlmaster.io/run-id=notes-1" in notes
    assert "kubectl logs -n ml -f -l sqlmaster.io/run-id=notes-1,sqlmaster.io/model=mistral7b" in notes
    assert "sqlctl logs notes-1 -n ml -f" in notes
    assert "/data/runs/notes-1/mistral7b" in notes


# ---------------------------------------------------------------- refused values


def _values(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return path


BASE_RUN = "runs:\n  - model: mistral7b\n    gpus: 1\n"


@pytest.mark.parametrize(
    ("task", "text", "field"),
    [
        ("train", "runs:\n  - model: gpt-5\n    gpus: 1\n", "runs.0.model"),
        ("eval", "runs:\n  - model: mistral-7b\n    gpus: 1\n", "runs.0.model"),
        ("train", "runs:\n  - model: mistral7b\n    gpus: 0\n", "runs.0.gpus"),
        ("train", "runs:\n  - model: mistral7b\n", "gpus is required"),
        ("train", BASE_RUN + "image:\n  repository: ''\n", "image.repository"),
        ("eval", BASE_RUN + "image:\n  tag: ''\n", "image.tag"),
        ("train", BASE_RUN + "image:\n  tag: null\n", "tag is required"),
        ("train", BASE_RUN + "runId: null\n", "runId is required"),
        ("train", BASE_RUN + "runId: My_Run\n", "runId"),
        ("eval", BASE_RUN + "    nodes: 2\n", "runs.0.nodes"),
        ("train", BASE_RUN + "    recipe:\n      training:\n        lr: 1\n", "runs.0.recipe.training"),
        ("train", BASE_RUN + "    recipe:\n      optimizer: {}\n", "runs.0.recipe"),
        ("train", BASE_RUN + "secrets:\n  HF_TOKEN: fake_secret_value\n", "secrets"),
        ("train", BASE_RUN + "env:\n  - name: HF_TOKEN\n    value: fake_secret_value\n", "env.0.value"),
        (
            "eval",
            BASE_RUN + "    env:\n      - name: OPENAI_API_KEY\n        value: sk-live_secret_value\n",
            "runs.0.env.0.value",
        ),
        (
            "train",
            BASE_RUN + "env:\n  - name: MY_DB_PASSWORD\n    value: hunter2_secret_value\n",
            "env.0.value",
        ),
        ("train", BASE_RUN + "resources:\n  limits:\n    nvidia.com/gpu: 2\n", "resources.limits"),
    ],
)
def test_schema_refuses_bad_values(tmp_path: Path, task: str, text: str, field: str) -> None:
    err = render_error(task, [_values(tmp_path, text)])
    assert "values don't meet the specifications of the schema" in err
    assert field in err, err
    assert "secret_value" not in err  # helm must not echo a literal key back


@pytest.mark.parametrize(
    ("task", "text", "field", "message"),
    [
        ("train", BASE_RUN + "shm:\n  sizeLimit: lots\n", "shm.sizeLimit", "not a Kubernetes quantity"),
        ("eval", BASE_RUN + "storage:\n  size: 200 GB\n", "storage.size", "not a Kubernetes quantity"),
        ("train", BASE_RUN + "resources:\n  limits:\n    memory: 64gigs\n", "memory", "not a Kubernetes quantity"),
        ("train", BASE_RUN + "storage:\n  existingClaim: ../x\n", "existingClaim", "not a Kubernetes object name"),
        ("eval", BASE_RUN + "secrets:\n  name: Keys/x\n", "secrets.name", "not a Kubernetes object name"),
        ("train", BASE_RUN + "priorityClassName: high prio\n", "priorityClassName", "not a Kubernetes object name"),
        ("train", BASE_RUN + "    recipe:\n      training:\n        max_steps: many\n", "max_steps", "integer"),
        ("eval", BASE_RUN + "    recipe:\n      evaluation:\n        do_sample: maybe\n", "do_sample", "boolean"),
        # bounds and choices come from sqlmaster/config.py's field metadata (recipe_json_schema)
        ("train", BASE_RUN + "    recipe:\n      model:\n        mode: half\n", "mode", '"lora", "full"'),
        (
            "train",
            BASE_RUN + "    recipe:\n      training:\n        warmup_steps: -5\n",
            "warmup_steps",
            "greater than or equal to 0",
        ),
        (
            "eval",
            BASE_RUN + "    recipe:\n      evaluation:\n        batch_size: 0\n",
            "batch_size",
            "greater than or equal to 1",
        ),
    ],
)
def test_schema_names_the_fix_for_sizes_names_and_types(
    tmp_path: Path, task: str, text: str, field: str, message: str
) -> None:
    err = render_error(task, [_values(tmp_path, text)])
    assert "values don't meet the specifications of the schema" in err
    assert field in err and message in err, err


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("chart", "other"), [("train", "eval"), ("eval", "train")])
def test_each_chart_refuses_the_other_tasks_values_file(chart: str, other: str, model: str) -> None:
    """jobs/train files in the eval chart would evaluate the base model with no adapter; the reverse, train
    with an eval recipe. Both are refused, naming the chart the file belongs to."""
    err = render_error(chart, [JOBS / other / f"{model}.yaml"])
    assert f"helm install sqlmaster-{other} charts/sqlmaster-{other} -f FILE" in err, err
    # Past the schema, validateValues says the same.
    err = render_error(chart, [JOBS / other / f"{model}.yaml"], [], "--skip-schema-validation")
    assert "VALUES VALIDATION" in err and f"helm install sqlmaster-{other} charts/sqlmaster-{other}" in err, err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["claimName=../x"], "not a Kubernetes object name"),
        (["claimName=Data_Claim"], "not a Kubernetes object name"),
        (["claimName=c", "runsPath=/data/../etc"], "absolute path without '..'"),
        (["claimName=c", "runsPath=data/runs"], "absolute path without '..'"),
    ],
)
def test_artifacts_chart_refuses_bad_claim_and_paths(sets: list[str], message: str) -> None:
    args = ["template", "pull", str(CHARTS / "sqlmaster-artifacts"), "--set", "runId=run-1"]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    if sets[0] == "claimName=../x":  # the template repeats the name check past --skip-schema-validation
        proc = run_helm(*args, "--skip-schema-validation", check=False)
        assert proc.returncode != 0 and 'claimName "../x" is not a PVC name' in proc.stderr, proc.stderr


def test_artifacts_chart_accepts_a_claim_name() -> None:
    args = ["template", "pull", str(CHARTS / "sqlmaster-artifacts"), "--set", "runId=run-1,claimName=train-data.v1"]
    (pod,) = [d for d in yaml.safe_load_all(run_helm(*args).stdout) if d]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "train-data.v1"


def test_schema_allows_secret_references(tmp_path: Path) -> None:
    text = BASE_RUN + "env:\n  - name: HF_TOKEN\n    valueFrom:\n      secretKeyRef: {name: other, key: t}\n"
    env = env_of(one(render("train", [_values(tmp_path, text)]), "Job"))
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "other"


def test_validate_values_lists_every_problem_with_its_fix(tmp_path: Path) -> None:
    """Past the schema (--skip-schema-validation), validateValues still refuses, naming each key and fix."""
    text = (
        "runs:\n  - model: gpt-5\n    gpus: 0\n  - model: mistral7b\n    gpus: 1\n    nodes: 3\n"
        "  - model: mistral7b\n    gpus: 1\n"
        "env:\n  - name: WANDB_API_KEY\n    value: wandb_secret_value\nimage:\n  repository: ''\n"
    )
    err = render_error("train", [_values(tmp_path, text)], [], "--skip-schema-validation")
    assert "VALUES VALIDATION" in err
    for expected in [
        'runs[0].model "gpt-5" is not a registry model',
        "--set runs[0].model=mistral7b",
        "runs[0].gpus must be >= 1",
        "--set runs[0].gpus=1",
        "runs[2].model mistral7b appears twice",
        "--set storage.accessModes={ReadWriteMany}",
        "env WANDB_API_KEY has a literal value",
        "image.repository is empty. Fix: --set image.repository=",
    ]:
        assert expected in err, f"missing {expected!r} in:\n{err}"
    assert "wandb_secret_value" not in err


# ---------------------------------------------------------------- chart source conventions


def test_vendored_library_matches_source() -> None:
    """charts/*/charts/sqlmaster-lib-0.1.0.tgz is committed so installs work offline; it must be current."""
    lib = CHARTS / "sqlmaster-lib"
    source = {p.relative_to(lib).as_posix(): p.read_bytes() for p in lib.rglob("*") if p.is_file()}
    source_chart = yaml.safe_load(source.pop("Chart.yaml"))
    for task in TASKS:
        tgz = CHARTS / f"sqlmaster-{task}" / "charts" / "sqlmaster-lib-0.1.0.tgz"
        with tarfile.open(fileobj=io.BytesIO(tgz.read_bytes())) as tar:
            packed = {
                m.name.removeprefix("sqlmaster-lib/"): tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.isfile()
            }
        # helm rewrites Chart.yaml when it packages (key order, comments): compare that one as data.
        chart_yaml = yaml.safe_load(packed.pop("Chart.yaml", b"{}"))
        assert chart_yaml == source_chart, f"{tgz}: Chart.yaml differs"
        stale = sorted(k for k in source.keys() | packed.keys() if packed.get(k) != source.get(k))
        assert not stale, f"{tgz} is stale ({stale}): run helm dependency update charts/sqlmaster-{task}"


def test_schemas_enumerate_the_registry_and_share_their_rules() -> None:
    """Both schemas are generated (tests/test_generated.py checks they are current); here: what they say."""
    from sqlmaster.config import SECTIONS

    train, ev = (json.loads((CHARTS / f"sqlmaster-{t}" / "values.schema.json").read_text()) for t in TASKS)
    for name in ("envVar", "resources", "quantity", "dnsSubdomain"):
        assert train["$defs"][name] == ev["$defs"][name], name
    for schema in (train, ev):
        assert schema["$defs"]["run"]["properties"]["model"]["enum"] == MODELS
        assert list(schema["$defs"]["recipe"]["properties"]) == list(SECTIONS)
    assert set(ev["$defs"]["run"]["properties"]) == set(train["$defs"]["run"]["properties"])
    assert train["properties"].keys() == ev["properties"].keys()


@pytest.mark.parametrize("task", TASKS)
def test_every_values_key_has_a_helm_docs_comment(task: str) -> None:
    """Every values.yaml key has a `# --` comment above it or above an ancestor (helm-docs format)."""
    lines = (CHARTS / f"sqlmaster-{task}" / "values.yaml").read_text().splitlines()
    keys: list[tuple[int, str, bool]] = []  # (indent, name, documented by itself or an ancestor)
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*(?:- )?)([\w./-]+):", line)
        if not m:
            continue
        indent = len(m.group(1))
        comment = []
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#"):
            comment.append(lines[j].lstrip())
            j -= 1
        while keys and keys[-1][0] >= indent:
            keys.pop()
        documented = any(c.startswith("# --") for c in comment) or any(doc for _, _, doc in keys)
        keys.append((indent, m.group(2), documented))
        nxt = next((x for x in lines[i + 1 :] if x.strip() and not x.lstrip().startswith("#")), "")
        is_parent = line.rstrip().endswith(":") and len(nxt) - len(nxt.lstrip()) > indent
        if not documented and not is_parent:
            undocumented.append(m.group(2))
    assert not undocumented, f"keys without a '# --' comment: {undocumented}"


def test_helpers_are_commented() -> None:
    text = (CHARTS / "sqlmaster-lib" / "templates" / "_helpers.tpl").read_text()
    for name in ("fullname", "labels", "selectorLabels"):
        assert re.search(r"\{\{/\*[^\n]*\*/\}\}\n\{\{- define \"sqlmaster-lib\." + name + '" -}}', text), name


# ---------------------------------------------------------------- jobs/ files


@pytest.mark.parametrize(("task", "model"), JOB_FILES)
def test_job_file_header(task: str, model: str) -> None:
    text = (JOBS / task / f"{model}.yaml").read_text()
    header = text.split("\nruns:")[0]
    assert all(line.startswith("#") or not line for line in header.splitlines())
    for word in ("Purpose:", "Prerequisites:", "Launch:", f"-f jobs/{task}/{model}.yaml"):
        assert word in header, f"{word} missing from the header of jobs/{task}/{model}.yaml"
    run = yaml.safe_load(text)["runs"][0]
    assert run["model"] == model and run["gpus"] >= 1 and run["nodes"] >= 1


@pytest.mark.parametrize("model", SEVEN_B_MODELS)
def test_7b_train_recipes_are_the_original(model: str) -> None:
    recipe = yaml.safe_load((JOBS / "train" / f"{model}.yaml").read_text())["runs"][0]["recipe"]
    assert recipe["model"] | {} == recipe["model"]
    m, t = recipe["model"], recipe["training"]
    assert (m["mode"], m["lora_r"], m["lora_alpha"], m["lora_dropout"]) == ("lora", 16, 32, 0.05)
    assert m["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert (t["per_device_train_batch_size"], t["gradient_accumulation_steps"]) == (8, 4)
    assert (t["learning_rate"], t["lr_scheduler_type"], t["warmup_steps"], t["max_steps"]) == (
        3e-4,
        "cosine",
        100,
        500,
    )
    assert (t["max_grad_norm"], t["seed"], t["max_length"], t["packing"]) == (0.3, 1399, 1024, True)
    assert (t["eval_steps"], t["save_steps"]) == (20, 20)
    assert t["early_stopping_patience"] == (2 if model == "gemma7b" else 1)
    assert recipe["prompt"]["template"] == "original"


def test_tiny_train_recipe_is_a_valid_cpu_recipe() -> None:
    """jobs/train/tiny.yaml is what README command 1 trains: it must load as a recipe and suit a CPU."""
    from sqlmaster.config import load_recipe

    recipe = load_recipe(JOBS / "train" / "tiny.yaml")
    assert recipe.model.mode == "full" and recipe.prompt.template == "terse"
    assert recipe.data.source == "shipped"
    assert recipe.training.packing is False and recipe.training.bf16 is False
    assert recipe.training.max_time_minutes is not None and recipe.training.max_time_minutes <= 10


# ---------------------------------------------------------------- the GRPO stage (jobs/grpo/)

GRPO_FILES = sorted(p.stem for p in (JOBS / "grpo").glob("*.yaml"))


@pytest.mark.parametrize("model", GRPO_FILES)
def test_grpo_values_render_a_grpo_job_on_the_sft_runs_claim(model: str) -> None:
    """`helm install sqlmaster-grpo charts/sqlmaster-train -f jobs/grpo/MODEL.yaml`: the SFT release's run, on its
    claim, continued with `--stage grpo --init-from /data/runs/<initFromRunId>/<model>`."""
    proc = run_helm("lint", "--strict", str(CHARTS / "sqlmaster-train"), "-f", str(JOBS / "grpo" / f"{model}.yaml"))
    assert "0 chart(s) failed" in proc.stdout
    objs = render("train", [JOBS / "grpo" / f"{model}.yaml"], release="sqlmaster-grpo")
    assert not [e for o in objs for e in schema_errors(o)]
    job = one(objs, "Job")
    assert container(job)["command"] == [
        "sqlmaster",
        "train",
        "--model",
        model,
        "--recipe",
        "/etc/sqlmaster/recipe.yaml",
        "--output-dir",
        f"/data/runs/sqlmaster-grpo/{model}",
        "--stage",
        "grpo",
        "--init-from",
        f"/data/runs/sqlmaster-train/{model}",
    ]
    mounts = {m["name"]: m["mountPath"] for m in container(job)["volumeMounts"]}
    assert mounts["data"] == "/data"
    (data,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "sqlmaster-train-data"
    assert not of_kind(objs, "PersistentVolumeClaim")  # the SFT release's claim, not a new one
    for obj in (job, job["spec"]["template"], one(objs, "ConfigMap")):
        assert obj["metadata"]["labels"]["sqlmaster.io/stage"] == "grpo"
        assert obj["metadata"]["labels"]["sqlmaster.io/init-from"] == "sqlmaster-train"
    recipe = yaml.safe_load(one(objs, "ConfigMap")["data"]["recipe.yaml"])
    assert "grpo" in recipe and "training" in recipe
    token = env_of(job)["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is not REGISTRY[model].gated  # a gated base needs the token, as for SFT


def test_every_model_that_trains_has_grpo_values() -> None:
    """`sqlctl submit train --stage grpo --from RUN` works for a finished SFT run of any model."""
    trained = sorted(p.stem for p in (JOBS / "train").glob("*.yaml"))
    assert trained == GRPO_FILES


@pytest.mark.parametrize("model", GRPO_FILES)
def test_grpo_values_pair_with_the_models_train_file(model: str) -> None:
    """A GRPO file continues its model's SFT release: the same pod (GPUs, nodes, secrets, resources, node selector,
    shm) on the SFT release's claim; its recipe sets training and grpo only (the SFT run's data, prompt and model
    sections are inherited), each key declared and every check passed."""
    from sqlmaster.config import load_recipe

    path = JOBS / "grpo" / f"{model}.yaml"
    header = path.read_text().split("\nruns:")[0]
    assert all(line.startswith("#") or not line for line in header.splitlines())
    for word in ("Purpose:", "Prerequisites:", "Launch:", "Outputs:", f"-f {path.relative_to(JOBS.parent)}"):
        assert word in header, f"{word} missing from the header of jobs/grpo/{model}.yaml"
    assert f"jobs/train/{model}.yaml" in header
    grpo = yaml.safe_load(path.read_text())
    train = yaml.safe_load((JOBS / "train" / f"{model}.yaml").read_text())
    (run,), sft = grpo["runs"], train["runs"][0]
    assert (run["model"], run["stage"], run["initFromRunId"]) == (model, "grpo", "sqlmaster-train")
    assert (run["gpus"], run["nodes"]) == (sft["gpus"], sft["nodes"])
    assert set(run["recipe"]) <= {"training", "grpo", "tracking"}, "data, prompt and model come from the SFT run"
    assert grpo["storage"] == {"existingClaim": "sqlmaster-train-data"}
    for key in ("secrets", "resources", "nodeSelector", "shm"):
        assert grpo.get(key) == train.get(key), f"{key}: jobs/grpo/{model}.yaml differs from jobs/train/{model}.yaml"
    load_recipe(path)


def test_an_sft_job_has_no_stage_flags_or_label() -> None:
    job = one(render("train", [JOBS / "train" / "tiny.yaml"]), "Job")
    assert "--stage" not in container(job)["command"] and "--init-from" not in container(job)["command"]
    assert "sqlmaster.io/stage" not in job["metadata"]["labels"]


@pytest.mark.parametrize(
    ("sets", "schema_says", "validation_says"),
    [
        (["runs[0].stage=grpo"], "stage grpo needs initFromRunId", "runs[0].stage=grpo needs runs[0].initFromRunId"),
        (
            ["runs[0].initFromRunId=sft-1"],
            "initFromRunId is for stage grpo",
            "runs[0].initFromRunId is for runs[0].stage=grpo",
        ),
        (
            ["runs[0].stage=sft", "runs[0].initFromRunId=sft-1"],
            "initFromRunId is for stage grpo",
            "runs[0].initFromRunId is for runs[0].stage=grpo",
        ),
        (["runs[0].stage=rl"], 'must be one of the following: "sft", "grpo"', 'runs[0].stage "rl" is not a stage'),
        (
            ["runs[0].stage=grpo", "runs[0].initFromRunId=Bad_Run"],
            "runs.0.initFromRunId",
            "runs[0].stage=grpo needs runs[0].initFromRunId",
        ),
    ],
)
def test_stage_and_init_from_go_together(sets: list[str], schema_says: str, validation_says: str) -> None:
    """The schema refuses a GRPO run without its SFT run (and an SFT run with one), naming the fix; validateValues
    says the same past --skip-schema-validation."""
    err = render_error("train", [JOBS / "train" / "tiny.yaml"], sets)
    assert "values don't meet the specifications of the schema" in err and schema_says in err, err
    err = render_error("train", [JOBS / "train" / "tiny.yaml"], sets, "--skip-schema-validation")
    assert "VALUES VALIDATION" in err and validation_says in err, err


def test_the_eval_chart_refuses_a_stage() -> None:
    err = render_error("eval", [JOBS / "eval" / "tiny.yaml"], ["runs[0].stage=grpo"])
    assert "helm install sqlmaster-grpo charts/sqlmaster-train -f FILE" in err, err
    err = render_error("eval", [JOBS / "eval" / "tiny.yaml"], ["runs[0].stage=grpo"], "--skip-schema-validation")
    assert "runs[0].stage is for training" in err, err
