"""The recipe: every knob of a run, as typed dataclasses with one precedence order.

    dataclass defaults (the original 7B-SQLMaster recipe)  <  recipe YAML file  <  --set section.key=value

A recipe file is YAML with one mapping per section (``data``, ``prompt``, ``model``, ``training``, ``output``,
``tracking``, ``evaluation``); it is exactly the ``recipe:`` value of a ``jobs/`` values file, so Helm and
sqlctl carry the same recipe. Unknown sections or keys are errors: a typo must not silently train with a
default. The resolved recipe is saved in every run directory (``run.json``).
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sqlmaster.errors import ConfigError


@dataclass
class DataConfig:
    """Where the examples come from and how they are split."""

    source: str = "shipped"  # "shipped" (sample inside the package), a hub id, or a .json/.jsonl/.parquet path
    validation_size: int = 100  # rows held out for eval loss / early stopping (the original used 100)
    test_size: int = 500  # rows held out for evaluation; never seen in training
    seed: int = 1399  # split seed (the original's)
    dedupe: bool = True  # drop exact duplicate (question, context, answer) rows
    drop_invalid_gold: bool = False  # drop rows whose gold SQL fails on its own schema (2.1% of the sample)
    exclude_spider_dev: bool = False  # drop training rows whose question is a Spider dev question
    max_train_rows: int | None = None  # cap on training rows (after the split), for quick runs

    def __post_init__(self) -> None:
        if self.validation_size < 1 or self.test_size < 0:
            raise ConfigError("data.validation_size must be >= 1 and data.test_size >= 0")


@dataclass
class PromptConfig:
    """Which prompt template frames question and schema (see sqlmaster/prompt.py)."""

    template: str = "original"  # "original" (the 7B recipes) or "compact" (tiny)

    def __post_init__(self) -> None:
        from sqlmaster.prompt import get_template

        get_template(self.template)


@dataclass
class ModelConfig:
    """How the base model is adapted."""

    mode: str = "lora"  # "lora" (the 7B recipes) or "full" (all parameters; tiny)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None = the registry's list for the model
    modules_to_save: list[str] | None = None  # extra modules trained in full next to LoRA
    attn_implementation: str = "auto"  # auto = flash_attention_2 when importable on CUDA, else sdpa
    dtype: str = "auto"  # auto = bf16 on GPU, fp32 on CPU; or bfloat16 | float16 | float32
    gradient_checkpointing: bool = True  # trade ~30% compute for activations that fit long packs
    revision: str | None = None  # hub revision of the base model (None = registry pin or main)
    # Architecture of the `tiny` model (built from config; ignored for every other model).
    tiny_vocab_size: int = 4096  # BPE vocabulary trained on the training split
    tiny_hidden_size: int = 192
    tiny_layers: int = 4
    tiny_heads: int = 4
    tiny_intermediate_size: int = 512
    tiny_tie_embeddings: bool = False  # untied embeddings/head learned better at this size (measured)
    tiny_split_digits: bool = False  # every digit its own token: ids and numbers are copied digit by digit

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full"):
            raise ConfigError(f"model.mode must be 'lora' or 'full', not {self.mode!r}")
        if self.attn_implementation not in ("auto", "flash_attention_2", "sdpa", "eager"):
            raise ConfigError("model.attn_implementation must be one of auto, flash_attention_2, sdpa, eager")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError("model.dtype must be one of auto, bfloat16, float16, float32")
        if self.lora_r < 1:
            raise ConfigError("model.lora_r must be >= 1")
        if self.tiny_hidden_size % self.tiny_heads:
            raise ConfigError("model.tiny_hidden_size must be a multiple of model.tiny_heads")


@dataclass
class TrainingConfig:
    """Optimisation; defaults are the original recipe (one A100-80GB)."""

    max_steps: int = 500  # optimizer steps
    per_device_train_batch_size: int = 8  # sequences per device per micro-step
    gradient_accumulation_steps: int = 4  # 8 x 4 x 1024 = 32,768 tokens per step when packed
    learning_rate: float = 3.0e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 100
    max_grad_norm: float = 0.3
    weight_decay: float = 0.0
    seed: int = 1399
    max_length: int = 1024  # tokens per (packed) sequence
    packing: bool = True  # padding-free packing; examples never attend to each other
    eval_steps: int = 20
    save_steps: int = 20  # checkpoint cadence: a preempted pod loses at most this many steps
    logging_steps: int = 10
    early_stopping_patience: int | None = 1  # evaluations without improvement; None disables
    save_total_limit: int = 3
    num_threads: int | None = None  # CPU threads for torch (None = torch default)
    max_time_minutes: float | None = None  # stop cleanly (with a checkpoint) after this wall time
    bf16: bool | None = None  # bf16 autocast; None = on where the GPU supports it, off on CPU
    group_by_length: bool = False  # without packing: batch examples of similar length (less padding)
    completion_only_loss: bool = True  # loss on the SQL only; prompt tokens get label -100
    eval_batch_size: int | None = None  # per device; None = per_device_train_batch_size
    # Train for wall time instead of max_steps (sqlmaster/train/budget.py): the LR schedule is laid over the budget.
    time_budget_minutes: float | None = None  # None = train max_steps; set = max_steps is ignored
    budget_decay_fraction: float = (
        1.0  # last fraction of the budget with LR decay (1.0 cosine, 0.2 warm-up-stable-decay)
    )
    budget_evaluations: int = 4  # evaluations + checkpoints at even fractions of the budget

    def __post_init__(self) -> None:
        for name in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name} must be >= 1")
        if self.learning_rate <= 0:
            raise ConfigError("training.learning_rate must be > 0")
        if self.eval_steps < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise ConfigError("training.eval_steps, save_steps and logging_steps must be >= 1")
        if self.early_stopping_patience is not None and self.save_steps % self.eval_steps:
            raise ConfigError(
                "training.save_steps must be a multiple of training.eval_steps with early stopping "
                "(the best checkpoint must exist); e.g. set both to 20"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError("training.num_threads must be >= 1 (or null for torch's default)")
        if self.max_time_minutes is not None and self.max_time_minutes <= 0:
            raise ConfigError("training.max_time_minutes must be > 0 (or null for no limit)")
        if self.time_budget_minutes is not None and self.time_budget_minutes <= 0:
            raise ConfigError("training.time_budget_minutes must be > 0 (or null to train max_steps)")
        if not 0 < self.budget_decay_fraction <= 1:
            raise ConfigError("training.budget_decay_fraction must be in (0, 1], e.g. 1.0 (cosine) or 0.2")
        if self.budget_evaluations < 0:
            raise ConfigError("training.budget_evaluations must be >= 0")


@dataclass
class OutputConfig:
    """What is written besides the adapter."""

    merge: bool = False  # also save base+adapter merged into full weights (merged/)
    push_to_hub: bool = False  # push the adapter (not an empty post-merge file) to the hub
    hub_repo_id: str | None = None  # e.g. "my-org/mistral7b-sql-lora"; required with push_to_hub

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.hub_repo_id:
            raise ConfigError("output.push_to_hub needs output.hub_repo_id, e.g. --set output.hub_repo_id=org/name")


@dataclass
class TrackingConfig:
    """Experiment tracking."""

    wandb_project: str = "sqlmaster"
    wandb_mode: str = "auto"  # auto = online with WANDB_API_KEY, else offline; or online | offline | disabled

    def __post_init__(self) -> None:
        if self.wandb_mode not in ("auto", "online", "offline", "disabled"):
            raise ConfigError("tracking.wandb_mode must be one of auto, online, offline, disabled")


@dataclass
class EvaluationConfig:
    """How a trained run is evaluated."""

    datasets: list[str] = field(default_factory=lambda: ["sql-create-context-test"])
    limit: int | None = None  # examples per dataset (None = all)
    batch_size: int = 16
    max_new_tokens: int = 128
    do_sample: bool = False  # greedy by default: a metric should not depend on a dice roll
    temperature: float = 0.5  # used only with do_sample (the original's sampling settings)
    top_p: float = 0.9
    top_k: int = 100
    databases_per_example: int = 3  # synthesized databases per example for execution accuracy
    backend: str = "auto"  # auto = vllm when installed and on GPU, else hf

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "hf", "vllm"):
            raise ConfigError("evaluation.backend must be one of auto, hf, vllm")
        if self.databases_per_example < 1:
            raise ConfigError("evaluation.databases_per_example must be >= 1")


@dataclass
class Recipe:
    """A whole run: one field per section."""

    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type] for f in fields(Recipe)}


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Build a Recipe from defaults, an optional YAML file and ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_recipe_file(Path(path))
    for item in overrides or []:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})[key] = value
    return recipe_from_dict(raw)


def read_recipe_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read recipe file {path}: {exc.strerror}. Check the path") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe file {path} must be a mapping of sections (data, model, training, ...)")
    # A jobs/ values file may be passed directly: take the recipe of its single run.
    if "runs" in data and "recipe" not in data:
        runs = data["runs"]
        if not isinstance(runs, list) or len(runs) != 1:
            raise ConfigError(f"{path} is a values file with {len(runs)} runs; pass a recipe file instead")
        data = runs[0].get("recipe", {}) or {}
    return data


def parse_override(item: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value``; the value is YAML (so 3e-4, true, null and [a, b] work)."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"bad override {item!r}: write it as section.key=value, e.g. training.max_steps=100")
    dotted, value_text = item.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text
    return section, key, value


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    unknown_sections = set(raw) - set(SECTIONS)
    if unknown_sections:
        raise ConfigError(
            f"unknown recipe section(s) {sorted(unknown_sections)}. Valid sections: {', '.join(SECTIONS)}"
        )
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"recipe section {name!r} must be a mapping, not {type(values).__name__}")
        valid = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(valid)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {sorted(unknown)} in recipe section {name!r}. Valid keys: {', '.join(valid)}"
            )
        coerced = {key: _coerce(f"{name}.{key}", value, valid[key].type) for key, value in values.items()}
        built[name] = cls(**coerced)
    return Recipe(**built)


def _coerce(where: str, value: Any, annotation: Any) -> Any:
    """Check (and gently convert) a YAML value against a dataclass field's type annotation."""
    hint = _resolve(annotation)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(where, value, non_none[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, e.g. [a, b]")
        return [_coerce(where, v, args[0]) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, not {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "3e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, not {value!r}")
    return value


def _resolve(annotation: Any) -> Any:
    if isinstance(annotation, str):
        return eval(annotation, {**globals(), "typing": typing})  # annotations are our own, postponed
    return annotation


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
