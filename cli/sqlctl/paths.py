"""Where the charts and the jobs/ values files live.

The charts are the one source of the manifests, so sqlctl must find them wherever it runs:
1. `--chart-dir DIR` / `SQLMASTER_CHART_DIR` (the `charts/` folder) and `--jobs-dir` / `SQLMASTER_JOBS_DIR`;
2. otherwise the repository this package was loaded from (`cli/sqlctl/` -> repo root; editable installs);
3. otherwise the current directory or one of its parents (a clone you `cd` into).
When only the chart dir is given, jobs/ is looked up next to it (`<chart-dir>/../jobs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlctl.errors import SqlctlError

CHART_FOR_TASK = {"train": "sqlmaster-train", "eval": "sqlmaster-eval"}
ARTIFACTS_CHART = "sqlmaster-artifacts"


@dataclass(frozen=True)
class RepoPaths:
    """The folders sqlctl reads: `charts/` (Helm charts) and `jobs/` (values files per task and model)."""

    charts: Path
    jobs: Path

    def chart(self, name: str) -> Path:
        path = self.charts / name
        if not (path / "Chart.yaml").is_file():
            raise SqlctlError(
                f"chart {name} not found under {self.charts}",
                "Pass --chart-dir pointing at the repository's charts/ folder (or set SQLMASTER_CHART_DIR).",
            )
        return path

    def task_chart(self, task: str) -> Path:
        return self.chart(CHART_FOR_TASK[task])

    def job_values(self, task: str, model: str, stage: str = "sft") -> Path:
        return self.jobs / values_folder(task, stage) / f"{model}.yaml"

    def job_models(self, task: str, stage: str = "sft") -> list[str]:
        """Models that have a values file for this task (and training stage), sorted."""
        folder = self.jobs / values_folder(task, stage)
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def values_folder(task: str, stage: str = "sft") -> str:
    """The jobs/ folder of a task's values files: jobs/train, jobs/eval, and jobs/grpo for the GRPO training stage
    (installed with the train chart: `helm install NAME charts/sqlmaster-train -f jobs/grpo/MODEL.yaml`)."""
    return "grpo" if task == "train" and stage == "grpo" else task


def _is_repo_root(path: Path) -> bool:
    return (path / "charts" / CHART_FOR_TASK["train"] / "Chart.yaml").is_file()


def _discover_root() -> Path | None:
    here = Path(__file__).resolve()
    candidates = [*here.parents[:4], Path.cwd().resolve(), *Path.cwd().resolve().parents]
    for candidate in candidates:
        if _is_repo_root(candidate):
            return candidate
    return None


def resolve_paths(chart_dir: Path | None = None, jobs_dir: Path | None = None, need_jobs: bool = True) -> RepoPaths:
    """Find charts/ and jobs/ (flags, then environment, then repository discovery).

    With `need_jobs=False` (artifact pulls use only the charts) a missing jobs/ folder is not an error.
    """
    env_charts = os.environ.get("SQLMASTER_CHART_DIR")
    env_jobs = os.environ.get("SQLMASTER_JOBS_DIR")
    charts = chart_dir or (Path(env_charts) if env_charts else None)
    jobs = jobs_dir or (Path(env_jobs) if env_jobs else None)
    if charts is None or jobs is None:
        root = _discover_root()
        if charts is None and root is not None:
            charts = root / "charts"
        if jobs is None:
            if charts is not None and (charts.parent / "jobs").is_dir():
                jobs = charts.parent / "jobs"
            elif root is not None:
                jobs = root / "jobs"
    if charts is None or not charts.is_dir():
        raise SqlctlError(
            "cannot find the SQLMaster charts/ folder",
            "Run sqlctl from a clone of the repository, or pass --chart-dir DIR (env SQLMASTER_CHART_DIR).",
        )
    if not need_jobs and (jobs is None or not jobs.is_dir()):
        return RepoPaths(charts=charts.resolve(), jobs=(jobs or charts.parent / "jobs").resolve())
    if jobs is None or not jobs.is_dir():
        raise SqlctlError(
            f"cannot find the jobs/ values folder (looked next to {charts})",
            "Pass --jobs-dir DIR (env SQLMASTER_JOBS_DIR).",
        )
    return RepoPaths(charts=charts.resolve(), jobs=jobs.resolve())
