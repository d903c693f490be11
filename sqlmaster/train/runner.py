"""``sqlmaster train``: one fine-tuning run from a model name, an output directory and a resolved recipe.

The same entry point runs on a laptop CPU, in a one-GPU pod and under ``torchrun`` (DDP): every rank trains;
only rank 0 writes run.json, metrics.json and the saved weights. Restarting with the same output directory
resumes from the latest *complete* checkpoint, which is what makes a preempted Kubernetes pod safe to retry.

Order of work, so that a mistake costs nothing and loses nothing:

1. checks that need no data or weights (tokens, scheduler name, the run directory's guard: sqlmaster/train/guard.py)
2. the data (a bad file is exit 2 here) and the check that it is the data the directory's run trained on
3. only then anything is written: the directory, --overwrite's removals, run.json "running"
4. training, inside ``recorded_status``: run.json ends completed, diverged, interrupted or failed, never running
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmaster.atomic import atomic_dir, write_json, write_text
from sqlmaster.config import Recipe
from sqlmaster.data import Example, Splits
from sqlmaster.errors import ConfigError, Interrupted, TransientError
from sqlmaster.logs import setup_logging
from sqlmaster.models.loading import hf_token, load_base_model, load_tokenizer, offline_weights
from sqlmaster.models.offline import fetched_source
from sqlmaster.models.registry import ModelSpec, resolve_model
from sqlmaster.rundir import BASE_DIR, COMPLETE_MARKER, RunDir
from sqlmaster.train import distributed, launch
from sqlmaster.train.guard import Plan, TrainOptions, plan_run, recipe_hash
from sqlmaster.train.outputs import git_commit, now, package_versions, save_without_hub_lookup
from sqlmaster.train.status import COMPLETED, RUNNING, recorded_status, signals_interrupt

log = logging.getLogger("sqlmaster.train")


@dataclass
class Job:
    """What one ``sqlmaster train`` works on; passed to the steps below instead of long parameter lists."""

    spec: ModelSpec
    recipe: Recipe
    run: RunDir
    plan: Plan
    options: TrainOptions
    device: str = "cpu"
    run_id: str = ""
    resume_from: Path | None = None  # the newest checkpoint training can resume from (checked: pick_resume)
    unusable: list[tuple[Path, str]] = field(default_factory=list)  # newer ones it cannot, and why
    init_info: dict[str, Any] = field(default_factory=dict)  # grpo: the run.json of the SFT run it starts from

    @property
    def grpo(self) -> bool:
        return self.options.stage == "grpo"


@dataclass
class Data:
    splits: Any  # sqlmaster.data.split.Splits
    train_rows: list[dict[str, str]]
    eval_rows: list[dict[str, str]]


def run_training(model: str, output_dir: Path, recipe: Recipe, options: TrainOptions | None = None) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` into ``output_dir``; returns the metrics written to metrics.json."""
    setup_logging(distributed.is_main_process())
    if distributed.world_size() > 1:  # a torchrun worker: it must not outlive torchrun (sqlmaster/lifetime.py)
        from sqlmaster.lifetime import die_with_parent

        die_with_parent()
    started = time.monotonic()
    with signals_interrupt(), _owned(output_dir):
        job = _plan(resolve_model(model), RunDir(output_dir), recipe, options or TrainOptions())
        if job.plan.action == "completed":
            return _already_completed(job)
        if (processes := launch.processes_to_start(recipe, job.device)) > 1:
            return launch.train_in_processes(processes, model, output_dir, recipe, options or TrainOptions())
        _set_threads(recipe)
        data = _load_data(job)
        _prepare_directory(job)
        return _train(job, data, started)


def _owned(output_dir: Path) -> Any:
    """The run folder, owned for the whole run by the one process that starts it (rank 0 under torchrun)."""
    from contextlib import nullcontext

    from sqlmaster.ownership import hold

    return hold(output_dir, "sqlmaster train") if distributed.is_main_process() else nullcontext()


