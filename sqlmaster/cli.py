"""The ``sqlmaster`` command: the workload's entry point inside the images, the charts' Jobs and sqlctl --local.

    sqlmaster train --model tiny --output-dir runs/tiny                       # CPU, minutes
    sqlmaster train --model mistral7b --recipe jobs/train/mistral7b.yaml --output-dir /data/runs/x/mistral7b
    torchrun --nproc_per_node 8 -m sqlmaster.cli train --model mistral7b ...  # DDP
    sqlmaster eval run --model tiny --adapter runs/tiny --output-dir runs/tiny/eval
    sqlmaster eval score --input predictions.jsonl --output-dir scored/
    sqlmaster eval report runs/* --output-dir report/
    sqlmaster quickstart                                                      # README command 1

Heavy libraries are imported inside the commands, so ``--help`` is instant. A configuration error exits
with code 2 and one line naming the problem and the fix (the charts fail the Job at once on code 2).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sqlmaster.errors import ConfigError

app = typer.Typer(
    name="sqlmaster",
    help="Fine-tune open 7B models for text-to-SQL and evaluate them by execution accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Generate, score and report evaluations.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Registry name (see `sqlctl models`), hub id or local path.")
]
OutputDirOpt = Annotated[
    Path, typer.Option("--output-dir", "-o", help="Run directory (created; resumed if it holds checkpoints).")
]
RecipeOpt = Annotated[Path | None, typer.Option("--recipe", "-r", help="Recipe YAML (a jobs/ values file works too).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a recipe value: section.key=value (repeatable).")
]


@app.command()
def train(
    model: ModelOpt,
    output_dir: OutputDirOpt,
    recipe: RecipeOpt = None,
    max_steps: Annotated[int | None, typer.Option(help="Shortcut for --set training.max_steps=N.")] = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune MODEL on the recipe's data; resumes from the latest checkpoint in OUTPUT_DIR."""
    from sqlmaster.config import load_recipe
    from sqlmaster.train.runner import run_training

    overrides = list(set_ or [])
    if max_steps is not None:
        overrides.append(f"training.max_steps={max_steps}")
    run_training(model, output_dir, load_recipe(recipe, overrides))


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
    from sqlmaster.config import load_recipe
    from sqlmaster.evaluate.runner import run_evaluation

    cfg = load_recipe(recipe, list(set_ or []))
    run_evaluation(model=model, adapter=adapter, output_dir=output_dir, datasets=dataset, limit=limit, recipe=cfg)


@eval_app.command("score")
def eval_score(
    input: Annotated[
        Path, typer.Option("--input", "-i", help="JSONL with question, context, answer, prediction per line.")
    ],
    output_dir: OutputDirOpt,
    workers: Annotated[int | None, typer.Option(help="Scoring processes (default: CPU count).")] = None,
) -> None:
    """Score predictions against gold SQL: writes metrics.json and records.jsonl."""
    from sqlmaster.evaluate.score import score_file

    metrics = score_file(input, output_dir, workers=workers)
    typer.echo(
        f"execution accuracy {metrics['execution_accuracy']:.1%}  exact match {metrics['exact_match']:.1%}  "
        f"executes {metrics['executes']:.1%}  n={metrics['n']}  -> {output_dir}"
    )


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
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the run goes.")] = Path(
        "runs/quickstart"
    ),
    jobs_dir: Annotated[Path | None, typer.Option(help="Folder holding train/tiny.yaml and eval/tiny.yaml.")] = None,
) -> None:
    """The embedded default: train `tiny` on the shipped data, evaluate it, print the leaderboard (~10 min, 2 CPUs)."""
    from sqlmaster.quickstart import run_quickstart

    run_quickstart(output_dir, jobs_dir)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
