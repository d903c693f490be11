"""``sqlmaster eval score``: score a JSONL file of predictions against gold SQL.

Input: one JSON object per line with ``question``, ``context`` (CREATE TABLE statements), ``answer`` (gold
SQL)
and ``prediction`` (predicted SQL; ``null`` counts as an empty prediction). Other fields (``latency_s``,
``tokens``, ...) are kept in the records. Output in ``output_dir``:

* ``records.jsonl``: one line per input line, in input order: the input fields plus ``execution_match``,
  ``exact_match``, ``executes``, ``gold_valid``, ``gold_nontrivial`` and ``error`` (null when none).
* ``metrics.json``: ``execution_accuracy``, ``executes`` (over the ``n_scored`` rows whose gold runs),
  ``exact_match`` (over all ``n`` rows), ``gold_invalid``, ``gold_nontrivial_rate``, ``{metric}_ci`` 95%
  bootstrap
  intervals, latency percentiles when the records carry ``latency_s``, and the scorer's settings.

Why a process pool with a watchdog (and not a thread pool or plain ``try/except``): SQL errors, timeouts and
row
caps are already ordinary exceptions (:mod:`.sandbox`), but a crash inside SQLite's C code (or an allocation
that
takes the process down) cannot be caught in-process, and a hang outside SQLite's VM (where the progress
handler
does not fire) cannot be interrupted from Python. Each worker is a separate spawned process that scores one
example at a time; the parent watches its pipe, its liveness and a per-example wall-clock limit, and when a
worker dies or overruns it kills it, records that example as a miss with the reason, and starts a fresh
worker.
The processes also give throughput on several cores. ``workers=0`` scores in-process (no isolation; for
debugging and small tests).

Usage from Python::

    from sqlmaster.evaluate.score import score_file
    metrics = score_file("predictions.jsonl", "out/")
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS, Limits, set_process_heap_limit

REQUIRED_FIELDS = ("question", "context", "answer", "prediction")
SCORE_FIELDS = ("execution_match", "exact_match", "executes", "gold_valid", "gold_nontrivial", "error")
WORKER_HEAP_LIMIT_BYTES = 1 << 30  # SQLite heap per worker process


class ScoreInputError(ConfigError):
    """The input file is unreadable or a line is malformed (the message names the line and the fix)."""


@dataclass(frozen=True)
class ScoreSettings:
    """How examples are scored; saved into metrics.json so that a figure can be reproduced."""

    databases_per_example: int = 3  # synthesized databases per example (results must agree on all)
    seed: int = 0  # base seed of database synthesis and the bootstrap
    column_order_matters: bool = False  # Spider test-suite convention: column order is not part of the answer
    bootstrap_resamples: int = 1000
    timeout_s: float = DEFAULT_LIMITS.timeout_s  # per SQL statement
    max_rows: int = DEFAULT_LIMITS.max_rows  # per SQL statement
    example_timeout_s: float = 120.0  # watchdog: wall time for one example in a worker

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=self.timeout_s, max_rows=self.max_rows)


# ------------------------------------------------------------------------------------------------ input


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate the input JSONL. Raises :class:`ScoreInputError` naming the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"input file not found: {path}. Pass a JSONL file of predictions with --input.")
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScoreInputError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg}). Write one JSON object per line."
                ) from None
            if not isinstance(rec, dict):
                raise ScoreInputError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}.")
            missing = [f for f in REQUIRED_FIELDS if f not in rec]
            if missing:
                raise ScoreInputError(
                    f"{path}:{lineno}: missing field(s) {', '.join(missing)}. "
                    f"Each line needs {', '.join(REQUIRED_FIELDS)} (prediction may be null)."
                )
            for f in ("context", "answer"):
                if not isinstance(rec[f], str) or not rec[f].strip():
                    raise ScoreInputError(f"{path}:{lineno}: field {f!r} must be a non-empty string.")
            if rec["prediction"] is not None and not isinstance(rec["prediction"], str):
                raise ScoreInputError(f"{path}:{lineno}: field 'prediction' must be a string or null.")
            rec["_line"] = lineno
            records.append(rec)
    if not records:
        raise ScoreInputError(f"{path}: no records. The file is empty; generate predictions first.")
    return records


# ------------------------------------------------------------------------------------------------ one example

_CACHE: Any = None  # ExampleCache of this process, created lazily (keeps imports light for the parent)


def score_example(task: tuple[str, str, str, ScoreSettings]) -> dict[str, Any]:
    """Score one (context, gold, prediction). Never raises for bad SQL: problems land in ``error``."""
    from sqlmaster.evaluate.exact_match import exact_match
    from sqlmaster.evaluate.execution import ExampleCache, score_prediction

    global _CACHE
    if _CACHE is None:
        _CACHE = ExampleCache()
    context, gold, prediction, settings = task
    limits = settings.limits
    prepared = _CACHE.get(context, gold, settings.databases_per_example, settings.seed, limits)
    example = prepared.synth
    em = exact_match(prediction, gold, example.column_names or None, prepared.gold_normalized)
    if example.gold_error is not None:
        return {
            "execution_match": False,
            "exact_match": em,
            "executes": False,
            "gold_valid": False,
            "gold_nontrivial": False,
            "error": f"gold invalid: {example.gold_error}",
        }
    result = score_prediction(
        example, prediction, prepared.ordered, limits, column_order_matters=settings.column_order_matters
    )
    return {
        "execution_match": result.match,
        "exact_match": em,
        "executes": result.executes,
        "gold_valid": True,
        "gold_nontrivial": example.nontrivial,
        "error": result.error,
    }


def _failure(reason: str) -> dict[str, Any]:
    return {
        "execution_match": False,
        "exact_match": False,
        "executes": False,
        "gold_valid": True,
        "gold_nontrivial": False,
        "error": f"scorer: {reason}",
        "worker_failure": True,
    }


# ------------------------------------------------------------------------------------------------ pool


def _worker_main(conn: Connection, fn: Callable[[Any], dict[str, Any]]) -> None:
    set_process_heap_limit(WORKER_HEAP_LIMIT_BYTES)
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        index, payload = item
        try:
            out = fn(payload)
        except Exception as exc:  # a bug in scoring one example must not stop the run
            out = _failure(f"{type(exc).__name__}: {exc}")
        conn.send((index, out))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[[Any], dict[str, Any]]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.index: int | None = None
        self.started = 0.0

    def give(self, index: int, payload: Any) -> None:
        self.index, self.started = index, time.monotonic()
        self.conn.send((index, payload))

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                self.proc.kill()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_isolated(
    fn: Callable[[Any], dict[str, Any]],
    payloads: Iterable[Any],
    workers: int,
    task_timeout_s: float,
    on_result: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Apply ``fn`` to every payload in ``workers`` spawned processes, one payload at a time per process.

    A worker that crashes or runs past ``task_timeout_s`` on a payload is killed and replaced; that payload's
    result is a failure record naming the reason. ``fn`` must be a module-level function (it is pickled).
    """
    queue = deque(enumerate(payloads))
    results: list[dict[str, Any] | None] = [None] * len(queue)
    ctx = mp.get_context("spawn")  # no fork: the caller may hold threads (tokenizers, torch)
    pool = [_Worker(ctx, fn) for _ in range(max(1, min(workers, len(queue))))]
    try:
        while queue or any(w.index is not None for w in pool):
            for w in pool:
                if w.index is None and queue:
                    w.give(*queue.popleft())
            busy = [w for w in pool if w.index is not None]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=0.5)
            now = time.monotonic()
            for slot, w in enumerate(pool):
                if w.index is None:
                    continue
                failure: str | None = None
                if w.conn in ready or w.conn.poll():
                    try:
                        index, out = w.conn.recv()
                        results[index] = out
                        w.index = None
                        if on_result is not None:
                            on_result(index)
                        continue
                    except (EOFError, OSError):
                        failure = f"worker process crashed (exit code {w.proc.exitcode})"
                elif not w.proc.is_alive():
                    failure = f"worker process crashed (exit code {w.proc.exitcode})"
                elif now - w.started > task_timeout_s:
                    failure = f"watchdog: example took longer than {task_timeout_s:g}s"
                if failure is not None:
                    assert w.index is not None
                    results[w.index] = _failure(failure)
                    if on_result is not None:
                        on_result(w.index)
                    w.stop(kill=True)
                    pool[slot] = _Worker(ctx, fn)
    finally:
        for w in pool:
            w.stop(kill=w.index is not None)
    return [r if r is not None else _failure("no result") for r in results]


