"""``sqlmaster data from-db``: sources → profiles → drawn candidates → kept pairs → split → files.

    sqlmaster data from-db shop.sqlite warehouse.duckdb --output-dir data/shop

Each source is opened read-only through the engine layer and given ``time_budget_s`` seconds (sampling and
queries together); a database that yields nothing is skipped with its reason, and only when no source yields a
pair is it an error. The output folder holds ``train.jsonl`` and ``test.jsonl`` (``question``, ``context``,
``answer``, ``db_id``, ``family``, ``level``, and ``db_path`` for an SQLite file or ``db_source`` for a DuckDB file
or a server URL (its password left out), so that ``sqlmaster eval run --dataset DIR/test.jsonl`` scores on the real
database) and ``dataset.json`` (:mod:`.card`).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlmaster.data.fromdb.card import card, fingerprint_source
from sqlmaster.data.fromdb.families import FAMILIES, Candidate, Draw
from sqlmaster.data.fromdb.keep import Keeper
from sqlmaster.data.fromdb.profile import MAX_TABLE_ROWS, DbProfile, read_profile
from sqlmaster.data.fromdb.schema_filter import SCHEMA_CHARS, schema_for
from sqlmaster.data.fromdb.split import split_pairs
from sqlmaster.engines import Session, engine_for, open_database
from sqlmaster.engines.source import ServerURL, is_url, redact
from sqlmaster.errors import ConfigError


@dataclass(frozen=True)
class FromDbSettings:
    draws: int = 400  # candidates drawn per database (each runs once at most)
    seed: int = 1399  # draws, question styles and the split
    test_share: float = 0.2  # share of (skeleton, literals) groups held out as test
    per_skeleton: int = 4  # most pairs kept with one SQL skeleton per database
    schema_chars: int = SCHEMA_CHARS  # schema budget of a prompt, in characters (larger schemas are filtered)
    time_budget_s: float = 60.0  # per database: sampling and queries
    max_table_rows: int = MAX_TABLE_ROWS  # larger tables are never queried


@dataclass
class SourceResult:
    source: str  # redacted
    pairs: list[dict[str, Any]] = field(default_factory=list)
    skipped_tables: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    drawn: int = 0
    problem: str | None = None  # why the whole database gave nothing


def db_id_of(source: str) -> str:
    if is_url(source) and not source.startswith("duckdb://"):
        return ServerURL.parse(source).database or "database"
    return Path(source.removeprefix("duckdb://")).stem


def synthesize_source(source: str, session: Session, settings: FromDbSettings) -> SourceResult:
    """The kept pairs of one open database."""
    deadline = time.monotonic() + settings.time_budget_s
    result = SourceResult(redact(source))
    profile = read_profile(session, result.source, deadline, settings.max_table_rows)
    result.skipped_tables = dict(profile.skipped)
    if not profile.queryable:
        result.problem = "no table with rows to query" if profile.schema.tables else "no tables"
        return result
    keeper = Keeper(session, settings.per_skeleton)
    rng = random.Random(f"{settings.seed}\x00{db_id_of(source)}")
    draw = Draw(profile, rng)
    names = list(FAMILIES)
    for index in range(settings.draws):
        if time.monotonic() > deadline:
            keeper.dropped["time budget spent"] += settings.draws - index
            break
        candidate = FAMILIES[names[index % len(names)]](draw)
        result.drawn += candidate is not None
        if candidate is not None and keeper.offer(candidate):
            result.pairs.append(_pair(candidate, profile, source, settings, rng))
    result.dropped = dict(keeper.dropped)
    if not result.pairs:
        result.problem = "no synthesized query returned a telling result"
    return result


def _pair(
    candidate: Candidate, profile: DbProfile, source: str, settings: FromDbSettings, rng: random.Random
) -> dict[str, Any]:
    pair: dict[str, Any] = {
        "question": candidate.question,
        "context": schema_for(profile, candidate.question, settings.schema_chars, rng, needed=candidate.tables),
        "answer": candidate.sql,
        "db_id": db_id_of(source),
        "family": candidate.family,
        "level": candidate.level,
    }
    if engine_for(source).name == "sqlite":
        pair["db_path"] = str(Path(source).resolve())
    else:  # scored there through the engine layer (evaluate/server_score.py); a URL without its password
        pair["db_source"] = (
            ServerURL.parse(source).without_password() if is_url(source) else str(Path(source).resolve())
        )
    return pair


def from_db(sources: list[str], output_dir: Path, settings: FromDbSettings) -> dict[str, Any]:
    """Synthesize from every source, split, write the folder; returns the card."""
    started = time.monotonic()
    if not sources:
        raise ConfigError("no database given. Pass one or more SQLite/DuckDB files or server URLs")
    sessions: list[Session] = []
    try:
        for source in sources:  # every source opens before any work: a bad one is its error line at once
            sessions.append(open_database(source))
        fingerprints = [{"source": s, **fingerprint_source(s)} for s in sources]
        results = [synthesize_source(s, session, settings) for s, session in zip(sources, sessions, strict=True)]
    finally:
        for session in sessions:
            session.close()
    pairs = [p for r in results for p in r.pairs]
    if not pairs:
        reasons = "; ".join(f"{r.source}: {r.problem}" for r in results)
        raise ConfigError(
            f"no question/SQL pair could be synthesized ({reasons}). Pass a database whose tables hold rows"
        )
    train, test = split_pairs(pairs, settings.seed, settings.test_share)
    info = card(fingerprints, asdict(settings), train, test, time.monotonic() - started)
    info["databases"] = [
        {
            "source": r.source,
            "pairs": len(r.pairs),
            "drawn": r.drawn,
            "dropped": r.dropped,
            "skipped_tables": r.skipped_tables,
            "problem": r.problem,
        }
        for r in results
    ]
    _write(output_dir, train, test, info)
    return info


def _write(output_dir: Path, train: list[dict[str, Any]], test: list[dict[str, Any]], info: dict[str, Any]) -> None:
    from sqlmaster.atomic import write_json, write_text

    output_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
        write_text(output_dir / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_json(output_dir / "dataset.json", info)
