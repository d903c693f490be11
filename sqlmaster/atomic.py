"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

Every file the project writes whole (run.json, metrics.json, records.jsonl, recipe.yaml, leaderboards) goes
through here: the content goes to a temporary file in the same directory (so the rename cannot cross file
systems), is flushed to disk, and then replaces the target with ``os.replace`` (atomic on POSIX).

    write_json(run_dir / "run.json", info)
    write_text(path, markdown)
    with atomic_open(path) as fh:      # stream large files (records.jsonl) without holding them in memory
        for row in rows: fh.write(...)
    with atomic_dir(run_dir / "adapter") as tmp:   # a directory of weights, swapped in whole
        model.save_pretrained(tmp)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: str | Path, *, encoding: str = "utf-8", errors: str = "strict") -> Iterator[IO[str]]:
    """A text handle whose content replaces ``path`` only when the block exits without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding=encoding, errors=errors, newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; keep the permissions an ordinary write would give (umask applies).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8", errors: str = "strict") -> None:
    with atomic_open(path, encoding=encoding, errors=errors) as handle:
        handle.write(text)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> None:
    """JSON with ``default=str`` (paths, datetimes). NaN and Infinity are not JSON: they are written as null."""
    write_text(path, json.dumps(finite(data), indent=indent, default=str, allow_nan=False) + "\n")


def finite(data: Any) -> Any:
    """``data`` with every NaN/Infinity float replaced by None (recursively through dicts, lists, tuples)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite(value) for value in data]
    return data


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse to open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A fresh directory to fill; it replaces ``path`` only when the block exits without an exception.

    Used for saved weights (adapter/, model/, merged/): a crash while saving leaves the old directory (or
    none), never a half-written one that loading would take for the real thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would flip it for every thread for a moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask
