"""Generation with vLLM (the eval image on a GPU): the LoRA adapter is served as is, never merged.

vLLM is not a dependency of the package (it pins its own torch); the eval image installs it. Everything here
imports ``vllm`` only inside :class:`VLLMGenerator`, so the argument building is testable without it.

    target = VLLMTarget(model="mistralai/Mistral-7B-v0.1", adapter_dir=Path("run/adapter"))
    gen = VLLMGenerator(target, get_template("original"), GenerationSettings())
    records = gen.generate(prompts)
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.generate import (
    TOO_LONG_ROW,
    GenerationRecord,
    GenerationSettings,
    OnBatch,
    mark_too_long,
    warn_too_long,
)
from sqlmaster.prompt import PromptTemplate, extract_sql

# LoRA ranks vLLM's punica kernels are compiled for; max_lora_rank must be one of them.
VLLM_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# prompts per engine call: each chunk is saved as it finishes (resume), and vLLM still batches hundreds at once
CHUNK = 512
LORA_NAME = "sqlmaster"  # the name the adapter is registered under in the engine


def vllm_available() -> bool:
    """vLLM is importable and a CUDA device is present (vLLM needs a GPU)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class VLLMTarget:
    """What the engine loads: a base (hub id or directory) and, optionally, an unmerged LoRA adapter."""

    model: str  # hub id or local directory of full weights (a base, a full fine-tune, or merged/)
    adapter_dir: Path | None = None  # PEFT adapter directory (adapter_config.json + safetensors)
    tokenizer: str | None = None  # defaults to the adapter's tokenizer files if it has them, else the model's
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: str = "auto"  # recipe model.dtype; vLLM's auto = the checkpoint's dtype (bf16 for the 7B models)


