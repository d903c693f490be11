"""Static checks of Dockerfile.train / Dockerfile.eval (no Docker engine here).

The Dockerfiles are parsed by the official BuildKit parser (PyPI `dockerfile`). What they install, the locks
requirements/<image>.lock, is checked against pyproject.toml and resolved for the images' platform in
tests/test_locks.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import dockerfile
import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGES = ("train", "eval")
SECRET_NAME = re.compile(r"TOKEN|API_KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY", re.I)


def commands(image: str) -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(REPO / f"Dockerfile.{image}")))


def final_stage(cmds: list[dockerfile.Command]) -> list[dockerfile.Command]:
    last_from = max(i for i, c in enumerate(cmds) if c.cmd == "FROM")
    return cmds[last_from:]


@pytest.mark.parametrize("image", IMAGES)
def test_base_images_pinned_cuda_13(image: str) -> None:
    for c in commands(image):
        if c.cmd == "FROM":
            ref = c.value[0]
            assert re.fullmatch(r"nvidia/cuda:13\.0\.\d+-cudnn-runtime-ubuntu22\.04", ref), ref
            assert not ref.endswith(":latest")
    assert sum(c.cmd == "FROM" for c in commands(image)) >= 2, "multi-stage build expected"


@pytest.mark.parametrize("image", IMAGES)
def test_runs_as_non_root_numeric_user(image: str) -> None:
    users = [c.value[0] for c in final_stage(commands(image)) if c.cmd == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric non-root (runAsNonRoot checks it)"


@pytest.mark.parametrize("image", IMAGES)
def test_entrypoint_is_the_sqlmaster_console_script(image: str) -> None:
    (entry,) = [c for c in final_stage(commands(image)) if c.cmd == "ENTRYPOINT"]
    assert entry.json and list(entry.value) == ["sqlmaster"]
    assert "sqlmaster" in PYPROJECT["project"]["scripts"]


@pytest.mark.parametrize("image", IMAGES)
def test_env_hf_home_python_and_labels(image: str) -> None:
    final = final_stage(commands(image))
    env = {}
    for c in final:
        if c.cmd == "ENV":
            env.update(dict(zip(c.value[::2], c.value[1::2], strict=True)))
    assert env["HF_HOME"] == "/data/hf-cache"
    assert any(c.cmd == "VOLUME" and "/data/hf-cache" in c.value for c in final)
    assert any(c.cmd == "RUN" and "python3.11" in c.value[0] for c in final)
    labels = {}
    for c in final:
        if c.cmd == "LABEL":
            labels.update(dict(zip(c.value[::2], c.value[1::2], strict=True)))
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}" in labels, key


@pytest.mark.parametrize("image", IMAGES)
def test_no_secret_env_or_arg(image: str) -> None:
    for c in commands(image):
        if c.cmd in ("ENV", "ARG"):
            names = c.value[::2] if c.cmd == "ENV" else [v.split("=")[0] for v in c.value]
            bad = [n for n in names if SECRET_NAME.search(n)]
            assert not bad, f"{c.cmd} {bad} in Dockerfile.{image}: secrets never go into an image"


@pytest.mark.parametrize("image", IMAGES)
def test_pip_installs_only_from_the_lock_with_hashes(image: str) -> None:
    """Packages come only from requirements/<image>.lock, hashes required; the project itself is built without
    dependencies and without build isolation (its setuptools is locked too), so nothing unlocked is fetched."""
    installs = [c.value[0] for c in commands(image) if c.cmd == "RUN" and re.search(r"\bpip3? install\b", c.value[0])]
    assert installs, f"Dockerfile.{image} installs nothing"
    lock_install = "pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.lock"
    project_install = "pip install --no-deps --no-build-isolation /src"
    for run in installs:
        for part in re.split(r"&&|;|\|\|", run):
            part = " ".join(part.split())
            if re.search(r"\bpip3? install\b", part):
                assert part in (lock_install, project_install), f"Dockerfile.{image}: unlocked install: {part}"
    assert sum(lock_install in " ".join(run.split()) for run in installs) == 1
    copied = {c.value[-1]: list(c.value[:-1]) for c in commands(image) if c.cmd == "COPY"}
    assert copied["/tmp/requirements.lock"] == [f"requirements/{image}.lock"]
    assert (REPO / "requirements" / f"{image}.lock").is_file()
    # Nothing fetched outside pip either: no ADD of URLs, no curl/wget of wheels.
    for c in commands(image):
        assert c.cmd != "ADD" or not re.match(r"https?://", c.value[0]), f"ADD {c.value[0]}"
        if c.cmd == "RUN":
            assert not re.search(r"\b(curl|wget)\b", c.value[0]), c.value[0]


def package_folders() -> set[str]:
    """The top-level source folders pyproject.toml's package-dir maps into the installed packages (e.g. jobs/)."""
    return {folder.split("/")[0] for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values()}


@pytest.mark.parametrize("image", IMAGES)
def test_project_build_has_what_pyproject_needs(image: str) -> None:
    """The project is built from /src: every file pyproject.toml names (setuptools checks license-files) and every
    package folder it maps (sqlmaster/, cli/, jobs/ ...) is copied there, and .dockerignore keeps none of them out."""
    copies = [list(c.value) for c in commands(image) if c.cmd == "COPY"]
    files = {v for value in copies if value[-1] == "/src/" for v in value[:-1]}
    for name in ["pyproject.toml", PYPROJECT["project"]["readme"], *PYPROJECT["project"]["license-files"]]:
        assert name in files, f"Dockerfile.{image} builds the project without {name}"
    folders = {value[0] for value in copies if len(value) == 2 and value[1] == f"/src/{value[0]}"}
    assert package_folders() <= folders, f"Dockerfile.{image} does not COPY {package_folders() - folders} to /src"
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    dropped = ignored & (package_folders() | files)
    assert not dropped, f".dockerignore excludes {dropped}, which the project build needs"


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()}
    for must in (".git", ".venv", "runs", ".env", ".env.*", "*.env", "secrets", "*kubeconfig*", ".tools"):
        assert must in entries, f".dockerignore must exclude {must}"
    for needed in ("sqlmaster", "cli", "pyproject.toml", "requirements", "README.md", "LICENSE"):
        assert needed not in entries, f".dockerignore excludes {needed}, which the Dockerfiles COPY"
