"""sqlmaster/phase.py: a phase in a child process returns its result, its errors keep their exit codes, signals are
passed on once, and the child does not outlive the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _procs import alive

from sqlmaster.errors import ConfigError, Interrupted, RunDiverged, TransientError
from sqlmaster.phase import run_phase

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def write_pid_and_sum(path: str, a: int, b: int) -> int:
    Path(path).write_text(f"{os.getpid()} {a + b}")
    return a + b  # dropped: a phase's results are its files


def raise_error(kind: str) -> None:
    errors: dict[str, type[Exception]] = {
        "config": ConfigError, "diverged": RunDiverged, "transient": TransientError, "crash": RuntimeError,
    }  # fmt: skip
    raise errors[kind](f"{kind}: the message")


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def count_sigints(record: str, seconds: float) -> int:
    """Counts the SIGINTs that reach it (a file line each) for ``seconds``, then returns the count."""
    got: list[int] = []

    def handler(signum: int, frame: object) -> None:
        got.append(signum)
        with open(record, "a") as out:
            out.write("SIGINT\n")

    signal.signal(signal.SIGINT, handler)
    Path(record + ".ready").write_text(str(os.getpid()))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return len(got)


def sleep_forever(ready: str) -> None:
    Path(ready).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def test_the_phase_runs_in_another_process_and_its_return_value_stays_there(tmp_path: Path) -> None:
    assert run_phase("adding", write_pid_and_sum, str(tmp_path / "out"), 2, 3) is None
    pid, total = (tmp_path / "out").read_text().split()
    assert total == "5" and int(pid) != os.getpid()


@pytest.mark.parametrize(
    ("kind", "expected"), [("config", ConfigError), ("diverged", RunDiverged), ("transient", TransientError)]
)
def test_the_commands_errors_cross_with_their_class_and_message(kind: str, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught:
        run_phase("failing", raise_error, kind)
    assert type(caught.value) is expected and str(caught.value) == f"{kind}: the message"


def test_a_crash_and_a_killed_child_are_transient_failures_that_name_the_phase() -> None:
    with pytest.raises(TransientError, match=r"the crashing phase failed \(exit code 1\)"):
        run_phase("crashing", raise_error, "crash")
    with pytest.raises(TransientError, match="the dying phase was killed by SIGKILL"):
        run_phase("dying", kill_self)


def _parent(tmp_path: Path, call: str) -> subprocess.Popen[str]:
    """A parent process running ``run_phase`` in its own process group, as a shell runs a command."""
    path = f"import sys; sys.path.insert(0, {str(TESTS)!r})"
    code = "\n".join([path, "from sqlmaster.phase import run_phase", "import test_phase", call])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=tmp_path,
    )  # fmt: skip


def _wait_for(path: Path, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while not path.is_file() or not path.read_text():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_ctrl_c_at_the_terminal_reaches_the_phase_once(tmp_path: Path) -> None:
    record = tmp_path / "sigints"
    parent = _parent(tmp_path, f"run_phase('counting', test_phase.count_sigints, {str(record)!r}, 3)")
    _wait_for(Path(f"{record}.ready"))
    os.killpg(parent.pid, signal.SIGINT)  # what the terminal does: the whole foreground process group
    out, _ = parent.communicate(timeout=60)
    assert parent.returncode == 0, out
    assert record.read_text() == "SIGINT\n"


def test_an_interrupted_phase_raises_interrupted_with_its_signal() -> None:
    import threading

    def interrupt_soon() -> None:
        time.sleep(3)
        os.kill(os.getpid(), signal.SIGTERM)  # forwarded to the child, whose phase stops with exit 143

    threading.Thread(target=interrupt_soon, daemon=True).start()
    with pytest.raises(Interrupted) as caught:
        run_phase("sleeping", time.sleep, 60)
    assert caught.value.signum == signal.SIGTERM


def test_the_phase_dies_with_its_parent(tmp_path: Path) -> None:
    ready = tmp_path / "child.pid"
    parent = _parent(tmp_path, f"run_phase('forever', test_phase.sleep_forever, {str(ready)!r})")
    child = _wait_for(ready)
    parent.kill()
    parent.communicate(timeout=30)
    end = time.monotonic() + 30
    while alive(child) and time.monotonic() < end:
        time.sleep(0.1)
    assert not alive(child)
