"""Render and create submissions. Helm renders everything: the cluster objects and, for `--local`, the
command, recipe and environment that run on this machine (sqlctl.local) come from the same `helm template`.

Values reach helm in helm's own order, so the layering is helm's: the chart's values.yaml, then
`-f jobs/<task>/<model>.yaml`, then (for --adapter-run) the training run's claim, then each user `--values`
file, then each `--set`, then `--recipe-set` (as `--set-json` on every runs[] entry) and `--from-db`, `--db-secret`,
`--data-dir` (as `--set-json database.*`, sqlctl.database), then sqlctl's own
`--set-string runId=...` (and `runs[i].adapterRunId=...`, or for `--stage grpo --from RUN_ID`
`runs[i].stage=grpo` and `runs[i].initFromRunId=RUN_ID` over jobs/grpo/<model>.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlctl.errors import SqlctlError, warn
from sqlctl.paths import RepoPaths
from sqlmaster import exitcodes

if TYPE_CHECKING:
    from sqlctl.render import RenderRequest

Manifest = dict[str, Any]
_RETRIES = 5  # fresh ids tried when a generated id is taken (32 random bits: a clash is ~1e-5 per 200/s)


@dataclass(frozen=True)
class UserValues:
    """The values the user gave, passed to helm unchanged."""

    files: tuple[Path, ...] = ()
    sets: tuple[str, ...] = ()
    recipe_sets: tuple[str, ...] = ()  # sqlmaster's section.key=value, for every run
    database: tuple[str, ...] = ()  # --from-db/--db-secret/--data-dir as --set-json database.*=JSON (sqlctl.database)


@dataclass(frozen=True)
class Extras:
    """What sqlctl adds to one model's values for --adapter-run (eval) or --stage grpo --from (train)."""

    adapter_run: str | None = None
    claim: str | None = None  # the training run's claim, layered below the user's files (theirs win)
    init_from_run: str | None = None  # the SFT run a GRPO run starts from (on the same claim)

    @property
    def stage(self) -> str:
        """The training stage: grpo when the run starts from an SFT run (its values are jobs/grpo/<model>.yaml)."""
        return "grpo" if self.init_from_run else "sft"


@dataclass
class Planned:
    """One model's submission: its run id and rendered manifests."""

    model: str
    run_id: str
    manifests: list[Manifest]
    generated: bool = False  # sqlctl chose the id: a clash with an existing run gets a fresh one
    extras: Extras = field(default_factory=Extras)
    applied: list[Any] = field(default_factory=list)  # sqlctl.apply.Applied, once created


def check_user_values(paths: RepoPaths, task: str, user: UserValues) -> None:
    """Checks that need no helm: files exist, `--set` is not recipe syntax, `--recipe-set` parses."""
    from sqlctl.recipeset import check_chart_sets, recipe_set_json

    paths.task_chart(task)
    for path in user.files:
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise SqlctlError(f"values file {path} {what}", "Check the path given to --values.")
    check_chart_sets(list(user.sets))
    recipe_set_json(list(user.recipe_sets), 1)


def _request(
    paths: RepoPaths, task: str, model: str, run_id: str, namespace: str, user: UserValues, extras: Extras
) -> RenderRequest:
    """helm's arguments for one model's release (helm's order: files, --set, --set-json, --set-string)."""
    from sqlctl.recipeset import recipe_set_json
    from sqlctl.render import RenderRequest

    linked = extras.adapter_run or extras.init_from_run
    runs = len(run_models(paths, task, model, namespace, user, extras.stage)) if (user.recipe_sets or linked) else 0
    claim: list[Path | dict[str, Any]] = [{"storage": {"existingClaim": extras.claim}}] if extras.claim else []
    adapter = [f"runs[{i}].adapterRunId={extras.adapter_run}" for i in range(runs)] if extras.adapter_run else []
    init = [
        item
        for i in range(runs if extras.init_from_run else 0)
        for item in (f"runs[{i}].stage=grpo", f"runs[{i}].initFromRunId={extras.init_from_run}")
    ]
    return RenderRequest(
        release=run_id,
        chart=paths.task_chart(task),
        namespace=namespace,
        value_files=[paths.job_values(task, model, extras.stage), *claim, *user.files],
        sets=list(user.sets),
        set_json=[*recipe_set_json(list(user.recipe_sets), runs), *user.database],
        set_strings=[f"runId={run_id}", *adapter, *init],
    )


def render_model(
    paths: RepoPaths,
    task: str,
    model: str,
    run_id: str,
    namespace: str,
    user: UserValues,
    extras: Extras | None = None,
    kube_version: str | None = None,
) -> list[Manifest]:
    """`helm template` of one model's release; the chart's schema and validateValues check every value."""
    from sqlctl.render import render

    request = _request(paths, task, model, run_id, namespace, user, extras or Extras())
    request.kube_version = kube_version
    manifests = render(request)
    if not any(m["kind"] == "Job" for m in manifests):
        raise SqlctlError(f"the chart rendered no Job for {model}", "Check runs[] in the values.")
    for manifest in manifests:
        manifest.setdefault("metadata", {})["namespace"] = namespace
    return manifests


