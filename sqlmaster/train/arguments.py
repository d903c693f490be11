"""From a recipe to TRL's SFTConfig and PEFT's LoraConfig (the only place recipe fields meet library names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmaster.config import ModelConfig, Recipe
from sqlmaster.models.registry import ModelSpec
from sqlmaster.train import distributed
from sqlmaster.train.budget import UNBOUNDED_STEPS

# CPU features that make bf16 autocast pay off. Measured for tiny (bench/bench_train_cpu.py, batch 32, 2 threads):
# on a Xeon with avx512_bf16 but no AMX, bf16 autocast ran at 0.53x the fp32 tokens/s (9.1k vs 17.1k), and on an
# AMD EPYC without AVX-512 emulated bf16 was 6-15x slower. AMX tiles (amx_bf16) are the native bf16 matrix engine.
NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags (Linux /proc/cpuinfo); empty where unknown (macOS, Windows)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_CPU_FLAGS)


def use_bf16(recipe: Recipe, device: str) -> bool:
    """bf16 autocast: the recipe's choice, else on where the GPU or CPU computes bf16 natively."""
    if recipe.training.bf16 is not None:
        return recipe.training.bf16
    if not device.startswith("cuda"):
        return cpu_has_native_bf16()
    import torch

    return torch.cuda.is_bf16_supported()


def sft_config(recipe: Recipe, *, checkpoints_dir: Path, run_id: str, report_to: list[str], device: str) -> Any:
    """TRL SFTConfig for the recipe.

    Packing is TRL's best-fit-decreasing packing in padding-free form: the examples of a pack are one flat
    sequence whose position ids restart at 0 for each example and no attention mask is passed. With
    ``use_cache=False`` (set by SFTTrainer.compute_loss) transformers then derives a block-diagonal mask from
    the position ids (``masking_utils.find_packed_sequence_indices``; flash-attention uses ``cu_seq_lens``),
    so no example attends to another. ``tests/test_train_packing.py`` proves it on per-example losses.
    """
    from trl import SFTConfig

    t = recipe.training
    on_cpu = not device.startswith("cuda")
    check_levers(recipe, device)
    return SFTConfig(
        **_shared_arguments(recipe, checkpoints_dir=checkpoints_dir, run_id=run_id, report_to=report_to, device=device),
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.per_device_train_batch_size,
        prediction_loss_only=True,  # evaluation reports the loss; else the Trainer keeps all rows' logits (GBs)
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        ddp_backend="gloo" if (on_cpu and distributed.world_size() > 1) else None,
        ddp_find_unused_parameters=False,
        **_evaluation_and_checkpoints(recipe),
        # data: prompt-completion rows, loss on the completion only
        max_length=t.max_length,
        packing=t.packing,
        packing_strategy="bfd",
        padding_free=t.packing,
        pad_to_multiple_of=None,
        completion_only_loss=t.completion_only_loss,
        train_sampling_strategy="group_by_length" if (t.group_by_length and not t.packing) else "random",
        # speed levers (docs/gpu.md)
        use_liger_kernel=t.liger_kernel,
        torch_compile=t.torch_compile,
    )


def _shared_arguments(
    recipe: Recipe, *, checkpoints_dir: Path, run_id: str, report_to: list[str], device: str
) -> dict[str, Any]:
    """The TrainingArguments both stages (SFTConfig, GRPOConfig) take from the recipe alike: where, the optimiser
    and its schedule (the original recipe's names), precision, seeds, logging."""
    t = recipe.training
    return {
        "output_dir": str(checkpoints_dir),
        "run_name": run_id,
        "report_to": report_to or "none",
        "max_steps": UNBOUNDED_STEPS if t.time_budget_minutes is not None else t.max_steps,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_steps": t.warmup_steps,
        "max_grad_norm": t.max_grad_norm,
        "weight_decay": t.weight_decay,
        "optim": "adamw_torch",
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": use_bf16(recipe, device),
        "fp16": False,
        "use_cpu": not device.startswith("cuda"),
        # transformers 5 name of gradient checkpointing (the old name still mirrors it for TRL's checks)
        "activation_checkpointing": recipe.model.gradient_checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if recipe.model.gradient_checkpointing else None,
        "logging_strategy": "steps",
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "save_only_model": False,
    }


def _evaluation_and_checkpoints(recipe: Recipe) -> dict[str, Any]:
    """SFTConfig's evaluation, checkpoint (resume) and early-stopping arguments."""
    t = recipe.training
    load_best = t.early_stopping_patience is not None
    # With a time budget the schedule, evaluations, checkpoints and the stop come from the budget (budget.py).
    budgeted = t.time_budget_minutes is not None
    return {
        "eval_strategy": "steps",
        "eval_steps": UNBOUNDED_STEPS if budgeted else t.eval_steps,
        "save_strategy": "steps",
        "save_steps": UNBOUNDED_STEPS if budgeted else t.save_steps,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": load_best,
        "metric_for_best_model": "eval_loss" if load_best else None,
        "greater_is_better": False if load_best else None,
    }


