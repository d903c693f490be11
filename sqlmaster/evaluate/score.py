"""``sqlmaster eval score``: score a JSONL file of predictions against gold SQL — the one scoring path.

    sqlmaster eval score --input predictions.jsonl --output-dir scored/
    sqlmaster eval score --input spider_preds.jsonl --output-dir scored/ --db-dir spider/database --convention official

Input: one JSON object per line with ``answer`` (gold SQL), ``prediction`` (predicted SQL; ``null`` counts as an
empty prediction) and where to run them, either

* ``context``: ``CREATE TABLE`` statements; the example is scored on ``databases_per_example`` databases
  synthesized from it (:mod:`.synth`), or
* ``db_id``: a real SQLite database at ``DB_DIR/<db_id>/<db_id>.sqlite`` (Spider's and BIRD's layout) or
  ``DB_DIR/<db_id>.sqlite``, with ``--db-dir DB_DIR``; or ``db_path``: the database file itself (relative paths
  are relative to the current directory). Each distinct database file is checked once before scoring starts
  (:func:`.sandbox.database_file_problem`): one that cannot be read (damaged, a directory, held under another
  process's write lock, WAL changes not yet checkpointed) is an error naming the line (exit 2), never a run of
  misses. The files are opened read-only and immutable: nothing, not even a ``-shm`` file, appears beside them.

A row with a database is scored on it even when it also carries a ``context`` (the prompt's schema). Both
kinds may be mixed in one file. Other fields (``question``, ``latency_s``, ``tokens``, ...) are kept. Output
in ``output_dir``:

* ``records.jsonl``: one line per input line, in input order: every input field as read (an input field named
  like one of the scorer's, ``SCORER_FIELDS``, is refused when the file is read) plus ``execution_match``
  (boolean, under the chosen convention), ``execution_match_<other convention>``, ``exact_match``,
  ``executes``, ``gold_valid``, ``gold_nontrivial``, ``error`` (null when none), ``cause`` and ``cause_detail``
  (why a miss missed, :mod:`.causes`; null for a match), ``rows`` and ``line``.
  ``rows`` previews what each query returned on the example's first database under the chosen convention:
  ``{"gold": [...], "gold_more": bool, "prediction": [...] | null, "prediction_more": bool}``, at most
  ``execution.PREVIEW_ROWS`` rows each, long values cut (``null`` when the gold does not run; ``prediction`` is
  ``null`` when it did not run there; ``prediction_more`` is also true when it returned more rows than the gold,
  where the scorer stops reading it).
* ``metrics.json``: ``execution_accuracy`` under ``convention`` and ``execution_accuracy_<other>`` beside it,
  ``executes`` (over the ``n_scored`` rows whose gold runs), ``exact_match`` (over all ``n`` rows),
  ``gold_invalid``, ``gold_nontrivial_rate``, ``{metric}_ci`` 95% bootstrap intervals, ``miss_causes`` (misses
  per cause) and ``execution_errors`` (per SQLite error class), latency percentiles
  when the records carry ``latency_s``, and the scorer's settings.

**The output directory is never half-written or mixed with another run's files.** A directory that already
holds ``metrics.json`` or ``records.jsonl`` is refused (exit 2) unless ``--overwrite`` is given; then the old
``metrics.json`` is removed first, ``records.jsonl`` is written to a temporary file and renamed, and
``metrics.json`` is written the same way last — so a ``metrics.json`` always describes the ``records.jsonl``
beside it. Every string is written as valid UTF-8 (a lone surrogate becomes its ``\\udXXX`` JSON escape, which
reads back as the same string) and non-finite numbers become ``null``.

Scoring runs in worker processes with a watchdog (:mod:`.isolated`: a crash inside SQLite, a runaway function
call or an allocation that takes a process down is a miss naming the reason, never the end of the run), with a
capped SQLite heap, address space and per-statement CPU time. Tasks go out in chunks, grouped so that
predictions of the same example or database land on the same worker (its caches: one synthesis per example, one
copy of each database, one gold run per database). ``workers=0`` scores in-process (no isolation; for
debugging and small tests).

Usage from Python::

    from sqlmaster.evaluate.score import score_file
    metrics = score_file("predictions.jsonl", "out/", db_dir="spider/database", convention="official")
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmaster.atomic import atomic_open, finite
from sqlmaster.config import EvaluationConfig, recipe_field
from sqlmaster.cores import scorer_workers
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.conventions import CONVENTIONS, DEFAULT_CONVENTION
from sqlmaster.evaluate.isolated import IsolatedPool, workers_for
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS, Limits, database_file_problem
from sqlmaster.progress import Progress
from sqlmaster.rundir import METRICS_FILE, RECORDS_FILE

if TYPE_CHECKING:  # the parent process imports these lazily (see score_records)
    import sqlite3

    from sqlmaster.evaluate.causes import Cause
    from sqlmaster.evaluate.execution import GoldError, GoldResult, Verdict


class ScoreInputError(ConfigError):
    """The input file is unreadable or a line is malformed (the message names the line and the fix)."""


@dataclass(frozen=True)
class ScoreSettings:
    """How examples are scored; saved into metrics.json so that a figure can be reproduced."""

    convention: str = DEFAULT_CONVENTION  # official | strict (sqlmaster.evaluate.conventions); both are reported
    # synthesized databases per context row (results must agree on all): the recipe's evaluation key
    databases_per_example: int = recipe_field(EvaluationConfig, "databases_per_example")
    seed: int = 0  # base seed of database synthesis and the bootstrap
    column_order_matters: bool = False  # Spider test-suite convention: column order is not part of the answer
    bootstrap_resamples: int = 1000
    timeout_s: float = DEFAULT_LIMITS.timeout_s  # wall time per SQL statement (VM steps)
    cpu_s_per_statement: float = DEFAULT_LIMITS.cpu_s_per_statement  # CPU per statement, function calls too
    max_rows: int = DEFAULT_LIMITS.max_rows  # per SQL statement
    max_result_bytes: int = DEFAULT_LIMITS.max_result_bytes  # per SQL statement
    max_prediction_chars: int = DEFAULT_LIMITS.max_sql_chars  # longer predictions are misses, never parsed
    exact_match: bool = True  # also compute exact match (parses every prediction that differs from its gold)
    example_timeout_s: float = 30.0  # watchdog: wall time for one example in a worker
    engine: str = "sqlite"  # where SQL runs: sqlite | duckdb | ... (.engine_score: golds checked against SQLite)
    prediction_dialect: str = "sqlite"  # predictions' dialect: sqlite (transpiled to the engine) or the engine's

    @property
    def limits(self) -> Limits:
        return Limits(
            timeout_s=self.timeout_s,
            max_rows=self.max_rows,
            max_result_bytes=self.max_result_bytes,
            max_sql_chars=self.max_prediction_chars,
            cpu_s_per_statement=self.cpu_s_per_statement,
        )

    @property
    def other_conventions(self) -> tuple[str, ...]:
        return tuple(c for c in CONVENTIONS if c != self.convention)

    def validate(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ScoreInputError(f"unknown convention {self.convention!r}. Use one of: {', '.join(CONVENTIONS)}")
        if self.engine != "sqlite":
            from sqlmaster.engines.scratch import HOSTS

            if self.engine not in HOSTS:
                choices = ", ".join(("sqlite", *HOSTS))
                raise ScoreInputError(f"cannot score on engine {self.engine!r}. Use one of: {choices}")
        if self.prediction_dialect not in ("sqlite", self.engine):
            raise ScoreInputError(
                f"predictions in {self.prediction_dialect!r} cannot be scored on {self.engine}. Use sqlite "
                f"(transpiled) or {self.engine} (run as written)"
            )
        if self.databases_per_example < 1:
            raise ScoreInputError(
                f"databases_per_example must be >= 1, got {self.databases_per_example}. Use 3 or more."
            )
        for name in ("timeout_s", "cpu_s_per_statement", "example_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ScoreInputError(f"{name} must be a positive number of seconds, got {value!r}.")


# ------------------------------------------------------------------------------------------------ rows and scores


@dataclass(frozen=True)
class InputRow:
    """One validated input line: the user's object as read, and where it runs (kept out of the user's fields)."""

    data: dict[str, Any]  # the JSON object of the line; written back unchanged into records.jsonl
    db: str | None  # absolute path of its real database; None: synthesize databases from its context
    line: int | None = None  # its line in the input file (None for rows that come from no file)
    source: str | None = None  # ``db_source``: a DuckDB file or server URL the engine layer opens (server_score)


# The fields the scorer writes into each records.jsonl line (Score.record_fields, and output_record's "line").
# An input field with one of these names would be overwritten, so it is refused when the file is read.
SCORER_FIELDS = (
    "execution_match",
    "exact_match",
    "executes",
    "gold_valid",
    "gold_nontrivial",
    "error",
    "cause",
    "cause_detail",
    *(f"execution_match_{c}" for c in CONVENTIONS),
    "worker_failure",
    "rows",
    "line",
)


@dataclass(frozen=True)
class Score:
    """One prediction's verdicts, as records.jsonl reports them (in this field order)."""

    execution_match: bool  # under the chosen convention
    exact_match: bool | None  # None: exact match was not computed
    executes: bool
    gold_valid: bool
    gold_nontrivial: bool
    error: str | None
    others: dict[str, bool | None] = field(default_factory=dict)  # execution_match under each other convention
    worker_failure: bool = False  # the worker crashed or overran on it, or the scorer raised
    cause: str | None = None  # why it missed (a key of causes.CAUSES); None for a match or an unscored row
    cause_detail: str | None = None  # what differs, in a few words
    rows: dict[str, Any] | None = field(default=None, compare=False)  # records.jsonl's ``rows`` preview

    def match_under(self, convention: str) -> bool | None:
        """``execution_match`` under another convention; ``None`` when the gold does not run under it.

        A worker failure is a miss under every convention: it stays in each figure's denominator, or the other
        conventions' figures would rise with every prediction that crashed or overran its worker.
        """
        return False if self.worker_failure else self.others.get(convention)

    def record_fields(self, other_conventions: Iterable[str]) -> dict[str, Any]:
        fields = {
            "execution_match": self.execution_match,
            "exact_match": self.exact_match,
            "executes": self.executes,
            "gold_valid": self.gold_valid,
            "gold_nontrivial": self.gold_nontrivial,
            "error": self.error,
            "cause": self.cause,
            "cause_detail": self.cause_detail,
            "rows": self.rows,
        }
        fields.update({f"execution_match_{c}": self.match_under(c) for c in other_conventions})
        if self.worker_failure:
            fields["worker_failure"] = True
        return fields


