"""Console output for the workload: timestamped log lines always, live progress bars only in a terminal.

In a pod, in CI or through a pipe (``kubectl logs``, log files) stdout is not a TTY: training prints one line per
log step, and generation and scoring a progress line at least every 30 s (sqlmaster/progress.py), as plain text.
In a terminal, ``sqlmaster quickstart``, ``train`` and ``eval run`` also draw rich progress bars (training: step,
loss, tokens/s, time left; generation; scoring), and the log lines scroll above them. Library progress bars
(tqdm) stay off either way.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at emit time, so lines go above a live rich progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def setup_logging(main_process: bool = True, libraries: bool = True) -> None:
    """Log ``sqlmaster.*`` at INFO on the main process (WARNING on other DDP ranks); silence library chatter.

    ``libraries=False`` leaves transformers and datasets alone, unimported: for a process that loads neither
    (quickstart's parent, whose phases set up their own logging; importing them cost it 180 MB for the whole run).
    """
    logger = logging.getLogger("sqlmaster")
    if not logger.handlers:
        handler = _StdoutHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if main_process else logging.WARNING)
    logger.propagate = False
    from sqlmaster.progress import interval_s

    interval_s()  # a bad SQLMASTER_PROGRESS_INTERVAL_S fails now, in one line, not at a first progress line
    if not libraries:
        return

    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # Upstream, not ours: peft 0.21's PeftModel.__init__ reads model.is_gradient_checkpointing, which transformers
    # 5 deprecates with a FutureWarning at every LoRA model built (peft/peft_model.py, getattr(model,
    # "is_gradient_checkpointing", True)). Remove once peft reads is_activation_checkpointing.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


# Tests (and notebooks) may set a console, e.g. rich.console.Console(force_terminal=True, file=buffer).
console_override: Any = None


def progress_console() -> Any:
    """The rich Console to draw progress bars on, or None when stdout is not a terminal (no bars)."""
    if console_override is not None:
        return console_override
    if not sys.stdout.isatty():
        return None
    from rich.console import Console

    console = Console()
    return console if console.is_terminal and not console.is_dumb_terminal else None


def progress_bar(*extra_columns: Any, console: Any = None) -> Any:
    """A rich Progress with description, bar, count, elapsed and ``extra_columns``; None without a terminal."""
    console = console or progress_console()
    if console is None:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *extra_columns,
        console=console,
        transient=False,
    )


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """``with progress("generating", n) as advance: ... advance(k)``: a live bar in a terminal, a plain line at
    least every 30 s elsewhere (sqlmaster/progress.py, whose ``Progress`` also shows figures such as accuracy)."""
    from sqlmaster.progress import Progress

    with Progress(description, total or 0) as bar:
        yield bar.advance
