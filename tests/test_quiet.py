"""Quiet and offline by default: saving an adapter never asks the hub, even with HF_HUB_OFFLINE unset."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from eval_fixtures import tiny_model, tiny_tokenizer

from sqlmaster.train.outputs import save_without_hub_lookup

ROOT = Path(__file__).resolve().parents[1]
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what a fetched (GGUF-converted) base model's config names


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name resolution and hub file lookup attempted (each one fails, as on a machine without network)."""
    import peft.utils.other

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"getaddrinfo {host}")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def file_exists(repo_id: str, filename: str, **kwargs: Any) -> bool:
        calls.append(f"file_exists {repo_id}/{filename}")
        socket.getaddrinfo("huggingface.co", 443)
        return False

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(peft.utils.other, "file_exists", file_exists)
    return calls


def _lora(targets: list[str]) -> Any:
    from peft import LoraConfig, get_peft_model

    model = tiny_model(tiny_tokenizer(), hidden=32, layers=1)
    model.name_or_path = HUB_ID  # a hub id, not a local directory: what makes PEFT look it up
    return get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=targets))


def test_adapter_save_asks_no_hub(lookups: list[str], tmp_path: Path) -> None:
    # The hook sees PEFT's lookup: its default save asks the hub for the base model's config.json, and warns.
    with warnings.catch_warnings(record=True) as default_warnings:
        warnings.simplefilter("always")
        _lora(["q_proj", "v_proj"]).save_pretrained(tmp_path / "default")
    assert any(HUB_ID in call for call in lookups), lookups
    assert any("Unable to fetch" in str(w.message) for w in default_warnings)

    lookups.clear()
    model = _lora(["q_proj", "v_proj"])
    save_without_hub_lookup(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save_pretrained(tmp_path / "adapter", is_main_process=True)  # as the Trainer saves a checkpoint
    assert lookups == []
    assert [str(w.message) for w in caught] == []
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and all("lora_" in k for k in keys)  # LoRA weights only: no embedding layers


def test_targeted_embedding_layers_are_saved_without_a_lookup(lookups: list[str], tmp_path: Path) -> None:
    model = _lora(["q_proj", "embed_tokens"])
    save_without_hub_lookup(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save_pretrained(tmp_path / "adapter")
    assert lookups == [] and [str(w.message) for w in caught] == []
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert any(k.endswith("embed_tokens.base_layer.weight") for k in keys), keys  # the whole embedding, as "auto"


def test_gguf_conversion_draws_no_library_bar(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """transformers' GGUF loader draws its own tqdm bar (not switched off by disable_progress_bar): none is drawn."""
    from gguf_fixtures import write_llama_gguf

    from sqlmaster.logs import setup_logging
    from sqlmaster.models.offline import convert_gguf

    setup_logging()  # as `models fetch` and quickstart's fetch phase do: transformers' own bars off
    written = write_llama_gguf(tmp_path / "model.gguf")
    capfd.readouterr()
    convert_gguf(written.path, tmp_path / "out")
    out, err = capfd.readouterr()
    assert "GGUF tensors" not in out + err and "it/s" not in out + err, err
    assert (tmp_path / "out" / "config.json").is_file()


# Python warnings, library log lines and prints, tqdm bars
WARNING_LINE = re.compile(r"Warning\b|warnings\.warn|\bwarn\(|Unable to fetch|\[INFO\]|^\[transformers\]|it/s\]")


def test_a_tiny_train_and_eval_print_no_library_warning_or_duplicate_line(tmp_path: Path) -> None:
    """`sqlmaster train` (LoRA, W&B offline, a checkpoint and the final save) then `sqlmaster eval run`, as README
    command 1 runs them: no Python warning, library print or tqdm bar in the output, and no line printed twice."""
    from _micro import MICRO_SFT

    run = tmp_path / "run"
    # LoRA as the pretrained models train (tiny needs its embeddings trained too); untied, because PEFT warns about
    # adapting tied layers without ensure_weight_tying (a tiny-LoRA-only case, left as it is).
    lora = ["model.mode=lora", "model.modules_to_save=[embed_tokens, lm_head]", "model.tiny_tie_embeddings=false"]
    train = [*(x for x in MICRO_SFT if x != "tracking.wandb_mode=disabled"), *lora, "tracking.wandb_mode=offline"]
    train += ["data.max_train_rows=16", "training.max_steps=2", "training.eval_steps=2", "training.save_steps=2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PYTHONWARNINGS"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{ROOT / 'cli'}", TOKENIZERS_PARALLELISM="false")
    outputs = []
    for args in (
        ["train", "--model", "tiny", "--output-dir", str(run), *(a for s in train for a in ("--set", s))],
        ["eval", "run", "--model", "tiny", "--adapter", str(run), "--output-dir", str(run), "--limit", "4"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "sqlmaster.cli", *args], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout + done.stderr)
    lines = [line for out in outputs for line in out.splitlines()]
    assert not [x for x in lines if WARNING_LINE.search(x)], "\n".join(lines)
    stamped = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", x) for x in lines if x.strip()]
    assert len(stamped) == len(set(stamped)), "\n".join(lines)
    assert (run / "eval" / "sql-create-context-test" / "metrics.json").is_file()
