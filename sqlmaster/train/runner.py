"""``sqlmaster train``: one fine-tuning run from a model name, an output directory and a resolved recipe.

The same entry point runs on a laptop CPU, in a one-GPU pod and under ``torchrun`` (DDP): every rank trains;
only rank 0 writes run.json, metrics.json and the saved weights. Restarting with the same output directory
resumes from the latest *complete* checkpoint, which is what makes a preempted Kubernetes pod safe to retry.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from sqlmaster.config import Recipe
from sqlmaster.errors import ConfigError
from sqlmaster.logs import setup_logging
from sqlmaster.models.loading import (
    ADAPTER_DIR,
    BASE_DIR,
    MERGED_DIR,
    MODEL_DIR,
    RUN_INFO_FILE,
    hf_token,
    load_base_model,
    load_tokenizer,
)
from sqlmaster.models.registry import ModelSpec, resolve_model
from sqlmaster.train import distributed
from sqlmaster.train.outputs import git_commit, now, package_versions, write_json

log = logging.getLogger("sqlmaster.train")

CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.json"


def run_training(model: str, output_dir: Path, recipe: Recipe) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` into ``output_dir``; returns the metrics written to metrics.json."""
    setup_logging(distributed.is_main_process())
    started = time.monotonic()
    spec = resolve_model(model)
    run_dir = Path(output_dir)
    _preflight(spec, run_dir, recipe)

    import torch

    if recipe.training.num_threads:
        torch.set_num_threads(recipe.training.num_threads)
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.prompt import get_template

    template = get_template(recipe.prompt.template)
    splits = build_splits(recipe.data)
    train_rows = [ex.to_prompt_completion(template) for ex in splits.train]
    eval_rows = [ex.to_prompt_completion(template) for ex in splits.validation]
    log.info(
        "data %s: %d train / %d validation / %d test rows (%s); template %s",
        recipe.data.source,
        len(train_rows),
        len(eval_rows),
        len(splits.test),
        ", ".join(f"{k} {v}" for k, v in splits.stats.items()),
        template.name,
    )

    device = _device()
    base_model, tokenizer, base_info = _load_base(spec, recipe, run_dir, train_rows, device)
    n_params = sum(p.numel() for p in base_model.parameters())
    log.info(
        "base model %s: %s parameters, device %s, world size %d",
        spec.name,
        f"{n_params:,}",
        device,
        distributed.world_size(),
    )

    attn = getattr(base_model.config, "_attn_implementation", None)
    if recipe.training.packing and attn != "flash_attention_2":
        log.warning(
            "packing with %s attention: the flattened batch gets a dense block-diagonal mask, so attention costs "
            "(batch x max_length)^2 (measured 2x slower than length-grouped padding for tiny on CPU). Install "
            "flash-attn on GPU, or set training.packing=false training.group_by_length=true",
            attn,
        )

    from sqlmaster.train.checkpoints import latest_complete, remove_partial

    checkpoints_dir = run_dir / CHECKPOINTS_DIR
    if distributed.is_main_process():
        for path in remove_partial(checkpoints_dir):
            log.warning("removed partially written checkpoint %s (the process was stopped while saving it)", path)
    resume_from = latest_complete(checkpoints_dir)

    from sqlmaster.train.tracking import configure_wandb, run_id_for

    run_id = run_id_for(run_dir)
    report_to = configure_wandb(recipe.tracking, run_id=run_id, model_name=spec.name, run_dir=run_dir)
    trainer, max_time = _build_trainer(
        base_model, tokenizer, spec, recipe, train_rows, eval_rows, checkpoints_dir, run_id, report_to, device
    )

    run_info = _run_info(spec, recipe, splits, base_info, run_id, n_params, trainer, device)
    previous = _previous_run_info(run_dir)
    run_info["started"] = previous.get("started", now()) if previous else now()
    run_info["resumed_from"] = [*previous.get("resumed_from", []), str(resume_from)] if resume_from else []
    if distributed.is_main_process():
        write_json(run_dir / RUN_INFO_FILE, {**run_info, "status": "running"})
    if resume_from:
        log.info("resuming from %s", resume_from)

    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    eval_metrics = trainer.evaluate()

    stop_reason = "max_steps"
    if max_time is not None and max_time.triggered:
        stop_reason = "max_time"
    elif trainer.time_budget is not None:
        stop_reason = "time_budget" if trainer.time_budget.stopped else "early_stopping"
    elif trainer.state.global_step < trainer.state.max_steps:
        stop_reason = "early_stopping"
    metrics = _metrics(trainer, result.metrics, eval_metrics, stop_reason, time.monotonic() - started)

    if distributed.is_main_process():
        outputs = _save_outputs(trainer, tokenizer, spec, recipe, run_dir)
        run_info.update(outputs=outputs, finished=now(), status="completed", stop_reason=stop_reason)
        run_info.update(steps=metrics["steps"], epochs=metrics["epochs"])
        run_info["adapter_parameters"] = metrics.get("adapter_parameters")
        write_json(run_dir / METRICS_FILE, metrics)
        write_json(run_dir / RUN_INFO_FILE, run_info)
        _print_summary(run_dir, metrics, outputs)
    distributed.barrier()
    _finish_wandb(report_to)
    return metrics


