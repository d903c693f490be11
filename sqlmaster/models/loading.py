"""Loading tokenizers, base models and trained runs: the one place both training and evaluation load from.

Stable API (evaluation imports it):

    load_tokenizer(spec, *, for_generation, path=None, revision=None)   -> tokenizer
    load_base_model(spec, model_cfg, *, device=None, path=None)         -> model
    load_trained(run_dir, *, device=None, merged=False, for_generation=True) -> (model, tokenizer, run_info)

A LoRA run is loaded as base + adapter *without* merging (``PeftModel.from_pretrained``): the adapter on disk
is what is evaluated, so an empty or broken adapter cannot hide behind merged weights (the original project
pushed a 48-byte adapter after ``merge_and_unload``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlmaster.config import ModelConfig
from sqlmaster.errors import ConfigError
from sqlmaster.hub import with_hub_retries
from sqlmaster.models.adapters import check_adapter, recorded_adapter
from sqlmaster.models.registry import ModelSpec, resolve_model
from sqlmaster.rundir import ADAPTER_CONFIG_FILE, TOKENIZER_CONFIG_FILE, RunDir

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

T = TypeVar("T")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def offline_weights(spec: ModelSpec) -> Path | None:
    """The fetched offline copy to load ``spec`` from when the hub cannot be reached; None = load from the hub.

    Only registry models with an offline source (sqlmaster/models/offline.py) have one; a missing fetch is the
    one-line error that names ``sqlmaster models fetch``.
    """
    from sqlmaster.hub import hub_reachable
    from sqlmaster.models.offline import require_fetched

    if spec.offline is None or hub_reachable():
        return None
    return require_fetched(spec)


def hf_token(spec: ModelSpec) -> str | None:
    """The Hugging Face token from the environment; a gated hub model without one is a configuration error."""
    token = os.environ.get("HF_TOKEN") or None
    if spec.gated and token is None and not Path(spec.hub_id).exists() and offline_weights(spec) is None:
        raise ConfigError(
            f"model {spec.name!r} ({spec.hub_id}) is gated on the Hugging Face hub and HF_TOKEN is not set. "
            "Accept its licence on the hub and export HF_TOKEN (in the cluster: the sqlmaster-keys Secret)"
        )
    return token


def resolve_dtype(model_cfg: ModelConfig, device: str) -> torch.dtype:
    """``auto``: bf16 on GPU, fp32 on CPU (CPU bf16 is done with autocast in training, not in the weights)."""
    import torch

    if model_cfg.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[model_cfg.dtype]


def resolve_attn_implementation(model_cfg: ModelConfig, device: str, *, packing: bool = False) -> str:
    """The recipe's attention choice on ``device``; ``auto`` is decided in sqlmaster/models/attention.py."""
    from sqlmaster.models.attention import choose_attention

    return choose_attention(model_cfg.attn_implementation, device, packing=packing)


def load_tokenizer(
    spec: ModelSpec,
    *,
    for_generation: bool,
    path: str | Path | None = None,
    revision: str | None = None,
) -> PreTrainedTokenizerBase:
    """The model's tokenizer with the registry's pad token and padding side.

    Training pads on the right; generation pads on the left (a decoder-only model continues the last token).
    ``path`` loads from a directory instead of the hub (a run's ``adapter/``, ``model/`` or ``base/``).
    """
    from transformers import AutoTokenizer

    if spec.is_tiny and path is None:
        raise ConfigError(
            "the tiny model has no pretrained tokenizer: it is trained per run. Load a run with load_trained(run_dir)"
        )
    path = path if path is not None else offline_weights(spec)
    source = str(path) if path is not None else spec.hub_id
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if path is None:
        kwargs.update(revision=revision or spec.revision, token=hf_token(spec))
    tokenizer = _from_pretrained(
        f"the tokenizer of {source}", lambda: AutoTokenizer.from_pretrained(source, **kwargs), hub=path is None
    )
    set_pad_token(tokenizer, spec)
    tokenizer.padding_side = spec.padding_side_generate if for_generation else spec.padding_side_train
    return tokenizer


