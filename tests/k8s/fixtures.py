"""pytest fixtures for tests that need a Kubernetes API: ``k8s_cluster`` and ``namespace``.

Loaded for the whole suite by ``pytest_plugins`` in ``tests/conftest.py``. Any test that uses
``k8s_cluster`` (directly or through ``namespace``) gets the ``k8s`` marker automatically, so
``pytest -m "not k8s"`` leaves them out; mark them ``@pytest.mark.k8s`` too, for readers.

* ``k8s_cluster`` (session): one control plane (:mod:`tests.k8s.controlplane`) plus a
  :class:`~tests.k8s.fake_kubelet.FakeKubelet` with two 8x A100 nodes and a
  :class:`~tests.k8s.fake_provisioner.FakeProvisioner` (PVCs bind at once), shared by every test.
  Missing binaries fail the test with the command that builds them; ``SQLMASTER_SKIP_K8S=1`` skips
  instead, with that reason in the report.
* ``namespace`` (function): a fresh namespace whose ``default`` ServiceAccount (and its token) exist,
  so pods can be created at once. Deleted afterwards, with the kubelet rules scoped to it.

Importing this module is cheap: the kubernetes client and the control plane load only when a fixture runs.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.k8s.controlplane import Binaries, ControlPlane
    from tests.k8s.fake_kubelet import FakeKubelet
    from tests.k8s.fake_provisioner import FakeProvisioner

SKIP_ENV = "SQLMASTER_SKIP_K8S"
NODES = 2
T = TypeVar("T")


@dataclass
class K8sCluster:
    """What the ``k8s_cluster`` fixture yields."""

    controlplane: ControlPlane
    kubelet: FakeKubelet
    provisioner: FakeProvisioner

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (context ``sqlmaster-test-admin``; also holds ``sqlmaster-test-restricted``)."""
        return self.controlplane.kubeconfig

    @property
    def restricted_kubeconfig(self) -> Path:
        """Kubeconfig of user ``restricted``, who has no RBAC permissions unless a test grants some."""
        return self.controlplane.restricted_kubeconfig

    @property
    def server(self) -> str:
        return self.controlplane.server

    def volume_path(self, namespace: str, claim: str) -> Path:
        """The local folder standing in for PVC ``namespace/claim`` (see FakeProvisioner)."""
        return self.provisioner.path_for(namespace, claim)

    def api(self, restricted: bool = False) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` (admin, or the restricted user)."""
        return self.controlplane.api(restricted=restricted)


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"k8s_cluster", "k8s_binaries"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    """The control-plane binaries; fails (never skips silently) when they are not built."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: Kubernetes control-plane tests were switched off")
    from tests.k8s.controlplane import Binaries, ControlPlaneError

    try:
        return Binaries.find()
    except ControlPlaneError as e:
        problem = str(e)
    pytest.fail(f"{problem} (or set {SKIP_ENV}=1 to skip the k8s tests)", pytrace=False)


@pytest.fixture(scope="session")
def k8s_cluster(k8s_binaries: Binaries) -> Iterator[K8sCluster]:
    from tests.k8s.controlplane import ControlPlane, ControlPlaneError, make_serving_cert
    from tests.k8s.fake_kubelet import FakeKubelet
    from tests.k8s.fake_provisioner import FakeProvisioner

    cp = ControlPlane(k8s_binaries)
    kubelet: FakeKubelet | None = None
    provisioner: FakeProvisioner | None = None
    problem = ""
    try:
        cp.start()
        key, cert = make_serving_cert(cp.workdir / "pki", "kubelet", (cp.ca_key, cp.ca_file))
        kubelet = FakeKubelet(cp.api, cert_file=cert, key_file=key, nodes=NODES).start()
        provisioner = FakeProvisioner(cp.api, cp.workdir / "volumes").start()
    except ControlPlaneError as e:  # startup failed: its message holds the component's log tail
        problem = str(e)
    except BaseException:
        for part in (provisioner, kubelet, cp):
            if part is not None:
                part.stop()
        raise
    if problem:
        for part in (provisioner, kubelet, cp):
            if part is not None:
                part.stop()
        pytest.fail(problem, pytrace=False)
    assert kubelet is not None and provisioner is not None
    try:
        yield K8sCluster(cp, kubelet, provisioner)
    finally:
        provisioner.stop()
        kubelet.stop()
        cp.stop()
        for name, errors in (("kubelet", kubelet.errors), ("provisioner", provisioner.errors)):
            if errors:
                warnings.warn(f"fake {name} reported errors: {errors}", stacklevel=1)


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-") or "test"
    return f"{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(k8s_cluster: K8sCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta

    name = _namespace_name(request.node.name)
    api = k8s_cluster.api()
    core = CoreV1Api(api)
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name, labels={"sqlmaster.io/test": "true"})))

    def sa_ready() -> bool:
        # 1.20's ServiceAccount admission rejects pods until the token Secret is linked to the account.
        sas = core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        return bool(sas and sas[0].secrets)

    try:
        wait_for(sa_ready, timeout=30, what=f"the default ServiceAccount in namespace {name}")
        yield name
    finally:
        k8s_cluster.kubelet.clear_rules(name)
        core.delete_namespace(name)
        api.close()
