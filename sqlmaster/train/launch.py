"""CPU data parallelism on one machine: ``training.cpu_processes`` training processes started with torchrun.

The `tiny` model's matrices are too small for a second thread to speed up a step much, but a second process on
the other core nearly doubles the tokens per second: each process trains on its share of every batch and gloo
averages the gradients, the same DDP path that multi-GPU pods take. ``run_training`` calls ``train_in_processes``
after it has checked the recipe and the run directory, so configuration errors still come from one process, before
anything starts. The workers get the resolved recipe in a JSON file, not re-parsed command-line arguments, so they
train exactly the recipe that was checked.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlmaster import boundedjson
from sqlmaster.atomic import write_json
from sqlmaster.config import Recipe, recipe_from_dict
from sqlmaster.cores import available_cores
from sqlmaster.errors import ConfigError, Interrupted, TransientError
from sqlmaster.lifetime import parent_death_signal, wait_forwarding_signals
from sqlmaster.train import distributed
from sqlmaster.train.guard import TrainOptions

log = logging.getLogger("sqlmaster.train")

ERRORS: dict[str, type[Exception]] = {"ConfigError": ConfigError, "TransientError": TransientError}


def processes_to_start(recipe: Recipe, device: str) -> int:
    """How many CPU training processes to start: 1 (train here) on a GPU, under torchrun, or when asked for 1."""
    wanted = recipe.training.cpu_processes
    if wanted <= 1 or device.startswith("cuda") or distributed.world_size() > 1:
        return 1
    fits = max(1, available_cores() // (recipe.training.num_threads or 1))
    if fits < wanted:
        log.info("training.cpu_processes=%d but %d core(s) are available: starting %d", wanted, available_cores(), fits)
    return min(wanted, fits)


def train_in_processes(
    processes: int, model: str, output_dir: Path, recipe: Recipe, options: TrainOptions
) -> dict[str, Any]:
    """Train with ``processes`` DDP workers on this machine; returns the metrics rank 0 wrote."""
    log.info(
        "training.cpu_processes=%d: starting %d training processes (torchrun, gloo), %s thread(s) each",
        recipe.training.cpu_processes,
        processes,
        recipe.training.num_threads or "torch's default",
    )
    with tempfile.TemporaryDirectory(prefix="sqlmaster-launch-") as tmp:
        spec, outcome = Path(tmp) / "spec.json", Path(tmp) / "outcome.json"
        write_json(
            spec,
            {
                "model": model,
                "output_dir": str(output_dir),
                "recipe": recipe.to_dict(),
                "options": asdict(options),
                "outcome": str(outcome),
            },
        )
        command = [
            sys.executable, "-m", "sqlmaster.train.torchrun", "--standalone", f"--nproc_per_node={processes}",
            "-m", "sqlmaster.train.launch", str(spec),
        ]  # fmt: skip
        # torchrun dies with this process (kill -9 included) and takes its workers along (they die with it). In a
        # process group of its own it gets a Ctrl-C once, from us, not also from the terminal.
        process = subprocess.Popen(command, preexec_fn=parent_death_signal(), process_group=0)
        code = _wait_for_torchrun(process, output_dir)
        if outcome.is_file():
            failure = json.loads(outcome.read_text(encoding="utf-8"))
            raise ERRORS.get(failure["error"], TransientError)(failure["message"])
        if code != 0:
            raise TransientError(f"the training processes failed (torchrun exit code {code}); their output is above")
    from sqlmaster.rundir import RunDir

    return dict(json.loads(RunDir(output_dir).metrics.read_text(encoding="utf-8")))


def _wait_for_torchrun(process: subprocess.Popen[bytes], output_dir: Path) -> int:
    """Wait for torchrun; each Ctrl-C or SIGTERM here is passed on (torchrun stops its workers, which save their
    state) and torchrun is still waited for; then run.json records the first signal and ``Interrupted`` is raised."""
    code, signum = wait_forwarding_signals(process.pid, process.wait)
    if signum is not None:
        _record_interrupt(output_dir, signum)
        raise Interrupted(signum)
    return int(code or 0)


def _record_interrupt(output_dir: Path, signum: int) -> None:
    """run.json names the signal this process got: torchrun stops its workers with SIGTERM whatever it was
    told (a Ctrl-C was recorded as SIGTERM), and a worker killed before it could write leaves "running"."""
    import signal

    from sqlmaster.rundir import RunDir
    from sqlmaster.train.outputs import now

    path = RunDir(output_dir).run_info
    try:
        info = boundedjson.load_file(path, "run record")
    except (OSError, ValueError):  # ConfigError is a ValueError
        return  # training had not started: nothing to record
    if isinstance(info, dict) and info.get("status") in ("running", "interrupted"):
        update = {"status": "interrupted", "error": f"interrupted by {signal.Signals(signum).name}"}
        if info.get("status") == "running":  # no worker got to record it
            update["finished"] = now()
        write_json(path, {**info, **update})


def main(spec_path: str) -> None:
    """A worker (torchrun runs ``python -m sqlmaster.train.launch SPEC`` once per process)."""
    from sqlmaster.train.runner import run_training

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    try:
        run_training(
            spec["model"], Path(spec["output_dir"]), recipe_from_dict(spec["recipe"]), TrainOptions(**spec["options"])
        )
    except (ConfigError, TransientError) as exc:
        # The launching process reports it (one error line, the right exit code), not every worker.
        if distributed.is_main_process():
            kind = "ConfigError" if isinstance(exc, ConfigError) else "TransientError"
            write_json(Path(spec["outcome"]), {"error": kind, "message": str(exc)})
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main(sys.argv[1])
