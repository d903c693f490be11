"""``model.init: random``: a registry model's architecture with random weights, trained without a download.

Throughput does not depend on what the weights are, so ``scripts/gpu-suite.sh`` measures the 7B recipes this
way on a machine that cannot reach the hub: the architecture comes from the registry's shipped config.json
values (or ``config.json`` in a local directory given as the model), the tokenizer is the ``tiny`` model's BPE
tokenizer trained on the run's own training texts with the model's vocabulary size, and the weights are
initialised directly on the training device (seconds for 7B on a GPU; nothing is built on the CPU first).
Such a run learns nothing useful and its base is not saved, so it cannot be evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmaster.config import ModelConfig
from sqlmaster.errors import ConfigError
from sqlmaster.models.registry import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def architecture_values(spec: ModelSpec) -> dict[str, Any]:
    """The config.json values of ``spec``: the registry's shipped file, or ``<local dir>/config.json``."""
    if spec.config_file is not None:
        values = dict(spec.config())
    else:
        path = Path(spec.hub_id) / "config.json"
        if not path.is_file():
            raise ConfigError(
                f"model.init=random needs the architecture of {spec.name!r}: use a registry name "
                "(gemma7b, mistral7b, llama2-7b) or a local directory holding a config.json"
            )
        values = json.loads(path.read_text())
    return {k: v for k, v in values.items() if not k.startswith("_") and k not in ("architectures", "auto_map")}


def build_random(
    spec: ModelSpec,
    model_cfg: ModelConfig,
    texts: Iterable[str],
    *,
    device: str,
    seed: int,
    packing: bool,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A randomly initialised model shaped like ``spec`` on ``device`` and a tokenizer trained on ``texts``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from sqlmaster.models.loading import resolve_attn_implementation, resolve_dtype, set_pad_token
    from sqlmaster.models.tiny import train_tokenizer

    values = architecture_values(spec)
    model_type = values.pop("model_type", None)
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"model.init=random cannot build {spec.name!r}: its architecture ({model_type}) needs remote code "
            "from the hub. Use gemma7b, mistral7b or llama2-7b"
        )
    tokenizer = train_tokenizer(texts, vocab_size=int(values["vocab_size"]))
    set_pad_token(tokenizer, spec)
    tokenizer.padding_side = spec.padding_side_train
    values.update(
        vocab_size=max(int(values["vocab_size"]), len(tokenizer)),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = AutoConfig.for_model(model_type, **values)
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            config,
            dtype=resolve_dtype(model_cfg, device),
            attn_implementation=resolve_attn_implementation(model_cfg, device, packing=packing),
        )
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    return model, tokenizer
