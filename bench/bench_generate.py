"""Generation throughput: batched against one example at a time (CPU, `tiny`), and HF against vLLM (GPU, 7B).

    OMP_NUM_THREADS=2 python bench/bench_generate.py                       # tiny on CPU, ~1 minute
    OMP_NUM_THREADS=2 python bench/bench_generate.py --n 64 --batch-size 32
    python bench/bench_generate.py --gpu --model mistral7b --n 256          # GPU only: HF vs vLLM, random weights

CPU mode builds the `tiny` Llama (default architecture) with a BPE tokenizer trained on the shipped data and
random weights, so every prompt runs to ``max_new_tokens`` (a random model never says EOS): the comparison is
of equal work. Prompts are real sql-create-context test prompts in the ``original`` template.

GPU mode writes a random-weight checkpoint shaped like the named 7B model (its shipped config.json values;
the vocabulary is the tiny tokenizer's, so no hub download is needed) and times HF batched generation against
vLLM on the same prompts. It needs a CUDA GPU, ~30 GB of disk and vllm installed (the eval image).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def prompts_and_tokenizer(n: int) -> tuple[list[str], Any]:
    from sqlmaster.config import DataConfig
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.models.tiny import train_tokenizer
    from sqlmaster.prompt import get_template, render_completion, render_prompt

    template = get_template("original")
    splits = build_splits(DataConfig())
    texts = [
        render_prompt(template, ex.question, ex.context) + render_completion(template, ex.answer)
        for ex in splits.train[:2000]
    ]
    tokenizer = train_tokenizer(texts)
    prompts = [render_prompt(template, ex.question, ex.context) for ex in splits.test[:n]]
    return prompts, tokenizer


def time_generator(generator: Any, prompts: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    records = generator.generate(prompts)
    wall = time.perf_counter() - start
    tokens = sum(r.generated_tokens for r in records)
    return {
        "examples_per_s": len(prompts) / wall,
        "tokens_per_s": tokens / wall,
        "latency_p50_s": sorted(r.latency_s for r in records)[len(records) // 2],
        "wall_s": wall,
        "tokens": tokens,
    }


def cpu_benchmark(n: int, batch_size: int, max_new_tokens: int) -> list[tuple[str, dict[str, float]]]:
    import torch

    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.models.tiny import build_model
    from sqlmaster.prompt import get_template

    prompts, tokenizer = prompts_and_tokenizer(n)
    model = build_model(tokenizer).eval()
    template = get_template("original")
    print(
        f"tiny: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {torch.get_num_threads()} threads"
    )
    results = []
    for label, size in (("one at a time", 1), (f"batched ({batch_size})", batch_size)):
        settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=size)
        generator = HFGenerator(model, tokenizer, template, settings)
        generator.generate(prompts[:2])  # warm-up
        results.append((label, time_generator(generator, prompts)))
    return results


def gpu_benchmark(model_name: str, n: int, batch_size: int, max_new_tokens: int) -> list[tuple[str, dict[str, float]]]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.evaluate.generate_vllm import VLLMGenerator, VLLMTarget
    from sqlmaster.models.registry import resolve_model
    from sqlmaster.prompt import get_template

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA GPU")
    prompts, tokenizer = prompts_and_tokenizer(n)
    spec = resolve_model(model_name)
    values = {k: v for k, v in spec.config().items() if not k.startswith("_")}
    values.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    template = get_template("original")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = AutoConfig.for_model(values.pop("model_type"), **values)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tokenizer.padding_side = "left"
        hf = HFGenerator(model, tokenizer, template, settings)
        hf.generate(prompts[:2])
        results.append((f"HF batched ({batch_size})", time_generator(hf, prompts)))
        del model, hf
        torch.cuda.empty_cache()
        vllm = VLLMGenerator(VLLMTarget(model=tmp, dtype="bfloat16"), template, settings)
        vllm.generate(prompts[:2])
        results.append(("vLLM", time_generator(vllm, prompts)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="prompts to generate for")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gpu", action="store_true", help="HF against vLLM with a random 7B-shaped model")
    parser.add_argument("--model", default="mistral7b", help="registry name whose shape --gpu uses")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    if args.gpu:
        results = gpu_benchmark(args.model, args.n, args.batch_size, args.max_new_tokens)
    else:
        results = cpu_benchmark(args.n, args.batch_size, args.max_new_tokens)
    print(f"\n{args.n} prompts, max_new_tokens={args.max_new_tokens}")
    print(f"{'mode':<22}{'examples/s':>12}{'tokens/s':>12}{'p50 s/example':>15}{'wall s':>9}")
    for label, r in results:
        print(
            f"{label:<22}{r['examples_per_s']:>12.2f}{r['tokens_per_s']:>12.1f}"
            f"{r['latency_p50_s']:>15.3f}{r['wall_s']:>9.1f}"
        )
    base = results[0][1]["tokens_per_s"]
    for label, r in results[1:]:
        print(f"{label} vs {results[0][0]}: {r['tokens_per_s'] / base:.1f}x tokens/s")
    if args.json:
        args.json.write_text(json.dumps(dict(results), indent=2))


if __name__ == "__main__":
    main()
