"""`sqlctl submit train|eval`: render the chart with helm, check the cluster, create the run, follow it."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sqlctl.errors import EXIT_CONFIG, EXIT_FAILURE, SqlctlError, warn
from sqlctl.options import (
    ChartDirOpt,
    ContextOpt,
    FollowOpt,
    JobsDirOpt,
    KubeconfigOpt,
    NamespaceOpt,
    OutputFormat,
    OutputOpt,
    cli_errors,
    kube_settings,
)
from sqlctl.paths import RepoPaths, resolve_paths

if TYPE_CHECKING:
    from sqlctl.values import Values

app = typer.Typer(no_args_is_help=True)

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registry model (see `sqlctl models`), or 'all' for every registry model but tiny."),
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
    typer.Option("--set", metavar="KEY=VALUE", help="Helm --set key=value, applied last (repeatable)."),
]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Use this run id; submitting an existing one creates nothing new."),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Render and print the manifests; create nothing.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until the run finishes; exit non-zero if it failed.")]
DetachOpt = Annotated[bool, typer.Option("--detach", "-d", help="Do not follow the logs after submitting.")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Run as a local process (no cluster), e.g. --model tiny.")]
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


@dataclass
class Planned:
    """One model's submission: its run id and rendered manifests."""

    model: str
    run_id: str
    manifests: list[dict]


def _models(paths: RepoPaths, task: str, model: str) -> list[str]:
    available = paths.job_models(task)
    if model == "all":
        from sqlctl.registry import cluster_models, load_models

        chosen = cluster_models(load_models(), available)
        if not chosen:
            raise SqlctlError(f"no 7B model has a jobs/{task}/ values file", f"Add files under {paths.jobs / task}.")
        return chosen
    if model not in available:
        raise SqlctlError(
            f"unknown model {model!r} for {task}",
            f"Choose one of: {', '.join(available) or '(none found)'}, or 'all' (values files in {paths.jobs / task}).",
        )
    return [model]


def _render(
    paths: RepoPaths,
    task: str,
    model: str,
    run_id: str,
    namespace: str,
    values: list[Path],
    sets: list[str],
    kube_version: str | None,
    extra_set_strings: list[str] | None = None,
) -> list[dict]:
    from sqlctl.render import RenderRequest, render

    for path in values:
        if not path.is_file():
            raise SqlctlError(f"values file {path} does not exist", "Check the path given to --values.")
    request = RenderRequest(
        release=run_id,
        chart=paths.task_chart(task),
        namespace=namespace,
        value_files=[paths.job_values(task, model), *values],
        sets=list(sets),
        set_strings=[f"runId={run_id}", *(extra_set_strings or [])],
        kube_version=kube_version,
    )
    manifests = render(request)
    if not any(m["kind"] == "Job" for m in manifests):
        raise SqlctlError(f"the chart rendered no Job for {model}", "Check runs[] in the values.")
    for manifest in manifests:
        manifest.setdefault("metadata", {})["namespace"] = namespace
    return manifests


def submit_to_cluster(
    kube: Any,
    paths: RepoPaths,
    task: str,
    run_ids: dict[str, str],
    values: list[Path],
    sets: list[str],
    extra_set_strings: dict[str, list[str]] | None = None,
) -> tuple[list[Planned], list[dict[str, str]]]:
    """Render every model's chart, run the preflight checks for all of them, then create the objects.

    Nothing is created unless every check passes for every model. Thread-safe (the bench and the
    parallel-submission test call it from many threads with one shared connection).
    `extra_set_strings` maps a model to sqlctl's own `--set-string` values for it (e.g. --adapter-run's).
    """
    from sqlctl import preflight
    from sqlctl.apply import create_objects
    from sqlctl.registry import load_models

    ns = kube.namespace
    preflight.check_namespace(kube, ns)  # 2. namespace
    plans = [
        Planned(
            name,
            rid,
            _render(
                paths,
                task,
                name,
                rid,
                ns,
                values,
                sets,
                kube.server_version or None,
                (extra_set_strings or {}).get(name),
            ),
        )
        for name, rid in run_ids.items()
    ]
    everything = [m for plan in plans for m in plan.manifests]
    preflight.check_rbac(kube, ns, everything)  # 3. RBAC
    registry = load_models()
    gated = {name: registry[name].gated for name in run_ids if name in registry}
    preflight.check_secrets(kube, ns, everything, gated)  # 4. Secret and keys
    for message in preflight.gpu_warnings(kube, everything):  # 5. warning only
        warn(message)
    report = []
    for plan in plans:
        for applied in create_objects(kube, plan.manifests, plan.run_id, ns):
            report.append({"runId": plan.run_id, "kind": applied.kind, "name": applied.name, "action": applied.action})
    return plans, report


