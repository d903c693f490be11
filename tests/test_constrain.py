"""Constrained decoding (sqlmaster/evaluate/constrain.py): the grammars admit the gold of the evaluation sets and
refuse what the schema, the question and the database lack; the HF generator decodes under them and falls back
when a grammar cannot finish; the vLLM generator sends one grammar per request."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from eval_fixtures import scramble, tiny_model, tiny_tokenizer

from sqlmaster.config import DataConfig
from sqlmaster.evaluate.constrain import admits, database_values, parse_schema, question_spans, sql_grammar
from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
from sqlmaster.evaluate.literal_case import LiteralCase, literal_form, measure, table_shape
from sqlmaster.prompt import get_template, render_prompt

CONTEXT = "CREATE TABLE races (race VARCHAR, winner VARCHAR, year INTEGER); CREATE TABLE drivers (name VARCHAR)"
QUESTION = "Who won the Brazilian Grand Prix in 1990?"


def test_schema_from_the_context() -> None:
    schema = parse_schema(CONTEXT)
    assert schema.tables == {"races": ["race", "winner", "year"], "drivers": ["name"]}
    assert parse_schema("CREATE TABLE t (a VARCHAR, b INTEGER), nonsense").tables == {"t": ["a", "b"]}


def test_question_spans_are_whole_words_as_written() -> None:
    spans = question_spans("the Grand Prix, 1990")
    assert "Grand Prix" in spans and "Prix, 1990" in spans and "rand" not in spans


@pytest.mark.parametrize(
    ("sql", "admitted"),
    [
        ('SELECT winner FROM races WHERE race = "brazilian grand prix" AND year = 1990', True),
        ("SELECT winner FROM races WHERE race = 'Brazilian Grand Prix'\n", True),  # the stop string ends it
        ("select T1.winner from races as T1 join drivers as T2 on T1.winner = T2.name", True),
        ('SELECT COUNT(*) FROM races WHERE race LIKE "%grand prix%"', True),
        ("SELECT winner FROM races WHERE year > 1990 ORDER BY year DESC LIMIT 1", True),
        ("SELECT driver FROM races", False),  # a column the schema lacks
        ("SELECT winner FROM winners", False),  # a table the schema lacks
        ("SELECT T1.pilot FROM races AS T1", False),  # a qualified column the schema lacks
        ('SELECT winner FROM races WHERE race = "brand pole"', False),  # a literal the question lacks
        ('SELECT winner FROM races WHERE race = "brazilian gran"', False),  # not whole words
        ("SELECT winner FROM races WHERE (year = 1990", False),  # unbalanced parenthesis
        ("DROP TABLE races", False),
    ],
)
def test_grammar_plus_values(sql: str, admitted: bool) -> None:
    grammar = sql_grammar(CONTEXT, QUESTION, mode="grammar+values", stop="\n")
    assert admits(grammar, sql) is admitted


def test_grammar_mode_allows_any_literal_but_not_unknown_names() -> None:
    grammar = sql_grammar(CONTEXT, QUESTION, mode="grammar")
    assert admits(grammar, 'SELECT winner FROM races WHERE race = "brand pole"')
    assert not admits(grammar, "SELECT winnr FROM races")


def test_database_values_link_the_question_to_the_database() -> None:
    from sqlmaster.data.spider import database_path, schema_context

    db = str(database_path("concert_singer"))
    question = "What is the name of the stadium of the concert in Balmoor?"  # no stadium is named that
    values = database_values(db, question)
    assert "Balmoor" in values
    grammar = sql_grammar(schema_context("concert_singer"), question, values=values)
    assert admits(grammar, "SELECT name FROM stadium WHERE location = 'Balmoor'")
    assert not admits(grammar, "SELECT name FROM stadium WHERE location = 'Glasgow'")  # in neither


# The gold the grammar refuses among the quickstart's 500 held-out rows, by cause: six golds in which the dataset
# split a column name at a digit or a symbol into "<number> AS <rest>" (the table has no column "st_leg"), one
# literal that is not in the question ("film_festival" for "film festival").
HELD_OUT_REJECTED = {
    'SELECT participants_recipients FROM table_29644931_1 WHERE film_festival = "61st Berlin International '
    'film_festival"',
    'SELECT 1 AS st_leg FROM table_name_58 WHERE team_1 = "chelsea"',
    'SELECT 2 AS nd_leg FROM table_name_62 WHERE team__number1 = "ldu quito"',
    "SELECT COUNT(points) AS won FROM table_24431348_18 WHERE seed = 25",
    'SELECT COUNT(iso_) AS № FROM table_254234_1 WHERE density² = "165.81"',
    "SELECT SUM(net_profit__) AS £m_ FROM table_name_75 WHERE earnings_per_share__p_ = 27.4 AND "
    "profit__loss__before_tax__£m_ < 194.6",
    'SELECT 5 AS ’utr_splice FROM table_name_70 WHERE coding = "1a 2" AND variant_id = "abd\'1a 2"',
}


@pytest.fixture(scope="module")
def quickstart_splits() -> tuple[Any, LiteralCase]:
    """README command 1's data splits (jobs/train/smollm2-135m.yaml's data recipe) and the literal case its training
    split measures: built once for the tests below (a few seconds each time)."""
    from sqlmaster.data.pipeline import build_splits

    splits = build_splits(DataConfig(source="shipped", drop_invalid_gold=True))
    return splits, measure(splits.train)


def test_grammar_admits_the_held_out_gold(quickstart_splits: tuple[Any, LiteralCase]) -> None:
    """The 500 rows the quickstart evaluates on (its data recipe: jobs/train/smollm2-135m.yaml): 493 admitted, in any
    case and in the case its training split writes literals for each table shape."""
    splits, convention = quickstart_splits
    assert len(splits.test) == 500
    for case_of in (lambda ex: "any", lambda ex: convention.case_for(ex.context)):
        grammars = [sql_grammar(ex.context, ex.question, stop="\n", case=case_of(ex)) for ex in splits.test]
        rejected = {ex.answer for ex, g in zip(splits.test, grammars, strict=True) if not admits(g, ex.answer)}
        assert rejected == HELD_OUT_REJECTED


@pytest.mark.parametrize("dialect", ["postgresql", "duckdb", "mysql"])
def test_grammar_admits_the_held_out_gold_in_each_dialect(
    dialect: str, quickstart_splits: tuple[Any, LiteralCase]
) -> None:
    """The same 500 rows with their gold as ``data.dialect`` trains on it (transpiled, names quoted where the
    engine needs it): the grammar in that dialect admits all but the same 7 rows as SQLite's."""
    from sqlmaster.data.dialect import to_dialect

    splits, convention = quickstart_splits
    sqlite_gold = {ex.question: ex.answer for ex in splits.test}
    golds, dropped = to_dialect(splits.test, dialect)
    assert len(golds) == 500 and not dropped
    grammars = [
        sql_grammar(ex.context, ex.question, stop="\n", case=convention.case_for(ex.context), dialect=dialect)
        for ex in golds
    ]
    rejected = {sqlite_gold[ex.question] for ex, g in zip(golds, grammars, strict=True) if not admits(g, ex.answer)}
    assert rejected == HELD_OUT_REJECTED


