"""``eval/<dataset>/predictions.partial.jsonl``: generated batches on disk as they finish, so ``eval run`` resumes.

Generation is the costly part of an evaluation (an hour for Spider dev on a CPU). Each finished batch is appended
to the partial file as one line and fsynced; killed (SIGKILL, a pod's eviction) and run again with the same
command, ``eval run`` reads the batches back and generates only the rest. The batches are the same either way
(generate.py), so the records equal an uninterrupted run's. The file is removed once records.jsonl and
metrics.json are written.

The first line is a fingerprint of what produces the predictions (dataset rows and prompts, model, adapter and
its weight files' sizes and times, template, backend, decoding settings, dtype); a resume under another one is
refused with one error line, before the model loads. A last line cut short by the kill is dropped.

    partial = PartialPredictions(files.partial_predictions, fingerprint(dataset, target, recipe, backend))
    partial.check()                         # ConfigError when made with other settings
    done = partial.load()                   # {index: GenerationRecord}
    with partial.appending() as save:       # save(records) appends one batch, fsynced
        generator.generate(prompts, skip=set(done), on_batch=save)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.generate import GenerationRecord, GenerationSettings
from sqlmaster.prompt import render_prompt

if TYPE_CHECKING:
    from sqlmaster.config import Recipe
    from sqlmaster.evaluate.datasets import EvalDataset
    from sqlmaster.evaluate.runner import Target

log = logging.getLogger(__name__)

FORMAT = 1  # the partial file's layout; another one is refused like another fingerprint
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
WEIGHT_DIRS = (".", "adapter", "model", "base")  # where a run directory (or a bare adapter/model dir) keeps weights


def fingerprint(dataset: EvalDataset, target: Target, recipe: Recipe, backend: str) -> dict[str, Any]:
    """What the predictions depend on; two runs with equal fingerprints generate the same predictions."""
    rows = [[ex.to_dict(), render_prompt(target.template, ex.question, ex.context)] for ex in dataset.examples]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    return {
        "format": FORMAT,
        "dataset": dataset.name,
        "rows": len(rows),
        "rows_sha256": digest,
        "model": target.model,
        "adapter": str(target.adapter.resolve()) if target.adapter is not None else None,
        "run_id": (target.run_info or {}).get("run_id"),
        "weights": _weight_files(target.adapter),
        "template": target.template.name,
        "backend": backend,
        "generation": asdict(GenerationSettings.from_config(recipe.evaluation)),
        "dtype": recipe.model.dtype,
        "revision": recipe.model.revision,
    }


def _weight_files(directory: Path | None) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of the weight files in ``directory`` (retraining changes them)."""
    if directory is None:
        return {}
    files: dict[str, list[int]] = {}
    for sub in WEIGHT_DIRS:
        folder = directory / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in WEIGHT_SUFFIXES and path.is_file():
                stat = path.stat()
                files[str(path.relative_to(directory))] = [stat.st_size, stat.st_mtime_ns]
    return files


class PartialPredictions:
    """The partial file of one dataset's evaluation; see the module docstring."""

    def __init__(self, path: Path, print_: dict[str, Any]) -> None:
        self.path = path
        self.fingerprint = json.loads(json.dumps(print_, default=str))  # as it reads back from the file
        self.earlier_wall_s = 0.0  # generation time spent on the loaded batches by earlier runs

    def check(self) -> None:
        """Refuse (ConfigError) a partial file made with another fingerprint; a missing one is fine."""
        if not self.path.is_file():
            return
        stored = self._header()
        if stored == self.fingerprint:
            return
        differ = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
        raise ConfigError(
            f"{self.path} holds predictions of an interrupted evaluation made with other settings "
            f"({', '.join(differ) or 'an unreadable header'} differ). Run the same command again to resume it, "
            f"or delete the file to start over"
        )

    def _header(self) -> dict[str, Any]:
        with self.path.open(encoding="utf-8") as handle:
            first = handle.readline()
        try:
            header = json.loads(first)
        except ValueError:
            return {}
        return header.get("fingerprint") or {} if isinstance(header, dict) else {}

    def load(self) -> dict[int, GenerationRecord]:
        """The records of every complete batch on disk (none without a file); a torn last line is cut off."""
        done: dict[int, GenerationRecord] = {}
        if not self.path.is_file():
            return done
        good = 0  # bytes of complete lines
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle):
                try:
                    line = json.loads(raw) if raw.endswith(b"\n") else None
                except ValueError:
                    line = None
                if line is None:
                    break
                if number > 0:
                    done.update((r["index"], GenerationRecord(**r)) for r in line["batch"])
                    self.earlier_wall_s += float(line.get("wall_s") or 0.0)
                good += len(raw)
        if good < self.path.stat().st_size:
            log.warning("%s: dropping a last batch cut short by the kill", self.path)
            os.truncate(self.path, good)
        return done

    @contextmanager
    def appending(self) -> Iterator[Callable[[list[GenerationRecord]], None]]:
        """``save(records)``: one line per batch, flushed and fsynced before generation goes on."""
        from sqlmaster.evaluate.score import SAFE_ENCODING_ERRORS, json_line

        new = not self.path.is_file() or self.path.stat().st_size == 0
        last = time.perf_counter()
        with self.path.open("a", encoding="utf-8", errors=SAFE_ENCODING_ERRORS) as handle:

            def write(line: dict[str, Any]) -> None:
                handle.write(json_line(line) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

            def save(records: list[GenerationRecord]) -> None:
                nonlocal last
                now = time.perf_counter()
                write({"batch": [r.to_dict() for r in records], "wall_s": now - last})
                last = now

            if new:
                write({"fingerprint": self.fingerprint})
            yield save

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
