"""`sqlctl submit eval --adapter-run TRAIN_RUN_ID`: evaluate what a training run trained.

An evaluation reads the adapter from `/data/runs/<adapterRunId>/<model>` on the claim named by
`storage.existingClaim`. Each training release creates its own claim (`<release>-data`), so pointing an
evaluation at a training run needs both values; users should not have to look the claim up (sqlctl.submission
layers it below the user's own values files, so a claim the user names wins). Here sqlctl
finds the training run's Jobs by their `sqlmaster.io/run-id` label, checks that the run is a training run
that trained the models to evaluate and has not failed, and reads the claim its `data` volume mounts.
For `--local` the training run is the folder `<runs-dir>/<id>/<model>` that `sqlmaster train` wrote.

`sqlctl submit train --stage grpo --from SFT_RUN_ID` reads its starting point the same way
(`/data/runs/<initFromRunId>/<model>` on the SFT run's claim), with two checks more: the run must have finished
(the workload refuses an unfinished one, which would fail the Job at once) and must not be a GRPO run itself.

Everything here runs before anything is created: a bad `--adapter-run` stops the submission.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlctl.errors import SqlctlError, warn
from sqlctl.kube import Kube
from sqlctl.manifests import LABEL_MODEL, LABEL_RUN_ID, LABEL_TASK, claim_names, labels, name_of, pod_spec
from sqlmaster import boundedjson
from sqlmaster.rundir import RUN_INFO_FILE, RunDir

# Keys the user may set that --adapter-run (or --from) also sets (or looks up).
_ADAPTER_KEY = re.compile(r"^runs\[\d+\]\.adapterRunId$")
_INIT_KEY = re.compile(r"^runs\[\d+\]\.(initFromRunId|stage)$")
LABEL_STAGE = "sqlmaster.io/stage"  # on a GRPO run's objects only (charts/sqlmaster-lib/templates/_helpers.tpl)


def check_user_sets(sets: list[str], flag: str = "--adapter-run") -> None:
    """--adapter-run and a hand-written `--set runs[N].adapterRunId=...` contradict each other; so do --from and
    `--set runs[N].initFromRunId=...` (or `runs[N].stage=...`)."""
    from sqlctl.recipeset import set_assignments

    key = _ADAPTER_KEY if flag == "--adapter-run" else _INIT_KEY
    for assignment in sets:
        for part in set_assignments(assignment):
            if key.match(part.partition("=")[0].strip()):
                raise SqlctlError(
                    f"{flag} and --set {part} both choose the training run",
                    "Give the training run once: drop the --set.",
                )


def _trained_models(jobs: list[dict[str, Any]]) -> list[str]:
    return sorted({labels(j).get(LABEL_MODEL, "") for j in jobs} - {""})


def training_claim(kube: Kube, namespace: str, train_run_id: str, models: list[str], for_grpo: bool = False) -> str:
    """The claim holding `train_run_id`'s outputs, after checking that the run can be evaluated for `models`
    (`for_grpo`: that a GRPO run of `models` can start from it).

    Errors (nothing is created): no such run; not a training run; it did not train one of `models`; it
    failed. A run that has not finished yet only warns: its adapter may still appear by the time the
    evaluation starts, or the evaluation fails with the workload's own message. For GRPO an unfinished run and
    a GRPO run are errors too (`sqlmaster train --stage grpo` refuses both, exit 2, which fails the Job at once).
    """
    flag = "--from" if for_grpo else "--adapter-run"
    from sqlctl.runs import job_finished

    jobs = kube.list("batch/v1", "Job", namespace, label_selector=f"{LABEL_RUN_ID}={train_run_id}")
    if not jobs:
        raise SqlctlError(
            f"no training run {train_run_id!r} in namespace {namespace!r}",
            f"Check the id with: sqlctl list -n {namespace} (runs of task train), or pass -n NAMESPACE.",
        )
    tasks = sorted({labels(j).get(LABEL_TASK, "") for j in jobs})
    if tasks != ["train"]:
        raise SqlctlError(
            f"run {train_run_id!r} is not a training run (its task is {', '.join(t or 'unlabelled' for t in tasks)})",
            f"Pass the run id of a `sqlctl submit train` run to {flag}.",
        )
    trained = _trained_models(jobs)
    missing = [m for m in models if m not in trained]
    if missing:
        raise SqlctlError(
            f"training run {train_run_id!r} did not train {', '.join(missing)}; it trained "
            f"{', '.join(trained) or 'no labelled model'}",
            f"Evaluate one of those (--model {trained[0] if trained else 'MODEL'}) "
            "or pass the training run of the model you want.",
        )
    mine = [j for j in jobs if labels(j).get(LABEL_MODEL) in models]
    outcomes = {name_of(j): job_finished(j) for j in mine}
    failed = sorted(name for name, outcome in outcomes.items() if outcome == "Failed")
    if failed:
        raise SqlctlError(
            f"training run {train_run_id!r} failed (Job {', '.join(failed)}): it left no adapter to evaluate",
            f"See why with: sqlctl status {train_run_id} -n {namespace}; then train again.",
        )
    if for_grpo:
        _check_grpo_start(train_run_id, namespace, mine, outcomes)
    if any(outcome is None for outcome in outcomes.values()):
        warn(
            f"training run {train_run_id} has not finished yet; the evaluation reads its adapter when it "
            f"starts (follow the training with: sqlctl logs {train_run_id} -f -n {namespace})"
        )
    claims = {name_of(j): next(iter(claim_names(pod_spec(j) or {})), None) for j in mine}
    found = sorted({c for c in claims.values() if c})
    if len(found) != 1:
        raise SqlctlError(
            f"cannot tell which claim holds training run {train_run_id!r} (its Jobs mount "
            f"{', '.join(found) or 'no claim'} at /data)",
            "Pass --set storage.existingClaim=CLAIM yourself.",
        )
    return found[0]


def _check_grpo_start(run_id: str, namespace: str, jobs: list[dict[str, Any]], outcomes: dict[str, str | None]) -> None:
    """A GRPO run starts from a finished SFT run: `sqlmaster train --stage grpo` refuses a GRPO run or an unfinished
    one with exit 2, which would fail the Job at once; say so before anything is created."""
    if any(labels(j).get(LABEL_STAGE) == "grpo" for j in jobs):
        raise SqlctlError(
            f"run {run_id!r} is a GRPO run: GRPO starts from a finished SFT run",
            "Pass the id of the SFT run it started from (sqlctl status shows its sqlmaster.io/init-from label).",
        )
    if any(outcome is None for outcome in outcomes.values()):
        raise SqlctlError(
            f"SFT run {run_id!r} has not finished yet: GRPO starts from a completed run",
            f"Wait for it (sqlctl logs {run_id} -f -n {namespace}), then submit again.",
        )


def check_local(runs_dir: Path, train_run_id: str, models: list[str], for_grpo: bool = False) -> None:
    """--adapter-run (or --from) for --local: `<runs_dir>/<id>/<model>` must be a training run directory; for
    GRPO a completed one (sqlmaster's guard checks the rest: an SFT run of the same model with its weights)."""
    root = runs_dir / train_run_id
    if not root.is_dir():
        raise SqlctlError(
            f"no local training run {train_run_id!r} in {runs_dir}",
            "Train it first (sqlctl submit train --local ...) or pass the --runs-dir it wrote to.",
        )
    trained = sorted(p.name for p in root.iterdir() if RunDir(p).is_run())
    for model in models:
        run_dir = RunDir(root / model)
        if model not in trained:
            what = (
                f"local run {train_run_id!r} is not a training run ({run_dir.path} holds no {RUN_INFO_FILE})"
                if run_dir.path.is_dir()
                else f"local training run {train_run_id!r} did not train {model}; it trained "
                f"{', '.join(trained) or 'nothing yet'}"
            )
            raise SqlctlError(what, "Pass the id of a `sqlctl submit train --local` run of this model.")
        try:
            status = boundedjson.load_file(run_dir.run_info, "run record").get("status")
        except (OSError, ValueError, AttributeError):
            status = None
        if status != "completed" and for_grpo:
            raise SqlctlError(
                f"local SFT run {run_dir.path} has not completed (status {status or 'unknown'}): GRPO starts from a "
                "completed run",
                "Finish it first (submit its training again with the same --run-id), then submit again.",
            )
        if status != "completed":
            warn(f"local training run {run_dir.path} has not completed (status {status or 'unknown'})")