def _plan(spec: ModelSpec, run: RunDir, recipe: Recipe, options: TrainOptions) -> Job:
    """Configuration errors found before any data or weights load (exit code 2, nothing written)."""
    from sqlmaster.train.arguments import check_levers
    from sqlmaster.train.checkpoints import pick_resume
    from sqlmaster.train.guard import check_init_from

    init_from = Path(options.init_from) if options.init_from else None
    init_info = check_init_from(init_from, spec.name, options.stage)
    if not spec.is_tiny and recipe.model.init == "pretrained":
        hf_token(spec)  # gated model without HF_TOKEN
        offline_weights(spec)  # hub unreachable and not fetched: the `models fetch` line, before any write
    if recipe.output.push_to_hub and not os.environ.get("HF_TOKEN"):
        raise ConfigError("output.push_to_hub=true needs HF_TOKEN in the environment. Set it, or push later")
    _check_scheduler(recipe.training.lr_scheduler_type)
    if spec.is_tiny and recipe.model.mode == "lora" and not recipe.model.modules_to_save:
        log.warning(
            "tiny with LoRA on a randomly initialised base learns little (measured: 0%% execution accuracy); "
            "use model.mode=full, or model.modules_to_save=[embed_tokens, lm_head]"
        )
    _check_output_dir(run.path)
    device = _device()
    check_levers(recipe, device)  # here, not only in sft_config: before any training process starts
    resume_from, unusable = pick_resume(run.checkpoints)
    plan = plan_run(run, spec.name, recipe, options, _step_of(resume_from))
    if plan.action == "resume":
        _check_resumable(run, resume_from, unusable)
    elif plan.action == "overwrite":  # its checkpoints go with the earlier run
        resume_from, unusable = None, []
    _sync_ranks()  # every rank has read the directory before rank 0 changes it
    job = Job(spec, recipe, run, plan, options, device=device, resume_from=resume_from, unusable=unusable)
    job.init_info = init_info
    return job


