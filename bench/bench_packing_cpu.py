"""Training throughput of `tiny` on this CPU for three ways of batching the same examples.

    OMP_NUM_THREADS=2 python bench/bench_packing_cpu.py [--steps 20] [--threads 2] [--batch 16] [--max-length 256]

(a) padded:  a batch of examples padded to its longest (a dense attention mask); also with length grouping.
(b) original packing: BOS+example+EOS concatenated and cut into max_length chunks (TRL 0.7's
    ConstantLengthDataset): no padding, but examples attend to each other and get cut mid-example.
(c) ours:    TRL's best-fit-decreasing packing in padding-free form: one flat sequence per pack, position ids
    restarting at 0 for each example, no attention mask, so each example sees only itself.

For each it prints non-padding tokens per second (forward + backward + AdamW step; the figure the training
logs call tokens/s) and the useful-token fraction (non-padding tokens / tokens computed). Every variant gets
about the same number of real tokens per step. Timings on a shared machine are noisy: run it twice.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from typing import Any

import torch


def _rows(n: int, template: str) -> list[dict[str, str]]:
    from sqlmaster.config import DataConfig
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.prompt import get_template

    tpl = get_template(template)
    return [ex.to_prompt_completion(tpl) for ex in build_splits(DataConfig()).train[:n]]


def _tokenize(rows: list[dict[str, str]], tok: Any) -> list[dict[str, list[int]]]:
    out = []
    for row in rows:
        prompt = tok(row["prompt"])["input_ids"]
        ids = tok(row["prompt"] + row["completion"] + tok.eos_token)["input_ids"]
        out.append({"input_ids": ids, "labels": [-100] * len(prompt) + ids[len(prompt) :]})
    return out


def padded_batches(examples: list[dict[str, list[int]]], batch: int, pad_id: int, grouped: bool) -> Iterator[dict]:
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    if grouped:  # sort within mega-batches of 50 batches, as the HF length-grouped sampler does
        mega = batch * 50
        order = [
            i
            for s in range(0, len(order), mega)
            for i in sorted(order[s : s + mega], key=lambda i: -len(examples[i]["input_ids"]))
        ]
    for s in range(0, len(order) - batch + 1, batch):
        items = [examples[i] for i in order[s : s + batch]]
        width = max(len(x["input_ids"]) for x in items)
        ids = torch.full((batch, width), pad_id)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for r, x in enumerate(items):
            n = len(x["input_ids"])
            ids[r, :n], labels[r, :n], mask[r, :n] = torch.tensor(x["input_ids"]), torch.tensor(x["labels"]), 1
        yield {"input_ids": ids, "labels": labels, "attention_mask": mask}


def original_packing(examples: list[dict[str, list[int]]], rows_per_step: int, max_length: int) -> Iterator[dict]:
    stream: list[int] = []
    for x in examples:
        stream += x["input_ids"]  # already BOS ... EOS; the original trained on every token
    chunks = [stream[s : s + max_length] for s in range(0, len(stream) - max_length + 1, max_length)]
    for s in range(0, len(chunks) - rows_per_step + 1, rows_per_step):
        ids = torch.tensor(chunks[s : s + rows_per_step])
        yield {"input_ids": ids, "labels": ids.clone()}


def ours(examples: list[dict[str, list[int]]], rows_per_step: int, max_length: int, pad_id: int) -> Iterator[dict]:
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    packed = pack_dataset(Dataset.from_list(examples), max_length, "bfd")
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)
    for s in range(0, len(packed) - rows_per_step + 1, rows_per_step):
        batch = collate([packed[i] for i in range(s, s + rows_per_step)])
        yield {k: batch[k] for k in ("input_ids", "labels", "position_ids")}


def measure(name: str, model: Any, batches: Iterator[dict], steps: int, pad_id: int) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    real = computed = 0
    elapsed = 0.0
    for i, batch in enumerate(batches):
        if i >= steps + 2:
            break
        started = time.perf_counter()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # two warm-up steps
            elapsed += time.perf_counter() - started
            mask = batch.get("attention_mask")
            real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
            computed += batch["input_ids"].numel()
    print(f"{name:<34} {real / elapsed:>10,.0f} {real / computed:>9.1%} {real / max(steps, 1):>12,.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="examples per padded batch")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--template", default="compact")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sqlmaster.config import ModelConfig
    from sqlmaster.models.tiny import architecture_from, build_tiny

    rows = _rows(3000, args.template)
    model, tok = build_tiny((r["prompt"] + r["completion"] for r in rows), architecture_from(ModelConfig()))
    examples = _tokenize(rows, tok)
    mean_len = sum(len(x["input_ids"]) for x in examples) / len(examples)
    # Rows per packed step so that a step holds about as many real tokens as a padded batch.
    rows_per_step = max(1, round(args.batch * mean_len / args.max_length))
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"tiny: {n_params:,} parameters, {args.threads} threads, {mean_len:.0f} tokens/example, "
        f"batch {args.batch} examples vs {rows_per_step} x {args.max_length}-token packs, {args.steps} steps"
    )
    print(f"{'variant':<34} {'tokens/s':>10} {'useful':>9} {'tokens/step':>12}")
    pad = tok.pad_token_id
    measure("(a) padded, random order", model, padded_batches(examples, args.batch, pad, False), args.steps, pad)
    measure("(a') padded, length-grouped", model, padded_batches(examples, args.batch, pad, True), args.steps, pad)
    measure(
        "(b) original packing (leaky)",
        model,
        original_packing(examples, rows_per_step, args.max_length),
        args.steps,
        pad,
    )
    measure(
        "(c) ours: position-id packing", model, ours(examples, rows_per_step, args.max_length, pad), args.steps, pad
    )


if __name__ == "__main__":
    main()
