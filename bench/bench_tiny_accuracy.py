"""What a change to tiny's recipe does to execution accuracy: train with --set values, evaluate, print the figures.

    python bench/bench_tiny_accuracy.py OUT_DIR [--rows 500] [--set section.key=value ...]

Trains `tiny` from jobs/train/tiny.yaml plus the --set values into OUT_DIR (its own time budget, so runs are compared
at equal wall time), evaluates it on the first --rows held-out rows with jobs/eval/tiny.yaml, and prints execution
accuracy with where the misses are: the table id, the quoted values, or the shape of the query. This is how the
choices written in jobs/train/tiny.yaml were measured. Accuracy on 500 rows has a 95% interval of about +-4 points:
compare changes that move it by more, or repeat with --set training.seed=N. One run takes the recipe's budget plus
about a minute; give each run the same machine (and the same cores: `taskset -c 0` for a one-core comparison, with
--set training.cpu_processes=1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Any


def misses(records: list[dict[str, Any]]) -> dict[str, float]:
    """Share of rows whose table id, quoted values, and query shape (names and values blanked) match the gold's."""

    def tables(sql: str) -> list[str]:
        return re.findall(r"FROM\s+(\w+)", sql)

    def values(sql: str) -> list[str]:
        return re.findall(r'"([^"]*)"', sql)

    def shape(sql: str) -> str:
        return re.sub(r'"[^"]*"|\b\d+\b|\w+_\w+', "X", sql)

    n = max(len(records), 1)
    pairs = [(r["answer"], r.get("prediction") or "") for r in records]
    with_values = [(g, p) for g, p in pairs if values(g)]
    return {
        "table_id_right": sum(tables(g) == tables(p) for g, p in pairs) / n,
        "values_right": sum(values(g) == values(p) for g, p in with_values) / max(len(with_values), 1),
        "shape_right": sum(shape(g) == shape(p) for g, p in pairs) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rows", type=int, default=500, help="held-out rows to evaluate (the quickstart uses 500)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="training recipe section.key=value")
    args = parser.parse_args()

    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.arguments import cpu_flags
    from sqlmaster.train.runner import run_training

    started = time.monotonic()
    trained = run_training("tiny", args.out_dir, resolve_recipe("train", "tiny", overrides=args.sets).recipe)
    train_s = time.monotonic() - started
    evaluated = run_evaluation(
        model="tiny",
        adapter=args.out_dir,
        output_dir=args.out_dir / "eval",
        datasets=None,
        limit=args.rows,
        recipe=resolve_recipe("eval", "tiny").recipe,
    )
    records_path = next((args.out_dir / "eval").glob("*/records.jsonl"))
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    (name, metrics), *_ = evaluated.items()
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2")))
    print(f"CPU: {os.cpu_count()} cores, flags {' '.join(flags) or 'unknown'}")
    print(f"--set {' '.join(args.sets) or '(none)'}")
    print(
        f"trained {trained.get('steps')} steps, {trained.get('epochs', 0):.1f} epochs, "
        f"{trained.get('tokens_per_second', 0):,.0f} tokens/s, eval loss {trained.get('eval_loss', 0):.3f} "
        f"in {train_s / 60:.1f} min"
    )
    low, high = metrics.get("execution_accuracy_ci") or (None, None)
    print(f"{name}: execution accuracy {metrics['execution_accuracy']:.1%} [{low}, {high}], n={metrics['n']}")
    print("  " + ", ".join(f"{key} {value:.1%}" for key, value in misses(records).items()))


if __name__ == "__main__":
    main()
