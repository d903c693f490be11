"""Does GRPO after SFT beat more SFT, or voting at inference? tiny on CPU, at equal training wall time.

    python bench/bench_grpo.py OUT_DIR [--sft-minutes T] [--grpo-minutes G] [--seeds 1399 7] [--limit 500] [--vote 8]

For each seed: `tiny` SFT for T minutes (jobs/train/tiny.yaml, its time budget set to T), GRPO for G minutes from it
(`--stage grpo --init-from`), and SFT alone for T + G minutes (the same wall time as SFT + GRPO); each of the three
is evaluated on the first --limit held-out rows greedy and with evaluation.vote=N. Prints a table, and as its last
line one JSON object: {"seeds": [...], "sft_ex": [...], "grpo_ex": [...], "sft_long_ex": [...], "vote8_ex": [...]}
(execution accuracy per seed, greedy; vote8_ex is the SFT run with vote@N, the inference-time alternative to GRPO;
the table also has the other runs with voting).

GRPO runs jobs/grpo/tiny.yaml over the SFT run's data, prompt and model sections, as `sqlmaster train --stage grpo`
does (--grpo-set overrides it). A run already finished in OUT_DIR is reused, so deleting only the seed-*/grpo folders
and re-running with other --grpo-set values re-runs GRPO alone. Smoke test: --sft-minutes 0.3 --grpo-minutes 0.3
--limit 20 --seeds 1399 (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: import this checkout's sqlmaster
    sys.path.insert(0, str(REPO))

RUNS = ("sft", "grpo", "sft_long")


def _train(run_dir: Path, minutes: float, seed: int, sets: list[str], init_from: Path | None = None) -> float:
    """One tiny run for ``minutes`` of training (SFT, or GRPO from ``init_from``); returns its wall seconds.

    A run this bench already finished in OUT_DIR is kept (its wall.json read back), so a bench stopped part-way, or
    re-run with other --grpo-set values after deleting only the grpo folders, does not retrain what it has."""
    wall_file = run_dir / "bench-wall.json"
    if wall_file.exists():
        return float(json.loads(wall_file.read_text())["wall_s"])
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.guard import TrainOptions, inherited_overrides
    from sqlmaster.train.runner import run_training

    budget = [f"training.time_budget_minutes={minutes}", f"training.seed={seed}", "training.max_time_minutes=null"]
    inherited: list[str] = []
    options = TrainOptions()
    if init_from is not None:
        inherited = inherited_overrides(json.loads((init_from / "run.json").read_text()))
        options = TrainOptions(stage="grpo", init_from=str(init_from))
    # SFT: jobs/train/tiny.yaml; GRPO: jobs/grpo/tiny.yaml over the SFT run's data, prompt and model (as the CLI)
    task = "grpo" if init_from is not None else "train"
    recipe = resolve_recipe(task, "tiny", overrides=[*inherited, *sets, *budget]).recipe
    started = time.monotonic()
    run_training("tiny", run_dir, recipe, options)
    wall = time.monotonic() - started
    wall_file.write_text(json.dumps({"wall_s": wall}))
    return wall


def _evaluate(run_dir: Path, limit: int, vote: int) -> float:
    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.recipes import resolve_recipe

    decoding = f"vote{vote}" if vote > 1 else "greedy"
    done = run_dir / f"eval-{decoding}" / "bench-ex.json"
    if done.exists():
        return float(json.loads(done.read_text())["execution_accuracy"])
    recipe = resolve_recipe("eval", "tiny", overrides=[f"evaluation.vote={vote}"]).recipe
    results = run_evaluation(
        model="tiny",
        adapter=run_dir,
        output_dir=run_dir / f"eval-{decoding}",
        datasets=None,
        limit=limit,
        recipe=recipe,
    )
    (_, metrics), *_ = results.items()
    done.write_text(json.dumps({"execution_accuracy": metrics["execution_accuracy"], "limit": limit}))
    return float(metrics["execution_accuracy"])


def _seed(out: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    root = out / f"seed-{seed}"
    wall = {
        "sft": _train(root / "sft", args.sft_minutes, seed, args.sets),
        "grpo": _train(root / "grpo", args.grpo_minutes, seed, args.grpo_sets, root / "sft"),
        "sft_long": _train(root / "sft_long", args.sft_minutes + args.grpo_minutes, seed, args.sets),
    }
    scores = {}
    for run in RUNS:
        scores[run] = _evaluate(root / run, args.limit, 1)
        scores[f"{run}_vote"] = _evaluate(root / run, args.limit, args.vote)
    return {"seed": seed, "wall_s": wall, "ex": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sft-minutes", type=float, default=6.5, help="T: SFT time budget (tiny's recipe: 6.5)")
    parser.add_argument("--grpo-minutes", type=float, default=3.0, help="G: GRPO time budget after SFT")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1399, 7])
    parser.add_argument("--limit", type=int, default=500, help="held-out rows evaluated")
    parser.add_argument("--vote", type=int, default=8, help="candidates per question when voting")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="SFT recipe section.key=value")
    parser.add_argument("--grpo-set", dest="grpo_sets", action="append", default=[], help="GRPO recipe overrides")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    from sqlmaster.train.arguments import cpu_flags

    results = [_seed(args.out_dir, seed, args) for seed in args.seeds]
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2")))
    print(f"CPU: {os.cpu_count()} cores, flags {' '.join(flags) or 'unknown'}")
    print(f"T = {args.sft_minutes} min SFT, G = {args.grpo_minutes} min GRPO, {args.limit} rows, vote@{args.vote}")
    print(f"| seed | {' | '.join(f'{r} greedy | {r} vote@{args.vote}' for r in RUNS)} |")
    print(f"|---:|{'---:|' * 2 * len(RUNS)}")
    for r in results:
        cells = " | ".join(f"{r['ex'][run]:.1%} | {r['ex'][f'{run}_vote']:.1%}" for run in RUNS)
        print(f"| {r['seed']} | {cells} |")
    print(
        json.dumps(
            {
                "seeds": [r["seed"] for r in results],
                "sft_ex": [r["ex"]["sft"] for r in results],
                "grpo_ex": [r["ex"]["grpo"] for r in results],
                "sft_long_ex": [r["ex"]["sft_long"] for r in results],
                "vote8_ex": [r["ex"]["sft_vote"] for r in results],
            }
        )
    )


if __name__ == "__main__":
    main()
