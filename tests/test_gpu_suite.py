"""The GPU suite cannot rot: its CPU rehearsal runs the same code path and writes the GPU run's JSON schema.

``scripts/gpu-suite.sh --cpu OUT`` trains tiny configs of the 7B architectures through both arms (the
original recipe's loop and ``sqlmaster train``), times both generation arms and runs ``pytest -m gpu`` (skipped
here), under the same time guard as on the GPU. This test runs it and checks the JSON (about 1.5 minutes on 2
cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NUMBER = (int, float)


def _number(value: object) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("gpu-suite")
    env = {**os.environ, "GPU_SUITE_WORK": str(out / "work")}
    proc = subprocess.run(
        [str(REPO / "scripts" / "gpu-suite.sh"), "--cpu", str(out / "result")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = out / "result"
    # Three small files, whatever ran: what the device tool can bring back (at most 8, 2 folders deep).
    assert sorted(p.name for p in out.iterdir()) == ["gpu-suite-logs.tar.gz", "gpu-suite.json", "gpu-suite.txt"]
    with tarfile.open(out / "gpu-suite-logs.tar.gz") as tar:
        assert "train-mistral7b-sqlmaster.log" in tar.getnames()
    assert (out / "gpu-suite.txt").read_text().startswith("gpu-suite (cpu)")
    return json.loads((out / "gpu-suite.json").read_text())


def test_top_level_schema(suite: dict) -> None:
    assert suite["schema"] == 1 and suite["mode"] == "cpu"
    for key in ("started", "finished", "wall_s", "budget_s", "machine", "pytest_gpu", "training", "generation"):
        assert key in suite, key
    assert suite["failed"] == [], suite["failed"]
    assert suite["skipped"] == [], suite["skipped"]
    assert suite["wall_s"] <= suite["budget_s"] + 10
    machine = suite["machine"]
    for key in ("python", "torch", "transformers", "trl", "peft", "gpu", "matmul_bf16_tflops", "cpu_flags"):
        assert key in machine, key
    assert machine["gpu"] is None  # a CPU rehearsal says so
    assert suite["pytest_gpu"]["status"] == "skipped" and suite["pytest_gpu"]["exit_code"] == 0


def test_both_training_arms_with_figures_and_the_ratio(suite: dict) -> None:
    assert "6·N" in suite["training"]["mfu_convention"]
    models = suite["training"]["models"]
    assert "mistral7b" in models
    entry = models["mistral7b"]
    original, ours = entry["arms"]["original"], entry["arms"]["sqlmaster"]
    for arm in (original, ours):
        assert arm["status"] == "ok", arm
        for key in ("tokens_per_s", "non_padding_tokens", "step_s_median", "peak_memory_gib", "model_tflops_per_s"):
            assert _number(arm[key]) and arm[key] > 0, (key, arm[key])
        assert arm["timed_steps"] == 2 and arm["warmup_steps"] == 1
        assert "mfu" in arm and arm["mfu"] is None  # no GPU peak to divide by on a CPU
        assert arm["params_trainable"] < arm["params_total"]
    assert original["examples_attend_to_each_other"] is True and original["gradient_checkpointing"] is True
    assert ours["examples_attend_to_each_other"] is False
    assert (original["micro_batch"], original["grad_accum"]) == (ours["micro_batch"], ours["grad_accum"])
    assert original["params_total"] == ours["params_total"]  # the same random model in both arms
    assert entry["ratio_sqlmaster_over_original"] == pytest.approx(ours["tokens_per_s"] / original["tokens_per_s"])


def test_lever_arm_trains_the_same_losses(suite: dict) -> None:
    entry = suite["training"]["models"]["mistral7b"]
    levers = entry["arms"]["sqlmaster_no_gc"]
    assert levers["status"] == "ok" and levers["gradient_checkpointing"] is False
    assert _number(entry["ratio_sqlmaster_no_gc_over_original"])
    # Gradient checkpointing off changes no arithmetic on CPU: the same losses, step by step.
    assert levers["loss_max_rel_diff_vs_sqlmaster"] < 1e-4


def test_both_generation_arms_and_the_ratio(suite: dict) -> None:
    generation = suite["generation"]
    assert generation["status"] == "ok" and generation["model"] == "mistral7b"
    original, ours = generation["arms"]["original"], generation["arms"]["ours"]
    assert original["batch_size"] == 1 and original["do_sample"] is True
    assert ours["batch_size"] == 16 and ours["do_sample"] is False  # jobs/eval/mistral7b.yaml's batch
    for arm in (original, ours):
        assert arm["status"] == "ok" and arm["equal_work"] is True
        for key in ("examples_per_s", "output_tokens_per_s", "wall_s", "peak_memory_gib"):
            assert _number(arm[key]) and arm[key] > 0
    assert generation["ratio_examples_per_s"] == pytest.approx(ours["examples_per_s"] / original["examples_per_s"])
    assert _number(generation["ratio_output_tokens_per_s"])
