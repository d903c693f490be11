"""`sqlctl list`: runs found by their `sqlmaster.io/run-id` label."""

from __future__ import annotations

from typing import Annotated

import typer

from sqlctl.app import app
from sqlctl.options import (
    AllNamespacesOpt,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    cli_errors,
    kube_settings,
)


@app.command("list")
@cli_errors
def list_runs(
    ctx: typer.Context,
    all_namespaces: AllNamespacesOpt = False,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many runs (newest first).")] = 50,
    output: OutputOpt = OutputFormat.table,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """List runs: run id, task, model, phase, GPUs, age (newest first)."""
    from rich.console import Console

    from sqlctl.kube import connect
    from sqlctl.manifests import LABEL_RUN_ID
    from sqlctl.output import age, emit, table
    from sqlctl.runs import summarise

    kube = connect(kube_settings(ctx, kubeconfig, context, namespace))
    with Console(stderr=True).status("fetching runs…", spinner="dots"):
        jobs = kube.list("batch/v1", "Job", kube.namespace, label_selector=LABEL_RUN_ID, all_namespaces=all_namespaces)
        pods = kube.list("v1", "Pod", kube.namespace, label_selector=LABEL_RUN_ID, all_namespaces=all_namespaces)
    summaries = summarise(jobs, pods)[: max(limit, 0)]
    if output != OutputFormat.table:
        emit([s.as_dict() for s in summaries], output)
        return
    headers = (["namespace"] if all_namespaces else []) + ["run id", "task", "model", "phase", "gpus", "age"]
    rows = [
        ([s.namespace] if all_namespaces else [])
        + [s.run_id, s.task, ",".join(s.models), s.phase, s.gpus, age(s.created)]
        for s in summaries
    ]
    if not rows:
        where = "any namespace" if all_namespaces else f"namespace {kube.namespace}"
        print(f"No runs in {where}.")
        return
    table(headers, rows)
