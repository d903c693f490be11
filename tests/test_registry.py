"""The model registry: names, hub ids, per-model settings, and architecture facts checked offline."""

import pytest

from sqlmaster.errors import ConfigError
from sqlmaster.models.registry import MODELS, SEVEN_B_MODELS, lora_trainable_parameters, resolve_model


def test_every_7b_model_is_a_pinned_hub_model_with_shipped_config_values() -> None:
    """Read from the registry, not a list kept here: a new entry is checked the moment it is added."""
    cpu_sized = {name for name, spec in MODELS.items() if spec.cpu_sized}
    assert cpu_sized == {"smollm2-135m", "gemma3-270m"}
    assert set(SEVEN_B_MODELS) == set(MODELS) - {"tiny"} - cpu_sized
    for name in [*SEVEN_B_MODELS, *cpu_sized]:  # the CPU-sized ones are real hub models too, with offline copies
        spec = MODELS[name]
        org, repo = spec.hub_id.split("/")
        assert org and repo, spec.hub_id
        cfg = spec.config()  # shipped config.json values: architecture facts offline
        assert cfg["_source"].startswith(f"config.json of {spec.hub_id}")
        assert cfg["hidden_size"] % cfg["num_attention_heads"] == 0 or "head_dim" in cfg
        assert spec.pad_token, f"{name}: a pad token that is never a training target must be chosen"
        assert spec.description


def test_new_models_are_pinned_and_pad_with_reserved_tokens() -> None:
    qwen, llama = MODELS["qwen2.5-7b"], MODELS["llama3.1-8b"]
    assert (qwen.hub_id, qwen.gated) == ("Qwen/Qwen2.5-7B", False)
    assert (llama.hub_id, llama.gated) == ("meta-llama/Llama-3.1-8B", True)
    # Neither base model has a pad token of its own that is not EOS: both pad with a reserved special token.
    assert qwen.pad_token == "<|fim_pad|>" and llama.pad_token == "<|finetune_right_pad_id|>"
    for spec in (qwen, llama):
        assert spec.revision and len(spec.revision) == 40
        assert not spec.trust_remote_code


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
        # computed from the shipped shapes, r * (fan_in + fan_out) per adapted matrix:
        # Qwen2.5-7B: hidden 3584, 28 heads x 128, 4 KV heads (512), MLP 18944, 28 layers ->
        #   16 * (2*7168 + 2*4096 + 3*22528) = 1,441,792 per layer, x 28
        ("qwen2.5-7b", 40_370_176),
        # Llama 3.1 8B: the same shapes as Mistral 7B (4096, 8 KV heads of 128, MLP 14336, 32 layers) ->
        #   16 * (2*8192 + 2*5120 + 3*18432) = 1,310,720 per layer, x 32
        ("llama3.1-8b", 41_943_040),
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
    other = resolve_model("org/some-7b-model")
    assert other.hub_id == "org/some-7b-model" and other.pad_token is None  # generic settings
    assert resolve_model(str(tmp_path)).hub_id == str(tmp_path)


def test_a_registry_model_named_by_its_hub_id_keeps_its_registry_facts() -> None:
    for spec in MODELS.values():
        if not spec.is_tiny:
            assert resolve_model(spec.hub_id) is spec  # pad token, revision pin, LoRA targets


def test_registry_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, sqlmaster.models.registry, sqlmaster.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
