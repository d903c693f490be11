"""Generation throughput: batched against one example at a time (CPU, `tiny`), and HF against vLLM (GPU, 7B).

    OMP_NUM_THREADS=2 python bench/bench_generate.py                       # tiny on CPU, ~1 minute
    python bench/bench_generate.py --model smollm2-135m [--run RUN_DIR] --n 128   # the project's generator vs plain
    OMP_NUM_THREADS=2 python bench/bench_generate.py --n 64 --batch-size 32
    python bench/bench_generate.py --gpu --model mistral7b --n 256          # GPU only: HF vs vLLM, random weights
    python bench/bench_generate.py --suite --model mistral7b --json gen.json   # the original's way vs ours (gpu-suite)

CPU mode builds the `tiny` Llama (default architecture) with a BPE tokenizer trained on the shipped data and
random weights, so every prompt runs to ``max_new_tokens`` (a random model never says EOS): the comparison is
of equal work. Prompts are real sql-create-context test prompts in the ``original`` template.

Suite mode (scripts/gpu-suite.sh; CPU or GPU) builds the model with ``model.init=random`` (registry shape, random
weights, the BPE tokenizer trained on the training rows) and times the original project's generation against
ours on real test prompts in the ``original`` template:

* original: the merged model (a plain model: no adapter), ``model.generate`` one example at a time, sampling
  with temperature 0.5, top-k 100, top-p 0.9 (its notebooks' settings), ``max_new_tokens`` 100;
* ours: ``sqlmaster.evaluate.generate.HFGenerator`` as ``sqlmaster eval run`` uses it: base + an unmerged
  LoRA adapter (r16 on every projection), length-sorted left-padded batches of the eval recipe's
  ``evaluation.batch_size`` (jobs/eval/<model>.yaml), greedy, the same ``max_new_tokens``; plus each
  ``--batch-sizes`` value as a lever.

A random model never says EOS or the stop string, so every row of both arms runs to ``max_new_tokens``:
equal work per example.

Pretrained mode (``--model`` a CPU-sized registry model, no ``--gpu``): the model (with ``--run``, a training run's
unmerged adapter on it; else the base) generates for the first ``--n`` held-out prompts twice in one run: with the
project's generator exactly as ``sqlmaster eval run`` configures it (jobs/eval/<model>.yaml: dtype, batch size,
length-sorted batches, the template's stop string) and with plain fp32 ``model.generate`` (batches of 16 in the
prompts' order, left padding, greedy, stop at EOS). Tokens count up to the row's stop. A fine-tuned run ends its
SQL with EOS, so both arms then do the same work; the base model does not, so its figures compare unequal work.
The last line is one JSON object: ``{"model", "project_tokens_per_s", "plain_tokens_per_s", "ratio", ...}``.

Constrained mode (``--constrain grammar|grammar+values``, a CPU-sized ``--model``, default smollm2-135m, with
``--run`` an adapter directory or training run): the project's generator, greedy, as ``sqlmaster eval run``
configures it, on the first ``--n`` held-out prompts twice in one process, without and with the examples'
grammars (sqlmaster/evaluate/constrain.py; building the grammars is timed with the constrained arm), and prints
rows/s and tokens/s of each, the ratio, and how many decodes fell back to the unconstrained output. Last line:
``{"constrain", "plain_rows_per_s", "constrained_rows_per_s", "rows_ratio", "tokens_ratio", "fallback", ...}``.

    python bench/bench_generate.py --constrain grammar+values --run RUN_OR_ADAPTER_DIR --n 64

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


def suite(
    model_name: str, n_original: int, n_ours: int, batch_sizes: list[int], max_new_tokens: int, rows: int
) -> dict[str, Any]:
    """The generation half of scripts/gpu-suite.sh: the original's way against ours, same model and prompts."""
    import torch
    from peft import LoraConfig, get_peft_model

    from sqlmaster.config import load_recipe
    from sqlmaster.data.pipeline import build_splits
    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.models.random_init import build_random
    from sqlmaster.models.registry import resolve_model
    from sqlmaster.prompt import get_template, render_prompt

    on_cuda = torch.cuda.is_available()
    device = "cuda:0" if on_cuda else "cpu"
    repo = Path(__file__).resolve().parent.parent
    name = Path(model_name).name
    train = load_recipe(
        repo / "jobs" / "train" / f"{name}.yaml", ["data.source=shipped", f"data.max_train_rows={rows}"]
    )
    evaluation = load_recipe(repo / "jobs" / "eval" / f"{name}.yaml").evaluation
    template = get_template(train.prompt.template)
    splits = build_splits(train.data)
    texts = [(lambda r: r["prompt"] + r["completion"])(ex.to_prompt_completion(template)) for ex in splits.train]
    spec = resolve_model(model_name)
    built, tokenizer = build_random(spec, train.model, texts, device=device, seed=train.training.seed, packing=False)
    model: Any = built.eval()
    # Equal work in both arms: a random model can still say EOS by chance, so EOS is suppressed (both arms read
    # this generation config) and every row runs to max_new_tokens; `equal_work` in the JSON checks it.
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    prompts = [render_prompt(template, ex.question, ex.context) for ex in splits.test]
    prompts = (prompts * (1 + max(n_original, n_ours) // max(len(prompts), 1)))[: max(n_original, n_ours)]

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    def memory() -> float:
        if on_cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    arms: dict[str, Any] = {}
    # (a) the original: one example at a time, sampling, a plain (merged) model.
    tokenizer.padding_side = "left"
    torch.manual_seed(1399)
    outputs = 0
    with torch.inference_mode():
        one = tokenizer(prompts[0], return_tensors="pt").to(device)
        model.generate(**one, max_new_tokens=4, do_sample=True, pad_token_id=tokenizer.pad_token_id)  # warm-up
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        started = time.perf_counter()
        for prompt in prompts[:n_original]:
            inputs = tokenizer(prompt, return_tensors="pt").to(device)
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                temperature=0.5,
                top_k=100,
                top_p=0.9,
                pad_token_id=tokenizer.pad_token_id,
            )
            outputs += out.shape[1] - inputs["input_ids"].shape[1]
        sync()
        wall = time.perf_counter() - started
    arms["original"] = _gen_arm(n_original, outputs, wall, 1, True, max_new_tokens, memory(), "plain (merged)")

    # (b) ours: HFGenerator over base + unmerged adapter, greedy, batched.
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(spec.target_modules), task_type="CAUSAL_LM"
    )
    adapted = get_peft_model(model, lora).eval()
    sizes = [evaluation.batch_size] + [b for b in batch_sizes if b != evaluation.batch_size]
    for index, size in enumerate(sizes):
        settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=size)
        generator = HFGenerator(adapted, tokenizer, template, settings)
        generator.generate(prompts[: min(size, 2)])  # warm-up
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        count = max(n_ours, size)
        started = time.perf_counter()
        records = generator.generate((prompts * (1 + count // len(prompts)))[:count])
        wall = time.perf_counter() - started
        tokens = sum(r.generated_tokens for r in records)
        key = "ours" if index == 0 else f"ours_batch{size}"
        arms[key] = _gen_arm(count, tokens, wall, size, False, max_new_tokens, memory(), "base + unmerged LoRA")
    base = arms["original"]
    result: dict[str, Any] = {"model": name, "device": device, "arms": arms}
    for key, arm in arms.items():
        if key != "original":
            arm["ratio_examples_per_s"] = arm["examples_per_s"] / base["examples_per_s"]
            arm["ratio_output_tokens_per_s"] = arm["output_tokens_per_s"] / base["output_tokens_per_s"]
    result["ratio_examples_per_s"] = arms["ours"]["ratio_examples_per_s"]
    result["ratio_output_tokens_per_s"] = arms["ours"]["ratio_output_tokens_per_s"]
    return result


def _gen_arm(
    examples: int, tokens: int, wall: float, batch: int, sample: bool, max_new: int, memory: float, weights: str
) -> dict[str, Any]:
    return {
        "status": "ok",
        "error": None,
        "examples": examples,
        "output_tokens": tokens,
        "wall_s": wall,
        "examples_per_s": examples / wall,
        "output_tokens_per_s": tokens / wall,
        "batch_size": batch,
        "do_sample": sample,
        "max_new_tokens": max_new,
        "weights": weights,
        "peak_memory_gib": memory,
        "equal_work": tokens == examples * max_new,
    }


def pretrained_comparison(model_name: str, run: Path | None, n: int, max_new_tokens: int) -> dict[str, Any]:
    import torch
    from bench_train_cpu import cpu_description

    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.evaluate.runner import resolve_target
    from sqlmaster.models.loading import load_base_model, load_tokenizer, load_trained
    from sqlmaster.models.registry import resolve_model
    from sqlmaster.prompt import render_prompt
    from sqlmaster.recipes import resolve_recipe

    spec = resolve_model(model_name)
    recipe = resolve_recipe("eval", spec.name).recipe
    threads = recipe.training.num_threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    if run is not None:
        model, tokenizer, _ = load_trained(run, device="cpu")
    else:
        model = load_base_model(spec, recipe.model, device="cpu").eval()
        tokenizer = load_tokenizer(spec, for_generation=True)
    target = resolve_target(spec.name, run, recipe)
    from sqlmaster.data.pipeline import build_splits

    data = build_splits(recipe.data if run is None else _run_data(run, recipe))
    prompts = [render_prompt(target.template, ex.question, ex.context) for ex in data.test[:n]]
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=recipe.evaluation.batch_size)

    started = time.perf_counter()
    records = HFGenerator(model, tokenizer, target.template, settings).generate(prompts)
    project_s = time.perf_counter() - started
    project_tokens = sum(r.generated_tokens for r in records)

    eos = tokenizer.eos_token_id
    plain_tokens, started = 0, time.perf_counter()
    for start in range(0, len(prompts), 16):
        batch = tokenizer(prompts[start : start + 16], return_tensors="pt", padding=True, padding_side="left")
        with torch.inference_mode():
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        for row in out[:, batch["input_ids"].shape[1] :].tolist():
            plain_tokens += row.index(eos) + 1 if eos in row else len(row)
    plain_s = time.perf_counter() - started
    project, plain = project_tokens / project_s, plain_tokens / plain_s
    return {
        "model": spec.name,
        "weights": "adapter" if run else "base",
        "prompts": len(prompts),
        "project_tokens_per_s": round(project, 1),
        "plain_tokens_per_s": round(plain, 1),
        "ratio": round(project / plain, 3),
        "project_tokens": project_tokens,
        "plain_tokens": plain_tokens,
        "project_batch_size": settings.batch_size,
        "dtype": str(next(model.parameters()).dtype),
        "threads": threads,
        "cpu": cpu_description(),
    }


def constrained_comparison(model_name: str, run: Path | None, n: int, mode: str) -> dict[str, Any]:
    """Greedy generation of the same held-out prompts without and with ``evaluation.constrain=mode``."""
    import torch
    from bench_train_cpu import cpu_description

    from sqlmaster.evaluate.constrain import example_grammars
    from sqlmaster.evaluate.datasets import EvalExample
    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.evaluate.runner import resolve_target
    from sqlmaster.models.loading import load_base_model, load_tokenizer, load_trained
    from sqlmaster.models.registry import resolve_model
    from sqlmaster.prompt import render_prompt
    from sqlmaster.recipes import resolve_recipe

    spec = resolve_model(model_name)
    recipe = resolve_recipe("eval", spec.name).recipe
    if run is not None:
        model, tokenizer, _ = load_trained(run, device="cpu")
    else:
        model = load_base_model(spec, recipe.model, device="cpu").eval()
        tokenizer = load_tokenizer(spec, for_generation=True)
    target = resolve_target(spec.name, run, recipe)
    from sqlmaster.data.pipeline import build_splits

    data = build_splits(recipe.data if run is None else _run_data(run, recipe))
    rows = [EvalExample(str(i), ex.question, ex.context, ex.answer) for i, ex in enumerate(data.test[:n])]
    prompts = [render_prompt(target.template, ex.question, ex.context) for ex in rows]
    arms: dict[str, Any] = {}
    for arm in ("none", mode):
        settings = GenerationSettings(
            max_new_tokens=recipe.evaluation.max_new_tokens, batch_size=recipe.evaluation.batch_size, constrain=arm
        )
        started = time.perf_counter()
        grammars = None if arm == "none" else example_grammars(rows, arm, target.template.stop or "")
        records = HFGenerator(model, tokenizer, target.template, settings).generate(prompts, grammars)
        wall = time.perf_counter() - started
        tokens = sum(r.generated_tokens for r in records)
        arms[arm] = {
            "wall_s": wall,
            "rows_per_s": len(records) / wall,
            "tokens_per_s": tokens / wall,
            "fallback": sum(r.constraint == "fallback" for r in records),
        }
    plain, constrained = arms["none"], arms[mode]
    return {
        "model": spec.name,
        "weights": "adapter" if run else "base",
        "constrain": mode,
        "prompts": len(prompts),
        "plain_rows_per_s": round(plain["rows_per_s"], 3),
        "constrained_rows_per_s": round(constrained["rows_per_s"], 3),
        "plain_tokens_per_s": round(plain["tokens_per_s"], 1),
        "constrained_tokens_per_s": round(constrained["tokens_per_s"], 1),
        "rows_ratio": round(constrained["rows_per_s"] / plain["rows_per_s"], 3),
        "tokens_ratio": round(constrained["tokens_per_s"] / plain["tokens_per_s"], 3),
        "fallback": constrained["fallback"],
        "threads": torch.get_num_threads(),
        "cpu": cpu_description(),
    }


def _run_data(run: Path, recipe: Any) -> Any:
    from sqlmaster.evaluate.datasets import data_config_of_run
    from sqlmaster.models.loading import read_run_info

    return data_config_of_run(read_run_info(run), recipe.data)[0]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="prompts to generate for")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gpu", action="store_true", help="HF against vLLM with a random 7B-shaped model")
    parser.add_argument("--model", help="--gpu/--suite: the 7B shape (default mistral7b); else a CPU-sized model")
    parser.add_argument("--run", type=Path, help="pretrained mode: a training run whose adapter generates")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--suite", action="store_true", help="the original's generation against ours (gpu-suite)")
    parser.add_argument("--n-original", type=int, default=4, help="suite: examples the original generates")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[], help="suite: more batch sizes for ours")
    parser.add_argument("--rows", type=int, default=2000, help="suite: training rows the tokenizer is trained on")
    parser.add_argument(
        "--constrain", choices=("grammar", "grammar+values"), help="greedy without and with this constrained decoding"
    )
    return parser


