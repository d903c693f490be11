"""Which synthesized pairs are kept: the SQL runs on the database within its time limit and returns a non-empty,
non-degenerate result; a pair whose SQL repeats one already kept, or whose skeleton (the SQL with its literals
replaced) is already used ``per_skeleton`` times, is dropped. Every drop is counted by reason.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from sqlmaster.data.fromdb.families import Candidate
from sqlmaster.engines import Session
from sqlmaster.engines.base import Limits, QueryError

_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
QUERY_LIMITS = Limits(timeout_s=1.0, max_rows=1000, max_result_bytes=4 << 20)


def literals(sql: str) -> tuple[str, ...]:
    """The SQL's string and number literals, in order."""
    strings = _STRING.findall(sql)
    return (*strings, *_NUMBER.findall(_STRING.sub("", sql)))


def skeleton(sql: str) -> str:
    """The SQL with each string literal as ``'_'`` and each number as ``0``, whitespace and case folded."""
    text = _NUMBER.sub("0", _STRING.sub("'_'", sql))
    return " ".join(text.split()).lower()


def degenerate(rows: list[tuple[object, ...]]) -> str | None:
    """Why a result tells nothing (None when it is fine)."""
    if not rows:
        return "empty result"
    if all(v is None for row in rows for v in row):
        return "only NULLs"
    if len(rows) == 1 and len(rows[0]) == 1 and rows[0][0] == 0:
        return "zero"
    return None


@dataclass
class Keeper:
    session: Session
    per_skeleton: int = 4
    limits: Limits = QUERY_LIMITS
    dropped: Counter[str] = field(default_factory=Counter)
    _sql: set[str] = field(default_factory=set)
    _skeletons: Counter[str] = field(default_factory=Counter)

    def offer(self, candidate: Candidate) -> bool:
        """Run ``candidate`` (unless it is a duplicate) and say whether it is kept."""
        key = " ".join(candidate.sql.split()).lower()
        shape = skeleton(candidate.sql)
        if key in self._sql:
            return self._drop("duplicate SQL")
        if self._skeletons[shape] >= self.per_skeleton:
            return self._drop("skeleton used enough")
        try:
            rows = self.session.run(candidate.sql, self.limits)
        except QueryError as exc:
            return self._drop(f"query {exc.kind}")
        reason = degenerate(rows)
        if reason:
            return self._drop(reason)
        self._sql.add(key)
        self._skeletons[shape] += 1
        return True

    def _drop(self, reason: str) -> bool:
        self.dropped[reason] += 1
        return False