# ------------------------------------------------------------------------------------------------ input


class DatabaseResolver:
    """Finds and checks each row's real database once per file (a bad one is an error naming the line)."""

    def __init__(self, db_dir: str | Path | None) -> None:
        self.db_dir = Path(db_dir) if db_dir is not None else None
        self._checked: dict[str, str] = {}
        self._by_id: dict[str, str] = {}  # db_id -> resolved path: thousands of rows name a few dozen databases
        if self.db_dir is not None and not self.db_dir.is_dir():
            raise ScoreInputError(
                f"--db-dir {self.db_dir} is not a directory. Pass the folder holding <db_id>/<db_id>.sqlite"
            )

    def resolve(self, rec: dict[str, Any], where: str) -> str | None:
        """The absolute path of the row's database, or ``None`` for a context row."""
        db_path, db_id = rec.get("db_path"), rec.get("db_id")
        if db_path is not None:
            if not isinstance(db_path, str) or not db_path.strip():
                raise ScoreInputError(f"{where}: field 'db_path' must be a non-empty string (a .sqlite file).")
            return self._check(Path(db_path), where, f"db_path {db_path!r}")
        if db_id is not None:
            if isinstance(db_id, str) and db_id in self._by_id:
                return self._by_id[db_id]
            if not isinstance(db_id, str) or not db_id.strip() or "/" in db_id or db_id in (".", ".."):
                raise ScoreInputError(f"{where}: field 'db_id' must be a database name, got {db_id!r}.")
            if self.db_dir is None:
                from sqlmaster.data.spider import spider_dir

                raise ScoreInputError(
                    f"{where}: the row names db_id {db_id!r} but no --db-dir was given. Pass --db-dir DIR, the "
                    f"folder holding <db_id>/<db_id>.sqlite (the shipped Spider dev databases are in "
                    f"{spider_dir() / 'database'})"
                )
            for candidate in (self.db_dir / db_id / f"{db_id}.sqlite", self.db_dir / f"{db_id}.sqlite"):
                if candidate.exists():  # a directory or device there is named as such by _check
                    self._by_id[db_id] = self._check(candidate, where, f"db_id {db_id!r}")
                    return self._by_id[db_id]
            raise ScoreInputError(
                f"{where}: unknown db_id {db_id!r}: neither {self.db_dir / db_id / (db_id + '.sqlite')} nor "
                f"{self.db_dir / (db_id + '.sqlite')} exists. Check the db_id, or point --db-dir at the folder "
                "holding the databases"
            )
        return None

    def source(self, rec: dict[str, Any], where: str) -> str | None:
        """The row's ``db_source`` (``data from-db``'s pairs over a DuckDB file or a server): a database the engine
        layer opens read-only (:mod:`.server_score`); None when the row has none. A URL must not hold a password:
        the engines read it from PGPASSWORD / MYSQL_PWD / SQLMASTER_DB_PASSWORD_FILE."""
        source = rec.get("db_source")
        if source is None:
            return None
        from sqlmaster.engines.source import ServerURL, is_url, redact

        if not isinstance(source, str) or not source.strip():
            raise ScoreInputError(f"{where}: field 'db_source' must be a non-empty string (a DuckDB file or a URL).")
        if is_url(source):
            if ServerURL.parse(source).password is not None:
                raise ScoreInputError(
                    f"{where}: db_source {redact(source)} holds a password. Drop it from the file and set PGPASSWORD "
                    "or MYSQL_PWD (or SQLMASTER_DB_PASSWORD_FILE) where the scorer runs"
                )
            return source
        if not Path(source).is_file():
            raise ScoreInputError(f"{where}: database file for db_source {source!r} not found. Fix the path")
        return str(Path(source).resolve())

    def _check(self, path: Path, where: str, what: str) -> str:
        """Check each distinct file once, before scoring starts (:func:`.sandbox.database_file_problem`)."""
        key = str(path)
        if key in self._checked:
            return self._checked[key]
        if not path.exists():
            raise ScoreInputError(f"{where}: database file for {what} not found: {path}. Fix the path or the db_id")
        problem = database_file_problem(path)
        if problem is not None:
            reason, fix = problem
            named = f" ({what})" if what.startswith("db_id") else ""  # a db_path is the path itself
            raise ScoreInputError(f"{where}: database {path}{named} cannot be read ({reason}). {fix}")
        resolved = str(path.resolve())
        self._checked[key] = resolved
        return resolved


