"""The scorer's one cache class: a bounded mapping that forgets its least recently used entry first.

Every cache of the scorer (prepared examples, real databases, gold results, the gold's exact-match form and
signature, verdicts) is one of these, so that each has a stated bound and none grows with the input file. An entry
that holds resources (open SQLite connections) is handed to ``on_evict`` as it leaves, and to ``close()``'s caller
through the same callback.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``maxsize`` entries; a lookup marks its entry as recently used."""

    def __init__(self, maxsize: int, on_evict: Callable[[V], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._on_evict = on_evict
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` (now the most recently used), or ``None``."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: K, value: V) -> V:
        """Store ``value`` (returned, for chaining); the least recently used entries past ``maxsize`` leave."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            _, old = self._items.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(old)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value under ``key``, made and stored on a miss (``None`` is a value here, e.g. "no form")."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return self.put(key, make())

    def values(self) -> list[V]:
        return list(self._items.values())

    def clear(self) -> None:
        """Empty the cache, handing every entry to ``on_evict``."""
        items, self._items = self._items, OrderedDict()
        if self._on_evict is not None:
            for value in items.values():
                self._on_evict(value)
