"""`--local`: run what the chart renders as local processes, no cluster needed.

The chart is the only source of the command: `helm template` renders the release exactly as for the
cluster (same values, same layering, same schema checks), and each rendered Job becomes one local run:
- its container's `command` + `args`, with the chart's paths mapped to this machine: the runs folder on the
  claim (`/data/runs`, found as the part of `--output-dir` before `/<run-id>/<model>`) is `--runs-dir`, and
  each file the recipe ConfigMap mounts (`/etc/sqlmaster/recipe.yaml`) is that file written into
  `<runs-dir>/<run-id>/<model>/`; the program `sqlmaster` is $SQLMASTER_BIN or the local console script;
- its plain `env` values (Secret references are not copied: the local environment's own keys are used;
  values under the claim outside the runs folder, such as HF_HOME's cache, are left to the local default).
A path that would land outside `--runs-dir`, or a chart path with no local meaning, is refused.
Local runs are not tracked by `sqlctl list/logs/artifacts`, which read the cluster.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

from sqlctl.errors import SqlctlError
from sqlctl.manifests import CONTAINER, LABEL_MODEL, LABEL_RUN_ID, labels, name_of, pod_spec
from sqlmaster import exitcodes

Manifest = dict[str, Any]
PROGRAM = "sqlmaster"  # the console script the chart's command starts (directly or through torchrun)


@dataclass(frozen=True)
class LocalRun:
    """One rendered Job as a local process."""

    run_id: str
    model: str
    run_dir: Path  # <runs-dir>/<run-id>/<model>
    argv: list[str]
    env: dict[str, str]
    files: dict[Path, str] = field(default_factory=dict)  # ConfigMap files to write first (the recipe)

    def as_dict(self) -> dict[str, Any]:
        """The plan as `--dry-run -o json|yaml` prints it."""
        files = {str(path): text for path, text in self.files.items()}
        return {"runId": self.run_id, "model": self.model, "argv": self.argv, "env": self.env, "files": files}


def sqlmaster_command() -> list[str]:
    """How to start the workload CLI: $SQLMASTER_BIN, else `sqlmaster` on PATH or beside this Python."""
    override = os.environ.get("SQLMASTER_BIN")
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).with_name(PROGRAM)
    found = shutil.which(PROGRAM) or (str(beside) if beside.is_file() else None)
    if found:
        return [found]
    return [sys.executable, "-c", "from sqlmaster.cli import main; main()"]


class _PathMap:
    """The chart's paths inside the pod -> paths on this machine, for one Job."""

    def __init__(self, job: Manifest, configmaps: dict[str, Manifest], runs_dir: Path, run_dir: Path) -> None:
        spec = pod_spec(job) or {}
        container = _container(job)
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        self.runs_dir = runs_dir
        self.claim_mounts: list[str] = []
        self.files: dict[str, tuple[Path, str]] = {}  # pod path -> (local path, content)
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name", ""), {})
            if "persistentVolumeClaim" in volume:
                self.claim_mounts.append(mount["mountPath"].rstrip("/"))
            elif "configMap" in volume:
                data = (configmaps.get(volume["configMap"]["name"]) or {}).get("data") or {}
                for item in volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                    pod_path = str(PurePosixPath(mount["mountPath"]) / item["path"])
                    self.files[pod_path] = (run_dir / PurePosixPath(item["path"]).name, str(data.get(item["key"], "")))
        self.runs_root = ""  # set by `locate_runs_root`

    def locate_runs_root(self, argv: list[str], run_id: str, model: str) -> None:
        """The runs folder on the claim: what precedes `/<run-id>/<model>` in the `--output-dir` value."""
        marker = f"/{run_id}/{model}"
        for value in _flag_values(argv, "--output-dir"):
            if marker in value:
                self.runs_root = value[: value.index(marker)]
                return
        raise SqlctlError(
            f"the chart's command has no --output-dir under <runs>/{run_id}/{model}",
            "--local follows the chart's run directory layout (docs/design.md); fix the chart or the values.",
        )

    def local(self, value: str, where: str) -> str | None:
        """`value` with a chart path mapped; None for a claim path with no local equivalent."""
        if value in self.files:
            return str(self.files[value][0])
        if self.runs_root and (value == self.runs_root or value.startswith(self.runs_root + "/")):
            mapped = Path(str(self.runs_dir) + value[len(self.runs_root) :])
            if not mapped.resolve().is_relative_to(self.runs_dir):
                raise SqlctlError(
                    f"{where} {value!r} points outside the runs folder",
                    "Remove the '..' from the values (--local writes only under --runs-dir).",
                )
            return str(mapped)
        if any(value == m or value.startswith(m + "/") for m in [*self.claim_mounts, *_mount_dirs(self.files)]):
            return None
        return value


def _mount_dirs(files: dict[str, tuple[Path, str]]) -> list[str]:
    return sorted({str(PurePosixPath(p).parent) for p in files})


def _flag_values(argv: list[str], flag: str) -> list[str]:
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
    return values + [arg.split("=", 1)[1] for arg in argv if arg.startswith(flag + "=")]


def _container(job: Manifest) -> Manifest:
    spec = pod_spec(job) or {}
    found = [c for c in spec.get("containers") or [] if c.get("name") == CONTAINER]
    if not found:
        raise SqlctlError(f"Job {name_of(job)} has no container {CONTAINER!r}", "Fix the chart.")
    return found[0]


