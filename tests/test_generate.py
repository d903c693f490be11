"""Generation: batching with left padding, stopping, records; vLLM argument building with a fake vllm module."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
from eval_fixtures import overfit, scramble, tiny_model, tiny_tokenizer

from sqlmaster.data import load_examples
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.generate import GenerationRecord, GenerationSettings, HFGenerator, length_sorted_batches
from sqlmaster.evaluate.generate_vllm import (
    VLLMGenerator,
    VLLMTarget,
    engine_args,
    sampling_args,
    vllm_max_lora_rank,
)
from sqlmaster.prompt import PromptTemplate, get_template, render_prompt

# A short template so a 2-layer model learns its examples in a few seconds.
FENCED = PromptTemplate("fenced", prompt="-- {question}\n", completion="{answer};```", stop="```")
UNFENCED = PromptTemplate("unfenced", prompt="-- {question}\n", completion="{answer}", stop=None)
PAIRS = [
    ("how many heads", "SELECT COUNT(*) FROM head"),
    ("name of the singer", "SELECT name FROM singer WHERE age > 3"),
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def fitted(tokenizer: Any) -> Any:
    """A model that answers PAIRS, then (with no stop) keeps talking past the closing fence."""
    texts = [f"-- {q}\n{a};``` and then some more text" for q, a in PAIRS]
    return overfit(tiny_model(tokenizer), tokenizer, texts, steps=150)


def test_batches_are_length_sorted_and_cover_every_index() -> None:
    batches = list(length_sorted_batches([5, 9, 1, 7, 3], batch_size=2))
    assert batches == [[1, 3], [0, 4], [2]]


def test_batched_greedy_equals_one_at_a_time(tokenizer: Any) -> None:
    model = scramble(tiny_model(tokenizer, seed=1))  # varied, not repetitive, output
    template = get_template("original")
    prompts = [render_prompt(template, ex.question, ex.context) for ex in load_examples()[:7]]
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) > 1  # padding is really exercised
    settings = dict(max_new_tokens=12)
    batched = HFGenerator(model, tokenizer, template, GenerationSettings(batch_size=4, **settings)).generate(prompts)
    single = HFGenerator(model, tokenizer, template, GenerationSettings(batch_size=1, **settings)).generate(prompts)
    assert [r.raw_output for r in batched] == [r.raw_output for r in single]
    assert len({r.raw_output for r in batched}) > 1  # not a degenerate constant output
    assert [r.index for r in batched] == list(range(len(prompts)))  # caller's order restored
    assert [r.prompt for r in batched] == prompts
    assert {r.batch_size for r in batched} == {4, 3}


def test_stop_string_cuts_generation(tokenizer: Any, fitted: Any) -> None:
    prompts = [f"-- {q}\n" for q, _ in PAIRS]
    records = HFGenerator(fitted, tokenizer, FENCED, GenerationSettings(max_new_tokens=40)).generate(prompts)
    for record, (_, answer) in zip(records, PAIRS, strict=True):
        assert record.raw_output == f"{answer};```"
        assert record.sql == answer
        assert record.stopped_by == "stop_string"
        assert record.generated_tokens < 40
        assert record.generated_tokens == len(tokenizer(record.raw_output, add_special_tokens=False)["input_ids"])


def test_without_stop_string_generation_runs_on(tokenizer: Any, fitted: Any) -> None:
    prompts = [f"-- {q}\n" for q, _ in PAIRS]
    records = HFGenerator(fitted, tokenizer, UNFENCED, GenerationSettings(max_new_tokens=40)).generate(prompts)
    for record, (_, answer) in zip(records, PAIRS, strict=True):
        assert record.raw_output.startswith(f"{answer};``` and then")
        assert record.stopped_by == "length"
        assert record.generated_tokens == 40


def test_records_have_every_field(tokenizer: Any, fitted: Any) -> None:
    prompts = [f"-- {q}\n" for q, _ in PAIRS]
    records = HFGenerator(fitted, tokenizer, FENCED, GenerationSettings(max_new_tokens=8)).generate(prompts)
    row = records[0].to_dict()
    assert set(row) == {
        "index",
        "prompt",
        "raw_output",
        "sql",
        "prompt_tokens",
        "generated_tokens",
        "latency_s",
        "batch_latency_s",
        "batch_size",
        "stopped_by",
    }
    assert row["latency_s"] > 0
    assert row["batch_latency_s"] == pytest.approx(row["latency_s"] * row["batch_size"])
    assert row["prompt_tokens"] == len(tokenizer(prompts[0])["input_ids"])


def test_sampling_is_seeded(tokenizer: Any) -> None:
    model = scramble(tiny_model(tokenizer, seed=2))
    prompts = ["-- how many heads\n", "-- name of the singer\n"]
    settings = GenerationSettings(max_new_tokens=8, do_sample=True)
    first = HFGenerator(model, tokenizer, FENCED, settings).generate(prompts)
    second = HFGenerator(model, tokenizer, FENCED, settings).generate(prompts)
    assert [r.raw_output for r in first] == [r.raw_output for r in second]


def test_vote_keeps_the_greedy_decode_and_samples_with_their_log_probabilities(tokenizer: Any) -> None:
    model = scramble(tiny_model(tokenizer, seed=2))
    prompts = ["-- how many heads\n", "-- name of the singer\n", "-- a third question\n"]
    greedy = HFGenerator(model, tokenizer, FENCED, GenerationSettings(max_new_tokens=8, batch_size=2)).generate(prompts)
    settings = GenerationSettings(max_new_tokens=8, batch_size=2, vote=4, temperature=1.0)
    assert settings.decoding == "vote@4" and GenerationSettings().decoding == "greedy"
    voted = HFGenerator(model, tokenizer, FENCED, settings).generate(prompts)
    again = HFGenerator(model, tokenizer, FENCED, settings).generate(prompts)
    for plain, record in zip(greedy, voted, strict=True):
        assert record.samples is not None and len(record.samples) == 4
        assert [s["greedy"] for s in record.samples] == [True, False, False, False]
        first = record.samples[0]
        assert (first["raw_output"], first["sql"]) == (plain.raw_output, plain.sql) == (record.raw_output, record.sql)
        # an empty candidate (a sampled pad token ends a row at once) has no mean
        assert all(-50 < s["mean_logprob"] <= 0 for s in record.samples if s["generated_tokens"])
        assert record.generated_tokens == sum(s["generated_tokens"] for s in record.samples)
        assert "samples" in record.to_dict() and "samples" not in plain.to_dict()
    assert len({s["raw_output"] for r in voted for s in (r.samples or [])}) > 3  # really sampled
    assert [r.samples for r in voted] == [r.samples for r in again]  # and seeded
    record = voted[0]
    record.choose(2, {"index": 2, "reason": "majority", "groups": [[2]], "errors": 0})
    assert record.sql == (record.samples or [])[2]["sql"] and record.vote == {
        "index": 2,
        "reason": "majority",
        "groups": [[2]],
        "errors": 0,
    }


# --- vLLM: argument building and the generator against a fake module (vllm itself needs a GPU) ---


def _adapter(tmp_path: Path, **config: Any) -> Path:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "peft_type": "LORA", **config}))
    return tmp_path


def test_vllm_engine_args_serve_the_adapter_unmerged(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, r=12)
    (adapter / "tokenizer.json").write_text("{}")
    args = engine_args(VLLMTarget("mistralai/Mistral-7B-v0.1", adapter, revision="abc"), GenerationSettings())
    assert args["enable_lora"] is True
    assert args["max_lora_rank"] == 16  # 12 rounded up to a rank vLLM supports
    assert args["max_loras"] == 1
    assert args["model"] == "mistralai/Mistral-7B-v0.1"
    assert args["tokenizer"] == str(adapter)  # the tokenizer training used
    assert args["revision"] == "abc"


def test_vllm_engine_args_without_adapter(tmp_path: Path) -> None:
    args = engine_args(VLLMTarget(str(tmp_path)), GenerationSettings())
    assert "enable_lora" not in args
    assert args["tokenizer"] == str(tmp_path)


def test_vllm_rejects_what_it_cannot_serve(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="modules_to_save"):
        engine_args(VLLMTarget("m", _adapter(tmp_path, modules_to_save=["lm_head"])), GenerationSettings())
    with pytest.raises(ConfigError, match="maximum"):
        vllm_max_lora_rank(1024)
    with pytest.raises(ConfigError, match="does not exist"):
        engine_args(VLLMTarget("m", tmp_path / "missing"), GenerationSettings())


def test_vllm_sampling_args() -> None:
    greedy = sampling_args(GenerationSettings(max_new_tokens=64), get_template("original"))
    assert greedy == {
        "max_tokens": 64,
        "seed": 1399,
        "temperature": 0.0,
        "stop": ["```"],
        "include_stop_str_in_output": True,
    }
    sampled = sampling_args(GenerationSettings(do_sample=True), get_template("compact"))
    assert sampled["temperature"] == 0.5 and sampled["top_k"] == 100 and sampled["top_p"] == 0.9
    assert sampled["stop"] == ["\n"]  # compact's SQL is one line


class _FakeLLM:
    instances: ClassVar[list[_FakeLLM]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list[str], Any, Any]] = []
        _FakeLLM.instances.append(self)

    def generate(self, prompts: list[str], sampling: Any, lora_request: Any = None, use_tqdm: bool = True) -> list:
        self.calls.append((prompts, sampling, lora_request))
        outputs = []
        for i, prompt in enumerate(prompts):
            text, reason, stop = ("SELECT 1;```", "stop", "```") if i % 2 == 0 else ("SELECT 2 FROM t", "length", None)
            completions = [
                types.SimpleNamespace(
                    text=text if k == 0 else f"SELECT {k + 10};```",
                    token_ids=[7] * (i + 3),
                    finish_reason=reason,
                    stop_reason=stop,
                    cumulative_logprob=-0.5 * (i + 3) if getattr(sampling, "logprobs", None) == 0 else None,
                )
                for k in range(getattr(sampling, "n", 1))
            ]
            outputs.append(types.SimpleNamespace(prompt_token_ids=[1] * len(prompt), outputs=completions))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.LLM = _FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, id_, path: types.SimpleNamespace(name=name, id=id_, path=path)  # type: ignore[attr-defined]
    for name, mod in (("vllm", module), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    _FakeLLM.instances.clear()
    return module


def test_vllm_generator_with_fake_module(fake_vllm: types.ModuleType, tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    gen = VLLMGenerator(VLLMTarget("base", adapter), get_template("original"), GenerationSettings())
    records = gen.generate(["p0", "p1", "p2"])
    llm = _FakeLLM.instances[0]
    assert llm.kwargs["enable_lora"] and llm.kwargs["max_lora_rank"] == 16
    prompts, sampling, lora_request = llm.calls[0]
    assert prompts == ["p0", "p1", "p2"] and sampling.temperature == 0.0
    assert lora_request.path == str(adapter) and lora_request.id == 1
    assert [r.sql for r in records] == ["SELECT 1", "SELECT 2 FROM t", "SELECT 1"]
    assert [r.stopped_by for r in records] == ["stop_string", "length", "stop_string"]
    assert [r.generated_tokens for r in records] == [3, 4, 5]
    assert all(isinstance(r, GenerationRecord) and r.batch_size == 3 for r in records)


def test_vllm_answers_prompts_longer_than_the_engine_takes_empty(fake_vllm: types.ModuleType) -> None:
    """vLLM refuses a whole generate call over one prompt longer than max_model_len: such prompts are answered
    empty and counted (stopped_by prompt_too_long), as the HF backend does, and the others are generated."""
    gen = VLLMGenerator(VLLMTarget("base"), get_template("compact"), GenerationSettings(max_new_tokens=4))
    llm = _FakeLLM.instances[0]
    llm.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=10))
    llm.get_tokenizer = lambda: lambda text: {"input_ids": text.split()}  # one token per word
    saved: list[list[int]] = []
    records = gen.generate(["a b", "a b c d e f g", "x"], on_batch=lambda rs: saved.append([r.index for r in rs]))
    assert [prompts for prompts, _, _ in llm.calls] == [["a b", "x"]]  # 7 words + 4 new tokens > 10
    by_index = {r.index: r for r in records}
    assert by_index[1].stopped_by == "prompt_too_long" and by_index[1].sql == "" and by_index[1].prompt_tokens == 7
    assert by_index[0].stopped_by != "prompt_too_long" and saved == [[1], [0, 2]]
    assert gen.generate(["a b c d e f g"], skip={0}) == []  # a resumed run does not report it again


def test_vllm_vote_asks_for_the_greedy_decode_and_n_minus_one_samples(fake_vllm: types.ModuleType) -> None:
    settings = GenerationSettings(vote=3, temperature=0.7)
    gen = VLLMGenerator(VLLMTarget("base"), get_template("original"), settings)
    records = gen.generate(["p0", "p1"])
    (_, greedy, _), (_, sampled, _) = _FakeLLM.instances[0].calls
    assert greedy.temperature == 0.0 and greedy.n == 1 and greedy.logprobs == 0
    assert sampled.temperature == 0.7 and sampled.n == 2 and sampled.logprobs == 0
    for record in records:
        assert record.samples is not None and [s["greedy"] for s in record.samples] == [True, False, False]
        assert record.samples[0]["sql"] == record.sql and record.samples[2]["sql"] == "SELECT 11"
        assert all(s["mean_logprob"] == pytest.approx(-0.5) for s in record.samples)
    assert sampling_args(GenerationSettings(), get_template("original")).get("n") is None
