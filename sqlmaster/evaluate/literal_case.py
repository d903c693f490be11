"""The case a dataset writes its string literals in, measured from its training rows, so that constrained decoding
(:mod:`.constrain`, ``grammar+values``) offers the question's words in that case only.

sql-create-context mixes conventions, and one of its parts is strict. README command 1's training split (14,786 rows
of the shipped sample), counting the gold string literals that copy a question span other than as it is written or
that hold a capital (:func:`measure`):

    tables named table_name_N   (WikiSQL's test part)   4,172 lower-cased, 1 re-cased              -> lower
    tables named table_N_N      (WikiSQL's train part)  1,189 as written, 1,452 re-cased
                                                        ('Spain' for "spain"), 1 lower-cased         -> any
    tables with names (Spider)                          241 as written, 38 re-cased, 6 lower-cased -> any (85%)

A model trained on it mixes them up: README command 1 wrote 'United States' for "united states" in a table_name_N
table (literal_case: 20% of its misses, half of them there). The convention is keyed by the *shape* of the context's
first table name (digit runs as ``N``; names without digits share one shape), learned from each run's own training
split, and used only where one form holds for at least :data:`THRESHOLD` of :data:`MIN_SEEN` or more literals;
anywhere else any case is allowed.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CASES = ("any", "exact", "lower")  # what a question span may be written as: as the question has it, lower-cased
THRESHOLD = 0.9
MIN_SEEN = 20
NAMED = "named"  # the shape of every table name without digits

_FIRST_TABLE = re.compile(r"CREATE TABLE\s+[`\"\[]?([^\s`\"\](]+)", re.IGNORECASE)
_LITERAL = re.compile(r"\"([^\"]*)\"|'([^']*)'")


def table_shape(context: str) -> str:
    """``table_name_12`` -> ``table_name_N``, ``table_1_10015132`` -> ``table_N_N``, ``singer`` -> ``named``."""
    match = _FIRST_TABLE.search(context)
    if match is None:
        return ""
    name = match.group(1).lower()
    return re.sub(r"\d+", "N", name) if re.search(r"\d", name) else NAMED


def literal_form(question: str, literal: str) -> str | None:
    """How ``literal`` copies the question: ``exact``, ``lower``, ``other`` (re-cased otherwise: 'Spain' for
    "spain"); None when it is not a question span, or is one with no capital copied as it is (every convention
    writes it alike)."""
    literal = literal.strip("%")
    start = question.lower().find(literal.lower())
    if not literal or start < 0:
        return None
    span = question[start : start + len(literal)]
    if literal == span == span.lower():
        return None
    return "exact" if literal == span else "lower" if literal == span.lower() else "other"


@dataclass(frozen=True)
class LiteralCase:
    """Per table shape: the case literals are written in (a value of :data:`CASES`) and the counts behind it."""

    rules: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def case_for(self, context: str) -> str:
        return self.rules.get(table_shape(context), "any")

    def summary(self) -> dict[str, Any]:
        return {"rules": self.rules, "counts": self.counts, "threshold": THRESHOLD, "min_seen": MIN_SEEN}


def measure(examples: Iterable[Any]) -> LiteralCase:
    """The convention of ``examples`` (objects with ``question``, ``context``, ``answer``: a training split)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for ex in examples:
        for match in _LITERAL.finditer(ex.answer):
            form = literal_form(ex.question, match.group(1) if match.group(1) is not None else match.group(2))
            if form is not None:
                counts[table_shape(ex.context)][form] += 1
    rules = {}
    for shape, seen in counts.items():
        total = sum(seen.values())
        form, most = seen.most_common(1)[0]
        if total >= MIN_SEEN and form != "other" and most / total >= THRESHOLD:
            rules[shape] = form
    return LiteralCase(rules, {shape: dict(seen) for shape, seen in sorted(counts.items())})
