"""``sqlmaster eval score``: score a JSONL file of predictions against gold SQL — the one scoring path.

    sqlmaster eval score --input predictions.jsonl --output-dir scored/
    sqlmaster eval score --input spider_preds.jsonl --output-dir scored/ --db-dir spider/database --convention official

Input: one JSON object per line with ``answer`` (gold SQL), ``prediction`` (predicted SQL; ``null`` counts as an
empty prediction) and where to run them, either

* ``context``: ``CREATE TABLE`` statements; the example is scored on ``databases_per_example`` databases
  synthesized from it (:mod:`.synth`), or
* ``db_id``: a real SQLite database at ``DB_DIR/<db_id>/<db_id>.sqlite`` (Spider's and BIRD's layout) or
  ``DB_DIR/<db_id>.sqlite``, with ``--db-dir DB_DIR``; or ``db_path``: the database file itself (relative paths
  are relative to the current directory).

A row with a database is scored on it even when it also carries a ``context`` (the prompt's schema). Both
kinds may be mixed in one file. Other fields (``question``, ``latency_s``, ``tokens``, ...) are kept. Output
in ``output_dir``:

* ``records.jsonl``: one line per input line, in input order: the input fields plus ``execution_match``
  (boolean, under the chosen convention), ``execution_match_<other convention>``, ``exact_match``,
  ``executes``, ``gold_valid``, ``gold_nontrivial``, ``error`` (null when none) and ``line``.
* ``metrics.json``: ``execution_accuracy`` under ``convention`` and ``execution_accuracy_<other>`` beside it,
  ``executes`` (over the ``n_scored`` rows whose gold runs), ``exact_match`` (over all ``n`` rows),
  ``gold_invalid``, ``gold_nontrivial_rate``, ``{metric}_ci`` 95% bootstrap intervals, latency percentiles
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlmaster.atomic import atomic_open, finite
from sqlmaster.cores import available_cores
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.isolated import IsolatedPool, workers_for
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS, Limits
from sqlmaster.logs import progress
from sqlmaster.rundir import METRICS_FILE, RECORDS_FILE

CONVENTIONS = ("official", "strict")  # see sqlmaster.evaluate.execution
SCORE_FIELDS = ("execution_match", "exact_match", "executes", "gold_valid", "gold_nontrivial", "error")
SQLITE_HEADER = b"SQLite format 3\x00"


class ScoreInputError(ConfigError):
    """The input file is unreadable or a line is malformed (the message names the line and the fix)."""


@dataclass(frozen=True)
class ScoreSettings:
    """How examples are scored; saved into metrics.json so that a figure can be reproduced."""

    convention: str = "strict"  # official | strict (see sqlmaster.evaluate.execution); the other is reported too
    databases_per_example: int = 3  # synthesized databases per context row (results must agree on all)
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
        if self.databases_per_example < 1:
            raise ScoreInputError(
                f"databases_per_example must be >= 1, got {self.databases_per_example}. Use 3 or more."
            )
        for name in ("timeout_s", "cpu_s_per_statement", "example_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ScoreInputError(f"{name} must be a positive number of seconds, got {value!r}.")


# ------------------------------------------------------------------------------------------------ input


def _is_sqlite_file(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


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
                if candidate.is_file():
                    self._by_id[db_id] = self._check(candidate, where, f"db_id {db_id!r}")
                    return self._by_id[db_id]
            raise ScoreInputError(
                f"{where}: unknown db_id {db_id!r}: neither {self.db_dir / db_id / (db_id + '.sqlite')} nor "
                f"{self.db_dir / (db_id + '.sqlite')} exists. Check the db_id, or point --db-dir at the folder "
                "holding the databases"
            )
        return None

    def _check(self, path: Path, where: str, what: str) -> str:
        key = str(path)
        if key in self._checked:
            return self._checked[key]
        if not path.is_file():
            raise ScoreInputError(f"{where}: database file for {what} not found: {path}. Fix the path or the db_id")
        if not _is_sqlite_file(path):
            raise ScoreInputError(f"{where}: {path} ({what}) is not an SQLite database file. Point it at a .sqlite")
        resolved = str(path.resolve())
        self._checked[key] = resolved
        return resolved


def validate_record(rec: Any, where: str, resolver: DatabaseResolver) -> dict[str, Any]:
    """Check one input row; returns it with ``_db`` (database path or None) set. Raises ScoreInputError."""
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
    rec["_db"] = db
    return rec


def read_records(path: str | Path, db_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Read and validate the input JSONL. Raises :class:`ScoreInputError` naming the first bad line."""
    path = Path(path)
    if path.is_dir():
        raise ScoreInputError(f"--input {path} is a directory. Pass a JSONL file of predictions.")
    if not path.is_file():
        raise ScoreInputError(f"input file not found: {path}. Pass a JSONL file of predictions with --input.")
    resolver = DatabaseResolver(db_dir)
    records: list[dict[str, Any]] = []
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
            rec = validate_record(rec, where, resolver)
            rec["_line"] = lineno
            records.append(rec)
    if not records:
        raise ScoreInputError(f"{path}: no records. The file is empty; generate predictions first.")
    return records


