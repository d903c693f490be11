"""One phase of a longer command in a child process, so that its memory goes back to the OS when it ends.

    run_phase("train", run_training, model, run_dir, recipe)   # what the phase makes, it writes to files

``sqlmaster quickstart --model smollm2-135m`` ran its three phases — the base model's zero-shot evaluation,
training, the fine-tuned evaluation — in one process and peaked at 4.27 GB resident although no phase alone
needs 2.8 GB: a model, its KV caches and the allocator's arenas outlived the phase that made them
(``gc.collect`` and ``malloc_trim`` got some of it back, not all). A phase run in a child process returns
everything when the child exits, and the parent, which never imports torch, stays at ~30 MB.

The contract of the command is unchanged:

* errors: a ``ConfigError`` (and ``RunDiverged``) or ``TransientError`` raised in the child is raised again in
  the parent with the same message, so the command prints one ``error:`` line and exits 2 or 1 as before; any
  other failure prints its traceback in the child and becomes a ``TransientError`` naming the phase;
* signals: the child runs in a process group of its own, so a Ctrl-C at the terminal reaches only the parent,
  which passes each SIGINT or SIGTERM on exactly once; the child stops the way the command always did
  (``run.json`` says interrupted, a checkpoint is kept) and the parent raises ``Interrupted`` with that signal;
* lifetime: the child dies with the parent (``PR_SET_PDEATHSIG``, sqlmaster/lifetime.py), ``kill -9`` included.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sqlmaster import exitcodes
from sqlmaster.errors import ConfigError, Interrupted, RunDiverged, TransientError
from sqlmaster.lifetime import wait_forwarding_signals

# The errors that cross the process boundary as themselves: each carries the exit code the user sees.
_KNOWN: dict[str, type[Exception]] = {
    "RunDiverged": RunDiverged,
    "ConfigError": ConfigError,
    "TransientError": TransientError,
}


def run_phase(name: str, target: Callable[..., Any], *args: Any) -> None:
    """Run ``target(*args)`` in a fresh (spawned) child process; its return value is dropped.

    Results stay in the child on purpose: unpickling them here imports what they are made of (a metrics dict with
    NumPy numbers brought NumPy, pandas and pyarrow into the parent: 206 MB for the rest of the run)."""
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(
        target=_child_main, args=(os.getpid(), send, target, args), name=f"sqlmaster-{name}"
    )
    child.start()
    assert child.pid is not None  # set by start()
    send.close()  # the child holds the only writing end: its death ends the read below
    wait_forwarding_signals(child.pid, child.join)
    code = child.exitcode
    outcome = _read_outcome(receive)
    receive.close()
    if outcome is not None and outcome[0] == "ok":
        return
    if outcome is not None and outcome[0] in _KNOWN:
        raise _KNOWN[outcome[0]](outcome[1])
    if code is not None and code > exitcodes.INTERRUPTED_BASE:
        raise Interrupted(code - exitcodes.INTERRUPTED_BASE)
    if code in (-signal.SIGINT, -signal.SIGTERM):  # stopped before its handlers were in place (still starting)
        raise Interrupted(-code)
    if code is not None and code < 0:  # killed by a signal it did not handle (SIGKILL: the OOM killer, a user)
        raise TransientError(f"the {name} phase was killed by {signal.Signals(-code).name}; its output is above")
    raise TransientError(f"the {name} phase failed (exit code {code}); its output is above")


def _read_outcome(receive: Connection) -> tuple[str, str | None] | None:
    try:
        return receive.recv() if receive.poll() else None
    except (EOFError, OSError, pickle.UnpicklingError):
        return None


def _child_main(parent: int, send: Connection, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    from sqlmaster.lifetime import die_with_parent
    from sqlmaster.logs import setup_logging
    from sqlmaster.train.status import signals_interrupt

    os.setpgid(0, 0)  # the terminal's Ctrl-C goes to the parent only, which forwards it: one signal, not two
    die_with_parent(parent=parent)
    setup_logging()
    try:
        with signals_interrupt():  # a phase that does not record interruptions itself still exits 128 + signal
            target(*args)
    except (ConfigError, TransientError) as exc:
        kind = next(name for name, cls in _KNOWN.items() if isinstance(exc, cls))
        send.send((kind, str(exc)))
        raise SystemExit(exc.exit_code) from None
    except Interrupted as exc:
        raise SystemExit(exc.exit_code) from None
    send.send(("ok", None))
