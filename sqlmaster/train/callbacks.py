"""Trainer callbacks: checkpoint completion markers, a wall-time limit, log lines (and a terminal progress bar)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sqlmaster.logs import progress_bar, progress_console
from sqlmaster.progress import Progress
from sqlmaster.progress import duration as _duration
from sqlmaster.train import distributed
from sqlmaster.train.budget import TimeBudget
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
    """One readable line per log event (step, loss, learning rate, tokens/s, elapsed, time left) and, in a
    terminal, a live progress bar (sqlmaster/logs.py): over the budget's minutes with a time budget, else steps."""

    def __init__(self, budget: TimeBudget | None = None) -> None:
        self.budget = budget
        self.started = time.monotonic()
        self.first_step = 0
        self.bar: Any = None
        self.task: Any = None
        self.evaluating: Progress | None = None  # the validation loss's progress lines, while it is computed

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step
        if state.is_world_process_zero:
            self._start_bar(state)

    def _start_bar(self, state: TrainerState) -> None:
        from rich.progress import TextColumn

        self.bar = progress_bar(TextColumn("{task.fields[status]}"))
        if self.bar is None:
            return
        self.bar.start()
        if self.budget is not None:  # the bar is the budget: seconds spent of seconds allowed
            total, done = self.budget.seconds, self.budget.elapsed()
        else:
            total, done = state.max_steps, state.global_step
        self.task = self.bar.add_task("training", total=round(total), completed=round(done), status="")
        self.status = {"step": f"step {state.global_step}"}

    def _left(self, state: TrainerState) -> float:
        if self.budget is not None:
            return self.budget.remaining()
        elapsed = time.monotonic() - self.started
        return elapsed / max(state.global_step - self.first_step, 1) * max(state.max_steps - state.global_step, 0)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.bar is None:
            return
        self.status["step"] = f"step {state.global_step}"
        self.status["left"] = f"left {_duration(self._left(state))}"
        done = self.budget.elapsed() if self.budget is not None else state.global_step
        self.bar.update(self.task, completed=round(done), status=" | ".join(self.status.values()))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Outside a terminal, the validation loss's batches get progress lines too (one pass took 18 silent
        minutes of SmolLM2 on a busy 2-core CPU); in a terminal the training bar stays the one live display."""
        if not state.is_world_process_zero or self.bar is not None or progress_console() is not None:
            return
        if self.evaluating is None:
            loader = kw.get("eval_dataloader")
            self.evaluating = Progress("validation loss", len(loader) if loader is not None else 0, unit="batches")
            self.evaluating.__enter__()
        self.evaluating.advance()

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.evaluating is not None:
            self.evaluating.__exit__(None, None, None)
            self.evaluating = None

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
        step = state.global_step
        # With a time budget the step count is not known in advance: show the time left in the budget instead.
        where = f"step {step}" if self.budget is not None else f"step {step}/{state.max_steps}"
        if "loss" in logs:
            parts = [where, f"loss {logs['loss']:.4f}", f"lr {logs.get('learning_rate', 0.0):.2e}"]
            if "tokens_per_second" in logs:
                parts.append(f"tok/s {logs['tokens_per_second']:,.0f}")
            if "grad_norm" in logs:
                parts.append(f"grad_norm {logs['grad_norm']:.3f}")
            parts += _reward_parts(logs)
            parts += [
                f"elapsed {_duration(elapsed)}",
                f"{'left' if self.budget else 'eta'} {_duration(self._left(state))}",
            ]
            log.info(" | ".join(parts))
            if self.bar is not None:
                self.status["loss"] = f"loss {logs['loss']:.3f}"
                if "tokens_per_second" in logs:
                    self.status["tok/s"] = f"{logs['tokens_per_second']:,.0f} tok/s"
        elif "eval_loss" in logs:
            best = state.best_metric
            best_text = f" (best {best:.4f} at step {state.best_global_step})" if best is not None else ""
            log.info("%s | eval_loss %.4f%s", where, logs["eval_loss"], best_text)
        elif "train_runtime" in logs:
            log.info(
                "training done: %d steps in %s, mean train loss %.4f",
                step,
                _duration(logs["train_runtime"]),
                logs.get("train_loss", float("nan")),
            )


def _reward_parts(logs: dict[str, Any]) -> list[str]:
    """A GRPO log's reward figures (sqlmaster/train/reward.py logs them as reward/<name>), for the log line."""
    parts = []
    if logs.get("reward/mean_reward") is not None:
        parts += [
            f"reward {logs['reward/mean_reward']:.3f}",
            f"exec {logs.get('reward/execution_rate', 0.0):.0%}",
            f"match {logs.get('reward/match_rate', 0.0):.0%}",
            f"rewards/s {logs.get('reward/rewards_per_s', 0.0):,.0f}",
        ]
    if logs.get("grpo/teaching_fraction") is not None:  # grpo.skip_zero_advantage: the samples trained on
        parts.append(f"teaching {logs['grpo/teaching_fraction']:.0%}")
    if logs.get("reward/share_of_step_time") is not None:
        parts.append(f"reward time {logs['reward/share_of_step_time']:.0%} of step")
    return parts


class WandbRecipeCallback(TrainerCallback):
    """Put the full resolved recipe into the W&B run config, next to the TrainingArguments the integration logs."""

    def __init__(self, recipe: dict[str, Any]) -> None:
        self.recipe = recipe

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        import wandb

        if state.is_world_process_zero and wandb.run is not None:
            wandb.config.update({"recipe": self.recipe}, allow_val_change=True)
