"""End-to-end training on CPU with a very small tiny model: outputs, reload, resume after SIGKILL, DDP, W&B, errors.

Every run here uses MICRO (a ~30k-parameter tiny model, 240 training rows, 40 steps) so the module stays within a
few minutes on 2 cores with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _micro import MICRO_SFT

from sqlmaster.errors import ConfigError
from sqlmaster.train.checkpoints import COMPLETE_MARKER, latest_complete

MAX_STEPS = 40
MICRO = [
    *MICRO_SFT,
    "data.max_train_rows=240",
    "data.drop_invalid_gold=false",  # tiny's recipe drops them; checking 15k gold queries per run costs seconds
    f"training.max_steps={MAX_STEPS}",
    "training.eval_steps=5",
    "training.save_steps=5",
    "training.save_total_limit=20",
]
REPO = Path(__file__).resolve().parents[1]


def _train(run_dir: Path, *extra: str) -> dict:
    """In-process `sqlmaster train --model tiny --set ...`: tiny's jobs/ recipe under MICRO, as the CLI resolves it."""
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.train.runner import run_training

    return run_training("tiny", run_dir, resolve_recipe("train", "tiny", None, [*MICRO, *extra]).recipe)


def _cli(run_dir: Path, *extra: str, python: list[str] | None = None) -> list[str]:
    args = ["train", "--model", "tiny", "--output-dir", str(run_dir)]
    for item in [*MICRO, *extra]:
        args += ["--set", item]
    return [*(python or [sys.executable, "-m", "sqlmaster.cli"]), *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_TOKEN"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    return env


SENTINEL_KEY = "wandb-key-sentinel-0123456789abcdef"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run with W&B offline, reused by several tests.

    A (fake) WANDB_API_KEY is set so the test can check it is written nowhere in the run directory.
    """
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WANDB_")}
    os.environ["WANDB_API_KEY"] = SENTINEL_KEY
    try:
        _train(run_dir, "tracking.wandb_mode=offline")
    finally:
        for key in [k for k in os.environ if k.startswith("WANDB_")]:
            del os.environ[key]
        os.environ.update(saved)
    return run_dir


def _losses(run_dir: Path) -> dict[int, float]:
    final = latest_complete(run_dir / "checkpoints")
    assert final is not None
    state = json.loads((final / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def test_loss_falls_and_outputs_are_written(reference: Path) -> None:
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["steps"] == MAX_STEPS and metrics["stop_reason"] == "max_steps"
    assert metrics["train_loss"] < metrics["train_loss_first"] - 0.5
    assert metrics["eval_losses"][-1]["eval_loss"] < metrics["eval_losses"][0]["eval_loss"]
    assert metrics["tokens"] > 0 and metrics["tokens_per_second"] > 0

    info = json.loads((reference / "run.json").read_text())
    assert info["status"] == "completed" and info["run_id"] == "reference"
    assert info["base_model"] == {"name": "tiny", "hub_id": None, "revision": None, "path": "base"}
    assert info["mode"] == "full" and info["prompt_template"] == "compact"
    assert info["data"]["split_sizes"] == {"train": 240, "validation": 8, "test": 10}
    assert re.fullmatch(r"[0-9a-f]{64}", info["data"]["sha256"]["train"])
    assert info["recipe"]["training"]["max_steps"] == MAX_STEPS
    assert info["packages"]["torch"] and info["packages"]["trl"]
    assert "git_commit" in info and info["started"] <= info["finished"]
    assert (reference / "model" / "model.safetensors").is_file()
    assert (reference / "model" / "tokenizer.json").is_file()
    assert torch.get_num_threads() == 1  # training.num_threads


def test_wandb_offline_run_logs_recipe_and_tokens_per_second_but_never_the_key(reference: Path) -> None:
    runs = list((reference / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (record,) = runs[0].glob("run-*.wandb")
    data = record.read_bytes()
    assert b"tokens_per_second" in data  # the non-padding tokens/s figure, per log step
    assert b"max_train_rows" in data  # the resolved recipe in the run config
    assert b"reference" in data  # run name = output directory name (no SQLMASTER_RUN_ID)
    for path in reference.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes(), path


def test_wandb_mode_auto_is_offline_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlmaster.config import TrackingConfig
    from sqlmaster.train.tracking import run_id_for, wandb_mode

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the user's choice wins over a key (test_hardening.py)
    assert wandb_mode(TrackingConfig()) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x")
    assert wandb_mode(TrackingConfig()) == "online"
    assert wandb_mode(TrackingConfig(wandb_mode="disabled")) == "disabled"
    monkeypatch.setenv("SQLMASTER_RUN_ID", "sweep-42")
    assert run_id_for(Path("/data/runs/x/tiny")) == "sweep-42"
    monkeypatch.delenv("SQLMASTER_RUN_ID")
    assert run_id_for(Path("/data/runs/x/tiny")) == "tiny"


def test_trained_model_reloads_and_generates(reference: Path) -> None:
    from sqlmaster.models.loading import load_trained
    from sqlmaster.prompt import get_template, render_prompt

    model, tok, info = load_trained(reference, device="cpu")
    assert tok.padding_side == "left" and info["mode"] == "full"
    prompts = [render_prompt(get_template(info["prompt_template"]), q, "CREATE TABLE t (a INT)") for q in ("A?", "Bb?")]
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    new = out[:, enc["input_ids"].shape[1] :]
    assert new.shape[1] > 0
    assert all(isinstance(text, str) for text in tok.batch_decode(new, skip_special_tokens=True))


def test_lora_adapter_is_non_empty_loadable_and_merge_keeps_it(tmp_path: Path) -> None:
    from peft import PeftModel

    from sqlmaster.models.loading import load_trained
    from sqlmaster.train.outputs import verify_adapter

    run_dir = tmp_path / "lora"
    _train(
        run_dir,
        "model.mode=lora",
        "model.lora_r=4",
        "model.modules_to_save=[embed_tokens, lm_head]",
        "training.max_steps=5",
        "output.merge=true",
    )
    assert verify_adapter(run_dir / "adapter") > 0
    assert (run_dir / "adapter" / "adapter_model.safetensors").stat().st_size > 1000
    assert (run_dir / "merged" / "model.safetensors").is_file()

    model, tok, info = load_trained(run_dir, device="cpu")
    assert isinstance(model, PeftModel) and info["outputs"]["adapter"] == "adapter"
    merged, _, _ = load_trained(run_dir, device="cpu", merged=True)
    ids = tok(["SELECT a FROM t"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


def test_resume_after_sigkill_loses_no_step_past_the_last_checkpoint(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_cli(run_dir), env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    try:
        while not (run_dir / "checkpoints" / "checkpoint-10" / COMPLETE_MARKER).exists():
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (run_dir / "metrics.json").exists(), "the run finished before it could be killed"
    last = latest_complete(run_dir / "checkpoints")
    assert last is not None
    last_step = int(last.name.split("-")[1])
    assert 10 <= last_step < MAX_STEPS
    # A save the kill interrupted: a checkpoint directory without the completion marker.
    partial = run_dir / "checkpoints" / f"checkpoint-{MAX_STEPS + 5}"
    partial.mkdir()
    (partial / "optimizer.pt").write_bytes(b"half")

    resumed = subprocess.run(_cli(run_dir), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming from {last}" in resumed.stdout
    assert "removed partially written checkpoint" in resumed.stdout
    assert not partial.exists()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == MAX_STEPS
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resumed_from"] == [str(last)]
    losses = _losses(run_dir)
    assert sorted(losses) == list(range(1, MAX_STEPS + 1))  # every step logged once: none lost, none repeated
    reference_losses = _losses(reference)
    # Same data order, RNG and optimizer state after resume: the same losses as the uninterrupted run.
    for step in range(last_step + 1, MAX_STEPS + 1):
        assert losses[step] == pytest.approx(reference_losses[step], rel=1e-3), step


def test_max_time_stops_cleanly_with_a_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "timed"
    metrics = _train(run_dir, "training.max_time_minutes=0.0001", "training.max_steps=1000")
    assert metrics["stop_reason"] == "max_time" and metrics["steps"] < 1000
    last = latest_complete(run_dir / "checkpoints")
    assert last is not None and last.name == f"checkpoint-{metrics['steps']}"
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_ddp_with_two_cpu_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    cmd = _cli(
        run_dir,
        "training.max_steps=4",
        "training.save_steps=2",
        "training.eval_steps=2",
        python=[*torchrun, "sqlmaster.cli"],
    )
    done = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "completed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert done.stdout.count("finished:") == 1  # only rank 0 reports and writes
    ckpt = run_dir / "checkpoints" / "checkpoint-4"
    assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}


def test_cpu_processes_train_with_ddp_workers_and_a_workers_error_keeps_its_exit_code(tmp_path: Path) -> None:
    """training.cpu_processes=2: `sqlmaster train` starts two gloo workers itself; what they fail with is reported
    once, with its own exit code (2 = configuration), not torchrun's generic failure."""
    from sqlmaster.cores import available_cores

    if available_cores() < 2:
        pytest.skip(f"needs 2 cores for 2 training processes; this process may use {available_cores()}")
    run_dir = tmp_path / "two"
    extra = ("training.max_steps=4", "training.save_steps=2", "training.eval_steps=2", "training.cpu_processes=2")
    done = subprocess.run(_cli(run_dir, *extra), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "starting 2 training processes" in done.stdout + done.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "completed"
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 4

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")  # read by the workers, after the launcher's checks
    bad = subprocess.run(
        _cli(tmp_path / "bad", *extra, f"data.source={garbage}"),
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode == 2, bad.stdout[-3000:] + bad.stderr[-3000:]
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(garbage) in errors[0], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr, bad.stderr[-3000:]  # torchrun's ChildFailedError is not printed either


@pytest.mark.parametrize("code", [2, 3])
def test_sqlmaster_torchrun_exits_with_the_workers_exit_code(code: int) -> None:
    """The chart's multi-GPU launcher: a worker's exit 2 (configuration error) must reach the pod, where the Job's
    podFailurePolicy fails the Job at once instead of retrying it; plain torchrun exits 1 (and prints a
    traceback)."""
    launcher = shutil.which("sqlmaster-torchrun", path=str(Path(sys.executable).parent))
    assert launcher is not None, "the sqlmaster-torchrun console script is not installed (pip install -e .)"
    argv = [launcher, "--no-python", "--standalone", "--nproc_per_node=2", "sh", "-c", f"exit {code}"]
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_cpu_processes_are_capped_by_the_cores_and_off_on_gpus_and_under_torchrun(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlmaster.config import load_recipe
    from sqlmaster.train import launch

    monkeypatch.setattr(launch, "available_cores", lambda: 2)
    four = load_recipe(None, ["training.cpu_processes=4", "training.num_threads=1"])
    assert launch.processes_to_start(four, "cpu") == 2  # one per core
    assert launch.processes_to_start(load_recipe(None, ["training.cpu_processes=2"]), "cpu") == 2
    two_threads = load_recipe(None, ["training.cpu_processes=2", "training.num_threads=2"])
    assert launch.processes_to_start(two_threads, "cpu") == 1  # 2 threads fill both cores
    assert launch.processes_to_start(four, "cuda:0") == 1  # GPUs: the chart's torchrun decides
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch.processes_to_start(four, "cpu") == 1  # already a worker


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--model", "mistral-7"], {}, "unknown model 'mistral-7'"),
        (["--model", "mistral7b"], {}, "is gated on the Hugging Face hub and HF_TOKEN is not set"),
        (["--model", "tiny", "--set", "training.max_stepz=3"], {}, r"unknown key\(s\) \['max_stepz'\]"),
        (["--model", "tiny", "--recipe", "/nonexistent/recipe.yaml"], {}, "cannot read recipe file"),
        (["--model", "tiny", "--set", "data.source=/nonexistent/data.jsonl"], {}, "does not exist"),
        (
            ["--model", "tiny", "--set", "output.push_to_hub=true", "--set", "output.hub_repo_id=o/n"],
            {},
            "needs HF_TOKEN",
        ),
    ],
)
def test_configuration_errors_exit_2_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args, env, message
) -> None:
    from sqlmaster.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["sqlmaster", "train", "--output-dir", str(tmp_path / "out"), *args])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and re.search(message, err[-1])


