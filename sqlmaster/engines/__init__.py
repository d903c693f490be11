"""The engine layer: how each database SQLMaster reads is opened and queried — SQLite, DuckDB, PostgreSQL, MySQL.

Everything that touches a user's database (the scorer's real-database path, ``data from-db``, value linking) goes
through here, so that every engine is read-only, time-limited and size-capped the same way, and returns values that
compare the same way.

Module map (module | what it holds | who calls it):

| module | what it holds | who calls it |
|---|---|---|
| `base` | the contract: `Engine` (its quotes, answer words), `Session`, schema types, capped fetching | all |
| `values` | values normalised across engines (Decimal, bool, dates, bytes) before any comparison | every engine |
| `source` | what a SOURCE string names (file or URL) and how it is shown with its password redacted | engines, cli |
| `sqlite` | SQLite files, read-only and immutable, through the scorer's sandbox | registry below |
| `duckdb` | DuckDB files, read-only, external access and extensions off at connect time | registry below |
| `postgresql` | PostgreSQL servers: read-only sessions and transactions, server timeout, cursors | registry below |
| `mysql` | MySQL/MariaDB servers: read-only transactions, server time limit, KILL QUERY watchdog | registry below |
| `statement` | the one-read-statement check run before SQL reaches a server | postgresql, mysql |
| `roles` | the SQL of a SELECT-only login on each server (`sqlmaster db create-readonly-role`) | cli, tests |
| `transpile` | SQLite-flavoured SQL in another dialect, meaning what SQLite means | engine scoring, data.dialect |
| `keywords` | the words each engine refuses as a bare name, measured on the servers | transpile |
| `scratch` | an example's synthesized databases rebuilt on another engine (the tool's own) | engine scoring |
| `scratch_servers` | the same on a PostgreSQL or MySQL server named by `SQLMASTER_SCRATCH_<ENGINE>` | scratch |

The path of one query: ``open_database(source)`` → ``engine_for(source)`` picks the engine by URL scheme, file suffix
or file header → ``Engine.open_readonly`` → ``Session.run(sql, limits)`` (one statement, cancelled at the limit,
rows capped, values normalised by ``values.normalise_row``) → rows.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sqlmaster.engines.base import DEFAULT_LIMITS, DatabaseUnavailable, Engine, Limits, Session
from sqlmaster.engines.source import is_url, redact

# name -> "module:Class". Imported on first use, so a missing driver (psycopg, pymysql) only matters to its engine.
_ENGINE_CLASSES = {
    "sqlite": "sqlmaster.engines.sqlite:SQLiteEngine",
    "duckdb": "sqlmaster.engines.duckdb:DuckDBEngine",
    "postgresql": "sqlmaster.engines.postgresql:PostgreSQLEngine",
    "mysql": "sqlmaster.engines.mysql:MySQLEngine",
}
ENGINE_NAMES = tuple(_ENGINE_CLASSES)
_SQLITE_HEADER = b"SQLite format 3\x00"
_DUCKDB_MAGIC = b"DUCK"  # at byte 8 of a DuckDB file


def engine_named(name: str) -> Engine:
    """The engine called ``name`` (one of :data:`ENGINE_NAMES`)."""
    spec = _ENGINE_CLASSES.get(name.lower())
    if spec is None:
        from sqlmaster.errors import ConfigError

        raise ConfigError(f"unknown engine {name!r}. Choose one of: {', '.join(ENGINE_NAMES)}")
    module, cls = spec.split(":")
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine


def engine_for(source: str) -> Engine:
    """The engine a SOURCE names: by URL scheme, else by file suffix, else by the file's first bytes."""
    engines = [engine_named(n) for n in ENGINE_NAMES]
    if is_url(source):
        scheme = source.split("://", 1)[0].lower().split("+", 1)[0]
        for engine in engines:
            if scheme in engine.url_schemes:
                return engine
        schemes = sorted(s for e in engines for s in e.url_schemes)
        raise DatabaseUnavailable(f"unknown database URL scheme in {redact(source)}. Use one of: {', '.join(schemes)}")
    suffix = Path(source).suffix.lower()
    for engine in engines:
        if suffix in engine.file_suffixes:
            return engine
    return engine_named(_sniff(Path(source)))


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot read database file {path}: {exc.strerror}. Pass an existing SQLite or DuckDB file, or a URL"
        ) from None
    if head.startswith(_SQLITE_HEADER):
        return "sqlite"
    if head[8:12] == _DUCKDB_MAGIC:
        return "duckdb"
    raise DatabaseUnavailable(
        f"{path} is neither an SQLite nor a DuckDB database file. Pass one of those, or a postgresql:// or mysql:// URL"
    )


def open_database(source: str, limits: Limits = DEFAULT_LIMITS) -> Session:
    """Open ``source`` read-only with the engine it names."""
    return engine_for(source).open_readonly(source, limits)


__all__ = ["ENGINE_NAMES", "DatabaseUnavailable", "Engine", "Session", "engine_for", "engine_named", "open_database"]
