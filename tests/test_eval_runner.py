"""End to end: a tiny LoRA run directory -> `sqlmaster eval run` -> predictions, metrics.json -> report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from eval_fixtures import overfit, tiny_model, tiny_tokenizer, write_lora_run
from typer.testing import CliRunner

from sqlmaster.cli import app
from sqlmaster.config import load_recipe
from sqlmaster.data.pipeline import build_splits
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate import embedding
from sqlmaster.evaluate.datasets import SplitCache, load_eval_dataset
from sqlmaster.evaluate.runner import resolve_target, run_evaluation
from sqlmaster.prompt import get_template, render_completion, render_prompt

DATA = {"source": "shipped", "validation_size": 10, "test_size": 20, "seed": 7}
METRIC_FIELDS = {
    "execution_accuracy",
    "execution_accuracy_ci",
    "exact_match",
    "exact_match_ci",
    "executes",
    "embedding_distance",
    "embedding_distance_ci",
    "embedder",
    "latency_p50_s",
    "latency_p99_s",
    "tokens_per_s",
    "n",
    "gold_invalid",
    "model",
    "adapter",
    "template",
    "backend",
}


class BagOfWords:
    """A deterministic stand-in embedder (the real local model is tested in test_eval_embedding.py)."""

    name = "test:bag-of-words"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vocab = ["select", "from", "where", "count", "(*)", "=", "and", "max", "min", "table_name"]
        return [[float(t.lower().count(w)) + 1e-3 for w in vocab] for t in texts]


LEARNT = 2  # test examples (the shortest of the first four) the base learns by heart


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA run of `tiny` as `sqlmaster train` lays it out, whose base has learnt two of its test examples."""

    recipe = load_recipe(overrides=[f"data.{k}={v}" for k, v in DATA.items()] + ["prompt.template=compact"])
    splits = build_splits(recipe.data)
    template = get_template("compact")
    tokenizer = tiny_tokenizer()
    texts = [
        render_prompt(template, ex.question, ex.context) + render_completion(template, ex.answer) + "</s>"
        for ex in splits.test[:4]
    ]
    learnt = sorted(range(4), key=lambda i: len(tokenizer(texts[i])["input_ids"]))[:LEARNT]
    base = overfit(tiny_model(tokenizer, hidden=128), tokenizer, [texts[i] for i in learnt], steps=80, lr=3e-3)
    root = tmp_path_factory.mktemp("run") / "tiny"
    write_lora_run(root, base, tokenizer, recipe, splits, "test-run", rank=4)
    (root / "learnt.json").write_text(json.dumps(sorted(learnt)))
    return root


