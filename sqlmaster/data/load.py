"""Load examples from the shipped sample, a local file, or the Hugging Face hub.

Every row must have non-empty ``question``, ``context`` and ``answer`` strings; a row that does not is an
error naming its position and the fix, because silently dropping rows changes what a run trains on.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from sqlmaster.data.examples import Example
from sqlmaster.errors import ConfigError

SHIPPED = "shipped"
SHIPPED_FILE = "sql-create-context-sample.jsonl.gz"
HUB_DATASET = "b-mc2/sql-create-context"
FIELDS = ("question", "context", "answer")
FROM_DB_TRAIN = "train.jsonl"  # a `sqlmaster data from-db` folder's training pairs (its test.jsonl is for eval run)


def load_examples(source: str = SHIPPED) -> list[Example]:
    """Load every example of ``source``: "shipped", a .json/.jsonl(.gz)/.parquet path, a ``data from-db`` folder
    (its train.jsonl), or a hub dataset id."""
    if source == SHIPPED:
        return _validate(_read_jsonl(shipped_path()), "the shipped sample")
    path = Path(source).expanduser()
    if path.is_dir():
        return _validate(_read_jsonl(_from_db_train(path)), str(path / FROM_DB_TRAIN))
    if path.exists() or source.startswith((".", "/", "~")) or path.suffix in (".json", ".jsonl", ".parquet", ".gz"):
        return _validate(_read_local(path), str(path))
    if source.count("/") == 1:
        return _validate(_read_hub(source), f"hub dataset {source}")
    raise ConfigError(
        f"data source {source!r} is neither 'shipped', an existing file, nor a hub id (org/name). "
        f"Use data.source=shipped, a path to .json/.jsonl/.parquet, or {HUB_DATASET}"
    )


def read_rows(path: Path) -> list[Mapping[str, Any]]:
    """The raw rows of a local data file, every field kept (an evaluation file's ``db_path``, ``db_id``)."""
    return [row for row in _read_local(path) if isinstance(row, Mapping)]


def _from_db_train(folder: Path) -> Path:
    train = folder / FROM_DB_TRAIN
    if not train.is_file():
        raise ConfigError(
            f"data folder {folder} holds no {FROM_DB_TRAIN}. Point data.source at a folder written by "
            "`sqlmaster data from-db SOURCE --output-dir DIR`, or at a data file"
        )
    return train


def shipped_path() -> Path:
    return Path(str(resources.files("sqlmaster.data").joinpath("shipped", SHIPPED_FILE)))


def _read_local(path: Path) -> list[Mapping[str, Any]]:
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        what = "is a symbolic link that loops or leads nowhere" if path.is_symlink() and not path.exists() else what
        raise ConfigError(f"data file {path} {what}; a data file is .json, .jsonl or .parquet. Check data.source")
    name = path.name.removesuffix(".gz")
    try:
        if name.endswith(".jsonl"):
            return _read_jsonl(path)
        if name.endswith(".json"):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict) and "data" in data:
                data = data["data"]
            if not isinstance(data, list):
                raise ConfigError(f"{path} must hold a JSON list of objects with {', '.join(FIELDS)}")
            return data
        if name.endswith(".parquet"):
            return _read_parquet(path)
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # EOFError: a truncated .gz
        raise ConfigError(f"cannot read data file {path}: {exc}. Check data.source") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    raise ConfigError(f"unsupported data file {path}: use .json, .jsonl, .jsonl.gz or .parquet")


def _read_parquet(path: Path) -> list[Mapping[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, ValueError) as exc:  # ArrowInvalid: not a parquet file, or a damaged one
        raise ConfigError(f"{path} is not a readable parquet file ({exc}). Check data.source") from None


def _read_jsonl(path: Path) -> list[Mapping[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[Mapping[str, Any]] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} line {lineno} is not valid JSON ({exc.msg}). Fix or remove it") from None
    return rows


def _read_hub(dataset_id: str) -> list[Mapping[str, Any]]:
    from datasets import load_dataset  # heavy; only when the hub is really used

    from sqlmaster.hub import with_hub_retries

    def config_error(exc: Exception) -> ConfigError:
        return ConfigError(
            f"cannot load hub dataset {dataset_id}: {' '.join(str(exc).split())[:300]}. Check data.source; "
            "without network access use data.source=shipped or a local file"
        )

    return with_hub_retries(
        f"dataset {dataset_id}", lambda: list(load_dataset(dataset_id, split="train")), config_error=config_error
    )


def _validate(rows: Iterable[Mapping[str, Any]], where: str) -> list[Example]:
    examples: list[Example] = []
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ConfigError(f"row {index} of {where} is not an object with {', '.join(FIELDS)}")
        bad = [f for f in FIELDS if not isinstance(row.get(f), str) or not row[f].strip()]
        if bad:
            raise ConfigError(
                f"row {index} of {where} has missing or empty field(s) {', '.join(bad)}. "
                f"Every row needs non-empty strings {', '.join(FIELDS)}; fix or remove the row"
            )
        examples.append(Example(row["question"].strip(), row["context"].strip(), row["answer"].strip()))
    if not examples:
        raise ConfigError(f"{where} holds no examples")
    return examples
