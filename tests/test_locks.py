"""The images' locks (requirements/<image>.lock, written by scripts/lock.sh) against pyproject.toml and PyPI.

The offline tests read the locks: every package pinned with hashes, every pyproject.toml pin in the image's extras equal
to the locked version, the CUDA torch. The `network` tests run `scripts/lock.sh --check`, which resolves each lock for
the images' platform (linux x86_64, Python 3.11, wheels only) with uv against PyPI without installing, and re-resolves
pyproject.toml's extras to the same pins; then they plant a conflicting pin, a stale pin and a wrong hash in temporary
copies and assert that the same check fails. uv's cache keeps a warm run to seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from uv import find_uv_bin

REPO = Path(__file__).resolve().parents[1]
LOCK_SH = REPO / "scripts" / "lock.sh"
PYPI = "https://pypi.org/simple/"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def image_extras() -> dict[str, list[str]]:
    """The extras each image installs, read from scripts/lock.sh (the one place that says it)."""
    match = re.search(r"^declare -A EXTRAS=\((.*)\)", LOCK_SH.read_text(), re.M)
    assert match, "scripts/lock.sh: no `declare -A EXTRAS=(...)` line"
    return {image: extras.split() for image, extras in re.findall(r'\[(\w+)\]="([^"]*)"', match.group(1))}


IMAGES = list(image_extras())


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a uv-written lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in text.splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group(1))
            entries[name] = (match.group(2), [])
        elif "--hash=" in line:
            entries[name][1].append(line.split("--hash=")[1].split()[0])
    return entries


def pyproject_requirements(pyproject: dict, extras: list[str]) -> list[Requirement]:
    specs = list(pyproject["project"]["dependencies"]) + list(pyproject["build-system"]["requires"])
    for extra in extras:
        specs += pyproject["project"]["optional-dependencies"][extra]
    return [Requirement(spec) for spec in specs]


def disagreements(requirements: list[Requirement], locked: dict[str, tuple[str, list[str]]]) -> list[str]:
    """Every pyproject.toml requirement must be locked, at a version it allows (an exact pin: that very version)."""
    problems = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req} but the lock has {name}=={locked[name][0]}")
    return problems


def read_lock(image: str) -> dict[str, tuple[str, list[str]]]:
    return lock_entries((REPO / "requirements" / f"{image}.lock").read_text())


# ---- offline: what the locks say ----


@pytest.mark.parametrize("image", IMAGES)
def test_lock_agrees_with_pyproject(image: str) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    problems = disagreements(pyproject_requirements(pyproject, image_extras()[image]), read_lock(image))
    assert not problems, f"requirements/{image}.lock: {problems}; run scripts/lock.sh"


def test_disagreement_is_reported() -> None:
    """A pyproject pin that moved, a range the lock left and a dependency the lock lacks are each named."""
    locked: dict[str, tuple[str, list[str]]] = {"torch": ("2.13.0", []), "numpy": ("2.3.5", [])}
    reqs = [Requirement("torch==2.14.0"), Requirement("numpy>=2.4"), Requirement("sqlglot==30.30.0")]
    assert disagreements(reqs, locked) == [
        "torch==2.14.0 but the lock has torch==2.13.0",
        "numpy>=2.4 but the lock has numpy==2.3.5",
        "sqlglot==30.30.0 is not in the lock",
    ]
    assert disagreements([Requirement("torch==2.13.0"), Requirement("numpy>=1.26")], locked) == []


@pytest.mark.parametrize("image", IMAGES)
def test_every_package_pinned_with_hashes_and_cuda_torch(image: str) -> None:
    text = (REPO / "requirements" / f"{image}.lock").read_text()
    assert "scripts/lock.sh" in text.splitlines()[1], "the lock's header names the command that writes it"
    locked = lock_entries(text)
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirement_lines) == len(locked), "every requirement line is a name==version pin"
    unhashed = [name for name, (_, hashes) in locked.items() if not hashes]
    assert not unhashed, f"no hashes for {unhashed}"
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for _, hashes in locked.values() for h in hashes)
    # PyPI's linux x86_64 torch is the CUDA build: it pulls the CUDA 13 runtime wheels. A CPU torch would not.
    assert locked["torch"][0] == "2.13.0"
    assert "cuda-toolkit" in locked and "nvidia-cudnn-cu13" in locked
    assert "+" not in "".join(version for version, _ in locked.values()), "no local (+cpu) builds"


def test_eval_lock_resolves_the_vllm_numpy_conflict() -> None:
    """vLLM 0.30.0 needs mistral-common, which needs numpy<2.4 on Python 3.11: the eval image's numpy is below 2.4."""
    locked = read_lock("eval")
    assert locked["vllm"][0] == "0.30.0"
    assert "mistral-common" in locked
    assert tuple(int(p) for p in locked["numpy"][0].split(".")[:2]) < (2, 4)


