"""`sqlctl status RUN`: the Job's conditions, its pods, restarts and why a pod waits."""

from __future__ import annotations

from typing import Any

import typer

from sqlctl.app import app
from sqlctl.options import (
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    RunIdArg,
    cli_errors,
    kube_settings,
)


def describe(kube: Any, run_id: str, namespace: str) -> dict[str, Any]:
    """A run's state as plain data (the table and -o json|yaml print the same facts)."""
    from sqlctl.manifests import LABEL_MODEL, LABEL_TASK, job_gpus, labels, name_of, rank_of
    from sqlctl.runs import (
        job_phase,
        pod_phase,
        pod_restarts,
        run_jobs,
        run_phase,
        run_pods,
        scheduling_reason,
    )

    jobs = run_jobs(kube, run_id, namespace)
    pods = run_pods(kube, run_id, namespace)
    job_rows = []
    for job in jobs:
        status = job.get("status") or {}
        job_rows.append(
            {
                "name": name_of(job),
                "model": labels(job).get(LABEL_MODEL, ""),
                "phase": job_phase(job, pods),
                "gpus": job_gpus(job),
                "active": int(status.get("active") or 0),
                "succeeded": int(status.get("succeeded") or 0),
                "failed": int(status.get("failed") or 0),
                "conditions": [
                    {k: c.get(k) for k in ("type", "status", "reason", "message") if c.get(k)}
                    for c in status.get("conditions") or []
                ],
            }
        )
    pod_rows = []
    for pod in pods:
        phase = pod_phase(pod)
        pod_rows.append(
            {
                "name": name_of(pod),
                "job": labels(pod).get("job-name", ""),
                "rank": rank_of(pod),
                "phase": phase,
                "node": (pod.get("spec") or {}).get("nodeName", ""),
                "restarts": pod_restarts(pod),
                "created": pod["metadata"].get("creationTimestamp", ""),
                "reason": scheduling_reason(kube, pod) if phase == "Pending" else _ended_reason(pod),
            }
        )
    return {
        "runId": run_id,
        "namespace": namespace,
        "task": labels(jobs[0]).get(LABEL_TASK, ""),
        "phase": run_phase([str(j["phase"]) for j in job_rows]),
        "jobs": job_rows,
        "pods": pod_rows,
    }


def _ended_reason(pod: dict[str, Any]) -> str:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return f"{terminated.get('reason', 'Terminated')} (exit {terminated.get('exitCode', '?')})"
    return ""


def _conditions(job: dict[str, Any]) -> str:
    """The Job's true conditions, each with its reason and message: "Failed (BackoffLimitExceeded: ...)"."""
    shown = [
        f"{c['type']}" + (f" ({c.get('reason')}: {c.get('message', '')})" if c.get("reason") else "")
        for c in job["conditions"]
        if c.get("status") == "True"
    ]
    return "; ".join(shown) or "-"


@app.command("status")
@cli_errors
def status(
    ctx: typer.Context,
    run_id: RunIdArg,
    output: OutputOpt = OutputFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Show a run: Job conditions, pod phases and restarts, and the scheduler's reason for Pending pods."""
    from sqlctl.kube import connect
    from sqlctl.output import age, emit, table

    kube = connect(kube_settings(ctx, kubeconfig, context, namespace))
    info = describe(kube, run_id, kube.namespace)
    if output != OutputFormat.table:
        emit(info, output)
        return
    print(
        f"Run:       {info['runId']}\nNamespace: {info['namespace']}\n"
        f"Task:      {info['task']}\nPhase:     {info['phase']}"
    )
    print()
    table(
        ["job", "model", "phase", "gpus", "active", "succeeded", "failed", "conditions"],
        [
            [j["name"], j["model"], j["phase"], j["gpus"], j["active"], j["succeeded"], j["failed"], _conditions(j)]
            for j in info["jobs"]
        ],
    )
    if info["pods"]:
        table(
            ["pod", "rank", "phase", "node", "restarts", "age", "reason"],
            [
                [
                    p["name"],
                    p["rank"],
                    p["phase"],
                    p["node"] or "-",
                    p["restarts"],
                    age(p["created"]),
                    p["reason"] or "-",
                ]
                for p in info["pods"]
            ],
        )
    else:
        print("No pods yet.")
