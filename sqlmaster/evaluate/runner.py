"""``sqlmaster eval run``: generate SQL for the evaluation datasets, score it, and write the results.

    sqlmaster eval run --model tiny --adapter runs/tiny --output-dir runs/tiny
    sqlmaster eval run --model mistral7b --adapter /data/runs/x/mistral7b --output-dir /data/runs/x/mistral7b \
        --dataset sql-create-context-test --dataset spider-dev

For each dataset, under ``OUTPUT_DIR/eval/<dataset>/`` (``OUTPUT_DIR/<dataset>/`` when OUTPUT_DIR is itself
named ``eval``):

* ``predictions.jsonl``: per example the question, context, gold answer, predicted SQL, raw output, prompt,
  latency and generated tokens;
* ``records.jsonl``: the predictions plus the scorer's verdicts and the embedding distance;
* ``metrics.json``: execution accuracy (under the dataset's convention, and under the other one beside it),
  exact match, executes (each with a 95% bootstrap interval), embedding distance (+ interval, + which
  embedder), latency p50/p99, tokens/s, n, gold_invalid, and what was evaluated (model, adapter, template,
  backend, dataset provenance, scoring convention).

Scoring is the scorer's one path (:func:`sqlmaster.evaluate.score.score_rows`, the same as ``sqlmaster eval
score``): synthesized databases for ``CREATE TABLE`` contexts, the real database file for Spider dev rows.
Records and metrics are written once, each atomically, metrics last. Spider dev is scored under the official
Spider convention (DISTINCT removed, as published figures are) with strict beside it; the other datasets under
strict with official beside it. Re-evaluating a dataset replaces its earlier results (with a warning): the
old metrics.json is removed before generation starts, so it never sits beside newer predictions.

Killed half-way (SIGKILL, a pod's eviction), the same command resumes: each generated batch is appended to
``predictions.partial.jsonl`` (fsynced) as it finishes, and a rerun generates only the rest (sqlmaster/evaluate/
resume.py); it refuses, with one error line, a partial file made with another model, adapter, dataset or settings.
Generation and scoring show a live bar in a terminal and, in a pod or a pipe, a progress line at least every 30 s
(``SQLMASTER_PROGRESS_INTERVAL_S``; sqlmaster/progress.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmaster import boundedjson
from sqlmaster.config import Recipe
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.conventions import DEFAULT_CONVENTION
from sqlmaster.evaluate.datasets import SPIDER_DEV, EvalDataset, SplitCache, data_config_of_run, load_eval_dataset
from sqlmaster.evaluate.generate import PROMPT_TOO_LONG, GenerationRecord, GenerationSettings
from sqlmaster.evaluate.literal_case import LiteralCase
from sqlmaster.evaluate.resume import PartialPredictions, fingerprint
from sqlmaster.logs import setup_logging
from sqlmaster.progress import Progress
from sqlmaster.prompt import PromptTemplate, get_template, render_prompt
from sqlmaster.rundir import EVAL_DIR, EvalDir, RunDir

log = logging.getLogger(__name__)

# Scoring convention per dataset (sqlmaster.evaluate.execution): Spider's published figures use the official one.
DATASET_CONVENTIONS = {SPIDER_DEV: "official"}


@dataclass
class Target:
    """What is evaluated: a base model, optionally with a trained run or adapter on top."""

    model: str  # --model as given
    adapter: Path | None  # --adapter as given
    kind: str  # "base", "run" (a training run directory), "adapter" (a bare PEFT dir), "weights" (full dir)
    run_info: dict[str, Any] | None
    template: PromptTemplate


def resolve_target(model: str, adapter: Path | None, recipe: Recipe) -> Target:
    """Work out what ``--model`` / ``--adapter`` point at and which prompt template applies.

    A training run's own template (run.json) wins over the recipe's: evaluating with another prompt than the
    one trained on was a flaw of the original project.
    """
    from sqlmaster.models.registry import resolve_model

    spec = resolve_model(model)
    if adapter is None:
        if spec.is_tiny:
            raise ConfigError(
                "the tiny model has no pretrained weights to evaluate. Train it first and pass the run: "
                "--adapter RUN_DIR"
            )
        from sqlmaster.models.loading import offline_weights

        offline_weights(spec)  # hub unreachable and not fetched: the `models fetch` line, before any write
        return Target(model, None, "base", None, get_template(recipe.prompt.template, recipe.data.dialect))
    adapter = Path(adapter)
    if not adapter.is_dir():
        what = "does not exist" if not adapter.exists() else "is not a directory"
        raise ConfigError(f"--adapter {adapter} {what}. Pass the run directory `sqlmaster train` wrote")
    if (adapter / "run.json").is_file():
        from sqlmaster.models.loading import read_run_info
        from sqlmaster.train.guard import check_record

        info = read_run_info(adapter)
        check_record(info, adapter / "run.json", "Pass another --adapter, or restore the file")
        base = info.get("base_model") or {}
        if model not in (base.get("name"), base.get("hub_id")):
            raise ConfigError(
                f"--model {model} does not match the run in {adapter}, which trained "
                f"{base.get('name') or base.get('hub_id')}. Pass --model {base.get('name') or base.get('hub_id')}"
            )
        template_name = info.get("prompt_template") or ((info.get("recipe") or {}).get("prompt") or {}).get("template")
        template = get_template(template_name or recipe.prompt.template, recipe.data.dialect)
        return Target(model, adapter, "run", info, template)
    if (adapter / "adapter_config.json").is_file():
        return Target(model, adapter, "adapter", None, get_template(recipe.prompt.template, recipe.data.dialect))
    if (adapter / "config.json").is_file():
        return Target(model, adapter, "weights", None, get_template(recipe.prompt.template, recipe.data.dialect))
    raise ConfigError(
        f"--adapter {adapter} is neither a training run (run.json), a PEFT adapter (adapter_config.json) nor a "
        "model directory (config.json). Pass the run directory `sqlmaster train` wrote"
    )


def choose_backend(requested: str) -> str:
    from sqlmaster.evaluate.generate_vllm import vllm_available

    if requested == "vllm" and not vllm_available():
        raise ConfigError(
            "evaluation.backend=vllm but vllm is not installed or no CUDA GPU is visible. "
            "Use the eval image on a GPU node, or evaluation.backend=hf"
        )
    if requested == "auto":
        return "vllm" if vllm_available() else "hf"
    return requested


def make_generator(target: Target, recipe: Recipe, backend: str) -> Any:
    """Load the model for ``backend`` and wrap it in a generator (HFGenerator or VLLMGenerator)."""
    settings = GenerationSettings.from_config(recipe.evaluation)
    if backend == "vllm":
        from sqlmaster.evaluate.generate_vllm import VLLMGenerator

        return VLLMGenerator(_vllm_target(target, recipe), target.template, settings)

    from sqlmaster.evaluate.generate import HFGenerator
    from sqlmaster.models.loading import load_base_model, load_tokenizer, load_trained
    from sqlmaster.models.registry import resolve_model

    spec = resolve_model(target.model)
    if target.kind in ("run", "adapter"):
        assert target.adapter is not None
        model, tokenizer, _ = load_trained(target.adapter, for_generation=True)  # adapter stays unmerged
    elif target.kind == "weights":
        model = load_base_model(spec, recipe.model, path=target.adapter)
        tokenizer = load_tokenizer(spec, for_generation=True, path=target.adapter)
    else:
        model = load_base_model(spec, recipe.model)
        tokenizer = load_tokenizer(spec, for_generation=True)
    model.eval()
    return HFGenerator(model, tokenizer, target.template, settings)


def _vllm_target(target: Target, recipe: Recipe) -> Any:
    from sqlmaster.evaluate.generate_vllm import VLLMTarget
    from sqlmaster.models.registry import resolve_model

    spec = resolve_model(target.model)
    common: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "dtype": recipe.model.dtype}
    if target.kind == "run":
        assert target.adapter is not None and target.run_info is not None
        base = target.run_info.get("base_model") or {}
        if target.run_info.get("mode") == "full":
            return VLLMTarget(model=str(target.adapter / "model"), **common)
        base_model = str(target.adapter / base["path"]) if base.get("path") else base.get("hub_id", spec.hub_id)
        return VLLMTarget(
            model=base_model, adapter_dir=target.adapter / "adapter", revision=base.get("revision"), **common
        )
    if target.kind == "adapter":
        assert target.adapter is not None
        config = boundedjson.load_file(target.adapter / "adapter_config.json", "adapter config")
        return VLLMTarget(model=config.get("base_model_name_or_path") or spec.hub_id, adapter_dir=target.adapter)
    if target.kind == "weights":
        return VLLMTarget(model=str(target.adapter), **common)
    return VLLMTarget(model=spec.hub_id, revision=recipe.model.revision or spec.revision, **common)


def eval_root(output_dir: Path) -> Path:
    """``DIR/eval`` (the run-directory layout), or DIR itself when it is already called ``eval``."""
    return output_dir if output_dir.name == EVAL_DIR else RunDir(output_dir).eval


def _target_in_its_dialect(model: str, adapter: Path | None, recipe: Recipe) -> tuple[Target, Recipe]:
    """The target, and the recipe in the dialect its run trained for: a model trained with data.dialect=postgresql
    is prompted in that dialect and scored on that engine, whatever the evaluation recipe says."""
    target = resolve_target(model, adapter, recipe)
    data_cfg, _ = data_config_of_run(target.run_info, recipe.data)
    if data_cfg.dialect == recipe.data.dialect:
        return target, recipe
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, dialect=data_cfg.dialect))
    return resolve_target(model, adapter, recipe), recipe


def run_evaluation(
    model: str,
    adapter: Path | None,
    output_dir: Path,
    datasets: list[str] | None,
    limit: int | None,
    recipe: Recipe,
    *,
    generator: Any = None,
    embedder: Any = None,
    langsmith_client: Any = None,
    workers: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate one model on each dataset; returns ``{dataset: metrics}``.

    ``generator``, ``embedder`` and ``langsmith_client`` can be injected (tests, notebooks); by default the
    model is loaded for the recipe's backend, the embedder follows OPENAI_API_KEY and LangSmith follows
    LANGSMITH_API_KEY.
    """
    setup_logging()
    target, recipe = _target_in_its_dialect(model, adapter, recipe)
    names = list(datasets or recipe.evaluation.datasets)
    limit = limit if limit is not None else recipe.evaluation.limit
    data_cfg, data_origin = data_config_of_run(target.run_info, recipe.data)
    splits = SplitCache(data_cfg, target.run_info)
    # Build every dataset before loading the model: a bad name or path fails in seconds, not after a 7B load.
    built = _datasets(names, splits, limit, data_origin, recipe)

    # ... and an unusable output directory (a file, no permission) too, before the model loads.
    from sqlmaster.evaluate.score import prepare_output_dir

    for dataset in built:
        prepare_output_dir(eval_root(Path(output_dir)) / dataset.name, overwrite=True)

    embedder = embedder or _checked_embedder()  # before the model loads: an unreachable API fails in seconds
    backend = getattr(generator, "backend", None) or choose_backend(recipe.evaluation.backend)
    for dataset in built:  # an interrupted evaluation made with other settings is refused before the model loads
        _partial(dataset, target, recipe, backend, eval_root(Path(output_dir)) / dataset.name).check()
    if generator is None:
        generator = make_generator(target, recipe, backend)

    results: dict[str, dict[str, Any]] = {}
    for dataset in built:
        out_dir = eval_root(Path(output_dir)) / dataset.name
        metrics = evaluate_dataset(
            dataset, target, generator, embedder, out_dir, recipe, backend=backend, workers=workers
        )
        results[dataset.name] = metrics
        _sync_langsmith(dataset, out_dir, metrics, langsmith_client)
        log.info(
            "%s: execution accuracy %.1f%%, exact match %.1f%%, n=%d -> %s",
            dataset.name,
            100 * (metrics["execution_accuracy"] or 0.0),
            100 * (metrics["exact_match"] or 0.0),
            metrics["n"],
            out_dir,
        )
    return results


