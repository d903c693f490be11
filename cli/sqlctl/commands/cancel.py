"""`sqlctl cancel RUN`: delete the run's Jobs (foreground) and pods, and wait until they are gone."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from sqlctl.app import app
from sqlctl.errors import SqlctlError
from sqlctl.options import (
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    RunIdArg,
    YesOpt,
    cli_errors,
    kube_settings,
)
from sqlmaster import exitcodes


@app.command("cancel")
@cli_errors
def cancel(
    ctx: typer.Context,
    run_id: RunIdArg,
    yes: YesOpt = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the pods to go.")] = 120.0,
    grace_period: Annotated[
        int | None, typer.Option("--grace-period", help="Seconds pods get to stop (default: the pod's own).")
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Cancel a run: delete its Jobs with foreground propagation, its pods, ConfigMaps and Services.

    The run's data on the PVC is kept (pull it with `sqlctl artifacts pull`).
    """
    from sqlctl.kube import connect
    from sqlctl.manifests import name_of
    from sqlctl.runs import run_jobs, selector

    kube = connect(kube_settings(ctx, kubeconfig, context, namespace))
    ns = kube.namespace
    jobs = run_jobs(kube, run_id, ns)
    if not yes:
        typer.confirm(f"Delete run {run_id} ({len(jobs)} Job(s)) in namespace {ns}?", abort=True)
    for job in jobs:
        kube.delete("batch/v1", "Job", name_of(job), ns, propagation="Foreground", grace_period=grace_period)
    for kind in ("ConfigMap", "Service"):
        for obj in kube.list("v1", kind, ns, label_selector=selector(run_id)):
            kube.delete("v1", kind, name_of(obj), ns)
    deadline = time.monotonic() + timeout
    while True:
        left_jobs = kube.list("batch/v1", "Job", ns, label_selector=selector(run_id))
        left_pods = kube.list("v1", "Pod", ns, label_selector=selector(run_id))
        if not left_jobs and not left_pods:
            print(f"run {run_id} cancelled: no Job and no pod left", file=sys.stderr)
            return
        # The garbage collector removes the pods of a foreground-deleted Job; delete stragglers
        # (e.g. artifact readers) ourselves so nothing keeps running.
        for pod in left_pods:
            if not (pod["metadata"].get("deletionTimestamp")):
                kube.delete("v1", "Pod", name_of(pod), ns, grace_period=grace_period)
        if time.monotonic() > deadline:
            names = ", ".join(name_of(o) for o in left_jobs + left_pods)
            raise SqlctlError(
                f"still present after {timeout:.0f} s: {names}",
                "The kubelet may be unreachable; check with sqlctl status, or retry with --grace-period 0.",
                code=exitcodes.FAILURE,
            )
        time.sleep(0.5)
