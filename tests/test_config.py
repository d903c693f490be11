"""The recipe: precedence defaults < file < --set, unknown keys and bad values are clear errors."""

from pathlib import Path

import pytest

from sqlmaster.config import Recipe, load_recipe, parse_override, recipe_from_dict
from sqlmaster.errors import ConfigError


def test_defaults_are_the_original_recipe() -> None:
    r = Recipe()
    assert (r.model.mode, r.model.lora_r, r.model.lora_alpha, r.model.lora_dropout) == ("lora", 16, 32, 0.05)
    t = r.training
    assert (t.max_steps, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (500, 8, 4)
    assert (t.learning_rate, t.lr_scheduler_type, t.warmup_steps, t.max_grad_norm) == (3e-4, "cosine", 100, 0.3)
    assert (t.max_length, t.packing, t.eval_steps, t.save_steps, t.early_stopping_patience) == (1024, True, 20, 20, 1)
    assert r.prompt.template == "original" and r.data.validation_size == 100 and r.data.seed == 1399


def test_precedence_defaults_then_file_then_set(tmp_path: Path) -> None:
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text("training:\n  max_steps: 50\n  learning_rate: 1e-3\nprompt: {template: compact}\n")
    r = load_recipe(recipe_file, ["training.max_steps=7", "model.target_modules=[q_proj, v_proj]"])
    assert r.training.max_steps == 7  # --set beats the file
    assert r.training.learning_rate == 1e-3  # the file beats the default (YAML 1.1 reads 1e-3 as a string)
    assert r.prompt.template == "compact"
    assert r.training.per_device_train_batch_size == 8  # untouched default
    assert r.model.target_modules == ["q_proj", "v_proj"]


def test_a_jobs_values_file_is_accepted(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("runId: x\nruns:\n  - model: tiny\n    recipe:\n      training: {max_steps: 3}\n")
    assert load_recipe(values).training.max_steps == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"training": {"max_step": 3}}, r"unknown key\(s\) \['max_step'\] in recipe section 'training'"),
        ({"trainer": {}}, r"unknown recipe section\(s\) \['trainer'\]"),
        ({"training": {"max_steps": "many"}}, "training.max_steps must be an integer"),
        ({"training": {"packing": "yes"}}, "training.packing must be true or false"),
        ({"model": {"mode": "qlora"}}, "model.mode must be 'lora' or 'full'"),
        ({"prompt": {"template": "fancy"}}, "unknown prompt template 'fancy'"),
        ({"training": {"save_steps": 30, "eval_steps": 20}}, "save_steps must be a multiple"),
        ({"output": {"push_to_hub": True}}, "needs output.hub_repo_id"),
        ({"model": {"tiny_hidden_size": 100, "tiny_heads": 3}}, "multiple of model.tiny_heads"),
        ({"training": [1]}, "must be a mapping"),
    ],
)
def test_bad_recipes_name_the_problem(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(raw)


def test_bad_override_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"write it as section\.key=value"):
        parse_override("max_steps=3")
    with pytest.raises(ConfigError, match="cannot read recipe file"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)


def test_tiny_architecture_fields_do_not_change_seven_b_defaults() -> None:
    r = load_recipe(None, ["model.tiny_hidden_size=64", "model.tiny_heads=2"])
    assert (r.model.tiny_hidden_size, r.model.tiny_heads) == (64, 2)
    assert r.model.mode == "lora" and r.model.target_modules is None


@pytest.mark.parametrize("chart", ["sqlmaster-train", "sqlmaster-eval"])
def test_chart_schemas_know_exactly_the_recipe_keys(chart: str) -> None:
    """The charts validate recipes at `helm install` time; their key lists must follow sqlmaster/config.py."""
    import json
    from dataclasses import fields
    from pathlib import Path

    from sqlmaster.config import SECTIONS

    schema = json.loads((Path(__file__).parent.parent / "charts" / chart / "values.schema.json").read_text())
    sections = schema["$defs"]["recipe"]["properties"]
    assert set(sections) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert set(sections[name]["properties"]) == {f.name for f in fields(cls)}, f"recipe section {name}"