def test_eval_run_writes_predictions_and_metrics(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "select_embedder", lambda kind="auto": BagOfWords())
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "run",
            "--model",
            "tiny",
            "--adapter",
            str(run_dir),
            "--output-dir",
            str(run_dir),
            "--dataset",
            "sql-create-context-test",
            "--dataset",
            "spider-dev",
            "--limit",
            "4",
            "--set",
            "evaluation.batch_size=2",
            "--set",
            "evaluation.max_new_tokens=48",
        ],
    )
    assert result.exit_code == 0, result.output

    test_dir = run_dir / "eval" / "sql-create-context-test"
    predictions = [json.loads(line) for line in (test_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4
    assert {"question", "context", "answer", "prediction", "raw_output", "prompt", "latency_s", "tokens"} <= set(
        predictions[0]
    )
    metrics = json.loads((test_dir / "metrics.json").read_text())
    assert set(metrics) >= METRIC_FIELDS
    assert metrics["n"] == 4 and metrics["template"] == "compact" and metrics["backend"] == "hf"
    assert metrics["model"] == "tiny" and metrics["adapter"] == str(run_dir)
    # The base learnt two test examples by heart: those are right, whatever it makes of the other two.
    records = [json.loads(line) for line in (test_dir / "records.jsonl").read_text().splitlines()]
    learnt = json.loads((run_dir / "learnt.json").read_text())
    assert all(records[i]["execution_match"] and records[i]["exact_match"] for i in learnt)
    assert all(records[i]["embedding_distance"] == pytest.approx(0.0, abs=1e-6) for i in learnt)
    assert metrics["execution_accuracy"] >= LEARNT / 4 - 1e-9
    assert metrics["execution_accuracy_ci"][0] <= metrics["execution_accuracy"] <= metrics["execution_accuracy_ci"][1]
    assert metrics["embedder"] == "test:bag-of-words"
    assert metrics["tokens_per_s"] > 0 and metrics["latency_p99_s"] >= metrics["latency_p50_s"] > 0

    spider = json.loads((run_dir / "eval" / "spider-dev" / "metrics.json").read_text())
    assert spider["n"] == 4 and spider["dataset_info"]["dropped_in_training_data"] > 0
    assert spider["scorer"]["databases"] == {"real": 4, "synthesized": 0}
    # Spider dev under the official convention (comparable with published figures), strict beside it.
    assert spider["convention"] == "official" and "execution_accuracy_strict" in spider
    assert metrics["convention"] == "strict" and "execution_accuracy_official" in metrics
    spider_records = (run_dir / "eval" / "spider-dev" / "records.jsonl").read_text().splitlines()
    assert all(json.loads(line)["gold_valid"] for line in spider_records)

    # The report renders both datasets as Markdown and PNG charts.
    report_dir = run_dir / "report"
    result = CliRunner().invoke(app, ["eval", "report", str(run_dir), "--output-dir", str(report_dir)])
    assert result.exit_code == 0, result.output
    assert "| 1 | tiny |" in result.output and "## spider-dev" in result.output
    for name in ("leaderboard.md", "leaderboard.json", "execution_accuracy.png", "latency.png"):
        assert (report_dir / name).stat().st_size > 0
    assert (report_dir / "execution_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_test_split_is_the_runs_own(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    recipe = load_recipe()  # the evaluation recipe's data section differs; the run's must win
    target = resolve_target("tiny", run_dir, recipe)
    assert target.template.name == "compact"
    from sqlmaster.evaluate.datasets import data_config_of_run

    data_cfg, origin = data_config_of_run(target.run_info, recipe.data)
    assert origin == "run.json" and data_cfg.test_size == 20
    dataset = load_eval_dataset("sql-create-context-test", SplitCache(data_cfg, info))
    assert dataset.info["sha256"] == info["data"]["sha256"]["test"]
    # A changed data source is caught by the recorded fingerprint.
    tampered = {**info, "data": {"sha256": {"test": "0" * 64}}}
    with pytest.raises(ConfigError, match="changed since training"):
        load_eval_dataset("sql-create-context-test", SplitCache(data_cfg, tampered))


def test_bad_inputs_fail_before_any_model_loads(run_dir: Path, tmp_path: Path) -> None:
    recipe = load_recipe()
    with pytest.raises(ConfigError, match="does not match the run"):
        run_evaluation("mistral7b", run_dir, tmp_path, None, None, recipe)
    with pytest.raises(ConfigError, match="unknown evaluation dataset"):
        run_evaluation("tiny", run_dir, tmp_path, ["wikisql"], None, recipe)
    with pytest.raises(ConfigError, match="neither a training run"):
        run_evaluation("tiny", tmp_path, tmp_path, None, None, recipe)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        run_evaluation("tiny", None, tmp_path, None, None, recipe)
    output_file = tmp_path / "a-file"
    output_file.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create --output-dir"):
        run_evaluation("tiny", run_dir, output_file, ["sql-create-context-test"], 2, recipe, generator=object())
    assert output_file.read_text() == "not a directory"


def test_eval_run_with_vote_answers_with_the_majority_and_keeps_the_samples(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluation.vote=3: the greedy decode and two samples per question, the answer chosen by executing them;
    predictions.jsonl keeps every candidate and the vote, metrics.json and the leaderboard name the decoding."""
    monkeypatch.setattr(embedding, "select_embedder", lambda kind="auto": BagOfWords())
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    out = tmp_path / "voted"
    sets = ["evaluation.batch_size=2", "evaluation.max_new_tokens=48", "evaluation.vote=3"]
    args = ["eval", "run", "--model", "tiny", "--adapter", str(run_dir), "--output-dir", str(out), "--limit", "4"]
    result = CliRunner().invoke(
        app, [*args, "--dataset", "sql-create-context-test", *(a for s in sets for a in ("--set", s))]
    )
    assert result.exit_code == 0, result.output
    test_dir = out / "eval" / "sql-create-context-test"
    predictions = [json.loads(line) for line in (test_dir / "predictions.jsonl").read_text().splitlines()]
    for row in predictions:
        samples, vote = row["samples"], row["vote"]
        assert len(samples) == 3 and [s["greedy"] for s in samples] == [True, False, False]
        assert all(s["mean_logprob"] is None or s["mean_logprob"] <= 0 for s in samples)
        assert row["prediction"] == samples[vote["index"]]["sql"] and vote["reason"]
        assert row["tokens"] == sum(s["generated_tokens"] for s in samples)
    metrics = json.loads((test_dir / "metrics.json").read_text())
    assert metrics["decoding"] == "vote@3" and metrics["generation"]["vote"] == 3 and metrics["vote_wall_s"] > 0
    # The base knows two test examples by heart: its samples agree with its greedy answer there, which stays right.
    records = [json.loads(line) for line in (test_dir / "records.jsonl").read_text().splitlines()]
    learnt = json.loads((run_dir / "learnt.json").read_text())
    assert all(records[i]["execution_match"] for i in learnt)
    report = CliRunner().invoke(app, ["eval", "report", str(out), "--output-dir", str(tmp_path / "report")])
    assert report.exit_code == 0 and "| vote@3 |" in report.output, report.output


def test_a_vote_that_fails_loses_no_candidate(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The candidates are on disk before the vote runs: when it fails (here: scorer workers that cannot start),
    predictions.jsonl holds every candidate, answered with the greedy one, and `eval score` scores it."""
    from sqlmaster.evaluate import vote
    from sqlmaster.evaluate.isolated import WorkerStartError

    def fail(*args: object, **kwargs: object) -> None:
        raise WorkerStartError("3 worker processes in a row exited as they started")

    monkeypatch.setattr(embedding, "select_embedder", lambda kind="auto": BagOfWords())
    monkeypatch.setattr(vote, "vote_questions", fail)
    out = tmp_path / "voted"
    sets = ["evaluation.batch_size=2", "evaluation.max_new_tokens=48", "evaluation.vote=3"]
    args = ["eval", "run", "--model", "tiny", "--adapter", str(run_dir), "--output-dir", str(out), "--limit", "4"]
    result = CliRunner().invoke(
        app, [*args, "--dataset", "sql-create-context-test", *(a for s in sets for a in ("--set", s))]
    )
    assert result.exit_code != 0 and isinstance(result.exception, WorkerStartError)
    test_dir = out / "eval" / "sql-create-context-test"
    assert not (test_dir / "metrics.json").exists()
    kept = test_dir / "predictions.jsonl"
    predictions = [json.loads(line) for line in kept.read_text().splitlines()]
    assert len(predictions) == 4
    for row in predictions:
        assert len(row["samples"]) == 3 and row["samples"][0]["greedy"]
        assert row["prediction"] == row["samples"][0]["sql"] and row["vote"] is None  # not voted
    scored = CliRunner().invoke(app, ["eval", "score", "--input", str(kept), "--output-dir", str(tmp_path / "s")])
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["n"] == 4


def test_eval_run_constrained_with_execution_guided_choice(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluation.constrain + vote_rule=first-rows: every candidate decoded under its example's grammar (or counted
    as a fallback), the answer the first candidate that returns rows; the leaderboard names the decoding."""
    monkeypatch.setattr(embedding, "select_embedder", lambda kind="auto": BagOfWords())
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    out = tmp_path / "constrained"
    sets = [
        "evaluation.batch_size=2",
        "evaluation.max_new_tokens=48",
        "evaluation.vote=3",
        "evaluation.vote_rule=first-rows",
        "evaluation.constrain=grammar+values",
    ]
    args = ["eval", "run", "--model", "tiny", "--adapter", str(run_dir), "--output-dir", str(out), "--limit", "4"]
    result = CliRunner().invoke(
        app, [*args, "--dataset", "sql-create-context-test", *(a for s in sets for a in ("--set", s))]
    )
    assert result.exit_code == 0, result.output
    test_dir = out / "eval" / "sql-create-context-test"
    predictions = [json.loads(line) for line in (test_dir / "predictions.jsonl").read_text().splitlines()]
    assert all(row["constraint"] in ("grammar", "fallback") for row in predictions)
    assert all(row["vote"]["reason"] in ("first with rows", "first that runs", "all failed") for row in predictions)
    metrics = json.loads((test_dir / "metrics.json").read_text())
    assert metrics["decoding"] == "exec@3+grammar+values"
    assert sum(metrics["constraint"].values()) == 4
    assert metrics["dataset_info"]["literal_case"] == {"table_name_N": "lower"}  # measured on the run's training
    records = [json.loads(line) for line in (test_dir / "records.jsonl").read_text().splitlines()]
    learnt = json.loads((run_dir / "learnt.json").read_text())
    assert all(records[i]["execution_match"] for i in learnt)  # the grammar admits the answers it knows
    report = CliRunner().invoke(app, ["eval", "report", str(out), "--output-dir", str(tmp_path / "report")])
    assert report.exit_code == 0 and "| exec@3+grammar+values |" in report.output, report.output