@pytest.mark.parametrize(
    ("dialect", "sql", "admitted"),
    [
        ("postgresql", "SELECT \"year\" FROM races WHERE race = 'Brazilian Grand Prix'", True),
        ("postgresql", 'SELECT races."year", "races".winner FROM races', True),
        ("postgresql", 'SELECT winner FROM races WHERE race = "Brazilian Grand Prix"', False),  # a name, not a string
        ("postgresql", 'SELECT "pilot" FROM races', False),
        ("postgresql", "SELECT (ARRAY_AGG(winner ORDER BY year DESC NULLS LAST))[1] FROM races", True),
        ("postgresql", "SELECT winner FROM races WHERE race ILIKE '%grand prix%'", True),
        ("duckdb", "SELECT ARG_MAX(winner, year) FROM races WHERE TRY_CAST(year AS DOUBLE) > 1990", True),
        ("duckdb", 'SELECT winner FROM races WHERE race = "Brazilian Grand Prix"', False),
        ("mysql", "SELECT `year` FROM races WHERE race = 'Brazilian Grand Prix'", True),
        ("mysql", 'SELECT winner FROM races WHERE race = "Brazilian Grand Prix"', True),  # MySQL's strings take "
        ("mysql", "SELECT CAST(year AS SIGNED) FROM races", True),
        ("sqlite", 'SELECT "year" FROM races', False),  # SQLite: a double-quoted word is a literal of the question
        ("sqlite", "SELECT winner FROM races ORDER BY year NULLS LAST", False),
    ],
)
def test_grammar_speaks_the_dialect(dialect: str, sql: str, admitted: bool) -> None:
    grammar = sql_grammar(CONTEXT, QUESTION, mode="grammar+values", stop="\n", dialect=dialect)
    assert admits(grammar, sql) is admitted


