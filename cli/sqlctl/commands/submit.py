"""`sqlctl submit train|eval`: render the chart with helm, check the cluster, create the run, follow it.

`--local` renders the same chart and runs the rendered command on this machine (sqlctl.local).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from sqlctl.app import app as root
from sqlctl.errors import SqlctlError, warn
from sqlctl.kube import KubeSettings
from sqlctl.options import (
    ChartDirOpt,
    ContextOpt,
    JobsDirOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    cli_errors,
    kube_settings,
)
from sqlctl.paths import RepoPaths, resolve_paths
from sqlctl.submission import Extras, Planned, UserValues
from sqlmaster import exitcodes

app = typer.Typer(no_args_is_help=True)
root.add_typer(app, name="submit", help="Submit a training or evaluation run (cluster or --local).")

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Registry model (see `sqlctl models`), or 'all' for every registry model but tiny."
    ),
]
ValuesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--values",
        metavar="FILE",
        help="Extra helm values file, applied after jobs/<task>/<model>.yaml (repeatable).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Helm --set on the chart values, e.g. runs[0].gpus=2 or runs[0].recipe.training.max_steps=5 "
        "(repeatable; after --values).",
    ),
]
RecipeSetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--recipe-set",
        metavar="SECTION.KEY=VALUE",
        help="A recipe key for every run, in sqlmaster's --set syntax, e.g. training.max_steps=5 "
        "(repeatable; applied after --set).",
    ),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Use this run id; submitting an existing one creates nothing new."),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the rendered manifests (--local: the command, env, files); run nothing."),
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until the run finishes; exit non-zero if it failed.")]
DetachOpt = Annotated[bool, typer.Option("--detach", "-d", help="Do not follow the logs after submitting.")]
LocalOpt = Annotated[
    bool,
    typer.Option("--local", help="Run the chart's rendered command here, no cluster (paths under --runs-dir)."),
]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where --local runs write (runs/<run-id>/<model>/).")]
AdapterRunOpt = Annotated[
    str | None,
    typer.Option(
        "--adapter-run",
        "-a",
        metavar="TRAIN_RUN_ID",
        help="Evaluate the adapter this training run trained: sets runs[].adapterRunId and mounts the "
        "run's claim (unless you set storage.existingClaim). With --local: <runs-dir>/<id>/<model>.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class SubmitFlags:
    """The options `submit train` and `submit eval` share, declared once: each field is one flag of both
    (`with_submit_flags` gives the commands these parameters; Typer reads them like any other)."""

    values: ValuesOpt = None
    set_: SetOpt = None
    recipe_set: RecipeSetOpt = None
    run_id: RunIdOpt = None
    kubeconfig: KubeconfigOpt = None
    context: ContextOpt = None
    namespace: NamespaceOpt = None
    dry_run: DryRunOpt = False
    output: OutputOpt = OutputFormat.table
    wait: WaitOpt = False
    detach: DetachOpt = False
    local: LocalOpt = False
    runs_dir: RunsDirOpt = Path("runs")
    chart_dir: ChartDirOpt = None
    jobs_dir: JobsDirOpt = None

    def options(self, ctx: typer.Context, task: str, model: str, adapter_run: str | None = None) -> SubmitOptions:
        """SubmitOptions for one command (cluster flags merged over the root's)."""
        user = UserValues(tuple(self.values or ()), tuple(self.set_ or ()), tuple(self.recipe_set or ()))
        kube = kube_settings(ctx, self.kubeconfig, self.context, self.namespace)
        return SubmitOptions(task, model, self, user, kube, adapter_run)


@dataclass(frozen=True)
class SubmitOptions:
    """Everything `submit train|eval` was asked to do: the command's own arguments, the shared flags, and what
    they resolve to (the values files and sets, the cluster settings)."""

    task: str
    model: str
    flags: SubmitFlags
    user: UserValues
    kube: KubeSettings
    adapter_run: str | None = None


def _models(paths: RepoPaths, task: str, model: str) -> list[str]:
    available = paths.job_models(task)
    if model == "all":
        from sqlctl.registry import cluster_models, load_models

        chosen = cluster_models(load_models(), available)
        if not chosen:
            raise SqlctlError(f"no 7B model has a jobs/{task}/ values file", f"Add files under {paths.jobs / task}.")
        return chosen
    if model not in available:
        shown = model if len(model) <= 40 else model[:40] + "…"
        raise SqlctlError(
            f"unknown model {shown!r} for {task}",
            f"Choose one of: {', '.join(available) or '(none found)'}, or 'all' (values files in {paths.jobs / task}).",
        )
    return [model]


def _next_steps(task: str, plans: list[Planned], namespace: str) -> None:
    ns = f" -n {namespace}"
    print("\nNext:", file=sys.stderr)
    for plan in plans:
        run_id = plan.run_id
        print(f"  sqlctl logs {run_id} -f{ns}          # follow the logs", file=sys.stderr)
        print(f"  sqlctl status {run_id}{ns}           # Job and pods; why a pod waits", file=sys.stderr)
        print(f"  sqlctl artifacts pull {run_id}{ns}   # adapter, metrics, reports", file=sys.stderr)
        print(f"  sqlctl cancel {run_id}{ns}           # stop and delete it", file=sys.stderr)
        if task == "train":
            print(
                f"  sqlctl submit eval --model {plan.model} --adapter-run {run_id}{ns}   # evaluate it once trained",
                file=sys.stderr,
            )


def _check(opts: SubmitOptions) -> tuple[RepoPaths, list[str]]:
    """Everything checked before helm or the cluster is asked anything."""
    from sqlctl.runid import validate_run_id
    from sqlctl.submission import check_user_values

    paths = resolve_paths(opts.flags.chart_dir, opts.flags.jobs_dir)
    models = _models(paths, opts.task, opts.model)
    if opts.flags.run_id is not None:
        validate_run_id(opts.flags.run_id)
        if len(models) > 1:
            raise SqlctlError("--run-id names one run but --model all submits several", "Drop --run-id or pick one.")
    if opts.adapter_run is not None:
        from sqlctl.adapter_run import check_user_sets

        validate_run_id(opts.adapter_run, "--adapter-run")
        check_user_sets(list(opts.user.sets))
    check_user_values(paths, opts.task, opts.user)
    if opts.flags.local and opts.flags.runs_dir.exists() and not opts.flags.runs_dir.is_dir():
        raise SqlctlError(
            f"--runs-dir {opts.flags.runs_dir} is not a folder", "Pass a folder (it is created if missing)."
        )
    return paths, models


def run_submit(opts: SubmitOptions) -> None:
    paths, models = _check(opts)
    if opts.flags.local:
        _submit_local(opts, paths, models)
    elif opts.flags.dry_run:
        _dry_run(opts, paths, models)
    else:
        _submit_cluster(opts, paths, models)


def _dry_run(opts: SubmitOptions, paths: RepoPaths, models: list[str]) -> None:
    """Print the manifests helm renders; no cluster is contacted (so --adapter-run's claim is not looked up)."""
    from sqlctl.render import dump_manifests
    from sqlctl.submission import plan

    ns = opts.kube.namespace or "default"
    extras = {m: Extras(adapter_run=opts.adapter_run) for m in models}
    plans = plan(paths, opts.task, models, opts.flags.run_id, ns, opts.user, extras)
    if opts.adapter_run:
        warn(
            "--dry-run does not contact the cluster, so the training run's claim is not looked up: the "
            "manifests show the values' storage.existingClaim (a submission mounts the training run's claim "
            "unless you set storage.existingClaim)"
        )
    rendered = [m for p in plans for m in p.manifests]
    print(dump_manifests(rendered, "json" if opts.flags.output == OutputFormat.json else "yaml"), end="")


def _report(opts: SubmitOptions, namespace: str, plans: list[Planned], report: list[dict[str, str]]) -> None:
    if opts.flags.output != OutputFormat.table:
        from sqlctl.output import emit

        emit({"namespace": namespace, "runs": [p.run_id for p in plans], "objects": report}, opts.flags.output)
        return
    note = {"created": "created", "exists": "exists, left alone", "shared": "exists (shared), left alone"}
    for row in report:
        print(f"{row['kind'].lower()}/{row['name']} {note[row['action']]}", file=sys.stderr)
    for plan in plans:
        created = any(r["runId"] == plan.run_id and r["action"] == "created" for r in report)
        verb = "submitted" if created else "already submitted; nothing new created"
        print(f"run {plan.run_id} {verb} (namespace {namespace})", file=sys.stderr)


def _submit_cluster(opts: SubmitOptions, paths: RepoPaths, models: list[str]) -> None:
    from sqlctl import preflight
    from sqlctl.kube import connect
    from sqlctl.submission import adapter_extras, submit_to_cluster

    kube = connect(opts.kube)  # kubeconfig + reachability (clear error otherwise)
    ns = kube.namespace
    extras: dict[str, Extras] = {}
    if opts.adapter_run:
        preflight.check_namespace(kube, ns)  # before looking for the training run in it
        extras = {m: adapter_extras(kube, paths, opts.task, m, opts.user, opts.adapter_run) for m in models}
    plans, report = submit_to_cluster(kube, paths, opts.task, models, opts.user, opts.flags.run_id, extras)
    _report(opts, ns, plans, report)
    if opts.flags.detach or len(plans) > 1:
        if len(plans) > 1 and not opts.flags.detach:
            print("several runs submitted: not following their logs", file=sys.stderr)
        _next_steps(opts.task, plans, ns)
        if opts.flags.wait:
            _wait(kube, ns, [p.run_id for p in plans])
        return
    from sqlctl.commands.logs import follow_run

    try:
        outcome = follow_run(kube, ns, plans[0].run_id)
    finally:  # also on Ctrl-C: the run goes on in the cluster, say how to get back to it
        _next_steps(opts.task, plans, ns)
    if outcome != "Succeeded":
        raise typer.Exit(exitcodes.FAILURE)


def _wait(kube: object, namespace: str, run_ids: list[str], poll: float = 2.0) -> None:
    """Block until every Job of the runs has finished; exit 1 if one failed."""
    from sqlctl.runs import job_finished, run_jobs

    while True:
        outcomes = [job_finished(j) for rid in run_ids for j in run_jobs(kube, rid, namespace)]  # type: ignore[arg-type]
        if all(outcomes):
            failed = outcomes.count("Failed")
            print(f"finished: {len(outcomes) - failed} succeeded, {failed} failed", file=sys.stderr)
            if failed:
                raise typer.Exit(exitcodes.FAILURE)
            return
        time.sleep(poll)


def _local_plan(opts: SubmitOptions, paths: RepoPaths, model: str) -> list[Any]:
    """Render one model's release as for the cluster and map it to local runs."""
    from sqlctl import local
    from sqlctl.runid import new_run_id
    from sqlctl.submission import render_model, run_models

    extras = Extras()
    if opts.adapter_run:
        from sqlctl.adapter_run import check_local

        check_local(opts.flags.runs_dir, opts.adapter_run, run_models(paths, opts.task, model, "default", opts.user))
        extras = Extras(adapter_run=opts.adapter_run)
    run_id = opts.flags.run_id or new_run_id(opts.task, model)
    while opts.flags.run_id is None and (opts.flags.runs_dir / run_id).exists():  # a generated id never reuses a folder
        run_id = new_run_id(opts.task, model)
    return local.plan_local(
        render_model(paths, opts.task, model, run_id, "default", opts.user, extras), opts.flags.runs_dir
    )


def _submit_local(opts: SubmitOptions, paths: RepoPaths, models: list[str]) -> None:
    from sqlctl import local

    planned = [run for model in models for run in _local_plan(opts, paths, model)]
    if opts.flags.dry_run:
        from sqlctl.output import emit

        fmt = OutputFormat.json if opts.flags.output == OutputFormat.json else OutputFormat.yaml
        emit([run.as_dict() for run in planned], fmt)
        return
    for run in planned:
        with local.owned(run):
            local.write_files(run)
            code = local.execute(run)
        if code != 0:
            raise SqlctlError(
                f"local {opts.task} of {run.model} exited with code {code}",
                "Read the output above" + ("; exit code 2 means a configuration error." if code == 2 else "."),
                code=exitcodes.CONFIG if code == 2 else exitcodes.FAILURE,
            )
        print(f"local run {run.run_id} finished: {run.run_dir}", file=sys.stderr)
        if opts.task == "train":
            where = "" if opts.flags.runs_dir == Path("runs") else f" --runs-dir {opts.flags.runs_dir}"
            print(
                f"Next: sqlctl submit eval --model {run.model} --local --adapter-run {run.run_id}{where}",
                file=sys.stderr,
            )


def with_submit_flags(func: Callable[..., None]) -> Callable[..., None]:
    """Let ``func(..., flags: SubmitFlags)`` take the flags as parameters of its own (what Typer reads) and
    receive them as one SubmitFlags."""
    hints = typing.get_type_hints(SubmitFlags, include_extras=True)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(SubmitFlags)
    ]
    own = [p for name, p in inspect.signature(func, eval_str=True).parameters.items() if name != "flags"]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        flags = SubmitFlags(**{p.name: kwargs.pop(p.name) for p in shared})
        func(*args, flags=flags, **kwargs)

    parameters = [*own, *shared]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


@app.command("train")
@cli_errors
@with_submit_flags
def submit_train(ctx: typer.Context, model: ModelOpt, flags: SubmitFlags) -> None:
    """Submit a training run: render charts/sqlmaster-train with jobs/train/<model>.yaml, check the cluster,
    create the Job(s), follow the logs (-d to detach)."""
    run_submit(flags.options(ctx, "train", model))


@app.command("eval")
@cli_errors
@with_submit_flags
def submit_eval(ctx: typer.Context, model: ModelOpt, flags: SubmitFlags, adapter_run: AdapterRunOpt = None) -> None:
    """Submit an evaluation run: render charts/sqlmaster-eval with jobs/eval/<model>.yaml, check the
    cluster, create the Job(s), follow the logs (-d to detach). --adapter-run TRAIN_RUN_ID evaluates
    what that training run trained, on its claim."""
    run_submit(flags.options(ctx, "eval", model, adapter_run))
