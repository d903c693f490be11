"""Execution-based voting: of N sampled queries for one question, answer with the one whose result is most common.

    question = Question(candidates=(Candidate(sql, mean_logprob, greedy=True), ...), context=create_tables)
    votes = vote_questions([question, ...])   # one Vote per question, in order; vote.sql is the answer
    vote(candidates, outcomes)                # the choice itself: a pure function of the execution outcomes

**The rule** (:func:`vote`). Candidates whose results agree on every database form a group; a candidate that
did not run (an error, a refused or runaway statement) belongs to no group. The answer is the candidate that
ranks highest by (size of its group, its mean token log-probability, being the greedy decode, coming first), so
the largest group wins; groups of equal size go to the one holding the likeliest candidate, then to the greedy
one; within the winning group the likeliest candidate answers. When no candidate runs, the greedy one answers
(then the likeliest). Results agree as the scorer compares a prediction with its gold
(:func:`.execution.results_match`: rows as multisets, as lists only when both queries have an outermost ORDER
BY, floats rounded, column order free unless ``column_order_matters``).

**Where the candidates run** (:func:`vote_questions`). A question with ``db_path`` (Spider, BIRD) runs on that
real database, read once per worker (:class:`.execution.DatabaseCache`). A question with only a ``CREATE TABLE``
context runs on ``databases_per_example`` databases synthesized from it (:mod:`.synth`), which the scorer builds
around a gold query's literals so that a wrong query shows. At inference there is no gold to build them around
— and building them around the reference answer would let it steer which candidates look alike — so they are
built around one of the candidates instead: the greedy one, else the next likeliest whose synthesis succeeds.

**Sandboxed like the scorer.** Everything runs in the scorer's :class:`.isolated.IsolatedPool` (capped heap and
address space, a CPU-time guard per statement, a watchdog), one task per distinct candidate, so a hostile
candidate costs that candidate (it counts as not running) and never the question or the run. The databases are
chosen first, one task per question (a candidate that kills its worker while the databases are built around it
is passed over for the next), then the candidates run, a question's tasks grouped on one worker so that its
databases are built once there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlmaster.cores import scorer_workers
from sqlmaster.evaluate.isolated import IsolatedPool, workers_for
from sqlmaster.evaluate.sandbox import QueryError, Row
from sqlmaster.evaluate.score import DatabaseResolver, ScoreSettings
from sqlmaster.progress import Progress

_STATE: Any = None  # this worker's caches (see _Caches), created lazily
_INHERITED: list[Any] = []  # a forked worker's copy of its parent's caches: kept, never used or closed


@dataclass(frozen=True)
class Candidate:
    """One sampled query for a question."""

    sql: str
    mean_logprob: float  # mean log-probability of its generated tokens (higher: the model was surer)
    greedy: bool = False  # the greedy decode among the samples


@dataclass(frozen=True)
class Outcome:
    """What one candidate returned on each database, or why it did not run."""

    rows: tuple[tuple[Row, ...], ...] = ()  # one tuple of rows per database, as SQLite returned them
    ordered: bool = False  # the candidate's outermost query has ORDER BY: its row order is part of its answer
    error: str | None = None

    @property
    def runs(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Vote:
    """Which candidate answers, and why."""

    index: int  # position of the chosen candidate
    sql: str
    groups: tuple[tuple[int, ...], ...]  # candidates with the same results, largest group first
    errors: int  # candidates that did not run
    reason: str  # majority | log-probability | greedy | first | all failed


@dataclass(frozen=True)
class Question:
    """A question's candidates and where they run: a real database file, else its ``CREATE TABLE`` context."""

    candidates: tuple[Candidate, ...]
    context: str | None = None
    db_path: str | None = None

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("a question needs at least one candidate")
        if not self.db_path and not (self.context and self.context.strip()):
            raise ValueError("a question needs a db_path or a CREATE TABLE context to run its candidates on")