def _preflight(spec: ModelSpec, run_dir: Path, recipe: Recipe) -> None:
    """Configuration errors found before any data or weights load (exit code 2, no wasted GPU time)."""
    if not spec.is_tiny:
        hf_token(spec)  # gated model without HF_TOKEN
    if recipe.output.push_to_hub and not os.environ.get("HF_TOKEN"):
        raise ConfigError("output.push_to_hub=true needs HF_TOKEN in the environment. Set it, or push later")
    if spec.is_tiny and recipe.model.mode == "lora" and not recipe.model.modules_to_save:
        log.warning(
            "tiny with LoRA on a randomly initialised base learns little (measured: 0%% execution accuracy); "
            "use model.mode=full, or model.modules_to_save=[embed_tokens, lm_head]"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to output directory {run_dir}: {exc.strerror}. Choose a writable path"
        ) from None
    previous = _previous_run_info(run_dir)
    if previous:
        recorded = (previous.get("base_model") or {}).get("name")
        if recorded and recorded != spec.name:
            raise ConfigError(
                f"{run_dir} holds a run of model {recorded!r}, not {spec.name!r}. Use another --output-dir"
            )


def _previous_run_info(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / RUN_INFO_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def _load_base(
    spec: ModelSpec, recipe: Recipe, run_dir: Path, train_rows: list[dict[str, str]], device: str
) -> tuple[Any, Any, dict[str, Any]]:
    """The base model and tokenizer; for tiny, built once per run and kept in ``base/`` for resume and eval."""
    info: dict[str, Any] = {
        "name": spec.name,
        "hub_id": spec.hub_id,
        "revision": recipe.model.revision or spec.revision,
    }
    if not spec.is_tiny:
        tokenizer = load_tokenizer(spec, for_generation=False, revision=recipe.model.revision)
        return load_base_model(spec, recipe.model, device=device), tokenizer, info

    from sqlmaster.models.tiny import architecture_from, build_tiny, save_tiny
    from sqlmaster.train.checkpoints import COMPLETE_MARKER

    base_dir = run_dir / BASE_DIR
    info.update(path=BASE_DIR, hub_id=None)
    if (base_dir / COMPLETE_MARKER).is_file():
        tokenizer = load_tokenizer(spec, for_generation=False, path=base_dir)
        return load_base_model(spec, recipe.model, device=device, path=base_dir), tokenizer, info
    # Every rank builds the same model (seeded, deterministic tokenizer); rank 0 keeps a copy.
    texts = (row["prompt"] + row["completion"] for row in train_rows)
    model, tokenizer = build_tiny(texts, architecture_from(recipe.model), seed=recipe.training.seed)
    if distributed.is_main_process():
        save_tiny(model, tokenizer, base_dir)
        (base_dir / COMPLETE_MARKER).write_text("ok\n")
    tokenizer.padding_side = spec.padding_side_train
    import torch

    return model.to(torch.device(device)), tokenizer, info  # type: ignore[arg-type]  # transformers mis-types .to


def _build_trainer(
    model: Any,
    tokenizer: Any,
    spec: ModelSpec,
    recipe: Recipe,
    train_rows: list[dict[str, str]],
    eval_rows: list[dict[str, str]],
    checkpoints_dir: Path,
    run_id: str,
    report_to: list[str],
    device: str,
) -> tuple[Any, Any]:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback

    from sqlmaster.train.arguments import lora_config, sft_config, use_lean_loss
    from sqlmaster.train.budget import TimeBudgetCallback, budget_from
    from sqlmaster.train.callbacks import (
        CheckpointCompleteCallback,
        LogLineCallback,
        MaxTimeCallback,
        WandbRecipeCallback,
    )
    from sqlmaster.train.trainer import SQLMasterTrainer

    args = sft_config(recipe, checkpoints_dir=checkpoints_dir, run_id=run_id, report_to=report_to, device=device)
    budget = budget_from(recipe.training)
    callbacks: list[Any] = [CheckpointCompleteCallback(), LogLineCallback(budget)]
    if recipe.training.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.training.early_stopping_patience))
    max_time = None
    if recipe.training.max_time_minutes is not None:
        max_time = MaxTimeCallback(recipe.training.max_time_minutes * 60)
        callbacks.append(max_time)
    if budget is not None:
        callbacks.append(TimeBudgetCallback(budget))
    trainer = SQLMasterTrainer(
        time_budget=budget,
        lean_loss=use_lean_loss(recipe, device),
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer,
        peft_config=lora_config(spec, recipe.model) if recipe.model.mode == "lora" else None,
        callbacks=callbacks,
    )
    for noisy in (PrinterCallback, ProgressCallback):  # replaced by LogLineCallback's one line per log
        trainer.remove_callback(noisy)
    if recipe.tracking.wandb_mode != "disabled" and report_to:
        trainer.add_callback(WandbRecipeCallback(recipe.to_dict()))
    return trainer, max_time


