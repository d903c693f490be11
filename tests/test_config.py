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
        ({"data": {"ROLE": "x"}}, r"unknown key\(s\) \['ROLE'\] in recipe section 'data'"),
        ({"training": {"SECTION": "x"}}, r"unknown key\(s\) \['SECTION'\] in recipe section 'training'"),
        ({"training": {"max_steps": "many"}}, "training.max_steps must be an integer"),
        ({"training": {"packing": "yes"}}, "training.packing must be true or false"),
        ({"model": {"mode": "qlora"}}, r"model.mode must be one of lora, full \(got 'qlora'\)"),
        ({"prompt": {"template": "fancy"}}, "prompt.template must be one of original, compact"),
        ({"training": {"save_steps": 30, "eval_steps": 20}}, "save_steps must be a multiple"),
        (
            {"training": {"time_budget_minutes": 18, "max_time_minutes": 6}},
            r"training.max_time_minutes=6 would stop training before training.time_budget_minutes=18 ends.*"
            r"--set training.max_time_minutes=22, or set it to null",
        ),
        ({"training": {"time_budget_minutes": 6, "max_time_minutes": 6}}, r"max_time_minutes=6 would stop"),
        ({"output": {"push_to_hub": True}}, "needs output.hub_repo_id"),
        ({"model": {"tiny_hidden_size": 100, "tiny_heads": 3}}, "multiple of 2 x model.tiny_heads"),
        ({"model": {"tiny_heads": 0}}, r"model.tiny_heads must be >= 1 \(got 0\)\. .*--set model.tiny_heads=4"),
        ({"data": {"max_train_rows": 0}}, r"data.max_train_rows must be >= 1 .*--set data.max_train_rows=null"),
        ({"training": {"warmup_steps": -5}}, r"training.warmup_steps must be >= 0 \(got -5\)"),
        ({"evaluation": {"batch_size": 0}}, r"evaluation.batch_size must be >= 1"),
        ({"training": {"learning_rate": "1e400"}}, r"training.learning_rate must be a finite number \(got inf\)"),
        ({"training": {"learning_rate": float("nan")}}, r"training.learning_rate must be a finite number"),
        ({"training": {"learning_rate": 0}}, r"training.learning_rate must be > 0"),
        ({"evaluation": {"top_p": 1.5}}, r"evaluation.top_p must be <= 1"),
        ({"model": {"target_modules": []}}, r"model.target_modules must be non-empty"),
        ({"model": {"target_modules": "q_proj"}}, r"model.target_modules must be a list of strings"),
        ({"data": {"source": ""}}, r"data.source must be non-empty"),
        ({"training": {"seed": -1}}, r"training.seed must be >= 0"),
        ({"training": {"num_threads": 1.5}}, r"training.num_threads must be an integer or null"),
        ({"training": [1]}, "must be a mapping"),
        ({"grpo": {"num_generations": 1}}, r"grpo.num_generations must be >= 2"),
        ({"grpo": {"executes_credit": 1.0}}, r"grpo.executes_credit must be below grpo.match_reward"),
        ({"grpo": {"match_reward": 0.05}}, r"grpo.executes_credit must be below grpo.match_reward"),
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


def test_direct_construction_is_checked_too() -> None:
    """The checks live in the sections, so code that builds a section (e.g. from run.json) gets them as well."""
    from sqlmaster.config import TrainingConfig

    with pytest.raises(ConfigError, match=r"training\.max_steps must be >= 1"):
        TrainingConfig(max_steps=0)


def test_helm_style_set_keys_are_explained() -> None:
    with pytest.raises(ConfigError, match=r"Helm-style key .* e\.g\. --set training\.max_steps=5"):
        parse_override("runs[0].recipe.training.max_steps=5")


