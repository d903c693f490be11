"""The GPU proof in one command: training and generation, SQLMaster against the original recipe, side by side.

    python bench/gpu_suite.py OUT_DIR [--budget-s 450]          # on a CUDA GPU (scripts/gpu-suite.sh wraps this)
    python bench/gpu_suite.py OUT_DIR --cpu                     # CPU rehearsal: tiny shapes, same code, same JSON

Writes OUT_DIR/gpu-suite.json (rewritten after every phase, so a run stopped early still leaves its figures),
OUT_DIR/gpu-suite.txt (a short table) and OUT_DIR/gpu-suite-logs.tar.gz (each phase's output); run directories,
checkpoints and adapters stay in a temporary work folder (``--work-dir``), so OUT_DIR holds three small files
(the device tool brings back at most 8). Every phase runs in its own process with a time limit taken from
what is left of the budget; a phase that does not fit is recorded as skipped with the reason, a failing one
as failed with its last output lines, and the rest go on. Phases, most important first:

1. machine: GPU name and memory, package versions, CPU flags, the bf16 matmul rate measured here;
2. training, per model (mistral7b, llama2-7b): arm ``original`` then arm ``sqlmaster`` (bench/bench_train_gpu.py);
3. generation, mistral7b: the original's way against ours (bench/bench_generate.py --suite);
4. grpo: the GRPO stage from a short SFT run of tiny: steps/s, rewards/s, generation's and the reward's share of
   the step time, peak memory and the generator used (bench/bench_grpo_step.py);
5. ``pytest -m gpu``;
6. levers: ``sqlmaster`` with the speed levers added one by one (no gradient checkpointing; + liger-kernel where
   importable; + 16 x 2 micro-batches), per model, with a loss check against the shipped recipe's arm;
7. gemma7b's two training arms, if time is left.

In ``--cpu`` mode the models are tiny configs of the same architectures (written to OUT_DIR/work), the
original's batch is 2 x 2 x 256 instead of 8 x 4 x 1024 and the SQLMaster arm gets the same shape through
``--set``; everything else is the GPU run's code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a file: import sqlmaster from this checkout
SCHEMA_VERSION = 1
TRAIN_MODELS = ("mistral7b", "llama2-7b")
MFU_CONVENTION = (
    "model FLOPs per token = 6·N, N = all base-model parameters except the input embedding (frozen weights and "
    "LM head included, attention scores excluded, recomputation not counted); MFU = tokens/s · 6N ÷ dense bf16 "
    "peak (datasheet: 989 TFLOP/s for H100/H200); mfu_vs_measured_matmul uses the matmul rate measured in this run"
)


class Shape:
    """Sizes for one mode: the GPU run uses the original recipe's, the CPU rehearsal tiny ones."""

    def __init__(self, cpu: bool) -> None:
        self.cpu = cpu
        self.warmup, self.steps = (1, 2) if cpu else (2, 4)
        self.batch, self.accum, self.max_length = (2, 2, 256) if cpu else (8, 4, 1024)
        self.rows = 300 if cpu else 2500  # training rows: enough packs for warmup + steps
        self.gen_original, self.gen_ours, self.gen_new_tokens = (2, 8, 16) if cpu else (4, 64, 100)
        self.gen_batches = [8] if cpu else [64, 128]
        # Caps per phase (s). GPU: a SQLMaster arm compiles flex_attention's kernels in its first steps.
        self.caps = {
            "machine": 60,
            "train": 120 if cpu else 150,
            "generation": 120 if cpu else 100,
            "grpo": 150 if cpu else 120,
            "pytest": 120,
        }
        self.need = {
            "machine": 10,
            "train": 20 if cpu else 50,
            "generation": 15 if cpu else 45,
            "grpo": 30 if cpu else 40,
            "pytest": 20,
        }

    def sqlmaster_overrides(self) -> list[str]:
        rows = [f"data.max_train_rows={self.rows}"]
        if not self.cpu:
            return rows
        return [
            *rows,
            f"training.max_length={self.max_length}",
            f"training.per_device_train_batch_size={self.batch}",
            f"training.gradient_accumulation_steps={self.accum}",
        ]


