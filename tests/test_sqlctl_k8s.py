"""sqlctl against a real control plane (etcd, kube-apiserver, controller-manager, scheduler 1.20.2)
with the fake GPU kubelet of tests/k8s: the scheduler binds, the Job controller retries and completes,
logs stream through the apiserver, and artifacts come back through a reader pod.

Needs the binaries from scripts/k8s-build.sh (the fixture fails with the command to run otherwise).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlctl.kube import Kube, KubeSettings, connect
from sqlctl.main import app
from sqlctl.paths import resolve_paths
from typer.testing import CliRunner, Result

from sqlmaster.models.registry import MODELS as REGISTRY
from tests.k8s.fake_kubelet import Script

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[1]
CLAIM = "sqlmaster-data"


# --- setup --------------------------------------------------------------------------------------------


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    """Values files like jobs/<task>/<model>.yaml, on a claim the test binds (no dynamic provisioner here)."""
    root = tmp_path / "jobs"
    for task in ("train", "eval"):
        (root / task).mkdir(parents=True)
        for model in REGISTRY:
            values = {
                "runs": [
                    {"model": model, "gpus": 1, "recipe": {"training": {"max_steps": 3}} if task == "train" else {}}
                ],
                "storage": {"existingClaim": CLAIM},
            }
            (root / task / f"{model}.yaml").write_text(yaml.safe_dump(values))
    return root


@pytest.fixture
def ns(k8s_cluster: Any, namespace: str) -> str:
    """The namespace plus what docs/cluster.md asks users to create: a bound PVC and the keys Secret."""
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(k8s_cluster.api())
    pv = f"pv-{namespace}"
    core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "hostPath": {"path": f"/tmp/{pv}"},
                "persistentVolumeReclaimPolicy": "Retain",
                "claimRef": {"namespace": namespace, "name": CLAIM},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "200Gi"}},
                "storageClassName": "",
                "volumeName": pv,
            },
        },
    )
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "sqlmaster-keys"}, "stringData": {"HF_TOKEN": "hf_test_not_a_real_token"}},
    )
    deadline = time.monotonic() + 30
    while core.read_namespaced_persistent_volume_claim(name=CLAIM, namespace=namespace).status.phase != "Bound":
        assert time.monotonic() < deadline, "the test PVC never bound"
        time.sleep(0.2)
    yield namespace
    core.delete_persistent_volume(pv)


def sqlctl(cluster: Any, namespace: str, *args: str, kubeconfig: Path | None = None) -> Result:
    cfg = str(kubeconfig or cluster.kubeconfig)
    return CliRunner().invoke(app, ["--kubeconfig", cfg, "-n", namespace, *args], catch_exceptions=False)


def submit_train(cluster: Any, namespace: str, jobs_dir: Path, model: str, *extra: str) -> Result:
    """``sqlctl submit train -m MODEL -d --jobs-dir JOBS_DIR EXTRA...``: a detached submission to the test cluster."""
    return sqlctl(cluster, namespace, "submit", "train", "-m", model, "-d", "--jobs-dir", str(jobs_dir), *extra)


def kube_for(cluster: Any, namespace: str) -> Kube:
    return connect(KubeSettings(kubeconfig=str(cluster.kubeconfig), namespace=namespace))


def run_objects(kube: Kube, namespace: str, selector: str = "sqlmaster.io/run-id") -> dict[str, list[str]]:
    return {
        kind: sorted(o["metadata"]["name"] for o in kube.list(v, kind, namespace, label_selector=selector))
        for v, kind in (("batch/v1", "Job"), ("v1", "Pod"), ("v1", "ConfigMap"), ("v1", "Service"))
    }


def wait_until(probe: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def serve_reader(cluster: Any, namespace: str, pvc_root: Path) -> None:
    """Reader pods run the chart's own script here, against pvc_root standing in for the claim's /data."""

    def output(pod: dict[str, Any], container: str) -> list[str]:
        spec = pod["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in spec.get("env", [])}
        local_dir = str(pvc_root) + env["RUN_DIR"].removeprefix("/data")
        proc = subprocess.run(
            [*spec["command"], spec["args"][0]],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "RUN_DIR": local_dir, "TMPDIR": str(pvc_root)},
        )
        return proc.stdout.splitlines()

    cluster.kubelet.add_rule(
        Script(output=output), namespace=namespace, labels={"sqlmaster.io/role": "artifact-reader"}
    )


# --- the main path ---------------------------------------------------------------------------------------


def test_submit_schedule_follow_complete_pull(k8s_cluster: Any, ns: str, jobs_dir: Path, tmp_path: Path) -> None:
    run_id = "train-tiny-happy-0001"
    lines = [f"step {i} loss {2.0 / i:.3f}" for i in range(1, 6)]
    k8s_cluster.kubelet.add_rule(
        Script(lines=tuple(lines), interval=0.2), namespace=ns, labels={"sqlmaster.io/run-id": run_id}
    )
    submitted = submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", run_id)
    assert submitted.exit_code == 0, submitted.output
    assert f"run {run_id} submitted" in submitted.output
    assert f"sqlctl logs {run_id} -f" in submitted.output  # next commands printed

    followed = sqlctl(k8s_cluster, ns, "logs", run_id, "-f")
    assert followed.exit_code == 0, followed.output
    streamed = [re.sub(r"^\[[^\]]+\] ", "", line) for line in followed.stdout.splitlines()]
    assert streamed == lines  # every line once, in order
    assert f"run {run_id} succeeded" in followed.output

    kube = kube_for(k8s_cluster, ns)
    pods = kube.list("v1", "Pod", ns, label_selector=f"sqlmaster.io/run-id={run_id}")
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"].startswith(tuple(k8s_cluster.kubelet.node_names))
    job = kube.list("batch/v1", "Job", ns, label_selector=f"sqlmaster.io/run-id={run_id}")[0]
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])

    status = sqlctl(k8s_cluster, ns, "status", run_id, "-o", "json")
    info = json.loads(status.stdout)
    assert info["phase"] == "Succeeded" and info["pods"][0]["phase"] == "Succeeded"
    listed = sqlctl(k8s_cluster, ns, "list")
    assert "RUN ID" in listed.stdout and run_id in listed.stdout and "Succeeded" in listed.stdout
    as_json = json.loads(sqlctl(k8s_cluster, ns, "list", "-o", "json").stdout)
    assert [(r["runId"], r["task"], r["models"], r["gpus"]) for r in as_json] == [(run_id, "train", ["tiny"], 1)]

    # the run's outputs, as `sqlmaster train` would have left them on the claim
    pvc_root = tmp_path / "pvc"
    run_dir = pvc_root / "runs" / run_id / "tiny"
    files = {
        "run.json": b'{"model": "tiny"}',
        "metrics.json": b'{"train_loss": 0.4}',
        "adapter/adapter_model.safetensors": os.urandom(200_000),
        "logs/train.log": "\n".join(lines).encode(),
    }
    for name, data in files.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_bytes(data)
    (run_dir / "latest").symlink_to("adapter")  # links are not copied, and the pull says so
    serve_reader(k8s_cluster, ns, pvc_root)
    dest = tmp_path / "pulled"
    pulled = sqlctl(k8s_cluster, ns, "artifacts", "pull", run_id, "--dest", str(dest))
    assert pulled.exit_code == 0, pulled.output
    assert "every sha256 verified" in pulled.output
    assert "warning: 1 symbolic link(s) at the source were not copied: ./tiny/latest" in pulled.output
    for name, data in files.items():
        assert (dest / run_id / "tiny" / name).read_bytes() == data
    (dest / run_id / "notes.md").write_text("mine")  # pulling again keeps the user's own files
    assert sqlctl(k8s_cluster, ns, "artifacts", "pull", run_id, "--dest", str(dest)).exit_code == 0
    assert (dest / run_id / "notes.md").read_text() == "mine"
    readers = kube.list("v1", "Pod", ns, label_selector="sqlmaster.io/role=artifact-reader")
    assert all(p["metadata"].get("deletionTimestamp") for p in readers)  # deleted (or going)

    again = submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", run_id)
    assert again.exit_code == 0, again.output
    assert "already submitted; nothing new created" in again.output
    assert len(kube.list("batch/v1", "Job", ns, label_selector=f"sqlmaster.io/run-id={run_id}")) == 1


def test_nine_gpus_stay_pending_with_the_schedulers_reason(k8s_cluster: Any, ns: str, jobs_dir: Path) -> None:
    run_id = "train-tiny-big-0001"
    result = submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", run_id, "--set", "runs[0].gpus=9")
    assert result.exit_code == 0, result.output
    assert "largest matching node offers 8" in result.output  # preflight warning, not an error

    def reason() -> str | None:
        info = json.loads(sqlctl(k8s_cluster, ns, "status", run_id, "-o", "json").stdout)
        pods = info["pods"]
        return pods[0]["reason"] if pods and "Insufficient" in pods[0]["reason"] else None

    assert "Insufficient nvidia.com/gpu" in wait_until(reason, what="the scheduler's verdict")
    table = sqlctl(k8s_cluster, ns, "status", run_id)
    assert "Pending" in table.stdout and "Insufficient nvidia.com/gpu" in table.stdout
    sqlctl(k8s_cluster, ns, "cancel", run_id, "-y")


def test_failed_pod_is_retried_and_followed(k8s_cluster: Any, ns: str, jobs_dir: Path) -> None:
    run_id = "train-tiny-retry-0001"
    first: dict[str, str] = {}

    def is_first(pod: dict[str, Any]) -> bool:
        first.setdefault("name", pod["metadata"]["name"])
        return first["name"] == pod["metadata"]["name"]

    selector = {"sqlmaster.io/run-id": run_id}
    k8s_cluster.kubelet.add_rule(Script(lines=("attempt 2 resumed", "attempt 2 done")), namespace=ns, labels=selector)
    k8s_cluster.kubelet.add_rule(
        Script(lines=("attempt 1", "CUDA error: boom"), interval=0.02, exit_code=1),
        namespace=ns,
        labels=selector,
        match=is_first,
    )
    result = sqlctl(
        k8s_cluster, ns, "submit", "train", "-m", "tiny", "--run-id", run_id, "--jobs-dir", str(jobs_dir)
    )  # follows by default
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "attempt 1",
        "CUDA error: boom",
        "following retry pod",
        "attempt 2 resumed",
        "attempt 2 done",
        f"run {run_id} succeeded",
    ):
        assert expected in out, out
    assert out.index("attempt 1") < out.index("attempt 2 resumed")
    pods = kube_for(k8s_cluster, ns).list("v1", "Pod", ns, label_selector=f"sqlmaster.io/run-id={run_id}")
    assert sorted(p["status"]["phase"] for p in pods) == ["Failed", "Succeeded"]


def test_cancel_leaves_no_job_and_no_pod(k8s_cluster: Any, ns: str, jobs_dir: Path) -> None:
    run_id = "train-tiny-cancel-0001"
    k8s_cluster.kubelet.add_rule(
        Script(lines=("working",), hold=True), namespace=ns, labels={"sqlmaster.io/run-id": run_id}
    )
    assert submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", run_id).exit_code == 0
    kube = kube_for(k8s_cluster, ns)
    selector = f"sqlmaster.io/run-id={run_id}"
    wait_until(
        lambda: [
            p for p in kube.list("v1", "Pod", ns, label_selector=selector) if p["status"].get("phase") == "Running"
        ],
        what="a running pod",
    )
    refused = CliRunner().invoke(
        app, ["--kubeconfig", str(k8s_cluster.kubeconfig), "-n", ns, "cancel", run_id], input="n\n"
    )
    assert refused.exit_code != 0 and kube.list("batch/v1", "Job", ns, label_selector=selector)
    result = sqlctl(k8s_cluster, ns, "cancel", run_id, "-y")
    assert result.exit_code == 0, result.output
    assert run_objects(kube, ns, selector) == {"Job": [], "Pod": [], "ConfigMap": [], "Service": []}


def test_fifty_parallel_submissions_make_exactly_fifty_jobs(k8s_cluster: Any, ns: str, jobs_dir: Path) -> None:
    from sqlctl.submission import UserValues, submit_to_cluster

    kube = kube_for(k8s_cluster, ns)
    paths = resolve_paths(None, jobs_dir)

    def submit(run_id: str | None) -> tuple[list[Any], list[dict[str, str]]]:
        return submit_to_cluster(kube, paths, "train", ["tiny"], UserValues(), run_id)

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(submit, [None] * 50))  # ids generated, as `sqlctl submit` does
    run_ids = [plans[0].run_id for plans, _ in results]
    assert len(set(run_ids)) == 50
    jobs = kube.list("batch/v1", "Job", ns, label_selector="sqlmaster.io/run-id")
    assert len(jobs) == 50
    assert sorted(j["metadata"]["labels"]["sqlmaster.io/run-id"] for j in jobs) == sorted(run_ids)
    assert all(r["action"] == "created" for _, report in results for r in report)

    # the same explicit run id from ten threads at once: one creates, nine find it and leave it alone
    same = "train-tiny-same-0001"
    barrier = threading.Barrier(10)

    def racer(_: int) -> list[dict[str, str]]:
        barrier.wait()
        return submit(same)[1]

    with ThreadPoolExecutor(max_workers=10) as pool:
        raced = list(pool.map(racer, range(10)))
    job_actions = [r["action"] for rep in raced for r in rep if r["kind"] == "Job"]
    assert sorted(job_actions) == ["created"] + ["exists"] * 9
    assert len(kube.list("batch/v1", "Job", ns, label_selector=f"sqlmaster.io/run-id={same}")) == 1


def test_a_generated_id_that_is_taken_gets_a_fresh_one(
    k8s_cluster: Any, ns: str, jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generated id is never taken for a re-submission: the submission is created under a fresh id."""
    import sqlctl.runid

    taken = "train-tiny-20260101-000000-0000beef"
    assert submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", taken).exit_code == 0
    real = sqlctl.runid.new_run_id
    ids = iter([taken, taken])  # the first two "random" ids clash with the existing run
    monkeypatch.setattr(sqlctl.runid, "new_run_id", lambda task, model: next(ids, None) or real(task, model))
    result = submit_train(k8s_cluster, ns, jobs_dir, "tiny", "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (fresh,) = report["runs"]
    assert fresh != taken and {o["action"] for o in report["objects"]} == {"created"}
    kube = kube_for(k8s_cluster, ns)
    ids_now = sorted(j["metadata"]["labels"]["sqlmaster.io/run-id"] for j in kube.list("batch/v1", "Job", ns))
    assert ids_now == sorted([taken, fresh])
    again = submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", taken)  # explicit: idempotent
    assert again.exit_code == 0 and "already submitted; nothing new created" in again.output


def test_the_created_job_and_local_run_the_same_command_and_recipe(
    k8s_cluster: Any, ns: str, jobs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the API server holds after a submission is what --local runs (paths mapped to --runs-dir)."""
    monkeypatch.setenv("SQLMASTER_BIN", "sqlmaster")
    run_id = "train-tiny-same-as-local"
    options = (
        *("--set", "runs[0].baseModel=/models/base,runs[0].extraArgs={--max-steps=2}"),
        *("--recipe-set", "training.learning_rate=3e-4", "--set", "runs[0].recipe.data.seed=7"),
    )
    submitted = submit_train(k8s_cluster, ns, jobs_dir, "tiny", "--run-id", run_id, *options)
    assert submitted.exit_code == 0, submitted.output
    kube = kube_for(k8s_cluster, ns)
    (job,) = kube.list("batch/v1", "Job", ns, label_selector=f"sqlmaster.io/run-id={run_id}")
    (configmap,) = kube.list("v1", "ConfigMap", ns, label_selector=f"sqlmaster.io/run-id={run_id}")
    container = job["spec"]["template"]["spec"]["containers"][0]
    runs = tmp_path / "runs"
    local = sqlctl(
        k8s_cluster,
        ns,
        *("submit", "train", "-m", "tiny", "--local", "--dry-run", "-o", "json", "--run-id", run_id),
        *("--jobs-dir", str(jobs_dir), "--runs-dir", str(runs), *options),
    )
    assert local.exit_code == 0, local.output
    (plan,) = json.loads(local.stdout)
    recipe = str(runs / run_id / "tiny" / "recipe.yaml")
    expected = [
        a.replace("/etc/sqlmaster/recipe.yaml", recipe).replace("/data/runs", str(runs))
        for a in [*container["command"], *container.get("args", [])]
    ]
    assert plan["argv"] == expected
    assert "/models/base" in expected and expected[-1] == "--max-steps=2"
    assert plan["files"] == {recipe: configmap["data"]["recipe.yaml"]}
    assert yaml.safe_load(configmap["data"]["recipe.yaml"])["training"]["learning_rate"] == 0.0003


# --- preflight: clear errors, nothing created ---------------------------------------------------------------


def test_bad_kubeconfig_missing_namespace_missing_secret(
    k8s_cluster: Any, ns: str, jobs_dir: Path, tmp_path: Path
) -> None:
    kube = kube_for(k8s_cluster, ns)
    nothing = {"Job": [], "Pod": [], "ConfigMap": [], "Service": []}
    submit = ("submit", "train", "-m", "tiny", "-d", "--jobs-dir", str(jobs_dir))

    bad = tmp_path / "kubeconfig"
    bad.write_text(k8s_cluster.kubeconfig.read_text().replace("token: ", "token: wrong"))
    result = sqlctl(k8s_cluster, ns, *submit, kubeconfig=bad)
    assert result.exit_code == 2 and "refused our credentials (401" in result.output

    result = sqlctl(k8s_cluster, "no-such-namespace", *submit)
    assert result.exit_code == 2
    assert "error: namespace 'no-such-namespace' does not exist" in result.output
    assert "kubectl create namespace no-such-namespace" in result.output

    result = sqlctl(k8s_cluster, ns, *submit, kubeconfig=k8s_cluster.restricted_kubeconfig)
    assert result.exit_code == 2 and "RBAC forbids you to create" in result.output
    assert "create jobs.batch" in result.output

    from kubernetes.client import CoreV1Api

    core = CoreV1Api(k8s_cluster.api())
    core.delete_namespaced_secret("sqlmaster-keys", ns)
    result = submit_train(k8s_cluster, ns, jobs_dir, "gemma7b")
    assert result.exit_code == 2
    assert "error: Secret 'sqlmaster-keys' does not exist" in result.output
    assert f"kubectl -n {ns} create secret generic sqlmaster-keys --from-literal=HF_TOKEN=..." in result.output

    core.create_namespaced_secret(ns, {"metadata": {"name": "sqlmaster-keys"}, "stringData": {"WANDB_API_KEY": "x"}})
    result = submit_train(k8s_cluster, ns, jobs_dir, "gemma7b")
    assert result.exit_code == 2
    assert "has no non-empty key HF_TOKEN (gated model gemma7b needs it)" in result.output
    # a model the registry does not gate does not need HF_TOKEN
    assert submit_train(k8s_cluster, ns, jobs_dir, "deci7b", "--run-id", "train-deci7b-ok-0001").exit_code == 0
    created = run_objects(kube, ns)
    assert [j for j in created["Job"] if "gemma7b" in j] == []
    assert run_objects(kube, ns, "sqlmaster.io/model=tiny") == nothing


# --- evaluating a training run: --adapter-run ---------------------------------------------------------------


def test_eval_adapter_run_uses_the_training_runs_claim(k8s_cluster: Any, ns: str, tmp_path: Path) -> None:
    """Train with the chart's own claim (<release>-data), then evaluate it by run id alone."""
    jobs = tmp_path / "jobs-own-claim"
    for task in ("train", "eval"):
        (jobs / task).mkdir(parents=True)
        run: dict[str, Any] = {"model": "tiny", "gpus": 1, "recipe": {}}
        values: dict[str, Any] = {"runs": [run], "storage": {"size": "1Gi"}}
        if task == "eval":  # the jobs/eval defaults: a plain-helm training release's claim
            run["adapterRunId"] = "sqlmaster-train"
            values["storage"]["existingClaim"] = "sqlmaster-train-data"
        (jobs / task / "tiny.yaml").write_text(yaml.safe_dump(values))
    (jobs / "eval" / "mistral7b.yaml").write_text(
        (jobs / "eval" / "tiny.yaml").read_text().replace("tiny", "mistral7b")
    )
    train_id, eval_id = "train-tiny-adapter-0001", "eval-tiny-adapter-0001"
    k8s_cluster.kubelet.add_rule(Script(lines=("trained",)), namespace=ns, labels={"sqlmaster.io/run-id": train_id})
    k8s_cluster.kubelet.add_rule(Script(lines=("scored",)), namespace=ns, labels={"sqlmaster.io/run-id": eval_id})
    submit = ("submit", "--jobs-dir", str(jobs), "-d")

    trained = sqlctl(k8s_cluster, ns, submit[0], "train", *submit[1:], "-m", "tiny", "--run-id", train_id, "--wait")
    assert trained.exit_code == 0, trained.output
    assert f"sqlctl submit eval --model tiny --adapter-run {train_id} -n {ns}" in trained.output
    kube = kube_for(k8s_cluster, ns)
    (train_job,) = kube.list("batch/v1", "Job", ns, label_selector=f"sqlmaster.io/run-id={train_id}")
    train_claim = train_job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert train_claim.endswith("-data") and train_claim != "sqlmaster-train-data"

    wrong = sqlctl(k8s_cluster, ns, submit[0], "eval", *submit[1:], "-m", "mistral7b", "--adapter-run", train_id)
    assert wrong.exit_code == 2
    assert f"error: training run '{train_id}' did not train mistral7b; it trained tiny" in wrong.output
    assert not kube.list("batch/v1", "Job", ns, label_selector="sqlmaster.io/task=eval")  # nothing created

    evaluated = sqlctl(
        k8s_cluster, ns, submit[0], "eval", *submit[1:], "-m", "tiny", "-a", train_id, "--run-id", eval_id
    )
    assert evaluated.exit_code == 0, evaluated.output
    (eval_job,) = kube.list("batch/v1", "Job", ns, label_selector=f"sqlmaster.io/run-id={eval_id}")
    spec = eval_job["spec"]["template"]["spec"]
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == train_claim
    container = spec["containers"][0]
    command = [*container.get("command", []), *container.get("args", [])]
    assert command[command.index("--adapter") + 1] == f"/data/runs/{train_id}/tiny"
    claims = kube.list("v1", "PersistentVolumeClaim", ns, label_selector=f"sqlmaster.io/run-id={eval_id}")
    assert claims == []  # the evaluation made no claim of its own

    of_eval = sqlctl(k8s_cluster, ns, submit[0], "eval", *submit[1:], "-m", "tiny", "-a", eval_id)
    assert of_eval.exit_code == 2 and "is not a training run (its task is eval)" in of_eval.output
