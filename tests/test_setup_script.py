"""scripts/setup.sh refuses a fresh install on a disk too full to hold it, before it writes anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_refuses_a_disk_too_full_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    # Ask for more space than any disk here has, so the real check fires on the real `df`.
    env = {"PATH": "/usr/bin:/bin", "SQLMASTER_SETUP_NEED_MIB": str(1 << 40)}
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "needs about" in done.stderr and "MiB are free" in done.stderr and "run it again" in done.stderr
    assert str(tmp_path) in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_setup_goes_past_the_check_where_the_disk_has_room(tmp_path: Path) -> None:
    # With a need of 1 MiB the check passes and the script goes on to create the venv; stop it there by giving it
    # a python3 that fails, so the test stays fast and offline.
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text("#!/bin/sh\necho fake python3 reached >&2\nexit 7\n")
    (fake_bin / "python3").chmod(0o755)
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "SQLMASTER_SETUP_NEED_MIB": "1"}
    done = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 7 and "fake python3 reached" in done.stderr
    assert "needs about" not in done.stderr
