"""JSON written by another run, read with bounds: ``run.json``, ``adapter_config.json``, ``metrics.json`` ...

Python's ``json`` recurses once per nesting level (a record nested 100,000 deep is a ``RecursionError``),
converts digit strings of any length to ``int`` (over 4,300 digits a ``ValueError``; below that, quadratic time)
and reads a file whole. A record another command wrote is small and flat, so this reader refuses anything else
before parsing, with one line naming the file (a :class:`JsonTooBig`, a ConfigError: exit 2):

    load_file(path, "run record")   -> the value (a dict or list ...), or JsonTooBig / ConfigError
    loads(text, "run record")       -> the same for text already read

The YAML twin (recipes, ``--set``) is sqlmaster/boundedyaml.py. Torch-free and import-light.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from sqlmaster.errors import ConfigError

MAX_BYTES = 16 << 20  # a whole file; a run.json is ~10 KB, a trainer_state.json of a long run ~1 MB
MAX_DEPTH = 64  # nesting of [ and {; a run record nests ~5 deep
MAX_NUMBER_CHARS = 64  # one number literal; a float's repr is at most ~25 characters

_NUMBER = re.compile(r"-?\d[\d.eE+-]{" + str(MAX_NUMBER_CHARS) + ",}")  # a run of digits longer than any real number


class JsonTooBig(ConfigError):
    """JSON over one of the bounds above: exit 2 with one line."""


def loads(text: str, what: str) -> Any:
    """Parse ``text`` (the content of ``what``) after checking its size, nesting and number lengths."""
    if len(text) > MAX_BYTES:
        raise JsonTooBig(f"{what} is {len(text):,} characters, over the {MAX_BYTES:,} allowed. Restore or remove it")
    _check_depth(text, what)
    if _NUMBER.search(_strip_strings(text)):
        raise JsonTooBig(
            f"{what} holds a number of more than {MAX_NUMBER_CHARS} characters: not written by sqlmaster. "
            "Restore or remove it"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON ({exc}). Restore or remove it") from None
    except (RecursionError, ValueError) as exc:  # defence in depth: the checks above should have caught these
        raise JsonTooBig(f"{what} cannot be read as JSON ({exc}). Restore or remove it") from None


def load_file(path: Path, what: str) -> Any:
    """The JSON value in ``path``: a regular file of at most ``MAX_BYTES``, UTF-8, within the bounds of
    :func:`loads`. A missing file is ``FileNotFoundError`` (the caller words it); other read failures are one
    ConfigError line."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}. Check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} is a directory, not a file. Restore the file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file (a device, FIFO or socket). Restore the file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # bounded even if the file grows while we read it
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}. Check the path") from None
    if len(data) > MAX_BYTES:
        raise JsonTooBig(f"{what} {path} is over {MAX_BYTES:,} bytes: not written by sqlmaster. Restore or remove it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text. Restore or remove it") from None
    return loads(text, f"{what} {path}")


def _strip_strings(text: str) -> str:
    """``text`` with every JSON string literal emptied, so digits inside strings are not counted as numbers."""
    return re.sub(_STRING, '""', text)


def _check_depth(text: str, what: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` without recursing (brackets inside strings do not count)."""
    depth = 0
    for match in _STRUCTURE.finditer(text):
        char = match.group()
        if char[0] == '"':
            continue
        depth += 1 if char in "[{" else -1
        if depth > MAX_DEPTH:
            raise JsonTooBig(f"{what} nests deeper than {MAX_DEPTH} levels: not written by sqlmaster. Restore it")


_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # one JSON string literal (the unrolled form: linear time)
_STRUCTURE = re.compile(_STRING + r"|[\[\]{}]")  # a whole string literal, or one bracket
