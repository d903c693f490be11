"""The embedded default behind README command 1: train `tiny` on the shipped data, evaluate it, report.

It runs the same recipes that `helm install -f` and `sqlctl` use — `jobs/train/tiny.yaml` and
`jobs/eval/tiny.yaml` — so the CPU default and the cluster runs share one source of truth.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlmaster.config import load_recipe
from sqlmaster.errors import ConfigError


def find_jobs_file(task: str, model: str, jobs_dir: Path | None = None) -> Path:
    """Locate ``jobs/<task>/<model>.yaml``: in ``jobs_dir``, else the checkout this package runs from, else cwd."""
    candidates = [jobs_dir] if jobs_dir else [Path(__file__).resolve().parent.parent / "jobs", Path.cwd() / "jobs"]
    for root in candidates:
        path = root / task / f"{model}.yaml"
        if path.is_file():
            return path
    raise ConfigError(
        f"cannot find jobs/{task}/{model}.yaml (looked in {', '.join(str(c) for c in candidates)}). "
        "Run from a SQLMaster checkout or pass --jobs-dir"
    )


def run_quickstart(output_dir: Path, jobs_dir: Path | None = None) -> None:
    from sqlmaster.evaluate.report import write_report
    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.train.runner import run_training

    started = time.monotonic()
    run_dir = output_dir / "tiny"
    run_training("tiny", run_dir, load_recipe(find_jobs_file("train", "tiny", jobs_dir)))
    eval_recipe = load_recipe(find_jobs_file("eval", "tiny", jobs_dir))
    run_evaluation(
        model="tiny", adapter=run_dir, output_dir=run_dir / "eval", datasets=None, limit=None, recipe=eval_recipe
    )
    markdown = write_report([run_dir], output_dir / "report")
    minutes = (time.monotonic() - started) / 60
    print(markdown)
    print(f"\nquickstart finished in {minutes:.1f} min")
    print(f"  model and run record: {run_dir}")
    print(f"  evaluation:           {run_dir / 'eval'}")
    print(f"  leaderboard, charts:  {output_dir / 'report'}")
