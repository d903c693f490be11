"""The evaluation datasets, each built so that a trained run is scored only on examples it never saw.

* ``sql-create-context-test``: the held-out test split, rebuilt with the *run's own* data recipe from its
  run.json (same source, seed, sizes and filters), so it is exactly the rows the run never trained on. When
  run.json records the split's sha256, the rebuilt split must match it, or evaluation stops.
* ``spider-dev``: Spider 1.0 dev on its real SQLite databases (19 of 20 ship; 972 examples), with the schema
  from ``schema_context``. sql-create-context contains Spider dev questions, so every dev question that is
  also in the run's training split is dropped (and counted in ``info``).
* a path to a ``.jsonl`` file of triplets (``question``, ``context``, ``answer``), e.g. from
  ``sqlmaster eval make-dataset``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmaster.config import DataConfig
from sqlmaster.data.examples import Example, fingerprint, normalise_text
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.literal_case import LiteralCase

log = logging.getLogger(__name__)

SQL_CREATE_CONTEXT_TEST = "sql-create-context-test"
SPIDER_DEV = "spider-dev"
BUILTIN = (SQL_CREATE_CONTEXT_TEST, SPIDER_DEV)


@dataclass(frozen=True)
class EvalExample:
    """One evaluation item; ``db_path`` is set when gold and prediction run on a real database file."""

    id: str
    question: str
    context: str
    answer: str
    db_path: str | None = None
    db_id: str | None = None
    db_source: str | None = None  # a DuckDB file or server URL (no password) the engine layer scores it on

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class EvalDataset:
    name: str  # directory name under eval/ (a triplets file is named after its stem)
    examples: list[EvalExample]
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source, drops, limit, fingerprints
    # with evaluation.constrain=grammar+values: the case the run's training data writes literals in (literal_case.py)
    literal_case: LiteralCase | None = None


def data_config_of_run(run_info: dict[str, Any] | None, fallback: DataConfig) -> tuple[DataConfig, str]:
    """The data recipe a run trained with (from run.json), else ``fallback``; and where it came from."""
    recipe = (run_info or {}).get("recipe") or {}
    data = recipe.get("data")
    if not data:
        return fallback, "evaluation recipe (no training run given)"
    known = {k: v for k, v in data.items() if k in DataConfig.__dataclass_fields__}
    return DataConfig(**known), "run.json"


class SplitCache:
    """Builds the run's splits once and shares them between datasets (the training split is needed twice)."""

    def __init__(self, data_cfg: DataConfig, run_info: dict[str, Any] | None) -> None:
        self.data_cfg = data_cfg
        self.run_info = run_info or {}
        self._splits: Any = None

    def get(self) -> Any:
        if self._splits is None:
            from sqlmaster.data.pipeline import build_splits

            self._splits = build_splits(self.data_cfg)
            self._check_fingerprints(self._splits)
        return self._splits

    def _check_fingerprints(self, splits: Any) -> None:
        """The rebuilt splits must be the ones the run recorded; otherwise the 'held-out' set is not."""
        recorded = ((self.run_info.get("data") or {}).get("sha256")) or {}
        if not recorded:
            return
        rebuilt = splits.fingerprints()
        for name in ("test", "train"):
            if name in recorded and recorded[name] != rebuilt[name]:
                raise ConfigError(
                    f"the {name} split rebuilt from run.json's data recipe differs from the one the run recorded "
                    f"(sha256 {rebuilt[name][:12]} != {recorded[name][:12]}): the data source "
                    f"{self.data_cfg.source!r} changed since training. Evaluate with the same data the run used"
                )


def load_eval_dataset(name: str, splits: SplitCache, limit: int | None = None) -> EvalDataset:
    """Build one evaluation dataset by name (see the module docstring) with at most ``limit`` examples."""
    if name == SQL_CREATE_CONTEXT_TEST:
        dataset = _sql_create_context_test(splits)
    elif name == SPIDER_DEV:
        dataset = _spider_dev(splits)
    elif name.endswith((".jsonl", ".jsonl.gz", ".json")):
        dataset = _triplets(Path(name))
    else:
        raise ConfigError(
            f"unknown evaluation dataset {name!r}. Use {', '.join(BUILTIN)} or a path to a triplets .jsonl file"
        )
    total = len(dataset.examples)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be >= 1, not {limit}")
        dataset.examples = dataset.examples[:limit]
    dataset.info.update(available=total, evaluated=len(dataset.examples), limit=limit)
    if not dataset.examples:
        raise ConfigError(f"evaluation dataset {name!r} has no examples")
    return dataset


