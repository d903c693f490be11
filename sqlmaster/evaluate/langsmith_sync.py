"""Mirror evaluations to LangSmith (optional): the dataset once, each evaluation as an experiment.

With ``LANGSMITH_API_KEY`` set, every ``sqlmaster eval run``:

1. creates the LangSmith dataset ``sqlmaster-<dataset>`` if missing and adds only examples it does not hold
   yet. Each example carries a content hash (sha256 of question, context and answer) in its metadata and a
   UUID derived from that hash, so re-running an evaluation never duplicates examples;
2. logs the evaluation as an experiment (a project linked to the dataset): one run per example with the
   prediction, per-example feedback (execution match, exact match, embedding distance) and the summary
   metrics as experiment-level feedback.

Without the key nothing is sent and one log line says so. The key is read by the langsmith client from the
environment; it is never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

DATASET_PREFIX = "sqlmaster-"
HASH_KEY = "content_hash"
# Namespace for example ids: uuid5(namespace, content hash) is the same id on every machine and every run.
EXAMPLE_NAMESPACE = uuid.UUID("6f1f4c55-6a43-4d8e-9b7e-5d0c2a1f3b21")
EXAMPLE_FEEDBACK = ("execution_match", "exact_match", "embedding_distance")
SUMMARY_FEEDBACK = ("execution_accuracy", "exact_match", "executes", "embedding_distance")

_skip_logged = False


def content_hash(question: str, context: str, answer: str) -> str:
    payload = json.dumps({"question": question, "context": context, "answer": answer}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def example_id(digest: str) -> str:
    return str(uuid.uuid5(EXAMPLE_NAMESPACE, digest))


def default_client() -> Any:
    """A langsmith Client when LANGSMITH_API_KEY is set; None (logged once per process) otherwise."""
    global _skip_logged
    if not os.environ.get("LANGSMITH_API_KEY"):
        if not _skip_logged:
            log.info("LANGSMITH_API_KEY is not set: skipping the LangSmith sync (results are on disk)")
            _skip_logged = True
        return None
    from langsmith import Client

    return Client()


def ensure_dataset(client: Any, name: str, rows: Iterable[dict[str, Any]], description: str = "") -> dict[str, str]:
    """Create or update dataset ``name`` so it holds every row; returns ``{content_hash: example_id}``.

    Idempotent: examples already present (by the content hash in their metadata) are not added again.
    """
    if client.has_dataset(dataset_name=name):
        dataset = client.read_dataset(dataset_name=name)
    else:
        dataset = client.create_dataset(name, description=description or f"SQLMaster evaluation set {name}")
    present: dict[str, str] = {}
    for example in client.list_examples(dataset_id=dataset.id):
        digest = (example.metadata or {}).get(HASH_KEY)
        if digest:
            present[digest] = str(example.id)

    new: dict[str, dict[str, Any]] = {}
    for row in rows:
        digest = content_hash(row["question"], row["context"], row["answer"])
        if digest in present or digest in new:
            continue
        metadata = {HASH_KEY: digest, **{k: row[k] for k in ("id", "db_id") if row.get(k)}}
        new[digest] = {
            "id": example_id(digest),
            "inputs": {"question": row["question"], "context": row["context"]},
            "outputs": {"answer": row["answer"]},
            "metadata": metadata,
        }
    if new:
        client.create_examples(dataset_id=dataset.id, examples=list(new.values()))
        log.info("LangSmith dataset %s: added %d examples (%d already present)", name, len(new), len(present))
    return {**present, **{digest: item["id"] for digest, item in new.items()}}


def log_experiment(
    client: Any, dataset_name: str, ids: dict[str, str], records: list[dict[str, Any]], metrics: dict[str, Any]
) -> str:
    """Log one evaluation as an experiment on ``dataset_name``; returns the experiment (project) name."""
    dataset = client.read_dataset(dataset_name=dataset_name)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    label = metrics.get("model") or "model"
    if metrics.get("run_id"):
        label = f"{label}-{metrics['run_id']}"
    name = f"{dataset_name.removeprefix(DATASET_PREFIX)}-{label}-{stamp}-{uuid.uuid4().hex[:6]}"
    summary = {k: metrics.get(k) for k in (*SUMMARY_FEEDBACK, "model", "adapter", "template", "backend", "n")}
    project = client.create_project(
        name, reference_dataset_id=dataset.id, metadata=summary, description="sqlmaster eval run"
    )
    now = datetime.now(UTC)
    for record in records:
        run_id = uuid.uuid4()
        latency = float(record.get("latency_s") or 0.0)
        client.create_run(
            name="sqlmaster-generate",
            inputs={"question": record["question"], "context": record["context"]},
            run_type="llm",
            project_name=name,
            id=run_id,
            outputs={"sql": record.get("prediction"), "raw_output": record.get("raw_output")},
            reference_example_id=ids.get(content_hash(record["question"], record["context"], record["answer"])),
            start_time=now,
            end_time=now + timedelta(seconds=latency),
            extra={"metadata": {"tokens": record.get("tokens"), "latency_s": latency}},
        )
        for key in EXAMPLE_FEEDBACK:
            if record.get(key) is not None:
                client.create_feedback(run_id, key, score=float(record[key]))
    for key in SUMMARY_FEEDBACK:
        if metrics.get(key) is not None:
            client.create_feedback(None, key, score=float(metrics[key]), project_id=project.id)
    return name


def sync_evaluation(
    dataset: Any, records: list[dict[str, Any]], metrics: dict[str, Any], *, client: Any = None
) -> str | None:
    """Upload the dataset (idempotently) and log the evaluation; returns the experiment name, or None if skipped."""
    client = client or default_client()
    if client is None:
        return None
    name = f"{DATASET_PREFIX}{dataset.name}"
    ids = ensure_dataset(client, name, [ex.to_dict() for ex in dataset.examples])
    experiment = log_experiment(client, name, ids, records, metrics)
    log.info("LangSmith: logged experiment %s on dataset %s", experiment, name)
    return experiment
