"""Batched SQL generation with Hugging Face transformers (the backend everywhere; vLLM is in generate_vllm.py).

    gen = HFGenerator(model, tokenizer, get_template("original"), GenerationSettings(batch_size=16))
    records = gen.generate(prompts)          # one GenerationRecord per prompt, in the prompts' order

What matters for a fair, fast evaluation:

* **Left padding.** A decoder-only model continues the last position of each row, so padding goes on the left
  and the attention mask (from which ``generate`` derives position ids) hides it. Greedy output batched is then
  the same as one prompt at a time (tested).
* **Length-sorted batches.** Prompts are sorted by token length before batching, so a batch holds prompts of
  similar length and little compute goes to padding; records come back in the caller's order.
* **Stopping.** A row stops at EOS or when the template's stop string (the closing ```` ``` ```` of the
  ``original`` template) appears in its generated text; a batch ends when every row has stopped or
  ``max_new_tokens`` is reached.
* **Greedy by default** (a metric must not depend on a dice roll); sampling with the original's settings
  (temperature 0.5, top_k 100, top_p 0.9) is an option.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlmaster.config import EvaluationConfig, TrainingConfig, from_section, recipe_field
from sqlmaster.prompt import PromptTemplate, extract_sql

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs shared by both backends: the recipe's ``evaluation`` keys of the same names (defaults and
    help are declared there, in sqlmaster/config.py), and the sampling seed."""

    max_new_tokens: int = recipe_field(EvaluationConfig, "max_new_tokens")
    batch_size: int = recipe_field(EvaluationConfig, "batch_size")
    do_sample: bool = recipe_field(EvaluationConfig, "do_sample")
    temperature: float = recipe_field(EvaluationConfig, "temperature")
    top_p: float = recipe_field(EvaluationConfig, "top_p")
    top_k: int = recipe_field(EvaluationConfig, "top_k")
    # sampling seed, so a sampled evaluation can be repeated: the training seed's default (the original's)
    seed: int = recipe_field(TrainingConfig, "seed")

    @classmethod
    def from_config(cls, cfg: EvaluationConfig) -> GenerationSettings:
        return from_section(cls, cfg)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")


@dataclass
class GenerationRecord:
    """One prompt's generation: what went in, what came out, the SQL cut from it, and what it cost."""

    index: int  # position in the caller's prompt list
    prompt: str
    raw_output: str  # decoded new tokens (special tokens removed), before SQL extraction
    sql: str  # extract_sql(template, raw_output)
    prompt_tokens: int
    generated_tokens: int  # new tokens up to and including the one that stopped the row
    latency_s: float  # the batch's wall time divided by its size (amortised per example)
    batch_latency_s: float  # wall time of the whole batch this prompt was generated in
    batch_size: int  # prompts in that batch
    stopped_by: str  # "eos", "stop_string" or "length"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first.

    Longest first means an out-of-memory error, if any, happens in the first batch, not after an hour.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def make_stop_criterion(tokenizer: Any, stop: str, prompt_length: int, window: int = 16) -> Any:
    """A StoppingCriteria marking each row done once ``stop`` appears in its generated text.

    Only the last ``window`` new tokens are decoded per step (a stop string is a few tokens at most), which
    keeps the check cheap; the prompt (the first ``prompt_length`` positions, padding included) is never
    searched, so a prompt that itself contains the stop string (the ``original`` template does) is harmless.
    """
    import torch
    from transformers import StoppingCriteria

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            new = input_ids[:, prompt_length:]
            tails = tokenizer.batch_decode(new[:, -window:], skip_special_tokens=True)
            done = [stop in tail for tail in tails]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    return StopOnText()


