"""Scoring on DuckDB, PostgreSQL or MySQL (``sqlmaster eval score --engine duckdb``): the same examples, the same
synthesized rows, the same comparison rules, another engine.

The path of one task (``score.score_example`` hands it here when ``settings.engine`` is not ``sqlite``):

1. The example's SQLite databases are synthesized as always (``execution.ExampleCache``), and the SQLite gold's
   results under every convention are taken from them: they stay the reference.
2. :class:`EngineExample`: the databases rebuilt on the engine (:mod:`sqlmaster.engines.scratch`), once per
   example per worker, and the gold, transpiled (:mod:`sqlmaster.engines.transpile`), run on each of them.
   **A transpiled gold is used only where it returns what the SQLite gold returns on every database** (row
   comparison with column order fixed); otherwise the row is left out of that engine's scoring, with
   ``gold_valid`` false and an ``error`` naming the cause (:data:`GOLD_CAUSES`), and counted by cause in
   metrics.json (``engine.gold_disagrees``): never silently.
3. The prediction, transpiled the same way, runs on each database and is compared with the SQLite gold's result
   there (``execution.compare``: the same multiset, order and tie rules); a prediction that cannot be
   transpiled is a miss that does not execute (``error``: ``transpile: <cause>``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmaster.engines.scratch import ScratchExample, ScratchHost, read_synthesized, scratch_host
from sqlmaster.engines.transpile import TranspileError, transpile
from sqlmaster.evaluate.cache import BoundedCache
from sqlmaster.evaluate.conventions import apply_convention
from sqlmaster.evaluate.execution import GoldError, GoldResult, PreparedExample, Verdict, compare, results_match
from sqlmaster.evaluate.sandbox import Limits, QueryError

if TYPE_CHECKING:
    from sqlmaster.evaluate.score import Score, ScorerState, ScoreSettings, Task

# Why a transpiled gold is not used: it did not transpile, the engine refused it, or it returned other rows.
GOLD_CAUSES = ("transpile", "engine_error", "engine_timeout", "different_rows")
GOLD_PREFIX = "engine gold disagrees with SQLite"  # the error of a row left out; followed by " (<cause>): ..."


@dataclass(frozen=True)
class EngineGold:
    """The gold under one convention on the engine: its transpiled SQL and whether it agrees with SQLite."""

    sql: str | None
    cause: str | None = None  # None: agrees on every database; else one of GOLD_CAUSES
    detail: str = ""


@dataclass
class EngineExample:
    """One example on the engine: its rebuilt databases, SQLite's gold results, the gold's agreement."""

    scratch: ScratchExample
    sqlite_golds: dict[str, list[GoldResult] | GoldError]  # convention -> SQLite's results (the reference)
    golds: dict[str, EngineGold] = field(default_factory=dict)  # convention -> transpiled gold

    @property
    def types(self) -> dict[str, dict[str, str]]:
        return self.scratch.data.types

    def gold(self, gold: str, convention: str, limits: Limits) -> EngineGold:
        if convention not in self.golds:
            sql = apply_convention(gold, convention)
            # conventions that run the same SQL against the same SQLite results share one check
            same = [c for c in self.golds if apply_convention(gold, c) == sql and self.same_reference(c, convention)]
            self.golds[convention] = self.golds[same[0]] if same else self._check_gold(sql, convention, limits)
        return self.golds[convention]

    def same_reference(self, a: str, b: str) -> bool:
        return self.sqlite_golds[a] is self.sqlite_golds[b] or self.sqlite_golds[a] == self.sqlite_golds[b]

    def _check_gold(self, sql: str, convention: str, limits: Limits) -> EngineGold:
        reference = self.sqlite_golds[convention]
        if isinstance(reference, GoldError):
            return EngineGold(None, "engine_error", f"the SQLite gold does not run: {reference}")
        try:
            engine_sql = transpile(sql, self.scratch.engine, self.types)
        except TranspileError as exc:
            return EngineGold(None, "transpile", str(exc))
        for index, expected in enumerate(reference):
            try:
                rows = self.scratch.run(index, engine_sql, limits)
            except QueryError as exc:
                cause = "engine_timeout" if exc.kind == "timeout" else "engine_error"
                return EngineGold(engine_sql, cause, str(exc))
            if not results_match(expected.rows, rows, expected.ordered, True, expected.ties, gold_normalized=True):
                return EngineGold(
                    engine_sql, "different_rows", f"database {index}: {_brief(expected.rows)} vs {_brief(rows)}"
                )
        return EngineGold(engine_sql)

    def verdict(
        self, prediction: str, convention: str, limits: Limits, column_order_matters: bool, dialect: str = "sqlite"
    ) -> Verdict:
        """The prediction (convention applied) on each database, compared with SQLite's gold result there;
        ``dialect``: the prediction's, transpiled from sqlite, run as written when it is the engine's."""
        reference = self.sqlite_golds[convention]
        assert isinstance(reference, list)
        sql = apply_convention(prediction, convention)
        if not sql.strip():
            return Verdict(False, False, "empty: no SQL to execute")
        try:
            engine_sql = sql if dialect == self.scratch.engine else transpile(sql, self.scratch.engine, self.types)
        except TranspileError as exc:
            return Verdict(False, False, f"transpile: {exc}")
        for index, expected in enumerate(reference):
            try:
                rows = self.scratch.run(index, engine_sql, limits, stop_after=len(expected.rows))
            except QueryError as exc:
                return Verdict(False, False, str(exc))
            if not compare(expected, rows, column_order_matters):
                return Verdict(False, True, None)
        return Verdict(True, True, None)

    def close(self) -> None:
        self.scratch.close()


def _brief(rows: Sequence[Any], n: int = 3) -> str:
    text = repr(list(rows[:n]))
    return (text[:200] + "...") if len(text) > 200 else text + (f" (+{len(rows) - n} rows)" if len(rows) > n else "")


class EngineState:
    """One process's engine host and its examples (bounded; an evicted example's databases are dropped)."""

    def __init__(self, engine: str, maxsize: int = 16) -> None:
        self.engine = engine
        self.host: ScratchHost = scratch_host(engine)
        self.examples: BoundedCache[str, EngineExample] = BoundedCache(
            min(maxsize, self.host.max_examples), EngineExample.close
        )

    def example(
        self, key: str, prepared: PreparedExample, gold: str, conventions: Sequence[str], limits: Limits
    ) -> EngineExample:
        def build() -> EngineExample:
            if len(self.examples) >= self.host.max_examples:  # drop the oldest before the new one is built
                self.examples.clear()
            scratch = self.host.build(read_synthesized(prepared.synth.databases))
            return EngineExample(scratch, {c: prepared.gold_results(gold, c, limits) for c in conventions})

        return self.examples.get_or_make(hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest(), build)

    def close(self) -> None:
        self.examples.clear()
        self.host.close()


def score_example_on_engine(state: ScorerState, settings: ScoreSettings, task: Task) -> Score:
    """``score.score_example`` for a context row on ``settings.engine``."""
    from sqlmaster.evaluate.causes import classify_under
    from sqlmaster.evaluate.exact_match import exact_match
    from sqlmaster.evaluate.score import Score
    from sqlmaster.evaluate.synth import is_trivial

    db_path, context, gold, prediction = task
    if db_path is not None:  # eval run's Spider rows: real SQLite files (eval score refuses them up front)
        return Score(False, None, False, False, False, f"real SQLite databases are not scored on {settings.engine}")
    limits = settings.limits
    prepared = state.examples.get(context, gold, settings.databases_per_example, settings.seed, limits)
    em = None
    if settings.exact_match:
        em = len(prediction) <= settings.max_prediction_chars and exact_match(
            prediction, gold, prepared.synth.column_names or None, lambda: prepared.gold_normalized(gold)
        )
    if prepared.synth.gold_error:
        return Score(False, em, False, False, False, str(GoldError(prepared.synth.gold_error)))
    conventions = (settings.convention, *settings.other_conventions)
    if state.engine is None:
        state.engine = EngineState(settings.engine)
    key = f"{settings.databases_per_example}\0{settings.seed}\0{context}\0{gold}"
    example = state.engine.example(key, prepared, gold, conventions, limits)
    main = example.sqlite_golds[settings.convention]
    if isinstance(main, GoldError):
        return Score(False, em, False, False, False, str(main))
    verdicts = _verdicts(example, settings, gold, prediction)
    if settings.convention not in verdicts:
        agreement = example.gold(gold, settings.convention, limits)
        error = f"{GOLD_PREFIX} ({agreement.cause}): {agreement.detail}"
        return Score(False, em, False, False, any(not is_trivial(g.rows) for g in main), error)
    result = verdicts[settings.convention]
    cause = None
    if not result.match:  # why, from the SQL as written (a dialect model's SQL parses close enough for the causes)
        cause = classify_under(settings.convention, prediction, gold, result.error, prepared.synth.column_names or None)
    return Score(
        execution_match=result.match,
        exact_match=em,
        executes=result.executes,
        gold_valid=True,
        gold_nontrivial=any(not is_trivial(g.rows) for g in main),
        error=result.error,
        others={c: verdicts[c].match if c in verdicts else None for c in settings.other_conventions},
        cause=cause.cause if cause else None,
        cause_detail=cause.detail if cause else None,
    )


def _verdicts(example: EngineExample, settings: ScoreSettings, gold: str, prediction: str) -> dict[str, Verdict]:
    """The prediction's verdict under each convention whose gold runs on SQLite and agrees on the engine."""
    verdicts: dict[str, Verdict] = {}
    for c in (settings.convention, *settings.other_conventions):
        if isinstance(example.sqlite_golds[c], GoldError) or example.gold(gold, c, settings.limits).cause:
            continue
        # the same prediction SQL against the same reference under an earlier convention: the same verdict
        same = [
            d
            for d in verdicts
            if apply_convention(prediction, d) == apply_convention(prediction, c) and example.same_reference(c, d)
        ]
        if same:
            verdicts[c] = verdicts[same[0]]
        elif len(prediction) > settings.max_prediction_chars:
            verdicts[c] = Verdict(
                False, False, f"prediction longer than {settings.max_prediction_chars} characters (not run)"
            )
        else:
            verdicts[c] = example.verdict(
                prediction, c, settings.limits, settings.column_order_matters, settings.prediction_dialect
            )
    return verdicts