# ------------------------------------------------------------------------------------------------ one example

_STATE: Any = None  # this process's caches, created lazily (keeps imports light for the parent)
_INHERITED: list[Any] = []  # a forked worker's copy of its parent's caches: kept, never used or closed


class _WorkerState:
    def __init__(self) -> None:
        from sqlmaster.evaluate.execution import DatabaseCache, ExampleCache, GoldCache

        self.examples = ExampleCache()
        self.databases = DatabaseCache()
        self.golds = GoldCache()
        self.gold_forms: dict[str, str | None] = {}  # exact-match form of real-database golds
        self.gold_signatures: dict[str, list[str]] = {}  # exact_match.signature of each gold
        self.verdicts: dict[tuple[Any, str, str], Any] = {}  # (database, gold run, prediction run) -> verdict

    def remember(self, key: tuple[Any, str, str], verdict: Any) -> None:
        if len(self.verdicts) > 16384:
            self.verdicts.clear()
        self.verdicts[key] = verdict

    def gold_signature(self, gold: str) -> list[str]:
        from sqlmaster.evaluate.exact_match import signature

        hit = self.gold_signatures.get(gold)
        if hit is None:
            if len(self.gold_signatures) > 8192:
                self.gold_signatures.clear()
            hit = self.gold_signatures[gold] = signature(gold)
        return hit

    def gold_form(self, gold: str) -> str | None:
        from sqlmaster.evaluate.exact_match import normalize_sql

        if gold not in self.gold_forms:
            if len(self.gold_forms) > 8192:
                self.gold_forms.clear()
            self.gold_forms[gold] = normalize_sql(gold)
        return self.gold_forms[gold]


def _fresh_worker_state() -> None:
    """First thing in a worker: start with empty caches. A forked worker inherits its parent's (open SQLite
    connections among them, which must never be used, or closed, on both sides of a fork), so it sets them
    aside untouched."""
    global _STATE
    from sqlmaster.evaluate.synth import POOL

    _INHERITED.append(_STATE)
    _STATE = None
    POOL.forget()


def _state() -> _WorkerState:
    global _STATE
    if _STATE is None:
        _STATE = _WorkerState()
    return _STATE


def score_example(settings: ScoreSettings, task: tuple[str | None, str, str, str]) -> dict[str, Any]:
    """Score one (database or context, gold, prediction). Never raises for bad SQL: problems land in ``error``.

    ``task`` is ``(db_path, context, gold, prediction)``; ``db_path`` None means: synthesize from ``context``.
    """
    from sqlmaster.evaluate.synth import is_trivial

    db_path, context, gold, prediction = task
    state = _state()
    limits = settings.limits
    where = _databases(settings, limits, state, db_path, context, gold)
    em = _exact_match(settings, state, where, gold, prediction)
    if where.gold_error is not None:
        error = where.gold_error
        return {
            "execution_match": False,
            "exact_match": em,
            "executes": False,
            "gold_valid": False,
            "gold_nontrivial": False,
            "error": error if error.startswith("gold") else f"gold invalid: {error}",
        }
    verdicts = _verdicts(settings, limits, state, where, gold, prediction)
    result = verdicts[settings.convention]
    main = where.golds[settings.convention]
    assert not isinstance(main, str)
    out: dict[str, Any] = {
        "execution_match": result.match,
        "exact_match": em,
        "executes": result.executes,
        "gold_valid": True,
        "gold_nontrivial": any(not is_trivial(g.rows) for g in main),
        "error": result.error,
    }
    for c in settings.other_conventions:
        out[f"execution_match_{c}"] = verdicts[c].match if c in verdicts else None
    return out


@dataclass
class _Databases:
    """Where one task runs, and what the gold returns there under each convention (or why it does not run)."""

    key: str  # names the databases (a real file, or the synthesis of one context) in the verdict cache
    connections: list[Any]  # sqlite3 connections, one per database
    golds: dict[str, Any]  # convention -> list of GoldResult (one per database), or the gold's error message
    gold_error: str | None
    column_names: frozenset[str] | None  # the schema's columns (synthesized databases), for exact match
    gold_form: Callable[[], str | None]  # the gold's exact-match form, computed on the first call


