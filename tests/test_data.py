"""Data loading, validation, deterministic splits, the leakage guard and the prompt–completion form."""

import json
from pathlib import Path

import pytest

from sqlmaster.config import DataConfig
from sqlmaster.data import Example, load_examples, make_splits
from sqlmaster.data.pipeline import build_splits
from sqlmaster.data.spider import dev_examples, dev_questions, schema_context
from sqlmaster.errors import ConfigError
from sqlmaster.prompt import ORIGINAL, extract_sql, get_template, render_prompt


@pytest.fixture(scope="module")
def shipped() -> list[Example]:
    return load_examples("shipped")


def test_shipped_sample_loads_every_row(shipped: list[Example]) -> None:
    assert len(shipped) == 15_716
    assert all(ex.question and ex.context.startswith("CREATE TABLE") and ex.answer for ex in shipped)


def test_split_is_deterministic_and_disjoint(shipped: list[Example]) -> None:
    a = make_splits(shipped, DataConfig(validation_size=100, test_size=500, seed=1399))
    b = make_splits(shipped, DataConfig(validation_size=100, test_size=500, seed=1399))
    c = make_splits(shipped, DataConfig(validation_size=100, test_size=500, seed=7))
    assert a.fingerprints() == b.fingerprints()
    assert a.fingerprints()["test"] != c.fingerprints()["test"]
    assert a.sizes()["test"] == 500 and a.sizes()["validation"] == 100
    held_out = {ex.key() for ex in a.test + a.validation}
    assert not any(ex.key() in held_out for ex in a.train)


def test_leakage_guard_drops_train_rows_that_repeat_a_test_task() -> None:
    base = [Example(f"q{i}", f"CREATE TABLE t{i} (a INT)", f"SELECT a FROM t{i}") for i in range(50)]
    # The same question on the same schema, written with other case and spacing, and another answer.
    twins = [Example(f"  Q{i} ", f"create table T{i} (a int)", f"SELECT a FROM t{i} LIMIT 1") for i in range(50)]
    splits = make_splits(base + twins, DataConfig(validation_size=5, test_size=10, seed=0))
    held_out = {ex.key() for ex in splits.test + splits.validation}
    assert splits.stats["leaked_dropped"] > 0
    assert not any(ex.key() in held_out for ex in splits.train)


def test_exclude_spider_dev_questions(shipped: list[Example]) -> None:
    splits = build_splits(DataConfig(exclude_spider_dev=True))
    spider = dev_questions()
    assert splits.stats["excluded_questions_dropped"] >= 50  # the data README counts 98 in the sample
    assert not any(ex.question in spider for ex in splits.train)


def test_drop_invalid_gold_removes_rows_that_fail_on_their_schema() -> None:
    rows = [
        Example("ok", "CREATE TABLE t (a INT)", "SELECT a FROM t"),
        Example("bad", "CREATE TABLE t (a INT)", "SELECT b FROM t"),
    ] * 3 + [Example(f"q{i}", "CREATE TABLE t (a INT)", f"SELECT a FROM t WHERE a = {i}") for i in range(10)]
    splits = make_splits(rows, DataConfig(validation_size=1, test_size=1, seed=0, drop_invalid_gold=True))
    assert splits.stats["invalid_gold_dropped"] == 1  # the duplicates were removed first
    assert all(ex.question != "bad" for ex in splits.train + splits.test + splits.validation)


@pytest.mark.parametrize(
    ("row", "missing"),
    [
        ({"question": "q", "context": "CREATE TABLE t (a INT)"}, "answer"),
        ({"question": " ", "context": "c", "answer": "a"}, "question"),
    ],
)
def test_missing_or_empty_field_names_the_row(tmp_path: Path, row: dict, missing: str) -> None:
    path = tmp_path / "data.jsonl"
    good = {"question": "q", "context": "CREATE TABLE t (a INT)", "answer": "SELECT a FROM t"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=rf"row 2 of .*data.jsonl has missing or empty field\(s\) {missing}"):
        load_examples(str(path))


def test_unreadable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_examples(str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"\n')
    with pytest.raises(ConfigError, match="line 1 is not valid JSON"):
        load_examples(str(bad))


def test_prompt_is_identical_for_training_and_inference() -> None:
    ex = Example("How many?", "CREATE TABLE t (a INT)", 'SELECT COUNT(*) FROM t WHERE a = "x"')
    row = ex.to_prompt_completion(ORIGINAL)
    assert row["prompt"] == render_prompt(ORIGINAL, ex.question, ex.context)
    assert row["prompt"].endswith("### Response:\n```")
    assert row["completion"] == 'SELECT COUNT(*) FROM t WHERE a = "x";```'
    assert extract_sql(ORIGINAL, row["completion"] + " and then some chatter") == ex.answer


@pytest.mark.parametrize(
    ("raw", "sql"),
    [
        ("SELECT a FROM t;```\n### Input: ...", "SELECT a FROM t"),
        ("SELECT a\n  FROM t", "SELECT a FROM t"),
        ("SELECT a FROM t\n\nThis query selects a.", "SELECT a FROM t"),
    ],
)
def test_extract_sql(raw: str, sql: str) -> None:
    assert extract_sql(ORIGINAL, raw) == sql
    assert extract_sql(get_template("compact"), "```sql\nSELECT a FROM t\n```") == "SELECT a FROM t"
    assert extract_sql(get_template("compact"), "SELECT a FROM t;``````") == "SELECT a FROM t"


def test_spider_dev_ships_19_databases() -> None:
    examples = dev_examples()
    assert len(examples) == 972
    assert len({ex.db_id for ex in examples}) == 19
    assert "CREATE TABLE" in schema_context("concert_singer")