def _run_info(
    spec: ModelSpec,
    recipe: Recipe,
    splits: Any,
    base_info: dict[str, Any],
    run_id: str,
    n_params: int,
    trainer: Any,
    device: str,
) -> dict[str, Any]:
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "run_id": run_id,
        "base_model": base_info,
        "mode": recipe.model.mode,
        "prompt_template": recipe.prompt.template,
        "data": {
            "source": recipe.data.source,
            "sha256": splits.fingerprints(),
            "split_sizes": splits.sizes(),
            "stats": splits.stats,
        },
        "parameters": {"total": n_params, "trainable": trainable},
        "recipe": recipe.to_dict(),
        "world_size": distributed.world_size(),
        "device": device,
        "packages": package_versions(),
        "git_commit": git_commit(),
    }


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


def _save_outputs(trainer: Any, tokenizer: Any, spec: ModelSpec, recipe: Recipe, run_dir: Path) -> dict[str, str]:
    """Save the final (best, with early stopping) weights and tokenizer; verify, push and merge as asked."""
    from sqlmaster.train.outputs import push_adapter, save_merged, verify_adapter

    outputs: dict[str, str] = {}
    model = trainer.model
    tokenizer.padding_side = spec.padding_side_train
    if recipe.model.mode == "lora":
        adapter_dir = run_dir / ADAPTER_DIR
        model.save_pretrained(adapter_dir, safe_serialization=True)
        tokenizer.save_pretrained(adapter_dir)
        count = verify_adapter(adapter_dir)
        log.info("adapter saved to %s (%s parameters)", adapter_dir, f"{count:,}")
        outputs["adapter"] = ADAPTER_DIR
        if recipe.output.push_to_hub and recipe.output.hub_repo_id:
            outputs["hub"] = push_adapter(adapter_dir, recipe.output.hub_repo_id)
        if recipe.output.merge:
            save_merged(model, tokenizer, run_dir / MERGED_DIR)
            outputs["merged"] = MERGED_DIR
    else:
        model_dir = run_dir / MODEL_DIR
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        log.info("model saved to %s", model_dir)
        outputs["model"] = MODEL_DIR
        if recipe.output.push_to_hub:
            log.warning("output.push_to_hub pushes LoRA adapters only; a full run's model/ was not pushed")
    if spec.is_tiny:
        outputs["base"] = BASE_DIR
    return outputs


def _print_summary(run_dir: Path, metrics: dict[str, Any], outputs: dict[str, str]) -> None:
    log.info(
        "finished: %d steps (%s), train loss %.4f -> %.4f, eval loss %.4f, %s tokens/s",
        metrics["steps"],
        metrics["stop_reason"],
        metrics["train_loss_first"] or float("nan"),
        metrics["train_loss"] or float("nan"),
        metrics["eval_loss"] or float("nan"),
        f"{metrics['tokens_per_second']:,.0f}" if metrics["tokens_per_second"] else "?",
    )
    log.info("outputs in %s:", run_dir.resolve())
    for name in (RUN_INFO_FILE, METRICS_FILE, *outputs.values(), CHECKPOINTS_DIR):
        if not name.startswith("http"):
            log.info("  %s", run_dir / name)
        else:
            log.info("  %s", name)


def _finish_wandb(report_to: list[str]) -> None:
    if "wandb" not in report_to:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()
