"""What a run leaves behind: run.json, metrics.json, a verified adapter, optional merged weights and hub push."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError
from sqlmaster.rundir import ADAPTER_WEIGHTS_FILE

log = logging.getLogger("sqlmaster.train")

EMBEDDING_LAYERS = ("embed_tokens", "lm_head")  # peft.utils.constants.EMBEDDING_LAYER_NAMES
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers", "wandb", "sqlmaster")


def save_without_hub_lookup(model: Any) -> None:
    """Make ``model.save_pretrained`` (a PEFT model's: the final adapter and every checkpoint) never ask the hub.

    PEFT's default ``save_embedding_layers="auto"`` looks the base model's config.json up on the hub whenever
    ``base_model_name_or_path`` is no local directory (a hub id: a model fetched offline or loaded from the hub
    cache), to see whether the vocabulary was resized (peft/utils/save_and_load.py); with no network that prints
    "Unable to fetch remote file ..." and "Could not find a config file ..." at every save. Our runs never resize
    the vocabulary, so "auto" means: save the embedding layers when LoRA targets them, which is decided here
    without the lookup. A full (non-PEFT) model is left alone.
    """
    import functools

    config = (getattr(model, "peft_config", None) or {}).get("default")
    if config is None or getattr(model, "_sqlmaster_saves_offline", False):
        return
    targets = config.target_modules
    names = [name for name, _ in model.named_modules()]
    if isinstance(targets, str):  # a regular expression over module names, as PEFT matches it
        targeted = any(re.fullmatch(targets, n) and n.rsplit(".", 1)[-1] in EMBEDDING_LAYERS for n in names)
    else:
        targeted = any(t in EMBEDDING_LAYERS for t in targets or ())
    model.save_pretrained = functools.partial(type(model).save_pretrained, model, save_embedding_layers=targeted)
    model._sqlmaster_saves_offline = True


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The source commit: SQLMASTER_GIT_COMMIT (baked into images) or ``git rev-parse`` next to the package."""
    if os.environ.get("SQLMASTER_GIT_COMMIT"):
        return os.environ["SQLMASTER_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def verify_adapter(adapter_dir: Path) -> int:
    """Check the saved adapter holds real tensors; return their parameter count.

    The original project pushed a 48-byte adapter (saved after merge_and_unload, so it held no tensors); this
    turns that failure into an error at the end of training instead of a discovery after the upload.
    """
    from safetensors import safe_open

    weights = adapter_dir / ADAPTER_WEIGHTS_FILE
    if not weights.is_file():
        raise RuntimeError(f"{weights} was not written: the adapter is missing")
    total = 0
    with safe_open(str(weights), framework="pt") as fh:
        keys = list(fh.keys())
        for key in keys:
            total += _numel(fh.get_slice(key).get_shape())
    if not keys or total == 0:
        raise RuntimeError(f"{weights} holds no tensors ({weights.stat().st_size} bytes): the adapter is empty")
    return total


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def push_adapter(adapter_dir: Path, repo_id: str) -> str:
    """Upload the adapter directory (weights, config, tokenizer) to a private hub repository."""
    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ConfigError("output.push_to_hub needs HF_TOKEN in the environment. Set it or disable the push")
    verify_adapter(adapter_dir)
    api = HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="model", private=True, exist_ok=True)
    api.upload_folder(
        folder_path=str(adapter_dir),
        repo_id=repo_id,
        repo_type="model",
        commit_message="SQLMaster LoRA adapter",
    )
    url = f"https://huggingface.co/{repo_id}"
    log.info("adapter pushed to %s", url)
    return url


def save_merged(peft_model: Any, tokenizer: Any, merged_dir: Path) -> Path:
    """Merge the adapter into the base weights and save them (the adapter on disk is left as it is).

    ``merge_and_unload`` changes the in-memory model, so this runs after the adapter was saved and verified.
    """
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(merged_dir, safe_serialization=True)
    tokenizer.save_pretrained(merged_dir)
    log.info("merged model saved to %s", merged_dir)
    return merged_dir
