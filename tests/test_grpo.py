"""The GRPO stage (`sqlmaster train --stage grpo --init-from SFT_RUN`): its guard, a micro run end to end, the
reward's figures in the logs, hostile SQL through the trainer, and resume after SIGKILL.

Every run uses the micro tiny model of the training tests (seconds per run): a 10-step SFT run, then GRPO steps of
2 prompts x 2 samples of at most 24 tokens.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _micro import MICRO_SFT, ONE_PROCESS_STEPS

from sqlmaster.train.guard import TrainOptions, inherited_overrides

REPO = Path(__file__).resolve().parents[1]
SFT = [
    *MICRO_SFT,
    "data.max_train_rows=240",
    "data.drop_invalid_gold=false",
    "training.max_steps=10",
    "training.eval_steps=5",
    "training.save_steps=5",
]
GRPO = [
    "grpo.num_generations=2",
    "grpo.prompts_per_step=2",
    "grpo.max_completion_length=24",
    "training.learning_rate=1e-4",
    *ONE_PROCESS_STEPS,
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_TOKEN"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    return env


def _cli(*args: str, sets: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sqlmaster.cli",
        "train",
        "--model",
        "tiny",
        *args,
        *(a for s in sets for a in ("--set", s)),
    ]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.runner import run_training

    run_dir = tmp_path_factory.mktemp("runs") / "sft"
    run_training("tiny", run_dir, resolve_recipe("train", "tiny", None, SFT).recipe)
    return run_dir


def _grpo(sft_run: Path, run_dir: Path, *extra: str) -> dict[str, Any]:
    """In-process `sqlmaster train --model tiny --stage grpo --init-from SFT_RUN --set ...`, as the CLI resolves it."""
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.runner import run_training

    info = json.loads((sft_run / "run.json").read_text())
    recipe = resolve_recipe("train", "tiny", None, [*inherited_overrides(info), *GRPO, *extra]).recipe
    return run_training("tiny", run_dir, recipe, TrainOptions(stage="grpo", init_from=str(sft_run)))


def _damaged(sft_run: Path, tmp_path: Path, **fields: Any) -> Path:
    """A copy of the SFT run's run.json (no weights needed: the guard refuses before it looks) with ``fields``."""
    copy = tmp_path / "init"
    copy.mkdir()
    info = json.loads((sft_run / "run.json").read_text())
    for key, value in fields.items():
        if key == "model":
            info["base_model"]["name"] = value
        else:
            info[key] = value
    (copy / "run.json").write_text(json.dumps(info))
    return copy


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no init-from", r"--stage grpo needs --init-from RUN_DIR"),
        ("missing", r"--init-from \S+ does not exist"),
        ("running", r"holds a run that is running, not completed"),
        ("failed", r"holds a run that is failed, not completed"),
        ("another model", r"holds a run of smollm2-135m, not of tiny"),
        ("a grpo run", r"holds a grpo run, not an SFT run"),
        ("no weights", r"has no model/ \(its weights are gone\)"),
        ("init-from with sft", r"--init-from is for --stage grpo"),
    ],
)
def test_the_stage_guard_refuses_with_one_line_and_writes_nothing(
    sft_run: Path, tmp_path: Path, case: str, message: str
) -> None:
    init: dict[str, list[str]] = {
        "no init-from": [],
        "missing": ["--init-from", str(tmp_path / "nowhere")],
        "init-from with sft": ["--init-from", str(sft_run)],
    }
    fields = {
        "running": {"status": "running"},
        "failed": {"status": "failed"},
        "another model": {"model": "smollm2-135m"},
    }
    fields |= {"a grpo run": {"stage": "grpo"}, "no weights": {}}
    args = init[case] if case in init else ["--init-from", str(_damaged(sft_run, tmp_path, **fields[case]))]
    stage = ["--stage", "sft" if case == "init-from with sft" else "grpo"]
    out = tmp_path / "out"
    proc = subprocess.run(
        _cli(*stage, *args, "--output-dir", str(out), sets=GRPO),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_grpo_into_the_sft_runs_own_directory_is_refused(sft_run: Path) -> None:
    before = (sft_run / "run.json").read_text()
    proc = subprocess.run(
        _cli("--stage", "grpo", "--init-from", str(sft_run), "--output-dir", str(sft_run), sets=GRPO),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and 'stage "sft" -> "grpo"' in proc.stderr, proc.stderr[-2000:]
    assert (sft_run / "run.json").read_text() == before


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_grpo_run_from_an_sft_run_completes_and_logs_the_reward(sft_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "grpo"
    lines = _Lines()
    logging.getLogger("sqlmaster").addHandler(lines)
    try:
        metrics = _grpo(sft_run, run_dir, "training.max_steps=3", "training.save_steps=2", "grpo.beta=0.04")
    finally:
        logging.getLogger("sqlmaster").removeHandler(lines)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["stage"] == "grpo"
    assert info["init_from"] == {"path": str(sft_run.resolve()), "run_id": "sft"}
    assert info["recipe"]["prompt"]["template"] == "compact"  # the SFT run's, not tiny.yaml's
    assert info["recipe"]["model"]["tiny_hidden_size"] == 32 and info["recipe"]["grpo"]["beta"] == 0.04
    assert metrics["steps"] == 3 and metrics["stop_reason"] == "max_steps"
    for key in ("mean_reward", "execution_rate", "match_rate", "rewards_per_s", "share_of_step_time"):
        assert metrics["reward"][key]["last"] is not None, key
    assert 0 < metrics["reward"]["share_of_step_time"]["mean"] <= 1
    assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / "base").exists()
    err = "\n".join(lines.lines)
    assert "generator HF generate" in err
    assert "step 3/3 |" in err and "| reward " in err and "| exec " in err and "rewards/s" in err
    assert "reward time" in err


# SQL a model could write that the reward must survive: a runaway query (stopped by its CPU budget) and an ATTACH
# (refused by the sandbox), in the scorer's isolated workers during a real step.
HOSTILE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "ATTACH DATABASE 'escape.db' AS e",
)


def test_hostile_completions_are_rewarded_zero_and_the_step_completes(
    sft_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half the samples are replaced by the gold and half by hostile SQL, in the scorer's workers during a real step:
    every hostile one gets 0, every gold one 1 (unless its gold does not run on its own schema, or a loaded machine
    stretched a worker past its watchdog: both counted in the reward's stats), and the run completes."""
    from sqlmaster.train.reward import ExecutionReward

    original_tasks, original_call = ExecutionReward.tasks, ExecutionReward.__call__
    calls: list[tuple[list[float], Any]] = []

    def rigged(self: ExecutionReward, completions: Any, answer: Any, context: Any) -> list[Any]:
        tasks = original_tasks(self, completions, answer, context)
        return [
            (db, ctx, gold, gold if i % 2 == 0 else HOSTILE[i // 2 % 2]) for i, (db, ctx, gold, _) in enumerate(tasks)
        ]

    def recorded(self: ExecutionReward, *args: Any, **kwargs: Any) -> list[float]:
        rewards = original_call(self, *args, **kwargs)
        calls.append((rewards, self.last))
        return rewards

    monkeypatch.setattr(ExecutionReward, "tasks", rigged)
    monkeypatch.setattr(ExecutionReward, "__call__", recorded)
    monkeypatch.chdir(tmp_path)  # where an ATTACH would create its file
    metrics = _grpo(sft_run, tmp_path / "grpo", "training.max_steps=1")
    assert metrics["steps"] == 1 and len(calls) == 1
    ((rewards, stats),) = calls
    assert rewards[1::2] == [0.0] * (len(rewards) // 2)
    misses = stats.gold_invalid + stats.worker_failures
    assert rewards[0::2].count(1.0) >= len(rewards) // 2 - misses and stats.n == 4
    if not misses:
        assert metrics["reward"]["mean_reward"]["last"] == pytest.approx(0.5)
    assert not (tmp_path / "escape.db").exists()


def test_gold_in_group_makes_the_first_sample_of_each_group_the_gold(
    sft_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpo.gold_in_group: the first of each prompt's samples is its gold completion, tokenized as SFT tokenizes it
    (so the reward scores it a match), the others are the model's own samples."""
    from sqlmaster.prompt import extract_sql, get_template
    from sqlmaster.train.reward import ExecutionReward

    original_call = ExecutionReward.__call__
    calls: list[tuple[list[str], list[str], list[float], Any]] = []

    def recorded(self: ExecutionReward, prompts: Any, completions: Any, **kwargs: Any) -> list[float]:
        rewards = original_call(self, prompts, completions, **kwargs)
        calls.append((list(completions), list(kwargs["answer"]), rewards, self.last))
        return rewards

    monkeypatch.setattr(ExecutionReward, "__call__", recorded)
    metrics = _grpo(sft_run, tmp_path / "grpo", "training.max_steps=2", "grpo.gold_in_group=true")
    assert metrics["steps"] == 2 and len(calls) == 2
    template = get_template("compact")
    for completions, answers, rewards, stats in calls:
        assert len(completions) == 4 and answers[0] == answers[1] and answers[2] == answers[3]  # 2 groups of 2
        for i in (0, 2):
            assert " ".join(extract_sql(template, completions[i]).split()) == " ".join(
                answers[i].strip().rstrip(";").split()
            ), completions[i]
        if not stats.gold_invalid and not stats.worker_failures:
            assert rewards[0] == rewards[2] == 1.0


def _first_step_gradient(
    sft_run: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> tuple[Any, bool]:
    """One GRPO step whose rewards are set, not scored (this is about the trainer): prompt 1's two samples both
    1.0 (equal rewards: advantage 0), prompt 2's 1.0 and 0.0 (advantages +-1). Returns the flattened gradient the
    optimizer got and whether the step's log line said half the samples taught."""
    import torch
    from transformers import TrainerCallback

    from sqlmaster.train.grpo import SQLMasterGRPOTrainer
    from sqlmaster.train.reward import ExecutionReward

    original_init = SQLMasterGRPOTrainer.__init__
    gradients: list[Any] = []

    def rigged(self: ExecutionReward, prompts: Any, completions: Any, **kwargs: Any) -> list[float]:
        assert len(completions) == 4  # 2 prompts x 2 samples
        return [1.0, 1.0, 1.0, 0.0]

    class Recorder(TrainerCallback):
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
            gradients.append(torch.cat(grads).clone())

    def recording_init(self: SQLMasterGRPOTrainer, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.add_callback(Recorder())

    monkeypatch.setattr(ExecutionReward, "__call__", rigged)
    monkeypatch.setattr(SQLMasterGRPOTrainer, "__init__", recording_init)
    lines = _Lines()
    logging.getLogger("sqlmaster").addHandler(lines)
    try:
        metrics = _grpo(sft_run, run_dir, "training.max_steps=1", *extra)
    finally:
        logging.getLogger("sqlmaster").removeHandler(lines)
    assert metrics["steps"] == 1 and len(gradients) == 1
    return gradients[0], "| teaching 50% |" in "\n".join(lines.lines)


def test_skipping_zero_advantage_samples_leaves_the_gradients_direction_unchanged(
    sft_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpo.skip_zero_advantage drops prompt 1's samples (advantage 0) from the forward and backward pass: the
    optimizer gets the same gradient up to its scale (the loss's token count now covers prompt 2's samples only),
    and the log line says half the samples taught."""
    import torch

    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    kept, said_half_on = _first_step_gradient(sft_run, tmp_path / "on" / "grpo", monkeypatch)
    full, said_half_off = _first_step_gradient(
        sft_run, tmp_path / "off" / "grpo", monkeypatch, "grpo.skip_zero_advantage=false"
    )
    assert said_half_on and not said_half_off
    assert full.norm() > 0 and kept.norm() > 0
    assert torch.nn.functional.cosine_similarity(kept, full, dim=0) > 0.9999
    assert kept.norm() > full.norm()  # the same sum over fewer tokens


def test_teaching_rows_keep_equal_micro_batches_and_count_only_teaching_tokens() -> None:
    """The batch filter on its own: samples with advantage 0 leave, as many stay as TRL's split into
    steps_per_generation micro-batches needs, and the loss's token count covers the samples that teach."""
    from collections import defaultdict
    from types import SimpleNamespace

    import torch

    from sqlmaster.train.grpo import SQLMasterGRPOTrainer

    def trainer(chunks: int) -> Any:
        return SimpleNamespace(
            accelerator=SimpleNamespace(gather=lambda t: t),  # one process
            args=SimpleNamespace(steps_per_generation=chunks),
            _metrics={"train": defaultdict(list)},
        )

    mask = torch.tensor([[1, 1, 0]] * 4 + [[1, 1, 1]] * 4)
    batch = {
        "advantages": torch.tensor([0.0, 1e-17, 0.0, 0.0, 0.5, -0.5, 0.0, 0.0]),
        "completion_mask": mask,
        "completion_ids": torch.arange(24).reshape(8, 3),
        "num_items_in_batch": mask.sum(),
        "labels": list("abcdefgh"),
    }
    one = SQLMasterGRPOTrainer._teaching_rows(trainer(1), dict(batch))
    assert one["advantages"].tolist() == [0.5, -0.5] and one["labels"] == ["e", "f"]
    assert one["completion_ids"].tolist() == [[12, 13, 14], [15, 16, 17]]
    assert int(one["num_items_in_batch"]) == 6
    four = SQLMasterGRPOTrainer._teaching_rows(trainer(4), dict(batch))  # 2 teach: 2 zero-advantage fillers
    assert len(four["advantages"]) == 4 and four["labels"] == ["a", "b", "e", "f"]
    assert int(four["num_items_in_batch"]) == 6
    batch["advantages"] = torch.zeros(8)
    none = SQLMasterGRPOTrainer._teaching_rows(trainer(2), dict(batch))  # nothing teaches: one row per micro-batch
    assert none["labels"] == ["a", "b"] and int(none["num_items_in_batch"]) == 0


def test_grpo_trains_in_two_cpu_processes_with_the_gold_in_each_group(sft_run: Path, tmp_path: Path) -> None:
    """training.cpu_processes=2 (tiny's GRPO recipe): two gloo workers, each generating and scoring its share of
    the step's groups; with grpo.gold_in_group each group's first sample is the gold on whichever process holds
    it, and with grpo.skip_zero_advantage the processes keep equal batches (TRL gathers per-sample figures)."""
    from sqlmaster.cores import available_cores

    if available_cores() < 2:
        pytest.skip(f"needs 2 cores for 2 training processes; this process may use {available_cores()}")
    run_dir = tmp_path / "grpo"
    sets = [*GRPO, "training.max_steps=3", "training.cpu_processes=2", "grpo.gold_in_group=true"]
    command = _cli("--stage", "grpo", "--init-from", str(sft_run), "--output-dir", str(run_dir), sets=sets)
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "starting 2 training processes" in out and "the gold as one sample of each group" in out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "completed" and info["stage"] == "grpo"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 3
    # every group holds its gold: half the samples match at least, unless a gold does not run on its schema
    assert metrics["reward"]["match_rate"]["mean"] >= 0.25, metrics["reward"]
    assert re.search(r"\| teaching \d+% \|", out), out[-3000:]
    assert 0 < metrics["teaching_fraction"] <= 1


def test_the_gold_completion_continues_the_prompt_as_sft_tokenized_it(sft_run: Path) -> None:
    from transformers import AutoTokenizer

    from sqlmaster.prompt import get_template, render_completion, render_prompt
    from sqlmaster.train.grpo import gold_completion_ids

    tokenizer = AutoTokenizer.from_pretrained(sft_run / "model")
    template = get_template("compact")  # the SFT run's
    prompt = render_prompt(template, "How many heads?", "CREATE TABLE head (age INTEGER)")
    completion = render_completion(template, "SELECT count(*) FROM head")
    prompt_ids = tokenizer(text=prompt)["input_ids"]
    gold = gold_completion_ids(tokenizer, prompt_ids, prompt, completion)
    assert prompt_ids + gold == tokenizer(text=prompt + completion + tokenizer.eos_token)["input_ids"]
    assert gold[-1] == tokenizer.eos_token_id


def test_the_same_command_after_sigkill_resumes_from_the_latest_checkpoint(sft_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "grpo"
    sets = [*GRPO, "training.max_steps=8", "training.save_steps=1"]
    command = _cli("--stage", "grpo", "--init-from", str(sft_run), "--output-dir", str(run_dir), sets=sets)
    proc = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "checkpoint-2" / "COMPLETE").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint-2 within 300 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if json.loads((run_dir / "run.json").read_text())["status"] == "completed":
        pytest.skip("the run finished before it was killed (a fast machine)")
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["steps"] == 8 and info["stage"] == "grpo"
    assert info["resumed_from"] and "checkpoint-" in info["resumed_from"][-1]
    assert "resuming from" in again.stdout


def test_an_sft_run_records_its_stage_and_ignores_the_grpo_section(sft_run: Path) -> None:
    from sqlmaster.config import load_recipe
    from sqlmaster.train.guard import recipe_changes, recipe_hash

    info = json.loads((sft_run / "run.json").read_text())
    assert info["stage"] == "sft" and "init_from" not in info
    recipe = load_recipe(None, ["grpo.beta=0.5"])
    assert recipe_hash("tiny", recipe) == recipe_hash("tiny", load_recipe(None, []))
    assert recipe_hash("tiny", recipe, "grpo") != recipe_hash("tiny", load_recipe(None, []), "grpo")
    assert not [c for c in recipe_changes({"recipe": {"grpo": {"beta": 0.0}}}, "tiny", recipe) if c.key == "grpo.beta"]


def test_a_lora_sft_run_keeps_training_its_own_adapter(tmp_path: Path) -> None:
    """A LoRA SFT run's adapter is loaded trainable and saved without TRL's frozen KL reference copy (beta > 0);
    the GRPO run loads for evaluation like any LoRA run (its base is the SFT run's)."""
    from safetensors.torch import load_file

    from sqlmaster.models.loading import load_trained
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.runner import run_training

    sft = tmp_path / "sft-lora"
    lora = [s for s in SFT if s != "model.mode=full"] + ["model.mode=lora", "training.max_steps=5"]
    run_training("tiny", sft, resolve_recipe("train", "tiny", None, lora).recipe)
    run_dir = tmp_path / "grpo-lora"
    # A learning rate too small to move a weight: the saved adapter must be the SFT run's, not a fresh one.
    _grpo(sft, run_dir, "training.max_steps=2", "grpo.beta=0.04", "training.learning_rate=1e-12")
    before, after = (
        load_file(sft / "adapter" / "adapter_model.safetensors"),
        load_file(run_dir / "adapter" / "adapter_model.safetensors"),
    )
    assert before.keys() == after.keys() and any(t.abs().sum() > 0 for k, t in before.items() if "lora_B" in k)
    assert all((before[k] - after[k]).abs().max() < 1e-6 for k in before)
    assert not (run_dir / "adapter" / "ref").exists()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["mode"] == "lora" and info["base_model"]["path"] == str((sft / "base").resolve())
    model, _, _ = load_trained(run_dir, device="cpu")
    assert type(model).__name__.startswith("PeftModel")
