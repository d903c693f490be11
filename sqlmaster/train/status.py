"""The status run.json records, whatever ends a run: completed, diverged, interrupted or failed.

``run.json`` is written "running" when training starts; these helpers make sure no way out of training leaves
it there. SIGINT and SIGTERM (what Kubernetes sends before it kills a preempted pod) raise ``Interrupted``, so
the run records "interrupted" and exits 128 + the signal number; the checkpoints already written stay, and the
next attempt resumes from the latest complete one (as it does after SIGKILL, which nothing can catch).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from sqlmaster.errors import Interrupted, RunDiverged
from sqlmaster.train.outputs import now

RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED = "running", "completed", "diverged", "interrupted", "failed"


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise ``Interrupted`` in the main thread (handlers restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def recorded_status(record: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Record how the block ended if it raised (``record`` merges the fields into run.json), then re-raise."""
    try:
        yield
    except RunDiverged as exc:
        record({"status": DIVERGED, "finished": now(), "error": str(exc)})
        raise
    except (Interrupted, KeyboardInterrupt) as exc:
        name = signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"
        record({"status": INTERRUPTED, "finished": now(), "error": f"interrupted by {name}"})
        raise
    except BaseException as exc:
        record({"status": FAILED, "finished": now(), "error": f"{type(exc).__name__}: {exc}"})
        raise
