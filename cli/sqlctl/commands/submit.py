"""`sqlctl submit train|eval`: render the chart with helm, check the cluster, create the run, follow it.

`--local` renders the same chart and runs the rendered command on this machine (sqlctl.local).
`submit train --stage grpo --from SFT_RUN_ID` renders jobs/grpo/<model>.yaml with the train chart, starting
from the SFT run on its claim (`runs[].initFromRunId`; the chart renders `--stage grpo --init-from ...`).
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
FromDbOpt = Annotated[
    str | None,
    typer.Option(
        "--from-db",
        "--db",
        metavar="SOURCE",
        help="Build the run's data in the pod first (sqlmaster data from-db SOURCE, read-only): a database file on "
        "the claim (/data/db/shop.sqlite) or a server URL WITHOUT its password (postgresql://reader@db:5432/shop); "
        "train trains on it, eval evaluates its test split. Sets database.source.",
        show_default=False,
    ),
]
DbSecretOpt = Annotated[
    str | None,
    typer.Option(
        "--db-secret",
        metavar="SECRET",
        help="Existing Secret holding the --from-db server's password under the key 'password' (kubectl create "
        "secret generic NAME --from-file=password=FILE); mounted into the from-db step only. Sets "
        "database.passwordSecret.",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="A sqlmaster data from-db folder on the claim (/data/from-db/shop; with --from-db, where it is built): "
        "train reads train.jsonl, eval test.jsonl. Sets database.dataDir.",
        show_default=False,
    ),
]


def _checked_stage(value: str) -> str:
    if value not in STAGES:
        from sqlctl.options import _fail

        _fail(
            SqlctlError(f"--stage {value!r} is not a stage", "Use --stage sft (default) or --stage grpo --from RUN_ID.")
        )
    return value


STAGES = ("sft", "grpo")
StageOpt = Annotated[
    str,
    typer.Option(
        "--stage",
        metavar="sft|grpo",
        help="sft: supervised fine-tuning from the base model (jobs/train/<model>.yaml). grpo: reinforcement learning "
        "from the finished SFT run named by --from (jobs/grpo/<model>.yaml).",
        callback=_checked_stage,
    ),
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        metavar="SFT_RUN_ID",
        help="--stage grpo: the finished SFT run of the model to start from: sets runs[].initFromRunId and mounts "
        "the run's claim (unless you set storage.existingClaim). With --local: <runs-dir>/<id>/<model>.",
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
    from_db: FromDbOpt = None
    db_secret: DbSecretOpt = None
    data_dir: DataDirOpt = None

    def options(
        self,
        ctx: typer.Context,
        task: str,
        model: str,
        adapter_run: str | None = None,
        stage: str = "sft",
        init_from_run: str | None = None,
    ) -> SubmitOptions:
        """SubmitOptions for one command (cluster flags merged over the root's)."""
        from sqlctl.database import DatabaseFlags, database_sets

        database = database_sets(DatabaseFlags(self.from_db, self.db_secret, self.data_dir), local=self.local)
        user = UserValues(
            tuple(self.values or ()), tuple(self.set_ or ()), tuple(self.recipe_set or ()), tuple(database)
        )
        kube = kube_settings(ctx, self.kubeconfig, self.context, self.namespace)
        return SubmitOptions(task, model, self, user, kube, adapter_run, stage, init_from_run)


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
    stage: str = "sft"  # train: sft or grpo
    init_from_run: str | None = None  # --stage grpo: the SFT run it starts from

    def extras(self, claim: str | None = None) -> Extras:
        """What sqlctl adds to each model's values (the training run's claim once looked up)."""
        return Extras(adapter_run=self.adapter_run, claim=claim, init_from_run=self.init_from_run)


def _models(paths: RepoPaths, task: str, model: str, stage: str = "sft") -> list[str]:
    from sqlctl.paths import values_folder

    available = paths.job_models(task, stage)
    folder = paths.jobs / values_folder(task, stage)
    what = f"{task} --stage {stage}" if stage != "sft" else task
    if model == "all":
        from sqlctl.registry import cluster_models, load_models

        chosen = cluster_models(load_models(), available)
        if not chosen:
            raise SqlctlError(f"no 7B model has a {folder.name}/ values file", f"Add files under {folder}.")
        return chosen
    if model not in available:
        shown = model if len(model) <= 40 else model[:40] + "…"
        raise SqlctlError(
            f"unknown model {shown!r} for {what}",
            f"Choose one of: {', '.join(available) or '(none found)'}, or 'all' (values files in {folder}).",
        )
    return [model]


def _check_stage(opts: SubmitOptions) -> None:
    """--stage and --from go together: a GRPO run starts from one SFT run, an SFT run from the base model."""
    from sqlctl.runid import validate_run_id

    if opts.stage == "grpo" and opts.init_from_run is None:
        raise SqlctlError(
            "--stage grpo needs --from SFT_RUN_ID: the finished SFT run of the model it starts from",
            f"Train one first (sqlctl submit train --model {opts.model}), then pass its run id to --from.",
        )
    if opts.stage != "grpo" and opts.init_from_run is not None:
        raise SqlctlError(
            "--from is for --stage grpo (an SFT run starts from the base model)",
            "Add --stage grpo to continue that run with GRPO, or drop --from.",
        )
    if opts.init_from_run is not None:
        from sqlctl.adapter_run import check_user_sets

        validate_run_id(opts.init_from_run, "--from")
        if opts.model == "all":
            raise SqlctlError("--from names one SFT run but --model all submits several", "Pick one --model.")
        check_user_sets(list(opts.user.sets), "--from")


def _from_db_folder(plan: Planned) -> str | None:
    """The folder the run's from-db initContainer builds (its --output-dir), or None."""
    from sqlctl.manifests import pod_spec

    for manifest in plan.manifests:
        for init in (pod_spec(manifest) or {}).get("initContainers") or []:
            if init.get("name") == "from-db":
                return str(init["command"][-1])
    return None


def _next_steps(task: str, plans: list[Planned], namespace: str, grpo: frozenset[str] = frozenset()) -> None:
    """What to type next; `grpo`: the models a finished SFT run of which can continue with GRPO (jobs/grpo/)."""
    ns = f" -n {namespace}"
    print("\nNext:", file=sys.stderr)
    for plan in plans:
        run_id = plan.run_id
        print(f"  sqlctl logs {run_id} -f{ns}          # follow the logs", file=sys.stderr)
        print(f"  sqlctl status {run_id}{ns}           # Job and pods; why a pod waits", file=sys.stderr)
        print(f"  sqlctl artifacts pull {run_id}{ns}   # adapter, metrics, reports", file=sys.stderr)
        print(f"  sqlctl cancel {run_id}{ns}           # stop and delete it", file=sys.stderr)
        if task == "train":
            data = _from_db_folder(plan)  # the held-out test split of the pairs it trained on
            with_data = f" --data-dir {data}" if data else ""
            print(
                f"  sqlctl submit eval --model {plan.model} --adapter-run {run_id}{with_data}{ns}   "
                "# evaluate it once trained",
                file=sys.stderr,
            )
        if plan.model in grpo and plan.extras.stage == "sft":
            print(
                f"  sqlctl submit train --model {plan.model} --stage grpo --from {run_id}{ns}   # then GRPO from it",
                file=sys.stderr,
            )


def _check(opts: SubmitOptions) -> tuple[RepoPaths, list[str]]:
    """Everything checked before helm or the cluster is asked anything."""
    from sqlctl.runid import validate_run_id
    from sqlctl.submission import check_user_values

    _check_stage(opts)
    paths = resolve_paths(opts.flags.chart_dir, opts.flags.jobs_dir)
    models = _models(paths, opts.task, opts.model, opts.stage)
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
    extras = {m: opts.extras() for m in models}
    plans = plan(paths, opts.task, models, opts.flags.run_id, ns, opts.user, extras)
    if opts.adapter_run or opts.init_from_run:
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
    from sqlctl.submission import adapter_extras, init_from_extras, submit_to_cluster

    kube = connect(opts.kube)  # kubeconfig + reachability (clear error otherwise)
    ns = kube.namespace
    extras: dict[str, Extras] = {}
    if opts.adapter_run:
        preflight.check_namespace(kube, ns)  # before looking for the training run in it
        extras = {m: adapter_extras(kube, paths, opts.task, m, opts.user, opts.adapter_run) for m in models}
    elif opts.init_from_run:
        preflight.check_namespace(kube, ns)
        extras = {m: init_from_extras(kube, paths, m, opts.user, opts.init_from_run) for m in models}
    plans, report = submit_to_cluster(kube, paths, opts.task, models, opts.user, opts.flags.run_id, extras)
    _report(opts, ns, plans, report)
    grpo = frozenset(paths.job_models("train", "grpo")) if opts.task == "train" else frozenset()
    if opts.flags.detach or len(plans) > 1:
        if len(plans) > 1 and not opts.flags.detach:
            print("several runs submitted: not following their logs", file=sys.stderr)
        _next_steps(opts.task, plans, ns, grpo)
        if opts.flags.wait:
            _wait(kube, ns, [p.run_id for p in plans])
        return
    from sqlctl.commands.logs import follow_run

    try:
        outcome = follow_run(kube, ns, plans[0].run_id)
    finally:  # also on Ctrl-C: the run goes on in the cluster, say how to get back to it
        _next_steps(opts.task, plans, ns, grpo)
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

    extras = opts.extras()
    linked = opts.adapter_run or opts.init_from_run
    if linked:
        from sqlctl.adapter_run import check_local

        trained = run_models(paths, opts.task, model, "default", opts.user, extras.stage)
        check_local(opts.flags.runs_dir, linked, trained, for_grpo=opts.init_from_run is not None)
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
def submit_train(
    ctx: typer.Context, model: ModelOpt, flags: SubmitFlags, stage: StageOpt = "sft", from_run: FromOpt = None
) -> None:
    """Submit a training run: render charts/sqlmaster-train with jobs/train/<model>.yaml, check the cluster,
    create the Job(s), follow the logs (-d to detach). --stage grpo --from SFT_RUN_ID continues that finished
    SFT run with GRPO (jobs/grpo/<model>.yaml), on its claim."""
    run_submit(flags.options(ctx, "train", model, stage=stage, init_from_run=from_run))


@app.command("eval")
@cli_errors
@with_submit_flags
def submit_eval(ctx: typer.Context, model: ModelOpt, flags: SubmitFlags, adapter_run: AdapterRunOpt = None) -> None:
    """Submit an evaluation run: render charts/sqlmaster-eval with jobs/eval/<model>.yaml, check the
    cluster, create the Job(s), follow the logs (-d to detach). --adapter-run TRAIN_RUN_ID evaluates
    what that training run trained, on its claim."""
    run_submit(flags.options(ctx, "eval", model, adapter_run))
