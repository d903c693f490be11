"""LoRA training throughput of one recipe arm on a random-weight model: the training half of scripts/gpu-suite.sh.

    python bench/bench_train_gpu.py --arm original  --model mistral7b --json a.json
    python bench/bench_train_gpu.py --arm sqlmaster --model mistral7b --json b.json [--set section.key=value]...

Both arms build the same model from the same recipe file (``jobs/train/<model>.yaml`` unless ``--recipe``) with
``model.init=random`` (sqlmaster/models/random_init.py: shipped config values, random bf16 weights made on the GPU,
a BPE tokenizer with the model's vocabulary size trained on the same training rows), so they differ only in
how they train:

* ``original``: the 7B-SQLMaster recipe as it ran (docs/original-recipe.md): every example
  rendered whole, BOS + tokens + EOS concatenated and cut into ``max_length`` chunks (TRL 0.7's
  ConstantLengthDataset: examples attend to each other, loss on every token), batch 8 x 4, max length 1024, LoRA
  r16 on all projections, gradient checkpointing, flash-attention 2 if importable else SDPA's causal kernel,
  the plain transformers Trainer (which TRL 0.7's SFTTrainer was).
* ``sqlmaster``: ``sqlmaster train`` itself (sqlmaster.cli, in this process) with the recipe and ``--set``
  overrides: prompt-completion rows, loss on the SQL only, padding-free packing with isolated examples.

Every token the original trains on is a real token (its chunks have no padding); SQLMaster's packed batches
have no padding either, so "non-padding tokens/s" is all tokens/s for both. Only steps after ``--warmup``
are timed (the first steps pay allocation, autotuning and compilation).

MFU convention: model FLOPs per token = 6·N, N = every parameter of the base model except the input
embedding (frozen weights included, LM head included; attention score FLOPs left out: ≤2% here), the
PaLM-style model FLOPs, which do not count gradient-checkpointing recomputation. MFU = tokens/s · 6N ÷ the
GPU's dense bf16 peak (datasheet, ``PEAK_BF16_TFLOPS``; also given against the matmul rate measured in the
same run when the suite passes ``--measured-tflops``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(device_name: str | None) -> float | None:
    if not device_name:
        return None
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> tuple[float, str]:
    """GiB: the CUDA caching allocator's peak where there is a GPU, else the process's peak resident memory."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30, "cuda_max_allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "host_max_rss"


def matmul_parameters(model: Any) -> tuple[int, int, int]:
    """(all parameters, trainable parameters, parameters that do matmuls: all but the input embedding)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    frozen_base = [(n, p) for n, p in base.named_parameters() if "lora_" not in n]  # the adapter is not the model
    total = sum(p.numel() for _, p in frozen_base)
    trainable = sum(p.numel() for p in base.parameters() if p.requires_grad)
    embedding = base.get_input_embeddings().weight.numel()
    tied = getattr(base.config, "tie_word_embeddings", False)
    # A tied LM head shares the embedding matrix but still multiplies by it: count it once as a matmul.
    return total, trainable, total - embedding + (embedding if tied else 0)


def summarise(
    *,
    step_times: list[float],
    step_tokens: list[int],
    losses: list[float],
    n_matmul: int,
    measured_tflops: float | None,
) -> dict[str, Any]:
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    seconds, tokens = sum(step_times), sum(step_tokens)
    tps = tokens / seconds if seconds > 0 else None
    model_flops = 6 * n_matmul * tps if tps else None
    peak = peak_tflops(name)
    memory, memory_kind = peak_memory()
    return {
        "status": "ok",
        "error": None,
        "tokens_per_s": tps,
        "non_padding_tokens": tokens,
        "timed_steps": len(step_times),
        "step_s_median": statistics.median(step_times) if step_times else None,
        "model_tflops_per_s": model_flops / 1e12 if model_flops else None,
        "mfu": model_flops / (peak * 1e12) if (model_flops and peak) else None,
        "mfu_vs_measured_matmul": model_flops / (measured_tflops * 1e12) if (model_flops and measured_tflops) else None,
        "peak_memory_gib": memory,
        "peak_memory_kind": memory_kind,
        "first_loss": losses[0] if losses else None,
        "losses": losses,
    }


# --- arm (a): the original recipe ------------------------------------------------------------------------


def constant_length_chunks(
    token_lists: list[list[int]], bos: int, eos: int, length: int, count: int
) -> list[list[int]]:
    """TRL 0.7's ConstantLengthDataset: BOS + example + EOS concatenated, cut into ``length`` chunks (cycling)."""
    stream: list[int] = []
    chunks: list[list[int]] = []
    index = 0
    while len(chunks) < count:
        stream.extend([bos, *token_lists[index % len(token_lists)], eos])
        index += 1
        while len(stream) >= length and len(chunks) < count:
            chunks.append(stream[:length])
            stream = stream[length:]
    return chunks


