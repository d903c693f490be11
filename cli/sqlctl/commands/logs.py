"""`sqlctl logs RUN`: print or follow a run's logs across pod retries and dropped connections."""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from sqlctl.app import app
from sqlctl.errors import SqlctlError
from sqlctl.options import (
    ContextOpt,
    FollowOpt,
    KubeconfigOpt,
    NamespaceOpt,
    RunIdArg,
    cli_errors,
    kube_settings,
)
from sqlmaster import exitcodes


class Prefix(StrEnum):
    pod = "pod"
    rank = "rank"
    none = "none"


def parse_duration(text: str) -> int:
    """`90s`, `5m`, `2h`, `1h30m` -> seconds."""
    parts = re.findall(r"(\d+)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise SqlctlError(f"cannot read duration {text!r}", "Use forms like 30s, 5m, 2h or 1h30m.")
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)


def _printer(prefix_mode: str) -> Any:
    def printer(prefix: str, line: str) -> None:
        sys.stdout.write(f"[{prefix}] {line}\n" if prefix and prefix_mode != "none" else f"{line}\n")
        sys.stdout.flush()

    return printer


def _notice(message: str) -> None:
    print(f"sqlctl: {message}", file=sys.stderr, flush=True)


def follow_run(kube: Any, namespace: str, run_id: str, ranks: list[int] | None = None, prefix: str = "pod") -> str:
    """Follow a run until it finishes; returns 'Succeeded' or 'Failed' (used by submit too)."""
    from sqlctl.logstream import FollowOptions, RunFollower
    from sqlctl.runs import run_jobs

    jobs = run_jobs(kube, run_id, namespace)
    follower = RunFollower(
        kube,
        namespace,
        run_id,
        _printer(prefix),
        FollowOptions(follow=True, prefix=prefix, from_first_pod=True),
        ranks=[0] if ranks is None else ranks,
        notice=_notice,
    )
    outcomes = follower.run(jobs).outcomes
    outcome = "Failed" if "Failed" in outcomes.values() else "Succeeded"
    _notice(f"run {run_id} {outcome.lower()}")
    return outcome


@app.command("logs")
@cli_errors
def logs(
    ctx: typer.Context,
    run_id: RunIdArg,
    follow: FollowOpt = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines of each pod.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only lines newer than this (e.g. 10m, 1h).")] = None,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous container's logs.")] = False,
    rank: Annotated[int | None, typer.Option("--rank", help="Rank (completion index) to show; default 0.")] = None,
    all_ranks: Annotated[bool, typer.Option("--all", help="Every rank, interleaved and prefixed.")] = False,
    prefix: Annotated[Prefix, typer.Option("--prefix", help="Line prefix: pod name, rank, or none.")] = Prefix.pod,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Print a run's logs; with -f follow them, across pod retries, until the run ends."""
    from sqlctl.kube import connect
    from sqlctl.logstream import FollowOptions, RunFollower
    from sqlctl.runs import run_jobs

    if rank is not None and all_ranks:
        raise SqlctlError("--rank and --all exclude each other", "Pass one of them.")
    if tail is not None and tail < 0:
        raise SqlctlError(f"--tail {tail} is negative", "Pass a number of lines, 0 or more.")
    options = FollowOptions(
        follow=follow,
        tail=tail,
        since_seconds=parse_duration(since) if since else None,
        previous=previous,
        prefix=prefix.value,
    )
    kube = connect(kube_settings(ctx, kubeconfig, context, namespace))
    ns = kube.namespace
    jobs = run_jobs(kube, run_id, ns)
    ranks = None if all_ranks else [rank or 0]
    outcomes = RunFollower(kube, ns, run_id, _printer(prefix.value), options, ranks=ranks, notice=_notice).run(jobs)
    if follow:
        failed = "Failed" in outcomes.outcomes.values()
        _notice(f"run {run_id} {'failed' if failed else 'succeeded'}")
        if failed:
            raise typer.Exit(exitcodes.FAILURE)
