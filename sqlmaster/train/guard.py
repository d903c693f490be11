"""Guarding a run directory: a second ``train`` into it must continue the same run, or say why not.

A run directory records who made it (run.json: model, resolved recipe, its hash, data sha256). Before anything
is written, ``plan_run`` compares the new command with it, key by key, using each recipe key's role
(sqlmaster/config.py ``ROLES``):

- ``identity`` keys (data split, prompt, model shape, optimizer settings restored from checkpoints) and the
  model: another value is another run. Refused (exit 2) unless ``--overwrite``, which replaces the old run.
- ``resumable`` keys (max_steps, batch shape, eval/save cadence, ...): allowed with ``--resume-with-changes``,
  which records the change in run.json.
- ``runtime`` keys (threads, tracking, evaluation settings): always allowed.

A completed run asked for again with the same recipe is left as it is ("nothing to do"). ``--overwrite`` with
the *same* recipe still resumes: a retried pod must never throw its own checkpoints away.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmaster import boundedjson
from sqlmaster.config import Recipe, recipe_keys
from sqlmaster.errors import ConfigError
from sqlmaster.rundir import (
    ADAPTER_DIR,
    BASE_DIR,
    CHECKPOINTS_DIR,
    EVAL_DIR,
    LOGS_DIR,
    MERGED_DIR,
    METRICS_FILE,
    MODEL_DIR,
    RUN_INFO_FILE,
    RunDir,
)

log = logging.getLogger("sqlmaster.train")

# What --overwrite removes: the files a run writes. Anything else in the directory (recipe.yaml that sqlctl
# --local wrote, a user's notes) is left alone.
RUN_OUTPUTS = (
    RUN_INFO_FILE,
    METRICS_FILE,
    ADAPTER_DIR,
    MODEL_DIR,
    MERGED_DIR,
    BASE_DIR,
    CHECKPOINTS_DIR,
    EVAL_DIR,
    LOGS_DIR,
)


@dataclass(frozen=True)
class TrainOptions:
    """How ``sqlmaster train`` may treat a directory that already holds a run."""

    overwrite: bool = False  # replace a run made with another model, recipe or data
    resume_with_changes: bool = False  # continue a run with changed resumable keys
    recipe_source: str | None = None  # where the recipe came from (recorded in run.json)
    stage: str = "sft"  # "sft" (supervised, from the base) or "grpo" (reinforcement from a finished SFT run)
    init_from: str | None = None  # grpo: the SFT run directory it starts from


@dataclass(frozen=True)
class Change:
    key: str  # "training.max_steps", or "model" for the base model
    old: Any
    new: Any
    role: str  # identity | resumable | runtime

    def text(self) -> str:
        return f"{self.key} {_short(self.old)} -> {_short(self.new)}"


@dataclass
class Plan:
    """What training does with the run directory."""

    action: str  # "fresh" | "resume" | "completed" (nothing to do) | "overwrite"
    previous: dict[str, Any] = field(default_factory=dict)  # the existing run.json ({} if none)
    changes: list[Change] = field(default_factory=list)  # resumable changes accepted with --resume-with-changes
    remove: list[Path] = field(default_factory=list)  # what --overwrite removes


def recipe_hash(model_name: str, recipe: Recipe, stage: str = "sft") -> str:
    """sha256 of what defines a run: the model and every identity and resumable key (runtime keys excluded); a GRPO
    run's stage and ``grpo`` section too (an SFT run's hash leaves them out, as it did before the stage existed)."""
    values = recipe.to_dict()
    defining = {
        spec.key: values[spec.section][spec.name]
        for spec in recipe_keys()
        if spec.role in ("identity", "resumable") and (spec.section != "grpo" or stage == "grpo")
    }
    staged = {"stage": stage} if stage != "sft" else {}
    text = json.dumps({"model": model_name, **staged, **defining}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_previous(run: RunDir) -> dict[str, Any]:
    """The run.json of an earlier run in this directory, {} if there is none."""
    path = run.run_info
    if not path.exists():
        return {}
    try:
        info = boundedjson.load_file(path, "run record")
    except (OSError, ConfigError) as exc:
        raise ConfigError(
            f"{path} exists but cannot be read as a run record ({str(exc).split('. ')[0]}). Use a new "
            "--output-dir, or --overwrite to replace what is there"
        ) from None
    if not isinstance(info, dict):
        raise ConfigError(f"{path} is not a run record. Use a new --output-dir, or --overwrite to replace it")
    check_record(info, path)
    return info


# The fields a later command reads from run.json, and their JSON types: an edited or damaged record must be one
# clear error here, not an AttributeError deep in a comparison.
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "base_model": (dict,),
    "recipe": (dict,),
    "data": (dict,),
    "recipe_changes": (list,),
    "resumed_from": (list,),
    "started": (str,),
    "finished": (str,),
    "stage": (str,),
    "init_from": (dict,),
    "adapter_record": (dict,),
}


def check_record(
    info: dict[str, Any],
    path: Path,
    fix: str = "Restore the file, use a new --output-dir, or --overwrite to replace the run",
) -> None:
    """Refuse a run.json whose fields a later command reads have the wrong JSON type (exit 2, one line)."""
    found = [(key, info[key], kinds) for key, kinds in RECORD_TYPES.items() if info.get(key) is not None]
    recipe = info.get("recipe")
    if isinstance(recipe, dict):
        found += [(f"recipe.{section}", values, (dict,)) for section, values in recipe.items()]
    data = info.get("data")
    if isinstance(data, dict) and data.get("sha256") is not None:
        found.append(("data.sha256", data["sha256"], (dict,)))
    base = info.get("base_model")
    if isinstance(base, dict) and base.get("name") is not None:
        found.append(("base_model.name", base["name"], (str,)))
    for key, value, kinds in found:
        if not isinstance(value, kinds):
            raise ConfigError(
                f"{path} is damaged: {key} is {_json_type(value)}, not {_json_type(kinds[0]())} (was it edited?). "
                f"Nothing was changed. {fix}"
            )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    kinds = {str: "a string", dict: "an object", list: "a list"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "null")


def recipe_changes(
    previous: dict[str, Any], model_name: str, recipe: Recipe, options: TrainOptions | None = None
) -> list[Change]:
    """Every key whose value differs from the earlier run's (keys the earlier version did not know are skipped).

    The stage and the run a GRPO run starts from define the run too; an SFT run ignores the ``grpo`` section."""
    options = options or TrainOptions()
    changes = []
    recorded_model = (previous.get("base_model") or {}).get("name")
    if recorded_model and recorded_model != model_name:
        changes.append(Change("model", recorded_model, model_name, "identity"))
    if previous.get("stage", "sft") != options.stage:
        changes.append(Change("stage", previous.get("stage", "sft"), options.stage, "identity"))
    recorded_init = (previous.get("init_from") or {}).get("path")
    if (
        options.stage == "grpo"
        and recorded_init
        and options.init_from
        and not _same_path(recorded_init, options.init_from)
    ):
        changes.append(Change("init_from", recorded_init, str(options.init_from), "identity"))
    old = previous.get("recipe") or {}
    new = recipe.to_dict()
    for spec in recipe_keys():
        if spec.section == "grpo" and options.stage != "grpo":
            continue
        section = old.get(spec.section)
        if isinstance(section, dict) and spec.name in section:
            before, after = section[spec.name], new[spec.section][spec.name]
            if before != after:
                changes.append(Change(spec.key, before, after, spec.role))
    return changes


def plan_run(run: RunDir, model_name: str, recipe: Recipe, options: TrainOptions, latest_step: int | None) -> Plan:
    """Decide what to do with ``run``; raises ConfigError (exit 2, nothing written) when the command must not run."""
    previous = read_previous(run)
    if not previous:
        _check_max_steps(run, recipe, latest_step)
        return Plan("resume" if latest_step is not None else "fresh")
    changes = [c for c in recipe_changes(previous, model_name, recipe, options) if c.role != "runtime"]
    status = previous.get("status")
    if status == "running":  # this command owns the folder (sqlmaster/ownership.py), so its writer is gone
        log.warning(
            "%s says running, but no process holds %s: the process that ran it died without recording how it "
            "ended (SIGKILL, out of memory, a lost node). Continuing from the latest complete checkpoint",
            run.run_info,
            run.path,
        )
    if options.overwrite and (changes or status == "diverged"):
        existing = [run.path / name for name in RUN_OUTPUTS if (run.path / name).exists()]
        return Plan("overwrite", previous, changes, existing)
    identity = [c for c in changes if c.role == "identity"]
    resumable = [c for c in changes if c.role == "resumable"]
    if identity:
        raise ConfigError(
            f"{run.path} holds a {status or 'earlier'} run that another recipe made: "
            f"{'; '.join(c.text() for c in changes)}. {_keys(identity)} define{'s' * (len(identity) == 1)} the run "
            "(model, data split, prompt, weights' shape or optimizer state), so it cannot be continued. Nothing was "
            "changed. Use a new --output-dir, or --overwrite to replace that run"
        )
    _check_max_steps(run, recipe, latest_step)
    if resumable and not options.resume_with_changes:
        raise ConfigError(
            f"{run.path} holds a {status or 'earlier'} run with other settings: "
            f"{'; '.join(c.text() for c in resumable)}. "
            "Nothing was changed. Pass --resume-with-changes to continue it with the new values, use a new "
            "--output-dir, or --overwrite to replace that run"
        )
    if status == "diverged" and not resumable:
        raise ConfigError(
            f"{run.path} holds a run that diverged; the same recipe would diverge again. Nothing was changed. "
            "Lower training.learning_rate and train into a new --output-dir, or --overwrite to replace that run"
        )
    if status == "completed" and not resumable:
        return Plan("completed", previous)
    return Plan("resume", previous, resumable)


def _check_max_steps(run: RunDir, recipe: Recipe, latest_step: int | None) -> None:
    """Resuming past max_steps would train on and overwrite the outputs ("step 6/3"): refuse it.

    A time-budget run has no step limit (its budget stops it; max_steps is not used), so it is never refused here.
    """
    if recipe.training.time_budget_minutes is not None:
        return
    if latest_step is not None and recipe.training.max_steps < latest_step:
        raise ConfigError(
            f"training.max_steps={recipe.training.max_steps} is below the step of the latest checkpoint in "
            f"{run.path} ({latest_step}). Nothing was changed. Set --max-steps to at least {latest_step}, or use "
            "a new --output-dir"
        )


def _keys(changes: list[Change]) -> str:
    return ", ".join(c.key for c in changes)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


# --- the GRPO stage's starting point -----------------------------------------------------------------------------

# What a GRPO run takes from the SFT run it starts from: the data split (a test row must stay unseen), the prompt
# (the SFT model answers that prompt) and the model section (the weights' shape). --set can still change a key.
INHERITED_SECTIONS = ("data", "prompt", "model")


def check_init_from(init_from: Path | None, model_name: str, stage: str) -> dict[str, Any]:
    """The run.json of the finished SFT run a GRPO run starts from ({} for an SFT run); refuses anything else
    (exit 2, one line, nothing written)."""
    if stage != "grpo":
        if init_from is not None:
            raise ConfigError("--init-from is for --stage grpo (an SFT run starts from the base model). Drop it")
        return {}
    if init_from is None:
        raise ConfigError(
            "--stage grpo needs --init-from RUN_DIR: the finished SFT run of this model it starts from "
            f"(e.g. sqlmaster train --model {model_name} --output-dir runs/sft first)"
        )
    run = RunDir(init_from)
    if not run.run_info.is_file():
        what = "does not exist" if not run.path.exists() else f"holds no {RUN_INFO_FILE}"
        raise ConfigError(f"--init-from {init_from} {what}: pass the directory of a finished `sqlmaster train` run")
    info = read_previous(run)
    fix = "Pass the directory of a finished SFT run of this model"
    if info.get("status") != "completed":
        raise ConfigError(
            f"--init-from {init_from} holds a run that is {info.get('status') or 'unfinished'}, not completed. "
            "Finish it first (run its command again), or pass the directory of a finished SFT run of this model"
        )
    if info.get("stage", "sft") != "sft":
        raise ConfigError(f"--init-from {init_from} holds a {info.get('stage')} run, not an SFT run. {fix}")
    trained = (info.get("base_model") or {}).get("name")
    if trained != model_name:
        raise ConfigError(f"--init-from {init_from} holds a run of {trained}, not of {model_name}. {fix}")
    weights = run.model if info.get("mode") == "full" else run.adapter
    if not weights.is_dir():
        raise ConfigError(f"--init-from {init_from} has no {weights.name}/ (its weights are gone). {fix}")
    if info.get("mode") != "full":
        from sqlmaster.models.adapters import check_adapter, recorded_adapter

        check_adapter(weights, recorded_adapter(info), f"--init-from {init_from}")
    return info


def inherited_overrides(info: dict[str, Any]) -> list[str]:
    """``--set`` items that give a GRPO run the SFT run's data, prompt and model sections (``INHERITED_SECTIONS``)."""
    from sqlmaster.config import yaml_value

    recipe = info.get("recipe") or {}
    known = {spec.key for spec in recipe_keys()}
    return [
        f"{section}.{key}={yaml_value(value)}"
        for section in INHERITED_SECTIONS
        for key, value in (recipe.get(section) or {}).items()
        if f"{section}.{key}" in known
    ]