def _databases(
    settings: ScoreSettings, limits: Limits, state: _WorkerState, db_path: str | None, context: str, gold: str
) -> _Databases:
    conventions = (settings.convention, *settings.other_conventions)
    if db_path is not None:  # a real database: read once per worker, each gold run once on it
        conn = state.databases.get(db_path, limits)
        golds: dict[str, Any] = {}
        for c in conventions:
            result = state.golds.get(db_path, conn, gold, c, limits)
            golds[c] = result if isinstance(result, str) else [result]
        main = golds[settings.convention]
        error = main if isinstance(main, str) else None
        return _Databases(db_path, [conn], golds, error, None, functools.partial(state.gold_form, gold))
    # Synthesized from the context, once per example for all of its predictions.
    prepared = state.examples.get(context, gold, settings.databases_per_example, settings.seed, limits)
    key = f"{settings.databases_per_example}\0{settings.seed}\0{context}"
    column_names = prepared.synth.column_names or None
    gold_form = functools.partial(prepared.gold_normalized, gold)
    if prepared.synth.gold_error:
        return _Databases(key, [], {}, f"gold invalid: {prepared.synth.gold_error}", column_names, gold_form)
    golds = {c: prepared.gold_results(gold, c, limits) for c in conventions}
    main = golds[settings.convention]
    error = main if isinstance(main, str) else None
    return _Databases(key, prepared.connections(limits), golds, error, column_names, gold_form)


def _exact_match(
    settings: ScoreSettings, state: _WorkerState, where: _Databases, gold: str, prediction: str
) -> bool | None:
    """A prediction past the size cap is never parsed; the gold's signature and normal form come from this
    worker's caches, and only when a prediction needs them (see :func:`.exact_match.exact_match`)."""
    from sqlmaster.evaluate.exact_match import exact_match

    if not settings.exact_match:
        return None
    if len(prediction) > settings.max_prediction_chars:
        return False
    signature = functools.partial(state.gold_signature, gold)
    return exact_match(prediction, gold, where.column_names, where.gold_form, signature)


def _verdicts(
    settings: ScoreSettings, limits: Limits, state: _WorkerState, where: _Databases, gold: str, prediction: str
) -> dict[str, Any]:
    """The prediction's verdict (PredictionResult) under each convention whose gold runs."""
    from sqlmaster.evaluate.execution import PredictionResult, apply_convention, score_on_connections

    main = where.golds[settings.convention]
    verdicts: dict[str, Any] = {}
    runs: dict[tuple[str, int], Any] = {}  # (SQL that ran, gold results) -> verdict
    for c in (settings.convention, *settings.other_conventions):
        gold_c = where.golds[c]
        if isinstance(gold_c, str):
            continue
        if len(prediction) > settings.max_prediction_chars:
            verdicts[c] = PredictionResult(
                False, False, f"prediction longer than {settings.max_prediction_chars} characters (not run)"
            )
            continue
        sql = apply_convention(prediction, c)
        key = (sql, 0 if _same_golds(gold_c, main) else id(gold_c))
        if key not in runs:
            # The same SQL against the same gold on the same read-only databases has the same verdict: several
            # models (or paraphrased questions) that predict the same query are run once.
            vkey = (where.key, apply_convention(gold, c), sql)
            cached = state.verdicts.get(vkey)
            if cached is None:
                cached = score_on_connections(where.connections, gold_c, sql, limits, settings.column_order_matters)
                state.remember(vkey, cached)
            runs[key] = cached
        verdicts[c] = runs[key]
    return verdicts


def _same_golds(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return a is b or (len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True)))


def failure_record(reason: str) -> dict[str, Any]:
    return {
        "execution_match": False,
        "exact_match": False,
        "executes": False,
        "gold_valid": True,
        "gold_nontrivial": False,
        "error": f"scorer: {reason}",
        "worker_failure": True,
    }


# ------------------------------------------------------------------------------------------------ metrics


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def compute_metrics(records: list[dict[str, Any]], settings: ScoreSettings) -> dict[str, Any]:
    """Headline metrics; every rate is ``None`` (not NaN) when nothing could be scored."""
    from sqlmaster.evaluate.stats import bootstrap_ci, latency_summary

    scored = [r for r in records if r["gold_valid"]]
    columns = {
        "execution_accuracy": [bool(r["execution_match"]) for r in scored],
        "executes": [bool(r["executes"]) for r in scored],
        "exact_match": [bool(r["exact_match"]) for r in records if r["exact_match"] is not None],
    }
    for c in settings.other_conventions:
        columns[f"execution_accuracy_{c}"] = [
            bool(r.get(f"execution_match_{c}")) for r in scored if r.get(f"execution_match_{c}") is not None
        ]
    metrics: dict[str, Any] = {"n": len(records), "n_scored": len(scored), "convention": settings.convention}
    for name, flags in columns.items():
        metrics[name] = _rate(flags)
        lo, hi = bootstrap_ci(flags, settings.bootstrap_resamples, settings.seed) if flags else (None, None)
        metrics[f"{name}_ci"] = [lo, hi]
    metrics["execution_accuracy_by_convention"] = {
        settings.convention: metrics["execution_accuracy"],
        **{c: metrics[f"execution_accuracy_{c}"] for c in settings.other_conventions},
    }
    metrics["gold_invalid"] = len(records) - len(scored)
    metrics["gold_nontrivial_rate"] = _rate([bool(r["gold_nontrivial"]) for r in scored])
    metrics["worker_failures"] = sum(1 for r in records if r.get("worker_failure"))
    metrics["databases"] = {
        "real": sum(1 for r in records if r.get("_db")),
        "synthesized": sum(1 for r in records if not r.get("_db")),
    }
    metrics["denominators"] = {
        "execution_accuracy": "n_scored (rows whose gold query runs)",
        "executes": "n_scored",
        "exact_match": "n",
    }
    latencies = [
        float(r["latency_s"])
        for r in records
        if isinstance(r.get("latency_s"), int | float) and math.isfinite(r["latency_s"])
    ]
    if latencies:
        metrics["latency_s"] = latency_summary(latencies)
    tokens = [int(r["tokens"]) for r in records if isinstance(r.get("tokens"), int)]
    if tokens:
        metrics["tokens"] = {"total": sum(tokens), "mean": sum(tokens) / len(tokens)}
    return metrics


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


