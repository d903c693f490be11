"""Deterministic, seeded train/validation/test split with deduplication and a leakage guard.

The guard: no (question, schema) pair of the test or validation split appears in training, compared after
case and whitespace normalisation. sql-create-context repeats questions across rows, so a plain random split
would leak. Optionally, training rows that ask a Spider dev question are dropped, so Spider dev stays held out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlmaster.config import DataConfig
from sqlmaster.data.examples import Example, fingerprint, normalise_text
from sqlmaster.data.validity import gold_runs
from sqlmaster.errors import ConfigError


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    stats: dict[str, int] = field(default_factory=dict)
    # with data.mix_source: that source's own held-out test rows (never trained on; see pipeline.mix)
    mix_test: list[Example] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def fingerprints(self) -> dict[str, str]:
        return {
            name: fingerprint(rows)
            for name, rows in (("train", self.train), ("validation", self.validation), ("test", self.test))
        }


def make_splits(examples: list[Example], cfg: DataConfig, exclude_questions: set[str] | None = None) -> Splits:
    """Split ``examples`` as the recipe's ``data`` section says (its keys and their defaults are declared there);
    the same inputs and seed always give the same splits. ``exclude_questions`` never reach training."""
    validation_size, test_size, seed = cfg.validation_size, cfg.test_size, cfg.seed
    stats: dict[str, int] = {"loaded": len(examples)}
    rows = list(examples)
    if cfg.dedupe:
        rows = list(dict.fromkeys(rows))  # keeps first occurrence, preserves order
        stats["duplicates_dropped"] = len(examples) - len(rows)
    if cfg.drop_invalid_gold:
        before = len(rows)
        rows = [ex for ex in rows if gold_runs(ex.context, ex.answer)]
        stats["invalid_gold_dropped"] = before - len(rows)
    if len(rows) <= validation_size + test_size:
        raise ConfigError(
            f"only {len(rows)} usable rows for validation_size={validation_size} + test_size={test_size}; "
            "lower them or use more data"
        )

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    shuffled = [rows[i] for i in order]
    test = shuffled[:test_size]
    validation = shuffled[test_size : test_size + validation_size]
    train = shuffled[test_size + validation_size :]

    held_out = {ex.key() for ex in test} | {ex.key() for ex in validation}
    before = len(train)
    train = [ex for ex in train if ex.key() not in held_out]
    stats["leaked_dropped"] = before - len(train)

    if exclude_questions:
        excluded = {normalise_text(q) for q in exclude_questions}
        before = len(train)
        train = [ex for ex in train if normalise_text(ex.question) not in excluded]
        stats["excluded_questions_dropped"] = before - len(train)

    if cfg.max_train_rows is not None:
        train = train[: cfg.max_train_rows]
    if not train:
        raise ConfigError(
            f"no training rows left after the split ({stats}): every row is held out or filtered. "
            "Lower data.validation_size / data.test_size or use more data"
        )
    return Splits(train=train, validation=validation, test=test, stats=stats)