def tiny_config_dir(model: str, work: Path) -> Path:
    """A tiny config.json of ``model``'s architecture (CPU rehearsal); the directory is named like the model."""
    from sqlmaster.models.registry import resolve_model

    values = dict(resolve_model(model).config())
    heads, kv = 4, 4 if values.get("num_key_value_heads", 0) == values.get("num_attention_heads") else 2
    values.update(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=16,
        vocab_size=4096,
    )
    directory = work / "models" / model
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(values, indent=2))
    return directory


class Suite:
    def __init__(self, out: Path, work: Path, cpu: bool, budget_s: float, models: list[str], gemma: bool) -> None:
        self.out = out
        self.work = work
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.shape = Shape(cpu)
        self.deadline = time.monotonic() + budget_s
        self.started = time.monotonic()
        self.models = models
        self.gemma = gemma
        self.result: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "mode": "cpu" if cpu else "gpu",
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "finished": None,
            "wall_s": None,
            "budget_s": budget_s,
            "git_commit": _git_commit(),
            "machine": {},
            "pytest_gpu": {"status": "not_run"},
            "training": {"mfu_convention": MFU_CONVENTION, "models": {}},
            "generation": {"status": "not_run", "arms": {}},
            "grpo": {"status": "not_run"},
            "skipped": [],
            "failed": [],
        }

    # --- plumbing -------------------------------------------------------------------------------------------

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.result["wall_s"] = round(time.monotonic() - self.started, 1)
        self.result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        tmp = self.out / "gpu-suite.json.tmp"
        tmp.write_text(json.dumps(self.result, indent=2, default=str))
        tmp.replace(self.out / "gpu-suite.json")
        (self.out / "gpu-suite.txt").write_text(summary_text(self.result))
        with tarfile.open(self.out / "gpu-suite-logs.tar.gz", "w:gz") as tar:
            for log in sorted(self.work.glob("*.log")):
                tar.add(log, arcname=log.name)

    def fits(self, phase: str, kind: str) -> float | None:
        """Seconds this phase may take, or None (recorded as skipped) when what is left is too little."""
        left = self.left() - 3  # keep a moment to write the JSON
        if left < self.shape.need[kind]:
            self.result["skipped"].append({"phase": phase, "reason": f"{left:.0f} s left of the budget"})
            return None
        return min(self.shape.caps[kind], left)

    def run(self, phase: str, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run a phase's process; returns (exit code, its last output lines). 124 = stopped at its time limit."""
        log_path = self.work / f"{phase}.log"
        print(f"[{self.elapsed()}] {phase}: {' '.join(argv[1:])[:200]} (limit {timeout:.0f} s)", flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)  # the phase's whole process group: data loader or compile workers too
                proc.wait()
                code = 124
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        print(f"[{self.elapsed()}] {phase}: exit {code}", flush=True)
        return code, tail

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:5.0f}s"

    def failure(self, phase: str, code: int, tail: str) -> dict[str, Any]:
        status = "timeout" if code == 124 else "failed"
        self.result["failed"].append({"phase": phase, "exit_code": code, "output_tail": tail[-2000:]})
        return {"status": status, "error": tail.splitlines()[-1] if tail else f"exit {code}"}

    # --- phases ---------------------------------------------------------------------------------------------

    def machine(self) -> None:
        timeout = self.fits("machine", "machine")
        if timeout is None:
            return
        path = self.work / "machine.json"
        code, tail = self.run("machine", [sys.executable, __file__, "--machine-info", str(path)], timeout)
        self.result["machine"] = json.loads(path.read_text()) if code == 0 else self.failure("machine", code, tail)
        self.write()

    def model_dir(self, model: str) -> str:
        return str(tiny_config_dir(model, self.work)) if self.shape.cpu else model

    def train_arm(self, model: str, arm: str, name: str, extra: list[str]) -> None:
        entry = self.result["training"]["models"].setdefault(model, {"arms": {}})
        phase = f"train-{model}-{name}"
        timeout = self.fits(phase, "train")
        if timeout is None:
            entry["arms"][name] = {"status": "skipped", "error": "not enough time left"}
            ratios(entry)
            self.write()
            return
        shape = self.shape
        out = self.work / f"{phase}.json"
        argv = [
            sys.executable,
            str(REPO / "bench" / "bench_train_gpu.py"),
            "--arm",
            arm,
            "--model",
            self.model_dir(model),
            "--recipe",
            str(REPO / "jobs" / "train" / f"{model}.yaml"),
            "--steps",
            str(shape.steps),
            "--warmup",
            str(shape.warmup),
            "--original-batch",
            str(shape.batch),
            "--original-accum",
            str(shape.accum),
            "--original-max-length",
            str(shape.max_length),
            "--workdir",
            str(self.work / phase),
            "--json",
            str(out),
        ]
        measured = (self.result.get("machine") or {}).get("matmul_bf16_tflops")
        if measured:
            argv += ["--measured-tflops", str(measured)]
        for item in [*shape.sqlmaster_overrides(), *extra]:
            argv += ["--set", item]
        code, tail = self.run(phase, argv, timeout)
        entry["arms"][name] = json.loads(out.read_text()) if code == 0 else self.failure(phase, code, tail)
        ratios(entry)
        self.write()

    def generation(self, model: str = "mistral7b") -> None:
        timeout = self.fits("generation", "generation")
        if timeout is None:
            self.result["generation"] = {"status": "skipped", "model": model, "arms": {}}
            self.write()
            return
        shape = self.shape
        out = self.work / "generation.json"
        argv = [
            sys.executable,
            str(REPO / "bench" / "bench_generate.py"),
            "--suite",
            "--model",
            self.model_dir(model),
            "--n",
            str(shape.gen_ours),
            "--n-original",
            str(shape.gen_original),
            "--max-new-tokens",
            str(shape.gen_new_tokens),
            "--rows",
            str(shape.rows),
            "--batch-sizes",
            *[str(b) for b in shape.gen_batches],
            "--json",
            str(out),
        ]
        code, tail = self.run("generation", argv, timeout)
        if code == 0:
            self.result["generation"] = {"status": "ok", **json.loads(out.read_text())}
        else:
            self.result["generation"] = {**self.failure("generation", code, tail), "model": model, "arms": {}}
        self.write()

    def grpo(self) -> None:
        timeout = self.fits("grpo", "grpo")
        if timeout is None:
            self.result["grpo"] = {"status": "skipped"}
            self.write()
            return
        out = self.work / "grpo.json"
        argv = [sys.executable, str(REPO / "bench" / "bench_grpo_step.py"), "--work", str(self.work / "grpo")]
        argv += ["--json", str(out), *(["--cpu"] if self.shape.cpu else [])]
        code, tail = self.run("grpo", argv, timeout)
        self.result["grpo"] = json.loads(out.read_text()) if code == 0 else self.failure("grpo", code, tail)
        self.write()

    def pytest(self) -> None:
        timeout = self.fits("pytest-gpu", "pytest")
        if timeout is None:
            self.result["pytest_gpu"] = {"status": "skipped"}
            self.write()
            return
        argv = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"]
        started = time.monotonic()
        code, tail = self.run("pytest-gpu", argv, timeout)
        # pytest: 0 all passed; 5 nothing collected. Skips (no CUDA) exit 0 and say "skipped" in the summary.
        last = tail.splitlines()[-1] if tail else ""
        status = {0: "skipped" if ("skipped" in last and "passed" not in last) else "passed", 124: "timeout"}.get(
            code, "failed"
        )
        self.result["pytest_gpu"] = {
            "status": status,
            "exit_code": code,
            "summary": last,
            "wall_s": round(time.monotonic() - started, 1),
        }
        if status in ("failed", "timeout"):
            self.result["failed"].append({"phase": "pytest-gpu", "exit_code": code, "output_tail": tail[-2000:]})
        self.write()

    def lever_sets(self) -> list[tuple[str, list[str]]]:
        """Lever arms, surest gain first; each adds to the previous so a broken lever does not hide the others."""
        import importlib.util

        no_gc = ["model.gradient_checkpointing=false"]
        sets = [("sqlmaster_no_gc", no_gc)]
        if self.shape.cpu:
            return sets  # the rehearsal checks the lever path once (liger and big batches are GPU levers)
        last = no_gc
        if importlib.util.find_spec("liger_kernel") is not None:
            last = [*no_gc, "training.liger_kernel=true"]
            sets.append(("sqlmaster_no_gc_liger", last))
        bigger = ["training.per_device_train_batch_size=16", "training.gradient_accumulation_steps=2"]
        sets.append((sets[-1][0] + "_mb16", [*last, *bigger]))
        return sets

    def main(self) -> None:
        self.write()
        self.machine()
        for model in self.models:
            self.train_arm(model, "original", "original", [])
            self.train_arm(model, "sqlmaster", "sqlmaster", [])
            if self.result["training"]["models"][model]["arms"]["sqlmaster"].get("status") in ("failed", "timeout"):
                # Still a figure for (b) if the automatic attention choice broke: the same recipe on plain SDPA.
                self.train_arm(model, "sqlmaster", "sqlmaster_sdpa", ["model.attn_implementation=sdpa"])
        self.generation()
        self.grpo()
        self.pytest()
        for model in self.models[:1] if self.shape.cpu else self.models:  # the first model's levers first
            for name, overrides in self.lever_sets():
                self.train_arm(model, "sqlmaster", name, overrides)
        if self.gemma and not self.shape.cpu:
            self.train_arm("gemma7b", "original", "original", [])
            self.train_arm("gemma7b", "sqlmaster", "sqlmaster", [])
        self.write()


