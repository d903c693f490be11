"""Model registry (torch-free) and model/tokenizer loading (imports torch lazily)."""

from sqlmaster.models.registry import MODELS, ModelSpec, resolve_model

__all__ = ["MODELS", "ModelSpec", "resolve_model"]
