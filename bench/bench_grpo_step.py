"""The GRPO stage's speed, one phase of the GPU suite: steps/s, rewards/s, generation's and the reward's share of
the step time, peak memory, and which generator sampled.

    python bench/bench_grpo_step.py --work W --json OUT [--cpu]

A short SFT run of tiny (``sqlmaster train``'s code, in this process) gives the GRPO stage its starting point; then
``grpo.prompts_per_step`` x ``grpo.num_generations`` completions per step for a few steps, as
``sqlmaster train --stage grpo --init-from`` runs them. Generation is timed around the trainer's ``_generate``
(TRL: HF ``generate``, or vLLM colocated where it is installed on a GPU), synchronised on CUDA; the reward's
figures are the ones the run writes into metrics.json (sqlmaster/train/grpo.py). ``--cpu`` shrinks every size so
the CPU rehearsal (tests/test_gpu_suite.py) takes seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a file: import sqlmaster from this checkout
    sys.path.insert(0, str(REPO))

MODEL = "tiny"
# (SFT steps, GRPO steps, overrides of both stages, of GRPO only) per mode.
SFT_SETS = ["training.time_budget_minutes=null", "training.max_time_minutes=null", "training.cpu_processes=1"]
SIZES: dict[bool, dict[str, Any]] = {
    True: {
        "sft_steps": 2,
        "grpo_steps": 2,
        "both": ["data.max_train_rows=200", "training.per_device_train_batch_size=4", "training.logging_steps=1"],
        "grpo": ["grpo.num_generations=2", "grpo.prompts_per_step=2", "grpo.max_completion_length=16"],
    },
    False: {
        "sft_steps": 40,
        "grpo_steps": 6,
        "both": ["data.max_train_rows=2000", "training.logging_steps=1"],
        "grpo": ["training.per_device_train_batch_size=32"],  # the recipe's 4 prompts x 8 samples, 128 tokens
    },
}


class GenerationClock:
    """Seconds spent inside the GRPO trainer's ``_generate`` (rollouts only: the reward is timed by the run)."""

    def __init__(self, cuda: bool) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.cuda = cuda

    def install(self) -> None:
        from sqlmaster.train.grpo import SQLMasterGRPOTrainer

        original = SQLMasterGRPOTrainer._generate
        clock = self

        def timed(trainer: Any, prompts: list[Any]) -> Any:
            clock.sync()
            started = time.monotonic()
            try:
                return original(trainer, prompts)
            finally:
                clock.sync()
                clock.seconds += time.monotonic() - started
                clock.calls += 1

        SQLMasterGRPOTrainer._generate = timed  # type: ignore[method-assign]

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def _train(run_dir: Path, sets: list[str], init_from: Path | None = None) -> dict[str, Any]:
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.guard import TrainOptions, inherited_overrides
    from sqlmaster.train.runner import run_training

    inherited: list[str] = []
    options = TrainOptions()
    if init_from is not None:
        inherited = inherited_overrides(json.loads((init_from / "run.json").read_text()))
        options = TrainOptions(stage="grpo", init_from=str(init_from))
    recipe = resolve_recipe("train", MODEL, overrides=[*inherited, *sets]).recipe
    run_training(MODEL, run_dir, recipe, options)
    return json.loads((run_dir / "metrics.json").read_text())


def _peak_memory_gib(cuda: bool) -> float:
    if cuda:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)  # KiB on Linux: the process's RSS


def measure(work: Path, cpu: bool) -> dict[str, Any]:
    import torch

    from sqlmaster.train.grpo import generator

    cuda = torch.cuda.is_available() and not cpu
    size = SIZES[cpu]
    sft_dir, grpo_dir = work / "sft", work / "grpo"
    sft_started = time.monotonic()
    _train(sft_dir, [*SFT_SETS, *size["both"], f"training.max_steps={size['sft_steps']}"])
    sft_s = time.monotonic() - sft_started
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = GenerationClock(cuda)
    clock.install()
    grpo_sets = [*SFT_SETS, *size["both"], *size["grpo"], f"training.max_steps={size['grpo_steps']}"]
    started = time.monotonic()
    metrics = _train(grpo_dir, grpo_sets, init_from=sft_dir)
    wall = time.monotonic() - started
    runtime = metrics.get("train_runtime_seconds") or wall
    reward = metrics["reward"]
    recipe = json.loads((grpo_dir / "run.json").read_text())["recipe"]["grpo"]
    return {
        "status": "ok",
        "model": MODEL,
        "device": "cuda" if cuda else "cpu",
        "generator": generator("cuda" if cuda else "cpu"),
        "sft_steps": size["sft_steps"],
        "sft_s": round(sft_s, 1),
        "steps": metrics["steps"],
        "prompts_per_step": recipe["prompts_per_step"],
        "num_generations": recipe["num_generations"],
        "max_completion_length": recipe["max_completion_length"],
        "train_runtime_s": round(runtime, 2),
        "steps_per_s": round(metrics["steps"] / runtime, 4),
        "rewards_per_s": reward["rewards_per_s"]["mean"],
        "generation_s": round(clock.seconds, 2),
        "generation_calls": clock.calls,
        "generation_share_of_step_time": round(min(clock.seconds / runtime, 1.0), 4),
        "reward_share_of_step_time": reward["share_of_step_time"]["mean"],
        "teaching_fraction": metrics.get("teaching_fraction"),  # samples in the backward pass (skip_zero_advantage)
        "mean_reward": reward["mean_reward"],
        "execution_rate": reward["execution_rate"],
        "match_rate": reward["match_rate"],
        "peak_memory_gib": _peak_memory_gib(cuda),
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if cuda else "process max RSS",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the SFT and GRPO run directories")
    parser.add_argument("--json", type=Path, required=True, help="where the figures go")
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (the suite's rehearsal)")
    args = parser.parse_args()
    result = measure(args.work, args.cpu)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
