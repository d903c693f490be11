"""Calls to the Hugging Face hub: a definite "no" is a configuration error, an unreachable hub is retried.

The hub libraries wrap their errors (transformers turns them all into ``OSError``), so the cause chain tells
the two apart: ``RepositoryNotFoundError``, ``GatedRepoError``, ``RevisionNotFoundError`` and
``EntryNotFoundError`` are the hub's answer (exit 2: fix the id, the revision or the token), while connection
errors and ``LocalEntryNotFoundError`` ("could not connect and nothing cached") may pass. Those are retried
with back-off (huggingface_hub already retries each request for ~50 s) and then raise ``TransientError``
(exit 1), so a Kubernetes Job retries the pod instead of failing for good.

``SQLMASTER_HUB_ATTEMPTS`` (default 3) sets the attempts; ``HF_HUB_OFFLINE=1`` makes a miss definite.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from functools import cache
from typing import TypeVar
from urllib.parse import urlparse

from sqlmaster.errors import ConfigError, TransientError

log = logging.getLogger("sqlmaster")

T = TypeVar("T")

BACKOFF_SECONDS = (15.0, 60.0, 120.0)  # waits between attempts (the last repeats)
_DEFINITE = ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError", "EntryNotFoundError")
_TRANSIENT = (
    "LocalEntryNotFoundError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "TimeoutException",
    "ConnectionError",
    "ConnectionRefusedError",
    "gaierror",
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it was raised from) says the hub could not be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    names: set[str] = set()  # every class name in each error's MRO (ConnectError is a NetworkError, ...)
    exact: set[str] = set()  # each error's own class (LocalEntryNotFoundError subclasses EntryNotFoundError)
    busy = False  # a 429 or 5xx answer (after huggingface_hub's own retries)
    seen: BaseException | None = exc
    for _ in range(20):  # cause chains are short; a cycle must not hang us
        if seen is None:
            break
        names.update(cls.__name__ for cls in type(seen).__mro__)
        exact.add(type(seen).__name__)
        status = getattr(getattr(seen, "response", None), "status_code", None)
        busy = busy or (isinstance(status, int) and (status == 429 or status >= 500))
        seen = seen.__cause__ or seen.__context__
    if exact & set(_DEFINITE):
        return False
    return busy or bool(names & set(_TRANSIENT))


def attempts() -> int:
    try:
        return max(1, int(os.environ.get("SQLMASTER_HUB_ATTEMPTS", "3")))
    except ValueError:
        raise ConfigError("SQLMASTER_HUB_ATTEMPTS must be a whole number, e.g. 3") from None


def with_hub_retries(what: str, call: Callable[[], T], *, config_error: Callable[[Exception], ConfigError]) -> T:
    """Run ``call``; retry while the hub is unreachable, then raise TransientError; else raise ``config_error(exc)``.

    ``what`` names the download in messages ("the tokenizer of org/name"); ``config_error`` turns a definite
    failure into the ConfigError to raise.
    """
    total = attempts()
    for attempt in range(1, total + 1):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise config_error(exc) from None
            if attempt == total:
                raise TransientError(
                    f"cannot reach the Hugging Face hub for {what} after {total} attempts "
                    f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). It may be a passing network "
                    "problem: retry later (a Kubernetes Job retries exit code 1), or set HF_HUB_OFFLINE=1 with a "
                    "filled cache"
                ) from None
            wait = BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)]
            log.warning(
                "the hub is unreachable for %s (attempt %d of %d); retrying in %.0f s", what, attempt, total, wait
            )
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_SECONDS = 3.0


@cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers a TCP connection (once per process; False under HF_HUB_OFFLINE=1).

    Decides, for a registry model with an offline copy (``sqlmaster models fetch``), whether to load from the hub
    or from that copy, without waiting through the hub retries above.
    """
    if any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in OFFLINE_ENV):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False
