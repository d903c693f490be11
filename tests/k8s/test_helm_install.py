"""The README's plain-helm path, live: `helm install` both charts against the test control plane.

What a user does without sqlctl (README "On a cluster", charts/README.md): create the keys Secret,
`helm install sqlmaster-train charts/sqlmaster-train -f jobs/train/<model>.yaml`, follow the pods with the
`kubectl logs` line NOTES.txt prints, then `helm install sqlmaster-eval charts/sqlmaster-eval -f
jobs/eval/<model>.yaml` (its defaults point at the training release's claim and run id), and finally
`helm uninstall`, which must keep the data claim (the checkpoints and adapters live there).

The real scheduler binds each pod to a fake 8x A100 node (so the chart's nodeSelector, toleration and GPU
request must fit one), the real Job controller marks the Job complete when the fake kubelet ends the pod
with exit 0, and the log the apiserver proxies from the fake kubelet is the pod's command line.

Two things differ from a real cluster, both from the Kubernetes 1.20 control plane (tests/k8s/README.md):
it drops Job fields newer than 1.20 (podFailurePolicy), and its OpenAPI document does not know them, so
helm's client-side OpenAPI check would refuse the manifests before sending them; `--disable-openapi-validation`
turns that one check off here. The manifests themselves are validated against Kubernetes 1.29-1.33 schemas
in tests/test_charts.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import BatchV1Api, CoreV1Api

from tests.helm import CHARTS, JOBS, REPO, helm_path
from tests.k8s.fake_kubelet import Script
from tests.k8s.fixtures import K8sCluster, wait_for

pytestmark = pytest.mark.k8s

# Only the old control plane needs this (module docstring); a user on Kubernetes >= 1.26 runs without it.
OLD_SERVER = ["--disable-openapi-validation"]


def kubectl_path() -> Path:
    explicit = os.environ.get("SQLMASTER_KUBECTL")
    path = Path(explicit) if explicit else REPO / ".tools" / "bin" / "kubectl"
    if not path.is_file():
        pytest.fail(f"kubectl not found at {path}. Run scripts/tools.sh (it installs kubectl into .tools/bin)")
    return path


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, env=env, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def user_env(k8s_cluster: K8sCluster, tmp_path: Path) -> dict[str, str]:
    """A user's shell: KUBECONFIG pointing at the cluster (so helm and kubectl need no flag), fresh helm dirs."""
    env = dict(os.environ, KUBECONFIG=str(k8s_cluster.kubeconfig))
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp_path / var.lower())
    return env


def echo_command(pod: dict[str, Any], container: str) -> list[str]:
    """The fake container's log: its command line, then a last line (what a real one would end with)."""
    (spec,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    return ["$ " + " ".join(spec["command"]), f"{pod['metadata']['labels']['sqlmaster.io/task']} finished"]


def notes_logs_command(helm_output: str) -> list[str]:
    """The first `kubectl logs` line of the NOTES helm printed, split as a shell would (no quoting in it)."""
    lines = [line.strip() for line in helm_output.splitlines() if line.strip().startswith("kubectl logs ")]
    assert lines, f"NOTES print no kubectl logs command:\n{helm_output}"
    return lines[0].split()


def wait_job_complete(batch: BatchV1Api, namespace: str, selector: str) -> Any:
    def complete() -> Any:
        jobs = batch.list_namespaced_job(namespace, label_selector=selector).items
        done = [j for j in jobs if any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or [])]
        return done[0] if len(jobs) == 1 and done else None

    return wait_for(complete, timeout=60, what=f"a complete Job with {selector}")


@pytest.mark.parametrize("model", ["mistral7b", "llama3.1-8b"])
def test_plain_helm_install_train_then_eval(
    k8s_cluster: K8sCluster, namespace: str, user_env: dict[str, str], model: str
) -> None:
    core, batch = CoreV1Api(k8s_cluster.api()), BatchV1Api(k8s_cluster.api())
    kubelet = k8s_cluster.kubelet
    kubelet.add_rule(
        Script(output=echo_command), namespace=namespace, labels={"app.kubernetes.io/part-of": "sqlmaster"}
    )
    helm, kubectl = str(helm_path()), str(kubectl_path())
    ns = ["-n", namespace]

    # The Secret the jobs/ file header asks for (HF_TOKEN is required for the gated 7B models).
    run([kubectl, *ns, "create", "secret", "generic", "sqlmaster-keys", "--from-literal=HF_TOKEN=fake-hf"], user_env)

    # --- train: exactly the README line, plus the namespace
    train_file = str(JOBS / "train" / f"{model}.yaml")
    install = run(
        [helm, "install", "sqlmaster-train", str(CHARTS / "sqlmaster-train"), "-f", train_file, *ns, *OLD_SERVER],
        user_env,
    )
    job = wait_job_complete(batch, namespace, "sqlmaster.io/run-id=sqlmaster-train")
    (pod,) = core.list_namespaced_pod(namespace, label_selector="sqlmaster.io/run-id=sqlmaster-train").items
    assert pod.spec.node_name in {"a100-node-0", "a100-node-1"}  # bound by the real scheduler
    assert pod.status.phase == "Succeeded"
    assert job.metadata.labels["sqlmaster.io/model"] == model

    logs = notes_logs_command(install.stdout)
    assert logs[:2] == ["kubectl", "logs"] and "sqlmaster.io/run-id=sqlmaster-train" in " ".join(logs)
    out = run([kubectl, *logs[1:]], user_env).stdout
    assert f"$ sqlmaster train --model {model} --recipe /etc/sqlmaster/recipe.yaml" in out
    assert f"--output-dir /data/runs/sqlmaster-train/{model}" in out and "train finished" in out

    # The release created the data claim, bound by the (fake) provisioner.
    claim = core.read_namespaced_persistent_volume_claim("sqlmaster-train-data", namespace)
    assert claim.status.phase == "Bound"

    # --- eval: its defaults evaluate the adapter of run sqlmaster-train on claim sqlmaster-train-data
    eval_file = str(JOBS / "eval" / f"{model}.yaml")
    install = run(
        [helm, "install", "sqlmaster-eval", str(CHARTS / "sqlmaster-eval"), "-f", eval_file, *ns, *OLD_SERVER], user_env
    )
    wait_job_complete(batch, namespace, "sqlmaster.io/run-id=sqlmaster-eval")
    (eval_pod,) = core.list_namespaced_pod(namespace, label_selector="sqlmaster.io/run-id=sqlmaster-eval").items
    volumes = {v.name: v for v in eval_pod.spec.volumes}
    assert volumes["data"].persistent_volume_claim.claim_name == "sqlmaster-train-data"
    out = run([kubectl, *notes_logs_command(install.stdout)[1:]], user_env).stdout
    assert f"--adapter /data/runs/sqlmaster-train/{model}" in out and "eval finished" in out
    assert f"--output-dir /data/runs/sqlmaster-eval/{model}/eval" in out

    # --- uninstall both: the Jobs go, the data claim stays (helm.sh/resource-policy: keep)
    for release in ("sqlmaster-eval", "sqlmaster-train"):
        proc = run([helm, "uninstall", release, *ns], user_env)
        assert re.search(rf"release \"{release}\" uninstalled", proc.stdout), proc.stdout
    wait_for(lambda: not batch.list_namespaced_job(namespace).items, timeout=30, what="the Jobs to be deleted")
    claims = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items]
    assert claims == ["sqlmaster-train-data"]
    assert core.read_namespaced_persistent_volume_claim("sqlmaster-train-data", namespace).status.phase == "Bound"
