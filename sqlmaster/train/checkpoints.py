"""Finding the checkpoint to resume from, ignoring ones a killed process left half written.

The HF Trainer writes a checkpoint's files one by one into ``checkpoint-<step>/`` with no atomic rename, so a
pod preempted mid-save leaves a directory that looks like a checkpoint but cannot be resumed from. A callback
writes the ``COMPLETE`` marker after the Trainer has finished saving (``on_save``); only marked directories
count, and unmarked ones are removed before training so checkpoint rotation never mistakes them for real ones.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sqlmaster.atomic import write_text
from sqlmaster.rundir import CHECKPOINT_PREFIX, COMPLETE_MARKER, TRAINER_STATE_FILE

__all__ = ["COMPLETE_MARKER", "checkpoint_dirs", "is_complete", "latest_complete", "mark_complete", "remove_partial"]

_CHECKPOINT = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")


def checkpoint_dirs(checkpoints_dir: Path) -> list[tuple[int, Path]]:
    """All ``checkpoint-<step>`` directories, by step."""
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for child in checkpoints_dir.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE_MARKER).is_file() and (checkpoint / TRAINER_STATE_FILE).is_file()


def latest_complete(checkpoints_dir: Path) -> Path | None:
    """The highest-step checkpoint that was completely written, or None to start from scratch."""
    complete = [path for _, path in checkpoint_dirs(checkpoints_dir) if is_complete(path)]
    return complete[-1] if complete else None


def remove_partial(checkpoints_dir: Path) -> list[Path]:
    """Delete checkpoint directories without the marker (main process only); returns what was removed."""
    removed = []
    for _, path in checkpoint_dirs(checkpoints_dir):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def mark_complete(checkpoint: Path) -> None:
    write_text(checkpoint / COMPLETE_MARKER, "ok\n")
