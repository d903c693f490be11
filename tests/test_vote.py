"""Execution-based voting: the largest result group wins; ties go to log-probability, then to the greedy candidate;
candidates that do not run never win unless none runs; hostile candidates cost only themselves."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pytest

from sqlmaster.evaluate.score import ScoreInputError, ScoreSettings
from sqlmaster.evaluate.vote import Candidate, Outcome, Question, Vote, hint_order, same_results, vote, vote_questions
from tests.test_score_hostile import HOSTILE

A = Outcome(rows=(((1, "x"),), ((2, "y"),)))  # one answer, on two databases
B = Outcome(rows=(((1, "x"),), ((3, "z"),)))  # agrees with A on the first database only
ERR = Outcome(error="sql: no such column: nom")


def _cands(*logprobs: float, greedy: int | None = None) -> list[Candidate]:
    return [Candidate(f"SELECT {i}", lp, greedy=i == greedy) for i, lp in enumerate(logprobs)]


def test_majority_wins_over_likelier_and_greedy_candidates() -> None:
    result = vote(_cands(-0.9, -0.8, -0.7, -0.1, -0.2, greedy=3), [A, A, A, B, B])
    assert result == Vote(2, "SELECT 2", ((0, 1, 2), (3, 4)), 0, "majority")  # the likeliest of the majority


def test_errors_are_never_grouped_and_never_win() -> None:
    # Three identical errors do not make a group of three; the greedy, likeliest candidate errs.
    result = vote(_cands(-0.1, -0.2, -0.3, -0.9, greedy=0), [ERR, ERR, ERR, B])
    assert (result.index, result.groups, result.errors, result.reason) == (3, ((3,),), 3, "majority")


def test_tie_goes_to_the_group_with_the_likeliest_candidate() -> None:
    result = vote(_cands(-0.5, -0.6, -0.2, -0.9, greedy=0), [A, A, B, B])
    assert (result.index, result.reason) == (2, "log-probability")
    assert result.groups == ((2, 3), (0, 1))


def test_tie_on_log_probability_goes_to_the_greedy_candidate_then_the_first() -> None:
    assert vote(_cands(-0.5, -0.5, greedy=1), [A, B]).index == 1
    assert vote(_cands(-0.5, -0.5, greedy=1), [A, B]).reason == "greedy"
    assert vote(_cands(-0.5, -0.5), [A, B]) == Vote(0, "SELECT 0", ((0,), (1,)), 0, "first")


def test_all_errors_fall_back_to_greedy_then_likeliest() -> None:
    assert vote(_cands(-0.1, -0.9, greedy=1), [ERR, ERR]) == Vote(1, "SELECT 1", (), 2, "all failed")
    assert vote(_cands(-0.9, -0.1), [ERR, ERR]).index == 1
    assert vote(_cands(math.nan, -5.0), [ERR, ERR]).index == 1  # a NaN log-probability ranks lowest


def test_results_agree_as_the_scorer_compares_them() -> None:
    rows = ((1, "a"), (2, "b"))
    swapped_columns = (("b", 2), ("a", 1))
    assert same_results(Outcome((rows,)), Outcome((swapped_columns,)))  # column order free, rows as a multiset
    assert not same_results(Outcome((rows,)), Outcome((swapped_columns,)), column_order_matters=True)
    assert same_results(Outcome(((((0.1 + 0.2),),),)), Outcome((((0.3,),),)))  # floats rounded
    reversed_rows = (rows[1], rows[0])
    assert not same_results(Outcome((rows,), ordered=True), Outcome((reversed_rows,), ordered=True))
    assert same_results(Outcome((rows,), ordered=True), Outcome((reversed_rows,)))  # one of them has no ORDER BY


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one outcome per candidate"):
        vote(_cands(-0.1), [A, B])
    with pytest.raises(ValueError, match="db_path or a CREATE TABLE context"):
        Question(candidates=tuple(_cands(-0.1)))
    with pytest.raises(ValueError, match="at least one candidate"):
        Question(candidates=(), context="CREATE TABLE t (a)")
    assert hint_order([Candidate(" ", 0.0), Candidate("b", -2.0), Candidate("a", -1.0, greedy=True)]) == ["a", "b"]


# ------------------------------------------------------------------------------------------------ executed

CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"
RIGHT = (
    "SELECT name FROM t WHERE age > 30",
    "SELECT name FROM t WHERE 30 < age",
    "SELECT t.name FROM t WHERE t.age > 30",
)


def test_synthesized_databases_majority_and_broken_greedy_hint() -> None:
    candidates = (
        Candidate("SELEC name FROM t", -0.05, greedy=True),  # the greedy decode does not parse: no databases from it
        Candidate(RIGHT[0], -0.6),
        Candidate(RIGHT[1], -0.4),
        Candidate(RIGHT[2], -0.5),
        Candidate("SELECT name FROM t", -0.7),  # wrong: the databases are built around RIGHT[1] (next likeliest)
        Candidate("SELECT nom FROM t", -0.2),
    )
    (result,) = vote_questions([Question(candidates, context=CTX)], workers=0)
    assert (result.index, result.sql, result.errors, result.reason) == (2, RIGHT[1], 2, "majority")
    assert result.groups[0] == (1, 2, 3)


def test_real_database_and_repeated_samples(tmp_path: Path) -> None:
    db = tmp_path / "concert.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE singer (name TEXT, age INTEGER);"
            "INSERT INTO singer VALUES ('ann', 25), ('bob', 41), ('cy', 37), ('di', 30);"
        )
    conn.close()
    oldest = "SELECT name FROM singer ORDER BY age DESC LIMIT 1"
    candidates = (
        Candidate("SELECT name FROM singer WHERE age = (SELECT MAX(age) FROM singer)", -0.3),
        Candidate(oldest, -0.2, greedy=True),
        Candidate(oldest, -0.2),  # samples repeat: run once, counted twice
        Candidate("SELECT name FROM singer ORDER BY age LIMIT 1", -0.01),
    )
    (result,) = vote_questions([Question(candidates, db_path=str(db))], workers=0)
    assert (result.index, result.groups, result.reason) == (1, ((0, 1, 2), (3,)), "majority")
    with pytest.raises(ScoreInputError, match="question 0"):
        vote_questions([Question(candidates, db_path=str(tmp_path / "missing.sqlite"))], workers=0)


# Budgets of one second per statement keep the test short; evaluation's are 2 s wall and 3 s CPU.
FAST = ScoreSettings(timeout_s=1.0, cpu_s_per_statement=1.0)
# A few seconds on an idle 2-core machine (the printf bomb twice, 1 s of CPU each, and a runaway CTE); the bound is
# the scorer's own hostile-corpus bound (tests/test_score_hostile.py), since a loaded, niced runner stretches each
# CPU second many times over in wall time.
HOSTILE_BOUND_S = 180.0


def test_hostile_candidates_cost_only_themselves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where an ATTACH would create its file
    bombs = ("printf bomb", "runaway recursive CTE", "ATTACH", "two statements")  # test_reward runs them all
    hostile = [Candidate(HOSTILE[name], -1.0) for name in bombs]
    # The greedy decode is a CPU bomb: building databases around it kills a worker, and the next hint is used.
    greedy_bomb = Candidate(HOSTILE["printf bomb"], -0.01, greedy=True)
    first = Question((greedy_bomb, *hostile, Candidate(RIGHT[0], -0.9), Candidate(RIGHT[1], -0.8)), context=CTX)
    second = Question(
        (Candidate("SELECT age FROM t", -0.1, greedy=True), Candidate("SELECT nom FROM t", 0.0)), context=CTX
    )
    start = time.monotonic()
    votes = vote_questions([first, second], FAST, workers=2)
    elapsed = time.monotonic() - start
    assert (votes[0].sql, votes[0].groups, votes[0].errors) == (RIGHT[1], ((5, 6),), 5)
    assert (votes[1].index, votes[1].errors) == (0, 1)
    assert not (tmp_path / "escape.db").exists()
    assert elapsed < HOSTILE_BOUND_S


def test_execution_guided_choice_takes_the_first_candidate_that_returns_rows(tmp_path: Path) -> None:
    from sqlmaster.evaluate.generate import GenerationSettings
    from sqlmaster.evaluate.vote import first_with_rows

    empty = Outcome(rows=((), ()))
    cands = _cands(-0.1, -0.5, -0.9, -0.2, greedy=0)
    assert first_with_rows(cands, [ERR, empty, B, A]) == Vote(2, "SELECT 2", ((2,),), 1, "first with rows")
    assert first_with_rows(cands, [ERR, empty, ERR, ERR]).reason == "first that runs"
    assert first_with_rows(cands, [ERR] * 4) == Vote(0, "SELECT 0", (), 4, "all failed")
    db = tmp_path / "singers.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript("CREATE TABLE singer (name TEXT, age INTEGER); INSERT INTO singer VALUES ('ann', 25);")
    conn.close()
    candidates = (
        Candidate("SELECT nom FROM singer", -0.1, greedy=True),  # does not run
        Candidate("SELECT name FROM singer WHERE age > 90", -0.2),  # runs, no rows
        Candidate("SELECT name FROM singer", -0.9),
        Candidate("SELECT name FROM singer WHERE age > 90", -0.2),
    )
    (result,) = vote_questions([Question(candidates, db_path=str(db))], workers=0, rule="first-rows")
    assert (result.index, result.reason) == (2, "first with rows")
    (majority,) = vote_questions([Question(candidates, db_path=str(db))], workers=0)
    assert majority.index == 1  # the vote picks the pair that agree (on no rows)
    assert GenerationSettings(vote=4, vote_rule="first-rows").decoding == "exec@4"