def set_pad_token(tokenizer: PreTrainedTokenizerBase, spec: ModelSpec) -> None:
    if spec.pad_token is not None:
        if spec.pad_token not in tokenizer.get_vocab():
            raise ConfigError(
                f"pad token {spec.pad_token!r} of model {spec.name!r} is not in its tokenizer's vocabulary"
            )
        tokenizer.pad_token = spec.pad_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_base_model(
    spec: ModelSpec,
    model_cfg: ModelConfig,
    *,
    device: str | None = None,
    path: str | Path | None = None,
    packing: bool = False,
) -> PreTrainedModel:
    """The base model in the recipe's dtype and attention implementation, on ``device``.

    ``path`` loads from a local directory (tiny's ``base/``, a merged model); otherwise the hub id of ``spec``
    at ``model_cfg.revision`` (or the registry's pin) with HF_TOKEN for gated models. ``packing``: the model
    will train on padding-free packed batches (it can change the attention kernel ``auto`` picks).
    """
    from transformers import AutoModelForCausalLM

    if spec.is_tiny and path is None:
        raise ConfigError(
            "the tiny model has no pretrained weights: it is built per run (sqlmaster.models.tiny). "
            "Load a trained run with load_trained(run_dir)"
        )
    offline = path is None and (path := offline_weights(spec)) is not None
    device = device or default_device()
    source = str(path) if path is not None else spec.hub_id
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(model_cfg, device),
        "attn_implementation": resolve_attn_implementation(model_cfg, device, packing=packing),
        "trust_remote_code": spec.trust_remote_code,
    }
    if path is None:
        kwargs.update(revision=model_cfg.revision or spec.revision, token=hf_token(spec))
    model = _from_pretrained(
        f"model {source}", lambda: AutoModelForCausalLM.from_pretrained(source, **kwargs), hub=path is None
    )
    if path is not None and offline:
        # Adapters name their base by this (adapter_config.json): the hub id, not this machine's cache path.
        model.name_or_path = model.config.name_or_path = spec.hub_id
    import torch

    return model.to(torch.device(device))  # type: ignore[arg-type]  # transformers mis-types .to


def _from_pretrained(what: str, load: Callable[[], T], *, hub: bool) -> T:
    """``load()``; an unreachable hub is retried and then exit 1 (sqlmaster.hub), any other failure is exit 2."""

    def config_error(exc: Exception) -> ConfigError:
        return ConfigError(f"cannot load {what}: {' '.join(str(exc).split())}")

    if hub:
        return with_hub_retries(what, load, config_error=config_error)
    try:
        return load()
    except (OSError, ValueError) as exc:
        raise config_error(exc) from None


def read_run_info(run_dir: Path) -> dict[str, Any]:
    from sqlmaster import boundedjson

    path = RunDir(run_dir).run_info
    try:
        info = boundedjson.load_file(path, "run record")
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is not a training run directory (no {path.name}). Check the path") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{path} does not hold a JSON object; it was not written by `sqlmaster train`")
    return info