def _step_of(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None


def _check_resumable(run: RunDir, resume_from: Path | None, unusable: list[tuple[Path, str]]) -> None:
    """Say which newer checkpoints cannot be resumed from; refuse when none can (exit 2, nothing changed)."""
    reasons = "; ".join(f"{path.name}: {why}" for path, why in unusable)
    if resume_from is None and unusable:
        raise ConfigError(
            f"no checkpoint in {run.checkpoints} can be resumed from ({reasons}). Nothing was changed. Move "
            f"{run.checkpoints} away to train afresh in {run.path}, or use a new --output-dir"
        )
    for path, why in unusable:
        log.warning("%s cannot be resumed from (%s): resuming from %s instead", path, why, resume_from)


def _check_output_dir(path: Path) -> None:
    """Fail now, not after the data loaded, when the output directory cannot be created or written."""
    if path.is_symlink() and not path.exists():
        raise ConfigError(
            f"output directory {path} is a symbolic link that loops or leads nowhere. Remove the link or choose "
            "another --output-dir"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output directory {path} is a file. Choose another --output-dir")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write to output directory {path} ({existing} is not a writable directory). Choose a writable path"
        )


def _check_scheduler(name: str) -> None:
    from transformers.trainer_utils import SchedulerType

    valid = [s.value for s in SchedulerType]
    if name not in valid:
        raise ConfigError(
            f"training.lr_scheduler_type must be one of {', '.join(valid)} (got {name!r}). "
            "Fix it in the recipe file or with --set training.lr_scheduler_type=cosine (the default)"
        )


def _already_completed(job: Job) -> dict[str, Any]:
    """A completed run asked for again with the same recipe: leave it as it is (a retried pod exits 0 at once)."""
    import json

    further = "--set training.time_budget_minutes=M" if job.recipe.training.time_budget_minutes else "--max-steps"
    log.info(
        "%s holds a completed run of this recipe (finished %s): nothing to do. To train further, raise %s and "
        "pass --resume-with-changes; to train again, use a new --output-dir",
        job.run.path,
        job.plan.previous.get("finished", "?"),
        further,
    )
    try:
        return dict(json.loads(job.run.metrics.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _set_threads(recipe: Recipe) -> None:
    if recipe.training.num_threads:
        import torch

        torch.set_num_threads(recipe.training.num_threads)


def _in_dialect(splits: Splits, train: list[Example], dialect: str) -> tuple[list[Example], list[Example]]:
    """Training and validation answers transpiled to ``data.dialect``; rows left out are counted in the split
    stats (``dialect_<cause>_dropped``), which the log line and run.json show."""
    from sqlmaster.data.dialect import to_dialect

    train, dropped = to_dialect(train, dialect)
    validation, dropped_validation = to_dialect(splits.validation, dialect)
    for key, n in dropped.items():
        splits.stats[f"train_{key}"] = n
    for key, n in dropped_validation.items():
        splits.stats[f"validation_{key}"] = n
    return train, validation


def _load_data(job: Job) -> Data:
    """The splits and prompt/completion rows; refuses data that differs from what the directory's run used."""
    from sqlmaster.data.augment import augment
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.prompt import get_template

    recipe = job.recipe
    template = get_template(recipe.prompt.template, recipe.data.dialect)
    splits = build_splits(recipe.data)
    train = augment(splits.train, recipe.data.augment_copies, recipe.data.seed)
    validation = splits.validation
    if recipe.data.dialect != "sqlite" and job.grpo:
        raise ConfigError(
            f"data.dialect {recipe.data.dialect} with GRPO: its reward runs SQLite. Train GRPO with data.dialect "
            "sqlite, or SFT for the dialect"
        )
    if recipe.data.dialect != "sqlite":  # the answers learnt from, in the dialect
        train, validation = _in_dialect(splits, train, recipe.data.dialect)
    if job.grpo:  # prompts only: the model writes the completions, the reward reads answer and context
        from sqlmaster.train.grpo import prompt_rows

        data = Data(splits=splits, train_rows=prompt_rows(train, template), eval_rows=[])
    else:
        data = Data(
            splits=splits,
            train_rows=[ex.to_prompt_completion(template) for ex in train],
            eval_rows=[ex.to_prompt_completion(template) for ex in validation],
        )
    log.info(
        "data %s: %d train%s / %d validation / %d test rows (%s); template %s",
        recipe.data.source,
        len(splits.train),
        f" (+ {len(train) - len(splits.train)} augmented copies)" if len(train) > len(splits.train) else "",
        len(splits.validation),
        len(splits.test),
        ", ".join(f"{k} {v}" for k, v in splits.stats.items()),
        template.name,
    )
    recorded = (job.plan.previous.get("data") or {}).get("sha256")
    if recorded and job.plan.action != "overwrite" and recorded != splits.fingerprints():
        differ = sorted(name for name, digest in splits.fingerprints().items() if recorded.get(name) != digest)
        raise ConfigError(
            f"the data differs from what the run in {job.run.path} trained on (split(s) {', '.join(differ)} have "
            f"another sha256 than its run.json; did {recipe.data.source} change?). Nothing was changed. Use a new "
            "--output-dir, or --overwrite to replace that run"
        )
    return data


def _write_fix(exc: OSError) -> str:
    """The fix for a directory that cannot be written, by the reason."""
    import errno

    fixes = {
        errno.ENOSPC: "Free space on that disk, or choose an --output-dir on another one",
        errno.EROFS: "That file system is read-only: choose an --output-dir on a writable one",
        errno.EACCES: "Give this user write permission there, or choose another --output-dir",
        errno.EPERM: "Give this user write permission there, or choose another --output-dir",
    }
    return fixes.get(exc.errno or 0, "Choose a writable path")


def _prepare_directory(job: Job) -> None:
    """The first writes: the directory, what --overwrite replaces, checkpoints a killed save left half done."""
    from sqlmaster.train.checkpoints import remove_partial, set_aside

    if distributed.is_main_process():
        try:
            job.run.path.mkdir(parents=True, exist_ok=True)
            write_text(job.run.path / ".write-test", "")
            (job.run.path / ".write-test").unlink()
        except OSError as exc:
            raise ConfigError(
                f"cannot write to output directory {job.run.path}: {exc.strerror}. {_write_fix(exc)}"
            ) from None
        if job.plan.action == "overwrite":
            changed = "; ".join(c.text() for c in job.plan.changes) or "the earlier run diverged"
            log.warning("--overwrite: replacing the earlier run in %s (%s)", job.run.path, changed)
            _remove_outputs(job.run.path, job.plan.remove)
        for path in remove_partial(job.run.checkpoints):
            log.warning("removed partially written checkpoint %s (the process was stopped while saving it)", path)
        if job.plan.action == "resume":
            for path, _ in job.unusable:
                log.warning("set %s aside as %s (not resumed from, not rotated)", path, set_aside(path).name)
    _sync_ranks()


def _remove_outputs(folder: Path, paths: list[Path]) -> None:
    """Remove the earlier run's outputs all or nothing: each is first moved into one folder (renames in one
    directory), which is then deleted. A link (e.g. eval/ pointing at another disk) is removed as a link; what it
    points to is left alone. Deleting in place failed on such a link half way, leaving half a run."""
    trash = folder / f".overwritten-{os.getpid()}"
    trash.mkdir(exist_ok=True)
    moved: list[Path] = []
    for path in paths:
        try:
            path.rename(trash / path.name)
        except OSError as exc:
            for done in reversed(moved):
                (trash / done.name).rename(done)
            trash.rmdir()
            raise ConfigError(
                f"--overwrite cannot remove {path} ({exc.strerror}); nothing was removed. Fix its permissions, or "
                "use a new --output-dir"
            ) from None
        moved.append(path)
    for path in moved:
        gone = trash / path.name
        link = f" (a link to {os.readlink(gone)}, which is left alone)" if gone.is_symlink() else ""
        log.warning("  removed %s%s", path, link)
    shutil.rmtree(trash, ignore_errors=True)


def _sync_ranks() -> None:
    """Under DDP, wait here for every rank (initialising the process group as the Trainer would)."""
    if distributed.world_size() == 1:
        return
    from accelerate import PartialState

    PartialState()
    distributed.barrier()


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def _train(job: Job, data: Data, started: float) -> dict[str, Any]:
    """Load, build, train, save; run.json says "running" only while this runs."""
    from sqlmaster.train.tracking import configure_wandb, run_id_for, start_wandb

    spec, recipe, run = job.spec, job.recipe, job.run
    base_model, tokenizer, base_info = _load_base(job, data)
    n_params = sum(p.numel() for p in base_model.parameters())
    world = distributed.world_size()
    log.info("base model %s: %s parameters, device %s, world size %d", spec.name, f"{n_params:,}", job.device, world)
    if not job.grpo:
        _warn_dense_packing(recipe, base_model)

    resume_from = job.resume_from
    job.run_id = run_id_for(run.path)
    report_to = configure_wandb(recipe.tracking, run_id=job.run_id, model_name=spec.name, run_dir=run.path)
    if distributed.is_main_process():
        start_wandb(report_to)
    trainer, max_time = _build_trainer(job, base_model, tokenizer, data, report_to, resume_from)

    run_info = _run_info(job, data, base_info, n_params, trainer, resume_from)
    record = _recorder(job, run_info)
    as_it_was = _read_record(run)
    record({"status": RUNNING})
    if resume_from:
        log.info("resuming from %s", resume_from)
    with _no_damage(job, trainer, as_it_was), recorded_status(record):
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        stop_reason = _stop_reason(trainer, max_time)
        metrics = _stage_metrics(job, trainer, result.metrics, stop_reason, time.monotonic() - started)
        if distributed.is_main_process():
            outputs = _save_outputs(job, trainer, tokenizer)
            write_json(run.metrics, metrics)
            adapter = {"adapter_record": outputs.pop("adapter_record")} if "adapter_record" in outputs else {}
            record({"outputs": outputs, **adapter, "finished": now(), "status": COMPLETED, "stop_reason": stop_reason})
            record({"steps": metrics["steps"], "epochs": metrics["epochs"]})
            _print_summary(run, metrics, outputs)
        distributed.barrier()
    _finish_wandb(report_to)
    return metrics


def _stop_reason(trainer: Any, max_time: Any) -> str:
    if max_time is not None and max_time.triggered:
        return "max_time"
    if trainer.time_budget is not None:
        return "time_budget" if trainer.time_budget.stopped else "early_stopping"
    if trainer.state.global_step < trainer.state.max_steps:
        return "early_stopping"
    return "max_steps"


def _stage_metrics(
    job: Job, trainer: Any, train_metrics: dict[str, Any], stop_reason: str, wall: float
) -> dict[str, Any]:
    """metrics.json: SFT's losses and tokens/s (after its final evaluation), or GRPO's reward figures."""
    if job.grpo:
        from sqlmaster.train import grpo

        return grpo.metrics(trainer, train_metrics, stop_reason, wall)
    return _metrics(trainer, train_metrics, _final_eval(trainer), stop_reason, wall)


def _read_record(run: RunDir) -> str | None:
    try:
        return run.run_info.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@contextmanager
def _no_damage(job: Job, trainer: Any, as_it_was: str | None) -> Iterator[None]:
    """A failed resume must not damage the run it continues, and a full disk is one line (exit 1).

    Before the first new step nothing of the earlier run has changed, so its run.json is put back exactly as it
    was (a completed run stays completed with its outputs) and the cause is one error line, not a traceback.
    """
    start = _step_of(job.resume_from) or 0
    try:
        yield
    except BaseException as exc:
        full = _disk_full(exc, job.run.path)
        if as_it_was is not None and trainer.state.global_step <= start:
            if distributed.is_main_process():
                write_text(job.run.run_info, as_it_was)
            if not full and not isinstance(exc, (ConfigError, TransientError, Interrupted, KeyboardInterrupt)):
                raise ConfigError(
                    f"cannot resume from {job.resume_from}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}. "
                    f"{job.run.run_info} was left as it was. Move that checkpoint away to resume from an earlier one"
                ) from None
        if full:
            from sqlmaster.train.checkpoints import latest_complete

            last = latest_complete(job.run.checkpoints)
            raise TransientError(
                f"no space left on the device of {job.run.path} ({full}). The last complete checkpoint "
                f"({last.name if last else 'none yet'}) is intact: free space and run the same command to resume"
            ) from None
        raise


def _disk_full(exc: BaseException, folder: Path) -> str | None:
    """The message of a "no space left on device" anywhere in ``exc``'s chain (an OSError, safetensors' message,
    or torch.save's errno-less "file write failed" on a device with under 64 MiB left)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = " ".join(str(seen).split())
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left on device" in text:
            return f"{type(seen).__name__}: {text[:200]}"
        if "write failed" in text and _free_bytes(folder) < 64 << 20:
            return f"{type(seen).__name__}: {text[:200]}"
        seen = seen.__cause__ or seen.__context__
    return None


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


def _final_eval(trainer: Any) -> dict[str, Any]:
    """The eval metrics of the final weights.

    The Trainer's own evaluation at the last step is reused when there was one (evaluating the same weights
    twice costs a whole validation pass). With early stopping the final weights are the best checkpoint's,
    so they are evaluated afresh.
    """
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    if not trainer.args.load_best_model_at_end and evals and evals[-1]["step"] == trainer.state.global_step:
        return {k: v for k, v in evals[-1].items() if k.startswith("eval_")}
    return dict(trainer.evaluate())


def _recorder(job: Job, run_info: dict[str, Any]) -> Any:
    """A function that merges fields into run.json and writes it (rank 0 only; atomically)."""

    def record(fields: dict[str, Any]) -> None:
        run_info.update(fields)
        if distributed.is_main_process():
            write_json(job.run.run_info, run_info)

    return record


def _warn_dense_packing(recipe: Recipe, base_model: Any) -> None:
    attn = getattr(base_model.config, "_attn_implementation", None)
    if recipe.training.packing and attn not in ("flash_attention_2", "flex_attention"):
        log.warning(
            "packing with %s attention: the flattened batch gets a dense block-diagonal mask, so attention costs "
            "(batch x max_length)^2 (measured 2x slower than length-grouped padding for tiny on CPU). Install "
            "flash-attn on GPU, or set training.packing=false training.group_by_length=true",
            attn,
        )


def _load_base(job: Job, data: Data) -> tuple[Any, Any, dict[str, Any]]:
    """The base model and tokenizer; for tiny, built once per run and kept in ``base/`` for resume and eval."""
    if job.grpo:  # the SFT run's weights
        from sqlmaster.train.grpo import load_init

        return load_init(job)
    spec, recipe, device = job.spec, job.recipe, job.device
    revision = recipe.model.revision or spec.revision
    info: dict[str, Any] = {"name": spec.name, "hub_id": spec.hub_id, "revision": revision}
    if not spec.is_tiny and recipe.model.init == "random":  # throughput benchmarks: nothing downloaded
        from sqlmaster.models.random_init import build_random

        texts = (row["prompt"] + row["completion"] for row in data.train_rows)
        model, tokenizer = build_random(
            spec, recipe.model, texts, device=device, seed=recipe.training.seed, packing=recipe.training.packing
        )
        return model, tokenizer, {**info, "init": "random", "revision": None}
    if not spec.is_tiny:
        if offline_weights(spec) is not None:  # the hub is unreachable: the fetched copy (models/offline.py)
            info.update(weights="offline", offline_source=fetched_source(spec))
        tokenizer = load_tokenizer(spec, for_generation=False, revision=recipe.model.revision)
        model = load_base_model(spec, recipe.model, device=device, packing=recipe.training.packing)
        return model, tokenizer, info

    from sqlmaster.models.tiny import architecture_from, build_tiny, save_tiny

    base_dir = job.run.base
    info.update(path=BASE_DIR, hub_id=None)
    if (base_dir / COMPLETE_MARKER).is_file():
        tokenizer = load_tokenizer(spec, for_generation=False, path=base_dir)
        return load_base_model(spec, recipe.model, device=device, path=base_dir), tokenizer, info
    # Every rank builds the same model (seeded, deterministic tokenizer); rank 0 keeps a copy.
    texts = (row["prompt"] + row["completion"] for row in data.train_rows)
    model, tokenizer = build_tiny(texts, architecture_from(recipe.model), seed=recipe.training.seed)
    if distributed.is_main_process():
        save_tiny(model, tokenizer, base_dir)
        write_text(base_dir / COMPLETE_MARKER, "ok\n")
    tokenizer.padding_side = spec.padding_side_train
    import torch

    return model.to(torch.device(device)), tokenizer, info  # type: ignore[arg-type]  # transformers mis-types .to


def _build_trainer(
    job: Job, model: Any, tokenizer: Any, data: Data, report_to: list[str], resume_from: Path | None
) -> tuple[Any, Any]:
    if job.grpo:
        from sqlmaster.train.grpo import build_trainer

        return build_trainer(job, model, tokenizer, data, report_to, resume_from)
    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback

    from sqlmaster.train.arguments import lora_config, sft_config, use_lean_loss
    from sqlmaster.train.budget import TimeBudgetCallback
    from sqlmaster.train.callbacks import WandbRecipeCallback
    from sqlmaster.train.trainer import SQLMasterTrainer

    recipe = job.recipe
    args = sft_config(
        recipe, checkpoints_dir=job.run.checkpoints, run_id=job.run_id, report_to=report_to, device=job.device
    )
    callbacks, max_time = _callbacks(recipe, resume_from)
    budget = next((c.budget for c in callbacks if isinstance(c, TimeBudgetCallback)), None)
    trainer = SQLMasterTrainer(
        time_budget=budget,
        lean_loss=use_lean_loss(recipe, job.device),
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data.train_rows),
        eval_dataset=Dataset.from_list(data.eval_rows),
        processing_class=tokenizer,
        peft_config=lora_config(job.spec, recipe.model, model.config.num_hidden_layers)
        if recipe.model.mode == "lora"
        else None,
        callbacks=callbacks,
    )
    save_without_hub_lookup(trainer.model)  # every checkpoint's and the final adapter's save
    for noisy in (PrinterCallback, ProgressCallback):  # replaced by LogLineCallback's one line per log
        trainer.remove_callback(noisy)
    _check_not_emptied(trainer, recipe.training.max_length)
    if recipe.tracking.wandb_mode != "disabled" and report_to:
        trainer.add_callback(WandbRecipeCallback(recipe.to_dict()))
    return trainer, max_time


def _check_not_emptied(trainer: Any, max_length: int) -> None:
    """TRL drops an example whose SQL truncation cut off entirely (no token left to learn); with a tiny
    training.max_length that is every example, and the Trainer failed with an IndexError."""
    for split, dataset in (("training", trainer.train_dataset), ("validation", trainer.eval_dataset)):
        if dataset is not None and len(dataset) == 0:
            raise ConfigError(
                f"no {split} example keeps any SQL within training.max_length={max_length} tokens (the prompt alone "
                "is longer, so every example was dropped). Raise training.max_length (default 1024)"
            )


def _callbacks(recipe: Recipe, resume_from: Path | None) -> tuple[list[Any], Any]:
    """The Trainer callbacks of a run, and the wall-time one (or None) whose flag tells why training stopped."""
    from transformers import EarlyStoppingCallback

    from sqlmaster.train.budget import TimeBudgetCallback, budget_from
    from sqlmaster.train.callbacks import CheckpointCompleteCallback, LogLineCallback, MaxTimeCallback
    from sqlmaster.train.divergence import DivergenceCallback

    last_step = int(resume_from.name.rsplit("-", 1)[1]) if resume_from else None
    budget = budget_from(recipe.training)
    callbacks: list[Any] = [
        CheckpointCompleteCallback(),
        LogLineCallback(budget),
        DivergenceCallback(recipe.training.learning_rate, last_step),
    ]
    if recipe.training.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience))
    max_time = None
    if recipe.training.max_time_minutes is not None:
        max_time = MaxTimeCallback(recipe.training.max_time_minutes * 60)
        callbacks.append(max_time)
    if budget is not None:
        callbacks.append(TimeBudgetCallback(budget))
    return callbacks, max_time


def _run_info(
    job: Job, data: Data, base_info: dict[str, Any], n_params: int, trainer: Any, resume_from: Path | None
) -> dict[str, Any]:
    """run.json: who made this run (model, recipe and its hash, data sha256, versions) and its history."""
    recipe, previous = job.recipe, job.plan.previous if job.plan.action != "overwrite" else {}
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    changes = list(previous.get("recipe_changes", []))
    if job.plan.changes and job.plan.action == "resume":
        step = int(resume_from.name.rsplit("-", 1)[1]) if resume_from else 0
        changes.append({"at_step": step, "changes": {c.key: [c.old, c.new] for c in job.plan.changes}})
    return {
        "run_id": job.run_id,
        **_stage_info(job),
        "base_model": base_info,
        "mode": recipe.model.mode,
        "prompt_template": recipe.prompt.template,
        "data": {
            "source": recipe.data.source,
            "sha256": data.splits.fingerprints(),
            "split_sizes": data.splits.sizes(),
            "stats": data.splits.stats,
        },
        "parameters": {"total": n_params, "trainable": trainable},
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe_hash(job.spec.name, recipe, job.options.stage),
        "recipe_source": job.options.recipe_source,
        "recipe_changes": changes,
        "world_size": distributed.world_size(),
        "device": job.device,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "started": previous.get("started", now()),
        "resumed_from": [*previous.get("resumed_from", []), str(resume_from)] if resume_from else [],
    }


def _stage_info(job: Job) -> dict[str, Any]:
    """run.json's stage; a GRPO run's also the SFT run it started from (its path and run id)."""
    if not job.grpo:
        return {"stage": "sft"}
    assert job.options.init_from is not None
    init = {"path": str(Path(job.options.init_from).resolve()), "run_id": job.init_info.get("run_id")}
    return {"stage": "grpo", "init_from": init}


def _metrics(
    trainer: Any, train_metrics: dict[str, Any], eval_metrics: dict[str, Any], stop_reason: str, wall: float
) -> dict[str, Any]:
    history = trainer.state.log_history
    train_losses = [h["loss"] for h in history if "loss" in h]
    eval_losses = {h["step"]: h["eval_loss"] for h in history if "eval_loss" in h}  # one per step
    speeds = [h["tokens_per_second"] for h in history if "tokens_per_second" in h]
    return {
        "train_loss": train_losses[-1] if train_losses else None,
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_mean": train_metrics.get("train_loss"),
        "eval_loss": eval_metrics.get("eval_loss"),
        "best_eval_loss": trainer.state.best_metric,
        "best_step": trainer.state.best_global_step,
        "eval_losses": [{"step": step, "eval_loss": loss} for step, loss in sorted(eval_losses.items())],
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epochs": trainer.state.epoch,
        "tokens": trainer.tokens_seen_total,
        "tokens_per_second": (sum(speeds) / len(speeds)) if speeds else None,
        "train_runtime_seconds": train_metrics.get("train_runtime"),
        "wall_seconds": round(wall, 1),
        "stop_reason": stop_reason,
    }


def _save_outputs(job: Job, trainer: Any, tokenizer: Any) -> dict[str, Any]:
    """Save the final (best, with early stopping) weights and tokenizer; verify, push and merge as asked.

    Each weights directory is written aside and swapped in whole (atomic_dir): a crash while saving leaves
    the earlier directory or none, never a half-written one.
    """
    from sqlmaster.train.outputs import push_adapter, save_merged, verify_adapter

    spec, recipe, run = job.spec, job.recipe, job.run
    outputs: dict[str, Any] = {}
    model = trainer.model
    tokenizer.padding_side = spec.padding_side_train
    target = run.adapter if recipe.model.mode == "lora" else run.model
    with atomic_dir(target) as tmp:
        trained = {"selected_adapters": ["default"]} if "ref" in (getattr(model, "peft_config", None) or {}) else {}
        model.save_pretrained(tmp, safe_serialization=True, **trained)  # not GRPO's frozen KL reference copy
        tokenizer.save_pretrained(tmp)
        if recipe.model.mode == "lora":
            count = verify_adapter(tmp)
    outputs["adapter" if recipe.model.mode == "lora" else "model"] = target.name
    if recipe.model.mode == "lora":
        from sqlmaster.models.adapters import adapter_record

        outputs["adapter_record"] = adapter_record(target)  # checked before evaluation and --init-from use it
        log.info("adapter saved to %s (%s parameters)", target, f"{count:,}")
        if recipe.output.push_to_hub and recipe.output.hub_repo_id:
            outputs["hub"] = push_adapter(target, recipe.output.hub_repo_id)
        if recipe.output.merge:
            with atomic_dir(run.merged) as tmp:
                save_merged(model, tokenizer, tmp)
            outputs["merged"] = run.merged.name
    else:
        log.info("model saved to %s", target)
        if recipe.output.push_to_hub:
            log.warning("output.push_to_hub pushes LoRA adapters only; a full run's model/ was not pushed")
    if spec.is_tiny and run.base.is_dir():
        outputs["base"] = BASE_DIR
    return outputs


def _print_summary(run: RunDir, metrics: dict[str, Any], outputs: dict[str, str]) -> None:
    if metrics.get("stage") == "grpo":
        from sqlmaster.train.grpo import summary

        log.info("%s", summary(metrics))
    else:
        _print_sft_summary(metrics)
    log.info("outputs in %s:", run.path.resolve())
    local = [run.path / name for name in outputs.values() if not name.startswith("http")]
    for path in (run.run_info, run.metrics, *local, run.checkpoints):
        log.info("  %s", path)
    if "hub" in outputs:
        log.info("  %s", outputs["hub"])


def _print_sft_summary(metrics: dict[str, Any]) -> None:
    log.info(
        "finished: %d steps (%s), train loss %.4f -> %.4f, eval loss %.4f, %s tokens/s",
        metrics["steps"],
        metrics["stop_reason"],
        metrics["train_loss_first"] or float("nan"),
        metrics["train_loss"] or float("nan"),
        metrics["eval_loss"] or float("nan"),
        f"{metrics['tokens_per_second']:,.0f}" if metrics["tokens_per_second"] else "?",
    )


def _finish_wandb(report_to: list[str]) -> None:
    if "wandb" not in report_to:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()