def main() -> None:
    args = make_parser().parse_args()
    if args.constrain:
        result = constrained_comparison(args.model or "smollm2-135m", args.run, args.n, args.constrain)
        print(f"CPU: {result['cpu']}")
        print(
            f"{result['model']} ({result['weights']}, {result['prompts']} prompts): rows/s "
            f"{result['plain_rows_per_s']:.3f} plain, {result['constrained_rows_per_s']:.3f} {args.constrain} "
            f"({result['rows_ratio']:.2f}x); tokens/s {result['plain_tokens_per_s']:.1f} plain, "
            f"{result['constrained_tokens_per_s']:.1f} constrained ({result['tokens_ratio']:.2f}x); "
            f"{result['fallback']} fell back"
        )
        print(json.dumps(result))
        return
    if args.model and not (args.gpu or args.suite):
        result = pretrained_comparison(args.model, args.run, args.n, args.max_new_tokens)
        print(f"CPU: {result['cpu']}")
        print(
            f"{args.model} ({result['weights']}, {result['prompts']} prompts): project "
            f"{result['project_tokens_per_s']:.1f} tokens/s, plain model.generate "
            f"{result['plain_tokens_per_s']:.1f} tokens/s, ratio {result['ratio']:.2f}"
        )
        print(json.dumps(result))
        return
    args.model = args.model or "mistral7b"
    if args.suite:
        result = suite(args.model, args.n_original, args.n, args.batch_sizes, args.max_new_tokens, args.rows)
        text = json.dumps(result, indent=2)
        if args.json:
            args.json.write_text(text)
        print(text, flush=True)
        return

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
