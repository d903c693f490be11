"""The GPU suite cannot rot: its CPU rehearsal runs the same code path and writes the GPU run's JSON schema.

``scripts/gpu-suite.sh --cpu OUT`` trains tiny configs of the 7B architectures through both arms (the
original recipe's loop and ``sqlmaster train``), times both generation arms and runs ``pytest -m gpu`` (skipped
here), under the same time guard as on the GPU. This test runs it and checks the JSON (about 1.5 minutes on 2
cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
NUMBER = (int, float)


def _number(value: object) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("gpu-suite")
    env = {**os.environ, "GPU_SUITE_WORK": str(out / "work")}
    proc = subprocess.run(
        [str(REPO / "scripts" / "gpu-suite.sh"), "--cpu", str(out / "result")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = out / "result"
    # Three small files, whatever ran: what the device tool can bring back (at most 8, 2 folders deep).
    assert sorted(p.name for p in out.iterdir()) == ["gpu-suite-logs.tar.gz", "gpu-suite.json", "gpu-suite.txt"]
    with tarfile.open(out / "gpu-suite-logs.tar.gz") as tar:
        assert "train-mistral7b-sqlmaster.log" in tar.getnames()
    assert (out / "gpu-suite.txt").read_text().startswith("gpu-suite (cpu)")
    return json.loads((out / "gpu-suite.json").read_text())


def test_top_level_schema(suite: dict) -> None:
    assert suite["schema"] == 1 and suite["mode"] == "cpu"
    for key in ("started", "finished", "wall_s", "budget_s", "machine", "pytest_gpu", "training", "generation"):
        assert key in suite, key
    assert suite["failed"] == [], suite["failed"]
    assert suite["skipped"] == [], suite["skipped"]
    assert suite["wall_s"] <= suite["budget_s"] + 10
    machine = suite["machine"]
    for key in ("python", "torch", "transformers", "trl", "peft", "gpu", "matmul_bf16_tflops", "cpu_flags"):
        assert key in machine, key
    assert machine["gpu"] is None  # a CPU rehearsal says so
    assert suite["pytest_gpu"]["status"] == "skipped" and suite["pytest_gpu"]["exit_code"] == 0


def test_both_training_arms_with_figures_and_the_ratio(suite: dict) -> None:
    assert "6·N" in suite["training"]["mfu_convention"]
    models = suite["training"]["models"]
    assert "mistral7b" in models
    entry = models["mistral7b"]
    original, ours = entry["arms"]["original"], entry["arms"]["sqlmaster"]
    for arm in (original, ours):
        assert arm["status"] == "ok", arm
        for key in ("tokens_per_s", "non_padding_tokens", "step_s_median", "peak_memory_gib", "model_tflops_per_s"):
            assert _number(arm[key]) and arm[key] > 0, (key, arm[key])
        assert arm["timed_steps"] == 2 and arm["warmup_steps"] == 1
        assert "mfu" in arm and arm["mfu"] is None  # no GPU peak to divide by on a CPU
        assert arm["params_trainable"] < arm["params_total"]
    assert original["examples_attend_to_each_other"] is True and original["gradient_checkpointing"] is True
    assert ours["examples_attend_to_each_other"] is False
    assert (original["micro_batch"], original["grad_accum"]) == (ours["micro_batch"], ours["grad_accum"])
    assert original["params_total"] == ours["params_total"]  # the same random model in both arms
    assert entry["ratio_sqlmaster_over_original"] == pytest.approx(ours["tokens_per_s"] / original["tokens_per_s"])


def test_lever_arm_trains_the_same_losses(suite: dict) -> None:
    entry = suite["training"]["models"]["mistral7b"]
    levers = entry["arms"]["sqlmaster_no_gc"]
    assert levers["status"] == "ok" and levers["gradient_checkpointing"] is False
    assert _number(entry["ratio_sqlmaster_no_gc_over_original"])
    # Gradient checkpointing off changes no arithmetic on CPU: the same losses, step by step.
    assert levers["loss_max_rel_diff_vs_sqlmaster"] < 1e-4


def test_grpo_phase_from_a_short_sft_run_with_its_figures(suite: dict) -> None:
    """The GRPO phase (bench/bench_grpo_step.py): a GRPO stage from a 2-step SFT run of tiny, timed."""
    grpo = suite["grpo"]
    assert grpo["status"] == "ok", grpo
    assert grpo["generator"] == "HF generate" and grpo["device"] == "cpu"  # vLLM colocated needs CUDA
    assert grpo["steps"] == 2 and grpo["generation_calls"] >= 1
    for key in ("steps_per_s", "rewards_per_s", "generation_s", "peak_memory_gib"):
        assert _number(grpo[key]) and grpo[key] > 0, (key, grpo[key])
    for key in ("generation_share_of_step_time", "reward_share_of_step_time"):
        assert _number(grpo[key]) and 0 < grpo[key] <= 1, (key, grpo[key])
    for key in ("mean_reward", "execution_rate", "match_rate"):
        assert set(grpo[key]) == {"first", "last", "mean"}


def test_both_generation_arms_and_the_ratio(suite: dict) -> None:
    generation = suite["generation"]
    assert generation["status"] == "ok" and generation["model"] == "mistral7b"
    original, ours = generation["arms"]["original"], generation["arms"]["ours"]
    assert original["batch_size"] == 1 and original["do_sample"] is True
    assert ours["batch_size"] == 16 and ours["do_sample"] is False  # jobs/eval/mistral7b.yaml's batch
    for arm in (original, ours):
        assert arm["status"] == "ok" and arm["equal_work"] is True
        for key in ("examples_per_s", "output_tokens_per_s", "wall_s", "peak_memory_gib"):
            assert _number(arm[key]) and arm[key] > 0
    assert generation["ratio_examples_per_s"] == pytest.approx(ours["examples_per_s"] / original["examples_per_s"])
    assert _number(generation["ratio_output_tokens_per_s"])


def _bench(name: str) -> Any:
    """Import a bench/ script (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


GRPO_FIGURES = {
    "status": "ok",
    "model": "tiny",
    "steps_per_s": 0.5,
    "rewards_per_s": 60.0,
    "generation_share_of_step_time": 0.7,
    "reward_share_of_step_time": 0.1,
    "peak_memory_gib": 2.0,
}


def _fake_phases(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> Any:
    """The GPU plan with every phase's process replaced: arguments parsed by the real parsers, recipes loaded."""
    from sqlmaster.config import load_recipe

    suite_mod, train, generate = _bench("gpu_suite"), _bench("bench_train_gpu"), _bench("bench_generate")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "liger_kernel" else find_spec(n, *a)
    )

    def run(self: Any, phase: str, argv: list[str], timeout: float) -> tuple[int, str]:
        calls.append(phase)
        assert 0 < timeout <= 150
        if phase == "machine":
            Path(argv[-1]).write_text(json.dumps({"gpu": "NVIDIA H200", "matmul_bf16_tflops": 780.0}))
        elif phase.startswith("train-"):
            args = train.make_parser().parse_args(argv[2:])
            recipe = load_recipe(args.recipe, train.benchmark_overrides(args.warmup + args.steps, args.overrides))
            assert recipe.model.init == "random" and args.measured_tflops == 780.0
            assert (args.original_batch, args.original_accum, args.original_max_length) == (8, 4, 1024)
            assert (recipe.training.per_device_train_batch_size * recipe.training.gradient_accumulation_steps) == 32
            tps = 10_000.0 if args.arm == "original" else 25_000.0
            arm = {"status": "ok", "tokens_per_s": tps, "mfu": 0.4, "peak_memory_gib": 30.0, "attention": "x"}
            args.json.write_text(json.dumps({**arm, "losses": [1.0, 1.1] if args.arm == "sqlmaster" else [2.0]}))
        elif phase == "generation":
            args = generate.make_parser().parse_args(argv[2:])
            assert args.suite and args.n_original >= 1 and args.batch_sizes == [64, 128]
            arm = {"batch_size": 1, "examples_per_s": 1.0, "output_tokens_per_s": 100.0}
            args.json.write_text(json.dumps({"model": "mistral7b", "arms": {"original": arm}}))
        elif phase == "grpo":
            assert argv[1].endswith("bench_grpo_step.py") and "--cpu" not in argv
            out = Path(argv[argv.index("--json") + 1])
            out.write_text(json.dumps({**GRPO_FIGURES, "generator": "vLLM colocated"}))
        elif phase == "pytest-gpu":
            return 0, "2 passed in 31.0s"
        return 0, ""

    monkeypatch.setattr(suite_mod.Suite, "run", run)
    return suite_mod


def test_gpu_plan_runs_every_phase_in_order_with_arguments_the_scripts_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    suite_mod = _fake_phases(monkeypatch, calls)
    suite = suite_mod.Suite(tmp_path / "out", tmp_path / "work", False, 450.0, ["mistral7b", "llama2-7b"], True)
    suite.main()
    arms = ["original", "sqlmaster"]
    levers = ["sqlmaster_no_gc", "sqlmaster_no_gc_liger", "sqlmaster_no_gc_liger_mb16"]
    assert calls == [
        "machine",
        *[f"train-mistral7b-{a}" for a in arms],
        *[f"train-llama2-7b-{a}" for a in arms],
        "generation",
        "grpo",
        "pytest-gpu",
        *[f"train-mistral7b-{a}" for a in levers],
        *[f"train-llama2-7b-{a}" for a in levers],
        *[f"train-gemma7b-{a}" for a in arms],
    ]
    result = json.loads((tmp_path / "out" / "gpu-suite.json").read_text())
    mistral = result["training"]["models"]["mistral7b"]
    assert mistral["ratio_sqlmaster_over_original"] == 2.5
    assert mistral["arms"]["sqlmaster_no_gc"]["loss_max_rel_diff_vs_sqlmaster"] == 0.0
    assert result["pytest_gpu"]["status"] == "passed"
    assert result["grpo"]["generator"] == "vLLM colocated"
    text = (tmp_path / "out" / "gpu-suite.txt").read_text()
    assert "NVIDIA H200" in text and "grpo tiny (vLLM colocated): 0.500 steps/s" in text


def test_gpu_plan_records_what_did_not_fit_and_still_writes_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    suite_mod = _fake_phases(monkeypatch, calls)
    suite_mod.Suite(tmp_path / "out", tmp_path / "work", False, 40.0, ["mistral7b"], False).main()
    result = json.loads((tmp_path / "out" / "gpu-suite.json").read_text())
    assert calls == ["machine", "pytest-gpu"]  # 40 s: no training arm (needs 50) and no generation (45)
    skipped = {item["phase"] for item in result["skipped"]}
    assert {"train-mistral7b-original", "train-mistral7b-sqlmaster", "generation", "grpo"} <= skipped
    assert result["grpo"]["status"] == "skipped"
    assert result["training"]["models"]["mistral7b"]["arms"]["sqlmaster"]["status"] == "skipped"
    assert result["training"]["models"]["mistral7b"]["ratio_sqlmaster_over_original"] is None
