"""Execution accuracy: gold matches itself, mutants of the gold are told apart, synthesis is deterministic."""

from __future__ import annotations

import functools
from collections import Counter

import pytest
from _scorer_data import seeded_subset

from sqlmaster.evaluate.execution import (
    ExampleCache,
    prepare_example,
    results_match,
    score_prediction,
)
from sqlmaster.evaluate.mutants import KINDS, mutants
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS
from sqlmaster.evaluate.synth import synthesize

SUBSET = 300  # rows of the shipped sample: ~10 s on 2 cores


@pytest.fixture(scope="module")
def prepared() -> list[tuple[dict[str, str], object]]:
    cache = ExampleCache(maxsize=SUBSET)
    return [(r, cache.get(r["context"], r["answer"], 3, 0, DEFAULT_LIMITS)) for r in seeded_subset(SUBSET)]


def test_results_match_rules() -> None:
    assert results_match([(1,), (2,)], [(2,), (1,)], ordered=False)
    assert not results_match([(1,), (2,)], [(2,), (1,)], ordered=True)
    assert not results_match([(1,), (1,)], [(1,)], ordered=False)  # multisets, not sets
    assert results_match([(0.1 + 0.2,)], [(0.3,)], ordered=False)  # float tolerance
    assert results_match([(2,)], [(2.0,)], ordered=False)
    assert not results_match([("2",)], [(2,)], ordered=False)
    assert results_match([("a", 1), ("b", 2)], [(1, "a"), (2, "b")], ordered=False)  # column order
    assert not results_match([("a", 1)], [(1, "a")], ordered=False, column_order_matters=True)
    assert not results_match([("a", 1), ("b", 2)], [(1, "b"), (2, "a")], ordered=False)  # rows stay whole


def test_gold_against_itself_scores_100_percent(prepared: list) -> None:
    valid = [(r, p) for r, p in prepared if p.synth.gold_error is None]
    assert len(valid) >= 0.95 * len(prepared)  # the sample has ~2% invalid gold
    for row, prep in valid:
        result = score_prediction(prep.synth, row["answer"], prep.ordered)
        assert result.match and result.executes, (row, result)


def test_gold_returns_nontrivial_results(prepared: list) -> None:
    valid = [p for _, p in prepared if p.synth.gold_error is None]
    rate = sum(p.synth.nontrivial for p in valid) / len(valid)
    assert rate >= 0.93, rate  # the previous analysis reached 89.7% with 3 DBs x 25 rows


def test_mutants_are_told_apart(prepared: list) -> None:
    killed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for row, prep in prepared:
        if prep.synth.gold_error is not None:
            continue
        for mutant in mutants(row["answer"], set(prep.synth.column_names)):
            result = score_prediction(prep.synth, mutant.sql, prep.ordered)
            if not result.executes:  # a mutant that fails to run is not a test of the databases
                continue
            total[mutant.kind] += 1
            killed[mutant.kind] += not result.match
    assert {"flip_comparison", "min_max", "drop_condition", "change_literal"} <= set(total)
    assert set(total) <= set(KINDS)
    rate = sum(killed.values()) / sum(total.values())
    assert rate >= 0.90, (rate, killed, total)


def test_double_quoted_strings_match_single_quoted() -> None:
    ctx = "CREATE TABLE t (name VARCHAR, team VARCHAR)"
    prep = prepare_example(ctx, 'SELECT name FROM t WHERE team = "essendon"')
    assert prep.synth.nontrivial
    assert score_prediction(prep.synth, "SELECT name FROM t WHERE team = 'essendon'", prep.ordered).match
    assert not score_prediction(prep.synth, "SELECT name FROM t WHERE team = 'Essendon'", prep.ordered).match


def test_malformed_prediction_is_a_miss_not_a_crash() -> None:
    prep = prepare_example("CREATE TABLE t (a INTEGER)", "SELECT a FROM t WHERE a > 3")
    bad_predictions = (
        "SELEC a FRM t",
        "SELECT nope FROM t",
        "",
        "   ",
        "DROP TABLE t",
        "SELECT a FROM t; SELECT 1",
    )
    for bad in bad_predictions:
        result = score_prediction(prep.synth, bad, prep.ordered)
        assert not result.match and not result.executes


def test_order_matters_only_with_order_by() -> None:
    ctx = "CREATE TABLE t (name VARCHAR, age INTEGER)"
    ordered = prepare_example(ctx, "SELECT name FROM t ORDER BY age")
    assert ordered.ordered
    assert not score_prediction(ordered.synth, "SELECT name FROM t ORDER BY age DESC", True).match
    unordered = prepare_example(ctx, "SELECT name FROM t WHERE age > 20")
    assert not unordered.ordered
    reordered = "SELECT name FROM t WHERE age > 20 ORDER BY name DESC"
    assert score_prediction(unordered.synth, reordered, False).match


