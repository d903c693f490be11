"""``sqlmaster eval score --db SOURCE``: score predictions against one real database of the user's — a PostgreSQL or
MySQL server, a DuckDB or SQLite file — through the read-only engine layer (:mod:`sqlmaster.engines`).

Every line needs ``answer`` (the gold SQL, in the database's own dialect: no transpiling here) and ``prediction``;
``question`` and any other field are carried into records.jsonl. Gold and prediction both run on SOURCE under the
same limits, one statement each, in one read-only session, and are compared by :mod:`.execution`'s rules (multisets,
ORDER BY, ties by the gold's sort keys when they are output columns, floats to 9 digits, column order free) after
each engine's values are normalised (:mod:`sqlmaster.engines.values`). A prediction is abandoned at its
``len(gold) + 1``-th row, as the file scorer does. metrics.json and records.jsonl have the file scorer's form; the
database is recorded by its redacted SOURCE and engine, never its password.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from sqlmaster.engines import Session, open_database
from sqlmaster.engines.base import Limits, QueryError
from sqlmaster.engines.source import redact
from sqlmaster.evaluate.causes import classify_under
from sqlmaster.evaluate.conventions import CONVENTIONS, apply_convention
from sqlmaster.evaluate.execution import GoldResult, _runs, compare, normalize_rows, plan_gold
from sqlmaster.evaluate.score import (
    DatabaseResolver,
    InputRow,
    Score,
    ScoreSettings,
    compute_metrics,
    output_record,
    prepare_output_dir,
    read_records,
    write_results,
)


class _OneDatabase(DatabaseResolver):
    """Every row runs on SOURCE (rows need no context, db_id or db_path); recorded by its redacted form."""

    def __init__(self, shown: str) -> None:
        super().__init__(None)
        self.shown = shown

    def resolve(self, rec: dict[str, Any], where: str) -> str | None:
        return self.shown


def run_gold(session: Session, gold: str, limits: Limits) -> GoldResult:
    """The gold's rows on the session (raises ``QueryError``), with its tied runs when every ORDER BY key is an output
    column (the file scorer's extra-column rewrite is SQLite SQL, so it is not run here: such a gold compares in
    strict order)."""
    plan = plan_gold(gold)
    raw = session.run(plan.sql, limits)
    rows = normalize_rows(raw)
    keyed = plan.key_columns and plan.tie_sql is None
    ties = _runs([tuple(r[i] for i in plan.key_columns) for r in rows]) if keyed else None
    return GoldResult(rows, plan.ordered, ties, raw)


class ServerScorer:
    """Scores rows on one open session; each (convention-applied) gold runs once."""

    def __init__(self, session: Session, settings: ScoreSettings) -> None:
        self.session = session
        self.settings = settings
        self.limits = settings.limits
        self._golds: dict[str, GoldResult | str] = {}

    def gold(self, sql: str) -> GoldResult | str:
        if sql not in self._golds:
            try:
                self._golds[sql] = run_gold(self.session, sql, self.limits)
            except QueryError as exc:
                self._golds[sql] = str(exc)
        return self._golds[sql]

    def verdict(self, gold_sql: str, prediction: str, convention: str) -> tuple[bool | None, bool, str | None]:
        """(match — None when the gold does not run —, executes, error) under ``convention``."""
        gold = self.gold(apply_convention(gold_sql, convention))
        if isinstance(gold, str):
            return None, False, f"gold ({convention} convention): {gold}"
        sql = apply_convention(prediction, convention)
        if not sql.strip():
            return False, False, "empty: no SQL to execute"
        try:
            rows = self.session.run(sql, replace(self.limits, max_rows=len(gold.rows)))
        except QueryError as exc:
            if exc.kind == "row_cap":  # ran, and returned more rows than the gold: a miss that executes
                return False, True, None
            return False, False, str(exc)
        return compare(gold, rows, self.settings.column_order_matters), True, None

    def score(self, row: InputRow) -> Score:
        gold_sql, prediction = row.data["answer"], row.data["prediction"] or ""
        convention = self.settings.convention
        match, executes, error = self.verdict(gold_sql, prediction, convention)
        others = {c: self.verdict(gold_sql, prediction, c)[0] for c in CONVENTIONS if c != convention}
        gold = self.gold(apply_convention(gold_sql, convention))
        nontrivial = isinstance(gold, GoldResult) and bool(gold.rows)
        cause = None
        if match is False:
            cause = classify_under(convention, prediction, gold_sql, error)
        return Score(bool(match), None, executes, match is not None, nontrivial, error, others,
                     cause=cause.cause if cause else None, cause_detail=cause.detail if cause else None)  # fmt: skip


def score_on_sources(rows: list[InputRow], settings: ScoreSettings) -> list[Score]:
    """Rows whose database is an engine source (``InputRow.source``: ``data from-db``'s pairs over a DuckDB file or
    a server), scored in this process, each source opened once; a source that cannot be opened is an error
    (``DatabaseUnavailable``, exit 2), never a run of misses."""
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_source.setdefault(str(row.source), []).append(i)
    scores: dict[int, Score] = {}
    for source, indices in by_source.items():
        with open_database(source, settings.limits) as session:
            scorer = ServerScorer(session, settings)
            scores.update((i, scorer.score(rows[i])) for i in indices)
    return [scores[i] for i in range(len(rows))]


def score_on_database(
    input_path: Path, output_dir: Path, source: str, settings: ScoreSettings, overwrite: bool = False
) -> dict[str, Any]:
    """Score every line of ``input_path`` on ``source``; write records.jsonl and metrics.json; return the metrics."""
    settings.validate()
    prepare_output_dir(output_dir, overwrite)
    shown = redact(source)
    rows = read_records(input_path, resolver=_OneDatabase(shown))
    with open_database(source, settings.limits) as session:
        scorer = ServerScorer(session, settings)
        scores = [scorer.score(row) for row in rows]
        engine = session.engine.name
    metrics = compute_metrics(rows, scores, settings)
    metrics["databases"] = {"source": shown, "engine": engine}
    metrics["settings"] = asdict(settings)
    other = settings.other_conventions
    write_results(output_dir, [output_record(r, s, other) for r, s in zip(rows, scores, strict=True)], metrics)
    return metrics
