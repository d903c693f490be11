"""Create rendered objects idempotently: create, and on 409 look at who owns the existing object.

We use POST (create) rather than server-side apply: a run's objects are immutable once submitted,
and create gives exactly-once semantics under concurrency — of two racing submissions with the same
run id, one creates and the other sees AlreadyExists and reports the objects as left alone. That is
right for an id the user chose (re-submitting creates nothing); for an id sqlctl generated (`fresh`),
an existing object of a run means the id is taken by another submission: `RunIdTaken`, so the caller
tries a fresh id instead of reporting someone else's run as this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlctl.errors import SqlctlError
from sqlctl.kube import ApiError, Kube
from sqlctl.manifests import LABEL_RUN_ID, Obj, labels, name_of
from sqlmaster import exitcodes

# Dependencies first: the Job's pods need their ConfigMap, Service and claim.
_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "PersistentVolumeClaim",
    "ConfigMap",
    "Service",
    "Job",
    "Pod",
]


@dataclass(frozen=True)
class Applied:
    """What happened to one object: `created`, `exists` (same run, left alone) or `shared` (not run-owned)."""

    kind: str
    name: str
    action: str


class RunIdTaken(Exception):
    """A generated run id is already used by existing objects (what this attempt created was removed)."""


def _order(obj: Obj) -> int:
    return _ORDER.index(obj["kind"]) if obj["kind"] in _ORDER else len(_ORDER)


def create_objects(kube: Kube, manifests: list[Obj], run_id: str, namespace: str, fresh: bool = False) -> list[Applied]:
    """Create every object; objects that already exist are reported, never modified.

    `fresh`: the id was generated, so any existing run-labelled object means the id is taken: what this
    call created is deleted again and `RunIdTaken` raised.
    """
    results: list[Applied] = []
    for obj in sorted(manifests, key=_order):
        kind, name = obj["kind"], name_of(obj)
        try:
            kube.create(obj, namespace)
            results.append(Applied(kind, name, "created"))
            continue
        except ApiError as exc:
            if exc.status != 409:
                raise SqlctlError(
                    f"the API server refused {kind} {name}: {exc.message}",
                    "Fix the values named in the message; objects listed above were created "
                    f"(remove them with: sqlctl cancel {run_id} -y).",
                    code=exitcodes.FAILURE,
                ) from exc
        existing = kube.get(obj["apiVersion"], kind, name, namespace)
        owner = labels(existing).get(LABEL_RUN_ID)
        if fresh and owner is not None:
            _undo(kube, manifests, results, namespace)
            raise RunIdTaken(run_id)
        if owner == run_id:
            results.append(Applied(kind, name, "exists"))
        elif owner is None or kind == "PersistentVolumeClaim":
            results.append(Applied(kind, name, "shared"))  # e.g. a PVC shared by many runs
        else:
            raise SqlctlError(
                f"{kind} {name} already exists and belongs to run {owner}",
                "Choose another --run-id.",
            )
    return results


def _undo(kube: Kube, manifests: list[Obj], results: list[Applied], namespace: str) -> None:
    """Delete the objects this attempt created (its id turned out to be taken)."""
    created = {(a.kind, a.name) for a in results if a.action == "created"}
    for obj in manifests:
        if (obj["kind"], name_of(obj)) in created:
            kube.delete(obj["apiVersion"], obj["kind"], name_of(obj), namespace)
