"""Read the model registry (`sqlmaster.models.registry.MODELS`) without duplicating any of its facts.

The registry is the one place that says which models exist and which are gated (need HF_TOKEN).
It is torch-free at import (a test guards that), and sqlctl imports it only inside the commands that
need it, so `sqlctl --help` stays fast. The spec objects are read generically (dataclass, mapping or
plain object) so that sqlctl does not depend on the registry's exact field list beyond `gated`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlctl.errors import SqlctlError

_HUB_KEYS = ("hub_id", "repo_id", "model_id", "hf_id", "base_model")


@dataclass(frozen=True)
class ModelInfo:
    """What sqlctl needs to know about one registry model."""

    name: str
    gated: bool
    hub_id: str
    fields: dict[str, Any]  # every scalar field of the registry entry, for `sqlctl models`


def _fields(spec: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        raw = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    elif isinstance(spec, dict):
        raw = dict(spec)
    else:
        raw = {k: v for k, v in vars(spec).items() if not k.startswith("_")}
    return {k: v for k, v in raw.items() if v is None or isinstance(v, str | int | float | bool)}


def load_models() -> dict[str, ModelInfo]:
    """All registry models by name (import happens here, lazily)."""
    try:
        from sqlmaster.models.registry import MODELS
    except ImportError as exc:
        raise SqlctlError(
            f"cannot import the model registry sqlmaster.models.registry ({exc})",
            "Install the sqlmaster package (pip install -e .) or run sqlctl from the repository root.",
        ) from exc
    models: dict[str, ModelInfo] = {}
    for name, spec in dict(MODELS).items():
        fields = _fields(spec)
        hub_id = next((str(fields[k]) for k in _HUB_KEYS if fields.get(k)), "")
        models[str(name)] = ModelInfo(
            name=str(name), gated=bool(fields.get("gated", False)), hub_id=hub_id, fields=fields
        )
    return models


def cluster_models(models: dict[str, ModelInfo], available: list[str]) -> list[str]:
    """`--model all`: the registry's 7B models (`SEVEN_B_MODELS`) that have a jobs/ values file."""
    from sqlmaster.models import registry

    seven_b = getattr(registry, "SEVEN_B_MODELS", None)
    names = list(seven_b) if seven_b else [n for n in models if n != "tiny"]
    return [name for name in names if name in models and name in available]