def output_record(rec: dict[str, Any], score: dict[str, Any], other_conventions: Iterable[str]) -> dict[str, Any]:
    """One records.jsonl line: the input row (internal keys dropped), the verdicts, and the input line."""
    line = {k: v for k, v in rec.items() if not k.startswith("_")}
    line.update({k: score.get(k) for k in SCORE_FIELDS})
    for c in other_conventions:
        line[f"execution_match_{c}"] = score.get(f"execution_match_{c}")
    if score.get("worker_failure"):
        line["worker_failure"] = True
    if "_line" in rec:
        line["line"] = rec["_line"]
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


def _task(rec: dict[str, Any]) -> tuple[str | None, str, str, str]:
    return (rec["_db"], rec.get("context") or "", rec["answer"], rec["prediction"] or "")


def _example_of(task: tuple[str | None, str, str, str]) -> tuple[str | None, str, str]:
    return task[:3]  # (database, context, gold): what the worker caches are keyed by


def score_records(
    records: list[dict[str, Any]], settings: ScoreSettings = ScoreSettings(), workers: int | None = None
) -> list[dict[str, Any]]:
    """Score validated records; returns one score dict per record, in order."""
    if workers is None:
        workers = min(2, available_cores())
    tasks = [_task(r) for r in records]
    fn = functools.partial(score_example, settings)
    # Predictions of one example (or one database) next to each other: they go to one worker and its caches.
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i][0] or "", tasks[i][1], tasks[i][2]))
    ordered = [tasks[i] for i in order]
    if workers <= 0:
        scores = _score_in_process(fn, ordered)
    else:
        # The workers start before the progress bar's thread does, so that they can be forked (see .isolated);
        # the modules they need are imported here first, once, instead of in every worker.
        import sqlmaster.evaluate.exact_match
        import sqlmaster.evaluate.execution  # noqa: F401

        n_workers = workers_for(workers, len(ordered))
        pool = IsolatedPool(fn, n_workers, settings.example_timeout_s, failure_record, _fresh_worker_state)
        with pool, progress("scoring", len(tasks)) as advance:  # a live bar in a terminal only
            scores = pool.map(ordered, on_result=lambda _: advance(), group=_example_of)
    result: list[dict[str, Any]] = [{}] * len(tasks)
    for position, index in enumerate(order):
        result[index] = scores[position]
    return result


def _score_in_process(fn: Any, tasks: list[Any]) -> list[dict[str, Any]]:
    global _STATE
    _STATE = None  # caches live for one scoring run, as they do in worker processes
    from sqlmaster.evaluate.execution import plan_gold

    plan_gold.cache_clear()
    scores = []
    with progress("scoring", len(tasks)) as advance:
        for task in tasks:
            try:
                scores.append(fn(task))
            except Exception as exc:  # same contract as the pool: one bad example is a miss, not a crash
                scores.append(failure_record(f"{type(exc).__name__}: {exc}"))
            advance()
    return scores


def score_rows(
    records: list[dict[str, Any]], settings: ScoreSettings, workers: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Score validated records; returns (records.jsonl lines, metrics) without writing anything."""
    start = time.perf_counter()
    scores = score_records(records, settings, workers)
    elapsed = time.perf_counter() - start
    lines = [output_record(r, s, settings.other_conventions) for r, s in zip(records, scores, strict=True)]
    metrics = compute_metrics([{**r, **s} for r, s in zip(records, scores, strict=True)], settings)
    metrics["elapsed_s"] = round(elapsed, 3)
    metrics["examples_per_s"] = round(len(records) / elapsed, 2) if elapsed > 0 else None
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