def original_arm(args: argparse.Namespace, recipe: Any, overrides: list[str]) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.attention import choose_attention
    from sqlmaster.models.random_init import build_random
    from sqlmaster.models.registry import resolve_model
    from sqlmaster.prompt import get_template

    dev = device()
    spec = resolve_model(args.model)
    template = get_template(recipe.prompt.template)
    splits = build_splits(recipe.data)
    rows = [ex.to_prompt_completion(template) for ex in splits.train]
    texts = [row["prompt"] + row["completion"] for row in rows]  # the tokenizer (b) trains on: the same one
    base, tokenizer = build_random(spec, recipe.model, texts, device=dev, seed=recipe.training.seed, packing=False)
    attention = choose_attention("auto", dev, packing=False)
    total, _, n_matmul = matmul_parameters(base)
    model = get_peft_model(
        base,
        LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            target_modules=list(spec.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    micro, accum, length = args.original_batch, args.original_accum, args.original_max_length
    steps = args.warmup + args.steps
    encoded = tokenizer([row["prompt"] + row["completion"] for row in rows], add_special_tokens=False)["input_ids"]
    chunks = constant_length_chunks(
        encoded, tokenizer.bos_token_id, tokenizer.eos_token_id, length, steps * micro * accum
    )

    class Chunks(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(chunks)

        def __getitem__(self, i: int) -> dict[str, Any]:
            ids = torch.tensor(chunks[i])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    ends: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *a: Any, **k: Any) -> None:
            synchronize()
            ends.append(time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs = kwargs.get("logs") or {}
            if "loss" in logs:
                losses.append(float(logs["loss"]))

    on_cuda = dev.startswith("cuda")
    training_args = TrainingArguments(
        output_dir=str(Path(args.workdir) / "original"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        max_steps=steps,
        learning_rate=3e-4,
        lr_scheduler_type="cosine",
        warmup_steps=100,
        max_grad_norm=0.3,
        optim="adamw_torch",
        weight_decay=0.0,
        seed=recipe.training.seed,
        bf16=on_cuda,
        use_cpu=not on_cuda,
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=Chunks(), callbacks=[Clock()])
    reset_peak_memory()
    synchronize()
    started = time.perf_counter()
    trainer.train()
    times = [b - a for a, b in zip([started, *ends[:-1]], ends, strict=True)]
    result = summarise(
        step_times=times[args.warmup :],
        step_tokens=[micro * accum * length] * len(times[args.warmup :]),
        losses=losses,
        n_matmul=n_matmul,
        measured_tflops=args.measured_tflops,
    )
    result.update(
        arm="original",
        attention=attention,
        gradient_checkpointing=True,
        micro_batch=micro,
        grad_accum=accum,
        max_length=length,
        liger_kernel=False,
        loss_on="every token",
        examples_attend_to_each_other=True,
        params_total=total,
        params_trainable=trainable,
        tokens_per_example=sum(len(e) + 2 for e in encoded) / len(encoded),
        warmup_steps=args.warmup,
        overrides=overrides,
    )
    return result


# --- arm (b): `sqlmaster train` ---------------------------------------------------------------------------


def sqlmaster_arm(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Run ``sqlmaster train`` in this process (the CLI users run) and time its training logs."""
    from sqlmaster import cli
    from sqlmaster.train.trainer import SQLMasterTrainer

    stamps: list[tuple[float, dict[str, float]]] = []
    captured: dict[str, Any] = {}
    original_log = SQLMasterTrainer.log
    original_init = SQLMasterTrainer.__init__

    # Observation only: record when each training log happens and what the trainer was built with.
    def log(self: Any, logs: dict[str, float], start_time: float | None = None) -> None:
        original_log(self, logs, start_time)
        if "loss" in logs:
            synchronize()
            stamps.append((time.perf_counter(), dict(logs)))

    def init(self: Any, *a: Any, **k: Any) -> None:
        original_init(self, *a, **k)
        captured["trainer"] = self
        reset_peak_memory()

    run_dir = Path(args.workdir) / "sqlmaster"
    argv = ["sqlmaster", "train", "--model", args.model, "--output-dir", str(run_dir), "--recipe", str(args.recipe)]
    for item in overrides:
        argv += ["--set", item]
    SQLMasterTrainer.log = log  # type: ignore[method-assign]
    SQLMasterTrainer.__init__ = init  # type: ignore[method-assign]
    sys.argv = argv
    try:
        cli.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"sqlmaster train exited with {exc.code}") from None
    finally:
        SQLMasterTrainer.log = original_log  # type: ignore[method-assign]
        SQLMasterTrainer.__init__ = original_init  # type: ignore[method-assign]

    trainer = captured["trainer"]
    total, _, n_matmul = matmul_parameters(trainer.model)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    # One training log per step (logging_steps=1): stamps[k] ends step k+1, so times[k] is step k+2's duration.
    times = [t1 - t0 for (t0, _), (t1, _) in itertools.pairwise(stamps)]
    tokens = [int(l1["tokens_seen"] - l0["tokens_seen"]) for (_, l0), (_, l1) in itertools.pairwise(stamps)]
    skip = max(args.warmup - 1, 0)  # keep steps warmup+1 onwards
    result = summarise(
        step_times=times[skip:],
        step_tokens=tokens[skip:],
        losses=[float(s[1]["loss"]) for s in stamps],
        n_matmul=n_matmul,
        measured_tflops=args.measured_tflops,
    )
    recipe = json.loads((run_dir / "run.json").read_text())["recipe"]
    config = trainer.model.get_base_model().config if hasattr(trainer.model, "get_base_model") else trainer.model.config
    result.update(
        arm="sqlmaster",
        attention=getattr(config, "_attn_implementation", None),
        gradient_checkpointing=recipe["model"]["gradient_checkpointing"],
        micro_batch=recipe["training"]["per_device_train_batch_size"],
        grad_accum=recipe["training"]["gradient_accumulation_steps"],
        max_length=recipe["training"]["max_length"],
        liger_kernel=recipe["training"].get("liger_kernel", False),
        loss_on="completion (SQL) only",
        examples_attend_to_each_other=False,
        params_total=total,
        params_trainable=trainable,
        tokens_per_example=None,
        warmup_steps=args.warmup,
        overrides=overrides,
    )
    return result


def benchmark_overrides(steps: int, extra: list[str]) -> list[str]:
    """Short, benchmark-only settings on top of the recipe (both arms): random weights, the shipped data, no
    evaluation or checkpoint inside the timed steps, a log line per step; then the caller's ``--set`` values."""
    return [
        "model.init=random",
        "data.source=shipped",
        "data.validation_size=16",
        "data.test_size=16",
        f"training.max_steps={steps}",
        "training.logging_steps=1",
        f"training.eval_steps={steps * 10}",
        f"training.save_steps={steps * 10}",
        "training.early_stopping_patience=null",
        "tracking.wandb_mode=disabled",
        *extra,
    ]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", choices=["original", "sqlmaster"], required=True)
    parser.add_argument("--model", required=True, help="registry name or a local directory with a config.json")
    parser.add_argument("--recipe", type=Path, help="recipe file (default jobs/train/<model>.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override (both arms)")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    parser.add_argument("--original-batch", type=int, default=8)
    parser.add_argument("--original-accum", type=int, default=4)
    parser.add_argument("--original-max-length", type=int, default=1024)
    parser.add_argument("--measured-tflops", type=float, default=None, help="bf16 matmul rate measured on this GPU")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True, help="write the arm's figures here")
    return parser


def main() -> None:
    args = make_parser().parse_args()
    if args.recipe is None:
        args.recipe = REPO / "jobs" / "train" / f"{Path(args.model).name}.yaml"
    os.environ.setdefault("WANDB_MODE", "disabled")

    from sqlmaster.config import load_recipe

    overrides = benchmark_overrides(args.warmup + args.steps, args.overrides)
    started = time.perf_counter()
    if args.arm == "original":
        result = original_arm(args, load_recipe(args.recipe, overrides), overrides)
    else:
        result = sqlmaster_arm(args, overrides)
    result["wall_s"] = time.perf_counter() - started
    result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "losses"}), flush=True)


if __name__ == "__main__":
    main()
