"""Evaluation datasets: the run's own held-out split, Spider dev minus trained questions, triplet files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlmaster.config import DataConfig
from sqlmaster.data.examples import normalise_text
from sqlmaster.data.pipeline import build_splits
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.datasets import SplitCache, data_config_of_run, load_eval_dataset

SMALL = {"validation_size": 10, "test_size": 30, "seed": 3}


def test_spider_dev_drops_questions_the_run_trained_on() -> None:
    cfg = DataConfig(**SMALL)
    splits = SplitCache(cfg, None)
    dataset = load_eval_dataset("spider-dev", splits)
    dropped = dataset.info["dropped_in_training_data"]
    assert dropped > 0 and len(dataset.examples) == 972 - dropped
    trained = {normalise_text(ex.question) for ex in splits.get().train}
    assert not any(normalise_text(ex.question) in trained for ex in dataset.examples)
    first = dataset.examples[0]
    assert Path(first.db_path or "").is_file() and first.context.startswith("CREATE TABLE")


def test_spider_dev_keeps_everything_when_training_excluded_it() -> None:
    cfg = DataConfig(**SMALL, exclude_spider_dev=True)
    dataset = load_eval_dataset("spider-dev", SplitCache(cfg, None), limit=5)
    assert dataset.info["dropped_in_training_data"] == 0
    assert dataset.info["available"] == 972 and len(dataset.examples) == 5


def test_test_split_follows_the_runs_recipe_not_the_evaluation_recipe() -> None:
    run_info = {"recipe": {"data": {**SMALL, "source": "shipped", "future_key": 1}}}
    cfg, origin = data_config_of_run(run_info, DataConfig())
    assert origin == "run.json" and cfg.test_size == 30  # unknown keys from newer versions are ignored
    dataset = load_eval_dataset("sql-create-context-test", SplitCache(cfg, run_info))
    expected = build_splits(cfg).test
    assert [(e.question, e.answer) for e in dataset.examples] == [(e.question, e.answer) for e in expected]
    assert data_config_of_run(None, DataConfig())[1].startswith("evaluation recipe")


def test_triplets_file(tmp_path: Path) -> None:
    path = tmp_path / "gpt4-triplets.jsonl"
    rows = [{"question": f"q{i}", "context": "CREATE TABLE t (a INT)", "answer": "SELECT a FROM t"} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    dataset = load_eval_dataset(str(path), SplitCache(DataConfig(), None))
    assert dataset.name == "gpt4-triplets" and len(dataset.examples) == 3 and dataset.examples[0].db_path is None
    with pytest.raises(ConfigError, match="make-dataset"):
        load_eval_dataset(str(tmp_path / "missing.jsonl"), SplitCache(DataConfig(), None))
    with pytest.raises(ConfigError, match="limit must be"):
        load_eval_dataset(str(path), SplitCache(DataConfig(), None), limit=0)