def validate_record(rec: Any, where: str, resolver: DatabaseResolver, line: int | None = None) -> InputRow:
    """Check one input row and find its database. Raises ScoreInputError naming ``where``."""
    if not isinstance(rec, dict):
        raise ScoreInputError(f"{where}: expected a JSON object, got {type(rec).__name__}.")
    missing = [f for f in ("answer", "prediction") if f not in rec]
    if missing:
        raise ScoreInputError(
            f"{where}: missing field(s) {', '.join(missing)}. Each line needs answer, prediction (may be null) "
            "and a context, db_id or db_path."
        )
    if not isinstance(rec["answer"], str) or not rec["answer"].strip():
        raise ScoreInputError(f"{where}: field 'answer' must be a non-empty string (the gold SQL).")
    if rec["prediction"] is not None and not isinstance(rec["prediction"], str):
        raise ScoreInputError(f"{where}: field 'prediction' must be a string or null.")
    taken = [name for name in SCORER_FIELDS if name in rec]
    if taken:
        raise ScoreInputError(
            f"{where}: field(s) {', '.join(map(repr, taken))} would be overwritten: the scorer writes them into "
            "records.jsonl. Rename or drop them (an earlier run's records.jsonl needs its scorer fields removed "
            "before it is scored again)."
        )
    source = resolver.source(rec, where)
    if source is not None:
        return InputRow(rec, None, line, source)
    db = resolver.resolve(rec, where)
    if db is None:
        context = rec.get("context")
        if context is None:
            raise ScoreInputError(
                f"{where}: no database for this row. Give a 'context' (CREATE TABLE statements), a 'db_id' "
                "(with --db-dir) or a 'db_path'."
            )
        if not isinstance(context, str) or not context.strip():
            raise ScoreInputError(f"{where}: field 'context' must be a non-empty string.")
    return InputRow(rec, db, line)