def _next_steps(task: str, run_ids: dict[str, str], namespace: str) -> None:
    ns = f" -n {namespace}"
    print("\nNext:", file=sys.stderr)
    for model, run_id in run_ids.items():
        print(f"  sqlctl logs {run_id} -f{ns}          # follow the logs", file=sys.stderr)
        print(f"  sqlctl status {run_id}{ns}           # Job and pods; why a pod waits", file=sys.stderr)
        print(f"  sqlctl artifacts pull {run_id}{ns}   # adapter, metrics, reports", file=sys.stderr)
        print(f"  sqlctl cancel {run_id}{ns}           # stop and delete it", file=sys.stderr)
        if task == "train":
            print(
                f"  sqlctl submit eval --model {model} --adapter-run {run_id}{ns}   # evaluate it once trained",
                file=sys.stderr,
            )


def _layered(paths: RepoPaths, task: str, model: str, values: list[Path], sets: list[str]) -> Values:
    """The values helm will see for one model (chart defaults, jobs file, --values, --set)."""
    from sqlctl.values import layered_values

    chart_values = paths.task_chart(task) / "values.yaml"
    files = [p for p in (chart_values, paths.job_values(task, model)) if p.is_file()] + values
    return layered_values(files, sets)


def _adapter_sources(
    kube: Any,
    paths: RepoPaths,
    models: list[str],
    values: list[Path],
    sets: list[str],
    adapter_run: str,
) -> dict[str, list[str]]:
    """--adapter-run as `--set-string` values per model; `kube` None (dry run) skips the claim lookup."""
    from sqlctl import adapter_run as ar

    claim_is_users = ar.user_chose_claim(values, sets)
    extra: dict[str, list[str]] = {}
    for name in models:
        entry_models = ar.run_models(_layered(paths, "eval", name, values, sets))
        if kube is None:
            extra[name] = ar.adapter_sets(entry_models, adapter_run)
            continue
        source = ar.resolve_cluster(kube, kube.namespace, adapter_run, entry_models, claim_is_users)
        extra[name] = source.adapter_sets + ([f"storage.existingClaim={source.claim}"] if source.claim else [])
    if kube is None and not claim_is_users:
        warn(
            "--dry-run does not contact the cluster, so the training run's claim is not looked up: "
            "the manifests show the values' storage.existingClaim"
        )
    return extra


def _submit(
    ctx: typer.Context,
    task: str,
    model: str,
    values: list[Path] | None,
    sets: list[str] | None,
    run_id: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    dry_run: bool,
    output: OutputFormat,
    wait: bool,
    follow: bool,
    detach: bool,
    local: bool,
    runs_dir: Path,
    chart_dir: Path | None,
    jobs_dir: Path | None,
    adapter_run: str | None = None,
) -> None:
    from sqlctl.runid import new_run_id, validate_run_id

    values, sets = list(values or []), list(sets or [])
    paths = resolve_paths(chart_dir, jobs_dir)
    models = _models(paths, task, model)
    if run_id and len(models) > 1:
        raise SqlctlError("--run-id names one run but --model all submits several", "Drop --run-id or pick one model.")
    run_ids = {m: validate_run_id(run_id) if run_id else new_run_id(task, m) for m in models}
    if adapter_run is not None:
        from sqlctl.adapter_run import check_user_sets

        validate_run_id(adapter_run)
        check_user_sets(sets)

    if local:
        _submit_local(paths, task, models, run_ids, values, sets, runs_dir, dry_run, output, adapter_run)
        return

    settings = kube_settings(ctx, kubeconfig, context, namespace)
    if dry_run:
        from sqlctl.render import dump_manifests

        ns = settings.namespace or "default"
        extra = _adapter_sources(None, paths, models, values, sets, adapter_run) if adapter_run else {}
        rendered = [
            m
            for name in models
            for m in _render(paths, task, name, run_ids[name], ns, values, sets, None, extra.get(name))
        ]
        print(dump_manifests(rendered, "json" if output == OutputFormat.json else "yaml"), end="")
        return

    from sqlctl.kube import connect

    kube = connect(settings)  # 1. kubeconfig + reachability (clear error otherwise)
    ns = kube.namespace
    cluster_extra: dict[str, list[str]] | None = None
    if adapter_run:
        from sqlctl import preflight

        preflight.check_namespace(kube, ns)  # before looking for the training run in it
        cluster_extra = _adapter_sources(kube, paths, models, values, sets, adapter_run)
    plans, report = submit_to_cluster(kube, paths, task, run_ids, values, sets, cluster_extra)
    if output != OutputFormat.table:
        from sqlctl.output import emit

        emit({"namespace": ns, "runs": list(run_ids.values()), "objects": report}, output)
    else:
        for row in report:
            note = {
                "created": "created",
                "exists": "exists, left alone",
                "shared": "exists (shared), left alone",
            }
            print(f"{row['kind'].lower()}/{row['name']} {note[row['action']]}", file=sys.stderr)
        for plan in plans:
            created = any(r["runId"] == plan.run_id and r["action"] == "created" for r in report)
            verb = "submitted" if created else "already submitted; nothing new created"
            print(f"run {plan.run_id} {verb} (namespace {ns})", file=sys.stderr)

    if detach or len(plans) > 1 or not follow:
        if len(plans) > 1 and not detach:
            print("several runs submitted: not following their logs", file=sys.stderr)
        _next_steps(task, run_ids, ns)
        if wait:
            _wait(kube, ns, [p.run_id for p in plans])
        return
    from sqlctl.commands.logs import follow_run

    try:
        outcome = follow_run(kube, ns, plans[0].run_id)
    finally:  # also on Ctrl-C: the run goes on in the cluster, say how to get back to it
        _next_steps(task, run_ids, ns)
    if outcome != "Succeeded":
        raise typer.Exit(EXIT_FAILURE)


