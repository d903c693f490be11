"""From a recipe's ``data`` section to the splits a run trains and evaluates on."""

from __future__ import annotations

from sqlmaster.config import DataConfig
from sqlmaster.data.load import load_examples
from sqlmaster.data.split import Splits, make_splits


def build_splits(cfg: DataConfig) -> Splits:
    exclude: set[str] | None = None
    if cfg.exclude_spider_dev:
        from sqlmaster.data.spider import dev_questions

        exclude = dev_questions()
    return make_splits(load_examples(cfg.source), cfg, exclude_questions=exclude)
