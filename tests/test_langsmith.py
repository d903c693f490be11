"""LangSmith sync against a fake client: idempotent dataset upload, experiments with feedback, skip without key."""

from __future__ import annotations

import logging
import types
import uuid
from typing import Any

import pytest

from sqlmaster.evaluate import langsmith_sync
from sqlmaster.evaluate.datasets import EvalDataset, EvalExample
from sqlmaster.evaluate.langsmith_sync import HASH_KEY, content_hash, sync_evaluation


class FakeClient:
    """Records every call; keeps datasets and examples in memory like the service would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.datasets: dict[str, types.SimpleNamespace] = {}
        self.examples: dict[str, list[types.SimpleNamespace]] = {}

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    def has_dataset(self, *, dataset_name: str) -> bool:
        return dataset_name in self.datasets

    def read_dataset(self, *, dataset_name: str) -> types.SimpleNamespace:
        return self.datasets[dataset_name]

    def create_dataset(self, name: str, **kwargs: Any) -> types.SimpleNamespace:
        self._record("create_dataset", name=name, **kwargs)
        dataset = types.SimpleNamespace(id=str(uuid.uuid4()), name=name)
        self.datasets[name] = dataset
        self.examples[dataset.id] = []
        return dataset

    def list_examples(self, *, dataset_id: str) -> list[types.SimpleNamespace]:
        return list(self.examples[dataset_id])

    def create_examples(self, *, dataset_id: str, examples: list[dict[str, Any]]) -> dict[str, Any]:
        self._record("create_examples", dataset_id=dataset_id, examples=examples)
        for ex in examples:
            self.examples[dataset_id].append(types.SimpleNamespace(id=ex["id"], metadata=ex["metadata"]))
        return {"count": len(examples)}

    def create_project(self, name: str, **kwargs: Any) -> types.SimpleNamespace:
        self._record("create_project", name=name, **kwargs)
        return types.SimpleNamespace(id=f"project-{name}")

    def create_run(self, **kwargs: Any) -> None:
        self._record("create_run", **kwargs)

    def create_feedback(self, run_id: Any, key: str, **kwargs: Any) -> None:
        self._record("create_feedback", run_id=run_id, key=key, **kwargs)


def _dataset(n: int = 3) -> EvalDataset:
    examples = [EvalExample(f"test-{i}", f"question {i}", "CREATE TABLE t (a INT)", f"SELECT {i}") for i in range(n)]
    return EvalDataset("sql-create-context-test", examples)


def _records(dataset: EvalDataset) -> list[dict[str, Any]]:
    return [
        {
            **ex.to_dict(),
            "prediction": "SELECT 1",
            "execution_match": ex.answer == "SELECT 1",
            "exact_match": False,
            "embedding_distance": 0.25,
            "latency_s": 0.5,
            "tokens": 4,
        }
        for ex in dataset.examples
    ]


METRICS = {
    "execution_accuracy": 1 / 3,
    "exact_match": 0.0,
    "executes": 1.0,
    "embedding_distance": 0.25,
    "model": "tiny",
    "run_id": "r1",
    "n": 3,
}


def test_rerun_adds_no_duplicate_examples() -> None:
    client = FakeClient()
    dataset = _dataset()
    sync_evaluation(dataset, _records(dataset), METRICS, client=client)
    sync_evaluation(dataset, _records(dataset), METRICS, client=client)
    assert client.count("create_dataset") == 1
    assert client.count("create_examples") == 1  # the second run found every example by its hash
    stored = client.examples[client.datasets["sqlmaster-sql-create-context-test"].id]
    assert len(stored) == 3
    assert {ex.metadata[HASH_KEY] for ex in stored} == {
        content_hash(ex.question, ex.context, ex.answer) for ex in dataset.examples
    }
    # A grown dataset adds only the new example.
    bigger = _dataset(4)
    sync_evaluation(bigger, _records(bigger), METRICS, client=client)
    last = [kw for name, kw in client.calls if name == "create_examples"][-1]
    assert [ex["inputs"]["question"] for ex in last["examples"]] == ["question 3"]


def test_each_evaluation_is_an_experiment_with_feedback() -> None:
    client = FakeClient()
    dataset = _dataset()
    first = sync_evaluation(dataset, _records(dataset), METRICS, client=client)
    second = sync_evaluation(dataset, _records(dataset), METRICS, client=client)
    assert first != second and client.count("create_project") == 2
    project = next(kw for name, kw in client.calls if name == "create_project")
    assert project["reference_dataset_id"] == client.datasets["sqlmaster-sql-create-context-test"].id
    runs = [kw for name, kw in client.calls if name == "create_run"]
    assert len(runs) == 6
    example_ids = {ex["id"] for ex in next(kw for n, kw in client.calls if n == "create_examples")["examples"]}
    assert {run["reference_example_id"] for run in runs} == example_ids
    feedback = [kw for name, kw in client.calls if name == "create_feedback"]
    per_run = [f for f in feedback if f["run_id"] is not None]
    summary = [f for f in feedback if f["run_id"] is None]
    assert len(per_run) == 2 * 3 * 3  # two experiments x three examples x three per-example metrics
    assert {f["key"] for f in summary} == {"execution_accuracy", "exact_match", "executes", "embedding_distance"}
    assert all(f["project_id"].startswith("project-") for f in summary)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_without_key_it_skips_and_says_so_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    monkeypatch.setattr(langsmith_sync, "_skip_logged", False)
    logger = logging.getLogger("sqlmaster.evaluate.langsmith_sync")
    handler = _Lines()
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not an attribute patch: it clears logging's level cache
    dataset = _dataset()
    try:
        assert sync_evaluation(dataset, _records(dataset), METRICS) is None
        assert sync_evaluation(dataset, _records(dataset), METRICS) is None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    assert [line for line in handler.lines if "LANGSMITH_API_KEY" in line] == [
        "LANGSMITH_API_KEY is not set: skipping the LangSmith sync (results are on disk)"
    ]