def read_records(
    path: str | Path, db_dir: str | Path | None = None, resolver: DatabaseResolver | None = None
) -> list[InputRow]:
    """Read and validate the input JSONL. Raises :class:`ScoreInputError` naming the first bad line.

    ``resolver`` finds each row's database (default: files, by ``db_path`` or ``db_id`` under ``db_dir``)."""
    path = Path(path)
    if path.is_dir():
        raise ScoreInputError(f"--input {path} is a directory. Pass a JSONL file of predictions.")
    if not path.is_file():
        raise ScoreInputError(f"input file not found: {path}. Pass a JSONL file of predictions with --input.")
    resolver = resolver or DatabaseResolver(db_dir)
    records: list[InputRow] = []
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ScoreInputError(f"cannot read {path} ({exc.strerror}). Check the file's permissions.") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ScoreInputError(
                    f"{where}: not UTF-8 text (a binary file?). Pass a JSONL file, one JSON object per line."
                ) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                raise ScoreInputError(f"{where}: not valid JSON ({msg}). Write one JSON object per line.") from None
            records.append(validate_record(rec, where, resolver, lineno))
    if not records:
        raise ScoreInputError(f"{path}: no records. The file is empty; generate predictions first.")
    return records


# ------------------------------------------------------------------------------------------------ one example

Task = tuple[str | None, str, str, str]  # (real database path or None, context, gold, prediction)


class ScorerState:
    """One process's caches (a worker's, or one in-process run's), passed explicitly to :func:`score_example`.

    Created where it is used: in a worker by :class:`_ScoreWorker` on its first task, so a forked worker never
    touches a parent's SQLite connections (which must not be used, or closed, on both sides of a fork).
    """

    def __init__(self) -> None:
        from sqlmaster.evaluate.cache import BoundedCache
        from sqlmaster.evaluate.execution import DatabaseCache, ExampleCache, GoldCache

        self.examples = ExampleCache()
        self.databases = DatabaseCache()
        self.golds = GoldCache()
        self.gold_forms: BoundedCache[str, str | None] = BoundedCache(8192)  # exact-match form, real databases
        self.gold_signatures: BoundedCache[str, list[str]] = BoundedCache(8192)  # exact_match.signature
        # (databases, gold that runs, prediction that runs) -> verdict
        self.verdicts: BoundedCache[tuple[str, str, str], Verdict] = BoundedCache(16384)
        self.engine: Any = None  # settings.engine's host and examples (.engine_score.EngineState), on first use

    def gold_signature(self, gold: str) -> list[str]:
        from sqlmaster.evaluate.exact_match import signature

        return self.gold_signatures.get_or_make(gold, lambda: signature(gold))

    def gold_form(self, gold: str) -> str | None:
        from sqlmaster.evaluate.exact_match import normalize_sql

        return self.gold_forms.get_or_make(gold, lambda: normalize_sql(gold))

    def close(self) -> None:
        """Hand the synthesized databases back to the connection pool and close the real ones."""
        if self.engine is not None:
            self.engine.close()
        self.examples.close()
        self.databases.close()


