"""GPU ONLY — LoRA training throughput of 7B-shaped models with random weights (no download).

    python bench/bench_train_gpu.py [--models mistral7b llama2-7b gemma7b] [--steps 10] [--tokens 8192]
                                    [--packing both|packed|padded] [--peak-tflops 989]

Needs a CUDA GPU with bf16 (A100/H100) and about 40 GB (Gemma needs the most: 8.5B parameters and a 256k
vocabulary). Exits with a message on a machine without CUDA. The models are built from the shipped
config.json values (sqlmaster/models/configs) with random bf16 weights, then trained as the recipe trains:
LoRA r=16 on q,k,v,o,gate,up,down; gradient checkpointing; flash-attention 2 when installed, else sdpa;
batches of real-length examples (lengths drawn from the shipped data's token-length distribution for this
vocabulary size is not available offline, so lengths are drawn uniformly in [60, 240], mean ~150 tokens like
the original's ~147 tokens per formatted example).

For each model and batching mode it prints tokens/s per GPU (non-padding), peak memory and model FLOPs
utilisation (MFU).

FLOPs convention (stated, since LoRA makes it ambiguous): model FLOPs per token = 6·N + 12·L·d·c, with N = all
parameters of the model (frozen base included, embeddings excluded as in Kaplan et al.), L layers, d the attention
width (heads × head_dim), and c the mean causal context per token (half the example length: each example attends
only to itself). 6·N is the usual forward (2N) + backward (4N) count of full training. With LoRA the frozen base
skips its weight gradients (−2N) but gradient checkpointing recomputes the forward (+2N); the two cancel, so 6·N
is also close to the hardware FLOPs actually executed. MFU = model FLOPs/s ÷ the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from typing import Any

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build(model_name: str, attn: str) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from sqlmaster.models.registry import MODELS

    spec = MODELS[model_name]
    values = {k: v for k, v in spec.config().items() if not k.startswith("_") and k != "architectures"}
    config = CONFIG_MAPPING[values.pop("model_type")](**values)
    config._attn_implementation = attn
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(spec.target_modules), task_type="CAUSAL_LM"
    )
    return get_peft_model(model, lora), config


def batches(vocab: int, tokens: int, packed: bool, seed: int = 0) -> Any:
    """Endless batches of about ``tokens`` real tokens: one flat packed row, or a padded batch."""
    import torch

    rng = random.Random(seed)
    while True:
        lengths, total = [], 0
        while total < tokens:
            n = rng.randint(60, 240)
            lengths.append(n)
            total += n
        if packed:
            ids = torch.randint(3, vocab, (1, sum(lengths)), device="cuda")
            pos = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0).cuda()
            labels = ids.clone()
            labels[pos == 0] = -100
            yield {"input_ids": ids, "position_ids": pos, "labels": labels}, lengths, ids.numel()
        else:
            width = max(lengths)
            ids = torch.zeros((len(lengths), width), dtype=torch.long, device="cuda")
            mask = torch.zeros_like(ids)
            for r, n in enumerate(lengths):
                ids[r, :n] = torch.randint(3, vocab, (n,))
                mask[r, :n] = 1
            labels = ids.masked_fill(mask == 0, -100)
            yield {"input_ids": ids, "attention_mask": mask, "labels": labels}, lengths, ids.numel()


def run(model_name: str, mode: str, steps: int, tokens: int, attn: str, peak: float | None) -> None:
    import torch

    model, config = build(model_name, attn)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-4)
    n_all = sum(p.numel() for p in model.parameters())
    n_embed = config.vocab_size * config.hidden_size * (1 if config.tie_word_embeddings else 2)
    n_body = n_all - sum(p.numel() for p in params) - n_embed
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attn_width = config.num_attention_heads * head_dim
    torch.cuda.reset_peak_memory_stats()
    real = computed = 0
    flops = 0.0
    elapsed = 0.0
    gen = batches(config.vocab_size, tokens, packed=(mode == "packed"))
    for i in range(steps + 2):
        batch, lengths, numel = next(gen)
        torch.cuda.synchronize()
        started = time.perf_counter()
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 2:
            elapsed += time.perf_counter() - started
            n_real = sum(lengths)
            real += n_real
            computed += numel
            mean_ctx = sum(n * n for n in lengths) / (2 * n_real)
            flops += (6 * n_body + 12 * config.num_hidden_layers * attn_width * mean_ctx) * n_real
    peak_gb = torch.cuda.max_memory_allocated() / 2**30
    tps = real / elapsed
    mfu = f"{flops / elapsed / (peak * 1e12):.1%}" if peak else "n/a (pass --peak-tflops)"
    print(
        f"{model_name:<10} {mode:<7} {attn:<18} {tps:>10,.0f} {real / computed:>7.1%} {peak_gb:>8.1f} {mfu:>8}",
        flush=True,
    )
    del model, opt
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description="GPU-only LoRA training throughput of 7B-shaped models")
    parser.add_argument("--models", nargs="+", default=["mistral7b", "llama2-7b", "gemma7b"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=8192, help="real tokens per step (the original: 8 x 1024)")
    parser.add_argument("--packing", choices=["both", "packed", "padded"], default="both")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("bench_train_gpu.py needs a CUDA GPU (this machine has none); see bench_train_cpu.py for CPU figures")
    attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name, args.peak_tflops)
    print(f"{name}, peak bf16 {peak} TFLOPS, {args.tokens} real tokens/step, {args.steps} timed steps, LoRA r=16")
    print(f"{'model':<10} {'batch':<7} {'attention':<18} {'tokens/s':>10} {'useful':>7} {'peak GB':>8} {'MFU':>8}")
    modes = ["packed", "padded"] if args.packing == "both" else [args.packing]
    for model_name in args.models:
        for mode in modes:
            run(model_name, mode, args.steps, args.tokens, attn, peak)


if __name__ == "__main__":
    main()