def test_the_training_data_says_which_case_literals_take(quickstart_splits: tuple[Any, LiteralCase]) -> None:
    """sql-create-context lower-cases the question's words in table_name_N tables (4,172 of 4,173) and mixes
    conventions elsewhere (literal_case.py's table): only the strict shape gets a rule."""
    _, convention = quickstart_splits
    assert convention.rules == {"table_name_N": "lower"}
    assert convention.counts["table_name_N"]["lower"] >= 4000 and convention.counts["table_N_N"]["other"] > 1000
    assert convention.case_for("CREATE TABLE table_name_7 (artist VARCHAR)") == "lower"
    assert convention.case_for("CREATE TABLE table_1458666_4 (nation VARCHAR)") == "any"
    assert convention.case_for("CREATE TABLE singer (name VARCHAR)") == "any"
    assert (table_shape("CREATE TABLE table_1_10015132 (a INT)"), table_shape('CREATE TABLE "Singer" (a)')) == (
        "table_N_N",
        "named",
    )
    assert (
        literal_form("Who is Prince?", "prince") == "lower" and literal_form("nation australia", "Australia") == "other"
    )
    assert literal_form("the Oilers", "Oilers") == "exact" and literal_form("the oilers", "oilers") is None


@pytest.mark.parametrize(
    ("case", "admitted"),
    [("any", {"prince", "Prince", "PRINCE"}), ("lower", {"prince"}), ("exact", {"Prince"})],
)
def test_literals_follow_the_case_rule(case: str, admitted: set[str]) -> None:
    grammar = sql_grammar("CREATE TABLE table_name_7 (genre VARCHAR, artist VARCHAR)", "Is the Artist Prince?",
                          case=case)  # fmt: skip
    for literal in ("prince", "Prince", "PRINCE"):
        assert admits(grammar, f'SELECT genre FROM table_name_7 WHERE artist = "{literal}"') is (literal in admitted)
    with pytest.raises(ValueError, match="literal case"):
        sql_grammar(CONTEXT, QUESTION, case="title")


def test_grammar_admits_spider_dev_gold() -> None:
    """Spider dev on its real databases (972 questions): every gold under ``grammar``; under ``grammar+values``
    all but 10, each refused for a literal in neither the question nor a matching database value ('France' for
    "French", 'usa' for "United States", 'NorthCarolina', 't' for "official")."""
    from sqlmaster.data.spider import database_path, dev_examples, schema_context

    rejected = []
    for ex in dev_examples():
        db = str(database_path(ex.db_id))
        context = schema_context(ex.db_id)
        grammar = sql_grammar(context, ex.question, values=database_values(db, ex.question))
        if not admits(grammar, ex.query):
            rejected.append(ex)
    assert len(rejected) <= 10
    for ex in rejected:  # the cause is the literal: without literal constraints the gold is admitted
        assert admits(sql_grammar(schema_context(ex.db_id), ex.question, mode="grammar"), ex.query)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_tokenizer()


def test_hf_generation_follows_the_grammar(tokenizer: Any) -> None:
    """A random model under a one-answer grammar writes that answer and stops at the template's stop string;
    under the SQL grammars each answer is admitted by its grammar or is the unconstrained decode (fallback)."""
    model = scramble(tiny_model(tokenizer, seed=3))
    template = get_template("compact")  # stop: "\n"
    prompts = [render_prompt(template, QUESTION, CONTEXT), render_prompt(template, "How many drivers?", CONTEXT)]
    settings = GenerationSettings(max_new_tokens=24, batch_size=2, constrain="grammar+values")
    generator = HFGenerator(model, tokenizer, template, settings)
    one = 'start: "SELECT winner FROM races" "\\n"\n'
    records = generator.generate(prompts, [one, one])
    assert [(r.constraint, r.sql, r.stopped_by) for r in records] == [
        ("grammar", "SELECT winner FROM races", "stop_string")
    ] * 2
    grammars = [sql_grammar(CONTEXT, QUESTION, stop="\n"), sql_grammar(CONTEXT, "How many drivers?", stop="\n")]
    records = generator.generate(prompts, grammars)
    plain = HFGenerator(model, tokenizer, template, GenerationSettings(max_new_tokens=24, batch_size=2)).generate(
        prompts
    )
    assert all(r.constraint is None for r in plain)
    for record, grammar, unconstrained in zip(records, grammars, plain, strict=True):
        if record.constraint == "grammar":
            assert admits(grammar, record.raw_output)
        else:
            assert record.constraint == "fallback" and record.raw_output == unconstrained.raw_output


