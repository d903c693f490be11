"""Progress of a long loop (generation, scoring, ...): a live bar in a terminal, plain log lines elsewhere.

    with Progress("generating spider-dev", total=1034, done=48) as bar:   # done: rows already on disk (a resume)
        for batch in batches:
            ...
            bar.advance(len(batch))
            bar.note("execution accuracy", "61.2%")   # a figure known so far, shown from now on

In a terminal this draws a rich bar (sqlmaster/logs.py: description, bar, count, elapsed, rate, time left, the
notes). In a pod, in CI or through a pipe (stdout not a TTY) a background thread logs one line every
``SQLMASTER_PROGRESS_INTERVAL_S`` seconds (default 30), even while one batch takes longer than that, in the style
of training's log lines (sqlmaster/train/callbacks.py)::

    2026-12-07 16:05:31 generating spider-dev: 120/1034 rows (11.6%) | 2.40 rows/s | elapsed 0m50s | left 6m21s

Rates and the time left count this process's rows only (a resumed run's earlier rows do not inflate them).
Nothing is printed for a loop that ends within the first interval.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType
from typing import Any, Self

from sqlmaster.errors import ConfigError

log = logging.getLogger("sqlmaster.progress")

INTERVAL_ENV = "SQLMASTER_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 30.0  # seconds between two plain lines: a pod's log shows life at least this often


def interval_s() -> float:
    """Seconds between plain progress lines: ``SQLMASTER_PROGRESS_INTERVAL_S``, else 30."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{INTERVAL_ENV}={raw!r} is not a positive number of seconds. Unset it (30), or set e.g. 10")
    return value


def duration(seconds: float) -> str:
    """``4m05s``, ``1h02m09s``: how training's and evaluation's log lines write a duration."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Rows done of ``total`` for one loop; see the module docstring. Use it as a context manager."""

    def __init__(self, description: str, total: int, *, done: int = 0, unit: str = "rows") -> None:
        self.description = description
        self.total = total
        self.done = done
        self.unit = unit
        self.notes: dict[str, str] = {}
        self._first = done  # rows done before this process started on them
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Self:
        from rich.progress import TextColumn, TimeRemainingColumn

        from sqlmaster.logs import progress_bar

        self._started = time.monotonic()
        self._bar = progress_bar(TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.done, status="")
        else:
            self._thread = threading.Thread(target=self._tick, args=(interval_s(),), name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.stop()

    def advance(self, rows: int = 1) -> None:
        self.done += rows
        self._refresh()

    def note(self, name: str, value: str) -> None:
        """A figure known so far (e.g. running execution accuracy), shown after the time left."""
        self.notes[name] = value
        self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            parts = [self._rate(), *self._note_parts()]
            self._bar.update(self._task, completed=self.done, status=" | ".join(p for p in parts if p))

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            log.info("%s", self.line())

    def _rate(self) -> str:
        elapsed = time.monotonic() - self._started
        rows = self.done - self._first
        return f"{rows / elapsed:.2f} {self.unit}/s" if elapsed > 0 and rows > 0 else ""

    def _note_parts(self) -> list[str]:
        return [f"{name} {value}" for name, value in self.notes.items()]

    def line(self) -> str:
        """The plain progress line: rows done of total, rows/s, elapsed, time left, the notes."""
        elapsed = time.monotonic() - self._started
        share = f" ({self.done / self.total:.1%})" if self.total else ""
        parts = [f"{self.description}: {self.done}/{self.total} {self.unit}{share}"]
        rows = self.done - self._first
        rate = rows / elapsed if elapsed > 0 else 0.0
        parts.append(f"{rate:.2f} {self.unit}/s" if rows > 0 else "none done yet in this process")
        parts.append(f"elapsed {duration(elapsed)}")
        if rows > 0:
            parts.append(f"left {duration(max(self.total - self.done, 0) / rate)}")
        return " | ".join(parts + self._note_parts())
