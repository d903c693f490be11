"""``sqlmaster eval score --db SOURCE``: predictions scored on a real PostgreSQL, MariaDB and DuckDB database through
the engine layer, with the scorer's comparison rules, nothing written to the database, and the URL's password in no
byte printed or written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sqlmaster.engines import open_database
from tests._servers import READER_PASSWORD, Server

REPO = Path(__file__).resolve().parents[1]
# (gold, prediction, match): None = the gold does not run (not scored)
ROWS = [
    ("SELECT name FROM team WHERE budget > 8 ORDER BY name",
     "SELECT name FROM team WHERE budget >= 9 ORDER BY 1", True),
    ("SELECT COUNT(*) FROM player", "SELECT COUNT(id) FROM player", True),
    ("SELECT name, id FROM team", "SELECT id, name FROM team", True),  # column order is free
    ("SELECT AVG(age) FROM player", "SELECT SUM(age) * 1.0 / COUNT(age) FROM player", True),  # Decimal vs float
    ("SELECT name FROM team ORDER BY founded", "SELECT name FROM team ORDER BY founded DESC", False),
    ("SELECT name FROM team", "SELECT nope FROM team", False),
    ("SELECT COUNT(*) FROM player", "DELETE FROM player", False),
    ("SELECT id FROM team", "SELECT a.id FROM team a, team b", False),  # 9 rows: abandoned at the 4th
    ("SELECT missing FROM team", "SELECT 1", None),
    ("SELECT id FROM team", None, False),
]  # fmt: skip


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "predictions.jsonl"
    lines = [json.dumps({"question": f"q{i}", "answer": g, "prediction": p}) for i, (g, p, _) in enumerate(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _score(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}", "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "sqlmaster.cli", "eval", "score", "--input", str(_input(tmp_path)), "--db", source,
            "--output-dir", str(tmp_path / "scored")]  # fmt: skip
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _check(done: subprocess.CompletedProcess[str], tmp_path: Path, engine: str) -> None:
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (tmp_path / "scored" / "records.jsonl").read_text().splitlines()]
    assert [r["question"] for r in records] == [f"q{i}" for i in range(len(ROWS))]
    for record, (_, _, match) in zip(records, ROWS, strict=True):
        assert record["gold_valid"] is (match is not None), record
        if match is not None:
            assert record["execution_match"] is match, record
    assert records[7]["executes"] is True and records[6]["executes"] is False  # row cap vs refused write
    assert records[6]["error"].startswith("denied")
    metrics = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert (metrics["n"], metrics["n_scored"], metrics["gold_invalid"]) == (10, 9, 1)
    assert metrics["execution_accuracy"] == pytest.approx(4 / 9)
    assert metrics["databases"]["engine"] == engine


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_score_on_a_server(request: pytest.FixtureRequest, engine: str, tmp_path: Path) -> None:
    server: Server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mysql_server")
    done = _score(server.url(), tmp_path)
    _check(done, tmp_path, engine)
    # the URL's password: in nothing printed and no file written (records, metrics, anything else)
    assert READER_PASSWORD not in done.stdout + done.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 3 and not [p for p in written if READER_PASSWORD.encode() in p.read_bytes()]
    assert json.loads((tmp_path / "scored" / "metrics.json").read_text())["databases"]["source"] == server.url(
        password="***"
    )
    with open_database(server.url()) as session:
        assert session.run("SELECT COUNT(*) FROM player") == [(4,)]  # the refused DELETE wrote nothing


def test_score_on_a_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE team (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, founded DATE, budget DECIMAL(10, 2));"
        "CREATE TABLE player (id INTEGER PRIMARY KEY, team_id INTEGER, age INTEGER, active BOOLEAN);"
        "INSERT INTO team VALUES (1, 'Ajax', '1900-03-18', 12.50), (2, 'PSV', '1913-08-31', 9.00), "
        "(3, 'Feyenoord', '1908-07-19', 7.25);"
        "INSERT INTO player VALUES (1, 1, 20, true), (2, 2, 31, false), (3, 1, 25, true), (4, 3, 19, NULL);"
    )
    conn.close()
    before = path.read_bytes()
    _check(_score(str(path), tmp_path), tmp_path, "duckdb")
    assert path.read_bytes() == before


def test_db_refuses_the_file_scorer_flags(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}"}
    argv = [sys.executable, "-m", "sqlmaster.cli", "eval", "score", "--input", str(_input(tmp_path)), "--db",
            "postgresql://u:Pw-x1@127.0.0.1:1/shop", "--db-dir", str(tmp_path), "-o", str(tmp_path / "o")]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: --db scores on one database")
    argv = [*argv[:-4], "-o", str(tmp_path / "o")]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cannot connect to postgresql://u:***@127.0.0.1:1/shop" in done.stderr
    assert "Pw-x1" not in done.stdout + done.stderr and "Traceback" not in done.stderr