def _checked_embedder() -> Any:
    """The embedder OPENAI_API_KEY selects, its API checked reachable (an unusable key: one warning, local model)."""
    from sqlmaster.evaluate.embedding import usable_embedder

    return usable_embedder()


def evaluate_dataset(
    dataset: EvalDataset,
    target: Target,
    generator: Any,
    embedder: Any,
    out_dir: Path,
    recipe: Recipe,
    *,
    backend: str,
    workers: int | None = None,
) -> dict[str, Any]:
    """Generate, score (one scorer path), add embedding distance and latency; write records and metrics once."""
    from sqlmaster.evaluate.embedding import embedding_distances
    from sqlmaster.evaluate.score import prepare_output_dir, write_results

    files = EvalDir(out_dir)
    prepare_output_dir(out_dir, overwrite=True)
    partial = _partial(dataset, target, recipe, backend, out_dir)
    partial.check()
    if files.metrics.exists():
        log.warning("%s: replacing the earlier evaluation in %s", dataset.name, out_dir)
        files.metrics.unlink()  # never beside newer predictions, even if this run dies half-way
    generations, generation_wall_s, resumed = _generate(dataset, target, generator, partial, recipe)
    vote_wall_s = _vote_keeping_candidates(generations, dataset, recipe, workers, files.predictions)

    rows = _prediction_rows(dataset, generations)
    _write_jsonl(files.predictions, rows)
    all_empty = _warn_if_all_empty(dataset.name, rows)

    lines, scored = _score(dataset.name, rows, recipe, workers)
    distances = embedding_distances([r["prediction"] for r in lines], [r["answer"] for r in lines], embedder)
    for line, distance in zip(lines, distances, strict=True):
        line["embedding_distance"] = distance

    metrics = _metrics(scored, lines, generations, generation_wall_s, embedder.name)
    metrics.update(
        dataset=dataset.name,
        dataset_info=dataset.info,
        model=target.model,
        adapter=str(target.adapter) if target.adapter is not None else None,
        run_id=(target.run_info or {}).get("run_id"),
        template=target.template.name,
        backend=backend,
        generation=asdict(GenerationSettings.from_config(recipe.evaluation)),
        decoding=GenerationSettings.from_config(recipe.evaluation).decoding,
        vote_wall_s=vote_wall_s,
        all_predictions_empty=all_empty,  # a broken model or adapter, not a weak one: the report flags it
        constraint=_constraint_counts(generations),
        scorer=scored,
        resumed_rows=resumed,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_results(out_dir, lines, metrics)
    partial.remove()
    return metrics


def _warn_if_all_empty(name: str, rows: list[dict[str, Any]]) -> bool:
    """True (and a loud log line) when not one prediction holds any SQL: 0% then measures a broken model or adapter
    (NaN weights, a wrong template), not a weak one."""
    if not rows or any(str(r.get("prediction") or "").strip() for r in rows):
        return False
    log.error(
        "%s: EVERY PREDICTION IS EMPTY (%d of %d): the model produced no SQL at all, so its score says nothing about "
        "its skill. Check the adapter and base weights, evaluation.max_new_tokens and the prompt template",
        name,
        len(rows),
        len(rows),
    )
    return True


def _partial(dataset: EvalDataset, target: Target, recipe: Recipe, backend: str, out_dir: Path) -> PartialPredictions:
    return PartialPredictions(EvalDir(out_dir).partial_predictions, fingerprint(dataset, target, recipe, backend))


def _generate(
    dataset: EvalDataset, target: Target, generator: Any, partial: PartialPredictions, recipe: Recipe
) -> tuple[list[GenerationRecord], float, int]:
    """Every prompt's record, the batches an interrupted run left on disk read back and the rest generated (each
    batch appended to the partial file as it finishes; with ``evaluation.constrain``, each prompt under its
    example's grammar); returns the records, generation seconds (earlier runs' included) and how many rows were
    read back."""
    prompts = [render_prompt(target.template, ex.question, ex.context) for ex in dataset.examples]
    grammars = _grammars(dataset, target, recipe)
    done = partial.load()
    resumed = len(done)
    if done:
        log.info(
            "%s: resuming an interrupted evaluation: %d of %d predictions are on disk in %s, generating the other %d",
            dataset.name,
            len(done),
            len(prompts),
            partial.path,
            len(prompts) - len(done),
        )
    started = time.perf_counter()
    with Progress(f"generating {dataset.name}", len(prompts), done=len(done)) as bar, partial.appending() as save:

        def on_batch(records: list[GenerationRecord]) -> None:
            save(records)
            bar.advance(len(records))

        if len(done) < len(prompts):
            constrained = [] if grammars is None else [grammars]  # generators without grammars take none
            for record in generator.generate(prompts, *constrained, skip=set(done), on_batch=on_batch):
                done[record.index] = record
    generations = [done[i] for i in range(len(prompts))]
    return generations, partial.earlier_wall_s + time.perf_counter() - started, resumed


def _datasets(
    names: list[str], splits: SplitCache, limit: int | None, data_origin: str, recipe: Recipe
) -> list[EvalDataset]:
    """Every dataset named, with where its data recipe came from and, under ``grammar+values``, the case its
    literals take."""
    built = [load_eval_dataset(name, splits, limit) for name in names]
    convention = _literal_case(splits, recipe)
    for dataset in built:
        dataset.info["data_recipe_from"] = data_origin
        if convention is not None:
            dataset.literal_case = convention
            dataset.info["literal_case"] = convention.rules
    return built


def _literal_case(splits: SplitCache, recipe: Recipe) -> LiteralCase | None:
    """With ``grammar+values``: the case the run's training split writes question spans in (literal_case.py)."""
    if recipe.evaluation.constrain != "grammar+values":
        return None
    from sqlmaster.evaluate.literal_case import measure

    convention = measure(splits.get().train)
    log.info("literal case of the training data, by table shape: %s", convention.rules or "mixed (any case)")
    return convention


def _grammars(dataset: EvalDataset, target: Target, recipe: Recipe) -> list[str] | None:
    """One grammar per example with ``evaluation.constrain`` (evaluate/constrain.py); None when it is off."""
    if recipe.evaluation.constrain == "none":
        return None
    from sqlmaster.evaluate.constrain import example_grammars

    stop = target.template.stop or ""
    return example_grammars(
        dataset.examples, recipe.evaluation.constrain, stop, dataset.literal_case, recipe.data.dialect
    )


def _constraint_counts(generations: list[GenerationRecord]) -> dict[str, int] | None:
    """How many answers the grammar decoded and how many fell back to the unconstrained decode (None: off)."""
    if all(g.constraint is None for g in generations):
        return None
    return {k: sum(g.constraint == k for g in generations) for k in ("grammar", "fallback")}


def _vote_keeping_candidates(
    generations: list[GenerationRecord], dataset: EvalDataset, recipe: Recipe, workers: int | None, predictions: Path
) -> float | None:
    """:func:`_vote`, with every candidate written to ``predictions`` first (answered with the greedy one):
    generation is the costly part, so a vote that fails loses none of it."""
    if recipe.evaluation.vote <= 1:
        return None
    _write_jsonl(predictions, _prediction_rows(dataset, generations))
    try:
        return _vote(generations, dataset, recipe, workers)
    except Exception:
        log.error(
            "%s: the vote failed; every candidate is kept in %s, answered with the greedy one "
            "(`sqlmaster eval score --input %s --output-dir DIR` scores those answers)",
            dataset.name,
            predictions,
            predictions,
        )
        raise


def _vote(
    generations: list[GenerationRecord], dataset: EvalDataset, recipe: Recipe, workers: int | None
) -> float | None:
    """With ``evaluation.vote`` > 1: each record answers with the candidate execution-based voting picks
    (sqlmaster/evaluate/vote.py, in the scorer's sandboxed workers); returns the vote's wall time (None: no vote)."""
    if recipe.evaluation.vote <= 1:
        return None
    from sqlmaster.evaluate.score import ScoreSettings
    from sqlmaster.evaluate.vote import Candidate, Question, vote_questions

    started = time.perf_counter()
    questions = [
        Question(
            candidates=tuple(Candidate(s["sql"], _mean(s["mean_logprob"]), bool(s["greedy"])) for s in g.samples or []),
            context=ex.context,
            db_path=ex.db_path,
        )
        for g, ex in zip(generations, dataset.examples, strict=True)
    ]
    settings = ScoreSettings(databases_per_example=recipe.evaluation.databases_per_example)
    votes = vote_questions(questions, settings, workers, rule=recipe.evaluation.vote_rule)
    for g, v in zip(generations, votes, strict=True):
        g.choose(
            v.index, {"index": v.index, "reason": v.reason, "groups": [list(x) for x in v.groups], "errors": v.errors}
        )
    seconds = time.perf_counter() - started
    log.info("%s: voted among %d candidates per question in %.1f s", dataset.name, recipe.evaluation.vote, seconds)
    return seconds


def _mean(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _score(
    dataset: str, rows: list[dict[str, Any]], recipe: Recipe, workers: int | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The scorer's one path (as ``sqlmaster eval score``), under the dataset's convention."""
    from sqlmaster.evaluate.score import DatabaseResolver, ScoreSettings, score_rows, validate_record

    resolver = DatabaseResolver(None)
    records = [validate_record(dict(row), f"{dataset} example {i}", resolver) for i, row in enumerate(rows)]
    settings = ScoreSettings(
        convention=DATASET_CONVENTIONS.get(dataset, DEFAULT_CONVENTION),
        databases_per_example=recipe.evaluation.databases_per_example,
        # a model trained for another dialect writes it: its SQL runs as written on that engine (.engine_score)
        engine=recipe.data.dialect,
        prediction_dialect=recipe.data.dialect,
    )
    return score_rows(records, settings, workers, label=f"scoring {dataset}")


def _prediction_rows(dataset: EvalDataset, generations: list[GenerationRecord]) -> list[dict[str, Any]]:
    return [_prediction_row(ex.to_dict(), gen) for ex, gen in zip(dataset.examples, generations, strict=True)]


def _prediction_row(example: dict[str, Any], gen: GenerationRecord) -> dict[str, Any]:
    return {
        **example,
        "prediction": gen.sql,
        "raw_output": gen.raw_output,
        "prompt": gen.prompt,
        "latency_s": gen.latency_s,
        "batch_latency_s": gen.batch_latency_s,
        "batch_size": gen.batch_size,
        "tokens": gen.generated_tokens,  # the scorer's name for generated tokens
        "prompt_tokens": gen.prompt_tokens,
        "stopped_by": gen.stopped_by,
        **({"samples": gen.samples, "vote": gen.vote} if gen.samples is not None else {}),
        **({"constraint": gen.constraint} if gen.constraint is not None else {}),
    }


def _metrics(
    scored: dict[str, Any],
    records: list[dict[str, Any]],
    generations: list[GenerationRecord],
    generation_wall_s: float,
    embedder_name: str,
) -> dict[str, Any]:
    """The headline numbers of metrics.json (the scorer's full output is kept under ``scorer``)."""
    from sqlmaster.evaluate.stats import bootstrap_ci, percentile

    distances = [float(r["embedding_distance"]) for r in records if r["embedding_distance"] is not None]
    latencies = [g.latency_s for g in generations]
    tokens = sum(g.generated_tokens for g in generations)
    others = {
        key: scored[key]
        for c in scored["execution_accuracy_by_convention"]
        if c != scored["convention"]
        for key in (f"execution_accuracy_{c}", f"execution_accuracy_{c}_ci")
    }
    return {
        "n": scored["n"],
        "n_scored": scored["n_scored"],
        "gold_invalid": scored["gold_invalid"],
        "convention": scored["convention"],
        "execution_accuracy": scored["execution_accuracy"],
        "execution_accuracy_ci": scored["execution_accuracy_ci"],
        **others,
        "exact_match": scored["exact_match"],
        "exact_match_ci": scored["exact_match_ci"],
        "executes": scored["executes"],
        "executes_ci": scored["executes_ci"],
        "embedding_distance": sum(distances) / len(distances) if distances else None,
        "embedding_distance_ci": list(bootstrap_ci(distances, seed=0)) if distances else [None, None],
        "embedder": embedder_name,
        # Per-example latency is the batch's wall time shared among its examples (batched generation).
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "batch_latency_p50_s": percentile([g.batch_latency_s for g in generations], 50),
        "tokens_per_s": tokens / generation_wall_s if generation_wall_s > 0 else None,
        "examples_per_s": len(generations) / generation_wall_s if generation_wall_s > 0 else None,
        "generated_tokens": tokens,
        "generation_wall_s": generation_wall_s,
        "stopped_by": {
            k: sum(g.stopped_by == k for g in generations) for k in ("eos", "stop_string", "length", PROMPT_TOO_LONG)
        },
    }


def _sync_langsmith(dataset: EvalDataset, out_dir: Path, metrics: dict[str, Any], client: Any) -> None:
    from sqlmaster.evaluate.langsmith_sync import sync_evaluation

    try:
        sync_evaluation(dataset, _read_jsonl(EvalDir(out_dir).records), metrics, client=client)
    except Exception as exc:  # tracking must never cost the evaluation that was just computed
        log.warning("LangSmith sync failed (%s: %s); results are on disk in %s", type(exc).__name__, exc, out_dir)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from sqlmaster.atomic import atomic_open
    from sqlmaster.evaluate.score import SAFE_ENCODING_ERRORS, json_line

    with atomic_open(path, errors=SAFE_ENCODING_ERRORS) as handle:
        for row in rows:
            handle.write(json_line(row) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
