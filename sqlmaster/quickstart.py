"""The embedded default behind README command 1: train `tiny` on the shipped data, evaluate it, report.

It runs the same recipes that `helm install -f` and `sqlctl` use — `jobs/train/tiny.yaml` and
`jobs/eval/tiny.yaml` — so the CPU default and the cluster runs share one source of truth.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlmaster.config import Recipe
from sqlmaster.errors import ConfigError
from sqlmaster.recipes import jobs_dirs, resolve_recipe


def _tiny_recipe(task: str, jobs_dir: Path | None, overrides: list[str] | None = None) -> Recipe:
    """tiny's own recipe for ``task``, resolved like ``sqlmaster train --model tiny`` (sqlmaster/recipes.py)."""
    resolved = resolve_recipe(task, "tiny", overrides=overrides, jobs_dir=jobs_dir)
    if resolved.file is None:
        raise ConfigError(
            f"cannot find jobs/{task}/tiny.yaml (looked in {', '.join(map(str, jobs_dirs(jobs_dir)))}). "
            "Run from a SQLMaster checkout, install the package, or pass --jobs-dir"
        )
    print(resolved.describe())
    return resolved.recipe


def run_quickstart(output_dir: Path, jobs_dir: Path | None = None, overrides: list[str] | None = None) -> None:
    from sqlmaster.evaluate.report import write_report
    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.train.runner import run_training

    started = time.monotonic()
    run_dir = output_dir / "tiny"
    run_training("tiny", run_dir, _tiny_recipe("train", jobs_dir, overrides))
    eval_recipe = _tiny_recipe("eval", jobs_dir)
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
