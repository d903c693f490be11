"""Run the pinned helm for the chart tests, found as sqlctl finds it ($SQLMASTER_HELM or .tools/bin/helm)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlctl.tools import ToolNotFoundError, find_helm

REPO = Path(__file__).resolve().parents[1]
CHARTS = REPO / "charts"
JOBS = REPO / "jobs"


def helm_path() -> Path:
    """The helm binary; a missing helm FAILS the test (never skips), with the command that installs it."""
    try:
        return find_helm()
    except ToolNotFoundError as exc:
        pytest.fail(f"{exc} (the chart tests need the real helm 3.17.3)", pytrace=False)


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with ``args``; with ``check`` a non-zero exit fails the test showing helm's stderr."""
    proc = subprocess.run([str(helm_path()), *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
    return proc


def template_args(task: str, values: list[Path], sets: list[str], release: str | None = None) -> list[str]:
    """Arguments of `helm template` for chart sqlmaster-<task> with value files and --set pairs."""
    args = [
        "template",
        release or f"sqlmaster-{task}",
        str(CHARTS / f"sqlmaster-{task}"),
        "--namespace",
        "ml",
    ]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return args


def render(
    task: str, values: list[Path], sets: list[str] | None = None, release: str | None = None
) -> list[dict[str, Any]]:
    """Render a chart and return its objects (empty documents dropped)."""
    out = run_helm(*template_args(task, values, sets or [], release)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_error(task: str, values: list[Path], sets: list[str] | None = None, *extra: str) -> str:
    """Render values that must be refused; return helm's error output (fails the test if helm accepts)."""
    proc = run_helm(*template_args(task, values, sets or []), *extra, check=False)
    if proc.returncode == 0:
        pytest.fail(f"helm accepted values it should refuse: {values} {sets}", pytrace=False)
    return proc.stderr
