"""`sqlmaster data from-db` throughput and yield on real databases (issue 30): pairs per second, pairs per family
and level, and the share of drawn SQL kept (the rest: duplicates, empty or degenerate results, timeouts).

    OMP_NUM_THREADS=1 python bench/bench_from_db.py                     # Spider dev's 19 shipped databases
    python bench/bench_from_db.py path/to/a.sqlite b.duckdb --draws 400 # any databases

The pairs are written to a temporary folder (``--output-dir`` keeps them). The last line is one JSON object:
``{"databases", "pairs", "seconds", "pairs_per_s", "drawn", "kept_share", "per_family", "per_level", ...}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sqlmaster.data.fromdb import FromDbSettings, from_db
from sqlmaster.data.spider import spider_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", help="databases (default: Spider dev's shipped SQLite files)")
    parser.add_argument("--draws", type=int, default=FromDbSettings.draws)
    parser.add_argument("--seed", type=int, default=FromDbSettings.seed)
    parser.add_argument("--output-dir", type=Path, default=None)
    args = parser.parse_args()
    sources = args.sources or [str(p) for p in sorted((spider_dir() / "database").glob("*.sqlite"))]
    with tempfile.TemporaryDirectory() as scratch:
        out = args.output_dir or Path(scratch)
        info = from_db(sources, out, FromDbSettings(draws=args.draws, seed=args.seed))
    databases = info["databases"]
    drawn = sum(d["drawn"] for d in databases)
    pairs = info["counts"]["pairs"]
    for d in databases:
        print(f"{Path(d['source']).name:40s} pairs {d['pairs']:4d} drawn {d['drawn']:4d} dropped {d['dropped']}")
    print(json.dumps(info["counts"]["per_family_level"], indent=None))
    summary = {
        "databases": len(databases),
        "pairs": pairs,
        "train": info["splits"]["train"]["pairs"],
        "test": info["splits"]["test"]["pairs"],
        "seconds": info["seconds"],
        "pairs_per_s": round(pairs / info["seconds"], 1),
        "drawn": drawn,
        "kept_share": round(pairs / drawn, 3) if drawn else 0.0,
        "per_family": info["counts"]["per_family"],
        "per_level": info["counts"]["per_level"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