def test_every_key_has_help_and_a_json_schema() -> None:
    """`sqlmaster recipe keys` and the charts' schemas come from the same declarations."""
    from dataclasses import fields

    from sqlmaster.config import SECTIONS, recipe_json_schema, recipe_keys

    keys = recipe_keys()
    assert [k.key for k in keys] == [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]
    assert all(k.help and k.schema["description"] == k.help for k in keys)
    by_key = {k.key: k for k in keys}
    assert by_key["training.max_steps"].type == "int" and by_key["training.max_steps"].default == 500
    assert by_key["training.max_steps"].constraint_text() == ">= 1"
    assert by_key["training.num_threads"].type == "int | null"
    assert by_key["model.mode"].constraint_text() == "one of lora, full"

    schema = recipe_json_schema()
    assert schema["additionalProperties"] is False and set(schema["properties"]) == set(SECTIONS)
    training = schema["properties"]["training"]
    assert training["additionalProperties"] is False
    assert training["properties"]["learning_rate"] == {
        "description": by_key["training.learning_rate"].help,
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 3e-4,
    }
    assert training["properties"]["early_stopping_patience"]["type"] == ["integer", "null"]
    assert schema["properties"]["model"]["properties"]["mode"]["enum"] == ["lora", "full"]
    assert schema["properties"]["evaluation"]["properties"]["datasets"]["default"] == ["sql-create-context-test"]


def test_every_default_satisfies_its_own_schema() -> None:
    """A default that broke its own constraints would make every recipe invalid; jsonschema checks both ways."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with kubernetes-validate (dev extra)")
    from sqlmaster.config import recipe_json_schema

    jsonschema.validate(Recipe().to_dict(), recipe_json_schema())
    bad = Recipe().to_dict()
    bad["training"]["warmup_steps"] = -5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, recipe_json_schema())


def test_a_models_recipe_is_its_default() -> None:
    """`sqlmaster train --model tiny` (no --recipe) starts from jobs/train/tiny.yaml and says so."""
    from sqlmaster.recipes import resolve_recipe

    tiny = resolve_recipe("train", "tiny", None, ["training.max_steps=20"])
    assert tiny.file == Path(__file__).parents[1] / "jobs" / "train" / "tiny.yaml"
    assert tiny.recipe.model.mode == "full" and tiny.recipe.training.packing is False  # tiny's own CPU recipe
    assert tiny.sources["model.mode"] == str(tiny.file) and tiny.sources["training.max_steps"] == "--set"
    assert tiny.sources["training.lr_scheduler_type"] == "default"
    assert "tiny's own recipe" in tiny.describe() and "+ 1 --set value" in tiny.describe()
    hub = resolve_recipe("train", "someorg/somemodel")
    assert hub.file is None and hub.recipe == Recipe() and "is not a registry model" in hub.describe()
    by_hub_id = resolve_recipe("train", "mistralai/Mistral-7B-v0.1")  # a registry model by its hub id: its recipe
    assert by_hub_id.file == Path(__file__).parents[1] / "jobs" / "train" / "mistral7b.yaml"
    assert "mistral7b's own recipe" in by_hub_id.describe()
    explicit = resolve_recipe("train", "tiny", Path(__file__).parents[1] / "jobs" / "train" / "mistral7b.yaml")
    assert explicit.origin == "--recipe" and explicit.recipe.model.mode == "lora"
    with pytest.raises(ConfigError, match="unknown model 'mistral-7'"):
        resolve_recipe("train", "mistral-7")


def test_recipe_hash_covers_what_defines_a_run_only() -> None:
    from sqlmaster.train.guard import recipe_hash

    base = recipe_hash("tiny", Recipe())
    assert recipe_hash("tiny", load_recipe(None, ["training.num_threads=2", "evaluation.limit=5"])) == base
    assert recipe_hash("tiny", load_recipe(None, ["data.seed=7"])) != base
    assert recipe_hash("tiny", load_recipe(None, ["training.max_steps=7"])) != base
    assert recipe_hash("mistral7b", Recipe()) != base


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    import json

    from sqlmaster.atomic import atomic_dir, atomic_open, write_json

    target = tmp_path / "metrics.json"
    write_json(target, {"loss": float("nan"), "steps": [1.0, float("inf")]})
    assert json.loads(target.read_text()) == {"loss": None, "steps": [1.0, None]}  # NaN is not JSON
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half a fi")
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text())["steps"] == [1.0, None]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind

    weights = tmp_path / "adapter"
    with atomic_dir(weights) as tmp:
        (tmp / "a.bin").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(weights) as tmp:
        (tmp / "a.bin").write_text("half")
        raise RuntimeError("crash while saving")
    assert (weights / "a.bin").read_text() == "old"
    with atomic_dir(weights) as tmp:
        (tmp / "b.bin").write_text("new")
    assert sorted(p.name for p in weights.iterdir()) == ["b.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "metrics.json"]


def test_every_key_has_a_role_for_run_directories() -> None:
    from sqlmaster.config import ROLES, recipe_keys

    roles = {k.key: k.role for k in recipe_keys()}
    assert set(roles.values()) <= set(ROLES)
    assert roles["data.seed"] == roles["prompt.template"] == roles["model.tiny_layers"] == "identity"
    assert roles["training.max_steps"] == "resumable"
    assert roles["training.num_threads"] == roles["evaluation.batch_size"] == "runtime"


def test_max_steps_means_that_many_steps_even_with_a_time_budget() -> None:
    """`sqlmaster train --model tiny --max-steps 20` trains 20 steps: tiny's recipe trains for a time budget."""
    from sqlmaster.cli import _train_overrides
    from sqlmaster.recipes import resolve_recipe

    assert resolve_recipe("train", "tiny").recipe.training.time_budget_minutes is not None
    quick = resolve_recipe("train", "tiny", None, _train_overrides(None, 20)).recipe.training
    assert quick.max_steps == 20 and quick.time_budget_minutes is None
    both = _train_overrides(["training.time_budget_minutes=2"], 20)
    assert resolve_recipe("train", "tiny", None, both).recipe.training.time_budget_minutes == 2