def run_models(
    paths: RepoPaths, task: str, model: str, namespace: str, user: UserValues, stage: str = "sft"
) -> list[str]:
    """The model of every runs[] entry, in order, as helm renders the user's values (one Job per entry)."""
    from sqlctl.manifests import LABEL_MODEL, labels
    from sqlctl.render import RenderRequest, render

    request = RenderRequest(
        release="sqlctl-discovery",
        chart=paths.task_chart(task),
        namespace=namespace,
        value_files=[paths.job_values(task, model, stage), *user.files],
        sets=list(user.sets),
        set_strings=["runId=sqlctl-discovery"],
    )
    models = [labels(m).get(LABEL_MODEL, "") for m in render(request) if m["kind"] == "Job"]
    if not models:
        raise SqlctlError(f"the values for {model} define no runs[] entry", "Set runs[].model in the values.")
    return models


def adapter_extras(kube: Any, paths: RepoPaths, task: str, model: str, user: UserValues, adapter_run: str) -> Extras:
    """--adapter-run on the cluster: check the training run and find its claim (nothing is created)."""
    from sqlctl.adapter_run import training_claim

    models = run_models(paths, task, model, kube.namespace, user)
    return Extras(adapter_run, training_claim(kube, kube.namespace, adapter_run, models))


def init_from_extras(kube: Any, paths: RepoPaths, model: str, user: UserValues, sft_run: str) -> Extras:
    """--stage grpo --from on the cluster: check the SFT run (finished, not itself GRPO) and find its claim."""
    from sqlctl.adapter_run import training_claim

    models = run_models(paths, "train", model, kube.namespace, user, "grpo")
    claim = training_claim(kube, kube.namespace, sft_run, models, for_grpo=True)
    return Extras(claim=claim, init_from_run=sft_run)


def plan(
    paths: RepoPaths,
    task: str,
    models: list[str],
    run_id: str | None,
    namespace: str,
    user: UserValues,
    extras: dict[str, Extras] | None = None,
    kube_version: str | None = None,
) -> list[Planned]:
    """Render every model's release; ids are generated unless the user gave one (single model)."""
    from sqlctl.runid import new_run_id

    plans = []
    for name in models:
        rid = run_id or new_run_id(task, name)
        found = (extras or {}).get(name, Extras())
        manifests = render_model(paths, task, name, rid, namespace, user, found, kube_version)
        plans.append(Planned(name, rid, manifests, generated=run_id is None, extras=found))
    return plans


def submit_to_cluster(
    kube: Any,
    paths: RepoPaths,
    task: str,
    models: list[str],
    user: UserValues,
    run_id: str | None = None,
    extras: dict[str, Extras] | None = None,
) -> tuple[list[Planned], list[dict[str, str]]]:
    """Render every model's chart, run the preflight checks for all of them, then create the objects.

    Nothing is created unless every check passes for every model. A generated id that an existing run
    already holds is replaced by a fresh one (never reported as "exists"); an id the user gave keeps
    `submit` idempotent. Thread-safe (the bench and the parallel-submission test call it from many
    threads with one shared connection).
    """
    from sqlctl import preflight
    from sqlctl.registry import load_models

    ns = kube.namespace
    preflight.check_namespace(kube, ns)
    plans = plan(paths, task, models, run_id, ns, user, extras, kube.server_version or None)
    everything = [m for p in plans for m in p.manifests]
    preflight.check_rbac(kube, ns, everything)
    registry = load_models()
    gated = {name: registry[name].gated for name in models if name in registry}
    preflight.check_secrets(kube, ns, everything, gated)
    for message in preflight.gpu_warnings(kube, everything):  # a warning only
        warn(message)
    plans = [_create(kube, paths, task, user, planned) for planned in plans]
    report = [{"runId": p.run_id, "kind": a.kind, "name": a.name, "action": a.action} for p in plans for a in p.applied]
    return plans, report


def _create(kube: Any, paths: RepoPaths, task: str, user: UserValues, planned: Planned) -> Planned:
    """Create one plan's objects; a generated id that is taken is retried with a fresh id."""
    from sqlctl.apply import RunIdTaken, create_objects
    from sqlctl.runid import new_run_id

    for _ in range(_RETRIES):
        try:
            planned.applied = create_objects(
                kube, planned.manifests, planned.run_id, kube.namespace, fresh=planned.generated
            )
            return planned
        except RunIdTaken:
            rid = new_run_id(task, planned.model)
            manifests = render_model(
                paths, task, planned.model, rid, kube.namespace, user, planned.extras, kube.server_version or None
            )
            planned = Planned(planned.model, rid, manifests, generated=True, extras=planned.extras)
    raise SqlctlError(
        f"{_RETRIES} generated run ids for {planned.model} were all taken",
        "Retry, or pass --run-id yourself.",
        code=exitcodes.FAILURE,
    )
