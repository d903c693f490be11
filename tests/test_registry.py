"""The model registry: names, hub ids, per-model settings, and architecture facts checked offline."""

import pytest

from sqlmaster.errors import ConfigError
from sqlmaster.models.registry import MODELS, SEVEN_B_MODELS, lora_trainable_parameters, resolve_model


def test_four_seven_b_models_and_tiny() -> None:
    assert set(MODELS) == {"gemma7b", "mistral7b", "deci7b", "llama2-7b", "tiny"}
    assert {MODELS[m].hub_id for m in SEVEN_B_MODELS} == {
        "google/gemma-7b",
        "mistralai/Mistral-7B-v0.1",
        "Deci/DeciLM-7B",
        "meta-llama/Llama-2-7b-hf",
    }


def test_per_model_settings_follow_the_original() -> None:
    assert MODELS["gemma7b"].pad_token == "<pad>"
    for name in ("mistral7b", "llama2-7b", "deci7b"):
        assert MODELS[name].pad_token == "<unk>"
    assert MODELS["deci7b"].trust_remote_code
    assert not any(MODELS[m].trust_remote_code for m in ("gemma7b", "mistral7b", "llama2-7b"))
    assert MODELS["gemma7b"].gated and MODELS["llama2-7b"].gated and MODELS["mistral7b"].gated
    assert all(MODELS[m].padding_side_generate == "left" for m in MODELS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # trainable-parameter counts printed by the original notebooks (r=16 on q,k,v,o,gate,up,down)
        ("mistral7b", 41_943_040),
        ("llama2-7b", 39_976_960),
        ("gemma7b", 50_003_968),
        ("deci7b", 41_168_896),
    ],
)
def test_lora_parameter_counts_match_the_original_runs(name: str, expected: int) -> None:
    assert lora_trainable_parameters(MODELS[name], r=16) == expected


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model("mistral-7")
    message = str(info.value)
    assert "unknown model 'mistral-7'" in message
    for name in MODELS:
        assert name in message


def test_hub_ids_and_paths_are_accepted(tmp_path) -> None:
    assert resolve_model("Qwen/Qwen2.5-7B").hub_id == "Qwen/Qwen2.5-7B"
    assert resolve_model(str(tmp_path)).hub_id == str(tmp_path)


def test_registry_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, sqlmaster.models.registry, sqlmaster.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
