"""Static checks of Dockerfile.train / Dockerfile.eval (no Docker engine here).

The Dockerfiles are parsed by the official BuildKit parser (PyPI `dockerfile`); requirements/*.txt are
checked against pyproject.toml, the one source of pins.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import dockerfile
import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGES = {"train": ["train"], "eval": ["train", "eval", "vllm"]}  # extras each image installs
SECRET_NAME = re.compile(r"TOKEN|API_KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY", re.I)


def commands(image: str) -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(REPO / f"Dockerfile.{image}")))


def final_stage(cmds: list[dockerfile.Command]) -> list[dockerfile.Command]:
    last_from = max(i for i, c in enumerate(cmds) if c.cmd == "FROM")
    return cmds[last_from:]


def requirements(image: str) -> dict[str, Requirement]:
    lines = (REPO / "requirements" / f"{image}.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name.lower(): r for r in reqs}


def pyproject_requirements(extras: list[str]) -> dict[str, Requirement]:
    specs = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        specs += PYPROJECT["project"]["optional-dependencies"][extra]
    return {Requirement(s).name.lower(): Requirement(s) for s in specs}


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
def test_pip_installs_only_pinned_sources(image: str) -> None:
    """Each `pip install` is the pinned requirements file, a pinned wheel URL or the project (--no-deps)."""
    args = {c.value[0].split("=")[0]: c.value[0].split("=", 1)[1] for c in commands(image) if c.cmd == "ARG"}
    for c in commands(image):
        if c.cmd != "RUN" or "pip install" not in c.value[0]:
            continue
        line = c.value[0].split("&&")[0].strip()
        assert line in (
            "pip install -r /tmp/requirements.txt",
            "pip install --no-deps /src",
            'pip install --no-deps "${FLASH_ATTN_WHEEL}"',
        ), line
    copied = [c.value[0] for c in commands(image) if c.cmd == "COPY" and c.value[-1] == "/tmp/requirements.txt"]
    assert copied == [f"requirements/{image}.txt"]
    if image == "train":
        version, url = args["FLASH_ATTN_VERSION"], args["FLASH_ATTN_WHEEL"]
        assert re.fullmatch(
            rf"https://\S+/flash_attn-{re.escape(version)}\+cu13torch2\.13\S*-cp311-cp311-linux_x86_64\.whl",
            url,
        )


@pytest.mark.parametrize(("image", "extras"), IMAGES.items())
def test_requirements_pinned_and_agree_with_pyproject(image: str, extras: list[str]) -> None:
    pinned = requirements(image)
    wanted = pyproject_requirements(extras)
    for req in pinned.values():
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements/{image}.txt: {req} is not pinned with =="
    assert pinned.keys() == wanted.keys(), f"differ: {pinned.keys() ^ wanted.keys()}"
    for name, want in wanted.items():
        (have,) = pinned[name].specifier
        assert want.specifier.contains(have.version), f"{name}: {have.version} is outside pyproject's {want}"
        if len(want.specifier) == 1 and next(iter(want.specifier)).operator == "==":
            assert str(want.specifier) == str(pinned[name].specifier), name
    assert str(pinned["torch"].specifier) == "==2.13.0"


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()}
    for must in (".git", ".venv", "runs", ".env", ".env.*", "*.env", "secrets", "*kubeconfig*", ".tools"):
        assert must in entries, f".dockerignore must exclude {must}"
    for needed in ("sqlmaster", "cli", "pyproject.toml", "requirements", "README.md"):
        assert needed not in entries, f".dockerignore excludes {needed}, which the Dockerfiles COPY"