def load_trained(
    run_dir: str | Path,
    *,
    device: str | None = None,
    merged: bool = False,
    for_generation: bool = True,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Load a trained run for inference: ``(model, tokenizer, run_info)``, model in eval mode on ``device``.

    - LoRA runs: the base (hub id at the recorded revision, or ``base/`` for tiny) + ``adapter/``, not merged.
    - full runs: ``model/``.
    - ``merged=True``: ``merged/`` (written with output.merge).

    ``run_dir`` may also be a bare adapter directory (holding ``adapter_config.json``); its base is then read
    from the adapter config and ``run_info`` is minimal.
    """

    rd = RunDir(run_dir)
    device = device or default_device()
    if not rd.is_run() and (rd.path / ADAPTER_CONFIG_FILE).exists():
        return _load_bare_adapter(rd.path, device=device, for_generation=for_generation)
    info = read_run_info(rd.path)
    base = info.get("base_model") or {}
    spec = resolve_model(base.get("name") or base.get("hub_id") or "")
    model_cfg = ModelConfig(**_known(ModelConfig, (info.get("recipe") or {}).get("model") or {}))

    if merged:
        directory = rd.merged
        if not directory.is_dir():
            raise ConfigError(f"{directory} does not exist: the run was trained without output.merge=true")
        return (*_load_dir(directory, spec, model_cfg, device, for_generation), info)
    if base.get("init") == "random":
        raise ConfigError(
            f"{run_dir} was trained from random weights (model.init=random, a throughput benchmark) whose base was "
            "not saved, so it cannot be evaluated. Train with model.init=pretrained"
        )
    if info.get("mode") == "full":
        return (*_load_dir(rd.model, spec, model_cfg, device, for_generation), info)

    adapter_dir = rd.adapter
    if not (adapter_dir / ADAPTER_CONFIG_FILE).exists():
        raise ConfigError(f"{adapter_dir} holds no {ADAPTER_CONFIG_FILE}; the run did not finish saving its adapter")
    check_adapter(adapter_dir, recorded_adapter(info), f"run {rd.path}")
    base_model = load_base_model(spec, model_cfg, device=device, path=recorded_base_path(rd.path, spec, base))
    tokenizer = load_tokenizer(spec, for_generation=for_generation, path=adapter_dir)
    model = peft_from_pretrained(base_model, adapter_dir, trainable=False).to(device)
    model.eval()
    return model, tokenizer, info


def recorded_base_path(run_dir: Path, spec: ModelSpec, base: dict[str, Any]) -> Path | None:
    """Where a run's base weights load from: its own ``base/`` (tiny), the offline copy it trained on, or the hub."""
    from sqlmaster.models.offline import require_fetched

    if base.get("path"):
        return run_dir / base["path"]
    if base.get("weights") == "offline":  # trained on the dequantized GGUF: evaluate on the same weights
        return require_fetched(spec)
    return None


def _load_dir(
    directory: Path, spec: ModelSpec, model_cfg: ModelConfig, device: str, for_generation: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not directory.is_dir():
        raise ConfigError(f"{directory} does not exist; the run did not finish saving its model")
    model = load_base_model(spec, model_cfg, device=device, path=directory)
    model.eval()
    return model, load_tokenizer(spec, for_generation=for_generation, path=directory)


def _load_bare_adapter(
    adapter_dir: Path, *, device: str, for_generation: bool
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase, dict[str, Any]]:
    from peft import PeftConfig

    check_adapter(adapter_dir, None, f"adapter {adapter_dir}")
    try:
        peft_cfg = PeftConfig.from_pretrained(str(adapter_dir))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{adapter_dir}/{ADAPTER_CONFIG_FILE} cannot be read ({exc}). Restore it") from None
    base_id = peft_cfg.base_model_name_or_path or ""
    spec = resolve_model(base_id)  # a registry model's hub id gets its registry facts (pad token, pin)
    model_cfg = ModelConfig()
    base_model = load_base_model(spec, model_cfg, device=device)
    has_tokenizer = (adapter_dir / TOKENIZER_CONFIG_FILE).exists()
    tokenizer = load_tokenizer(spec, for_generation=for_generation, path=adapter_dir if has_tokenizer else None)
    model = peft_from_pretrained(base_model, adapter_dir, trainable=False).to(device)
    model.eval()
    info: dict[str, Any] = {
        "base_model": {"name": spec.name, "hub_id": spec.hub_id},
        "mode": "lora",
        "adapter": str(adapter_dir),
    }
    return model, tokenizer, info


def peft_from_pretrained(base_model: Any, adapter_dir: Path, *, trainable: bool) -> Any:
    """``PeftModel.from_pretrained``; an adapter whose tensors do not fit the base (foreign weights) is one line."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base_model, adapter_dir, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"the adapter in {adapter_dir} does not fit the base model ({reason}): it was trained on another model. "
            "Pass the adapter of a run of this model"
        ) from None


def _known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Keep only fields ``cls`` knows, so a run written by a newer version still loads."""
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}
