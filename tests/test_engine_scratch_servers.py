"""Scratch databases on PostgreSQL and MySQL/MariaDB servers: only queries reach them, and the engine's verdicts
equal SQLite's. The server tests use ``SQLMASTER_SCRATCH_POSTGRESQL`` / ``SQLMASTER_SCRATCH_MYSQL`` where they name
a server, and otherwise the servers tests/_servers.py starts (as their owner login: scratch databases are created and
dropped)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _scorer_data import seeded_subset

from sqlmaster.engines.base import DEFAULT_LIMITS, QueryError
from sqlmaster.engines.scratch import scratch_host
from sqlmaster.engines.scratch_servers import URL_ENV, check_read_only
from sqlmaster.evaluate.mutants import mutants
from sqlmaster.evaluate.score import ScoreSettings, score_file


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("DELETE FROM t", "denied"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "denied"),
        ("DROP TABLE t", "denied"),
        ("SELECT a INTO newt FROM t", "denied"),
        ("SELECT pg_read_file('/etc/passwd')", "denied"),
        ("SELECT set_config('search_path', 'x', false)", "denied"),
        ("SELECT LOAD_FILE('/etc/passwd')", "denied"),
        ("SELECT pg_sleep(100)", "denied"),
        ("SELECT 1; SELECT 2", "multiple_statements"),
        ("", "empty"),
    ],
)
def test_only_one_query_reaches_a_server(sql: str, kind: str) -> None:
    with pytest.raises(QueryError) as info:
        check_read_only(sql, "postgres", DEFAULT_LIMITS)
    assert info.value.kind == kind


def test_queries_pass() -> None:
    check_read_only('SELECT "a" FROM "t" UNION SELECT 1', "postgres", DEFAULT_LIMITS)
    check_read_only("WITH x AS (SELECT 1) SELECT * FROM x", "mysql", DEFAULT_LIMITS)


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_server_verdicts_equal_sqlite_and_nothing_is_left_behind(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not os.environ.get(URL_ENV[engine]):
        server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mysql_server")
        monkeypatch.setenv(URL_ENV[engine], server.owner_url)
    rows = []
    for ex in seeded_subset(8, seed=11):
        rows.append({**ex, "prediction": ex["answer"]})
        rows += [{**ex, "prediction": m.sql} for m in mutants(ex["answer"], per_kind=1)[:3]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    score_file(source, tmp_path / "sqlite", workers=0)
    # two workers: they end by os._exit and leave their last example behind on MySQL; a new host sweeps it
    score_file(source, tmp_path / engine, workers=2, settings=ScoreSettings(engine=engine))
    read = lambda d: [json.loads(x) for x in (tmp_path / d / "records.jsonl").read_text().splitlines()]  # noqa: E731
    pairs = [(a, b) for a, b in zip(read("sqlite"), read(engine), strict=True) if b["gold_valid"]]
    assert len(pairs) >= len(rows) - 4
    assert [a["execution_match"] for a, _ in pairs] == [b["execution_match"] for _, b in pairs]
    host = scratch_host(engine)
    try:
        conn = host._conn  # the tool's own namespaces are all gone
        with conn.cursor() as cur:
            if engine == "postgresql":
                cur.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'sx\\_%'")
            else:
                cur.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'sx\\\\_%'")
            assert cur.fetchone()[0] == 0
    finally:
        host.close()