def test_synthesis_is_deterministic_and_databases_differ() -> None:
    ctx = "CREATE TABLE a (id INTEGER, x VARCHAR); CREATE TABLE b (a_id INTEGER, y INTEGER)"
    gold = "SELECT T1.x, COUNT(*) FROM a AS T1 JOIN b AS T2 ON T1.id = T2.a_id WHERE T2.y > 4 GROUP BY T1.x"
    first, second = synthesize(ctx, gold), synthesize(ctx, gold)
    assert first.databases == second.databases and first.gold_rows == second.gold_rows
    assert len(first.databases) == 3 and len(set(first.databases)) == 3
    assert first.nontrivial  # the join matches and the filter keeps rows
    assert synthesize(ctx, gold, base_seed=1).databases != first.databases


def test_invalid_gold_is_reported() -> None:
    assert synthesize("CREATE TABLE t (a INTEGER)", "SELECT b FROM t").gold_error is not None
    assert synthesize("CREATE TABLE order (a INTEGER)", "SELECT a FROM order").gold_error is not None


# ------------------------------------------------------------------------------------------------ row cap

# A small real-style database with duplicates, ties and NULLs: the prediction's rows are read only up to one past
# the gold's count; these pairs check that this never changes a verdict, under either convention.
CAP_DB = """
CREATE TABLE p (id INTEGER, name TEXT, team TEXT, age INTEGER, score REAL);
INSERT INTO p VALUES (1, 'ann', 'red', 30, 1.5), (2, 'bob', 'red', 30, 2.0), (3, 'cy', 'blue', 41, 2.0),
  (4, 'di', 'blue', 25, NULL), (5, 'ed', 'green', 30, 0.5), (6, 'ann', 'green', 52, 3.25);
CREATE TABLE t (team TEXT, city TEXT);
INSERT INTO t VALUES ('red', 'rome'), ('blue', 'bern'), ('green', 'graz'), ('red', 'riga');
"""
CAP_QUERIES = [
    "SELECT name FROM p",
    "SELECT DISTINCT name FROM p",
    "SELECT team FROM p",  # duplicates
    "SELECT DISTINCT team FROM p",
    "SELECT name, team FROM p",
    "SELECT team, name FROM p",  # permuted columns
    "SELECT name FROM p WHERE age > 100",  # empty
    "SELECT name FROM p WHERE age > 40",
    "SELECT name FROM p ORDER BY age",  # ties under ORDER BY
    "SELECT name FROM p ORDER BY age DESC",
    "SELECT name FROM p ORDER BY age LIMIT 2",
    "SELECT name FROM p ORDER BY age LIMIT 4",
    "SELECT name, age FROM p ORDER BY age, name",
    "SELECT age, name FROM p ORDER BY age, name",
    "SELECT name FROM p LIMIT 3",
    "SELECT p.name FROM p JOIN t ON p.team = t.team",
    "SELECT p.name FROM p JOIN t ON p.team <> t.team",  # the mutant that streams many rows
    "SELECT DISTINCT p.name FROM p JOIN t ON p.team <> t.team",
    "SELECT count(*) FROM p JOIN t ON p.team <> t.team",
    "SELECT team, count(*) FROM p GROUP BY team",
    "SELECT count(*), team FROM p GROUP BY team ORDER BY count(*) DESC",
    "SELECT avg(score) FROM p",
    "SELECT sum(score) / count(score) FROM p",
    "SELECT p.name, t.city FROM p, t",
    "SELECT team FROM p UNION SELECT team FROM t",
    "SELECT team FROM p UNION ALL SELECT team FROM t",
]


@pytest.mark.parametrize("convention", ["official", "strict"])
def test_row_cap_never_changes_a_verdict(convention: str) -> None:
    from sqlmaster.evaluate.conventions import apply_convention
    from sqlmaster.evaluate.execution import compare, plan_gold, run_gold, score_on_connections
    from sqlmaster.evaluate.sandbox import lock_setup_connection, new_setup_connection, run_query, run_script

    conn = new_setup_connection()
    run_script(conn, CAP_DB)
    conn = lock_setup_connection(conn)
    verdicts: Counter[bool] = Counter()
    stopped = 0
    for gold_sql in CAP_QUERIES:
        gold = run_gold(conn, plan_gold(apply_convention(gold_sql, convention)))
        for pred_sql in CAP_QUERIES:
            pred = apply_convention(pred_sql, convention)
            full = run_query(conn, pred)  # every row, as before the cap
            expected = compare(gold, full, column_order_matters=False)
            capped = score_on_connections([conn], [gold], pred)
            assert capped.match == expected, (convention, gold_sql, pred_sql)
            assert capped.executes and capped.error is None
            verdicts[expected] += 1
            stopped += len(full) > len(gold.rows) + 1
    assert verdicts[True] >= len(CAP_QUERIES) + 4 and verdicts[False] > 500  # permutations and ties do match
    assert stopped > 100  # and the cap did cut many predictions short


