"""The run directory: every file and folder a run writes, named once (torch-free, so sqlctl can import it).

    DIR/
      run.json                  # who made the run: base model, mode, template, data sha256, recipe (+ hash), status
      metrics.json              # training figures: losses, steps, tokens, tokens/s, runtime
      recipe.yaml               # the recipe as submitted (sqlctl --local writes it before `sqlmaster train`)
      adapter/                  # LoRA runs: adapter_model.safetensors + adapter_config.json + tokenizer files
      model/                    # full runs: all weights + tokenizer
      merged/                   # optional (output.merge): base + adapter merged into full weights
      base/                     # tiny: the randomly initialised base the run started from (kept for resume, eval)
      checkpoints/checkpoint-<step>/   # HF Trainer checkpoints (resume); COMPLETE marks a finished save
      eval/<dataset>/           # one evaluation: predictions.jsonl, records.jsonl, metrics.json
      logs/                     # W&B files (offline mode syncs from here)

Readers and writers (training, evaluation, reports, sqlctl) take the names from here, never from literals:

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
RECORDS_FILE = "records.jsonl"

# Inside a weights directory (adapter/, model/, merged/, base/): the names transformers and peft write.
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
MODEL_CONFIG_FILE = "config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

# Inside checkpoints/checkpoint-<step>/.
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "COMPLETE"  # written after the Trainer finished saving a checkpoint (or tiny's base/)
TRAINER_STATE_FILE = "trainer_state.json"


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