# ------------------------------------------------------------------------------------------------ the rule


def _logprob(candidate: Candidate) -> float:
    value = candidate.mean_logprob
    return value if isinstance(value, int | float) and not math.isnan(value) else -math.inf


def same_results(a: Outcome, b: Outcome, column_order_matters: bool = False) -> bool:
    """Whether two candidates that ran answered alike on every database (see the module docstring)."""
    from sqlmaster.evaluate.execution import results_match

    if len(a.rows) != len(b.rows):
        return False
    ordered = a.ordered and b.ordered
    return all(
        results_match(list(x), list(y), ordered, column_order_matters) for x, y in zip(a.rows, b.rows, strict=True)
    )


def vote(candidates: Sequence[Candidate], outcomes: Sequence[Outcome], column_order_matters: bool = False) -> Vote:
    """The candidate that answers (see the module docstring); ``outcomes[i]`` is what ``candidates[i]`` did."""
    if not candidates or len(candidates) != len(outcomes):
        raise ValueError(f"{len(candidates)} candidates for {len(outcomes)} outcomes: one outcome per candidate")
    groups: list[list[int]] = []
    for i, outcome in enumerate(outcomes):
        if not outcome.runs:
            continue
        for group in groups:
            if same_results(outcomes[group[0]], outcome, column_order_matters):
                group.append(i)
                break
        else:
            groups.append([i])
    errors = sum(not o.runs for o in outcomes)
    if not groups:
        index = max(range(len(candidates)), key=lambda i: (candidates[i].greedy, _logprob(candidates[i]), -i))
        return Vote(index, candidates[index].sql, (), errors, "all failed")
    size = {i: len(group) for group in groups for i in group}

    def rank(i: int) -> tuple[int, float, bool, int]:
        return (size[i], _logprob(candidates[i]), candidates[i].greedy, -i)

    index = max(size, key=rank)
    rivals = [i for group in groups if index not in group and len(group) == size[index] for i in group]
    reason = "majority"
    if rivals:
        best, rival = rank(index), rank(max(rivals, key=rank))
        reason = "log-probability" if best[1] > rival[1] else "greedy" if best[2] > rival[2] else "first"
    ordered = sorted(groups, key=lambda group: rank(max(group, key=rank)), reverse=True)
    return Vote(index, candidates[index].sql, tuple(tuple(g) for g in ordered), errors, reason)


def first_with_rows(candidates: Sequence[Candidate], outcomes: Sequence[Outcome]) -> Vote:
    """Execution-guided choice (``evaluation.vote_rule: first-rows``): the first candidate, in their order (the
    greedy decode first, then the samples), that parses, runs and returns at least one row on some database; else
    the first that runs; else the greedy one."""
    if not candidates or len(candidates) != len(outcomes):
        raise ValueError(f"{len(candidates)} candidates for {len(outcomes)} outcomes: one outcome per candidate")
    errors = sum(not o.runs for o in outcomes)
    with_rows = [i for i, o in enumerate(outcomes) if o.runs and any(o.rows)]
    runs = [i for i, o in enumerate(outcomes) if o.runs]
    for reason, found in (("first with rows", with_rows), ("first that runs", runs)):
        if found:
            return Vote(found[0], candidates[found[0]].sql, ((found[0],),), errors, reason)
    index = next((i for i, c in enumerate(candidates) if c.greedy), 0)
    return Vote(index, candidates[index].sql, (), errors, "all failed")


# ------------------------------------------------------------------------------------------------ in a worker


class _Caches:
    def __init__(self) -> None:
        from sqlmaster.evaluate.execution import DatabaseCache, ExampleCache

        self.examples = ExampleCache()
        self.databases = DatabaseCache()


def _fresh_worker_state() -> None:
    """First thing in a worker: a forked one sets its parent's caches (open SQLite connections) aside untouched."""
    global _STATE
    from sqlmaster.evaluate.synth import POOL

    _INHERITED.append(_STATE)
    _STATE = None
    POOL.forget()