class HFGenerator:
    """Generate SQL for prompts with a transformers causal LM (a PeftModel with an unmerged adapter works too)."""

    backend = "hf"

    def __init__(self, model: Any, tokenizer: Any, template: PromptTemplate, settings: GenerationSettings) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.settings = settings
        if tokenizer.pad_token_id is None:
            # Generic hub models without a pad token: pad with EOS (masked out, so never attended to).
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.eos_ids = _eos_ids(model, tokenizer)

    def generate(self, prompts: Sequence[str]) -> list[GenerationRecord]:
        """Generate for every prompt; records are returned in the order of ``prompts``."""
        import torch

        encoded = [self.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        records: list[GenerationRecord | None] = [None] * len(prompts)
        if self.settings.do_sample:
            torch.manual_seed(self.settings.seed)
        from sqlmaster.logs import progress

        with progress("generating", len(prompts)) as advance:  # a live bar in a terminal only
            for batch in length_sorted_batches([len(ids) for ids in encoded], self.settings.batch_size):
                for record in self._generate_batch(batch, prompts, encoded):
                    records[record.index] = record
                advance(len(batch))
        return [r for r in records if r is not None]

    def _generate_batch(
        self, batch: list[int], prompts: Sequence[str], encoded: list[list[int]]
    ) -> list[GenerationRecord]:
        import torch

        inputs = self.tokenizer.pad(
            {"input_ids": [encoded[i] for i in batch]}, padding=True, return_tensors="pt", padding_side="left"
        )
        device = _model_device(self.model)
        input_ids = inputs["input_ids"].to(device)
        attention_mask = inputs["attention_mask"].to(device)
        prompt_length = input_ids.shape[1]

        kwargs: dict[str, Any] = {
            "max_new_tokens": self.settings.max_new_tokens,
            "do_sample": self.settings.do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if self.settings.do_sample:
            kwargs.update(temperature=self.settings.temperature, top_p=self.settings.top_p, top_k=self.settings.top_k)
        else:
            # Unset sampling knobs a checkpoint's generation_config may carry, so greedy is plainly greedy.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.template.stop:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [make_stop_criterion(self.tokenizer, self.template.stop, prompt_length)]
            )

        _synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        _synchronize(device)
        elapsed = time.perf_counter() - start

        new_tokens = output[:, prompt_length:].tolist()
        records = []
        for row, index in enumerate(batch):
            tokens, stopped_by = self._trim(new_tokens[row])
            raw = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if stopped_by == "length" and self.template.stop and self.template.stop in raw:
                stopped_by = "stop_string"  # the stop string arrived on the very last allowed token
            records.append(
                GenerationRecord(
                    index=index,
                    prompt=prompts[index],
                    raw_output=raw,
                    sql=extract_sql(self.template, raw),
                    prompt_tokens=len(encoded[index]),
                    generated_tokens=len(tokens),
                    latency_s=elapsed / len(batch),
                    batch_latency_s=elapsed,
                    batch_size=len(batch),
                    stopped_by=stopped_by,
                )
            )
        return records

    def _trim(self, tokens: list[int]) -> tuple[list[int], str]:
        """The row's real new tokens (through EOS, or up to the padding that follows a stop) and why it ended."""
        pad = self.tokenizer.pad_token_id
        for position, token in enumerate(tokens):
            if token in self.eos_ids:
                return tokens[: position + 1], "eos"
            if token == pad:
                # generate() pads rows that a stopping criterion finished early.
                return tokens[:position], "stop_string"
        if self.template.stop and self.template.stop in self.tokenizer.decode(tokens, skip_special_tokens=True):
            return tokens, "stop_string"
        return tokens, "length"


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids from the tokenizer and the model's generation config (Llama 3-style models list several)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(config_eos, int):
        ids.add(config_eos)
    elif isinstance(config_eos, list | tuple):
        ids.update(int(i) for i in config_eos)
    if not ids:
        raise ValueError("the tokenizer has no EOS token: generation could never stop before max_new_tokens")
    return ids


def _model_device(model: Any) -> torch.device:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall times measure generation and not just kernel launches."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
