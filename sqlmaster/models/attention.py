"""Which attention kernel a model loads with: the one place that choice is made (``model.attn_implementation``).

``auto`` picks the fastest kernel that keeps packed examples apart exactly:

==========================  ==========================================================================
where                       choice
==========================  ==========================================================================
CUDA, flash-attn installed  ``flash_attention_2``: varlen kernel over the packed batch's ``cu_seq_lens``
                            (where a user's image has it; Dockerfile.train does not ship it)
CUDA, packing, no flash-attn ``flex_attention``: PyTorch's compiled kernel with a block-sparse document
                            mask that transformers builds from the position ids; blocks of the flat
                            pack outside the diagonal documents are skipped, not computed and masked
otherwise                   ``sdpa``: causal fast path for padded batches and generation; a packed batch
                            gets a dense block-diagonal mask there (exact, but attention then costs
                            (batch x max_length)^2)
==========================  ==========================================================================

Every choice is exact: no example attends to another (tests/test_gpu_levers.py compares per-example losses
of flex_attention and sdpa on CPU). This module imports no torch, so the recipe (sqlmaster/config.py) can
validate names without it.
"""

from __future__ import annotations

import importlib.util
import logging

from sqlmaster.errors import ConfigError

log = logging.getLogger("sqlmaster.models")

ATTN_CHOICES: tuple[str, ...] = ("auto", "flash_attention_2", "flex_attention", "sdpa", "eager")


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def choose_attention(requested: str, device: str, *, packing: bool = False) -> str:
    """The attention implementation for ``requested`` (a recipe value) on ``device``.

    ``packing`` says the model will see padding-free packed batches (training with ``training.packing``);
    generation and padded training pass False.
    """
    if requested not in ATTN_CHOICES:
        raise ConfigError(f"model.attn_implementation must be one of {', '.join(ATTN_CHOICES)}, not {requested!r}")
    on_cuda = device.startswith("cuda")
    if requested == "flash_attention_2" and not flash_attn_available():
        raise ConfigError(
            "model.attn_implementation=flash_attention_2 but the flash-attn package is not installed. "
            "Install it (GPU image) or use model.attn_implementation=auto"
        )
    if requested != "auto":
        return requested
    if on_cuda and flash_attn_available():
        return "flash_attention_2"
    if on_cuda and packing:
        log.info(
            "attention: flash-attn is not installed; packed examples use flex_attention with a block-sparse document "
            "mask (exact isolation). Set model.attn_implementation to override"
        )
        return "flex_attention"
    return "sdpa"
