"""The recipe: every knob of a run, as typed dataclasses with one precedence order.

    dataclass defaults (the original 7B-SQLMaster recipe)  <  recipe YAML file  <  --set section.key=value

A recipe file is YAML with one mapping per section (``data``, ``prompt``, ``model``, ``training``, ``output``,
``tracking``, ``evaluation``, ``grpo``); it is exactly the ``recipe:`` value of a ``jobs/`` values file, so Helm and
sqlctl carry the same recipe. Unknown sections or keys are errors: a typo must not silently train with a
default. The resolved recipe is saved in every run directory (``run.json``).

Every key is declared once, here: its type (the annotation), its default, and in ``field(metadata=knob(...))``
its help text and constraints (bounds, choices). Validation, ``sqlmaster recipe keys`` and the charts'
``values.schema.json`` recipe sections (``recipe_json_schema()``) are all derived from these declarations;
rules between keys live in each section's ``check()``.
"""

from __future__ import annotations

import math
import operator
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import yaml

from sqlmaster import boundedyaml
from sqlmaster.engines import ENGINE_NAMES
from sqlmaster.errors import ConfigError
from sqlmaster.models.attention import ATTN_CHOICES
from sqlmaster.models.pretokenizers import PRE_TOKENIZERS
from sqlmaster.prompt import TEMPLATES, templates_help

SEED_MAX = 2**32 - 1  # numpy's seed range (the HF Trainer seeds numpy with it)

# Upper bounds of the keys that size memory or time, checked when the recipe is read (before anything loads): far
# above any real recipe, far below what exhausts a machine (evaluation.vote=1000000 grew to 8 GB before dying).
MAX_BATCH = 1024  # sequences, prompts or micro-steps per step; the largest shipped recipe uses 32
MAX_TOKENS = 131_072  # tokens per training sequence: the longest context of the registry's models
MAX_NEW_TOKENS = 8192  # generated tokens per answer: a SQL query is ~50; a 128k-context model generates 8k at most
MAX_VOTES = 64  # vote@N samples per prompt: published vote@N uses 8 to 32 (each keeps its scores until decoded)
MAX_GROUP = 256  # GRPO samples per prompt: published groups are 8 to 64
MAX_MINUTES = 43_200.0  # 30 days of wall time
MAX_PROCESSES = 1024  # CPU threads or processes of one machine
MAX_LORA_RANK = 1024  # LoRA rank; recipes use 8 to 64
MAX_VOCAB = 262_144  # tiny's BPE vocabulary: the largest real vocabulary (Gemma 3)
MAX_WIDTH = 16_384  # tiny's hidden size (a 70B model's is 8,192)
MAX_LAYERS = 256  # tiny's layers or heads


@dataclass(frozen=True)
class Bound:
    """One kind of numeric bound a key may declare: how it reads and how JSON Schema names it."""

    op: str  # as error messages and `recipe keys` write it: "value must be >= 1"
    json_keyword: str  # its JSON Schema keyword (the charts' values.schema.json)
    holds: Callable[[float, float], bool]  # holds(value, bound)


# The one table of bound names: knob() accepts these keywords, validation, `recipe keys` and the schema read it.
BOUNDS: dict[str, Bound] = {
    "minimum": Bound(">=", "minimum", operator.ge),
    "exclusive_minimum": Bound(">", "exclusiveMinimum", operator.gt),
    "maximum": Bound("<=", "maximum", operator.le),
    "exclusive_maximum": Bound("<", "exclusiveMaximum", operator.lt),
}


