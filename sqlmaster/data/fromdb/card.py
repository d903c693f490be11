"""dataset.json, the card of a from-db folder: where the pairs came from (each source fingerprinted: a file's
path, size and sha256; a server's URL with its password redacted — never a credential), the settings, counts
per family and level and per split, what was skipped and dropped and why, and the time taken.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlmaster.engines.source import ServerURL, is_url, redact


def fingerprint_source(source: str) -> dict[str, Any]:
    """A file: path, size and sha256 (read in chunks). A server: its URL as it may be shown."""
    if is_url(source) and not source.startswith("duckdb://"):
        return {"url": ServerURL.parse(source).shown()}
    path = Path(source.removeprefix("duckdb://")).resolve()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def counts(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    families = Counter(p["family"] for p in pairs)
    levels = Counter(str(p["level"]) for p in pairs)
    cells = Counter(f"{p['family']}/{p['level']}" for p in pairs)
    return {
        "pairs": len(pairs),
        "per_family": dict(sorted(families.items())),
        "per_level": dict(sorted(levels.items())),
        "per_family_level": dict(sorted(cells.items())),
    }


def card(
    sources: list[dict[str, Any]],
    settings: dict[str, Any],
    train: Sequence[dict[str, Any]],
    test: Sequence[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    everything = [*train, *test]
    return {
        "kind": "sqlmaster from-db",
        "settings": settings,
        "sources": [{**s, "source": redact(s["source"])} for s in sources],
        "counts": counts(everything),
        "splits": {"train": counts(train), "test": counts(test)},
        "seconds": round(seconds, 2),
    }
