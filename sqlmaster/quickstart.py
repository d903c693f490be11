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
    train_recipe = _tiny_recipe("train", jobs_dir, overrides)
    # evaluation.* values (limit, datasets, ...) are the evaluation's: they were silently dropped before.
    # Both recipes are resolved before training, so a bad value costs seconds, not a training run.
    eval_sets = [item for item in overrides or [] if item.split("=", 1)[0].strip().startswith("evaluation.")]
    eval_recipe = _tiny_recipe("eval", jobs_dir, eval_sets)
    _check_openai()
    run_training("tiny", run_dir, train_recipe)
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


def _check_openai() -> None:
    """With OPENAI_API_KEY set the evaluation embeds with OpenAI: an unreachable API or a refused key is one
    line now, not a traceback after the whole training run (165 s into quickstart, as observed)."""
    import os

    if os.environ.get("OPENAI_API_KEY"):
        from sqlmaster.evaluate.embedding import OpenAIEmbedder

        OpenAIEmbedder().check()