def knob(
    help: str,
    *,
    choices: Sequence[str] | None = None,
    nonempty: bool = False,
    role: str | None = None,
    **bounds: float,
) -> dict[str, Any]:
    """The ``field(metadata=...)`` of a recipe key: its help text and the constraints its values must meet.

    ``bounds`` (keywords of ``BOUNDS``: ``minimum=1``, ``exclusive_maximum=1``, ...) apply to numbers,
    ``choices`` to strings, ``nonempty`` to strings and lists; ``None`` is allowed exactly when the annotation
    says ``| None``. Numbers must also be finite (no NaN or infinity). ``role`` (default: the section's
    ``ROLE``) says what changing the key means for an existing run directory; see ``ROLES``.
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise TypeError(f"knob() got unknown bound(s) {sorted(unknown)}; bounds are {', '.join(BOUNDS)}")
    constraints = {
        **{name: bounds[name] for name in BOUNDS if name in bounds},
        "choices": tuple(choices) if choices is not None else None,
        "nonempty": nonempty or None,
    }
    extra = {"role": role} if role else {}
    return {"help": help, **{k: v for k, v in constraints.items() if v is not None}, **extra}


CONSTRAINTS = (*BOUNDS, "choices", "nonempty")

# What a changed key means for a run directory that already holds a run (sqlmaster/train/guard.py):
ROLES = {
    # the data split, prompt, weights' shape or the optimizer/scheduler state restored from checkpoints:
    # another value is another run, refused (a new --output-dir, or --overwrite)
    "identity": "defines the run: a new --output-dir or --overwrite",
    # how training continues from the last checkpoint: allowed with --resume-with-changes
    "resumable": "changes how training continues: needs --resume-with-changes",
    # no effect on the trained weights: always allowed
    "runtime": "free to change between attempts",
}


class _Section:
    """Base of the recipe sections: every field is checked against its type and ``knob`` after construction."""

    SECTION: ClassVar[str]
    ROLE: ClassVar[str] = "resumable"  # of keys whose knob names none

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for f in fields(typing.cast(Any, self)):
            key = f"{self.SECTION}.{f.name}"
            value = getattr(self, f.name)
            _check_type(key, value, hints[f.name], f)
            _check_constraints(key, value, f)
        self.check()

    def check(self) -> None:
        """Rules between keys of this section (the per-key rules come from the metadata)."""


@dataclass
class DataConfig(_Section):
    """Where the examples come from and how they are split."""

    SECTION: ClassVar[str] = "data"
    ROLE: ClassVar[str] = "identity"  # another split would leak test rows into training

    source: str = field(
        default="shipped",
        metadata=knob(
            '"shipped" (the sample inside the package), a Hugging Face dataset id, a .json/.jsonl/.parquet path, or '
            "a folder written by `sqlmaster data from-db` (its train.jsonl)",
            nonempty=True,
        ),
    )
    mix_source: str | None = field(
        default=None,
        metadata=knob(
            "a second source (same forms as data.source, e.g. shipped) mixed into the training split; null = none",
            nonempty=True,
        ),
    )
    mix_ratio: float = field(
        default=0.5,
        metadata=knob(
            "with data.mix_source: the share of training rows drawn from it (the rest from data.source)",
            minimum=0,
            exclusive_maximum=1,
        ),
    )
    live_schema: bool = field(
        default=False,
        metadata=knob(
            "Spider dev prompts show the live database's schema (CREATE TABLE with keys and example values, filtered "
            "per question to data.schema_chars) as `data from-db` writes it, instead of its bare CREATE TABLE text"
        ),
    )
    schema_chars: int = field(
        default=2000,
        metadata=knob("with data.live_schema: schema budget of one prompt in characters", minimum=200),
    )
    validation_size: int = field(
        default=100, metadata=knob("rows held out for eval loss and early stopping (the original used 100)", minimum=1)
    )
    test_size: int = field(
        default=500, metadata=knob("rows held out for evaluation; never seen in training", minimum=0)
    )
    seed: int = field(default=1399, metadata=knob("split seed (the original's)", minimum=0, maximum=SEED_MAX))
    dedupe: bool = field(default=True, metadata=knob("drop exact duplicate (question, context, answer) rows"))
    drop_invalid_gold: bool = field(
        default=False, metadata=knob("drop rows whose gold SQL fails on its own schema (2.1% of the sample)")
    )
    exclude_spider_dev: bool = field(
        default=False, metadata=knob("drop training rows whose question is a Spider dev question")
    )
    max_train_rows: int | None = field(
        default=None, metadata=knob("cap on training rows (after the split), for quick runs; null = all", minimum=1)
    )
    dialect: str = field(
        default="sqlite",
        metadata=knob(
            "SQL dialect the model learns to write: training answers are the SQLite gold transpiled to it "
            "(sqlmaster/engines/transpile.py; rows that cannot be carried over are left out and counted) and the "
            "prompt names it; sqlite keeps the data and prompts as they are",
            choices=ENGINE_NAMES,
        ),
    )
    augment_copies: int = field(
        default=0,
        metadata=knob(
            "copies of each training row with fresh table ids and values, so a model trained from scratch learns "
            "to copy them instead of memorising them (sqlmaster/data/augment.py); 0 = none",
            minimum=0,
        ),
    )


@dataclass
class PromptConfig(_Section):
    """Which prompt template frames question and schema (see sqlmaster/prompt.py)."""

    SECTION: ClassVar[str] = "prompt"
    ROLE: ClassVar[str] = "identity"

    template: str = field(
        default="original",
        metadata=knob(templates_help(), choices=tuple(TEMPLATES)),
    )


@dataclass
class ModelConfig(_Section):
    """How the base model is adapted."""

    SECTION: ClassVar[str] = "model"
    ROLE: ClassVar[str] = "identity"  # the weights' shape and what is trained

    mode: str = field(
        default="lora",
        metadata=knob('"lora" (the 7B recipes) or "full" (all parameters; tiny)', choices=("lora", "full")),
    )
    lora_r: int = field(default=16, metadata=knob("LoRA rank", minimum=1, maximum=MAX_LORA_RANK))
    lora_alpha: int = field(
        default=32, metadata=knob("LoRA scaling numerator (scale = lora_alpha / lora_r)", minimum=1)
    )
    lora_dropout: float = field(
        default=0.05, metadata=knob("dropout on the LoRA input", minimum=0, exclusive_maximum=1, role="resumable")
    )
    target_modules: list[str] | None = field(
        default=None, metadata=knob("modules LoRA adapts; null = the registry's list for the model", nonempty=True)
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata=knob("extra modules trained in full next to LoRA (e.g. [embed_tokens, lm_head])")
    )
    lora_top_layers: int | None = field(
        default=None,
        metadata=knob(
            "LoRA on the top N decoder layers only (PEFT layers_to_transform); null = every layer. Backward then "
            "stops at the lowest adapted layer: cheaper steps on CPU",
            minimum=1,
        ),
    )
    attn_implementation: str = field(
        default="auto",
        metadata=knob(
            "attention kernel; auto = flash_attention_2 when importable on CUDA, else flex_attention for packed "
            "training on CUDA, else sdpa (sqlmaster/models/attention.py)",
            choices=ATTN_CHOICES,
            role="runtime",
        ),
    )
    dtype: str = field(
        default="auto",
        metadata=knob(
            "weights dtype; auto = bfloat16 on GPU, float32 on CPU",
            choices=("auto", "bfloat16", "float16", "float32"),
            role="resumable",
        ),
    )
    gradient_checkpointing: bool = field(
        default=True, metadata=knob("trade ~30% compute for activations that fit long packs", role="runtime")
    )
    revision: str | None = field(
        default=None, metadata=knob("hub revision of the base model; null = the registry's pin or main", nonempty=True)
    )
    init: str = field(
        default="pretrained",
        metadata=knob(
            "pretrained = the hub weights; random = the registry's shipped config with random weights and a BPE "
            "tokenizer trained on the data: throughput without a download (scripts/gpu-suite.sh), learns nothing",
            choices=("pretrained", "random"),
        ),
    )
    # Architecture of the `tiny` model (built from config; ignored for every other model).
    tiny_vocab_size: int = field(
        default=4096,
        metadata=knob("tiny only: BPE vocabulary trained on the training split", minimum=16, maximum=MAX_VOCAB),
    )
    tiny_hidden_size: int = field(
        default=192,
        metadata=knob("tiny only: hidden size (a multiple of 2 x tiny_heads)", minimum=2, maximum=MAX_WIDTH),
    )
    tiny_layers: int = field(default=4, metadata=knob("tiny only: decoder layers", minimum=1, maximum=MAX_LAYERS))
    tiny_heads: int = field(default=4, metadata=knob("tiny only: attention heads", minimum=1, maximum=MAX_LAYERS))
    tiny_intermediate_size: int = field(
        default=512, metadata=knob("tiny only: MLP width", minimum=1, maximum=4 * MAX_WIDTH)
    )
    tiny_tie_embeddings: bool = field(
        default=False,
        metadata=knob("tiny only: tie embeddings and head (one matrix reads and writes a token: copies are easier)"),
    )
    tiny_pre_tokenizer: str = field(
        default="initials",
        metadata=knob(
            "tiny only: how text is cut before BPE: runs = whitespace/letter/digit runs; digits = the same with "
            "one token per digit; initials = spaces joined to the next word, a word's first letter and single "
            "digits as tokens of their own (copying and case changes are easiest; sqlmaster/models/tiny.py)",
            choices=tuple(PRE_TOKENIZERS),
        ),
    )

    def check(self) -> None:
        # Rotary position embeddings rotate pairs of dimensions: each head needs an even size.
        if self.tiny_hidden_size % (2 * self.tiny_heads):
            raise ConfigError(
                f"model.tiny_hidden_size must be a multiple of 2 x model.tiny_heads (got {self.tiny_hidden_size} "
                f"and {self.tiny_heads}). E.g. --set model.tiny_hidden_size={2 * self.tiny_heads * 16}"
            )


@dataclass
class TrainingConfig(_Section):
    """Optimisation; defaults are the original recipe (one A100-80GB)."""

    SECTION: ClassVar[str] = "training"

    max_steps: int = field(default=500, metadata=knob("optimizer steps", minimum=1))
    per_device_train_batch_size: int = field(
        default=8, metadata=knob("sequences per device per micro-step", minimum=1, maximum=MAX_BATCH)
    )
    gradient_accumulation_steps: int = field(
        default=4,
        metadata=knob(
            "micro-steps per optimizer step (8 x 4 x 1024 = 32,768 tokens when packed)", minimum=1, maximum=MAX_BATCH
        ),
    )
    learning_rate: float = field(
        default=3.0e-4, metadata=knob("peak learning rate", exclusive_minimum=0, role="identity")
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata=knob("a transformers scheduler name (cosine, linear, constant, ...)", nonempty=True, role="identity"),
    )
    warmup_steps: int = field(default=100, metadata=knob("linear warm-up steps", minimum=0, role="identity"))
    max_grad_norm: float = field(default=0.3, metadata=knob("gradient clipping norm; 0 = no clipping", minimum=0))
    weight_decay: float = field(default=0.0, metadata=knob("AdamW weight decay", minimum=0, role="identity"))
    seed: int = field(
        default=1399, metadata=knob("training seed (and tiny's initial weights)", minimum=0, maximum=SEED_MAX)
    )
    max_length: int = field(default=1024, metadata=knob("tokens per (packed) sequence", minimum=1, maximum=MAX_TOKENS))
    packing: bool = field(default=True, metadata=knob("padding-free packing; examples never attend to each other"))
    eval_steps: int = field(default=20, metadata=knob("steps between evaluations of the validation loss", minimum=1))
    save_steps: int = field(
        default=20, metadata=knob("checkpoint cadence: a preempted pod loses at most this many steps", minimum=1)
    )
    logging_steps: int = field(default=10, metadata=knob("steps between log lines", minimum=1, role="runtime"))
    early_stopping_patience: int | None = field(
        default=1, metadata=knob("evaluations without improvement before stopping; null disables", minimum=1)
    )
    save_total_limit: int = field(
        default=3,
        metadata=knob("checkpoints kept (the best one is always kept)", minimum=1, maximum=1000, role="runtime"),
    )
    num_threads: int | None = field(
        default=None,
        metadata=knob(
            "CPU threads for torch; null = torch's default", minimum=1, maximum=MAX_PROCESSES, role="runtime"
        ),
    )
    cpu_processes: int = field(
        default=1,
        metadata=knob(
            "CPU only: data-parallel training processes started on this machine (torchrun, gloo), each with "
            "num_threads threads, at most one per core; ignored on GPUs and under torchrun",
            minimum=1,
            maximum=MAX_PROCESSES,
        ),
    )
    max_time_minutes: float | None = field(
        default=None,
        metadata=knob(
            "stop cleanly (with a checkpoint) after this wall time; null = no limit",
            exclusive_minimum=0,
            maximum=MAX_MINUTES,
            role="runtime",
        ),
    )
    bf16: bool | None = field(
        default=None,
        metadata=knob("bf16 autocast; null = on where the GPU supports it or the CPU has AMX (amx_bf16)"),
    )
    group_by_length: bool = field(
        default=False, metadata=knob("without packing: batch examples of similar length (less padding)")
    )
    completion_only_loss: bool = field(
        default=True, metadata=knob("loss on the SQL only; prompt tokens get label -100")
    )
    eval_batch_size: int | None = field(
        default=None,
        metadata=knob(
            "evaluation batch per device; null = per_device_train_batch_size",
            minimum=1,
            maximum=MAX_BATCH,
            role="runtime",
        ),
    )
    # Train for wall time instead of max_steps (sqlmaster/train/budget.py): the LR schedule is laid over the budget.
    time_budget_minutes: float | None = field(
        default=None,
        metadata=knob(
            "train for this wall time instead of max_steps (then unused); the LR schedule ends at the budget",
            exclusive_minimum=0,
            maximum=MAX_MINUTES,
        ),
    )
    budget_decay_fraction: float = field(
        default=1.0,
        metadata=knob(
            "with a time budget: the last fraction of it with LR decay (1.0 = cosine; 0.2 = warm-up-stable-decay)",
            exclusive_minimum=0,
            maximum=1,
        ),
    )
    budget_evaluations: int = field(
        default=4,
        metadata=knob(
            "with a time budget: evaluations and checkpoints at this many even fractions of it",
            minimum=0,
            maximum=1000,
        ),
    )
    # Speed levers (docs/gpu.md; scripts/gpu-suite.sh measures each against the shipped recipe).
    liger_kernel: bool = field(
        default=False,
        metadata=knob(
            "CUDA only: liger-kernel's fused Triton RMSNorm, SwiGLU and RoPE (TRL fuses the LM head)", role="runtime"
        ),
    )
    torch_compile: bool = field(
        default=False, metadata=knob("torch.compile the model (the first steps pay the compile)", role="runtime")
    )

    def check(self) -> None:
        budget, cap = self.time_budget_minutes, self.max_time_minutes
        if budget is not None and cap is not None and cap <= budget:
            # The cap would stop the run before its schedule ends: a model whose learning rate never decayed becomes
            # the run's output (stop reason max_time), minutes before the budget the user asked for.
            raise ConfigError(
                f"training.max_time_minutes={cap:g} would stop training before training.time_budget_minutes="
                f"{budget:g} ends. Raise the safety net with the budget, e.g. --set training.max_time_minutes="
                f"{budget + 4:g}, or set it to null"
            )
        if self.early_stopping_patience is not None and self.save_steps % self.eval_steps:
            raise ConfigError(
                "training.save_steps must be a multiple of training.eval_steps with early stopping "
                f"(the best checkpoint must exist; got {self.save_steps} and {self.eval_steps}). E.g. set both to 20"
            )


@dataclass
class OutputConfig(_Section):
    """What is written besides the adapter."""

    SECTION: ClassVar[str] = "output"
    ROLE: ClassVar[str] = "runtime"

    merge: bool = field(default=False, metadata=knob("also save base + adapter merged into full weights (merged/)"))
    push_to_hub: bool = field(
        default=False, metadata=knob("push the adapter to a private hub repository (needs HF_TOKEN)")
    )
    hub_repo_id: str | None = field(
        default=None,
        metadata=knob('hub repository, e.g. "my-org/mistral7b-sql-lora"; needed with push_to_hub', nonempty=True),
    )

    def check(self) -> None:
        if self.push_to_hub and not self.hub_repo_id:
            raise ConfigError("output.push_to_hub needs output.hub_repo_id, e.g. --set output.hub_repo_id=org/name")


@dataclass
class TrackingConfig(_Section):
    """Experiment tracking."""

    SECTION: ClassVar[str] = "tracking"
    ROLE: ClassVar[str] = "runtime"

    wandb_project: str = field(default="sqlmaster", metadata=knob("W&B project", nonempty=True))
    wandb_mode: str = field(
        default="auto",
        metadata=knob(
            "auto = online with WANDB_API_KEY, else offline (files under logs/)",
            choices=("auto", "online", "offline", "disabled"),
        ),
    )


@dataclass
class EvaluationConfig(_Section):
    """How a trained run is evaluated."""

    SECTION: ClassVar[str] = "evaluation"
    ROLE: ClassVar[str] = "runtime"

    datasets: list[str] = field(
        default_factory=lambda: ["sql-create-context-test"],
        metadata=knob("sql-create-context-test, spider-dev, or triplets .jsonl paths", nonempty=True),
    )
    limit: int | None = field(default=None, metadata=knob("examples per dataset; null = all", minimum=1))
    batch_size: int = field(default=16, metadata=knob("prompts generated per batch", minimum=1, maximum=MAX_BATCH))
    max_new_tokens: int = field(
        default=128, metadata=knob("generated tokens per prompt", minimum=1, maximum=MAX_NEW_TOKENS)
    )
    do_sample: bool = field(
        default=False, metadata=knob("sample instead of greedy (a metric should not depend on a dice roll)")
    )
    temperature: float = field(default=0.5, metadata=knob("used only with do_sample", exclusive_minimum=0))
    top_p: float = field(default=0.9, metadata=knob("used only with do_sample", exclusive_minimum=0, maximum=1))
    top_k: int = field(default=100, metadata=knob("used only with do_sample", minimum=1))
    databases_per_example: int = field(
        default=3, metadata=knob("synthesized databases per example for execution accuracy", minimum=1, maximum=64)
    )
    backend: str = field(
        default="auto",
        metadata=knob("auto = vllm when installed and on GPU, else hf", choices=("auto", "hf", "vllm")),
    )
    vote: int = field(
        default=0,
        metadata=knob(
            "execution-based voting: sample N SQL per question at evaluation.temperature and answer with the one "
            "whose result most samples agree on (sqlmaster/evaluate/vote.py); 0 or 1 = one greedy answer",
            minimum=0,
            maximum=MAX_VOTES,
        ),
    )
    vote_rule: str = field(
        default="majority",
        metadata=knob(
            "with evaluation.vote > 1: majority = the most common result; first-rows = execution-guided, the first "
            "candidate (greedy, then samples) that runs and returns rows",
            choices=("majority", "first-rows"),
        ),
    )
    constrain: str = field(
        default="none",
        metadata=knob(
            "constrained decoding (sqlmaster/evaluate/constrain.py): grammar = SQL keywords and the context's "
            "tables and columns only; grammar+values = also string literals from the question or the database",
            choices=("none", "grammar", "grammar+values"),
        ),
    )


@dataclass
class GrpoConfig(_Section):
    """The GRPO stage (``sqlmaster train --stage grpo``): learning from the scorer's verdict on sampled SQL."""

    SECTION: ClassVar[str] = "grpo"

    num_generations: int = field(
        default=8,
        metadata=knob(
            "SQL samples per prompt; GRPO's advantage is each sample's reward against its group's mean",
            minimum=2,
            maximum=MAX_GROUP,
        ),
    )
    prompts_per_step: int = field(
        default=4,
        metadata=knob(
            "prompts per optimizer step (x num_generations completions); training.per_device_train_batch_size "
            "caps the completions per micro-step and the rest is accumulated",
            minimum=1,
            maximum=MAX_BATCH,
        ),
    )
    beta: float = field(
        default=0.0,
        metadata=knob(
            "KL coefficient against the SFT model; 0 = no reference model (TRL's default: one forward pass less "
            "per step)",
            minimum=0,
            role="identity",
        ),
    )
    temperature: float = field(default=1.0, metadata=knob("sampling temperature of the rollouts", exclusive_minimum=0))
    max_completion_length: int = field(
        default=128,
        metadata=knob("generated tokens per sample (the SQL and its end marker)", minimum=1, maximum=MAX_NEW_TOKENS),
    )
    # The reward (sqlmaster/train/reward.py reads these defaults; the one place they are written).
    match_reward: float = field(
        default=1.0,
        metadata=knob(
            "reward of SQL that returns what the gold returns on every synthesized database", exclusive_minimum=0
        ),
    )
    # Why a credit at all: early in GRPO (and for a small model, for long) most samples of a prompt miss, all score
    # 0 and their group has no advantage to learn from; SQL that runs is a step towards SQL that answers (Arctic-
    # Text2SQL-R1 rewards syntax validity for the same reason). Why this small: it must stay far below a match, so
    # that a sample that runs but answers wrongly never looks nearly as good as the answer. With 0.1, eight samples
    # that all run but miss are worth less than one match.
    executes_credit: float = field(
        default=0.1,
        metadata=knob("reward of SQL that runs without error but answers something else (< match_reward)", minimum=0),
    )

    # Why: a group whose samples all score alike has no advantage, so GRPO learns nothing from it; a small or early
    # model misses with all its samples on most prompts (tiny: 364 of 500 held-out prompts, none of 8 samples right).
    # With the gold as one member, every group that misses holds one match to move towards and its misses to move
    # away from: off-policy guidance, as LUFFY (Yan et al., 2025, "Learning to Reason under Off-Policy Guidance").
    gold_in_group: bool = field(
        default=False,
        metadata=knob(
            "one of each prompt's num_generations samples is the gold SQL instead of a sample (off-policy "
            "guidance): every group then holds a match; the logged rates count it"
        ),
    )

    # Why: most groups score alike (tiny, temperature 1: three in four), and with beta 0 their samples' gradient is
    # exactly 0, yet TRL runs the forward and backward pass on them: the training pass was 60% of a step (py-spy,
    # bench/bench_grpo.py). Their tokens also leave the loss's token count, so that a step's update is the mean over
    # the samples that teach, however few there are (DAPO, Yu et al. 2025, filters such groups for the same reason).
    skip_zero_advantage: bool = field(
        default=True,
        metadata=knob(
            "leave samples whose advantage is 0 (a group whose samples all scored alike) out of the forward and "
            "backward pass and out of the loss's token count; their gradient is 0 when beta is 0 (with beta > 0 "
            "the KL term has one, and every sample is kept)"
        ),
    )

    def check(self) -> None:
        if self.executes_credit >= self.match_reward:
            raise ConfigError(
                f"grpo.executes_credit must be below grpo.match_reward (got {self.executes_credit} and "
                f"{self.match_reward}): SQL that runs but answers wrongly must never look as good as the answer. "
                "E.g. --set grpo.executes_credit=0.1"
            )


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
    grpo: GrpoConfig = field(default_factory=GrpoConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS: dict[str, type[_Section]] = {f.name: typing.get_type_hints(Recipe)[f.name] for f in fields(Recipe)}


# --- validation driven by the annotations and the knob metadata -------------------------------------------------


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a section (``from __future__ import annotations`` leaves them strings)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _fix(key: str, f: Field[Any]) -> str:
    """The fix every value error ends with: where to set the key, and its default as an example."""
    return f"Fix it in the recipe file or with --set {key}={yaml_value(_default_of(f))} (the default)"


def _default_of(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def yaml_value(value: Any) -> str:
    """``value`` as it would be written after ``--set key=`` (flow style: [a, b], null, true, 0.0003)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _check_type(key: str, value: Any, hint: Any, f: Field[Any]) -> None:
    if _matches(value, hint):
        return
    raise ConfigError(f"{key} must be {_type_phrase(hint)} (got {value!r}). {_fix(key, f)}")


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_phrase(hint: Any) -> str:
    """'an integer', 'a number or null', 'a list of strings' (for messages)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_phrase(arg) for arg in args)
    if origin is list:
        return f"a list of {_type_phrase(args[0]).split(' ', 1)[1]}s, e.g. [a, b]"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _check_constraints(key: str, value: Any, f: Field[Any]) -> None:
    meta = f.metadata
    if value is None:
        return
    problem = None
    if isinstance(value, float) and not math.isfinite(value):
        problem = "a finite number"
    elif isinstance(value, int | float) and not isinstance(value, bool):
        problem = _bound_problem(value, meta)
    elif meta.get("choices") is not None and value not in meta["choices"]:
        problem = f"one of {', '.join(meta['choices'])}"
    if problem is None and meta.get("nonempty") and isinstance(value, str | list) and not value:
        problem = "non-empty"
    if problem is not None:
        raise ConfigError(f"{key} must be {problem} (got {value!r}). {_fix(key, f)}")


def _bound_problem(value: float, meta: typing.Mapping[str, Any]) -> str | None:
    for name, bound in BOUNDS.items():
        if name in meta and not bound.holds(value, meta[name]):
            return f"{bound.op} {_number(meta[name])}"
    return None


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


# --- reading recipes --------------------------------------------------------------------------------------------


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
    """The recipe mapping of a recipe file, or of the single run of a ``jobs/`` values file."""
    try:
        text = boundedyaml.read_text(path, "recipe file")
    except UnicodeDecodeError:
        raise ConfigError(f"recipe file {path} is not UTF-8 text (a binary file?). Pass a YAML recipe") from None
    except IsADirectoryError:
        raise ConfigError(f"recipe file {path} is a directory. Pass a YAML file, e.g. jobs/train/tiny.yaml") from None
    except OSError as exc:
        raise ConfigError(f"cannot read recipe file {path}: {exc.strerror}. Check the path") from None
    try:
        data = boundedyaml.load(text, f"recipe file {path}") or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe file {path} must be a mapping of sections (data, model, training, ...)")
    # A jobs/ values file may be passed directly: take the recipe of its single run.
    if "runs" in data and "recipe" not in data:
        runs = data["runs"]
        if not isinstance(runs, list) or len(runs) != 1 or not isinstance(runs[0], dict):
            count = len(runs) if isinstance(runs, list) else "no list of"
            raise ConfigError(f"{path} is a values file with {count} runs; pass a recipe file (or one run) instead")
        data = runs[0].get("recipe") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"runs[0].recipe in {path} must be a mapping of sections (data, model, training, ...)")
    return data


