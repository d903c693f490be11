"""Facts read from rendered manifests (never written into them): labels, GPUs, Secrets, volumes.

Everything sqlctl checks before submitting comes from what the chart rendered, so the checks follow
the chart when it changes (secret name, GPU label, resource key) without sqlctl duplicating values.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

GPU_RESOURCE = "nvidia.com/gpu"
LABEL_RUN_ID = "sqlmaster.io/run-id"
LABEL_MODEL = "sqlmaster.io/model"
LABEL_TASK = "sqlmaster.io/task"
LABEL_ROLE = "sqlmaster.io/role"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
CONTAINER = "sqlmaster"


def labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a Pod or of a Job's template; None for other kinds.

    Items of a list answer carry no `kind`, so those are recognised by their shape.
    """
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod" or (kind is None and "containers" in spec):
        return spec
    if kind == "Job" or (kind is None and "template" in spec):
        return (spec.get("template") or {}).get("spec") or {}
    return None


def containers(spec: Obj) -> Iterator[Obj]:
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def gpus_per_pod(spec: Obj) -> int:
    """GPUs one pod asks for (limits win over requests, as for extended resources they must match)."""
    total = 0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU_RESOURCE, (resources.get("requests") or {}).get(GPU_RESOURCE))
        total += int(value or 0)
    return total


def job_gpus(job: Obj) -> int:
    """GPUs a Job holds at full parallelism."""
    spec = pod_spec(job) or {}
    parallelism = int((job.get("spec") or {}).get("parallelism") or 1)
    return gpus_per_pod(spec) * parallelism


@dataclass
class SecretNeeds:
    """Which Secrets a workload references, and which of their keys are not optional."""

    required_keys: dict[str, set[str]] = field(default_factory=dict)  # secret -> keys that must exist
    key_owner: dict[str, str] = field(default_factory=dict)  # key -> secret that provides it
    whole: set[str] = field(default_factory=set)  # secrets loaded with envFrom (any key may come from them)

    def add(self, secret: str, key: str | None, optional: bool) -> None:
        keys = self.required_keys.setdefault(secret, set())
        if key:
            self.key_owner.setdefault(key, secret)
            if not optional:
                keys.add(key)


def secret_needs(manifests: list[Obj]) -> SecretNeeds:
    """Collect Secret references from every pod spec (env, envFrom, volumes)."""
    needs = SecretNeeds()
    for obj in manifests:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in containers(spec):
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref.get("name"):
                    needs.add(ref["name"], ref.get("key"), bool(ref.get("optional")))
            for source in container.get("envFrom") or []:
                ref = source.get("secretRef")
                if ref and ref.get("name"):
                    needs.add(ref["name"], None, bool(ref.get("optional")))
                    needs.whole.add(ref["name"])
        for volume in spec.get("volumes") or []:
            secret = volume.get("secret")
            if secret and secret.get("secretName"):
                for item in secret.get("items") or [{"key": None}]:
                    needs.add(secret["secretName"], item.get("key"), bool(secret.get("optional")))
    return needs


def claim_names(spec: Obj, mount_path: str = "/data") -> list[str]:
    """PVC claim names mounted by the `sqlmaster` container, the one at `mount_path` first."""
    by_volume = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec.get("volumes") or []
        if v.get("persistentVolumeClaim", {}).get("claimName")
    }
    preferred: list[str] = []
    for container in spec.get("containers") or []:
        for mount in container.get("volumeMounts") or []:
            claim = by_volume.get(mount.get("name", ""))
            if claim and mount.get("mountPath") == mount_path:
                preferred.insert(0, claim)
            elif claim:
                preferred.append(claim)
    return list(dict.fromkeys(preferred + list(by_volume.values())))


def rank_of(pod: Obj) -> int:
    """The pod's rank: its Indexed-Job completion index (0 for non-indexed Jobs)."""
    meta = pod.get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0