# ---- network: resolve the locks for the images' platform, and see the check fail on planted errors ----


@pytest.fixture(scope="module")
def pypi() -> None:
    """Fail (not skip) with the reason when PyPI is unreachable: CI has network, and a missing check must show."""
    try:
        with urllib.request.urlopen(PYPI + "uv/", timeout=20):
            return
    except (urllib.error.URLError, OSError) as exc:
        error = exc
    pytest.fail(
        f"tests/test_locks.py resolves the images' locks against PyPI and cannot reach {PYPI} ({error}). "
        "Run it where PyPI is reachable, or deselect these tests with -m 'not network'",
        pytrace=False,
    )


def run_check(root: Path, *images: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV": find_uv_bin()}
    return subprocess.run(
        [str(root / "scripts" / "lock.sh"), "--check", *images],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """What scripts/lock.sh reads (pyproject.toml, itself, the locks), copied so a test can plant errors."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(LOCK_SH, tmp_path / "scripts" / "lock.sh")
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    return tmp_path


def pin_block(text: str, name: str) -> str:
    """The lines of one package in a lock: its pin, its hashes and its `# via` comments."""
    match = re.search(rf"^{re.escape(name)}==.*?(?=^[A-Za-z0-9]|\Z)", text, re.M | re.S)
    assert match, f"{name} is not in the lock"
    return match.group(0)


@pytest.mark.network
@pytest.mark.usefixtures("pypi")
@pytest.mark.parametrize("image", IMAGES)
def test_lock_resolves_for_the_image_platform_and_is_current(image: str) -> None:
    result = run_check(REPO, image)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok requirements/{image}.lock" in result.stdout


@pytest.mark.network
@pytest.mark.usefixtures("pypi")
def test_planted_conflicting_pin_in_the_lock_fails(copy: Path) -> None:
    """The eval lock with the training image's numpy (2.4.6, its real hashes): vLLM's mistral-common refuses it."""
    train, eval_ = (copy / "requirements" / "train.lock").read_text(), copy / "requirements" / "eval.lock"
    assert pin_block(train, "numpy").startswith("numpy==2.4")
    eval_.write_text(eval_.read_text().replace(pin_block(eval_.read_text(), "numpy"), pin_block(train, "numpy")))
    result = run_check(copy, "eval")
    assert result.returncode == 1
    assert "FAIL requirements/eval.lock does not resolve" in result.stderr
    assert "mistral-common" in result.stderr and "numpy" in result.stderr


@pytest.mark.network
@pytest.mark.usefixtures("pypi")
def test_planted_conflicting_pin_in_pyproject_fails(copy: Path) -> None:
    """numpy==2.4.6 pinned in the eval extra cannot resolve with vLLM: the check says pyproject's extras fail."""
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    assert '"numpy>=1.26",' in text
    pyproject.write_text(text.replace('"numpy>=1.26",', '"numpy==2.4.6",'))
    result = run_check(copy, "eval")
    assert result.returncode == 1
    assert "FAIL pyproject.toml's extras for the eval image do not resolve" in result.stderr
    assert "numpy" in result.stderr


@pytest.mark.network
@pytest.mark.usefixtures("pypi")
def test_stale_lock_fails(copy: Path) -> None:
    """A dependency added to pyproject.toml without re-locking: the re-resolve differs from the lock."""
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('    "wandb==0.31.0",\n', '    "wandb==0.31.0",\n    "sqlglot==30.30.0",\n', 1))
    result = run_check(copy, "train")
    assert result.returncode == 1
    assert "FAIL requirements/train.lock is out of date" in result.stderr
    assert "> sqlglot==30.30.0" in result.stderr


@pytest.mark.network
@pytest.mark.usefixtures("pypi")
def test_wrong_hash_fails(copy: Path) -> None:
    lock = copy / "requirements" / "train.lock"
    text = lock.read_text()
    block = pin_block(text, "typer")
    first_hash = re.search(r"sha256:[0-9a-f]{64}", block)
    assert first_hash
    lock.write_text(text.replace(block, block.replace(first_hash.group(0), "sha256:" + "0" * 64)))
    result = run_check(copy, "train")
    assert result.returncode == 1
    assert "hashes PyPI does not list" in result.stderr
    assert "typer==0.29.1 sha256:" + "0" * 64 in result.stderr
