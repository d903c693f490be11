"""Training throughput on this CPU: tiny's levers, and a pretrained model's project step against a plain PEFT loop.

    python bench/bench_train_cpu.py [--steps 20] [--threads 2] [--batch 16] [--recipe jobs/train/tiny.yaml]
    python bench/bench_train_cpu.py --model smollm2-135m [--steps 12]     # or gemma3-270m

With ``--model`` (a pretrained registry model, fetched with ``sqlmaster models fetch`` where the hub is unreachable),
its recipe (jobs/train/<model>.yaml) is trained for ``--steps`` optimizer steps by the project's own trainer
(SQLMasterTrainer as ``sqlmaster train`` builds it: LoRA on the recipe's layers, the lean completion-only loss,
length-grouped batches), recording every batch it trains on; then a plain PyTorch + PEFT loop (the same LoRA
config on a fresh copy of the base, ``model(**batch).loss`` over every position, backward, AdamW) trains on the
same batches. The first 2 steps of each are warm-up, not timed. The last line is one JSON object:
``{"model", "project_tokens_per_s", "plain_tokens_per_s", "ratio", "cpu", ...}`` (non-padding tokens per second).

Prints the CPU (model name, the bf16/AVX-512/AMX flags that decide bf16 speed) and, for the recipe's tiny shape on
real length-grouped batches of the shipped data, non-padding tokens per second of a full training step
(forward + backward + AdamW) for:

  fp32 / bf16 autocast                      x   eager / torch.compile
  loss: "full logits"  (the model's own loss over every position, what a plain PyTorch loop does)
        "lean"         (sqlmaster.train.trainer.completion_loss: LM head on completion tokens only; tiny's CPU path)
        "trl fused"    (TRL's fused LM head, which on CPU scores every position and computes entropy and top-1)

bf16 rows are skipped with the reason on CPUs without bf16 instructions (avx512_bf16 or amx_bf16), where emulated
bf16 measured 6-15x slower than fp32; on a Xeon with avx512_bf16 and no AMX, bf16 measured 0.53x fp32. Timings on
a shared machine are noisy: run it twice, on an idle machine. The batching comparison (padded vs packed) that used
to be this script is bench/bench_packing_cpu.py.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch


def _batches(recipe: Any, tok: Any, rows: list[dict[str, str]], batch: int) -> Iterator[dict[str, torch.Tensor]]:
    examples = []
    for row in rows:
        prompt = tok(row["prompt"])["input_ids"]
        ids = tok(row["prompt"] + row["completion"])["input_ids"] + [tok.eos_token_id]
        ids = ids[: recipe.training.max_length]
        examples.append((ids, [-100] * len(prompt) + ids[len(prompt) :]))
    # Length-grouped batches, like training.group_by_length: sorted within mega-batches of 50 batches.
    mega = batch * 50
    order = [
        i
        for s in range(0, len(examples), mega)
        for i in sorted(range(s, min(s + mega, len(examples))), key=lambda i: -len(examples[i][0]))
    ]
    while True:
        for s in range(0, len(order) - batch + 1, batch):
            items = [examples[i] for i in order[s : s + batch]]
            width = max(len(ids) for ids, _ in items)
            ids_t = torch.full((batch, width), tok.pad_token_id)
            labels = torch.full((batch, width), -100)
            mask = torch.zeros((batch, width), dtype=torch.long)
            for r, (ids, lab) in enumerate(items):
                ids_t[r, : len(ids)], labels[r, : len(ids)], mask[r, : len(ids)] = (
                    torch.tensor(ids),
                    torch.tensor(lab),
                    1,
                )
            yield {"input_ids": ids_t, "labels": labels, "attention_mask": mask}


def _loss_fn(kind: str, model: Any) -> Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]:
    from sqlmaster.train.trainer import completion_loss

    if kind == "full logits":
        return lambda m, b: m(**b, use_cache=False).loss
    if kind == "lean":
        return lambda m, b: completion_loss(m, b)[0]
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    return lambda m, b: m(**b, fused_lm_head=True, use_cache=False).loss


def measure(
    build: Callable[[], Any], batches: Iterator[dict], steps: int, bf16: bool, compiled: bool, loss: str
) -> float:
    model = build()
    loss_fn = _loss_fn(loss, model)
    step_model = torch.compile(model) if compiled else model
    if compiled and loss == "lean":  # compile the backbone, which completion_loss calls
        model.model = torch.compile(model.model)
        step_model = model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
    real, elapsed = 0, 0.0
    for i in range(steps + 3):
        batch = next(batches)
        started = time.perf_counter()
        with autocast:
            value = loss_fn(step_model, batch)
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 3:  # warm-up steps (and compilation) not timed
            elapsed += time.perf_counter() - started
            real += int(batch["attention_mask"].sum())
    return real / elapsed


def cpu_description() -> str:
    from sqlmaster.train.arguments import NATIVE_BF16_CPU_FLAGS, cpu_flags

    name = platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        cpuinfo = []
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), name)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or f in NATIVE_BF16_CPU_FLAGS)
    return f"{name}; flags: {' '.join(flags) or 'no AVX-512/AMX'}"


WARMUP = 2  # steps of each arm not timed (allocator and kernel warm-up)


def pretrained_comparison(model: str, steps: int, threads: int) -> dict[str, Any]:
    """The project's training steps and a plain PEFT loop on the same batches; tokens/s of each."""
    import tempfile

    from datasets import Dataset
    from peft import get_peft_model
    from transformers import TrainerCallback

    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.loading import load_base_model, load_tokenizer
    from sqlmaster.models.registry import resolve_model
    from sqlmaster.prompt import get_template
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.arguments import lora_config, sft_config, use_lean_loss
    from sqlmaster.train.trainer import SQLMasterTrainer

    spec = resolve_model(model)
    recipe = resolve_recipe("train", model).recipe
    torch.set_num_threads(recipe.training.num_threads or threads)
    template = get_template(recipe.prompt.template)
    rows = [ex.to_prompt_completion(template) for ex in build_splits(recipe.data).train[:2000]]
    tokenizer = load_tokenizer(spec, for_generation=False)
    base = load_base_model(spec, recipe.model, device="cpu")
    layers = base.config.num_hidden_layers
    pristine = {k: v.clone() for k, v in base.state_dict().items()}

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.started = 0.0
            self.times: list[float] = []

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(time.perf_counter() - self.started)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        args = sft_config(recipe, checkpoints_dir=Path(tmp), run_id="bench", report_to=[], device="cpu")
        args.max_steps, args.eval_strategy, args.save_strategy = steps + WARMUP, "no", "no"
        args.load_best_model_at_end, args.logging_steps = False, 10**6
        trainer = SQLMasterTrainer(
            lean_loss=use_lean_loss(recipe, "cpu"),
            model=base,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(spec, recipe.model, layers),
            callbacks=[timer],
        )
        seen: list[dict[str, torch.Tensor]] = []
        collate = trainer.data_collator

        def recording(features: Any) -> Any:
            batch = collate(features)
            seen.append({k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)})
            return batch

        trainer.data_collator = recording
        trainer.train()
    tokens = [int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in seen]
    project = sum(tokens[WARMUP:]) / sum(timer.times[WARMUP:])
    del trainer, base

    plain_base = load_base_model(spec, recipe.model, device="cpu")
    plain_base.load_state_dict(pristine)
    plain = get_peft_model(plain_base, lora_config(spec, recipe.model, layers))
    optimizer = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad], lr=recipe.training.learning_rate)
    plain.train()
    elapsed = 0.0
    for index, batch in enumerate(seen):
        started = time.perf_counter()
        loss = plain(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= WARMUP:
            elapsed += time.perf_counter() - started
    plain_speed = sum(tokens[WARMUP:]) / elapsed
    return {
        "model": spec.name,
        "project_tokens_per_s": round(project, 1),
        "plain_tokens_per_s": round(plain_speed, 1),
        "ratio": round(project / plain_speed, 3),
        "steps_timed": len(seen) - WARMUP,
        "batch": recipe.training.per_device_train_batch_size,
        "lora_top_layers": recipe.model.lora_top_layers,
        "threads": torch.get_num_threads(),
        "cpu": cpu_description(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's batch size")
    parser.add_argument("--recipe", default="jobs/train/tiny.yaml")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (slow to compile)")
    parser.add_argument("--model", help="a pretrained registry model: project step vs plain PEFT loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        import json

        result = pretrained_comparison(args.model, args.steps, args.threads)
        print(f"CPU: {result['cpu']}")
        print(
            f"{args.model}: project {result['project_tokens_per_s']:,.0f} tokens/s, plain PEFT loop "
            f"{result['plain_tokens_per_s']:,.0f} tokens/s, ratio {result['ratio']:.2f}"
        )
        print(json.dumps(result))
        return

    from sqlmaster.config import load_recipe
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.tiny import architecture_from, build_model, train_tokenizer
    from sqlmaster.prompt import get_template
    from sqlmaster.train.arguments import cpu_flags

    recipe = load_recipe(args.recipe)
    batch = args.batch or recipe.training.per_device_train_batch_size
    template = get_template(recipe.prompt.template)
    rows_data = [ex.to_prompt_completion(template) for ex in build_splits(recipe.data).train[:4000]]
    arch = architecture_from(recipe.model)
    tok = train_tokenizer(
        (r["prompt"] + r["completion"] for r in rows_data), arch.vocab_size, pre_tokenizer=arch.pre_tokenizer
    )
    tok.padding_side = "right"

    def build() -> Any:
        return build_model(tok, arch, seed=0)

    n_params = sum(p.numel() for p in build().parameters())
    print(f"CPU: {cpu_description()}")
    print(
        f"torch {torch.__version__}, {args.threads} threads; tiny {n_params:,} parameters, batch {batch}, "
        f"{args.steps} steps"
    )
    print(f"{'precision':<10} {'mode':<8} {'loss':<12} {'tokens/s':>10}")
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})  # bf16 in hardware (fast or not: that is measured)
    # The loss variants at fp32 eager (the trainer overhead question), then precision x compilation for the
    # lean loss tiny trains with on CPU.
    variants = [(False, False, "full logits"), (False, False, "trl fused"), (False, False, "lean")]
    variants.append((True, False, "lean"))
    if not args.no_compile:
        variants += [(False, True, "lean"), (True, True, "lean")]
    for bf16, compiled, loss in variants:
        label = f"{'bf16' if bf16 else 'fp32':<10} {'compile' if compiled else 'eager':<8} {loss:<12}"
        if bf16 and not native:
            print(f"{label} skipped: no bf16 instructions on this CPU (avx512_bf16/amx_bf16)")
            continue
        try:
            speed = measure(build, _batches(recipe, tok, rows_data, batch), args.steps, bf16, compiled, loss)
        except Exception as exc:  # a backend that cannot compile here is a result, not a crash
            print(f"{label} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
            continue
        print(f"{label} {speed:>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
