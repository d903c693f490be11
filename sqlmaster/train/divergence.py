"""Stop training the moment it diverges, before a NaN reaches the weights or a checkpoint.

The Trainer's logged loss cannot show it: with ``logging_nan_inf_filter`` (on by default) a NaN step loss is
replaced by the window's mean, and a run with ``learning_rate=1e30`` used to end "completed". A NaN or
infinite loss makes the gradients non-finite, so this checks their total norm just before each optimizer step
(after clipping, one fused norm over the trainable parameters, the cost of clipping itself) and raises
``RunDiverged``: run.json records "diverged" and the command exits 2, since a retry would diverge again.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sqlmaster.errors import RunDiverged


class DivergenceCallback(TrainerCallback):
    def __init__(self, learning_rate: float, last_checkpoint_step: int | None = None) -> None:
        self.learning_rate = learning_rate
        self.last_checkpoint_step = last_checkpoint_step

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.last_checkpoint_step = state.global_step

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        model = kw.get("model")
        if model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            kept = (
                f"checkpoints up to step {self.last_checkpoint_step} are kept"
                if self.last_checkpoint_step
                else "no checkpoint was written"
            )
            raise RunDiverged(
                f"training diverged at step {state.global_step + 1}: the loss became NaN or infinite (non-finite "
                f"gradients); run.json records status diverged and {kept}. Lower training.learning_rate (now "
                f"{self.learning_rate:g}) or raise training.warmup_steps, and train into a new --output-dir "
                "(or pass --overwrite)"
            )