@dataclass
class _ScoreWorker:
    """The function a worker applies to each task: its settings and, from its first task on, its state."""

    settings: ScoreSettings
    state: ScorerState | None = None  # None until the first task (a fork or a pickle carries none)

    def __call__(self, task: Task) -> Score:
        if self.state is None:
            self.state = ScorerState()
        return score_example(self.state, self.settings, task)


def _forget_inherited_connections() -> None:
    """First thing in a worker: a forked one inherits the synthesis pool's open connections; set them aside."""
    from sqlmaster.evaluate.synth import POOL

    POOL.forget()


def score_example(state: ScorerState, settings: ScoreSettings, task: Task) -> Score:
    """Score one (database or context, gold, prediction). Never raises for bad SQL: problems land in ``error``.

    ``task`` is ``(db_path, context, gold, prediction)``; ``db_path`` None means: synthesize from ``context``.
    """
    from sqlmaster.evaluate.synth import is_trivial

    db_path, context, gold, prediction = task
    if settings.engine != "sqlite":
        from sqlmaster.evaluate.engine_score import score_example_on_engine

        return score_example_on_engine(state, settings, task)
    limits = settings.limits
    dbs = _databases(settings, limits, state, db_path, context, gold)
    em = _exact_match(settings, state, dbs, gold, prediction)
    main = dbs.golds.get(settings.convention)
    if not isinstance(main, list):  # the gold does not run under the chosen convention: not scored
        return Score(False, em, False, False, False, str(dbs.gold_error))
    verdicts = _verdicts(settings, limits, state, dbs, gold, prediction)
    result = verdicts[settings.convention]
    cause = None if result.match else _miss_cause(settings.convention, dbs, gold, prediction, result.error)
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
        rows=rows_preview(main[0], result),
    )


def _miss_cause(convention: str, dbs: _Databases, gold: str, prediction: str, error: str | None) -> Cause:
    """Why a prediction missed, from the SQL that ran under ``convention`` (:mod:`.causes`; misses only)."""
    from sqlmaster.evaluate.causes import classify_under

    return classify_under(convention, prediction, gold, error, dbs.column_names)


PREVIEW_CHARS = 80  # a longer value is cut, with "…" (a preview, not the result)
PREVIEW_COLUMNS = 12


def _preview_value(value: Any) -> Any:
    if isinstance(value, bytes):
        value = "x'" + value[: PREVIEW_CHARS // 2].hex() + ("…'" if len(value) > PREVIEW_CHARS // 2 else "'")
    if isinstance(value, str) and len(value) > PREVIEW_CHARS:
        return value[:PREVIEW_CHARS] + "…"
    return value if value is None or isinstance(value, int | float | str) else str(value)[:PREVIEW_CHARS]


def rows_preview(gold: GoldResult, verdict: Verdict) -> dict[str, Any]:
    """What gold and prediction returned on the first database, capped (records.jsonl's ``rows``)."""
    from sqlmaster.evaluate.execution import PREVIEW_ROWS

    def cut(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        return [[_preview_value(v) for v in row[:PREVIEW_COLUMNS]] for row in rows[:PREVIEW_ROWS]]

    gold_rows = gold.raw if gold.raw is not None else gold.rows
    pred = verdict.preview
    return {
        "gold": cut(gold_rows),
        "gold_more": len(gold_rows) > PREVIEW_ROWS,
        "prediction": None if pred is None else cut(pred),
        # more rows than shown, or more than the gold's (where the scorer stops reading: the verdict is known)
        "prediction_more": pred is not None and len(pred) > min(PREVIEW_ROWS, len(gold.rows)),
    }


@dataclass
class _Databases:
    """Where one task runs, and what the gold returns there under each convention (or why it does not run)."""

    key: str  # names the databases (a real file, or the synthesis of one context) in the verdict cache
    connections: list[sqlite3.Connection]  # one per database
    golds: dict[str, list[GoldResult] | GoldError]  # convention -> the gold's result on each database
    gold_error: GoldError | None  # why the gold does not run under the chosen convention
    column_names: frozenset[str] | None  # the schema's columns (synthesized databases), for exact match
    gold_form: Callable[[], str | None]  # the gold's exact-match form, computed on the first call


def _databases(
    settings: ScoreSettings, limits: Limits, state: ScorerState, db_path: str | None, context: str, gold: str
) -> _Databases:
    from sqlmaster.evaluate.execution import GoldError

    conventions = (settings.convention, *settings.other_conventions)
    golds: dict[str, list[GoldResult] | GoldError] = {}
    if db_path is not None:  # a real database: read once per worker, each gold run once on it
        conn = state.databases.get(db_path, limits)
        for c in conventions:
            result = state.golds.get(db_path, conn, gold, c, limits)
            golds[c] = result if isinstance(result, GoldError) else [result]
        main = golds[settings.convention]
        error = main if isinstance(main, GoldError) else None
        return _Databases(db_path, [conn], golds, error, None, functools.partial(state.gold_form, gold))
    # Synthesized from the context, once per example for all of its predictions.
    prepared = state.examples.get(context, gold, settings.databases_per_example, settings.seed, limits)
    key = f"{settings.databases_per_example}\0{settings.seed}\0{context}"
    column_names = prepared.synth.column_names or None
    gold_form = functools.partial(prepared.gold_normalized, gold)
    if prepared.synth.gold_error:
        return _Databases(key, [], {}, GoldError(prepared.synth.gold_error), column_names, gold_form)
    golds = {c: prepared.gold_results(gold, c, limits) for c in conventions}
    main = golds[settings.convention]
    error = main if isinstance(main, GoldError) else None
    return _Databases(key, prepared.connections(limits), golds, error, column_names, gold_form)


def _exact_match(
    settings: ScoreSettings, state: ScorerState, dbs: _Databases, gold: str, prediction: str
) -> bool | None:
    """A prediction past the size cap is never parsed; the gold's signature and normal form come from this
    worker's caches, and only when a prediction needs them (see :func:`.exact_match.exact_match`)."""
    from sqlmaster.evaluate.exact_match import exact_match

    if not settings.exact_match:
        return None
    if len(prediction) > settings.max_prediction_chars:
        return False
    signature = functools.partial(state.gold_signature, gold)
    return exact_match(prediction, gold, dbs.column_names, dbs.gold_form, signature)


def _verdicts(
    settings: ScoreSettings, limits: Limits, state: ScorerState, dbs: _Databases, gold: str, prediction: str
) -> dict[str, Verdict]:
    """The prediction's verdict under each convention whose gold runs."""
    from sqlmaster.evaluate.conventions import apply_convention
    from sqlmaster.evaluate.execution import GoldError, Verdict, score_on_connections

    main = dbs.golds[settings.convention]
    verdicts: dict[str, Verdict] = {}
    runs: dict[tuple[str, int], Verdict] = {}  # (SQL that ran, gold results) -> verdict
    for c in (settings.convention, *settings.other_conventions):
        gold_c = dbs.golds[c]
        if isinstance(gold_c, GoldError):
            continue
        if len(prediction) > settings.max_prediction_chars:
            verdicts[c] = Verdict(
                False, False, f"prediction longer than {settings.max_prediction_chars} characters (not run)"
            )
            continue
        sql = apply_convention(prediction, c)
        key = (sql, 0 if _same_golds(gold_c, main) else id(gold_c))
        if key not in runs:
            # The same SQL against the same gold on the same read-only databases has the same verdict: several
            # models (or paraphrased questions) that predict the same query are run once.
            vkey = (dbs.key, apply_convention(gold, c), sql)
            cached = state.verdicts.get(vkey)
            if cached is None:
                cached = score_on_connections(dbs.connections, gold_c, sql, limits, settings.column_order_matters)
                state.verdicts.put(vkey, cached)
            runs[key] = cached
        verdicts[c] = runs[key]
    return verdicts


def _same_golds(a: Sequence[GoldResult], b: Sequence[GoldResult] | GoldError) -> bool:
    return a is b or (isinstance(b, list) and len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True)))