def check_levers(recipe: Recipe, device: str) -> None:
    """Speed levers that cannot work here are configuration errors, not a silent slow run."""
    import importlib.util

    from sqlmaster.errors import ConfigError

    if recipe.training.liger_kernel:
        if not device.startswith("cuda"):
            raise ConfigError("training.liger_kernel=true needs a CUDA GPU (Triton kernels). Set it to false here")
        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError(
                "training.liger_kernel=true but the liger-kernel package is not installed. "
                "pip install liger-kernel (see docs/gpu.md), or set training.liger_kernel=false"
            )


def lora_config(spec: ModelSpec, model_cfg: ModelConfig, num_layers: int) -> Any:
    """LoRA on the registry's target modules (all attention and MLP projections, as the original).

    ``model.lora_top_layers`` limits it to the top layers of the ``num_layers`` decoder layers.
    """
    from peft import LoraConfig

    from sqlmaster.errors import ConfigError

    top = model_cfg.lora_top_layers
    if top is not None and top > num_layers:
        raise ConfigError(
            f"model.lora_top_layers={top} but {spec.name} has {num_layers} decoder layers. "
            f"Set it to at most {num_layers}, or null for every layer"
        )
    return LoraConfig(
        r=model_cfg.lora_r,
        lora_alpha=model_cfg.lora_alpha,
        lora_dropout=model_cfg.lora_dropout,
        target_modules=list(model_cfg.target_modules or spec.target_modules),
        modules_to_save=list(model_cfg.modules_to_save) if model_cfg.modules_to_save else None,
        layers_to_transform=list(range(num_layers - top, num_layers)) if top is not None else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def use_lean_loss(recipe: Recipe, device: str) -> bool:
    """The lean completion-only loss (trainer.py) for CPU runs (full or LoRA, DDP too); TRL's path on GPUs."""
    return not device.startswith("cuda")


def grpo_batches(recipe: Recipe, world: int) -> tuple[int, int]:
    """(completions per micro-step, micro-steps per optimizer step) of a GRPO step: ``grpo.prompts_per_step`` x
    ``grpo.num_generations`` completions over ``world`` ranks, micro-steps of at most
    ``training.per_device_train_batch_size`` (the largest divisor of a rank's share that fits)."""
    from sqlmaster.errors import ConfigError

    g = recipe.grpo
    completions = g.prompts_per_step * g.num_generations
    if completions % world:
        raise ConfigError(
            f"grpo.prompts_per_step x grpo.num_generations = {completions} completions per step cannot be shared "
            f"by {world} processes. Make it a multiple of {world}"
        )
    share = completions // world
    micro = max(d for d in range(1, share + 1) if share % d == 0 and d <= recipe.training.per_device_train_batch_size)
    return micro, share // micro


def grpo_config(
    recipe: Recipe, *, checkpoints_dir: Path, run_id: str, report_to: list[str], device: str, use_vllm: bool
) -> Any:
    """TRL GRPOConfig for the recipe: one optimizer step per generation batch of ``grpo.prompts_per_step`` prompts.

    The optimiser, schedule, cadence and time budget are the ``training`` section's, as for SFT; there is no
    evaluation pass (a GRPO evaluation is generation; ``sqlmaster eval run`` measures the result)."""
    from trl import GRPOConfig

    t, g = recipe.training, recipe.grpo
    budgeted = t.time_budget_minutes is not None
    micro, accumulation = grpo_batches(recipe, distributed.world_size())
    return GRPOConfig(
        **_shared_arguments(recipe, checkpoints_dir=checkpoints_dir, run_id=run_id, report_to=report_to, device=device),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,
        num_generations=g.num_generations,
        eval_strategy="no",
        save_strategy="steps",
        save_steps=UNBOUNDED_STEPS if budgeted else t.save_steps,
        save_total_limit=t.save_total_limit,
        beta=g.beta,
        temperature=g.temperature,
        max_completion_length=g.max_completion_length,
        use_vllm=use_vllm,
        # grpo.gold_in_group puts a completion vLLM did not sample in each group: no sampling log-probs to correct by
        vllm_importance_sampling_correction=not g.gold_in_group,
        vllm_mode="colocate",
        remove_unused_columns=False,  # the reward reads the answer and context columns
        log_completions=False,
    )
