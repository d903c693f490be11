"""Train for a time budget instead of a step count (``training.time_budget_minutes``).

A step count is right for one machine only: the same 1,600 steps are half the time on a fast CPU and run past
the limit on a slow one. With a budget, the learning-rate schedule is laid over *training time*:

    factor(step, t) = warm-up(step) x decay(t / budget)

warm-up is linear over ``training.warmup_steps`` optimizer steps; decay is 1 until the last
``training.budget_decay_fraction`` of the budget, then a cosine down to 0 at the budget (1.0 = cosine over the
whole budget; 0.2 = warm-up-stable-decay). Progress is measured time, so the schedule ends at the budget on any
CPU or GPU, whatever its throughput, and training stops there with a checkpoint. Evaluations and checkpoints
happen at ``training.budget_evaluations`` even fractions of the budget.

The elapsed time is part of every checkpoint (``time_budget.json``), so a resumed run continues the same
schedule from where the checkpoint was taken; time lost after the last checkpoint is not counted twice.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sqlmaster import boundedjson
from sqlmaster.rundir import TIME_BUDGET_FILE
from sqlmaster.train import distributed

log = logging.getLogger("sqlmaster.train")

STATE_FILE = TIME_BUDGET_FILE  # inside each checkpoint-N/ folder
UNBOUNDED_STEPS = 10_000_000  # the Trainer needs a step count; the budget stops training long before it


class TimeBudget:
    """Training time spent against a budget, shared by the LR schedule and the stopping callback."""

    def __init__(
        self,
        seconds: float,
        *,
        warmup_steps: int = 0,
        decay_fraction: float = 1.0,
        evaluations: int = 4,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.seconds = seconds
        self.warmup_steps = warmup_steps
        self.decay_fraction = decay_fraction
        self.evaluations = evaluations
        self.clock = clock or (lambda: now())
        self.elapsed_before = 0.0  # seconds spent by earlier sessions of this run (restored on resume)
        self.session_started: float | None = None
        self.evaluations_done = 0
        self.stopped = False  # set when training stopped because the budget was spent

    def start(self) -> None:
        self.session_started = self.clock()

    def elapsed(self) -> float:
        if self.session_started is None:
            return self.elapsed_before
        return self.elapsed_before + self.clock() - self.session_started

    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]."""
        return min(self.elapsed() / self.seconds, 1.0)

    def remaining(self) -> float:
        return max(self.seconds - self.elapsed(), 0.0)

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) now."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        stable_until = 1.0 - self.decay_fraction
        progress = self.progress()
        if progress <= stable_until:
            return warm
        into_decay = (progress - stable_until) / self.decay_fraction
        return warm * 0.5 * (1.0 + math.cos(math.pi * into_decay))

    def state(self) -> dict[str, Any]:
        return {"elapsed_seconds": self.elapsed(), "evaluations_done": self.evaluations_done, "budget": self.seconds}

    def save(self, checkpoint: Path) -> None:
        (checkpoint / STATE_FILE).write_text(json.dumps(self.state()) + "\n")

    def restore(self, checkpoint: Path) -> bool:
        """Continue from the time recorded in ``checkpoint``; False when it has none (a step-count run)."""
        path = checkpoint / STATE_FILE
        if not path.is_file():
            return False
        saved = boundedjson.load_file(path, "time budget state")
        self.elapsed_before = float(saved["elapsed_seconds"])
        self.evaluations_done = int(saved["evaluations_done"])
        self.session_started = None
        return True


def now() -> float:
    """The budget's clock (a module function, so tests can replace it)."""
    return time.monotonic()


def budget_from(training: Any, clock: Callable[[], float] | None = None) -> TimeBudget | None:
    """The recipe's time budget (``training`` is a TrainingConfig), or None for a step-count run."""
    if training.time_budget_minutes is None:
        return None
    return TimeBudget(
        training.time_budget_minutes * 60,
        warmup_steps=training.warmup_steps,
        decay_fraction=training.budget_decay_fraction,
        evaluations=training.budget_evaluations,
        clock=clock,
    )


def lambda_scheduler(optimizer: Any, budget: TimeBudget) -> Any:
    """A LambdaLR whose factor comes from the budget (a closure, so it is not pickled into checkpoints)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lambda step: budget.lr_factor(step))


class TimeBudgetCallback(TrainerCallback):
    """Evaluate and checkpoint at even fractions of the budget; stop with a checkpoint when it is spent.

    Every rank takes the same decisions (an any-rank reduction), or DDP would hang with one rank stopped.
    """

    def __init__(self, budget: TimeBudget) -> None:
        self.budget = budget

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if state.global_step > 0:  # resumed: continue the schedule from the checkpoint's time
            checkpoint = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
            if self.budget.restore(checkpoint) and state.is_world_process_zero:
                log.info(
                    "time budget: %.1f of %.1f min spent before the checkpoint at step %d; continuing the schedule",
                    self.budget.elapsed_before / 60,
                    self.budget.seconds / 60,
                    state.global_step,
                )
        self.budget.start()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        progress = self.budget.progress()
        spent = progress >= 1.0
        due = self.budget.evaluations > 0 and progress * self.budget.evaluations >= self.budget.evaluations_done + 1
        if distributed.world_size() > 1:
            spent, due = distributed.any_rank(spent), distributed.any_rank(due)
        if spent:
            self.budget.stopped = True
            control.should_save = True
            control.should_training_stop = True
            if state.is_world_process_zero:
                log.info(
                    "training.time_budget_minutes=%g spent at step %d: saving a checkpoint and stopping",
                    self.budget.seconds / 60,
                    state.global_step,
                )
        elif due:
            # At least one more: a rank whose own clock is a little behind still counts the evaluation that
            # another rank's clock called for (else it would call for it again a few steps later).
            self.budget.evaluations_done = max(
                self.budget.evaluations_done + 1, math.floor(progress * self.budget.evaluations)
            )
            control.should_evaluate = True
            control.should_save = True