def parse_override(item: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value``; the value is YAML (so 3e-4, true, null and [a, b] work)."""
    dotted = item.split("=", 1)[0].strip()
    if "[" in dotted or dotted.startswith(("runs.", "recipe.")) or dotted.count(".") > 1:
        recipe_key = dotted.rsplit("recipe.", 1)[-1] if "recipe." in dotted else "training.max_steps"
        raise ConfigError(
            f"--set {dotted} is a Helm-style key (sqlctl and helm address the values file: "
            f"runs[0].recipe.<section>.<key>); sqlmaster reads one recipe, so write section.key=value, "
            f"e.g. --set {recipe_key}={item.split('=', 1)[1] if '=' in item else 'VALUE'}"
        )
    if "=" not in item or "." not in dotted:
        raise ConfigError(f"bad override {item!r}: write it as section.key=value, e.g. training.max_steps=100")
    value_text = item.split("=", 1)[1]
    section, key = dotted.split(".", 1)
    try:
        value = boundedyaml.load(value_text, f"--set {dotted}") if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text  # not YAML: the text itself (a path with a colon, say); bounds still apply
        if len(value_text) > boundedyaml.MAX_SCALAR_CHARS:
            raise boundedyaml.YamlTooBig(
                f"--set {dotted} is {len(value_text):,} characters, over the {boundedyaml.MAX_SCALAR_CHARS:,} "
                "allowed for one value. Shorten it"
            ) from None
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
        hints = _type_hints(cls)
        # The keys are the dataclass fields, not the type hints: those also name ClassVars (SECTION, ROLE).
        valid = [f.name for f in fields(typing.cast(Any, cls))]
        unknown = set(values) - set(valid)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {sorted(map(str, unknown))} in recipe section {name!r}. Valid keys: {', '.join(valid)}"
            )
        built[name] = cls(**{key: _coerce(value, hints[key]) for key, value in values.items()})
    return Recipe(**built)


def _coerce(value: Any, hint: Any) -> Any:
    """Gently convert a YAML value towards a field's type; the section then checks the result."""
    if isinstance(value, str) and _accepts(hint, float) and not _accepts(hint, str):
        try:
            return float(value)  # YAML 1.1 reads "3e-4" as a string
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool) and _accepts(hint, float) and not _accepts(hint, int):
        return float(value)
    return value


