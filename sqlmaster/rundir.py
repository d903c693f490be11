"""The run directory: every file and folder a run writes, named once (torch-free, so sqlctl can import it).

``LAYOUT`` below lists them with what each holds; docs/design.md's tree is generated from it
(``python scripts/gen-files.py``). Readers and writers (training, evaluation, reports, sqlctl) take the names from
here, never from literals:

    rd = RunDir(path)
    rd.run_info            # path to run.json
    rd.eval_dataset("spider-dev").metrics
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUN_INFO_FILE = "run.json"
METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.yaml"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
MERGED_DIR = "merged"
BASE_DIR = "base"
CHECKPOINTS_DIR = "checkpoints"
EVAL_DIR = "eval"
LOGS_DIR = "logs"

# Inside eval/<dataset>/ (and in the output directory of `sqlmaster eval score`).
PREDICTIONS_FILE = "predictions.jsonl"
PARTIAL_PREDICTIONS_FILE = "predictions.partial.jsonl"  # `eval run`: batches appended as they finish (resume)
RECORDS_FILE = "records.jsonl"

# Inside a weights directory (adapter/, model/, merged/, base/): the names transformers and peft write.
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
MODEL_CONFIG_FILE = "config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

# Inside checkpoints/checkpoint-<step>/.
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"  # written after the Trainer finished saving a checkpoint (or tiny's base/)
TIME_BUDGET_FILE = "time_budget.json"  # the training time a checkpoint has used (sqlmaster/train/budget.py)
TRAINER_STATE_FILE = "trainer_state.json"


# Every entry of a run directory, in the order a reader meets them: (path under DIR, what it holds). A folder ends
# with "/"; "<...>" is a placeholder.
LAYOUT: tuple[tuple[str, str], ...] = (
    (
        RUN_INFO_FILE,
        "who made the run: base model (name, hub id, revision), mode, prompt template, data source + sha256, split "
        "sizes, the resolved recipe with recipe_hash / recipe_source / recipe_changes, package versions, git "
        "commit, started/finished, steps, epochs, stop_reason, status: running|completed|diverged|interrupted|failed",
    ),
    (METRICS_FILE, "training figures: train and eval loss, steps, tokens, tokens/s, runtime"),
    (RECIPE_FILE, "the recipe as submitted (sqlctl --local writes it before `sqlmaster train`)"),
    (f"{ADAPTER_DIR}/", f"LoRA runs: {ADAPTER_WEIGHTS_FILE} + {ADAPTER_CONFIG_FILE} + tokenizer files"),
    (f"{MODEL_DIR}/", "full runs (tiny): all weights + tokenizer"),
    (f"{BASE_DIR}/", "tiny: the randomly initialised base and its tokenizer (a resumed run starts from the same)"),
    (f"{MERGED_DIR}/", "optional (output.merge): base + adapter merged into full weights"),
    (
        f"{CHECKPOINTS_DIR}/{CHECKPOINT_PREFIX}<step>/",
        f"HF Trainer checkpoints (resume); {COMPLETE_MARKER} marks a finished save, {TIME_BUDGET_FILE} the time used",
    ),
    (f"{EVAL_DIR}/<dataset>/{PREDICTIONS_FILE}", "one evaluation's generations: prompt, raw output, SQL, latency"),
    (
        f"{EVAL_DIR}/<dataset>/{PARTIAL_PREDICTIONS_FILE}",
        "while generating: finished batches, fsynced, so that a rerun resumes; removed at the end",
    ),
    (f"{EVAL_DIR}/<dataset>/{RECORDS_FILE}", "each prediction scored (`sqlmaster eval score`'s records)"),
    (f"{EVAL_DIR}/<dataset>/{METRICS_FILE}", "execution accuracy per convention, exact match, intervals, settings"),
    (f"{LOGS_DIR}/", "W&B files (offline mode syncs from here)"),
)


def layout_tree(width: int = 36, line_length: int = 116) -> str:
    """``LAYOUT`` as an indented tree with a comment per entry, wrapped at ``line_length`` (docs/design.md)."""
    import textwrap

    lines = ["DIR/"]
    for path, what in LAYOUT:
        wrapped = textwrap.wrap(what, line_length - width - 5)
        lines.append(f"  {path:<{width}} # {wrapped[0]}")
        lines += [f"  {'':<{width}} # {more}" for more in wrapped[1:]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EvalDir:
    """``eval/<dataset>/``: one evaluation of a run (or the output directory of ``eval score``)."""

    path: Path

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def records(self) -> Path:
        return self.path / RECORDS_FILE

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def partial_predictions(self) -> Path:
        return self.path / PARTIAL_PREDICTIONS_FILE


class RunDir:
    """Paths inside one run directory; creating one touches nothing on disk."""

    __slots__ = ("path",)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def run_info(self) -> Path:
        return self.path / RUN_INFO_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def recipe(self) -> Path:
        return self.path / RECIPE_FILE

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER_DIR

    @property
    def model(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def merged(self) -> Path:
        return self.path / MERGED_DIR

    @property
    def base(self) -> Path:
        return self.path / BASE_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def eval(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def logs(self) -> Path:
        return self.path / LOGS_DIR

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step}"

    def eval_dataset(self, dataset: str) -> EvalDir:
        return EvalDir(self.eval / dataset)

    def is_run(self) -> bool:
        """A training run directory (as opposed to a bare adapter or weights directory)."""
        return self.run_info.is_file()