def test_missing_field_in_data_is_a_config_error(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "q", "context": "CREATE TABLE t (a INT)"}) + "\n")
    with pytest.raises(ConfigError, match=r"row 1 of .* has missing or empty field\(s\) answer"):
        _train(tmp_path / "out", f"data.source={data}")


def test_unwritable_output_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write to output directory"):
        _train(blocker / "run")


def test_push_adapter_uses_the_hub_api_with_hf_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from safetensors.torch import save_file

    from sqlmaster.train.outputs import push_adapter

    calls: list[tuple[str, dict]] = []

    class FakeApi:
        def __init__(self, token: str | None = None) -> None:
            calls.append(("init", {"token": token}))

        def create_repo(self, **kwargs: object) -> None:
            calls.append(("create_repo", kwargs))

        def upload_folder(self, **kwargs: object) -> None:
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    save_file({"lora_A": torch.ones(2, 3)}, str(adapter / "adapter_model.safetensors"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="HF_TOKEN"):
        push_adapter(adapter, "org/name")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert push_adapter(adapter, "org/name") == "https://huggingface.co/org/name"
    assert calls[0] == ("init", {"token": "hf_test_token"})
    assert calls[1][0] == "create_repo" and calls[1][1]["repo_id"] == "org/name" and calls[1][1]["private"]
    assert calls[2][0] == "upload_folder" and calls[2][1]["folder_path"] == str(adapter)


def test_an_empty_adapter_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from sqlmaster.train.outputs import verify_adapter

    save_file({}, str(tmp_path / "adapter_model.safetensors"))  # the original's 48-byte kind of file
    with pytest.raises(RuntimeError, match="holds no tensors"):
        verify_adapter(tmp_path)
    shutil.rmtree(tmp_path)