def ratios(entry: dict[str, Any]) -> None:
    """(b)/(a) for every SQLMaster arm that ran, and its losses against the shipped recipe's (levers only)."""
    arms = entry["arms"]
    base = arms.get("original", {})
    reference = arms.get("sqlmaster", {})
    for name, arm in arms.items():
        if name == "original":
            continue
        ok = arm.get("status") == "ok" and base.get("status") == "ok" and base.get("tokens_per_s")
        entry[f"ratio_{name}_over_original"] = arm["tokens_per_s"] / base["tokens_per_s"] if ok else None
        if name != "sqlmaster" and arm.get("status") == "ok" and reference.get("status") == "ok":
            pairs = list(zip(reference.get("losses") or [], arm.get("losses") or [], strict=False))
            diffs = [abs(a - b) / max(abs(a), 1e-9) for a, b in pairs]
            arm["loss_max_rel_diff_vs_sqlmaster"] = max(diffs) if diffs else None


def summary_text(result: dict[str, Any]) -> str:
    machine = result.get("machine") or {}
    lines = [
        f"gpu-suite ({result['mode']}) {result['started']}  wall {result.get('wall_s')} s of {result['budget_s']} s",
        f"machine: {machine.get('gpu') or 'no GPU'}; torch {machine.get('torch')}; "
        f"transformers {machine.get('transformers')}; matmul bf16 {machine.get('matmul_bf16_tflops')} TFLOP/s",
        f"pytest -m gpu: {result['pytest_gpu'].get('status')} {result['pytest_gpu'].get('summary', '')}",
        "",
        f"{'training':<12}{'arm':<22}{'attention':<16}{'tokens/s':>10}{'MFU':>7}{'peak GiB':>9}{'ratio':>7}",
    ]
    for model, entry in result["training"]["models"].items():
        for name, arm in entry["arms"].items():
            ratio = entry.get(f"ratio_{name}_over_original")
            if arm.get("status") != "ok":
                lines.append(f"{model:<12}{name:<22}{arm.get('status')}: {str(arm.get('error'))[:60]}")
                continue
            mfu = f"{arm['mfu']:.0%}" if arm.get("mfu") is not None else "-"
            lines.append(
                f"{model:<12}{name:<22}{arm.get('attention') or '-':<16}{arm['tokens_per_s']:>10,.0f}{mfu:>7}"
                f"{arm['peak_memory_gib']:>9.1f}{(f'{ratio:.2f}x' if ratio else '-'):>7}"
            )
    generation = result["generation"]
    lines += ["", f"{'generation':<12}{'arm':<22}{'batch':>6}{'examples/s':>12}{'out tok/s':>11}{'ratio':>8}"]
    for name, arm in generation.get("arms", {}).items():
        ratio = arm.get("ratio_examples_per_s")
        lines.append(
            f"{generation.get('model', ''):<12}{name:<22}{arm['batch_size']:>6}{arm['examples_per_s']:>12.2f}"
            f"{arm['output_tokens_per_s']:>11.1f}{(f'{ratio:.1f}x' if ratio else '-'):>8}"
        )
    if generation.get("status") not in ("ok", None):
        lines.append(f"generation: {generation.get('status')} {generation.get('error', '')}")
    lines += ["", grpo_line(result.get("grpo") or {})]
    for item in result["skipped"]:
        lines.append(f"skipped {item['phase']}: {item['reason']}")
    for item in result["failed"]:
        lines.append(f"FAILED {item['phase']} (exit {item['exit_code']})")
    return "\n".join(lines) + "\n"


