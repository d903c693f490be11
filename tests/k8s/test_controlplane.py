"""The test infrastructure itself: real scheduler/Job controller + fake GPU kubelet behave like a cluster."""

# The kubernetes client's stubs type request bodies as model classes and every response field as Optional;
# these tests send plain dicts (the client accepts them) and read fields the server always sets.
# mypy: disable-error-code="arg-type, union-attr, index"

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import BatchV1Api, CoordinationV1Api, CoreV1Api, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from tests.k8s.controlplane import Binaries, ControlPlane, ControlPlaneError, reap_stale_dirs
from tests.k8s.fake_kubelet import (
    A100,
    ARTIFACT_READER_LABELS,
    GPU_PRODUCT_LABEL,
    SCRIPT_ANNOTATION,
    Pod,
    Script,
)
from tests.k8s.fixtures import K8sCluster, wait_for

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pod_spec(gpus: int = 1, restart_policy: str = "Never") -> dict[str, Any]:
    """What the charts render: A100 nodeSelector, the GPU toleration, container ``sqlmaster``."""
    return {
        "restartPolicy": restart_policy,
        "nodeSelector": {GPU_PRODUCT_LABEL: A100},
        "tolerations": [GPU_TOLERATION],
        "containers": [
            {
                "name": "sqlmaster",
                "image": "ghcr.io/sqlmaster/sqlmaster-train:0.1.0",
                "command": ["sqlmaster", "train"],
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ],
    }


def job(name: str, app: str, backoff_limit: int = 0, gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"metadata": {"labels": {"app": app}}, "spec": pod_spec(gpus)},
        },
    }


def job_condition(batch: BatchV1Api, namespace: str, name: str, kind: str) -> bool:
    status = batch.read_namespaced_job_status(name, namespace).status
    return any(c.type == kind and c.status == "True" for c in status.conditions or [])


@pytest.fixture
def core(k8s_cluster: K8sCluster) -> Iterator[CoreV1Api]:
    api = k8s_cluster.api()
    yield CoreV1Api(api)
    api.close()


@pytest.fixture
def batch(k8s_cluster: K8sCluster) -> Iterator[BatchV1Api]:
    api = k8s_cluster.api()
    yield BatchV1Api(api)
    api.close()


def test_nodes_look_like_ready_a100_machines(k8s_cluster: K8sCluster, core: CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(k8s_cluster.kubelet.node_names) <= set(nodes)
    for name in k8s_cluster.kubelet.node_names:
        node = nodes[name]
        assert node.metadata.labels[GPU_PRODUCT_LABEL] == A100
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("nvidia.com/gpu", "present", "NoSchedule")]
        assert node.status.daemon_endpoints.kubelet_endpoint.port == k8s_cluster.kubelet.port
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True"
    leases = CoordinationV1Api(core.api_client).list_namespaced_lease("kube-node-lease").items
    assert set(k8s_cluster.kubelet.node_names) <= {lease.metadata.name for lease in leases}


def test_gpu_job_is_scheduled_streams_its_log_and_completes(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api, batch: BatchV1Api
) -> None:
    kubelet = k8s_cluster.kubelet
    kubelet.add_rule(Script(lines=("step 1",), hold=True), namespace=namespace, labels={"app": "train"})
    batch.create_namespaced_job(namespace, job("train", "train"))

    def running_pod() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="job-name=train").items
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    pod = wait_for(running_pod, what="the Job's pod to run")
    assert pod.spec.node_name in kubelet.node_names  # bound by the real scheduler
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert scheduled.status == "True"

    # Follow the log through the apiserver while the container is still running.
    resp: Any = core.read_namespaced_pod_log(  # a urllib3 response with _preload_content=False
        pod.metadata.name, namespace, container="sqlmaster", follow=True, _preload_content=False
    )
    lines = iter(resp)
    assert next(lines).rstrip(b"\n") == b"step 1"
    kubelet.append_log(namespace, pod.metadata.name, "step 2")
    assert next(lines).rstrip(b"\n") == b"step 2"  # arrives while the stream is open
    assert kubelet.release(namespace, pod.metadata.name) == 1
    assert list(lines) == []  # the stream ends when the container terminates
    resp.release_conn()

    wait_for(lambda: job_condition(batch, namespace, "train", "Complete"), what="Job train Complete")
    tail = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=1)
    assert tail == "step 2\n"
    final = core.read_namespaced_pod(pod.metadata.name, namespace)
    assert final.status.phase == "Succeeded"
    assert final.status.container_statuses[0].state.terminated.exit_code == 0