def _caches() -> _Caches:
    global _STATE
    if _STATE is None:
        _STATE = _Caches()
    return _STATE


def _connections(settings: ScoreSettings, db_path: str | None, context: str, hint: str) -> list[Any]:
    """The question's databases: the real file, or those synthesized around ``hint`` (raises QueryError)."""
    state = _caches()
    if db_path:
        return [state.databases.get(db_path, settings.limits)]
    prepared = state.examples.get(context, hint, settings.databases_per_example, settings.seed, settings.limits)
    if prepared.synth.gold_error is not None:
        raise QueryError("synthesis", prepared.synth.gold_error)
    return prepared.connections(settings.limits)


def run_candidate(settings: ScoreSettings, db_path: str | None, context: str, hint: str, sql: str) -> Outcome:
    """Run one candidate on its question's databases, in this process (the sandbox's limits apply)."""
    from sqlmaster.evaluate.execution import gold_is_ordered
    from sqlmaster.evaluate.sandbox import run_query

    if not sql.strip():
        return Outcome(error="empty: no SQL to execute")
    if len(sql) > settings.max_prediction_chars:
        return Outcome(error=f"longer than {settings.max_prediction_chars} characters (not run)")
    try:
        connections = _connections(settings, db_path, context, hint)
        rows = tuple(tuple(run_query(conn, sql, settings.limits)) for conn in connections)
    except QueryError as exc:
        return Outcome(error=str(exc))
    return Outcome(rows, gold_is_ordered(sql))


def _task(settings: ScoreSettings, payload: tuple[str, str | None, str, str, str]) -> dict[str, Any]:
    """A pool task: ``("databases", None, context, hint, "")`` builds a question's databases around ``hint``;
    ``("run", db_path, context, hint, sql)`` runs one candidate on them."""
    kind, db_path, context, hint, sql = payload
    if kind == "databases":
        try:
            _connections(settings, db_path, context, hint)
        except QueryError as exc:
            return {"error": str(exc)}
        return {"error": None}
    return {"outcome": run_candidate(settings, db_path, context, hint, sql)}


def _failure(reason: str) -> dict[str, Any]:
    return {"error": f"worker: {reason}", "outcome": Outcome(error=f"worker: {reason}")}


# ------------------------------------------------------------------------------------------------ many questions


def hint_order(candidates: Sequence[Candidate]) -> list[str]:
    """Distinct non-empty candidate SQL to build synthesized databases around: greedy first, then likeliest."""
    order = sorted(range(len(candidates)), key=lambda i: (not candidates[i].greedy, -_logprob(candidates[i]), i))
    hints: list[str] = []
    for i in order:
        sql = candidates[i].sql.strip()
        if sql and sql not in hints:
            hints.append(sql)
    return hints