def engine_metrics(scores: Sequence[Score], engine: str) -> dict[str, Any]:
    """metrics.json's ``engine`` entry: rows left out because the transpiled gold disagrees, by cause."""
    causes: Counter[str] = Counter()
    for s in scores:
        if not s.gold_valid and s.error and s.error.startswith(GOLD_PREFIX):
            causes[s.error[len(GOLD_PREFIX) + 2 :].split(")", 1)[0]] += 1
    sqlite_valid = sum(1 for s in scores if s.gold_valid) + sum(causes.values())
    return {
        "name": engine,
        "gold_disagrees": dict(sorted(causes.items())),
        "gold_left_out": sum(causes.values()),
        "gold_agreement": (1 - sum(causes.values()) / sqlite_valid) if sqlite_valid else None,
        "note": "rows whose SQLite gold runs but whose transpiled gold does not return the same rows on this engine "
        "are left out of this engine's figures (gold_valid false, counted in gold_invalid)",
    }


def check_rows(db_paths: Sequence[str | None], engine: str) -> None:
    """Engines other than SQLite score context rows (synthesized databases) only."""
    from sqlmaster.evaluate.score import ScoreInputError

    if engine != "sqlite" and any(db is not None for db in db_paths):
        raise ScoreInputError(
            f"--engine {engine} scores rows with a 'context' only (their databases are synthesized and rebuilt on "
            f"{engine}); this input names real SQLite databases (db_id/db_path). Score it with --engine sqlite"
        )


def probe_engine(engine: str) -> None:
    """Before any worker starts: a server engine must be reachable (``DatabaseUnavailable``: one error line,
    exit 2), or every row would become a worker failure."""
    if engine in ("postgresql", "mysql"):
        scratch_host(engine).close()