def _accepts(hint: Any, kind: type) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return kind in typing.get_args(hint)
    return hint is kind


# --- describing the keys: `sqlmaster recipe keys` and the charts' JSON Schema ----------------------------------


@dataclass(frozen=True)
class KeySpec:
    """One recipe key, as `sqlmaster recipe keys` lists it and the chart schemas describe it."""

    section: str
    name: str
    type: str  # "int", "float | null", "list[str]", ...
    default: Any
    help: str
    constraints: dict[str, Any]  # subset of CONSTRAINTS
    schema: dict[str, Any]  # JSON Schema of the value
    role: str  # one of ROLES: what changing it means for an existing run directory

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def constraint_text(self) -> str:
        """E.g. ">= 1", "one of lora, full", "> 0, <= 1", "non-empty"; "" when unconstrained."""
        c = self.constraints
        parts = [f"{bound.op} {_number(c[name])}" for name, bound in BOUNDS.items() if name in c]
        if "choices" in c:
            parts.append("one of " + ", ".join(c["choices"]))
        if c.get("nonempty"):
            parts.append("non-empty")
        return ", ".join(parts)


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def recipe_keys() -> list[KeySpec]:
    """Every recipe key in declaration order, with type, default, help text and constraints."""
    keys = []
    for section, cls in SECTIONS.items():
        hints = _type_hints(cls)
        for f in fields(typing.cast(Any, cls)):
            constraints = {k: v for k, v in f.metadata.items() if k in CONSTRAINTS}
            keys.append(
                KeySpec(
                    section=section,
                    name=f.name,
                    type=_type_name(hints[f.name]),
                    default=_default_of(f),
                    help=f.metadata["help"],
                    constraints=constraints,
                    schema=_key_schema(hints[f.name], f),
                    role=f.metadata.get("role", cls.ROLE),
                )
            )
    return keys


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    return "null" if hint is type(None) else hint.__name__


