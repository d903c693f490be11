"""Scoring on DuckDB, PostgreSQL and MySQL beside SQLite: gold agreement, verdict agreement and examples/s.

    OMP_NUM_THREADS=1 python bench/bench_engine_score.py --workers 2                 # sqlite + duckdb, 500 rows
    SQLMASTER_SCRATCH_POSTGRESQL=postgresql://scorer@db/scratch SQLMASTER_SCRATCH_MYSQL=mysql://scorer@db/scratch \\
        python bench/bench_engine_score.py --engines sqlite,duckdb,postgresql,mysql
    python bench/bench_engine_score.py --predictions /tmp/qs-x/eval/sql-create-context-test/records.jsonl

Rows: the quickstart's 500 held-out sql-create-context rows (the default recipe's test split); predictions are
the gold itself and its single-edit mutants (:mod:`sqlmaster.evaluate.mutants`, ``--per-kind`` of each kind), or a
model's (``--predictions``: a records.jsonl with context, answer, prediction). Each engine scores the same file
through ``score_file`` (reading, worker processes, writing) with ``--workers`` processes, end to end.

Figures per engine: **gold agreement** — of the examples whose SQLite gold runs, the share whose transpiled gold
returns SQLite's rows on every synthesized database (the issue's goal: >= 98%), with the rest by cause;
**verdict agreement** — of the rows scored on both, the share with the same execution match as SQLite (goal:
>= 99%), with the differences by mutant kind and error; and examples/s. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "cli")]


def held_out_rows(limit: int | None) -> list[dict[str, str]]:
    from sqlmaster.config import DataConfig
    from sqlmaster.data.pipeline import build_splits

    test = build_splits(DataConfig()).test
    rows = [{"question": e.question, "context": e.context, "answer": e.answer} for e in test]
    return rows[:limit] if limit else rows


def with_mutants(rows: list[dict[str, str]], per_kind: int) -> list[dict[str, Any]]:
    from sqlmaster.evaluate.mutants import mutants

    out: list[dict[str, Any]] = []
    for r in rows:
        columns = {c.lower() for c in re.findall(r"(\w+)\s+(?:VARCHAR|INTEGER|TEXT|REAL)", r["context"], re.I)}
        out.append({**r, "prediction": r["answer"], "kind": "gold"})
        out += [{**r, "prediction": m.sql, "kind": m.kind} for m in mutants(r["answer"], columns, per_kind)]
    return out


def model_rows(path: Path) -> list[dict[str, Any]]:
    keep = ("question", "context", "answer", "prediction")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{**{k: r.get(k) for k in keep}, "kind": "model"} for r in rows if r.get("context")]


def score(engine: str, source: Path, out: Path, workers: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from sqlmaster.evaluate.score import ScoreSettings, score_file

    start = time.perf_counter()
    metrics = score_file(source, out, workers=workers, settings=ScoreSettings(engine=engine), overwrite=True)
    metrics["wall_s"] = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    return metrics, records


def compare(engine: str, sqlite: list[dict[str, Any]], other: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    from sqlmaster.evaluate.engine_score import GOLD_PREFIX

    valid = {(a["context"], a["answer"]) for a in sqlite if a["gold_valid"]}
    causes: dict[tuple[str, str], str] = {}
    for b in other:
        if not b["gold_valid"] and (b["error"] or "").startswith(GOLD_PREFIX):
            causes[(b["context"], b["answer"])] = b["error"][len(GOLD_PREFIX) + 2 :].split(")", 1)[0]
    both = [(a, b) for a, b in zip(sqlite, other, strict=True) if a["gold_valid"] and b["gold_valid"]]
    differ = Counter(
        f"{a.get('kind')}: sqlite {a['execution_match']} vs {b['execution_match']} ({(b['error'] or '')[:50]})"
        for a, b in both
        if a["execution_match"] != b["execution_match"]
    )
    return {
        "engine": engine,
        "golds_valid_on_sqlite": len(valid),
        "golds_agree": len(valid) - len(causes),
        "gold_agreement": (len(valid) - len(causes)) / len(valid) if valid else None,
        "gold_causes": dict(Counter(causes.values())),
        "rows_compared": len(both),
        "verdict_agreement": (len(both) - sum(differ.values())) / len(both) if both else None,
        "verdict_differences": dict(differ.most_common()),
        "examples_per_s": round(len(other) / wall_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,duckdb", help="comma-separated; sqlite is always scored first")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="held-out rows (default: all 500)")
    parser.add_argument("--per-kind", type=int, default=1, help="mutants of each kind per gold")
    parser.add_argument("--predictions", type=Path, default=None, help="a model's records.jsonl instead of mutants")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = model_rows(args.predictions) if args.predictions else with_mutants(held_out_rows(args.limit), args.per_kind)
    engines = [e for e in args.engines.split(",") if e and e != "sqlite"]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        base, base_records = score("sqlite", source, Path(tmp) / "sqlite", args.workers)
        results = [{"engine": "sqlite", "examples_per_s": round(len(rows) / base["wall_s"], 1)}]
        for engine in engines:
            metrics, records = score(engine, source, Path(tmp) / engine, args.workers)
            results.append(compare(engine, base_records, records, metrics["wall_s"]))
    print(
        f"{len(rows)} rows ({'model predictions' if args.predictions else 'golds and mutants'}), {args.workers} workers"
    )
    print(f"{'ENGINE':<11} {'GOLDS AGREE':>18} {'VERDICTS AGREE':>20} {'EX/S':>8}  CAUSES")
    for r in results:
        if r["engine"] == "sqlite":
            print(f"{'sqlite':<11} {'(reference)':>18} {'(reference)':>20} {r['examples_per_s']:>8}")
            continue
        golds = f"{r['golds_agree']}/{r['golds_valid_on_sqlite']} {r['gold_agreement']:.1%}"
        verdicts = f"{r['rows_compared'] - sum(r['verdict_differences'].values())}/{r['rows_compared']} "
        verdicts += f"{r['verdict_agreement']:.2%}"
        print(f"{r['engine']:<11} {golds:>18} {verdicts:>20} {r['examples_per_s']:>8}  {r['gold_causes']}")
        for what, n in r["verdict_differences"].items():
            print(f"{'':<11} verdict differs x{n}: {what}")
    print(
        json.dumps(
            {
                "rows": len(rows),
                "workers": args.workers,
                "machine": platform.processor() or platform.machine(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