def _map_arg(arg: str, paths: _PathMap) -> str:
    flag, eq, value = arg.partition("=")
    if eq and flag.startswith("--"):
        mapped = paths.local(value, f"argument {flag}")
        what = value
    else:
        mapped = paths.local(arg, "argument")
        what = arg
    if mapped is None:
        raise SqlctlError(
            f"the command names {what!r} on the claim, which has no local equivalent",
            "--local maps only the runs folder and the recipe; drop that argument from extraArgs.",
        )
    return f"{flag}={mapped}" if eq and flag.startswith("--") else mapped


def _local_argv(container: Manifest, paths: _PathMap) -> list[str]:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    mapped = [_map_arg(arg, paths) for arg in argv]
    if PROGRAM not in mapped:
        raise SqlctlError(f"the chart's command does not start {PROGRAM}: {shlex.join(argv)}", "Fix the chart.")
    at = mapped.index(PROGRAM)  # the program itself, also after its launcher (sqlmaster-torchrun --no-python)
    return [*mapped[:at], *sqlmaster_command(), *mapped[at + 1 :]]


def _local_env(container: Manifest, paths: _PathMap) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" not in item:  # secretKeyRef / fieldRef: the local environment provides its own
            continue
        mapped = paths.local(str(item["value"]), f"env {item['name']}")
        if mapped is not None:
            env[item["name"]] = mapped
    return env


def plan_local(manifests: list[Manifest], runs_dir: Path) -> list[LocalRun]:
    """One LocalRun per rendered Job, in the order of the values' runs[]."""
    configmaps = {name_of(m): m for m in manifests if m["kind"] == "ConfigMap"}
    runs_dir = runs_dir.resolve()
    planned = []
    for job in (m for m in manifests if m["kind"] == "Job"):
        run_id, model = labels(job).get(LABEL_RUN_ID, ""), labels(job).get(LABEL_MODEL, "")
        completions = int((job.get("spec") or {}).get("completions") or 1)
        if completions > 1:
            raise SqlctlError(
                f"the run of {model} spans {completions} nodes, but --local runs on this machine only",
                "Set runs[].nodes=1 for --local, or submit it to the cluster.",
            )
        if (pod_spec(job) or {}).get("initContainers"):
            raise SqlctlError(
                f"the run of {model} builds its data in the pod first (database.source), which --local does not run",
                "Locally: sqlmaster data from-db SOURCE -o DIR, then --recipe-set data.source=DIR; or submit it "
                "to the cluster.",
            )
        run_dir = runs_dir / run_id / model
        paths = _PathMap(job, configmaps, runs_dir, run_dir)
        container = _container(job)
        raw = [*(container.get("command") or []), *(container.get("args") or [])]
        paths.locate_runs_root(raw, run_id, model)
        if not run_dir.resolve().is_relative_to(runs_dir):
            raise SqlctlError(f"model {model!r} is not a plain name", "Choose a model from `sqlctl models`.")
        argv = _local_argv(container, paths)
        files = {local: content for local, content in paths.files.values()}
        planned.append(LocalRun(run_id, model, run_dir, argv, _local_env(container, paths), files))
    return planned


def write_files(run: LocalRun) -> None:
    """Write the run's ConfigMap files (its recipe) where the mapped command expects them."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    for path, content in run.files.items():
        path.write_text(content)


@contextmanager
def owned(run: LocalRun) -> Iterator[None]:
    """Own `<runs-dir>/<run-id>` while its run is written and runs: a second `--local` with the same --run-id is
    refused (exit 2, naming the holder's pid) before it writes anything (sqlmaster/ownership.py)."""
    from sqlmaster.ownership import FolderInUse, hold

    try:
        with hold(run.run_dir.parent, f"sqlctl submit --local --run-id {run.run_id}"):
            yield
    except FolderInUse as exc:
        what, _, fix = str(exc).rpartition(". ")
        raise SqlctlError(what, fix + ".") from None


def execute(run: LocalRun) -> int:
    """Run one planned process, streaming its output line by line; returns its exit code.

    The workload runs in a session of its own and dies with sqlctl (kill -9 included); SIGTERM and SIGINT that
    reach sqlctl are passed on once, and sqlctl waits for it to record how it ended (`interrupted` in run.json).
    """
    from sqlmaster.lifetime import parent_death_signal

    print(f"$ {shlex.join(run.argv)}", file=sys.stderr, flush=True)
    env = {**os.environ, **run.env}
    try:
        proc = subprocess.Popen(
            run.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches sqlctl, which forwards it exactly once
            preexec_fn=parent_death_signal(),
        )
    except OSError as exc:
        raise SqlctlError(
            f"cannot start {run.argv[0]} ({exc.strerror})",
            "Install the workload (pip install -e '.[train,eval]') or set SQLMASTER_BIN.",
            code=exitcodes.CONFIG,
        ) from exc
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        name = signal.Signals(received[0]).name
        raise SqlctlError(
            f"interrupted by {name}: the local run of {run.model} stopped (its exit code {code})",
            f"The same command with --run-id {run.run_id} resumes it from its last complete checkpoint.",
            code=128 + received[0],
        )
    return code
