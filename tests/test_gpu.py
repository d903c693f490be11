"""GPU checks: the same training and generation paths on CUDA, in bf16, with packing.

Marked ``gpu``: on a machine without CUDA they are reported as skipped with the reason (tests/conftest.py);
run them with ``pytest -m gpu`` where a GPU exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqlmaster.config import load_recipe

pytestmark = pytest.mark.gpu

# A small tiny model, trained the way the 7B recipes train: bf16, padding-free packing.
GPU_RECIPE = [
    "model.mode=full",
    "model.tiny_hidden_size=64",
    "model.tiny_layers=2",
    "model.tiny_heads=2",
    "model.tiny_intermediate_size=128",
    "model.tiny_vocab_size=512",
    "data.max_train_rows=2000",
    "data.test_size=16",
    "data.validation_size=16",
    "prompt.template=compact",
    "training.max_steps=60",
    "training.per_device_train_batch_size=8",
    "training.learning_rate=3e-3",
    "training.warmup_steps=5",
    "training.packing=true",
    "training.eval_steps=30",
    "training.save_steps=30",
    "training.early_stopping_patience=null",
    "tracking.wandb_mode=disabled",
]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlmaster.train.runner import run_training

    run_dir = tmp_path_factory.mktemp("gpu") / "tiny"
    run_training("tiny", run_dir, load_recipe(None, GPU_RECIPE))
    return run_dir


def test_training_runs_on_cuda_in_bf16_with_packing(gpu_run: Path) -> None:
    info = json.loads((gpu_run / "run.json").read_text())
    metrics = json.loads((gpu_run / "metrics.json").read_text())
    assert str(info["device"]).startswith("cuda")
    assert info["recipe"]["training"]["packing"] is True
    assert metrics["train_loss"] < metrics["train_loss_first"]


def test_batched_generation_on_cuda_matches_one_at_a_time(gpu_run: Path) -> None:
    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.models.loading import load_trained
    from sqlmaster.prompt import get_template

    model, tokenizer, _ = load_trained(gpu_run, device="cuda")
    model = model.float()  # fp32, so the comparison tests batching and padding, not bf16 rounding
    template = get_template("compact")
    prompts = [
        "CREATE TABLE t (a INT)\n-- How many rows?\n",
        "CREATE TABLE table_name_12 (themed_area VARCHAR, name VARCHAR)\n-- Which themed area has a name of x?\n",
        "CREATE TABLE s (b VARCHAR)\n-- List b.\n",
    ]
    generator = HFGenerator(model, tokenizer, template, GenerationSettings(max_new_tokens=24, batch_size=3))
    batched = [r.raw_output for r in generator.generate(prompts)]
    single = HFGenerator(model, tokenizer, template, GenerationSettings(max_new_tokens=24, batch_size=1))
    assert batched == [r.raw_output for r in single.generate(prompts)]
