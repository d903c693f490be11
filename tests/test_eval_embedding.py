"""Embedding distance: the local model offline, the OpenAI path with a fake client, and selection by key."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sqlmaster.evaluate.embedding import (
    EMPTY_DISTANCE,
    LocalEmbedder,
    OpenAIEmbedder,
    cosine_distance,
    embedding_distances,
    select_embedder,
)


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


def test_local_model_distance_orders_sql_by_similarity(local: LocalEmbedder) -> None:
    reference = "SELECT name FROM singer WHERE age > 30"
    predictions = [reference, "SELECT name FROM singer WHERE age > 40", "SELECT COUNT(*) FROM stadium GROUP BY city"]
    same, close, far = embedding_distances(predictions, [reference] * 3, local)
    assert same == pytest.approx(0.0, abs=1e-5)
    assert 0.0 < close < far <= 1.0
    assert local.name == "local:all-MiniLM-L6-v2"


def test_empty_prediction_is_scored_as_orthogonal(local: LocalEmbedder) -> None:
    assert embedding_distances(["", "  "], ["SELECT 1", "SELECT 2"], local) == [EMPTY_DISTANCE, EMPTY_DISTANCE]


class _FakeOpenAI:
    """Records the texts it embeds; vectors are bag-of-characters counts (deterministic, no network)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(t.count(c)) for c in "SELECT*FROMWHEREabc"] for t in texts]


def test_openai_embedder_embeds_each_distinct_text_once() -> None:
    client = _FakeOpenAI()
    embedder = OpenAIEmbedder(client=client)
    distances = embedding_distances(["SELECT a", "SELECT a", "SELECT b"], ["SELECT a"] * 3, embedder)
    assert client.calls == [["SELECT a", "SELECT b"]]
    assert distances[0] == pytest.approx(0.0) and distances[1] == pytest.approx(0.0) and distances[2] > 0
    assert embedder.name == "openai:text-embedding-3-large@512"


def test_selection_follows_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    assert select_embedder().name == "openai:text-embedding-3-large@512"  # constructing does not call the API
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        select_embedder("openai")
    with pytest.raises(ValueError, match="unknown embedder"):
        select_embedder("word2vec")


def test_cosine_distance_basics() -> None:
    assert cosine_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert cosine_distance([1, 1], [2, 2]) == pytest.approx(0.0)
    assert cosine_distance([0, 0], [1, 1]) == EMPTY_DISTANCE
    with pytest.raises(ValueError, match="predictions for"):
        embedding_distances(["a"], [], OpenAIEmbedder(client=_FakeOpenAI()))
