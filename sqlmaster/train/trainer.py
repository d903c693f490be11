"""SFTTrainer with a non-padding tokens/s figure in every training log (console, W&B, metrics.json)."""

from __future__ import annotations

import time
from typing import Any

from trl import SFTTrainer

from sqlmaster.train import distributed


def count_real_tokens(inputs: dict[str, Any]) -> int:
    """Tokens that are not padding in one micro-batch.

    Padded batches carry an attention mask; padding-free (packed) batches carry position ids over one flat
    sequence with no padding at all (TRL's collator pads nothing unless pad_to_multiple_of is set, which we
    never set).
    """
    if "attention_mask" in inputs and inputs["attention_mask"] is not None:
        return int(inputs["attention_mask"].sum().item())
    return int(inputs["input_ids"].numel())


class SQLMasterTrainer(SFTTrainer):
    """Adds ``tokens_per_second`` (non-padding, all ranks) and ``tokens_seen`` to training logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_seen_local = 0  # this process, this session
        self.tokens_seen_total = 0.0  # all processes, this session
        self._last_log_tokens = 0
        self._last_log_time = time.monotonic()
        self._excluded_seconds = 0.0  # evaluation and checkpointing time since the last log, not training

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        started = time.monotonic()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._excluded_seconds += time.monotonic() - started

    def _save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        started = time.monotonic()
        try:
            super()._save_checkpoint(*args, **kwargs)
        finally:
            self._excluded_seconds += time.monotonic() - started

    def compute_loss(self, model: Any, inputs: Any, return_outputs: Any = False, num_items_in_batch: Any = None) -> Any:
        if model.training:
            self.tokens_seen_local += count_real_tokens(inputs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: every rank reaches it at the same step, so the all-reduce is safe
            now = time.monotonic()
            delta = distributed.sum_over_ranks(float(self.tokens_seen_local - self._last_log_tokens))
            self.tokens_seen_total += delta
            seconds = max(now - self._last_log_time - self._excluded_seconds, 1e-9)
            logs["tokens_per_second"] = round(delta / seconds, 1)
            logs["tokens_seen"] = self.tokens_seen_total
            self._last_log_tokens = self.tokens_seen_local
            self._last_log_time = now
            self._excluded_seconds = 0.0
        super().log(logs, start_time)