def grpo_line(grpo: dict[str, Any]) -> str:
    if grpo.get("status") != "ok":
        return f"grpo: {grpo.get('status')} {str(grpo.get('error', ''))[:60]}".rstrip()
    return (
        f"grpo {grpo['model']} ({grpo['generator']}): {grpo['steps_per_s']:.3f} steps/s, "
        f"{grpo['rewards_per_s'] or 0:.1f} rewards/s, generation {grpo['generation_share_of_step_time']:.0%} and "
        f"reward {grpo['reward_share_of_step_time'] or 0:.0%} of the step time, peak {grpo['peak_memory_gib']:.2f} GiB"
    )


def machine_info(path: Path) -> None:
    """Versions, GPU and the bf16 matmul rate measured here (8192^3, median of 20 after warm-up)."""
    import importlib.metadata as md
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "cpu_count": os.cpu_count()}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "liger-kernel", "flash-attn"):
        try:
            info[package.replace("-", "_")] = md.version(package)
        except md.PackageNotFoundError:
            info[package.replace("-", "_")] = None
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
        info["cpu_flags"] = sorted({f for f in flags if f.startswith(("avx512", "amx"))})
    except OSError:
        info["cpu_flags"] = []
    info["gpu"] = None
    info["gpu_memory_gib"] = None
    info["matmul_bf16_tflops"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        n = 8192
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        times = []
        for i in range(25):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            torch.cuda.synchronize()
            if i >= 5:
                times.append(start.elapsed_time(end) / 1e3)
        times.sort()
        info["matmul_bf16_tflops"] = round(2 * n**3 / times[len(times) // 2] / 1e12, 1)
    path.write_text(json.dumps(info, indent=2))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="output folder")
    parser.add_argument("--cpu", action="store_true", help="CPU rehearsal: tiny shapes, same code path and JSON")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for everything (gpu 450, cpu 300)")
    parser.add_argument("--models", nargs="+", help="training models (gpu: mistral7b llama2-7b; cpu: mistral7b)")
    parser.add_argument("--no-gemma", action="store_true", help="never run gemma7b's arms")
    parser.add_argument("--work-dir", type=Path, help="run directories and logs (default: a new temporary folder)")
    parser.add_argument("--machine-info", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.machine_info:
        machine_info(args.machine_info)
        return
    if args.out is None:
        parser.error("OUT_DIR is required")
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: no CUDA GPU here. Run the CPU rehearsal with --cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    budget = args.budget_s or (300.0 if args.cpu else 450.0)
    models = args.models or (["mistral7b"] if args.cpu else list(TRAIN_MODELS))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    print(f"work folder: {work}", flush=True)
    suite = Suite(args.out, work, args.cpu, budget, models, gemma=not args.no_gemma)
    try:
        suite.main()
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)  # run folders with checkpoints: the logs are in OUT_DIR
    print(summary_text(suite.result), flush=True)


if __name__ == "__main__":
    main()