def _wait(kube: object, namespace: str, run_ids: list[str], poll: float = 2.0) -> None:
    """Block until every Job of the runs has finished; exit 1 if one failed."""
    from sqlctl.runs import job_finished, run_jobs

    while True:
        outcomes = [job_finished(j) for rid in run_ids for j in run_jobs(kube, rid, namespace)]  # type: ignore[arg-type]
        if all(outcomes):
            failed = outcomes.count("Failed")
            print(f"finished: {len(outcomes) - failed} succeeded, {failed} failed", file=sys.stderr)
            if failed:
                raise typer.Exit(EXIT_FAILURE)
            return
        time.sleep(poll)


def _submit_local(
    paths: RepoPaths,
    task: str,
    models: list[str],
    run_ids: dict[str, str],
    values: list[Path],
    sets: list[str],
    runs_dir: Path,
    dry_run: bool,
    output: OutputFormat,
    adapter_run: str | None = None,
) -> None:
    from sqlctl import local

    for name in models:
        extra: list[str] = []
        if adapter_run:
            from sqlctl import adapter_run as ar

            entry_models = ar.run_models(_layered(paths, task, name, values, sets))
            ar.check_local(runs_dir, adapter_run, entry_models)
            extra = ar.adapter_sets(entry_models, adapter_run)
        layered = _layered(paths, task, name, values, [*sets, f"runId={run_ids[name]}", *extra])
        planned = local.plan_local(task, layered, run_ids[name], runs_dir)
        if dry_run:
            from sqlctl.output import emit

            emit(
                [
                    {"runId": run_ids[name], "model": p.model, "recipe": str(p.recipe_path), "argv": p.argv}
                    for p in planned
                ],
                OutputFormat.json if output == OutputFormat.json else OutputFormat.yaml,
            )
            continue
        local.write_recipes(layered, planned)
        for run in planned:
            code = local.execute(run)
            if code != 0:
                raise SqlctlError(
                    f"local {task} of {run.model} exited with code {code}",
                    "Read the output above" + ("; exit code 2 means a configuration error." if code == 2 else "."),
                    code=EXIT_CONFIG if code == 2 else EXIT_FAILURE,
                )
            print(f"local run {run_ids[name]} finished: {run.run_dir}", file=sys.stderr)
            if task == "train":
                where = "" if runs_dir == Path("runs") else f" --runs-dir {runs_dir}"
                print(
                    f"Next: sqlctl submit eval --model {run.model} --local --adapter-run {run_ids[name]}{where}",
                    file=sys.stderr,
                )


@cli_errors
def submit_train(
    ctx: typer.Context,
    model: ModelOpt,
    values: ValuesOpt = None,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    wait: WaitOpt = False,
    follow: FollowOpt = True,
    detach: DetachOpt = False,
    local: LocalOpt = False,
    runs_dir: RunsDirOpt = Path("runs"),
    chart_dir: ChartDirOpt = None,
    jobs_dir: JobsDirOpt = None,
) -> None:
    """Submit a training run: render charts/sqlmaster-train with jobs/train/<model>.yaml, check the cluster,
    create the Job(s), follow the logs (-d to detach)."""
    _submit(
        ctx,
        "train",
        model,
        values,
        set_,
        run_id,
        kubeconfig,
        context,
        namespace,
        dry_run,
        output,
        wait,
        follow,
        detach,
        local,
        runs_dir,
        chart_dir,
        jobs_dir,
    )


@cli_errors
def submit_eval(
    ctx: typer.Context,
    model: ModelOpt,
    adapter_run: AdapterRunOpt = None,
    values: ValuesOpt = None,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    wait: WaitOpt = False,
    follow: FollowOpt = True,
    detach: DetachOpt = False,
    local: LocalOpt = False,
    runs_dir: RunsDirOpt = Path("runs"),
    chart_dir: ChartDirOpt = None,
    jobs_dir: JobsDirOpt = None,
) -> None:
    """Submit an evaluation run: render charts/sqlmaster-eval with jobs/eval/<model>.yaml, check the
    cluster, create the Job(s), follow the logs (-d to detach). --adapter-run TRAIN_RUN_ID evaluates
    what that training run trained, on its claim."""
    _submit(
        ctx,
        "eval",
        model,
        values,
        set_,
        run_id,
        kubeconfig,
        context,
        namespace,
        dry_run,
        output,
        wait,
        follow,
        detach,
        local,
        runs_dir,
        chart_dir,
        jobs_dir,
        adapter_run,
    )


app.command("train")(submit_train)
app.command("eval")(submit_eval)
