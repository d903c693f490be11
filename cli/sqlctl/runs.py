"""Finding a run's Jobs and pods by label and summarising their state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlctl.errors import SqlctlError
from sqlctl.kube import ApiError, Kube
from sqlctl.manifests import (
    LABEL_MODEL,
    LABEL_ROLE,
    LABEL_RUN_ID,
    LABEL_TASK,
    Obj,
    job_gpus,
    labels,
    name_of,
)


def selector(run_id: str) -> str:
    return f"{LABEL_RUN_ID}={run_id}"


def run_jobs(kube: Kube, run_id: str, namespace: str) -> list[Obj]:
    """The run's Jobs; a clear error when there is none."""
    jobs = kube.list("batch/v1", "Job", namespace, label_selector=selector(run_id))
    if not jobs:
        raise SqlctlError(
            f"no run {run_id!r} in namespace {namespace!r}",
            "List runs with: sqlctl list -A (and pass -n NAMESPACE).",
        )
    return sorted(jobs, key=name_of)


def run_pods(kube: Kube, run_id: str, namespace: str, workers_only: bool = True) -> list[Obj]:
    """The run's pods, oldest first; artifact-reader pods are left out unless `workers_only` is False."""
    pods = kube.list("v1", "Pod", namespace, label_selector=selector(run_id))
    if workers_only:
        pods = [p for p in pods if not labels(p).get(LABEL_ROLE)]
    # creationTimestamp has one-second resolution: a retry made within the second of its predecessor's
    # failure must still sort after it: a retry only follows a Failed pod, so Failed pods come first among
    # pods of the same second.
    return sorted(
        pods,
        key=lambda p: (p["metadata"].get("creationTimestamp", ""), pod_phase(p) != "Failed", name_of(p)),
    )


def job_conditions(job: Obj) -> list[Obj]:
    return [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]


def job_finished(job: Obj) -> str | None:
    """'Succeeded' / 'Failed' once the Job controller has decided, else None."""
    for cond in job_conditions(job):
        if cond.get("type") == "Complete":
            return "Succeeded"
        if cond.get("type") == "Failed":
            return "Failed"
    return None


def pod_phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_restarts(pod: Obj) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def job_phase(job: Obj, pods: list[Obj]) -> str:
    """Succeeded/Failed from the Job's conditions; Running if one of its pods runs; else Pending."""
    finished = job_finished(job)
    if finished:
        return finished
    mine = [p for p in pods if labels(p).get("job-name") == name_of(job)]
    if any(pod_phase(p) == "Running" for p in mine):
        return "Running"
    return "Pending"


def run_phase(phases: list[str]) -> str:
    if "Failed" in phases:
        return "Failed"
    if phases and all(p == "Succeeded" for p in phases):
        return "Succeeded"
    if "Running" in phases:
        return "Running"
    return "Pending"


def scheduling_reason(kube: Kube, pod: Obj) -> str:
    """Why a Pending pod is not running: PodScheduled condition, else the latest FailedScheduling event."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '').strip()}"
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return f"{waiting.get('reason', 'Waiting')}: {waiting.get('message', '')}".rstrip(": ")
    try:
        events = kube.list(
            "v1",
            "Event",
            pod["metadata"]["namespace"],
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={name_of(pod)}",
        )
    except ApiError:
        return ""
    warnings = [e for e in events if e.get("type") == "Warning"]
    if warnings:
        last = max(warnings, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return f"{last.get('reason', '')}: {last.get('message', '').strip()}"
    return ""


@dataclass
class RunSummary:
    """One row of `sqlctl list`."""

    run_id: str
    namespace: str
    task: str
    models: list[str]
    phase: str
    gpus: int
    created: str
    jobs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "namespace": self.namespace,
            "task": self.task,
            "models": self.models,
            "phase": self.phase,
            "gpus": self.gpus,
            "created": self.created,
            "jobs": self.jobs,
        }


def summarise(jobs: list[Obj], pods: list[Obj]) -> list[RunSummary]:
    """Group Jobs by (namespace, run id), newest run first."""
    groups: dict[tuple[str, str], list[Obj]] = {}
    for job in jobs:
        run_id = labels(job).get(LABEL_RUN_ID)
        if run_id:
            groups.setdefault((job["metadata"].get("namespace", ""), run_id), []).append(job)
    summaries = []
    for (namespace, run_id), members in groups.items():
        run_pods_ = [
            p for p in pods if labels(p).get(LABEL_RUN_ID) == run_id and p["metadata"].get("namespace") == namespace
        ]
        phases = [job_phase(j, run_pods_) for j in members]
        summaries.append(
            RunSummary(
                run_id=run_id,
                namespace=namespace,
                task=labels(members[0]).get(LABEL_TASK, ""),
                models=sorted({labels(j).get(LABEL_MODEL, "") for j in members}),
                phase=run_phase(phases),
                gpus=sum(job_gpus(j) for j in members),
                created=min(j["metadata"].get("creationTimestamp", "") for j in members),
                jobs=sorted(name_of(j) for j in members),
            )
        )
    return sorted(summaries, key=lambda s: s.created, reverse=True)