def failure_record(reason: str) -> Score:
    """The score of a task whose worker crashed or overran, or whose scoring raised."""
    from sqlmaster.evaluate.causes import error_cause

    cause = error_cause(reason)
    error = f"scorer: {reason}"
    return Score(
        False, False, False, True, False, error, worker_failure=True, cause=cause.cause, cause_detail=cause.detail
    )


# ------------------------------------------------------------------------------------------------ metrics


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def compute_metrics(rows: list[InputRow], scores: list[Score], settings: ScoreSettings) -> dict[str, Any]:
    """Headline metrics; every rate is ``None`` (not NaN) when nothing could be scored."""
    from sqlmaster.evaluate.causes import cause_figures
    from sqlmaster.evaluate.stats import bootstrap_ci

    scored = [s for s in scores if s.gold_valid]
    columns = {
        "execution_accuracy": [s.execution_match for s in scored],
        "executes": [s.executes for s in scored],
        "exact_match": [s.exact_match for s in scores if s.exact_match is not None],
    }
    for c in settings.other_conventions:
        columns[f"execution_accuracy_{c}"] = [m for s in scored if (m := s.match_under(c)) is not None]
    metrics: dict[str, Any] = {"n": len(scores), "n_scored": len(scored), "convention": settings.convention}
    for name, flags in columns.items():
        metrics[name] = _rate(flags)
        lo, hi = bootstrap_ci(flags, settings.bootstrap_resamples, settings.seed) if flags else (None, None)
        metrics[f"{name}_ci"] = [lo, hi]
    metrics["execution_accuracy_by_convention"] = {
        settings.convention: metrics["execution_accuracy"],
        **{c: metrics[f"execution_accuracy_{c}"] for c in settings.other_conventions},
    }
    metrics["gold_invalid"] = len(scores) - len(scored)
    metrics["gold_nontrivial_rate"] = _rate([s.gold_nontrivial for s in scored])
    metrics["worker_failures"] = sum(1 for s in scores if s.worker_failure)
    metrics.update(cause_figures([(s.cause, s.cause_detail) for s in scored if not s.execution_match]))
    metrics["databases"] = {
        "real": sum(1 for r in rows if r.db or r.source),
        "synthesized": sum(1 for r in rows if not (r.db or r.source)),
    }
    metrics["denominators"] = {
        "execution_accuracy": "n_scored (rows whose gold query runs)",
        "executes": "n_scored",
        "exact_match": "n",
    }
    metrics.update(_generation_figures([r.data for r in rows]))
    return metrics


