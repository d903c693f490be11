"""``data.dialect``: training answers transpiled to the dialect (rows that cannot be carried over left out and
counted), prompts that name it (SQLite's unchanged), and a dialect model's SQL scored as written on its engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlmaster.config import load_recipe, recipe_keys
from sqlmaster.data.dialect import to_dialect
from sqlmaster.data.examples import Example
from sqlmaster.engines import ENGINE_NAMES
from sqlmaster.engines.transpile import DIALECTS, transpile
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.score import ScoreInputError, ScoreSettings, score_file
from sqlmaster.prompt import TEMPLATES, get_template, render_prompt

CTX = "CREATE TABLE games (team VARCHAR, year VARCHAR, wins INTEGER)"


def test_the_key_takes_the_engine_registry_and_defaults_to_sqlite() -> None:
    (spec,) = [k for k in recipe_keys() if k.key == "data.dialect"]
    assert spec.constraints["choices"] == ENGINE_NAMES and spec.schema["enum"] == list(ENGINE_NAMES)
    assert set(ENGINE_NAMES) <= set(DIALECTS)  # every engine has a sqlglot dialect to transpile to
    assert load_recipe().data.dialect == "sqlite"
    assert load_recipe(overrides=["data.dialect=duckdb"]).data.dialect == "duckdb"
    with pytest.raises(ConfigError, match=r"data\.dialect"):
        load_recipe(overrides=["data.dialect=oracle"])


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_sqlite_prompts_are_unchanged_and_others_name_their_dialect(name: str) -> None:
    assert get_template(name) is TEMPLATES[name] and get_template(name, "sqlite") is TEMPLATES[name]
    plain = render_prompt(get_template(name), "How many wins?", CTX)
    duck = render_prompt(get_template(name, "duckdb"), "How many wins?", CTX)
    assert "DuckDB" in duck and "DuckDB" not in plain and duck != plain
    assert duck.replace("DuckDB SQL", "SQL").replace("-- DuckDB\n", "") == plain


def test_answers_are_transpiled_and_what_cannot_be_is_counted() -> None:
    examples = [
        Example("q1", CTX, 'SELECT team FROM games WHERE year = 2009 AND team LIKE "aj%"'),
        Example("q2", CTX, "SELECT team FROM games WHERE team GLOB 'A*'"),  # no GLOB on PostgreSQL
        Example("q3", "CREATE TABLE broken (", "SELECT 1"),
        Example("q4", CTX, "SELECT team FROM games WHERE ("),
    ]
    kept, dropped = to_dialect(examples, "postgresql")
    assert [ex.question for ex in kept] == ["q1"]
    assert kept[0].answer == "SELECT team FROM games WHERE year = '2009' AND team ILIKE 'aj%'"  # quoted where needed
    assert dropped == {"dialect_context_dropped": 1, "dialect_parse_dropped": 1, "dialect_unsupported_dropped": 1}
    assert to_dialect(examples, "sqlite") == (examples, {})


def test_a_dialect_model_is_scored_on_its_engine_as_written(tmp_path: Path) -> None:
    gold = "SELECT team FROM games WHERE wins > 3"
    types = {"games": {"team": "text", "year": "text", "wins": "integer"}}
    rows = [
        {"context": CTX, "answer": gold, "prediction": transpile(gold, "duckdb", types)},
        {"context": CTX, "answer": gold, "prediction": 'SELECT "team" FROM "games" WHERE "wins" < 3'},
        # DuckDB's own syntax, which SQLite does not know: run as written
        {"context": CTX, "answer": gold, "prediction": 'SELECT "team" FROM "games" WHERE "wins" > 3 ORDER BY ALL'},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = ScoreSettings(engine="duckdb", prediction_dialect="duckdb")
    score_file(source, tmp_path / "out", workers=0, settings=settings)
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert [r["execution_match"] for r in records] == [True, False, True]
    with pytest.raises(ScoreInputError, match="cannot be scored on duckdb"):
        ScoreSettings(engine="duckdb", prediction_dialect="mysql").validate()
