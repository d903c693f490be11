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
* **Resumable.** ``generate(prompts, skip=done, on_batch=save)`` hands each finished batch to ``save`` and
  leaves out the batches already done: ``sqlmaster eval run`` appends them to ``predictions.partial.jsonl`` and,
  run again after a kill, generates only the rest (sqlmaster/evaluate/runner.py).
* **Voting** (``evaluation.vote: N`` > 1): per prompt the greedy decode and N - 1 samples (at the recipe's
  temperature, top_p, top_k), each with its mean token log-probability, are kept in ``GenerationRecord.samples``;
  the evaluation runner then answers with :func:`sqlmaster.evaluate.vote.vote_questions`'s pick (the generator
  knows no schema to run them on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlmaster.config import EvaluationConfig, TrainingConfig, from_section, recipe_field
from sqlmaster.prompt import PromptTemplate, extract_sql

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Called with each finished batch's records (the runner appends them to predictions.partial.jsonl).
OnBatch = Callable[[list["GenerationRecord"]], None]


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
    vote: int = recipe_field(EvaluationConfig, "vote")
    vote_rule: str = recipe_field(EvaluationConfig, "vote_rule")
    constrain: str = recipe_field(EvaluationConfig, "constrain")
    # sampling seed, so a sampled evaluation can be repeated: the training seed's default (the original's)
    seed: int = recipe_field(TrainingConfig, "seed")

    @classmethod
    def from_config(cls, cfg: EvaluationConfig) -> GenerationSettings:
        return from_section(cls, cfg)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")

    @property
    def decoding(self) -> str:
        """How an answer is decoded, as reports name it: greedy, sampled, vote@N or exec@N (execution-guided
        choice), then +grammar or +grammar+values under constrained decoding."""
        choice = "exec" if self.vote_rule == "first-rows" else "vote"
        name = f"{choice}@{self.vote}" if self.vote > 1 else "sampled" if self.do_sample else "greedy"
        return name if self.constrain == "none" else f"{name}+{self.constrain}"


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
    stopped_by: str  # "eos", "stop_string", "length", or "prompt_too_long" (not generated: see HFGenerator)
    # With voting: every candidate (raw_output, sql, generated_tokens, stopped_by, mean_logprob, greedy), the
    # greedy one first; the fields above then describe the chosen one, except generated_tokens (all candidates').
    samples: list[dict[str, Any]] | None = None
    vote: dict[str, Any] | None = None  # the vote's choice: index, reason, groups, errors (see evaluate/vote.py)
    # With evaluation.constrain: "grammar" (decoded under the example's grammar) or "fallback" (the grammar could
    # not finish it, so this is the unconstrained decode); see evaluate/constrain.py
    constraint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("samples", "vote", "constraint")}

    def choose(self, index: int, vote: dict[str, Any]) -> None:
        """Answer with candidate ``index`` of ``samples`` (the vote's pick)."""
        assert self.samples is not None
        chosen = self.samples[index]
        self.raw_output, self.sql, self.stopped_by = chosen["raw_output"], chosen["sql"], chosen["stopped_by"]
        self.constraint = chosen.get("constraint")
        self.vote = vote


PROMPT_TOO_LONG = "prompt_too_long"  # a GenerationRecord's stopped_by when its prompt does not fit the context
# what a prompt that does not fit is answered with, by every backend: nothing, scored wrong and counted
TOO_LONG_ROW: dict[str, Any] = {"raw_output": "", "sql": "", "generated_tokens": 0, "stopped_by": PROMPT_TOO_LONG}


def mark_too_long(record: GenerationRecord, settings: GenerationSettings) -> None:
    """With voting, give a prompt that was not generated one empty candidate for the vote to pick."""
    if settings.vote > 1:
        record.samples = [{**TOO_LONG_ROW, "mean_logprob": None, "greedy": True}]