def _key_schema(hint: Any, f: Field[Any]) -> dict[str, Any]:
    """JSON Schema (draft 7 subset, which Helm's values.schema.json understands) of one key."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    members = list(args) if origin in (typing.Union, types.UnionType) else [hint]
    meta = f.metadata
    schema: dict[str, Any] = {"description": meta["help"]}
    json_types = []
    for member in members:
        if typing.get_origin(member) is list:
            json_types.append("array")
            schema["items"] = {"type": _JSON_TYPES[typing.get_args(member)[0]]}
            if meta.get("nonempty"):
                schema["minItems"] = 1
        else:
            json_types.append(_JSON_TYPES[member])
    schema["type"] = json_types[0] if len(json_types) == 1 else json_types
    if "choices" in meta:
        schema["enum"] = [*meta["choices"], *([None] if "null" in json_types else [])]
    for name, bound in BOUNDS.items():
        if name in meta:
            schema[bound.json_keyword] = meta[name]
    if meta.get("nonempty") and "string" in json_types:
        schema["minLength"] = 1
    schema["default"] = _default_of(f)
    return schema


def recipe_json_schema() -> dict[str, Any]:
    """JSON Schema of a whole recipe: one object per section, unknown sections and keys refused.

    The charts' ``values.schema.json`` embed this (scripts/gen-files.py), so ``helm install`` checks a recipe
    with the same types, bounds and choices as ``sqlmaster train``.
    """
    by_section: dict[str, dict[str, Any]] = {}
    for spec in recipe_keys():
        by_section.setdefault(spec.section, {})[spec.name] = spec.schema
    return {
        "type": "object",
        "description": "The run's recipe (sqlmaster/config.py): data, prompt, model, training, ... sections.",
        "additionalProperties": False,
        "properties": {
            section: {
                "type": "object",
                "description": (SECTIONS[section].__doc__ or "").strip().splitlines()[0],
                "additionalProperties": False,
                "properties": properties,
            }
            for section, properties in by_section.items()
        },
    }


# --- settings classes that take recipe keys ---------------------------------------------------------------------


def declared_default(section: type[_Section], key: str) -> Any:
    """The default declared for recipe key ``section.key`` (for code outside a recipe that needs the same value)."""
    declared = next((f for f in fields(typing.cast(Any, section)) if f.name == key), None)
    if declared is None:
        raise TypeError(f"{section.__name__} declares no key {key!r}")
    return _default_of(declared)


def recipe_field(section: type[_Section], key: str) -> Any:
    """A field of a settings class (not a recipe section) that takes the recipe key ``section.key``: its default
    is that key's declared default, so the value is written once, in the section above. ``from_section`` copies
    every such field from a section."""
    return field(default=declared_default(section, key), metadata={"recipe_key": key, "recipe_section": section})


_Settings = typing.TypeVar("_Settings")


def from_section(cls: type[_Settings], section: _Section, **values: Any) -> _Settings:
    """``cls`` (a dataclass) with each ``recipe_field`` of ``section``'s class taken from ``section``, and
    ``values`` for the others (the rest keep their defaults)."""
    taken = {
        f.name: getattr(section, f.metadata["recipe_key"])
        for f in fields(typing.cast(Any, cls))
        if f.metadata.get("recipe_section") is type(section)
    }
    return cls(**taken, **values)
