"""A list+watch loop over raw JSON, stoppable at once from another thread (used by the fake components).

The kubernetes client's ``watch.Watch`` cannot be interrupted while it waits for the next event; this
loop keeps the urllib3 response and shuts its socket down on :meth:`JsonWatch.stop`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

Event = Callable[[str, dict[str, Any]], None]
"""Called with (ADDED | MODIFIED | DELETED, object as JSON); the initial list arrives as ADDED."""


class JsonWatch:
    """Run ``list_fn`` (a client ``list_*`` method, called with watch/_preload_content kwargs) in a thread.

    ``on_event`` runs in the watch thread; it should be quick. ``on_error`` gets unexpected exceptions
    (the loop relists and goes on after half a second).
    """

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        on_event: Event,
        on_error: Callable[[str], None],
        **list_kwargs: Any,
    ) -> None:
        self._list_fn, self._on_event, self._on_error = list_fn, on_event, on_error
        self._kwargs = list_kwargs
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self, timeout: float = 30.0) -> JsonWatch:
        """Start the thread; return once the initial list was delivered and the watch is open."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{self._thread.name}: the watch did not open within {timeout:.0f} s")
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()  # unblocks the read in the watch thread
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    raw = self._list_fn(_preload_content=False, **self._kwargs)
                    listing = json.loads(raw.data)
                    rv = listing["metadata"]["resourceVersion"]
                    for obj in listing.get("items", []):
                        self._on_event("ADDED", obj)
                resp = self._list_fn(
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    _preload_content=False,
                    **self._kwargs,
                )
                self._resp = resp
                self._ready.set()
                for line in resp:
                    if self._stop.is_set():
                        break
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":  # 410 Gone: our resourceVersion is too old, relist
                        rv = None if obj.get("code") == 410 else rv
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._on_event(event["type"], obj)
                resp.release_conn()
            except Exception as e:
                if self._stop.is_set():
                    return
                self._on_error(f"{self._thread.name}: {e!r}; relisting")
                rv = None
                self._stop.wait(0.5)
