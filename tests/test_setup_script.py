"""scripts/setup.sh refuses a fresh install on a disk too full to hold it, before it writes anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_setup(root: Path, path: str, need_mib: int) -> subprocess.CompletedProcess[str]:
    """scripts/setup.sh copied alone into ``root`` (it works in its parent folder), run with the given need."""
    (root / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", root / "scripts" / "setup.sh")
    env = {"PATH": path, "SQLMASTER_SETUP_NEED_MIB": str(need_mib)}
    return subprocess.run(
        ["bash", str(root / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def test_setup_refuses_a_disk_too_full_and_writes_nothing(tmp_path: Path) -> None:
    # Ask for more space than any disk here has, so the real check fires on the real `df`.
    done = _run_setup(tmp_path, "/usr/bin:/bin", need_mib=1 << 40)
    assert done.returncode == 1
    assert "needs about" in done.stderr and "MiB are free" in done.stderr and "run it again" in done.stderr
    assert str(tmp_path) in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_setup_goes_past_the_check_where_the_disk_has_room(tmp_path: Path) -> None:
    # With a need of 1 MiB the check passes and the script goes on to create the venv; a python3 that fails stops
    # it there, so the test stays fast and offline.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text("#!/bin/sh\necho fake python3 reached >&2\nexit 7\n")
    (fake_bin / "python3").chmod(0o755)
    done = _run_setup(tmp_path, f"{fake_bin}:/usr/bin:/bin", need_mib=1)
    assert done.returncode == 7 and "fake python3 reached" in done.stderr
    assert "needs about" not in done.stderr