def _generation_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency percentiles and token counts, when the input rows carry them (``eval run`` writes both)."""
    from sqlmaster.evaluate.stats import latency_summary

    figures: dict[str, Any] = {}
    latencies = [
        float(r["latency_s"])
        for r in records
        if isinstance(r.get("latency_s"), int | float) and math.isfinite(r["latency_s"])
    ]
    if latencies:
        figures["latency_s"] = latency_summary(latencies)
    tokens = [int(r["tokens"]) for r in records if isinstance(r.get("tokens"), int)]
    if tokens:
        figures["tokens"] = {"total": sum(tokens), "mean": sum(tokens) / len(tokens)}
    return figures


# ------------------------------------------------------------------------------------------------ output


def json_line(value: Any, indent: int | None = None) -> str:
    """Strict JSON text: non-finite numbers become null (JSON has no NaN/Infinity)."""
    try:  # almost every record is finite: the copy that finite() makes is only needed when one is not
        return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent, default=str)
    except ValueError:
        return json.dumps(finite(value), ensure_ascii=False, allow_nan=False, indent=indent, default=str)


# A lone surrogate ('\ud800', valid in JSON input) cannot be encoded as UTF-8; written as its backslash escape it
# is the JSON escape of the same string, so the file stays valid UTF-8 JSON and reads back unchanged.
SAFE_ENCODING_ERRORS = "backslashreplace"


def prepare_output_dir(output_dir: str | Path, overwrite: bool, flag: str = "--output-dir") -> Path:
    """Check the output directory before any work: creatable, writable, and not holding another run's
    results (unless ``overwrite``). Raises ConfigError with the fix."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"{flag} {output_dir} is a file, not a directory. Pass a directory path")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {flag} {output_dir} ({exc.strerror}). Choose a writable path") from None
    existing = [name for name in (METRICS_FILE, RECORDS_FILE) if (output_dir / name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{output_dir} already holds scoring results ({', '.join(existing)}). Pass --overwrite to replace "
            f"them, or choose another {flag}"
        )
    probe = output_dir / f".write-test.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write into {output_dir} ({exc.strerror}). Choose a writable {flag}") from None
    return output_dir


def output_record(row: InputRow, score: Score, other_conventions: Iterable[str]) -> dict[str, Any]:
    """One records.jsonl line: every field of the input object as read, the verdicts, and the input line (no
    input field has their names: :func:`validate_record` refuses those)."""
    line = dict(row.data)
    line.update(score.record_fields(other_conventions))
    if row.line is not None:
        line["line"] = row.line
    return line


def write_results(output_dir: Path, records: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
    """records.jsonl, then metrics.json, each atomically; an old metrics.json goes first so that the two
    never describe different runs."""
    try:
        (output_dir / METRICS_FILE).unlink(missing_ok=True)
        with atomic_open(output_dir / RECORDS_FILE, errors=SAFE_ENCODING_ERRORS) as handle:
            for record in records:
                handle.write(json_line(record) + "\n")
        with atomic_open(output_dir / METRICS_FILE, errors=SAFE_ENCODING_ERRORS) as handle:
            handle.write(json_line(metrics, indent=2) + "\n")
    except OSError as exc:
        reason = exc.strerror
        raise ConfigError(f"cannot write results into {output_dir} ({reason}). Free space or fix permissions") from None


# ------------------------------------------------------------------------------------------------ entry points


def _task(row: InputRow) -> Task:
    return (row.db, row.data.get("context") or "", row.data["answer"], row.data["prediction"] or "")


def _example_of(task: Task) -> tuple[str | None, str, str]:
    return task[:3]  # (database, context, gold): what the worker caches are keyed by


def score_records(
    rows: list[InputRow], settings: ScoreSettings = ScoreSettings(), workers: int | None = None, label: str = "scoring"
) -> list[Score]:
    """Score validated rows; returns one score per row, in order. Progress (sqlmaster/progress.py) is shown under
    ``label``, with the execution accuracy so far."""
    if any(r.source for r in rows):  # rows on an engine source are scored there, the others as below
        return _score_on_sources_and_files(rows, settings, workers, label)
    if workers is None:
        workers = scorer_workers()
    tasks = [_task(r) for r in rows]
    # Predictions of one example (or one database) next to each other: they go to one worker and its caches.
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i][0] or "", tasks[i][1], tasks[i][2]))
    ordered = [tasks[i] for i in order]
    if workers <= 0:
        scores = _score_in_process(settings, ordered, label)
    else:
        # The workers start before the progress bar's thread does, so that they can be forked (see .isolated);
        # the modules they need are imported here first, once, instead of in every worker.
        import sqlmaster.evaluate.exact_match
        import sqlmaster.evaluate.execution  # noqa: F401

        n_workers = workers_for(workers, len(ordered))
        worker = _ScoreWorker(settings)
        pool = IsolatedPool(
            worker, n_workers, settings.example_timeout_s, failure_record, _forget_inherited_connections
        )
        with pool, _ScoringProgress(label, len(tasks)) as bar:  # the pool first: its workers fork without threads
            scores = pool.map(ordered, on_result=lambda _, score: bar.scored(score), group=_example_of)
    by_index = dict(zip(order, scores, strict=True))
    return [by_index[i] for i in range(len(tasks))]


