"""SQLMasterTrainer: TRL's SFTTrainer plus tokens/s logging, an optional time budget and a lean CPU loss.

* Every training log carries ``tokens_per_second`` (non-padding, all ranks) and ``tokens_seen`` (console, W&B,
  metrics.json).
* With ``training.time_budget_minutes`` the learning-rate schedule is laid over the budget (sqlmaster/train/budget.py)
  and the budget's elapsed time is saved in every checkpoint.
* ``lean_loss`` (CPU runs, full or LoRA, one process or DDP: ``tiny``, SmolLM2, Gemma 3 270M): the loss is the same
  completion-only token-mean cross-entropy, computed from the hidden states of the completion tokens only. TRL's
  fused LM head scores *every* position on a non-Triton device (to keep tile shapes static) and also computes entropy
  and top-1 for its metrics; on CPU, where the prompt is most of each example, that cost ~0.2 s/step for ``tiny``.
  For a 49k-262k vocabulary the skipped prompt positions are most of the LM head's cost. GPU runs keep TRL's path
  unchanged (``tests/test_tiny.py`` checks both give the same loss).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trl import SFTTrainer

from sqlmaster.train import distributed
from sqlmaster.train.budget import TimeBudget, lambda_scheduler


def count_real_tokens(inputs: dict[str, Any]) -> int:
    """Tokens that are not padding in one micro-batch.

    Padded batches carry an attention mask; padding-free (packed) batches carry position ids over one flat
    sequence with no padding at all (TRL's collator pads nothing unless pad_to_multiple_of is set, which we
    never set).
    """
    if "attention_mask" in inputs and inputs["attention_mask"] is not None:
        return int(inputs["attention_mask"].sum().item())
    return int(inputs["input_ids"].numel())


# The LM head's logits are completion positions x vocabulary in fp32, and cross-entropy keeps their log-softmax and
# gradient too: for the longest batches of 16 (~1,500 completion positions) that is ~0.9 GB at SmolLM2's 49k
# vocabulary and ~4.7 GB at Gemma 3's 262k. Above LOGITS_BUDGET elements (256 MB) the positions go through the head
# in chunks whose logits are recomputed in the backward pass instead of kept (activation checkpointing): one more
# head matmul per position, paid only where a batch would have crossed the budget.
LOGITS_BUDGET = 2**26


def completion_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[Any, Any]:
    """Mean next-token cross-entropy over labelled positions, projecting only those through the LM head.

    Returns (loss, top-1 accuracy over the labelled positions). Same value as TRL's fused head at temperature 1.
    Under DDP the wrapped model's own forward runs (it is what synchronises gradients), so there the LM head
    scores every position; that costs a little of what the single-process path saves.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    backbone_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
    backbone_inputs["use_cache"] = False
    targets = labels[:, 1:]
    mask = targets != -100
    picked = targets[mask]
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        logits = model(**backbone_inputs).logits[:, :-1][mask].float()
        total = F.cross_entropy(logits, picked, reduction="sum")
        correct = (logits.detach().argmax(-1) == picked).sum()
    else:
        backbone, head, softcap = _backbone_and_head(model)
        hidden = backbone(**backbone_inputs).last_hidden_state[:, :-1][mask]
        total, correct = _chunked_head_loss(hidden, picked, head, softcap)
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    loss = total / torch.as_tensor(count).clamp(min=1)
    accuracy = correct.float() / max(picked.numel(), 1)
    return loss, accuracy


def _chunked_head_loss(hidden: Any, targets: Any, head: Any, softcap: float | None) -> tuple[Any, Any]:
    """Summed cross-entropy and correct top-1 count of ``hidden`` through ``head`` (LOGITS_BUDGET above)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    def chunk_loss(h: Any, t: Any) -> tuple[Any, Any]:
        logits = head(h).float()
        if softcap:  # as the model's own forward does (Gemma 2 style final-logit soft-capping)
            logits = torch.tanh(logits / softcap) * softcap
        return torch.nn.functional.cross_entropy(logits, t, reduction="sum"), (logits.detach().argmax(-1) == t).sum()

    chunk = max(1, LOGITS_BUDGET // head.weight.shape[0])
    if hidden.requires_grad and targets.numel() <= chunk:
        return chunk_loss(hidden, targets)  # within the budget: one pass, its logits kept for the backward pass
    total, correct = hidden.new_zeros((), dtype=torch.float32), torch.zeros((), dtype=torch.long)
    for start in range(0, targets.numel(), chunk):
        h, t = hidden[start : start + chunk], targets[start : start + chunk]
        # training: recomputed in the backward pass; evaluation (no graph): each chunk's logits are freed at once
        loss, right = checkpoint(chunk_loss, h, t, use_reentrant=False) if hidden.requires_grad else chunk_loss(h, t)
        total, correct = total + loss, correct + right
    return total, correct


def _backbone_and_head(model: Any) -> tuple[Any, Any, float | None]:
    """The decoder stack, the LM head and the final-logit soft-cap of a causal LM, a PEFT-wrapped one too.

    A PeftModel's ``base_model`` is the LoRA wrapper whose forward returns logits; the causal LM inside it
    (``get_base_model()``) has the decoder stack as its own ``base_model``, whose LoRA layers stay in place.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    softcap = getattr(inner.config, "final_logit_softcapping", None)
    return inner.base_model, inner.get_output_embeddings(), softcap


class TimeBudgetMixin:
    """What both stages' trainers add for ``training.time_budget_minutes``: the learning-rate schedule laid over the
    budget, the budget's elapsed time saved in every checkpoint, and checkpointing time kept out of tokens/s."""

    time_budget: TimeBudget | None
    _excluded_seconds: float

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        trainer: Any = self
        if self.time_budget is None or trainer.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)  # type: ignore[misc]
        trainer.lr_scheduler = lambda_scheduler(optimizer or trainer.optimizer, self.time_budget)
        trainer._created_lr_scheduler = True
        return trainer.lr_scheduler

    def _save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        trainer: Any = self
        started = time.monotonic()
        try:
            super()._save_checkpoint(*args, **kwargs)  # type: ignore[misc]
            if self.time_budget is not None and trainer.is_world_process_zero():
                checkpoint = Path(trainer.args.output_dir or ".") / f"checkpoint-{trainer.state.global_step}"
                self.time_budget.save(checkpoint)  # before CheckpointCompleteCallback marks it complete
        finally:
            self._excluded_seconds += time.monotonic() - started


class SQLMasterTrainer(TimeBudgetMixin, SFTTrainer):
    """Adds ``tokens_per_second``/``tokens_seen`` to training logs, a time-budget schedule and the lean CPU loss."""

    def __init__(self, *args: Any, time_budget: TimeBudget | None = None, lean_loss: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.time_budget = time_budget
        self.lean_loss = lean_loss
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

    def compute_loss(self, model: Any, inputs: Any, return_outputs: Any = False, num_items_in_batch: Any = None) -> Any:
        if model.training:
            self.tokens_seen_local += count_real_tokens(inputs)
        if not self.lean_loss or return_outputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        loss, accuracy = completion_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # As Trainer.compute_loss does: num_items_in_batch counts every rank's tokens and DDP averages the
            # gradients over ranks, so each rank's share is scaled back up.
            loss = loss * self.accelerator.num_processes
        self._metrics["train" if model.training else "eval"]["mean_token_accuracy"].append(accuracy.item())
        return loss

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