def adapter_rank(adapter_dir: Path) -> int:
    """The LoRA rank recorded in ``adapter_config.json`` (the largest, if ranks differ per module)."""
    config = _adapter_config(adapter_dir)
    ranks = [int(config.get("r", 0)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    rank = max(ranks)
    if rank < 1:
        raise ConfigError(f"{adapter_dir}/adapter_config.json has no LoRA rank 'r'. Is this a LoRA adapter?")
    return rank


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM supports that holds ``rank`` (vLLM rejects other values)."""
    for supported in VLLM_LORA_RANKS:
        if supported >= rank:
            return supported
    raise ConfigError(f"LoRA rank {rank} exceeds vLLM's maximum {VLLM_LORA_RANKS[-1]}. Use evaluation.backend=hf")


def engine_args(target: VLLMTarget, settings: GenerationSettings) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``."""
    args: dict[str, Any] = {
        "model": target.model,
        "tokenizer": target.tokenizer or _tokenizer_source(target),
        "dtype": target.dtype,
        "trust_remote_code": target.trust_remote_code,
        "seed": settings.seed,
    }
    if target.revision:
        args["revision"] = target.revision
    if target.adapter_dir is not None:
        config = _adapter_config(target.adapter_dir)
        if config.get("modules_to_save"):
            # vLLM serves LoRA deltas only; fully trained extra modules would be silently ignored.
            raise ConfigError(
                f"the adapter in {target.adapter_dir} trains modules_to_save={config['modules_to_save']}, "
                "which vLLM cannot serve. Use evaluation.backend=hf or evaluate the merged/ model"
            )
        args.update(enable_lora=True, max_loras=1, max_lora_rank=vllm_max_lora_rank(adapter_rank(target.adapter_dir)))
    if settings.constrain != "none":
        # The grammars are Lark (evaluate/constrain.py): llguidance's format, vLLM's "guidance" backend.
        args["structured_outputs_config"] = {"backend": "guidance"}
    return args


def sampling_args(
    settings: GenerationSettings, template: PromptTemplate, *, sample: bool | None = None, n: int = 1
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` matching the HF backend's decoding (``sample`` overrides
    ``settings.do_sample``; ``n`` > 1 asks for that many samples per prompt, each with its log-probability)."""
    args: dict[str, Any] = {"max_tokens": settings.max_new_tokens, "seed": settings.seed}
    if n > 1 or settings.vote > 1:
        args.update(n=n, logprobs=0)  # logprobs=0: the sampled token's own log-probability (cumulative_logprob)
    if settings.do_sample if sample is None else sample:
        args.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    else:
        args.update(temperature=0.0)  # vLLM's greedy
    if template.stop:
        # Keep the stop string in the text, so raw outputs read the same as the HF backend's.
        args.update(stop=[template.stop], include_stop_str_in_output=True)
    return args


class VLLMGenerator:
    """Generate with one vLLM engine, ``CHUNK`` prompts at a time (vLLM schedules its own continuous batches)."""

    backend = "vllm"

    def __init__(self, target: VLLMTarget, template: PromptTemplate, settings: GenerationSettings) -> None:
        import vllm

        self.target = target
        self.template = template
        self.settings = settings
        self._vllm = vllm
        self.llm = vllm.LLM(**engine_args(target, settings))
        greedy_first = False if settings.vote > 1 else None  # voting: the greedy decode is one candidate
        self.sampling = sampling_args(settings, template, sample=greedy_first)  # vllm.SamplingParams keywords
        self.voting = None  # evaluation.vote > 1: the greedy decode (above) and vote - 1 samples (this)
        if settings.vote > 1:
            self.voting = sampling_args(settings, template, sample=True, n=settings.vote - 1)
        self.lora_request = None
        if target.adapter_dir is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(LORA_NAME, 1, str(target.adapter_dir))

    def generate(
        self,
        prompts: Sequence[str],
        grammars: Sequence[str] | None = None,
        *,
        skip: Collection[int] = (),
        on_batch: OnBatch | None = None,
    ) -> list[GenerationRecord]:
        """As ``HFGenerator.generate``: every prompt but those in ``skip``, in chunks of ``CHUNK`` prompts (vLLM
        batches each chunk itself), ``on_batch(records)`` after each chunk so that the runner saves them. With
        ``grammars`` (one per prompt) each request carries its grammar, and a greedy decode that hits max_tokens
        before the grammar completes is decoded again without."""
        too_long = [r for r in self._too_long(prompts) if r.index not in skip]
        if too_long and on_batch is not None:
            on_batch(too_long)  # saved like a chunk, so a resumed run does not report them again
        refused = {r.index for r in too_long}
        todo = [i for i in range(len(prompts)) if i not in skip and i not in refused]
        records: list[GenerationRecord] = list(too_long)
        for start in range(0, len(todo), CHUNK):
            chunk = self._generate_chunk(todo[start : start + CHUNK], prompts, grammars)
            if on_batch is not None:
                on_batch(chunk)
            records += chunk
        return records

    def prompt_limit(self) -> int | None:
        """The most prompt tokens that leave room for ``max_new_tokens`` in the engine's max_model_len (None:
        unknown)."""
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        context = getattr(config, "max_model_len", None)
        return max(context - self.settings.max_new_tokens, 0) if isinstance(context, int) else None

    def _too_long(self, prompts: Sequence[str]) -> list[GenerationRecord]:
        """An empty answer (stopped_by "prompt_too_long", scored wrong and counted) for each prompt longer than
        :meth:`prompt_limit`, as the HF backend gives: vLLM refuses a whole ``generate`` call over one of them."""
        limit = self.prompt_limit()
        if limit is None:
            return []
        tokenizer = self.llm.get_tokenizer()
        records = []
        for index, prompt in enumerate(prompts):
            length = len(tokenizer(prompt)["input_ids"])
            if length <= limit:
                continue
            record = GenerationRecord(index, prompt, prompt_tokens=length, latency_s=0.0, batch_latency_s=0.0,
                                      batch_size=1, **TOO_LONG_ROW)  # fmt: skip
            mark_too_long(record, self.settings)
            records.append(record)
        if records:
            warn_too_long(len(records), len(prompts), "the engine's max_model_len", limit, self.settings)
        return records

    def _generate_chunk(
        self, indices: list[int], all_prompts: Sequence[str], all_grammars: Sequence[str] | None
    ) -> list[GenerationRecord]:
        prompts = [all_prompts[i] for i in indices]
        grammars = None if all_grammars is None else [all_grammars[i] for i in indices]
        start = time.perf_counter()
        outputs = self._run(prompts, self.sampling, grammars)
        fallback = self._fallback(prompts, outputs) if grammars is not None else set()
        sampled: list[Any] = [None] * len(prompts)
        if self.voting is not None:
            sampled = self._run(prompts, self.voting, grammars)
        elapsed = time.perf_counter() - start
        records = []
        for position, (index, prompt, output, more) in enumerate(zip(indices, prompts, outputs, sampled, strict=True)):
            greedy = self._row(output.outputs[0])
            record = GenerationRecord(
                index=index,
                prompt=prompt,
                raw_output=greedy["raw_output"],
                sql=greedy["sql"],
                prompt_tokens=len(output.prompt_token_ids or []),
                generated_tokens=greedy["generated_tokens"],
                latency_s=elapsed / len(prompts),
                batch_latency_s=elapsed,
                batch_size=len(prompts),
                stopped_by=greedy["stopped_by"],
            )
            if grammars is not None:
                record.constraint = greedy["constraint"] = "fallback" if position in fallback else "grammar"
            if more is not None:  # voting: the greedy decode first, then the samples
                record.samples = [
                    {**greedy, "greedy": True},
                    *({**self._row(c), "greedy": False} for c in more.outputs),
                ]
                record.generated_tokens = sum(row["generated_tokens"] for row in record.samples)
            records.append(record)
        return records

    def _run(self, prompts: Sequence[str], sampling: dict[str, Any], grammars: Sequence[str] | None) -> list[Any]:
        """``llm.generate`` with one SamplingParams for all prompts, or per prompt one carrying its grammar."""
        params: Any = self._vllm.SamplingParams(**sampling)
        if grammars is not None:
            from vllm.sampling_params import StructuredOutputsParams

            params = [
                self._vllm.SamplingParams(**sampling, structured_outputs=StructuredOutputsParams(grammar=grammar))
                for grammar in grammars
            ]
        return self.llm.generate(list(prompts), params, lora_request=self.lora_request, use_tqdm=False)

    def _fallback(self, prompts: Sequence[str], outputs: list[Any]) -> set[int]:
        """Replace in ``outputs`` each decode the grammar could not finish (cut at max_tokens) by the
        unconstrained decode of its prompt; the indices replaced."""
        failed = [i for i, out in enumerate(outputs) if out.outputs[0].finish_reason == "length"]
        if failed:
            again = self._run([prompts[i] for i in failed], self.sampling, None)
            for i, out in zip(failed, again, strict=True):
                outputs[i] = out
        return set(failed)

    def _row(self, completion: Any) -> dict[str, Any]:
        """One completion as the HF backend's candidate rows (generate.py ``HFGenerator._row``)."""
        tokens = len(completion.token_ids)
        cumulative = getattr(completion, "cumulative_logprob", None)
        return {
            "raw_output": completion.text,
            "sql": extract_sql(self.template, completion.text),
            "generated_tokens": tokens,
            "stopped_by": _stop_reason(completion),
            "mean_logprob": cumulative / tokens if isinstance(cumulative, int | float) and tokens else None,
        }


def _stop_reason(completion: Any) -> str:
    if completion.finish_reason == "length":
        return "length"
    # vLLM sets stop_reason to the matched stop string, and to None for EOS.
    return "stop_string" if isinstance(completion.stop_reason, str) else "eos"


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: pass a run directory or a PEFT adapter directory") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg})") from None


def _tokenizer_source(target: VLLMTarget) -> str:
    """The adapter's tokenizer when it ships one (it is the tokenizer training used), else the model's."""
    if target.adapter_dir is not None and any(
        (target.adapter_dir / name).exists() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    ):
        return str(target.adapter_dir)
    return target.model