def _score_on_sources_and_files(
    rows: list[InputRow], settings: ScoreSettings, workers: int | None, label: str
) -> list[Score]:
    from sqlmaster.evaluate.server_score import score_on_sources

    on_source = [i for i, r in enumerate(rows) if r.source]
    others = [i for i, r in enumerate(rows) if not r.source]
    scores = dict(zip(on_source, score_on_sources([rows[i] for i in on_source], settings), strict=True))
    if others:
        scores.update(zip(others, score_records([rows[i] for i in others], settings, workers, label), strict=True))
    return [scores[i] for i in range(len(rows))]


class _ScoringProgress(Progress):
    """Rows scored of all, and the execution accuracy so far (over rows whose gold runs)."""

    matches = valid = 0

    def scored(self, score: Score) -> None:
        if score.gold_valid:
            self.valid += 1
            self.matches += score.execution_match
            self.notes["execution accuracy"] = f"{self.matches / self.valid:.1%} so far"
        self.advance()


def _score_in_process(settings: ScoreSettings, tasks: list[Task], label: str = "scoring") -> list[Score]:
    """Every task in this process, with caches that live for this run only (as a worker's live for its own)."""
    from sqlmaster.evaluate.execution import plan_gold

    plan_gold.cache_clear()
    state = ScorerState()
    scores = []
    try:
        with _ScoringProgress(label, len(tasks)) as bar:
            for task in tasks:
                try:
                    scores.append(score_example(state, settings, task))
                except Exception as exc:  # same contract as the pool: one bad example is a miss, not a crash
                    scores.append(failure_record(f"{type(exc).__name__}: {exc}"))
                bar.scored(scores[-1])
    finally:
        state.close()
    return scores


def score_rows(
    rows: list[InputRow], settings: ScoreSettings, workers: int | None = None, label: str = "scoring"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score validated rows; returns (records.jsonl lines, metrics) without writing anything."""
    if settings.engine != "sqlite":
        from sqlmaster.evaluate.engine_score import probe_engine

        probe_engine(settings.engine)
    start = time.perf_counter()
    scores = score_records(rows, settings, workers, label)
    elapsed = time.perf_counter() - start
    lines = [output_record(r, s, settings.other_conventions) for r, s in zip(rows, scores, strict=True)]
    metrics = compute_metrics(rows, scores, settings)
    if settings.engine != "sqlite":
        from sqlmaster.evaluate.engine_score import engine_metrics

        metrics["engine"] = engine_metrics(scores, settings.engine)
    metrics["elapsed_s"] = round(elapsed, 3)
    metrics["examples_per_s"] = round(len(rows) / elapsed, 2) if elapsed > 0 else None
    metrics["settings"] = asdict(settings)
    return lines, metrics


def score_file(
    input_path: str | Path,
    output_dir: str | Path,
    *,
    workers: int | None = None,
    settings: ScoreSettings | None = None,
    db_dir: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score ``input_path`` and write ``records.jsonl`` and ``metrics.json`` into ``output_dir``.

    Returns the metrics. Raises :class:`ScoreInputError`/ConfigError for an unreadable or malformed input or
    an unusable output directory (exit code 2 in the CLI), before any scoring; ``workers=None`` uses up to 2
    processes, ``0`` scores in-process.
    """
    settings = settings or ScoreSettings()
    settings.validate()
    records = read_records(input_path, db_dir)  # a bad input creates nothing, not even the output directory
    if settings.engine != "sqlite":
        from sqlmaster.evaluate.engine_score import check_rows

        check_rows([r.db for r in records], settings.engine)
    out = prepare_output_dir(output_dir, overwrite)
    lines, metrics = score_rows(records, settings, workers)
    metrics["input"] = str(input_path)
    write_results(out, lines, metrics)
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """One line for the terminal; rates that could not be computed (no valid gold) print as 'n/a'."""

    def pct(value: Any) -> str:
        return f"{value:.1%}" if isinstance(value, int | float) else "n/a"

    others = [
        f"{c} {pct(v)}"
        for c, v in (metrics.get("execution_accuracy_by_convention") or {}).items()
        if c != metrics.get("convention")
    ]
    return (
        f"execution accuracy {pct(metrics.get('execution_accuracy'))} ({metrics.get('convention')}"
        f"{'; ' + ', '.join(others) if others else ''})  exact match {pct(metrics.get('exact_match'))}  "
        f"executes {pct(metrics.get('executes'))}  n={metrics.get('n')} (gold invalid: {metrics.get('gold_invalid')})"
    )