def test_a_decode_the_grammar_cannot_finish_falls_back_and_is_counted(tokenizer: Any) -> None:
    model = scramble(tiny_model(tokenizer, seed=3))
    template = get_template("compact")
    prompts = [render_prompt(template, QUESTION, CONTEXT)]
    long_answer = 'start: "SELECT winner FROM races WHERE race = 1 AND year = 1990 AND winner = 2"\n'
    settings = GenerationSettings(max_new_tokens=4, constrain="grammar")
    constrained = HFGenerator(model, tokenizer, template, settings).generate(prompts, [long_answer])
    plain = HFGenerator(model, tokenizer, template, GenerationSettings(max_new_tokens=4)).generate(prompts)
    assert constrained[0].constraint == "fallback"
    assert constrained[0].raw_output == plain[0].raw_output  # the unconstrained decode answers
    finishes = 'start: "SELECT"\n'
    done = HFGenerator(model, tokenizer, template, settings).generate(prompts, [finishes])
    assert done[0].constraint == "grammar" and done[0].raw_output == "SELECT"


def test_decoding_names_the_constraint() -> None:
    assert GenerationSettings(constrain="grammar").decoding == "greedy+grammar"
    assert GenerationSettings(constrain="grammar+values", vote=4).decoding == "vote@4+grammar+values"
    assert GenerationSettings().decoding == "greedy"


def test_vllm_request_carries_each_prompts_grammar(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlmaster.evaluate.generate_vllm import VLLMGenerator, VLLMTarget, engine_args

    calls: list[Any] = []

    class FakeLLM:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        def generate(self, prompts: list[str], params: Any, lora_request: Any = None, use_tqdm: bool = True) -> list:
            calls.append(params)
            constrained = isinstance(params, list)
            return [
                types.SimpleNamespace(
                    prompt_token_ids=[1],
                    outputs=[
                        types.SimpleNamespace(
                            text="SELECT 1\n" if constrained and "0" in p else "SELECT x",
                            token_ids=[5, 6],
                            finish_reason="stop" if constrained and "0" in p else "length",
                            stop_reason="\n" if constrained and "0" in p else None,
                        )
                    ],
                )
                for p in prompts
            ]

    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM  # type: ignore[attr-defined]
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)  # type: ignore[attr-defined]
    params = types.ModuleType("vllm.sampling_params")
    params.StructuredOutputsParams = lambda **kw: types.SimpleNamespace(**kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)

    settings = GenerationSettings(constrain="grammar+values")
    assert engine_args(VLLMTarget("base"), settings)["structured_outputs_config"] == {"backend": "guidance"}
    assert "structured_outputs_config" not in engine_args(VLLMTarget("base"), GenerationSettings())
    gen = VLLMGenerator(VLLMTarget("base"), get_template("compact"), settings)
    records = gen.generate(["p0", "p1"], ["grammar zero", "grammar one"])
    constrained, fallback = calls
    assert [p.structured_outputs.grammar for p in constrained] == ["grammar zero", "grammar one"]
    assert all(p.temperature == 0.0 and p.stop == ["\n"] for p in constrained)
    assert not isinstance(fallback, list) and not hasattr(fallback, "structured_outputs")  # p1 again, unconstrained
    assert [r.constraint for r in records] == ["grammar", "fallback"]
    assert [r.sql for r in records] == ["SELECT 1", "SELECT x"]


def test_recipe_key_is_declared_once(tmp_path: Path) -> None:
    from sqlmaster.config import EvaluationConfig

    assert EvaluationConfig().constrain == "none"
    assert GenerationSettings.from_config(EvaluationConfig(constrain="grammar")).constrain == "grammar"


def test_the_runner_builds_grammars_in_the_runs_dialect() -> None:
    """eval run of a run trained with data.dialect=postgresql decodes under PostgreSQL's grammar (its recipe's
    dialect, set from the run's run.json): a quoted name is a name, a double-quoted string is refused."""
    import dataclasses

    from sqlmaster.config import Recipe
    from sqlmaster.evaluate.runner import _grammars

    example = types.SimpleNamespace(context=CONTEXT, question=QUESTION, db_path=None)
    dataset = types.SimpleNamespace(examples=[example], literal_case=None)
    target = types.SimpleNamespace(template=types.SimpleNamespace(stop="\n"))
    recipe = Recipe()
    recipe = dataclasses.replace(
        recipe,
        data=dataclasses.replace(recipe.data, dialect="postgresql"),
        evaluation=dataclasses.replace(recipe.evaluation, constrain="grammar+values"),
    )
    grammars = _grammars(dataset, target, recipe)  # type: ignore[arg-type]
    assert grammars is not None and len(grammars) == 1
    grammar = grammars[0]
    assert admits(grammar, "SELECT \"year\" FROM races WHERE race = 'Brazilian Grand Prix'")
    assert not admits(grammar, 'SELECT winner FROM races WHERE race = "Brazilian Grand Prix"')
