"""Finding the checkpoint to resume from, ignoring ones a killed process left half written.

The HF Trainer writes a checkpoint's files one by one into ``checkpoint-<step>/`` with no atomic rename, so a
pod preempted mid-save leaves a directory that looks like a checkpoint but cannot be resumed from. A callback
writes the ``COMPLETE`` marker after the Trainer has finished saving (``on_save``); only marked directories
count, and unmarked ones are removed before training so checkpoint rotation never mistakes them for real ones.

A marked checkpoint can still be unusable (a weights file truncated or deleted later, ``optimizer.pt`` missing):
resuming from it crashed after run.json had been rewritten, or resumed silently with a fresh optimizer.
``pick_resume`` checks the newest one (weights readable, optimizer present) and falls back to the newest
usable one, saying why; an unusable one is renamed ``invalid-checkpoint-<step>`` before training continues,
so neither rotation nor a later resume takes it for a real one.
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from pathlib import Path

from sqlmaster import boundedjson
from sqlmaster.atomic import write_text
from sqlmaster.rundir import CHECKPOINT_PREFIX, COMPLETE_MARKER, TRAINER_STATE_FILE

__all__ = [
    "COMPLETE_MARKER",
    "checkpoint_dirs",
    "is_complete",
    "latest_complete",
    "mark_complete",
    "pick_resume",
    "problem_with",
    "remove_partial",
    "set_aside",
]

log = logging.getLogger("sqlmaster.train")
INVALID_PREFIX = "invalid-"
OPTIMIZER_FILE = "optimizer.pt"
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")

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


def problem_with(checkpoint: Path) -> str | None:
    """Why training cannot resume from a complete ``checkpoint`` (None: it can). Reads headers, not tensors."""
    try:
        boundedjson.load_file(checkpoint / TRAINER_STATE_FILE, TRAINER_STATE_FILE)
    except (OSError, ValueError) as exc:  # ConfigError is a ValueError
        return f"{TRAINER_STATE_FILE} is unreadable ({exc})"
    found = [checkpoint / name for name in _WEIGHTS if (checkpoint / name).is_file()]
    if not found:
        return f"it holds no weights ({' or '.join(_WEIGHTS[:2])})"
    for path in found:
        files = [path]
        if path.name.endswith(".index.json"):
            try:
                shards = sorted(set(boundedjson.load_file(path, path.name)["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return f"{path.name} is unreadable"
            files = [checkpoint / shard for shard in shards]
        for weights in files:
            if (why := _safetensors_problem(weights)) is not None:
                return why
    optimizer = checkpoint / OPTIMIZER_FILE
    if not optimizer.is_file():
        return f"{OPTIMIZER_FILE} is missing (resuming would restart the optimizer from nothing)"
    try:
        with zipfile.ZipFile(optimizer) as archive:  # torch.save writes a zip; a truncated one has no directory
            archive.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"{OPTIMIZER_FILE} is unreadable ({exc})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import safe_open

    if not path.is_file():
        return f"{path.name} is missing"
    try:
        with safe_open(str(path), framework="pt") as handle:  # checks the header covers the whole file
            handle.keys()
    except Exception as exc:  # SafetensorError and OSError: any reason it cannot be read
        return f"{path.name} is unreadable ({' '.join(str(exc).split())})"
    return None


def pick_resume(checkpoints_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint training can resume from, and the newer ones that it cannot (with why)."""
    unusable: list[tuple[Path, str]] = []
    for _, path in reversed(checkpoint_dirs(checkpoints_dir)):
        if not is_complete(path):
            continue
        why = problem_with(path)
        if why is None:
            return path, unusable
        unusable.append((path, why))
    return None, unusable


def set_aside(checkpoint: Path) -> Path:
    """Rename an unusable checkpoint out of the way (kept for inspection, never resumed from or rotated)."""
    target = checkpoint.with_name(INVALID_PREFIX + checkpoint.name)
    if target.exists():
        shutil.rmtree(target)
    checkpoint.rename(target)
    return target