def test_nine_gpus_stay_pending_with_insufficient_gpu(k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api) -> None:
    body = {"metadata": {"name": "too-big"}, "spec": pod_spec(gpus=9)}
    core.create_namespaced_pod(namespace, body)

    def unschedulable() -> Any:
        pod = core.read_namespaced_pod("too-big", namespace)
        for c in pod.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False":
                return c
        return None

    cond = wait_for(unschedulable, what="the scheduler to give up on the 9-GPU pod")
    assert cond.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in cond.message
    pod = core.read_namespaced_pod("too-big", namespace)
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    assert k8s_cluster.kubelet.pods(namespace) == []


def test_failing_pod_is_retried_as_a_new_pod(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api, batch: BatchV1Api
) -> None:
    attempts = itertools.count()
    first_fails = Script(lines=("CUDA error: out of memory",), exit_code=1)
    then_works = Script(lines=("done",))

    def first_attempt(pod: Pod) -> bool:
        return next(attempts) == 0

    # Newest rule first: the first pod matches the failing rule, later pods fall through to success.
    kubelet = k8s_cluster.kubelet
    kubelet.add_rule(then_works, namespace=namespace, labels={"app": "retry"})
    kubelet.add_rule(first_fails, namespace=namespace, labels={"app": "retry"}, match=first_attempt)
    batch.create_namespaced_job(namespace, job("retry", "retry", backoff_limit=1))

    wait_for(lambda: job_condition(batch, namespace, "retry", "Complete"), timeout=60, what="Job retry")
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=retry").items
    by_phase = {p.status.phase: p for p in pods}
    assert len(pods) == 2 and set(by_phase) == {"Failed", "Succeeded"}
    failed = by_phase["Failed"]
    assert failed.status.container_statuses[0].state.terminated.exit_code == 1
    assert core.read_namespaced_pod_log(failed.metadata.name, namespace) == "CUDA error: out of memory\n"
    status = batch.read_namespaced_job_status("retry", namespace).status
    assert (status.failed, status.succeeded) == (1, 1)


def test_exhausted_backoff_limit_fails_the_job(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api, batch: BatchV1Api
) -> None:
    k8s_cluster.kubelet.add_rule(Script(exit_code=1), namespace=namespace, labels={"app": "doomed"})
    batch.create_namespaced_job(namespace, job("doomed", "doomed", backoff_limit=0))
    wait_for(lambda: job_condition(batch, namespace, "doomed", "Failed"), what="Job doomed Failed")
    status = batch.read_namespaced_job_status("doomed", namespace).status
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"


def test_restart_in_place_keeps_the_previous_log(k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api) -> None:
    script = Script(lines=("attempt 1",), exit_code=1, then=Script(lines=("attempt 2",)))
    k8s_cluster.kubelet.add_rule(script, namespace=namespace, name_prefix="flaky")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "flaky"}, "spec": pod_spec(restart_policy="OnFailure")})
    pod = wait_for(
        lambda: (p := core.read_namespaced_pod("flaky", namespace)).status.phase == "Succeeded" and p,
        what="pod flaky to succeed after one restart",
    )
    assert pod.status.container_statuses[0].restart_count == 1
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 1
    assert core.read_namespaced_pod_log("flaky", namespace) == "attempt 2\n"
    assert core.read_namespaced_pod_log("flaky", namespace, previous=True) == "attempt 1\n"


