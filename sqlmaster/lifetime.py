"""Child processes that die with their parent: ``PR_SET_PDEATHSIG`` (Linux), set in the child.

``kill -9`` of ``sqlmaster train`` left torchrun and both training workers running, writing checkpoints into a
folder nobody owned any more (torchrun starts its workers in sessions of their own, so killing the process group
did not reach them either); ``kill -9`` of ``eval score`` left its forked scoring workers blocked for ever on a
pipe whose other end they themselves held open. The kernel can send a child a signal when its parent dies:

    die_with_parent()                                   # in a worker, first thing (torchrun's training workers)
    subprocess.Popen(cmd, preexec_fn=parent_death_signal())   # for a child started here (torchrun itself)

SIGTERM by default, so a training worker records ``interrupted`` in run.json as it would for Kubernetes'
SIGTERM. The signal follows the *thread* that started the child; every caller here starts children from its
main thread. Elsewhere than Linux these do nothing.

A child started in a process group of its own (``process_group=0``) no longer gets the terminal's Ctrl-C itself;
``wait_forwarding_signals`` passes each SIGINT or SIGTERM that reaches the parent on to it exactly once. (In the
terminal's group, torchrun got every Ctrl-C twice — from the terminal and from us — and a second signal cuts short
its workers' stop.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_libc: ctypes.CDLL | None = None


def _prctl() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform == "linux":
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc


def die_with_parent(signum: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies. If the parent (pid ``parent``,
    default: the current one) is already gone, the signal is sent now. False where not supported."""
    parent = os.getppid() if parent is None else parent
    libc = _prctl()
    if libc is None or libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the request took effect: nobody would send it
        os.kill(os.getpid(), signum)
    return True


def parent_death_signal(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``signum`` when this process dies."""
    if _prctl() is None:  # load libc here, in the parent: the child only calls into it
        return None
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(signum, parent)

    return preexec


def wait_forwarding_signals(pid: int, wait: Callable[[], int | None]) -> tuple[int | None, int | None]:
    """Run ``wait()`` (the child ``pid``'s wait); each SIGINT or SIGTERM that reaches this process meanwhile is sent
    on to the child once. Returns what ``wait()`` returned and the first signal passed on (None when none came).

    The signals do not interrupt the wait (PEP 475 retries it): the child decides how to stop, and is waited for."""
    if threading.current_thread() is not threading.main_thread():
        return wait(), None  # signal handlers can only be set from the main thread
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return code, (received[0] if received else None)
