"""One owner per run folder: an advisory ``flock`` on the folder itself, held for the whole command.

    with hold(output_dir, "sqlmaster train"):   # a second command on the same folder: exit 2, naming the holder
        ...

Two ``sqlmaster train`` into one folder both trained from scratch (or both resumed one checkpoint and wrote the
same checkpoints); two ``eval score`` into one ``--output-dir`` silently replaced each other's results. The lock
is taken on the folder's own file descriptor, so no lock file is ever left in a user's folder, and the kernel
drops it when the holder dies (even by SIGKILL): a dead holder's folder is simply free again. The holder's pid
comes from ``/proc/locks``. The descriptor is close-on-exec, so workers the holder starts never keep the folder
locked after their parent is gone; they are told through ``SQLMASTER_HELD_DIRS`` that an ancestor owns it.

Used by ``sqlmaster train`` (sqlmaster/train/runner.py), ``eval run`` (sqlmaster/evaluate/runner.py), ``eval
score`` and ``quickstart`` (sqlmaster/cli.py) and ``sqlctl submit --local`` (cli/sqlctl/local.py). Torch-free.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlmaster.errors import ConfigError

HELD_ENV = "SQLMASTER_HELD_DIRS"  # folders an ancestor process holds, os.pathsep-separated (for its workers)
_held: dict[str, int] = {}  # folder -> nesting depth, in this process (flock is per open file, not per process)


class FolderInUse(ConfigError):
    """Another live process holds the folder (exit 2: wait for it, or choose another folder)."""


@contextmanager
def hold(folder: Path, command: str) -> Iterator[None]:
    """Own ``folder`` while inside; it is created if missing (and removed again if it is still empty at the end).

    A path that is a file or cannot be created is left to the command's own checks, which word that error.
    """
    key = os.path.realpath(folder)
    if key in _held or key in os.environ.get(HELD_ENV, "").split(os.pathsep):
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _release_nested(key)
        return
    created = _make(folder)
    if created is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _lock(fd, folder, command)
        _held[key] = 1
        previous = os.environ.get(HELD_ENV)
        os.environ[HELD_ENV] = os.pathsep.join(filter(None, [previous, key]))
        try:
            yield
        finally:
            del _held[key]
            _restore_env(previous)
    finally:
        os.close(fd)  # releases the lock
        for path in created:  # folders this command made and left empty (a refused command)
            try:
                path.rmdir()
            except OSError:
                break


def holder_of(folder: Path) -> int | None:
    """The pid that holds ``folder``'s lock, from /proc/locks; None when free (or on a system without it)."""
    try:
        info = os.stat(folder)
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 10063 fe:00:2156932 0 EOF" (a blocked waiter's line starts "1: ->")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return int(fields[4])
    return None


def _lock(fd: int, folder: Path, command: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            return  # a filesystem without flock: run unowned rather than not at all
        pid = holder_of(folder)
        cmdline = _cmdline(pid) if pid else ""
        who = (f"pid {pid}" + (f", `{cmdline}`" if cmdline else "")) if pid else "another process"
        raise FolderInUse(
            f"{folder} is in use by another sqlmaster command ({who}); {command} would write into the same folder. "
            "Wait for it to finish (or stop it), or choose another folder"
        ) from None


def _cmdline(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text if len(text) <= 160 else text[:157] + "..."


def _make(folder: Path) -> list[Path] | None:
    """Create ``folder`` and missing parents; the ones created, deepest first, or None if it cannot be a folder."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    if folder.exists() and not folder.is_dir():
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return missing


def _release_nested(key: str) -> None:
    if key in _held:
        _held[key] -= 1
        if _held[key] == 0:
            del _held[key]


def _restore_env(previous: str | None) -> None:
    if previous is None:
        os.environ.pop(HELD_ENV, None)
    else:
        os.environ[HELD_ENV] = previous