def test_log_endpoint_honours_tail_since_limit_and_timestamps(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api
) -> None:
    kubelet = k8s_cluster.kubelet
    kubelet.add_rule(Script(lines=("a", "b", "c"), hold=True), namespace=namespace, name_prefix="logs")
    core.create_namespaced_pod(namespace, {"metadata": {"name": "logs"}, "spec": pod_spec()})
    kubelet.wait_for_phase(namespace, "logs", "Running")
    wait_for(lambda: kubelet.log_text(namespace, "logs") == "a\nb\nc\n", what="the three lines")
    time.sleep(1.1)  # sinceSeconds has a one-second resolution
    kubelet.append_log(namespace, "logs", "d")

    def log(**kw: Any) -> str:
        return str(core.read_namespaced_pod_log("logs", namespace, **kw))

    assert log() == "a\nb\nc\nd\n"
    assert log(tail_lines=2) == "c\nd\n"
    assert log(since_seconds=1) == "d\n"
    assert log(limit_bytes=3) == "a\nb"
    stamped = log(timestamps=True).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["a", "b", "c", "d"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line.split()[0]) for line in stamped)
    with pytest.raises(ApiException) as no_previous:
        log(previous=True)
    assert no_previous.value.status == 400
    kubelet.release(namespace, "logs")


def test_waiting_reason_from_the_script_annotation(k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api) -> None:
    script = {"waiting": ["ImagePullBackOff", "Back-off pulling image"], "lines": ["pulled at last"]}
    meta = {"name": "pull", "annotations": {SCRIPT_ANNOTATION: json.dumps(script)}}
    core.create_namespaced_pod(namespace, {"metadata": meta, "spec": pod_spec()})

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("pull", namespace).status.container_statuses or []
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    assert wait_for(waiting_reason, what="the waiting reason") == "ImagePullBackOff"
    assert core.read_namespaced_pod("pull", namespace).status.phase == "Pending"
    assert k8s_cluster.kubelet.release(namespace, "pull") == 1
    wait_for(
        lambda: core.read_namespaced_pod("pull", namespace).status.phase == "Succeeded",
        what="pod pull to finish after release",
    )
    assert core.read_namespaced_pod_log("pull", namespace) == "pulled at last\n"


def test_restricted_user_is_forbidden_until_granted(k8s_cluster: K8sCluster, namespace: str) -> None:
    restricted = k8s_cluster.api(restricted=True)
    try:
        with pytest.raises(ApiException) as denied:
            CoreV1Api(restricted).list_namespaced_pod(namespace)
        assert denied.value.status == 403
        message = json.loads(denied.value.body)["message"]
        assert 'User "restricted" cannot list resource "pods"' in message

        admin = k8s_cluster.api()
        rbac = RbacAuthorizationV1Api(admin)
        rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "read-pods"}, "rules": [rule]})
        binding = {
            "metadata": {"name": "read-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
            "subjects": [{"kind": "User", "name": "restricted", "apiGroup": "rbac.authorization.k8s.io"}],
        }
        rbac.create_namespaced_role_binding(namespace, binding)
        admin.close()
        # The API server's RBAC authorizer reads roles through an informer: a new binding takes effect when the
        # watch delivers it (milliseconds idle; seconds on a loaded machine, where a first read was still denied).
        deadline = time.monotonic() + 60
        while True:
            try:
                assert CoreV1Api(restricted).list_namespaced_pod(namespace).items == []
                break
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with pytest.raises(ApiException) as still_denied:
            CoreV1Api(restricted).list_namespaced_secret(namespace)
        assert still_denied.value.status == 403
    finally:
        restricted.close()


def test_artifact_reader_pod_prints_a_base64_tar_of_its_volume(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api, tmp_path: Path
) -> None:
    claim = {
        "metadata": {"name": "sqlmaster-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "200Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("sqlmaster-data", namespace).status.phase == "Bound",
        what="the fake provisioner to bind the claim",
    )
    # What the training run left on the volume.
    run_dir = k8s_cluster.volume_path(namespace, "sqlmaster-data") / "runs" / "r1" / "tiny"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "run.json").write_text('{"model": "tiny"}\n')
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(os.urandom(3000))

    def resolve(pod: Pod) -> Path:
        """Map the reader's `tar -C /data/<sub>` onto the local folder behind its claim."""
        volume = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        sub = pod["spec"]["containers"][0]["command"][-1].split(" -C /data/")[1].split()[0]
        return k8s_cluster.volume_path(pod["metadata"]["namespace"], volume) / sub

    k8s_cluster.kubelet.serve_artifacts(resolve, namespace=namespace)
    spec = pod_spec(gpus=0)
    spec["containers"][0]["command"] = ["sh", "-c", "tar -czf - -C /data/runs/r1/tiny . | base64"]
    spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data", "readOnly": True}]
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "sqlmaster-data"}}]
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "reader", "labels": dict(ARTIFACT_READER_LABELS)}, "spec": spec}
    )
    wait_for(
        lambda: core.read_namespaced_pod("reader", namespace).status.phase == "Succeeded",
        what="the reader pod to finish",
    )
    encoded = core.read_namespaced_pod_log("reader", namespace)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(encoded)), mode="r:gz") as tar:
        out = tmp_path / "out"
        tar.extractall(out, filter="data")
    assert (out / "run.json").read_text() == '{"model": "tiny"}\n'
    got = (out / "adapter" / "adapter_model.safetensors").read_bytes()
    assert got == (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()


def test_reader_for_a_missing_folder_fails_like_tar(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api, tmp_path: Path
) -> None:
    k8s_cluster.kubelet.serve_artifacts(lambda pod: tmp_path / "absent", namespace=namespace)
    meta = {"name": "reader", "labels": dict(ARTIFACT_READER_LABELS)}
    core.create_namespaced_pod(namespace, {"metadata": meta, "spec": pod_spec(gpus=0)})
    pod = wait_for(
        lambda: (p := core.read_namespaced_pod("reader", namespace)).status.phase == "Failed" and p,
        what="the reader pod to fail",
    )
    assert pod.status.container_statuses[0].state.terminated.exit_code == 2
    assert "Cannot open: No such file or directory" in core.read_namespaced_pod_log("reader", namespace)


def test_deleting_a_job_removes_its_running_pod(
    k8s_cluster: K8sCluster, namespace: str, core: CoreV1Api, batch: BatchV1Api
) -> None:
    k8s_cluster.kubelet.add_rule(Script(hold=True), namespace=namespace, labels={"app": "long"})
    batch.create_namespaced_job(namespace, job("long", "long"))
    wait_for(
        lambda: [p for p in core.list_namespaced_pod(namespace).items if p.status.phase == "Running"],
        what="the long pod to run",
    )
    batch.delete_namespaced_job("long", namespace, propagation_policy="Foreground")
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, what="the pod to be deleted")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # a zombie has released everything; only its parent's wait() is missing