class _Runner:
    """Runs tasks in an isolated pool, or in this process when ``workers`` is 0 (no isolation; tests)."""

    def __init__(self, settings: ScoreSettings, workers: int, tasks: int, method: str | None) -> None:
        self.fn = functools.partial(_task, settings)
        self.settings, self.method = settings, method
        self.workers = workers_for(workers, tasks) if workers > 0 else 0  # a worker costs a process start
        self.pool: IsolatedPool | None = None

    def start(self) -> None:
        """Fork the workers now (before a progress thread starts: see .isolated)."""
        if self.workers > 0 and self.pool is None:
            self.pool = IsolatedPool(
                self.fn, self.workers, self.settings.example_timeout_s, _failure, _fresh_worker_state, self.method
            )

    def map(self, payloads: list[Any], group: Any, progress: Progress | None = None) -> list[dict[str, Any]]:
        if not payloads:
            return []
        advance = (lambda *_: progress.advance()) if progress is not None else None
        if self.workers <= 0:
            answers = []
            for p in payloads:
                answers.append(self._here(p))
                if advance is not None:
                    advance()
            return answers
        self.start()
        assert self.pool is not None
        return self.pool.map(payloads, group=group, on_result=advance)

    def _here(self, payload: Any) -> dict[str, Any]:
        try:
            return self.fn(payload)
        except Exception as exc:  # the pool's contract: one bad task fails alone
            return _failure(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def _choose_hints(runner: _Runner, questions: Sequence[Question]) -> list[str | None]:
    """For each context question, the first hint its databases can be built around (None: none can)."""
    options = [hint_order(q.candidates) if not q.db_path else [] for q in questions]
    chosen: list[str | None] = [None] * len(questions)
    tried = [0] * len(questions)
    pending = [i for i, q in enumerate(questions) if not q.db_path and options[i]]
    while pending:
        payloads = [("databases", None, questions[i].context or "", options[i][tried[i]], "") for i in pending]
        answers = runner.map(payloads, group=lambda p: (p[2], p[3]))
        still = []
        for i, answer in zip(pending, answers, strict=True):
            error = answer.get("error")
            if error is None:
                chosen[i] = options[i][tried[i]]
                continue
            tried[i] += 1
            # An invalid context fails every hint alike: stop there.
            if tried[i] < len(options[i]) and not str(error).startswith("context"):
                still.append(i)
        pending = still
    return chosen


def vote_questions(
    questions: Sequence[Question],
    settings: ScoreSettings | None = None,
    workers: int | None = None,
    method: str | None = None,
    rule: str = "majority",
) -> list[Vote]:
    """One :class:`Vote` per question, in order (see the module docstring).

    ``settings``: the scorer's (databases per example, seed, limits, watchdog, column order; evaluation's by
    default); ``workers``: processes (default up to 2; 0 runs in this process without isolation); ``method``
    forces the workers' start method (tests); ``rule``: ``majority`` (:func:`vote`) or ``first-rows``
    (:func:`first_with_rows`). A ``db_path`` that is not an SQLite file raises
    :class:`~.score.ScoreInputError` (a ConfigError) before anything runs.
    """
    settings = settings or ScoreSettings()
    settings.validate()
    resolver = DatabaseResolver(None)  # a missing or non-SQLite db_path is an error naming the question
    questions = [
        replace(q, db_path=resolver.resolve({"db_path": q.db_path}, f"question {i}")) if q.db_path else q
        for i, q in enumerate(questions)
    ]
    workers = scorer_workers() if workers is None else workers
    runner = _Runner(settings, workers, sum(len(q.candidates) for q in questions), method)
    try:
        hints = _choose_hints(runner, questions)
        # Distinct SQL once per question: samples often repeat.
        keys = sorted({(i, c.sql.strip()) for i, q in enumerate(questions) for c in q.candidates if c.sql.strip()})
        payloads = []
        runnable = []
        for i, sql in keys:
            if questions[i].db_path or hints[i] is not None:
                payloads.append(("run", questions[i].db_path, questions[i].context or "", hints[i] or "", sql))
                runnable.append((i, sql))
        runner.start()
        with Progress("voting", len(payloads), unit="queries") as bar:
            answers = runner.map(payloads, group=lambda p: (p[1], p[2], p[3]), progress=bar)
    finally:
        runner.close()
    outcomes = {key: answer["outcome"] for key, answer in zip(runnable, answers, strict=True)}
    votes = []
    for i, q in enumerate(questions):
        no_databases = Outcome(error="no candidate runs on this schema: no databases to compare results on")
        per_candidate = [
            outcomes.get((i, c.sql.strip()), no_databases if c.sql.strip() else Outcome(error="empty"))
            for c in q.candidates
        ]
        if rule == "first-rows":
            votes.append(first_with_rows(q.candidates, per_candidate))
        else:
            votes.append(vote(q.candidates, per_candidate, settings.column_order_matters))
    return votes
