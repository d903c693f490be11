"""From a recipe's ``data`` section to the splits a run trains and evaluates on."""

from __future__ import annotations

import random

from sqlmaster.config import DataConfig
from sqlmaster.data.examples import Example, normalise_text
from sqlmaster.data.load import load_examples
from sqlmaster.data.split import Splits, make_splits


def build_splits(cfg: DataConfig) -> Splits:
    exclude: set[str] | None = None
    if cfg.exclude_spider_dev:
        from sqlmaster.data.spider import dev_questions

        exclude = dev_questions()
    splits = make_splits(load_examples(cfg.source), cfg, exclude_questions=exclude)
    if cfg.mix_source:
        splits.train = mix(splits, load_examples(cfg.mix_source), cfg, exclude)
    return splits


def mix(splits: Splits, others: list[Example], cfg: DataConfig, exclude: set[str] | None) -> list[Example]:
    """``splits.train`` with rows of ``data.mix_source`` added so that they are ``data.mix_ratio`` of the result;
    rows held out by the split or excluded (Spider dev) never enter. Seeded, so the same recipe mixes alike.

    The mix source keeps its own held-out rows too: the test and validation rows a run training on it alone would
    hold out (its default sizes; this recipe's seed, dedupe and drop_invalid_gold: README command 1's 500 rows for
    shipped). They become ``splits.mix_test``, so a run trained on a database's pairs mixed with sql-create-context
    is still scored on sql-create-context rows it never saw."""
    alone = DataConfig(
        source=cfg.mix_source or "", seed=cfg.seed, dedupe=cfg.dedupe, drop_invalid_gold=cfg.drop_invalid_gold
    )
    own = make_splits(others, alone)
    splits.mix_test = own.test
    held = {ex.key() for rows in (splits.test, splits.validation, own.test, own.validation) for ex in rows}
    excluded = {normalise_text(q) for q in exclude or ()}
    pool = [ex for ex in dict.fromkeys(others) if ex.key() not in held and normalise_text(ex.question) not in excluded]
    wanted = min(len(pool), round(len(splits.train) * cfg.mix_ratio / (1 - cfg.mix_ratio)))
    chosen = random.Random(cfg.seed).sample(pool, wanted)
    mixed = splits.train + chosen
    random.Random(cfg.seed + 1).shuffle(mixed)
    splits.stats["mixed_in"] = wanted
    return mixed
