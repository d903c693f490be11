"""Trainer callbacks: checkpoint completion markers, a wall-time limit, and log lines for ``kubectl logs``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sqlmaster.train import distributed
from sqlmaster.train.checkpoints import mark_complete

log = logging.getLogger("sqlmaster.train")


class CheckpointCompleteCallback(TrainerCallback):
    """Mark a checkpoint complete once every rank has written its part (RNG states are per rank)."""

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        distributed.barrier()
        checkpoint = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            mark_complete(checkpoint)
            log.info("checkpoint saved: %s", checkpoint)


class MaxTimeCallback(TrainerCallback):
    """Stop cleanly after ``max_seconds`` of this process's training, saving a checkpoint first.

    Every rank takes the same decision (an all-reduce of the flag), or DDP would hang with one rank stopped.
    """

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self.started = time.monotonic()
        self.triggered = False

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.started = time.monotonic()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        over = time.monotonic() - self.started >= self.max_seconds
        if distributed.world_size() > 1:
            over = distributed.any_rank(over)
        if over and state.global_step < state.max_steps:
            self.triggered = True
            control.should_save = True
            control.should_training_stop = True
            if state.is_world_process_zero:
                log.info(
                    "training.max_time_minutes=%.1f reached at step %d: saving a checkpoint and stopping",
                    self.max_seconds / 60,
                    state.global_step,
                )


class LogLineCallback(TrainerCallback):
    """One readable line per log event: step, loss, learning rate, tokens/s, elapsed and ETA."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_step = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        elapsed = time.monotonic() - self.started
        step, total = state.global_step, state.max_steps
        done = max(step - self.first_step, 1)
        eta = elapsed / done * max(total - step, 0)
        if "loss" in logs:
            parts = [
                f"step {step}/{total}",
                f"loss {logs['loss']:.4f}",
                f"lr {logs.get('learning_rate', 0.0):.2e}",
            ]
            if "tokens_per_second" in logs:
                parts.append(f"tok/s {logs['tokens_per_second']:,.0f}")
            if "grad_norm" in logs:
                parts.append(f"grad_norm {logs['grad_norm']:.3f}")
            parts += [f"elapsed {_duration(elapsed)}", f"eta {_duration(eta)}"]
            log.info(" | ".join(parts))
        elif "eval_loss" in logs:
            best = state.best_metric
            best_text = f" (best {best:.4f} at step {state.best_global_step})" if best is not None else ""
            log.info("step %d/%d | eval_loss %.4f%s", step, total, logs["eval_loss"], best_text)
        elif "train_runtime" in logs:
            log.info(
                "training done: %d steps in %s, mean train loss %.4f",
                step,
                _duration(logs["train_runtime"]),
                logs.get("train_loss", float("nan")),
            )


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class WandbRecipeCallback(TrainerCallback):
    """Put the full resolved recipe into the W&B run config, next to the TrainingArguments the integration logs."""

    def __init__(self, recipe: dict[str, Any]) -> None:
        self.recipe = recipe

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        import wandb

        if state.is_world_process_zero and wandb.run is not None:
            wandb.config.update({"recipe": self.recipe}, allow_val_change=True)
