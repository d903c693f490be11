"""make-dataset with langchain-core's fake chat model: invalid and duplicate triplets are dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from sqlmaster.data.validity import gold_runs
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.triplets import ONE_SHOT_ANSWER, make_dataset, messages, parse_triplet

CONTEXT = "CREATE TABLE employees (id INTEGER, name VARCHAR, department VARCHAR, salary INTEGER)"
VALID = {
    "question": "Who earns most?",
    "context": CONTEXT,
    "answer": "SELECT name FROM employees ORDER BY salary DESC LIMIT 1;",
}
OTHER = {
    "question": "How many departments?",
    "context": CONTEXT,
    "answer": "SELECT COUNT(DISTINCT department) FROM employees",
}
BROKEN = {
    "question": "Average bonus?",
    "context": CONTEXT,
    "answer": "SELECT AVG(bonus) FROM employees",
}  # no such column
SAME_TASK = {
    **VALID,
    "question": "who  earns MOST?",
    "answer": "SELECT name FROM employees ORDER BY salary DESC LIMIT 1",
}


def test_one_shot_example_is_itself_valid() -> None:
    example = json.loads(ONE_SHOT_ANSWER)
    assert gold_runs(example["context"], example["answer"])
    assert [role for role, _ in messages()] == ["human", "ai", "human"]


def test_parse_triplet_accepts_fenced_or_bare_json() -> None:
    assert parse_triplet("```json\n" + json.dumps(VALID) + "\n```").answer.endswith("LIMIT 1")  # type: ignore[union-attr]
    assert parse_triplet("Here you go: " + json.dumps(OTHER)) is not None
    assert parse_triplet("no json here") is None
    assert parse_triplet(json.dumps({"question": "q", "context": "c"})) is None


def test_make_dataset_keeps_only_executable_distinct_triplets(tmp_path: Path) -> None:
    replies = [
        json.dumps(VALID),
        json.dumps(BROKEN),
        "I cannot help with that",
        f"```json\n{json.dumps(SAME_TASK)}\n```",
        json.dumps(OTHER),
        json.dumps(VALID),
    ]
    chat = FakeListChatModel(responses=replies)
    out = tmp_path / "triplets.jsonl"
    kept = make_dataset(out, n=5, chat=chat, max_requests=len(replies), concurrency=1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert kept == len(rows) == 2
    assert [r["question"] for r in rows] == [VALID["question"], OTHER["question"]]
    assert rows[0]["answer"] == "SELECT name FROM employees ORDER BY salary DESC LIMIT 1"  # trailing ';' dropped
    assert all(gold_runs(r["context"], r["answer"]) for r in rows)


def test_make_dataset_stops_at_n(tmp_path: Path) -> None:
    chat = FakeListChatModel(responses=[json.dumps(VALID), json.dumps(OTHER), json.dumps(BROKEN)])
    assert make_dataset(tmp_path / "t.jsonl", n=1, chat=chat, concurrency=1) == 1


def test_without_openai_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        make_dataset(tmp_path / "t.jsonl", n=2)
    assert not (tmp_path / "t.jsonl").exists()