def test_run_query_stops_one_row_past_the_cap() -> None:
    from sqlmaster.evaluate.sandbox import lock_setup_connection, new_setup_connection, run_query, run_script

    conn = new_setup_connection()
    run_script(conn, CAP_DB)
    conn = lock_setup_connection(conn)
    cross = "SELECT * FROM p a, p b, p c"  # 216 rows
    assert len(run_query(conn, cross)) == 216
    assert len(run_query(conn, cross, stop_after=0)) == 1
    assert len(run_query(conn, cross, stop_after=3)) == 4
    assert len(run_query(conn, cross, stop_after=600)) == 216  # fewer rows than the cap: all of them
    assert run_query(conn, "SELECT name FROM p WHERE age > 100", stop_after=0) == []
    assert run_query(conn, cross, stop_after=3) == run_query(conn, cross)[:4]


def test_gold_with_ties_and_duplicates_still_matches_under_the_cap() -> None:
    # An example scored end to end: ORDER BY ties in another order, duplicates, permuted columns.
    ctx = "CREATE TABLE p (name VARCHAR, team VARCHAR, age INTEGER)"
    gold = "SELECT name, age FROM p ORDER BY age"
    prep = prepare_example(ctx, gold, k=3, seed=0)
    for convention in ("official", "strict"):
        score = functools.partial(score_prediction, prep, gold=gold, convention=convention)
        assert score("SELECT age, name FROM p ORDER BY age, name DESC").match  # ties in another order
        more = score("SELECT p.name, p.age FROM p, p AS q ORDER BY p.age")  # each row many times
        assert not more.match and more.executes
        assert not score("SELECT name, age FROM p ORDER BY age LIMIT 1").match


def test_a_gold_runs_once_per_database_for_every_convention_that_runs_the_same_sql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlmaster.evaluate import execution
    from sqlmaster.evaluate.sandbox import lock_setup_connection, new_setup_connection, run_script

    conn = new_setup_connection()
    run_script(conn, CAP_DB)
    conn = lock_setup_connection(conn)
    runs: list[str] = []
    real_run_gold = execution.run_gold
    monkeypatch.setattr(
        execution, "run_gold", lambda c, plan, limits: runs.append(plan.sql) or real_run_gold(c, plan, limits)
    )
    cache = execution.GoldCache()
    plain, distinct, broken = "SELECT name FROM p", "SELECT DISTINCT name FROM p", "SELECT nope FROM p"
    for gold in (plain, distinct, broken):
        for convention in ("strict", "official", "strict"):
            result = cache.get("db", conn, gold, convention, DEFAULT_LIMITS)
            if gold is broken:  # the error names the convention it was asked for
                assert isinstance(result, execution.GoldError)
                assert str(result).startswith(f"gold ({convention} convention): sql:")
    # Without DISTINCT both conventions run the same SQL: once. With it, each convention runs its own.
    assert runs == [plain, distinct, "SELECT  name FROM p", broken]


@pytest.mark.parametrize("func", ["MIN", "MAX"])
def test_a_dropped_condition_shows_under_min_and_max(func: str) -> None:
    # The row that breaks the condition carries the aggregated column's most extreme value in the direction the
    # aggregate looks (below every other row under MIN, above under MAX), so dropping the condition shows.
    ctx = "CREATE TABLE t (laps INTEGER, grid VARCHAR)"
    gold = f"SELECT {func}(laps) FROM t WHERE grid = 5"
    prep = prepare_example(ctx, gold, k=3, seed=0)
    assert prep.synth.nontrivial
    assert not score_prediction(prep, f"SELECT {func}(laps) FROM t", gold=gold).match
    assert score_prediction(prep, f"SELECT {func}(laps) FROM t WHERE grid = '5'", gold=gold).match


def test_bounded_cache_forgets_the_least_recently_used_and_hands_it_back() -> None:
    from sqlmaster.evaluate.cache import BoundedCache

    evicted: list[str] = []
    cache: BoundedCache[str, str | None] = BoundedCache(2, on_evict=lambda v: evicted.append(str(v)))
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # now "b" is the least recently used
    cache.put("c", "C")
    assert evicted == ["B"] and "b" not in cache and len(cache) == 2
    made: list[str] = []
    assert cache.get_or_make("n", lambda: made.append("n") or None) is None  # None is a value, made once
    assert cache.get_or_make("n", lambda: made.append("again") or "x") is None and made == ["n"]
    cache.clear()
    assert len(cache) == 0 and evicted == ["B", "A", "C", "None"]  # "n" pushed "a" out; clear hands back the rest
    with pytest.raises(ValueError):
        BoundedCache(0)