def test_template_choices_and_help_come_from_the_template_registry() -> None:
    from sqlmaster.config import recipe_keys
    from sqlmaster.prompt import TEMPLATES

    (spec,) = [k for k in recipe_keys() if k.key == "prompt.template"]
    assert spec.constraints["choices"] == tuple(TEMPLATES)
    for name in TEMPLATES:  # every template, tiny's `terse` included, is named in the generated help
        assert f'"{name}"' in spec.help and name in spec.schema["enum"]


def test_bounds_are_one_table() -> None:
    from sqlmaster.config import BOUNDS, knob, recipe_keys

    with pytest.raises(TypeError, match="unknown bound"):
        knob("a typo must fail at import, not pass as no bound", minimun=1)
    (spec,) = [k for k in recipe_keys() if k.key == "evaluation.top_p"]
    assert spec.constraint_text() == "> 0, <= 1"
    assert spec.schema["exclusiveMinimum"] == 0 and spec.schema["maximum"] == 1
    assert {b.json_keyword for b in BOUNDS.values()} == {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}


def test_settings_classes_take_their_defaults_from_the_recipe() -> None:
    # One declaration per value: the generator's, tiny's and the scorer's settings read the recipe's defaults,
    # and from a recipe section they take its values.
    from sqlmaster.config import EvaluationConfig, ModelConfig, TrainingConfig
    from sqlmaster.evaluate.execution import prepare_example
    from sqlmaster.evaluate.generate import GenerationSettings
    from sqlmaster.evaluate.score import ScoreSettings
    from sqlmaster.evaluate.synth import DATABASES_PER_EXAMPLE
    from sqlmaster.models.tiny import TRAINING_SEED, TinyArchitecture, architecture_from

    evaluation, model = EvaluationConfig(), ModelConfig()
    generation = GenerationSettings()
    for name in ("max_new_tokens", "batch_size", "do_sample", "temperature", "top_p", "top_k"):
        assert getattr(generation, name) == getattr(evaluation, name), name
    assert generation.seed == TRAINING_SEED == TrainingConfig().seed
    assert GenerationSettings.from_config(EvaluationConfig(batch_size=3, top_k=7)).batch_size == 3
    assert TinyArchitecture() == architecture_from(model)
    assert architecture_from(ModelConfig(tiny_layers=2, tiny_pre_tokenizer="runs")).num_hidden_layers == 2
    assert ScoreSettings().databases_per_example == DATABASES_PER_EXAMPLE == evaluation.databases_per_example
    prepared = prepare_example("CREATE TABLE t (a INTEGER)", "SELECT a FROM t")
    assert len(prepared.synth.databases) == evaluation.databases_per_example


def test_a_safety_net_above_the_time_budget_or_none_is_accepted() -> None:
    assert recipe_from_dict({"training": {"time_budget_minutes": 18, "max_time_minutes": 22}}).training.max_time_minutes
    assert recipe_from_dict({"training": {"time_budget_minutes": 18, "max_time_minutes": None}}).training
    assert recipe_from_dict({"training": {"time_budget_minutes": None, "max_time_minutes": 1}}).training
