"""Multi-table prompts (issue 30): the live schema rendered with keys and example values the same way at training
(`data from-db`) and evaluation (its test.jsonl, Spider dev under data.live_schema); the schema filter's recall on
Spider dev's gold queries; a from-db folder as data.source, mixed with another source; test rows scored on their
real database."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from sqlmaster.config import DataConfig
from sqlmaster.data.fromdb import FromDbSettings, from_db
from sqlmaster.data.fromdb.profile import load_profile
from sqlmaster.data.fromdb.render import render_schema
from sqlmaster.data.fromdb.schema_filter import gold_survives, schema_for
from sqlmaster.data.load import load_examples
from sqlmaster.data.pipeline import build_splits
from sqlmaster.data.spider import database_path, dev_examples, schema_context
from sqlmaster.data.validity import gold_runs
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.datasets import SplitCache, load_eval_dataset

# Measured on the 972 executable Spider dev questions (19 databases), commit of this test: at 2,000 characters 164
# prompts are filtered (dog_kennels, real_estate_properties, student_transcripts_tracking) and 99.5% of gold queries
# keep every table and column they name; at 1,000 characters 661 are filtered and 94.5% survive, at 900 (the
# quickstart --from-db budget) 93.2%. The thresholds
# sit just below.
RECALL = {2000: 0.99, 1000: 0.94, 900: 0.92}


@pytest.fixture(scope="module")
def spider_profiles() -> dict[str, object]:
    return {db: load_profile(str(database_path(db))) for db in {ex.db_id for ex in dev_examples()}}


@pytest.mark.parametrize("budget", sorted(RECALL))
def test_schema_filter_recall_on_spider_dev(budget: int, spider_profiles: dict[str, object]) -> None:
    rows = dev_examples()
    kept = filtered = 0
    for ex in rows:
        profile = spider_profiles[ex.db_id]
        shown = schema_for(profile, ex.question, budget)  # type: ignore[arg-type]
        assert len(shown) <= budget or "\n" not in shown  # one table that alone exceeds the budget is shown whole
        filtered += shown != render_schema(profile)  # type: ignore[arg-type]
        kept += gold_survives(profile, shown, ex.query)  # type: ignore[arg-type]
    assert filtered > 100  # the filter is exercised, not bypassed
    assert kept / len(rows) >= RECALL[budget], f"recall {kept / len(rows):.3f} at {budget} chars"


def test_gold_survives_only_when_its_tables_are_shown(spider_profiles: dict[str, object]) -> None:
    profile = spider_profiles["concert_singer"]
    sql = "SELECT T2.Name FROM concert AS T1 JOIN stadium AS T2 ON T1.Stadium_ID = T2.Stadium_ID WHERE T1.Year = '2014'"
    assert gold_survives(profile, render_schema(profile), sql)  # type: ignore[arg-type]
    assert not gold_survives(profile, render_schema(profile, ["concert"]), sql)  # type: ignore[arg-type]
    assert gold_survives(profile, render_schema(profile), 'SELECT Name FROM singer WHERE Country = "France"')  # type: ignore[arg-type]


def test_rendered_schema_is_runnable_sql_with_keys_and_values(spider_profiles: dict[str, object]) -> None:
    text = render_schema(spider_profiles["concert_singer"])  # type: ignore[arg-type]
    assert "FOREIGN KEY (Stadium_ID) REFERENCES stadium (Stadium_ID)" in text
    assert "PRIMARY KEY (Singer_ID)" in text and "/* " in text
    assert gold_runs(
        text, "SELECT count(*) FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.Singer_ID = T2.Singer_ID"
    )


def test_training_keeps_an_unrelated_table(spider_profiles: dict[str, object]) -> None:
    import random

    profile = spider_profiles["student_transcripts_tracking"]
    question = "How many students are there?"
    plain = schema_for(profile, question, 2000)  # type: ignore[arg-type]
    trained = schema_for(profile, question, 2000, random.Random(0), extra=1)  # type: ignore[arg-type]
    assert plain.count("CREATE TABLE") < trained.count("CREATE TABLE") or len(trained) > 1900


def test_spider_dev_live_schema_is_opt_in() -> None:
    base = {"validation_size": 10, "test_size": 30, "seed": 3, "exclude_spider_dev": True}
    bare = load_eval_dataset("spider-dev", SplitCache(DataConfig(**base), None), limit=3)
    assert [ex.context for ex in bare.examples] == [schema_context(ex.db_id or "") for ex in bare.examples]
    live = load_eval_dataset("spider-dev", SplitCache(DataConfig(**base, live_schema=True), None), limit=3)
    first = live.examples[0]
    assert first.context != bare.examples[0].context and "/* " in first.context and "FOREIGN KEY" in first.context
    assert live.info["schema"] == "live, 2000 chars"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fromdb")
    db = Path(shutil.copy(database_path("concert_singer"), tmp / "concert_singer.sqlite"))
    out = tmp / "data"
    from_db([str(db)], out, FromDbSettings(draws=200))
    return out


def test_training_context_always_shows_the_tables_its_sql_reads(tmp_path: Path) -> None:
    db = Path(shutil.copy(database_path("student_transcripts_tracking"), tmp_path / "stt.sqlite"))
    from_db([str(db)], tmp_path / "out", FromDbSettings(draws=150, schema_chars=600))
    rows = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    full = render_schema(load_profile(str(db)))
    assert sum(r["context"] != full for r in rows) > 0.9 * len(rows)  # filtered
    assert all(gold_runs(r["context"], r["answer"]) for r in rows)


def test_test_file_is_scored_on_its_real_database(folder: Path) -> None:
    dataset = load_eval_dataset(str(folder / "test.jsonl"), SplitCache(DataConfig(), None))
    assert dataset.examples and all(ex.db_path and Path(ex.db_path).is_file() for ex in dataset.examples)
    assert {ex.db_id for ex in dataset.examples} == {"concert_singer"}
    conn = sqlite3.connect(f"file:{dataset.examples[0].db_path}?mode=ro", uri=True)
    try:
        for ex in dataset.examples:
            assert conn.execute(ex.answer).fetchall()
    finally:
        conn.close()


def test_folder_as_data_source_and_mixed(folder: Path) -> None:
    rows = load_examples(str(folder))
    assert len(rows) == len((folder / "train.jsonl").read_text().splitlines())
    cfg = DataConfig(source=str(folder), validation_size=5, test_size=5, seed=1, drop_invalid_gold=True)
    alone = build_splits(cfg)
    assert alone.stats["invalid_gold_dropped"] == 0  # every context creates the tables its SQL reads
    mixed = build_splits(dataclasses.replace(cfg, mix_source="shipped", mix_ratio=0.5))
    assert mixed.stats["mixed_in"] == len(alone.train)
    assert len(mixed.train) == 2 * len(alone.train)
    assert build_splits(dataclasses.replace(cfg, mix_source="shipped")).train == mixed.train  # seeded
    with pytest.raises(ConfigError, match=r"holds no train\.jsonl"):
        load_examples(str(folder.parent))


def test_mix_source_keeps_its_own_held_out_rows(folder: Path) -> None:
    """A run on a database's pairs mixed with sql-create-context (test_size=0) never trains on the rows that a run on
    sql-create-context alone holds out, and `sql-create-context-test` scores exactly those rows."""
    cfg = DataConfig(source=str(folder), validation_size=5, test_size=0, mix_source="shipped", drop_invalid_gold=True)
    mixed = build_splits(cfg)
    alone = build_splits(DataConfig(source="shipped", drop_invalid_gold=True))  # README command 1's split
    assert mixed.mix_test == alone.test and len(mixed.mix_test) == 500
    held = {ex.key() for ex in alone.test} | {ex.key() for ex in alone.validation}
    assert not held & {ex.key() for ex in mixed.train}
    dataset = load_eval_dataset("sql-create-context-test", SplitCache(cfg, None))
    assert [ex.answer for ex in dataset.examples] == [ex.answer for ex in alone.test]
    assert dataset.info["split"] == "test of data.mix_source" and dataset.info["source"] == "shipped"
    with pytest.raises(ConfigError, match="test_size=0"):
        load_eval_dataset("sql-create-context-test", SplitCache(dataclasses.replace(cfg, mix_source=None), None))


def test_folder_rows_carry_scoring_fields(folder: Path) -> None:
    row = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    assert {"question", "context", "answer", "db_id", "db_path", "family", "level"} <= set(row)
