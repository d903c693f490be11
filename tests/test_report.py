"""The leaderboard and charts from eval/<dataset>/metrics.json files of several runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _metrics(model: str, dataset: str, ea: float, **extra: object) -> dict[str, object]:
    return {
        "dataset": dataset,
        "model": model,
        "adapter": f"runs/{model}",
        "execution_accuracy": ea,
        "execution_accuracy_ci": [ea - 0.05, ea + 0.05],
        "exact_match": ea / 2,
        "exact_match_ci": [0.0, ea],
        "executes": 0.9,
        "embedding_distance": 0.2,
        "embedding_distance_ci": [0.18, 0.22],
        "embedder": "local:all-MiniLM-L6-v2",
        "latency_p50_s": 0.5,
        "latency_p99_s": 1.5,
        "tokens_per_s": 120.0,
        "n": 100,
        "gold_invalid": 2,
        "template": "original",
        "backend": "hf",
        **extra,
    }


def _run(root: Path, model: str, results: dict[str, float], loss: bool = False) -> Path:
    run = root / model
    for dataset, ea in results.items():
        (run / "eval" / dataset).mkdir(parents=True)
        (run / "eval" / dataset / "metrics.json").write_text(json.dumps(_metrics(model, dataset, ea)))
    if loss:
        state = {
            "global_step": 40,
            "log_history": [
                {"step": 10, "loss": 2.0},
                {"step": 20, "loss": 1.2},
                {"step": 20, "eval_loss": 1.4},
                {"step": 40, "loss": 0.8},
            ],
        }
        (run / "checkpoints" / "checkpoint-40").mkdir(parents=True)
        (run / "checkpoints" / "checkpoint-40" / "trainer_state.json").write_text(json.dumps(state))
    return run


def test_leaderboard_ranks_runs_per_dataset(tmp_path: Path) -> None:
    mistral = _run(tmp_path, "mistral7b", {"sql-create-context-test": 0.81, "spider-dev": 0.42}, loss=True)
    gemma = _run(tmp_path, "gemma7b", {"sql-create-context-test": 0.77, "spider-dev": 0.45})
    out = tmp_path / "report"
    markdown = write_report([gemma, mistral / "eval"], out)  # a run dir and an eval dir both work

    sections = markdown.split("## ")
    spider = next(s for s in sections if s.startswith("spider-dev"))
    scc = next(s for s in sections if s.startswith("sql-create-context-test"))
    assert spider.index("| 1 | gemma7b") < spider.index("| 2 | mistral7b")
    assert scc.index("| 1 | mistral7b") < scc.index("| 2 | gemma7b")
    assert "81.0% [76.0, 86.0]" in scc and "40.5%" in scc and "0.200" in scc and "0.50 / 1.50" in scc
    assert "2 gold queries that do not run are left out" in spider and "local:all-MiniLM-L6-v2" in spider

    board = json.loads((out / "leaderboard.json").read_text())
    assert len(board["rows"]) == 4
    assert board["charts"] == ["execution_accuracy.png", "latency.png", "training_loss.png"]
    for chart in board["charts"]:
        assert (out / chart).read_bytes()[:8] == PNG
    assert (out / "leaderboard.md").read_text() == markdown


def test_report_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no evaluation results"):
        write_report([tmp_path], tmp_path / "out")
    with pytest.raises(ConfigError, match="not a directory"):
        write_report([tmp_path / "missing"], tmp_path / "out")
