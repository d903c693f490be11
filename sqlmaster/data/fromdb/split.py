"""Train/test split of synthesized pairs: a pair's side is decided by a seeded hash of its SQL skeleton and
literals, so no test pair shares both with a training pair (two pairs that share both land on the same side),
and the split of one pair does not depend on which other pairs were kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlmaster.data.fromdb.keep import literals, skeleton


def split_key(sql: str) -> str:
    return skeleton(sql) + "\x00" + "\x00".join(literals(sql))


def goes_to_test(sql: str, seed: int, test_share: float) -> bool:
    digest = hashlib.sha256(f"{seed}\x00{split_key(sql)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_share


def split_pairs(
    pairs: Sequence[dict[str, Any]], seed: int, test_share: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, test)`` with the order of ``pairs`` kept inside each."""
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for pair in pairs:
        (test if goes_to_test(pair["answer"], seed, test_share) else train).append(pair)
    return train, test
