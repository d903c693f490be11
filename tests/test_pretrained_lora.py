"""The LoRA path of a pretrained model (SmolLM2, Gemma 3, the 7B recipes) on a model small enough for CI.

A saved micro Llama with its own tokenizer stands in for a pretrained model directory: `sqlmaster train` loads it
as any local path, trains LoRA on its top layer with the lean CPU loss, saves the adapter and the merged model.
Then the three ways a user gets the trained model back — the run (base + unmerged adapter), a fresh base with the
saved adapter, and the merged weights — must give the same greedy SQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

PROMPTS = 12


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro Llama (3 layers) and its BPE tokenizer saved as a Hugging Face directory."""
    from sqlmaster.config import DataConfig, ModelConfig
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.tiny import architecture_from, build_tiny
    from sqlmaster.prompt import get_template

    template = get_template("terse")
    rows = [ex.to_prompt_completion(template) for ex in build_splits(DataConfig(max_train_rows=300)).train]
    arch = architecture_from(
        ModelConfig(tiny_hidden_size=32, tiny_layers=3, tiny_heads=2, tiny_intermediate_size=64, tiny_vocab_size=300)
    )
    model, tokenizer = build_tiny((r["prompt"] + r["completion"] for r in rows), arch, seed=3)
    directory = tmp_path_factory.mktemp("pretrained")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lora_run(pretrained_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.runner import run_training

    run_dir = tmp_path_factory.mktemp("runs") / "lora"
    overrides = [
        "data.source=shipped",
        "data.max_train_rows=200",
        "data.test_size=20",
        "data.validation_size=8",
        "prompt.template=terse",
        "model.mode=lora",
        "model.lora_r=8",
        "model.lora_dropout=0.0",
        "model.lora_top_layers=1",
        "model.gradient_checkpointing=false",
        "training.max_steps=12",
        "training.per_device_train_batch_size=8",
        "training.gradient_accumulation_steps=1",
        "training.learning_rate=2e-2",  # large: 12 steps must move the adapter far enough to change predictions
        "training.warmup_steps=0",
        "training.max_length=256",
        "training.packing=false",
        "training.eval_steps=12",
        "training.save_steps=12",
        "training.early_stopping_patience=null",
        "training.num_threads=1",
        "training.cpu_processes=1",
        "tracking.wandb_mode=disabled",
        "output.merge=true",
    ]
    recipe = resolve_recipe("train", str(pretrained_dir), None, overrides).recipe
    run_training(str(pretrained_dir), run_dir, recipe)
    return run_dir


def _greedy(model: object, tokenizer: object, prompts: list[str]) -> list[str]:
    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.prompt import get_template

    settings = GenerationSettings(max_new_tokens=24, batch_size=5)
    generator = HFGenerator(model, tokenizer, get_template("terse"), settings)
    return [record.raw_output for record in generator.generate(prompts)]


def _held_out_prompts(run_dir: Path) -> list[str]:
    from sqlmaster.config import DataConfig
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.loading import read_run_info
    from sqlmaster.prompt import get_template, render_prompt

    data = DataConfig(**read_run_info(run_dir)["recipe"]["data"])
    template = get_template("terse")
    return [render_prompt(template, ex.question, ex.context) for ex in build_splits(data).test[:PROMPTS]]


def test_adapter_only_on_the_top_layers(lora_run: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(lora_run / "adapter" / "adapter_model.safetensors"), "pt") as handle:
        names = list(handle.keys())
    assert names, "the saved adapter is empty"
    assert all(".layers.2." in name for name in names), names  # 3 layers, lora_top_layers=1: only layer 2


def test_run_reload_fresh_base_and_merged_give_the_same_greedy_sql(lora_run: Path, pretrained_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sqlmaster.models.loading import load_trained

    prompts = _held_out_prompts(lora_run)
    model, tokenizer, _ = load_trained(lora_run, device="cpu")
    trained = _greedy(model, tokenizer, prompts)

    fresh = AutoModelForCausalLM.from_pretrained(pretrained_dir, dtype=torch.float32)
    base_only = _greedy(fresh.eval(), tokenizer, prompts)
    reloaded = PeftModel.from_pretrained(fresh, lora_run / "adapter").eval()
    merged, merged_tokenizer, _ = load_trained(lora_run, device="cpu", merged=True)

    assert _greedy(reloaded, tokenizer, prompts) == trained
    assert _greedy(merged, merged_tokenizer, prompts) == trained
    assert base_only != trained, "the adapter changed no prediction: it may be empty or never applied"


def test_lean_loss_matches_the_models_own_loss_under_lora(pretrained_dir: Path) -> None:
    """The CPU path's loss (LM head on completion positions only) equals the full-logits loss of a PEFT model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sqlmaster.train.trainer import completion_loss

    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    model = AutoModelForCausalLM.from_pretrained(pretrained_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], layers_to_transform=[2]))
    ids = tokenizer(["t: a, b\n-- which a?\nSELECT a FROM t"], return_tensors="pt")["input_ids"]
    labels = ids.clone()
    labels[:, :8] = -100  # the prompt
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    lean, _ = completion_loss(model, batch)
    full = model(**batch, use_cache=False).loss
    assert torch.allclose(lean, full, atol=1e-5)
    lean.backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in name and ".layers.2." in name for name in grads)
