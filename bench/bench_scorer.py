"""Scorer benchmark: throughput, non-trivial gold rate, and mutant kill rate by kind on the shipped sample.

    OMP_NUM_THREADS=1 python bench/bench_scorer.py                    # whole sample, 2 workers
    OMP_NUM_THREADS=1 python bench/bench_scorer.py --limit 2000       # quicker
    python bench/bench_scorer.py --input other.jsonl --workers 4

Throughput is measured through ``score_file`` (gold scored as the prediction, 3 synthesized databases per
example, worker processes) so that it includes process start-up, IPC and output writing. The mutant figures
score every mutant of every valid gold in-process with one synthesis per example (cached).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmaster.evaluate.execution import ExampleCache, score_prediction
from sqlmaster.evaluate.mutants import KINDS, mutants
from sqlmaster.evaluate.sandbox import DEFAULT_LIMITS
from sqlmaster.evaluate.score import ScoreSettings, score_file

DEFAULT_INPUT = Path("/work/shared/data/sql-create-context/sample-15716.jsonl")


def _load(path: Path, limit: int | None, seed: int) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    return rows


def _default_input() -> Path:
    shipped = sorted((Path(__file__).resolve().parent.parent / "sqlmaster/data/shipped").glob("*.jsonl*"))
    return shipped[0] if shipped else DEFAULT_INPUT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=None, help="JSONL with question/context/answer")
    parser.add_argument("--limit", type=int, default=None, help="seeded random subset of this many rows")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--databases", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = args.input or _default_input()
    rows = _load(path, args.limit, args.seed)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}; input {path} ({len(rows)} rows)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "gold.jsonl"
        src.write_text("".join(json.dumps({**r, "prediction": r["answer"]}) + "\n" for r in rows))
        settings = ScoreSettings(databases_per_example=args.databases, seed=args.seed)
        metrics = score_file(src, Path(tmp) / "out", workers=args.workers, settings=settings)
    print(
        f"throughput: {metrics['examples_per_s']:.1f} examples/s ({args.workers} workers, "
        f"{args.databases} DBs/example, {metrics['elapsed_s']:.1f}s)\n"
        f"gold vs itself: execution_accuracy={metrics['execution_accuracy']:.4f} "
        f"exact_match={metrics['exact_match']:.4f} gold_invalid={metrics['gold_invalid']} "
        f"non-trivial gold results={metrics['gold_nontrivial_rate']:.4f}"
    )

    cache = ExampleCache(maxsize=4)
    killed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    killed_nt: Counter[str] = Counter()
    total_nt: Counter[str] = Counter()
    failed_to_run: Counter[str] = Counter()
    start = time.perf_counter()
    for r in rows:
        prep = cache.get(r["context"], r["answer"], args.databases, args.seed, DEFAULT_LIMITS)
        if prep.synth.gold_error is not None:
            continue
        for m in mutants(r["answer"], set(prep.synth.column_names)):
            res = score_prediction(prep.synth, m.sql, prep.ordered)
            if not res.executes:
                failed_to_run[m.kind] += 1
                continue
            total[m.kind] += 1
            killed[m.kind] += not res.match
            if prep.synth.nontrivial:
                total_nt[m.kind] += 1
                killed_nt[m.kind] += not res.match
    elapsed = time.perf_counter() - start
    print(f"\nmutant kill rate ({sum(total.values())} mutants that run, scored in {elapsed:.1f}s in-process)")
    print(f"{'KIND':<17} {'KILLED':>7} {'TOTAL':>7} {'RATE':>7} {'RATE (non-trivial gold)':>24} {'NOT RUN':>7}")
    for kind in (*KINDS, "ALL"):
        k = sum(killed.values()) if kind == "ALL" else killed[kind]
        n = sum(total.values()) if kind == "ALL" else total[kind]
        knt = sum(killed_nt.values()) if kind == "ALL" else killed_nt[kind]
        nnt = sum(total_nt.values()) if kind == "ALL" else total_nt[kind]
        nr = sum(failed_to_run.values()) if kind == "ALL" else failed_to_run[kind]
        if n:
            print(f"{kind:<17} {k:>7} {n:>7} {k / n:>7.3f} {knt / max(nnt, 1):>24.3f} {nr:>7}")


if __name__ == "__main__":
    main()
