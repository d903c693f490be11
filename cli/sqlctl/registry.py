"""Read the model registry (`sqlmaster.models.registry`) without duplicating any of its facts.

The registry is the one place that says which models exist and which are gated (need HF_TOKEN). It is
torch-free at import (a test guards that), and sqlctl imports it only inside the commands that need it, so
`sqlctl --help` stays fast. A model is a `ModelSpec`, read through its own fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlctl.errors import SqlctlError

if TYPE_CHECKING:
    from sqlmaster.models.registry import ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    """What sqlctl needs to know about one registry model."""

    name: str
    gated: bool
    hub_id: str
    fields: dict[str, Any]  # every scalar field of the registry entry, for `sqlctl models`


def _scalar_fields(spec: ModelSpec) -> dict[str, Any]:
    raw = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return {k: v for k, v in raw.items() if v is None or isinstance(v, str | int | float | bool)}


def _registry() -> Any:
    """The registry module, imported here (lazily) with a clear error when sqlmaster is not installed."""
    try:
        from sqlmaster.models import registry
    except ImportError as exc:
        raise SqlctlError(
            f"cannot import the model registry sqlmaster.models.registry ({exc})",
            "Install the sqlmaster package (pip install -e .) or run sqlctl from the repository root.",
        ) from exc
    return registry


def load_models() -> dict[str, ModelInfo]:
    """All registry models by name."""
    specs: dict[str, ModelSpec] = _registry().MODELS
    return {
        name: ModelInfo(name=name, gated=spec.gated, hub_id=spec.hub_id, fields=_scalar_fields(spec))
        for name, spec in specs.items()
    }


def cluster_models(models: dict[str, ModelInfo], available: list[str]) -> list[str]:
    """`--model all`: the registry's 7B models (`SEVEN_B_MODELS`) that have a jobs/ values file."""
    seven_b: tuple[str, ...] = _registry().SEVEN_B_MODELS
    return [name for name in seven_b if name in models and name in available]
