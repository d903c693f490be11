"""YAML from users, read with bounds: every recipe file, ``--set`` value and ``--recipe-set`` goes through here.

PyYAML's ``safe_load`` is safe from code execution but not from size: an alias (``*a``) shares one node, so
a 400-character document of nested aliases is a tree of ~10^9 values once anything walks it (``recipe show``
reached 3 GB before ``MemoryError``). helm refuses such a values file ("excessive aliasing"); we do the same
before constructing any Python object, by measuring the tree the aliases describe on the composed nodes
(memoised per node, so measuring costs the document's size, not the expansion's).

    load(text, "recipe file x.yaml")      -> the value, or YamlTooBig (a ConfigError: one line, exit 2)

Aliases themselves are allowed (``<<: *defaults`` in a values file is ordinary); only the expansion is capped.
Torch-free and import-light: sqlctl uses it too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sqlmaster.errors import ConfigError

MAX_TEXT_BYTES = 1 << 20  # a whole document; the largest shipped values file is ~4 KB
MAX_NODES = 100_000  # values after alias expansion; a 7B recipe is ~120
MAX_CHARS = 4 << 20  # characters of all scalars after alias expansion
MAX_SCALAR_CHARS = 64 << 10  # one value: a path, a model id, a module name is far below this
MAX_DEPTH = 64  # nesting; a values file nests ~6 deep (PyYAML itself recurses per level)


class YamlTooBig(ConfigError):
    """A user's YAML is over one of the bounds above (or nests/aliases itself without end): exit 2."""


def load(text: str, what: str) -> Any:
    """One YAML document, checked against the bounds before any Python object is built."""
    documents = list(load_all(text, what))
    if len(documents) > 1:
        raise ConfigError(f"{what} holds {len(documents)} YAML documents (---). Keep one")
    return documents[0] if documents else None


def load_all(text: str, what: str) -> Iterator[Any]:
    """Every document of a ``---``-separated stream, each checked like :func:`load`'s."""
    if len(text) > MAX_TEXT_BYTES:
        raise YamlTooBig(f"{what} is {len(text):,} characters, over the {MAX_TEXT_BYTES:,} allowed. Shorten it")
    loader = yaml.SafeLoader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
            except RecursionError:
                raise YamlTooBig(f"{what} nests deeper than {MAX_DEPTH} levels. Flatten it") from None
            _Measure(what).check(node)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def read_text(path: Path, what: str) -> str:
    """A small regular text file's content; a device (/dev/zero), FIFO or oversized file is refused unread."""
    info = os.stat(path)  # OSError (missing, permission) is the caller's to word
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file (a device, FIFO or socket). Pass a YAML file")
    with open(path, "rb") as handle:
        data = handle.read(MAX_TEXT_BYTES + 1)  # bounded even if the file grows while we read it
    if len(data) > MAX_TEXT_BYTES:
        raise YamlTooBig(f"{what} {path} is over {MAX_TEXT_BYTES:,} bytes. Pass a recipe, not a data file")
    return data.decode("utf-8")


class _Measure:
    """The size of the tree a node graph stands for, stopping at the first bound crossed."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, characters) once measured
        self.open: set[int] = set()  # nodes being measured: meeting one again is an alias to an ancestor

    def check(self, node: yaml.Node) -> None:
        nodes, chars = self._size(node, 1)
        if nodes > MAX_NODES or chars > MAX_CHARS:
            raise self._too_big()

    def _too_big(self) -> YamlTooBig:
        return YamlTooBig(
            f"{self.what} expands to more than {MAX_NODES:,} values or {MAX_CHARS:,} characters "
            "(YAML aliases repeat what they point to). Write the values out, without nested aliases"
        )

    def _size(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if depth > MAX_DEPTH:
            raise YamlTooBig(f"{self.what} nests deeper than {MAX_DEPTH} levels. Flatten it")
        if key in self.open:
            raise YamlTooBig(f"{self.what} has an alias inside the value it names (a loop). Remove it")
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                raise YamlTooBig(
                    f"{self.what} has a value of {len(node.value):,} characters, over the {MAX_SCALAR_CHARS:,} "
                    "allowed for one value. Shorten it"
                )
            size = (1, len(node.value))
        else:
            self.open.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            nodes, chars = 1, 0
            for child in children:
                child_nodes, child_chars = self._size(child, depth + 1)
                nodes, chars = nodes + child_nodes, chars + child_chars
                if nodes > MAX_NODES or chars > MAX_CHARS:
                    raise self._too_big()
            self.open.discard(key)
            size = (nodes, chars)
        self.sizes[key] = size
        return size