# ------------------------------------------------------------------------------------------------ metrics


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def compute_metrics(records: list[dict[str, Any]], settings: ScoreSettings) -> dict[str, Any]:
    from sqlmaster.evaluate.stats import bootstrap_ci, latency_summary

    scored = [r for r in records if r["gold_valid"]]
    columns = {
        "execution_accuracy": [bool(r["execution_match"]) for r in scored],
        "executes": [bool(r["executes"]) for r in scored],
        "exact_match": [bool(r["exact_match"]) for r in records],
    }
    metrics: dict[str, Any] = {"n": len(records), "n_scored": len(scored)}
    for name, flags in columns.items():
        metrics[name] = _rate(flags)
        lo, hi = bootstrap_ci(flags, settings.bootstrap_resamples, settings.seed) if flags else (None, None)
        metrics[f"{name}_ci"] = [lo, hi]
    metrics["gold_invalid"] = len(records) - len(scored)
    metrics["gold_nontrivial_rate"] = _rate([bool(r["gold_nontrivial"]) for r in scored])
    metrics["worker_failures"] = sum(1 for r in records if r.get("worker_failure"))
    metrics["denominators"] = {
        "execution_accuracy": "n_scored (rows whose gold query runs)",
        "executes": "n_scored",
        "exact_match": "n",
    }
    latencies = [float(r["latency_s"]) for r in records if isinstance(r.get("latency_s"), int | float)]
    if latencies:
        metrics["latency_s"] = latency_summary(latencies)
    tokens = [int(r["tokens"]) for r in records if isinstance(r.get("tokens"), int)]
    if tokens:
        metrics["tokens"] = {"total": sum(tokens), "mean": sum(tokens) / len(tokens)}
    return metrics