def test_stop_leaves_no_process_behind(k8s_binaries: Binaries) -> None:
    with ControlPlane(k8s_binaries) as cp:
        pids = cp.pids
        workdir = cp.workdir
        assert len(pids) == 4 and not any(_gone(p) for p in pids)
        assert cp.startup_seconds > 0  # how fast is bench/bench_submit.py's business, not a test's
    assert all(_gone(p) for p in pids)
    assert not workdir.exists()


def test_startup_failure_names_the_component_and_stops_the_rest(k8s_binaries: Binaries) -> None:
    cp = ControlPlane(k8s_binaries, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError) as failed:
        cp.start()
    assert "kube-apiserver exited with code" in str(failed.value)
    assert "unknown flag: --no-such-flag" in str(failed.value)  # the log tail says why
    assert [p.name for p in cp.procs] == ["etcd", "kube-apiserver"]  # the others start after it is ready
    assert all(_gone(p) for p in cp.pids)
    assert not cp.workdir.exists()


def test_killed_test_process_takes_the_control_plane_along(k8s_binaries: Binaries) -> None:
    code = (
        "import time\n"
        "from tests.k8s.controlplane import ControlPlane\n"
        "cp = ControlPlane().start()\n"
        "print(' '.join(map(str, cp.pids)), cp.workdir, cp.etcd_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", code]
    child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    leftovers: list[str] = []
    try:
        timer = threading.Timer(60, child.kill)
        timer.start()
        words = (child.stdout.readline() if child.stdout else "").split()
        timer.cancel()
        assert len(words) == 6, f"child printed {words!r}"
        pids, leftovers = [int(p) for p in words[:4]], words[4:]
        assert not any(_gone(p) for p in pids)
        child.send_signal(signal.SIGKILL)  # no cleanup code runs: only PR_SET_PDEATHSIG can help
        child.wait(timeout=10)
        wait_for(lambda: all(_gone(p) for p in pids), timeout=10, what="the orphaned processes to die")
        # The killed process could not delete its folders; the next control plane's start does.
        assert all(Path(p).exists() for p in leftovers)
        removed = reap_stale_dirs()
        assert {str(p) for p in removed} >= set(leftovers)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
