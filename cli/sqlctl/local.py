"""`--local`: run a jobs/ values file's runs as local `sqlmaster` processes, no cluster needed.

The recipe comes from the same values a cluster run would get — chart defaults, the jobs/ file, each
`--values`, each `--set`, layered as helm layers them — and is written to
`<runs-dir>/<run-id>/<model>/recipe.yaml`, then
`sqlmaster train --model M --recipe .../recipe.yaml --output-dir <runs-dir>/<run-id>/<model>` (or
`sqlmaster eval run ...`) runs with its output streamed here. Local runs are not tracked by
`sqlctl list/logs/artifacts`, which read the cluster: their files are already on this machine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sqlctl.errors import EXIT_CONFIG, SqlctlError
from sqlctl.values import Values


@dataclass(frozen=True)
class LocalRun:
    model: str
    run_dir: Path
    recipe_path: Path
    argv: list[str]


def sqlmaster_command() -> list[str]:
    """How to start the workload CLI: $SQLMASTER_BIN, else `sqlmaster` on PATH or beside this Python."""
    override = os.environ.get("SQLMASTER_BIN")
    if override:
        return shlex.split(override)
    found = shutil.which("sqlmaster") or (
        str(Path(sys.executable).with_name("sqlmaster"))
        if Path(sys.executable).with_name("sqlmaster").is_file()
        else None
    )
    if found:
        return [found]
    return [sys.executable, "-c", "from sqlmaster.cli import main; main()"]


def plan_local(task: str, values: Values, run_id: str, runs_dir: Path) -> list[LocalRun]:
    """One LocalRun per `runs[]` entry of the layered values."""
    runs: list[Any] = values.get("runs") or []
    if not runs:
        raise SqlctlError("the values define no runs[] entry", "Add runs: [{model: ..., recipe: {...}}] to the values.")
    planned = []
    for index, entry in enumerate(runs):
        if not isinstance(entry, dict) or not entry.get("model"):
            raise SqlctlError(f"runs[{index}] has no model", f"Set runs[{index}].model in the values.")
        model = str(entry["model"])
        run_dir = runs_dir / run_id / model
        recipe_path = run_dir / "recipe.yaml"
        argv = [*sqlmaster_command()]
        if task == "train":
            argv += ["train", "--model", model, "--recipe", str(recipe_path), "--output-dir", str(run_dir)]
        else:
            argv += [
                "eval",
                "run",
                "--model",
                model,
                "--recipe",
                str(recipe_path),
                "--output-dir",
                str(run_dir),
            ]
            if entry.get("adapterRunId"):
                argv += ["--adapter", str(runs_dir / str(entry["adapterRunId"]) / model)]
        planned.append(LocalRun(model=model, run_dir=run_dir, recipe_path=recipe_path, argv=argv))
        entry_recipe = entry.get("recipe") or {}
        if not isinstance(entry_recipe, dict):
            raise SqlctlError(f"runs[{index}].recipe is not a mapping", "Fix the recipe in the values.")
    return planned


def write_recipes(values: Values, planned: list[LocalRun]) -> None:
    for entry, run in zip(values.get("runs") or [], planned, strict=True):
        run.run_dir.mkdir(parents=True, exist_ok=True)
        run.recipe_path.write_text(yaml.safe_dump(entry.get("recipe") or {}, sort_keys=False))


def execute(run: LocalRun) -> int:
    """Run one planned process, streaming its output line by line; returns its exit code."""
    print(f"$ {shlex.join(run.argv)}", file=sys.stderr, flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.Popen(
            run.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
    except OSError as exc:
        raise SqlctlError(
            f"cannot start {run.argv[0]} ({exc.strerror})",
            "Install the workload (pip install -e '.[train,eval]') or set SQLMASTER_BIN.",
            code=EXIT_CONFIG,
        ) from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    return proc.wait()
