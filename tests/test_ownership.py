"""Issue 20, classes 4 and 6: one owner per run folder, and no process outlives the command that started it.

Each case asserts the exit code, one `error:` line naming the holder's pid, no traceback, the folder unchanged,
and (for the lifetime cases) that no process the command started is left behind within a stated bound.
Local helpers only; every subprocess is killed at the end of its test whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _procs import alive, descendants

from sqlmaster.ownership import FolderInUse, hold, holder_of

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'cli'}", "OMP_NUM_THREADS": "1"}
HOLDER = """
import sys, time
from pathlib import Path
from sqlmaster.ownership import hold
with hold(Path(sys.argv[1]), "a test holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def _all_gone(pids: set[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding tmp_path/held, as a running command would."""
    folder = tmp_path / "held"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        yield proc, folder
    finally:
        proc.kill()
        proc.wait()


def test_a_held_folder_is_refused_naming_the_holder_and_free_again_after_sigkill(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, folder = holder
    assert holder_of(folder) == proc.pid
    refused = pytest.raises(FolderInUse, match=rf"in use by another sqlmaster command \(pid {proc.pid}, `")
    with refused, hold(folder, "sqlmaster train"):
        pass
    proc.kill()  # the kernel drops a dead holder's lock: the folder is taken over at once
    proc.wait()
    with hold(folder, "sqlmaster train"):
        assert holder_of(folder) == os.getpid()
    assert holder_of(folder) is None


def test_hold_nests_in_one_process_and_removes_only_the_empty_folders_it_made(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    with hold(folder, "outer"), hold(folder, "inner"):  # flock is per open file: nesting must not self-block
        assert folder.is_dir()
    assert not (tmp_path / "a").exists()  # made here, left empty: removed (a refused command leaves nothing)
    with hold(folder, "writer"):
        (folder / "result").write_text("kept")
    assert (folder / "result").read_text() == "kept"
    (tmp_path / "file").write_text("mine")
    with hold(tmp_path / "file", "x"):  # a path that is a file is left to the command's own check
        pass
    assert (tmp_path / "file").read_text() == "mine"


def _one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def test_eval_score_into_a_held_output_dir_is_exit_2_and_changes_nothing(
    holder: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    """Two `eval score` into one --output-dir: one run's results silently replaced the other's."""
    proc, folder = holder
    (folder / "metrics.json").write_text('{"earlier": true}\n')
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"context": "CREATE TABLE t (a INT)", "answer": "SELECT a FROM t", "prediction": "x"}))
    done = subprocess.run(
        [sys.executable, "-m", "sqlmaster.cli", "eval", "score", "-i", str(rows), "-o", str(folder), "--overwrite"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"is in use by another sqlmaster command (pid {proc.pid}" in _one_error(done.stderr)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"]
    assert (folder / "metrics.json").read_text() == '{"earlier": true}\n'


def test_sigkill_of_eval_score_takes_its_scoring_workers_along(tmp_path: Path) -> None:
    """SIGKILL to `eval score`: both forked workers stayed blocked for ever (~150 MB each). Now they get SIGKILL
    from the kernel when their parent dies (PR_SET_PDEATHSIG), within a second or two."""
    rows = tmp_path / "in.jsonl"
    ctx = "CREATE TABLE t (a INT, b VARCHAR)"
    line = json.dumps({"context": ctx, "answer": "SELECT a FROM t WHERE b = 'x'", "prediction": "SELECT a FROM t"})
    rows.write_text((line + "\n") * 20000)
    cmd = [sys.executable, "-m", "sqlmaster.cli", "eval", "score", "-i", str(rows), "-o", str(tmp_path / "o")]
    proc = subprocess.Popen([*cmd, "--workers", "2"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(below := descendants(proc.pid)) < 2:
            assert proc.poll() is None, "eval score ended before its workers were seen"
            assert time.monotonic() < deadline, "no scoring workers within 2 minutes"
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert not _all_gone(below, within=10)
    finally:
        proc.kill()
        for pid in descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)


# --- sqlctl submit --local -------------------------------------------------------------------------------------

FAKE = """
import os, signal, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--output-dir") + 1])
out.mkdir(parents=True, exist_ok=True)
def stop(signum, frame):
    (out / "signal").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
(out / "pid").write_text(str(os.getpid()))
print("training", flush=True)
time.sleep(600)
"""


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    jobs = tmp_path / "jobs"
    for task in ("train", "eval"):
        (jobs / task).mkdir(parents=True)
        run = {"model": "tiny", "gpus": 1, "recipe": {"training": {"max_steps": 3}}}
        (jobs / task / "tiny.yaml").write_text(yaml.safe_dump({"runs": [run]}))
    (tmp_path / "fake.py").write_text(FAKE)
    return {**ENV, "SQLMASTER_BIN": f"{sys.executable} {tmp_path / 'fake.py'}"}


def _local(tmp_path: Path, env: dict[str, str], run_id: str) -> subprocess.Popen[str]:
    argv = ["submit", "train", "-m", "tiny", "--jobs-dir", str(tmp_path / "jobs"), "--local"]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--run-id", run_id]
    return subprocess.Popen(
        [sys.executable, "-m", "sqlctl", *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _started(tmp_path: Path, run_id: str, proc: subprocess.Popen[str]) -> int:
    pid_file = tmp_path / "runs" / run_id / "tiny" / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.is_file() or not pid_file.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the local workload did not start within 60 s"
        time.sleep(0.05)
    return int(pid_file.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sqlctl_local_forwards_the_signal_and_waits(tmp_path: Path, local_env: dict[str, str], sig: int) -> None:
    """SIGTERM to `sqlctl submit --local`: training went on unattended. Now the workload gets the same signal
    (once), sqlctl waits for it and exits 128 + N with one line; a second --local on the run id is refused."""
    proc = _local(tmp_path, local_env, "r1")
    try:
        worker = _started(tmp_path, "r1", proc)
        second = _local(tmp_path, local_env, "r1")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert f"in use by another sqlmaster command (pid {proc.pid}" in _one_error(err)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err
        assert f"interrupted by {signal.Signals(sig).name}" in _one_error(err)
        assert (tmp_path / "runs" / "r1" / "tiny" / "signal").read_text() == signal.Signals(sig).name
        assert not _all_gone({worker}, within=10)
    finally:
        proc.kill()


def test_sigkill_of_sqlctl_local_takes_the_workload_along(tmp_path: Path, local_env: dict[str, str]) -> None:
    proc = _local(tmp_path, local_env, "r2")
    try:
        worker = _started(tmp_path, "r2", proc)
        proc.kill()
        proc.wait()
        assert not _all_gone({worker}, within=10)
        assert (tmp_path / "runs" / "r2" / "tiny" / "signal").read_text() == "SIGTERM"  # it could record it
    finally:
        proc.kill()


# --- the launcher of training processes ---------------------------------------------------------------------------

LAUNCHER = """
import json, subprocess, sys
from pathlib import Path
from sqlmaster.errors import Interrupted
from sqlmaster.train.launch import _wait_for_torchrun
from sqlmaster.train.status import signals_interrupt
run = Path(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(run)])
try:
    with signals_interrupt():
        print("waiting", flush=True)
        _wait_for_torchrun(child, run)
except Interrupted as exc:
    sys.exit(exc.exit_code)
"""
# Stands in for torchrun: counts the signals it is passed, then ends a second after the first, having written
# nothing (as when its workers were killed before they could record how the run ended).
TORCHRUN = """
import signal, sys, time
from pathlib import Path
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
signal.signal(signal.SIGINT, lambda s, f: got.append(s))
Path(sys.argv[1], "child-ready").write_text("")
while not got:
    time.sleep(0.01)
time.sleep(1.0)
Path(sys.argv[1], "signals").write_text(str(len(got)))
"""


def test_the_launcher_passes_every_signal_on_waits_and_records_the_first(tmp_path: Path) -> None:
    """Two SIGTERMs in a row (Kubernetes, then an impatient user): the second reached the launcher while it
    waited for torchrun after the first, ended it at once and left run.json "running". Now both are passed on,
    torchrun is waited for, and run.json says interrupted by the first signal."""
    (tmp_path / "run.json").write_text(json.dumps({"status": "running"}))
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path), TORCHRUN], env=ENV, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + 60
        while not (tmp_path / "child-ready").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert (tmp_path / "signals").read_text() == "2"
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["status"] == "interrupted" and info["error"] == "interrupted by SIGTERM" and info["finished"]
