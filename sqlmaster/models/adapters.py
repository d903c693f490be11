"""A LoRA adapter is checked before it is used, never loaded blindly.

At save, ``sqlmaster train`` records what it wrote in run.json (``adapter_record``: the weights file's
size and sha256, the digest of its tensor names and shapes, the parameter count, the base model it adapts).
Evaluation and ``--init-from`` then check, before any model loads:

* the safetensors header is readable and bounded (a damaged header was a traceback in safetensors' loader);
* the file is the one the run saved (size, sha256, shapes): a foreign or replaced adapter is refused;
* every weight is finite: an adapter of NaN or infinity made every prediction empty and scored 0.0% with exit 0.

    record = adapter_record(adapter_dir)                     # at save
    check_adapter(adapter_dir, record, "--adapter runs/x")   # before loading; ConfigError: one line, exit 2
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

from sqlmaster import boundedjson
from sqlmaster.errors import ConfigError
from sqlmaster.rundir import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE

MAX_HEADER_BYTES = 16 << 20  # safetensors caps its header at 100 MB; an adapter's is a few KB


def adapter_record(adapter_dir: Path) -> dict[str, Any]:
    """What run.json records of a saved adapter (see the module docstring)."""
    weights = adapter_dir / ADAPTER_WEIGHTS_FILE
    header = read_header(weights, str(adapter_dir))
    config = boundedjson.load_file(adapter_dir / ADAPTER_CONFIG_FILE, "adapter config")
    return {
        "bytes": weights.stat().st_size,
        "sha256": _sha256(weights),
        "shapes_sha256": _shapes_digest(header),
        "parameters": sum(_numel(entry["shape"]) for entry in header.values()),
        "base_model": config.get("base_model_name_or_path") if isinstance(config, dict) else None,
    }


def recorded_adapter(run_info: dict[str, Any]) -> dict[str, Any] | None:
    """run.json's record of the adapter its run saved (None: a run from before the record, or none)."""
    record = run_info.get("adapter_record")
    return record if isinstance(record, dict) else None


def check_adapter(adapter_dir: Path, record: dict[str, Any] | None, what: str) -> None:
    """Refuse an adapter that is damaged, not the one ``record`` describes (when given) or not finite."""
    weights = adapter_dir / ADAPTER_WEIGHTS_FILE
    if not weights.is_file():
        raise ConfigError(f"{what}: {weights} is missing; the run did not finish saving its adapter. Retrain it")
    header = read_header(weights, what)
    if isinstance(record, dict) and record.get("sha256"):
        fix = "Restore the run's own adapter/ or train again"
        if weights.stat().st_size != record.get("bytes") or _sha256(weights) != record["sha256"]:
            raise ConfigError(
                f"{what}: {weights} is not the adapter this run saved (its size or sha256 differs from run.json's "
                f"record: replaced or damaged). {fix}"
            )
        if _shapes_digest(header) != record.get("shapes_sha256"):
            raise ConfigError(f"{what}: {weights} has other LoRA tensors than this run saved. {fix}")
    _check_finite(weights, what)


def read_header(weights: Path, what: str) -> dict[str, Any]:
    """The safetensors header of ``weights`` ({tensor name: {dtype, shape, data_offsets}}), checked against the
    file's size; a damaged one is a ConfigError."""
    damaged = f"{what}: {weights} is damaged"
    try:
        size = weights.stat().st_size
        with open(weights, "rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
                raise ConfigError(f"{damaged} (its header length {length:,} does not fit the file). Retrain it")
            text = handle.read(length).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{damaged} (its header is not UTF-8). Retrain it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {weights} ({exc.strerror or exc}). Check the path") from None
    header = boundedjson.loads(text, f"{weights}'s header")
    if not isinstance(header, dict):
        raise ConfigError(f"{damaged} (its header is not a JSON object). Retrain it")
    header.pop("__metadata__", None)
    body = size - 8 - length
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ConfigError(f"{damaged} (tensor {name} has no valid shape). Retrain it")
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= body):
            raise ConfigError(f"{damaged} (tensor {name} lies outside the file: truncated). Retrain it")
    return header


def _check_finite(weights: Path, what: str) -> None:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{what}: {weights} is damaged ({' '.join(str(exc).split())[:200]}). Retrain it") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(
                f"{what}: {weights} holds NaN or infinite weights ({name}): every prediction would be empty. "
                "Retrain it (a diverged run stops with status diverged), or pass another adapter"
            )


def _shapes_digest(header: dict[str, Any]) -> str:
    text = "\n".join(f"{name}:{header[name].get('dtype')}:{header[name]['shape']}" for name in sorted(header))
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
