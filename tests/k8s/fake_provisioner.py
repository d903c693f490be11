"""A fake volume provisioner: every PersistentVolumeClaim gets a hostPath PersistentVolume at once.

Without it a PVC stays Pending (there is no storage driver) and the scheduler refuses pods that mount it
("pod has unbound immediate PersistentVolumeClaims"). For each new claim this creates a PV pre-bound to it
(``claimRef`` with the claim's uid, same storageClassName, access modes, volume mode and requested size);
the real PV controller in kube-controller-manager then binds the pair. The PV's hostPath is a local folder,
:meth:`FakeProvisioner.path_for` (``<root>/<namespace>/<claim>``), so a test can put files "on the volume"
and point the fake kubelet's artifact hook at them. Nothing mounts it: no container runs.

PVs are named ``fake-pv-<claim uid>``, reclaim policy Retain, and deleted when their claim is deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from tests.k8s.watching import JsonWatch

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

PV_LABEL = "sqlmaster.io/fake-provisioner"


class FakeProvisioner:
    """Watches PVCs in all namespaces; ``start()``/``stop()``; ``errors`` lists unexpected failures."""

    def __init__(self, api_factory: Callable[[], ApiClient], root: Path) -> None:
        self._api_factory = api_factory
        self.root = root
        self.errors: list[str] = []
        self._api: ApiClient | None = None
        self._watch: JsonWatch | None = None
        self._done: set[str] = set()
        self._core: Any = None

    def path_for(self, namespace: str, claim: str) -> Path:
        """The local folder that backs claim ``namespace/claim``."""
        return self.root / namespace / claim

    def start(self) -> FakeProvisioner:
        self._api = self._api_factory()
        self._core = core = CoreV1Api(self._api)  # typed Any: JSON bodies, as in the fake kubelet
        self._watch = JsonWatch(
            "fake-provisioner",
            core.list_persistent_volume_claim_for_all_namespaces,
            self._on_claim,
            self._error,
        ).start()
        return self

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        if self._api is not None:
            self._api.close()

    def _error(self, message: str) -> None:
        self.errors.append(message)

    def _on_claim(self, kind: str, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim.get("spec", {})
        uid = meta["uid"]
        if kind == "DELETED":
            with contextlib.suppress(ApiException):
                self._core.delete_persistent_volume(f"fake-pv-{uid}")
            self._done.discard(uid)
            return
        if uid in self._done or spec.get("volumeName") or meta.get("deletionTimestamp"):
            return
        self._done.add(uid)
        path = self.path_for(meta["namespace"], meta["name"])
        path.mkdir(parents=True, exist_ok=True)
        size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"fake-pv-{uid}", "labels": {PV_LABEL: "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "storageClassName": spec.get("storageClassName") or "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": uid,
                },
            },
        }
        try:
            self._core.create_persistent_volume(pv)
        except ApiException as e:
            if e.status != 409:
                self._error(f"creating a PV for {meta['namespace']}/{meta['name']}: {e.status} {e.reason}")