# ------------------------------------------------------------------------------------------------ entry point


def score_records(
    records: list[dict[str, Any]], settings: ScoreSettings = ScoreSettings(), workers: int | None = None
) -> list[dict[str, Any]]:
    """Score validated records; returns one score dict per record, in order."""
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    tasks = [(r["context"], r["answer"], r["prediction"] or "", settings) for r in records]
    from sqlmaster.logs import progress

    with progress("scoring", len(tasks)) as advance:  # a live bar in a terminal only
        if workers <= 0:
            out = []
            for t in tasks:
                try:
                    out.append(score_example(t))
                except Exception as exc:  # same contract as the pool: one bad example is a miss, not a crash
                    out.append(_failure(f"{type(exc).__name__}: {exc}"))
                advance()
            return out
        return run_isolated(score_example, tasks, workers, settings.example_timeout_s, on_result=lambda _: advance())


def score_file(
    input_path: str | Path,
    output_dir: str | Path,
    *,
    workers: int | None = None,
    settings: ScoreSettings | None = None,
) -> dict[str, Any]:
    """Score ``input_path`` and write ``records.jsonl`` and ``metrics.json`` into ``output_dir``.

    Returns the metrics. Raises :class:`ScoreInputError` for an unreadable or malformed input (exit code 2
    in the
    CLI); ``workers=None`` uses up to 2 processes, ``0`` scores in-process.
    """
    settings = settings or ScoreSettings()
    if settings.databases_per_example < 1:
        raise ScoreInputError(
            f"databases_per_example must be >= 1, got {settings.databases_per_example}. Use 3 or more."
        )
    records = read_records(input_path)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scores = score_records(records, settings, workers)
    elapsed = time.perf_counter() - start
    with (output_dir / "records.jsonl").open("w", encoding="utf-8") as handle:
        for rec, sc in zip(records, scores, strict=True):
            line = {k: v for k, v in rec.items() if k != "_line"}
            line.update({k: sc.get(k) for k in SCORE_FIELDS})
            line["line"] = rec["_line"]
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    merged = [{**rec, **sc} for rec, sc in zip(records, scores, strict=True)]
    metrics = compute_metrics(merged, settings)
    metrics["elapsed_s"] = round(elapsed, 3)
    metrics["examples_per_s"] = round(len(records) / elapsed, 2) if elapsed > 0 else None
    metrics["settings"] = asdict(settings)
    metrics["input"] = str(input_path)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