def _sql_create_context_test(splits: SplitCache) -> EvalDataset:
    built = splits.get()
    test: list[Example] = built.test
    source, split = splits.data_cfg.source, "test"
    if not test and built.mix_test:
        # trained on a database's pairs (test_size=0) mixed with sql-create-context: score on the rows of the
        # mix source that the run held out (data/pipeline.py: mix)
        test, source, split = built.mix_test, str(splits.data_cfg.mix_source), "test of data.mix_source"
    if not test:
        raise ConfigError("the run's data recipe has test_size=0: there is no held-out test split to evaluate")
    examples = [EvalExample(f"test-{i}", ex.question, ex.context, ex.answer) for i, ex in enumerate(test)]
    info = {
        "source": source,
        "split": split,
        "seed": splits.data_cfg.seed,
        "sha256": fingerprint(test),
    }
    return EvalDataset(SQL_CREATE_CONTEXT_TEST, examples, info)


def _spider_dev(splits: SplitCache) -> EvalDataset:
    from sqlmaster.data.spider import database_path, dev_examples, schema_context

    trained_on = {normalise_text(ex.question) for ex in splits.get().train}
    rows = dev_examples(executable_only=True)
    kept = [ex for ex in rows if normalise_text(ex.question) not in trained_on]
    dropped = len(rows) - len(kept)
    if dropped:
        log.info("spider-dev: dropped %d of %d questions that the run's training split contains", dropped, len(rows))
    context = _live_context(splits.data_cfg) if splits.data_cfg.live_schema else lambda ex: schema_context(ex.db_id)
    examples = [
        EvalExample(
            id=f"spider-dev-{i}",
            question=ex.question,
            context=context(ex),
            answer=ex.query,
            db_path=str(database_path(ex.db_id)),
            db_id=ex.db_id,
        )
        for i, ex in enumerate(kept)
    ]
    info = {
        "source": "spider 1.0 dev (real databases)",
        "schema": f"live, {splits.data_cfg.schema_chars} chars" if splits.data_cfg.live_schema else "CREATE TABLE",
        "executable": len(rows),
        "dropped_in_training_data": dropped,
    }
    return EvalDataset(SPIDER_DEV, examples, info)


def _live_context(cfg: DataConfig) -> Callable[[Any], str]:
    """Spider dev's schema as ``data from-db`` renders a live database: keys, example values, filtered to
    ``data.schema_chars`` per question (sqlmaster/data/fromdb/schema_filter.py), each database profiled once."""
    from sqlmaster.data.fromdb.profile import load_profile
    from sqlmaster.data.fromdb.schema_filter import schema_for
    from sqlmaster.data.spider import database_path

    profiles: dict[str, Any] = {}

    def context(ex: Any) -> str:
        if ex.db_id not in profiles:
            profiles[ex.db_id] = load_profile(str(database_path(ex.db_id)))
        return schema_for(profiles[ex.db_id], ex.question, cfg.schema_chars)

    return context


def _triplets(path: Path) -> EvalDataset:
    from sqlmaster.data.load import load_examples

    if not path.is_file():
        raise ConfigError(f"triplets file {path} does not exist. Create one with `sqlmaster eval make-dataset`")
    rows = load_examples(str(path))
    places = _database_fields(path, len(rows))
    examples = [
        EvalExample(f"{path.stem}-{i}", ex.question, ex.context, ex.answer, *places[i]) for i, ex in enumerate(rows)
    ]
    name = path.name.split(".", 1)[0]
    return EvalDataset(name, examples, {"source": str(path), "sha256": fingerprint(rows)})


def _database_fields(path: Path, count: int) -> list[tuple[str | None, str | None, str | None]]:
    """Each row's ``(db_path, db_id, db_source)``: a row that names its real database (``data from-db``'s
    test.jsonl: ``db_path`` for an SQLite file, ``db_source`` for a DuckDB file or a server) is scored on it;
    relative paths are taken from the file's folder."""
    from sqlmaster.data.load import read_rows
    from sqlmaster.engines.source import is_url

    raw = read_rows(path) if path.name.endswith((".jsonl", ".jsonl.gz", ".json")) else []
    if len(raw) != count:
        return [(None, None, None)] * count
    out: list[tuple[str | None, str | None, str | None]] = []
    for row in raw:
        db_path, db_id, source = (_text(row.get(k)) for k in ("db_path", "db_id", "db_source"))
        if db_path is not None and not Path(db_path).is_absolute():
            db_path = str(path.parent / db_path)
        if source is not None and not is_url(source) and not Path(source).is_absolute():
            source = str(path.parent / source)
        out.append((db_path, db_id if db_path else None, source))
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
