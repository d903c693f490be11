"""Checks made before anything is created; each failure names the problem and the fix.

Order (cheapest and most fundamental first): cluster reachable (in `kube.connect`), namespace exists,
RBAC allows creating every rendered kind, referenced Secrets and keys exist (HF_TOKEN for gated
models, as the registry says), then a warning when no node can host the requested GPUs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from sqlctl.errors import SqlctlError, warn
from sqlctl.kube import KINDS, ApiError, Kube
from sqlctl.manifests import (
    GPU_RESOURCE,
    LABEL_MODEL,
    Obj,
    gpus_per_pod,
    labels,
    pod_spec,
    secret_needs,
)

HF_TOKEN = "HF_TOKEN"


def check_namespace(kube: Kube, namespace: str) -> None:
    """The namespace must exist (a Forbidden answer is left to the RBAC check)."""
    try:
        kube.get("v1", "Namespace", namespace)
    except ApiError as exc:
        if exc.status == 404:
            raise SqlctlError(
                f"namespace {namespace!r} does not exist on {kube.context or kube.server}",
                f"Create it (kubectl create namespace {namespace}) or pass -n with an existing namespace.",
            ) from exc
        if exc.status != 403:
            raise


def _review(kube: Kube, namespace: str, verb: str, group: str, resource: str) -> tuple[bool, str]:
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource}},
    }
    status = kube.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body).get("status", {})
    return bool(status.get("allowed")), str(status.get("reason", ""))


def check_rbac(kube: Kube, namespace: str, manifests: Iterable[Obj], extra: Iterable[tuple[str, str]] = ()) -> None:
    """SelfSubjectAccessReview `create` for every kind the chart rendered (plus `extra` (group, resource))."""
    wanted: dict[tuple[str, str], str] = {}
    for obj in manifests:
        _prefix, plural, _ = KINDS.get((obj["apiVersion"], obj["kind"]), ("", "", True))
        if plural:
            group = obj["apiVersion"].rpartition("/")[0]
            wanted[(group, plural)] = "create"
    for group, resource in extra:
        wanted[(group, resource)] = "create"
    denied = []
    for (group, resource), verb in sorted(wanted.items()):
        allowed, _reason = _review(kube, namespace, verb, group, resource)
        if not allowed:
            denied.append(f"{verb} {resource}" + (f".{group}" if group else ""))
    if denied:
        raise SqlctlError(
            f"RBAC forbids you to {', '.join(denied)} in namespace {namespace!r}",
            "Ask a cluster admin for a Role with these verbs in this namespace "
            "(see docs/cluster.md), or use -n with a namespace where you have them.",
        )


def check_secrets(kube: Kube, namespace: str, manifests: list[Obj], gated: dict[str, bool]) -> None:
    """Every referenced Secret exists with its required keys; gated models need a non-empty HF_TOKEN.

    `gated` maps model name -> registry `gated` flag for the models in `manifests`.
    """
    needs = secret_needs(manifests)
    gated_models = sorted(
        {labels(o).get(LABEL_MODEL, "") for o in manifests if pod_spec(o) is not None}
        & {m for m, g in gated.items() if g}
    )
    if gated_models:
        owner = needs.key_owner.get(HF_TOKEN) or next(iter(sorted(needs.whole)), None)
        if owner is None:
            raise SqlctlError(
                f"model {gated_models[0]} is gated but the chart passes no Secret with {HF_TOKEN} to the pod",
                "Set secrets.name in your values to the Secret holding HF_TOKEN.",
            )
        needs.required_keys.setdefault(owner, set()).add(HF_TOKEN)
    for secret, keys in sorted(needs.required_keys.items()):
        try:
            data = kube.get("v1", "Secret", secret, namespace).get("data") or {}
        except ApiError as exc:
            if exc.status == 404:
                example = " ".join(f"--from-literal={k}=..." for k in sorted(keys or {HF_TOKEN}))
                raise SqlctlError(
                    f"Secret {secret!r} does not exist in namespace {namespace!r}",
                    f"Create it: kubectl -n {namespace} create secret generic {secret} {example} "
                    "(or set secrets.name to an existing Secret).",
                ) from exc
            if exc.status == 403:
                warn(f"cannot read Secret {secret!r} to check its keys (forbidden); continuing.")
                continue
            raise
        for key in sorted(keys):
            value = data.get(key)
            if not value or not base64.b64decode(value).strip():
                why = f"gated model {', '.join(gated_models)} needs it" if key == HF_TOKEN else "the chart needs it"
                raise SqlctlError(
                    f"Secret {secret!r} in namespace {namespace!r} has no non-empty key {key} ({why})",
                    f"Add it: kubectl -n {namespace} create secret generic {secret} --from-literal={key}=... "
                    "--dry-run=client -o yaml | kubectl apply -f -",
                )


def gpu_warnings(kube: Kube, manifests: list[Obj]) -> list[str]:
    """Warnings when no node matches a pod's nodeSelector or offers its GPU count (empty when fine)."""
    try:
        nodes = kube.list("v1", "Node")
    except ApiError as exc:
        if exc.status == 403:
            return []  # many users may not list nodes; the scheduler will tell them via `sqlctl status`
        raise
    messages: list[str] = []
    for obj in manifests:
        spec = pod_spec(obj)
        if spec is None:
            continue
        selector = spec.get("nodeSelector") or {}
        want = gpus_per_pod(spec)
        matching = [n for n in nodes if all(labels(n).get(k) == v for k, v in selector.items())]
        what = f"{obj['kind']} {obj['metadata']['name']}"
        if not matching:
            pairs = ", ".join(f"{k}={v}" for k, v in selector.items())
            messages.append(
                f"no node has the labels {pairs} that {what} selects; it will stay Pending. "
                "Check the GPU operator's node labels or override nodeSelector in your values."
            )
            continue
        if want:
            best = max(int((n.get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE, 0)) for n in matching)
            if best < want:
                messages.append(
                    f"{what} asks for {want} {GPU_RESOURCE} per pod but the largest matching node "
                    f"offers {best}; "
                    "it will stay Pending. Lower gpus in your values or add bigger nodes."
                )
    return messages