def warn_too_long(count: int, total: int, room: str, limit: int, settings: GenerationSettings) -> None:
    log.warning(
        "%d of %d prompts are longer than %s leaves room for (%s tokens with max_new_tokens=%d): answered empty, "
        "scored wrong, counted as stopped_by %s in metrics.json",
        count, total, room, f"{limit:,}", settings.max_new_tokens, PROMPT_TOO_LONG,
    )  # fmt: skip


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
        self._grammars: Sequence[str] | None = None  # this generate() call's, one per prompt

    def generate(
        self,
        prompts: Sequence[str],
        grammars: Sequence[str] | None = None,
        *,
        skip: Collection[int] = (),
        on_batch: OnBatch | None = None,
    ) -> list[GenerationRecord]:
        """Generate for every prompt but those in ``skip``; records come back in the order of ``prompts``.

        With ``grammars`` (one Lark grammar per prompt, evaluate/constrain.py), each decode follows its prompt's
        grammar. ``on_batch(records)`` runs as each batch finishes (the runner appends them to disk, so that a
        killed evaluation resumes). Batches are the same whatever ``skip`` holds: a batch all of whose prompts are
        skipped is left out, and sampling is seeded per batch, so a resumed run decodes as an uninterrupted one.
        """
        import torch

        encoded = [self.tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
        records: list[GenerationRecord | None] = [None] * len(prompts)
        self._grammars = grammars
        sampling = self.settings.do_sample or self.settings.vote > 1
        one = self._vote_batch if self.settings.vote > 1 else self._generate_batch
        fitting = set(self._skip_too_long(prompts, encoded, records))
        refused = [r for i, r in enumerate(records) if r is not None and i not in skip]
        if refused and on_batch is not None:
            on_batch(refused)  # saved like a batch, so a resumed run does not report them again
        # Batches are cut over every prompt, then the too-long ones left out: the same batches on every run.
        for number, whole in enumerate(length_sorted_batches([len(ids) for ids in encoded], self.settings.batch_size)):
            batch = [index for index in whole if index in fitting]
            if all(index in skip for index in batch):
                continue
            if sampling:
                torch.manual_seed(self.settings.seed + number)
            done = one(batch, prompts, encoded)
            for record in done:
                records[record.index] = record
            if on_batch is not None:
                on_batch(done)
        return [r for r in records if r is not None]

    def prompt_limit(self) -> int | None:
        """The most prompt tokens that leave room for ``max_new_tokens`` in the model's context (None: unknown)."""
        context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        if not isinstance(context, int):
            return None
        return max(context - self.settings.max_new_tokens, 0)

    def _skip_too_long(
        self, prompts: Sequence[str], encoded: list[list[int]], records: list[GenerationRecord | None]
    ) -> list[int]:
        """Fill ``records`` for the prompts longer than :meth:`prompt_limit` (an empty answer, stopped_by
        "prompt_too_long": scored wrong and counted, never generated: one 1 MB question asked a 194 GB attention
        mask of the whole evaluation) and return the indices of the others."""
        limit = self.prompt_limit()
        fitting = []
        for index, ids in enumerate(encoded):
            if limit is None or len(ids) <= limit:
                fitting.append(index)
                continue
            record = records[index] = self._record(index, prompts, encoded, TOO_LONG_ROW, 0.0, 1)
            mark_too_long(record, self.settings)
        if len(fitting) < len(prompts) and limit is not None:
            warn_too_long(len(prompts) - len(fitting), len(prompts), "the model's context", limit, self.settings)
        return fitting

    def _generate_batch(
        self, batch: list[int], prompts: Sequence[str], encoded: list[list[int]]
    ) -> list[GenerationRecord]:
        rows, elapsed = self._decode(batch, encoded, sample=self.settings.do_sample)
        return [self._record(index, prompts, encoded, rows[k][0], elapsed, len(batch)) for k, index in enumerate(batch)]

    def _vote_batch(self, batch: list[int], prompts: Sequence[str], encoded: list[list[int]]) -> list[GenerationRecord]:
        """The greedy decode and ``vote - 1`` samples per prompt, with their mean log-probabilities."""
        greedy, greedy_s = self._decode(batch, encoded, sample=False, scores=True)
        sampled, sampled_s = self._decode(batch, encoded, sample=True, n=self.settings.vote - 1, scores=True)
        records = []
        for k, index in enumerate(batch):
            samples = [{**greedy[k][0], "greedy": True}, *({**row, "greedy": False} for row in sampled[k])]
            record = self._record(index, prompts, encoded, samples[0], greedy_s + sampled_s, len(batch))
            record.samples = samples
            record.generated_tokens = sum(row["generated_tokens"] for row in samples)
            records.append(record)
        return records

    def _record(
        self, index: int, prompts: Sequence[str], encoded: list[list[int]], row: dict[str, Any], elapsed: float, n: int
    ) -> GenerationRecord:
        return GenerationRecord(
            index=index,
            prompt=prompts[index],
            raw_output=row["raw_output"],
            sql=row["sql"],
            prompt_tokens=len(encoded[index]),
            generated_tokens=row["generated_tokens"],
            latency_s=elapsed / n,
            batch_latency_s=elapsed,
            batch_size=n,
            stopped_by=row["stopped_by"],
            constraint=row.get("constraint"),
        )

    def _decode(
        self, batch: list[int], encoded: list[list[int]], *, sample: bool, n: int = 1, scores: bool = False
    ) -> tuple[list[list[dict[str, Any]]], float]:
        """``n`` decodes of each prompt of ``batch`` (per prompt: raw_output, sql, generated_tokens, stopped_by,
        mean_logprob, the last None unless ``scores``), and the wall time. Under grammars, a decode the grammar
        could not finish is replaced by the unconstrained decode of its prompt (``constraint``: "fallback")."""
        grammars = self._grammars
        if not grammars:
            return self._decode_once(batch, encoded, sample=sample, n=n, scores=scores)
        rows, elapsed = self._decode_once(batch, encoded, sample=sample, n=n, scores=scores, grammars=grammars)
        failed = [k for k, decodes in enumerate(rows) if any(d["constraint"] == "failed" for d in decodes)]
        if failed:
            again, more = self._decode_once([batch[k] for k in failed], encoded, sample=sample, n=n, scores=scores)
            for k, decodes in zip(failed, again, strict=True):
                rows[k] = [
                    {**plain, "constraint": "fallback"} if mine["constraint"] == "failed" else mine
                    for mine, plain in zip(rows[k], decodes, strict=True)
                ]
            elapsed += more
        return rows, elapsed

    def _decode_once(
        self,
        batch: list[int],
        encoded: list[list[int]],
        *,
        sample: bool,
        n: int = 1,
        scores: bool = False,
        grammars: Sequence[str] | None = None,
    ) -> tuple[list[list[dict[str, Any]]], float]:
        import torch

        inputs = self.tokenizer.pad(
            {"input_ids": [encoded[i] for i in batch]}, padding=True, return_tensors="pt", padding_side="left"
        )
        device = _model_device(self.model)
        prompt_length = inputs["input_ids"].shape[1]
        kwargs = self._generate_kwargs(sample, n, prompt_length)
        if scores:
            kwargs.update(return_dict_in_generate=True, output_scores=True)
        processor = None
        if grammars is not None:
            processor = self._grammar_processor([grammars[i] for i in batch for _ in range(n)], prompt_length)
            kwargs["logits_processor"] = _processor_list(processor)
        _synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device), **kwargs
            )
        _synchronize(device)
        elapsed = time.perf_counter() - start
        sequences = output.sequences if scores else output
        new = sequences[:, prompt_length:]
        logprobs = _token_logprobs(output.scores, new) if scores else None
        rows = [self._row(tokens, None if logprobs is None else logprobs[r]) for r, tokens in enumerate(new.tolist())]
        if processor is not None:
            processor.settle(sequences[:, -1].tolist())
            for r, row in enumerate(rows):
                row["constraint"] = "grammar" if processor.finished(r) else "failed"
        return [rows[k * n : (k + 1) * n] for k in range(len(batch))], elapsed

    def _grammar_processor(self, grammars: list[str], prompt_length: int) -> Any:
        from sqlmaster.evaluate.constrain import GrammarLogitsProcessor, ll_tokenizer

        return GrammarLogitsProcessor(ll_tokenizer(self.tokenizer, sorted(self.eos_ids)), grammars, prompt_length)

    def _generate_kwargs(self, sample: bool, n: int, prompt_length: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.settings.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": n,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if sample:
            kwargs.update(temperature=self.settings.temperature, top_p=self.settings.top_p, top_k=self.settings.top_k)
        else:
            # Unset sampling knobs a checkpoint's generation_config may carry, so greedy is plainly greedy.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.template.stop:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [make_stop_criterion(self.tokenizer, self.template.stop, prompt_length)]
            )
        return kwargs

    def _row(self, new_tokens: list[int], logprobs: Any) -> dict[str, Any]:
        tokens, stopped_by = self._trim(new_tokens)
        raw = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if stopped_by == "length" and self.template.stop and self.template.stop in raw:
            stopped_by = "stop_string"  # the stop string arrived on the very last allowed token
        mean = float(logprobs[: len(tokens)].mean()) if logprobs is not None and tokens else None
        return {
            "raw_output": raw,
            "sql": extract_sql(self.template, raw),
            "generated_tokens": len(tokens),
            "stopped_by": stopped_by,
            "mean_logprob": mean,
        }

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


def _processor_list(processor: Any) -> Any:
    """``processor`` as a transformers LogitsProcessorList (a LogitsProcessor subclass wraps its __call__)."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Grammar(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            return processor(input_ids, scores)

    return LogitsProcessorList([Grammar()])


def _token_logprobs(scores: Sequence[Any], new_tokens: Any) -> Any:
    """Each generated token's log-probability under the distribution it was drawn from (the processed scores:
    temperature and top-k/top-p applied when sampling), as a (rows, steps) tensor."""
    import torch

    steps = torch.stack(list(scores), dim=1).float().log_softmax(-1)  # (rows, steps, vocab)
    return steps.gather(-1, new_tokens[:, : steps.shape[1], None]).squeeze(-1)


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
