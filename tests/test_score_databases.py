"""Real SQLite files as a row's database (issue 20): each is checked once before scoring and read read-only and
immutable, so a WAL-mode file scores, no ``-wal``/``-shm``/``-journal`` file ever appears beside it, and a file
that cannot be read (damaged, locked, a directory, a device, un-checkpointed WAL changes) is one error, never a
run of misses; FTS5 and R-tree tables score like any other."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _databases import held_exclusive, make_db, make_hot_journal, make_pending_wal, make_search_db, side_files

from sqlmaster.evaluate import sandbox
from sqlmaster.evaluate.execution import DatabaseCache
from sqlmaster.evaluate.score import DatabaseResolver, ScoreInputError, score_file

GOLD = "SELECT name FROM t WHERE age > 30"


def _score(tmp_path: Path, rows: list[dict[str, Any]], workers: int = 0) -> tuple[dict[str, Any], list[Any]]:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    metrics = score_file(path, out, workers=workers, overwrite=True)
    return metrics, [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def _row(db: Path, answer: str = GOLD, prediction: str = GOLD) -> dict[str, Any]:
    return {"db_path": str(db), "answer": answer, "prediction": prediction}


@pytest.fixture
def dbs(tmp_path: Path) -> Path:
    folder = tmp_path / "dbs"
    folder.mkdir()
    return folder


def test_a_wal_mode_file_scores_in_workers_and_leaves_no_side_files(tmp_path: Path, dbs: Path) -> None:
    db = make_db(dbs / "wal.sqlite", wal=True)
    before = db.read_bytes()
    assert before[18:20] == b"\x02\x02"  # WAL mode in the header, with no -wal file beside it
    metrics, records = _score(tmp_path, [_row(db), _row(db, prediction="SELECT name FROM t")], workers=1)
    assert [r["execution_match"] for r in records] == [True, False] and metrics["worker_failures"] == 0
    assert side_files(dbs) == [] and db.read_bytes() == before


def test_un_checkpointed_wal_changes_are_refused_not_scored_as_empty(tmp_path: Path, dbs: Path) -> None:
    db = make_pending_wal(dbs / "pending.sqlite")
    with pytest.raises(ScoreInputError, match=r"in.jsonl:1: database .*pending.sqlite cannot be read \(it is in WAL"):
        _score(tmp_path, [_row(db)])
    assert side_files(dbs) == ["pending.sqlite-wal"]  # the user's own log, untouched; no -shm


def test_an_empty_wal_file_is_no_obstacle(tmp_path: Path, dbs: Path) -> None:
    db = make_db(dbs / "wal.sqlite", wal=True)
    Path(f"{db}-wal").write_bytes(b"")  # what PRAGMA wal_checkpoint(TRUNCATE) leaves
    _, records = _score(tmp_path, [_row(db)])
    assert records[0]["execution_match"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "it is a directory"),
        (lambda p: p.write_bytes(sandbox.SQLITE_HEADER + os.urandom(8192)), "SQLite: "),
        (lambda p: p.write_text("SQLite? no"), "it is not an SQLite database file"),
    ],
    ids=["directory", "header then garbage", "no header"],
)
def test_unreadable_files_are_one_error(tmp_path: Path, dbs: Path, make: Any, reason: str) -> None:
    db = dbs / "bad.sqlite"
    make(db)
    with pytest.raises(ScoreInputError, match=rf"in.jsonl:1: database .*bad.sqlite cannot be read \({reason}"):
        _score(tmp_path, [_row(db)])
    assert not (tmp_path / "out").exists() and side_files(dbs) == []


def test_damaged_pages_are_found_before_scoring(tmp_path: Path, dbs: Path) -> None:
    db = make_db(dbs / "damaged.sqlite")
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(f"n{i}" * 50, i) for i in range(2000)])
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    data[4096 * 3 : 4096 * 3 + 64] = b"\xff" * 64  # a b-tree page's header, past the schema
    db.write_bytes(bytes(data))
    with pytest.raises(ScoreInputError, match=r"cannot be read \((damaged|SQLite): .*Restore it"):
        _score(tmp_path, [_row(db)])


def test_a_device_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ScoreInputError, match=r"database /dev/zero cannot be read \(not a regular file"):
        _score(tmp_path, [_row(Path("/dev/zero"))])


def test_a_directory_named_by_db_id_is_named_a_directory(tmp_path: Path, dbs: Path) -> None:
    (dbs / "x" / "x.sqlite").mkdir(parents=True)
    resolver = DatabaseResolver(dbs)
    with pytest.raises(ScoreInputError, match=r"database .*x.sqlite \(db_id 'x'\) cannot be read \(it is a directory"):
        resolver.resolve({"db_id": "x"}, "in.jsonl:1")


@pytest.fixture
def locked(dbs: Path) -> Iterator[Path]:
    """A rollback-journal database that another process holds under BEGIN EXCLUSIVE."""
    db = make_db(dbs / "locked.sqlite")
    with held_exclusive(db):
        yield db


def test_a_locked_database_is_refused_after_a_bounded_wait(
    tmp_path: Path, locked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "LOCK_WAIT_S", 0.5)
    start = time.monotonic()
    with pytest.raises(ScoreInputError, match=r"another process holds a write lock on it, still after waiting 0.5 s"):
        _score(tmp_path, [_row(locked)] * 3)
    assert time.monotonic() - start < 10  # once per database, not once per row
    assert side_files(locked.parent) == []


def test_a_hot_journal_is_refused(tmp_path: Path, dbs: Path) -> None:
    """A writer killed mid-transaction leaves a hot journal: the file alone is not the database's content."""
    db = make_hot_journal(dbs / "hot.sqlite")
    assert side_files(dbs) == ["hot.sqlite-journal"]
    with pytest.raises(ScoreInputError, match=r"hot.sqlite-journal holds an interrupted write"):
        _score(tmp_path, [_row(db)])
    assert side_files(dbs) == ["hot.sqlite-journal"]


def test_each_database_is_checked_once(tmp_path: Path, dbs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlmaster.evaluate.score as score

    db = make_db(dbs / "plain.sqlite")
    calls: list[Path] = []
    check = score.database_file_problem
    monkeypatch.setattr(score, "database_file_problem", lambda p: calls.append(p) or check(p))
    _, records = _score(tmp_path, [_row(db)] * 50)
    assert len(records) == 50 and len(calls) == 1


def test_fts5_and_rtree_golds_are_scored(tmp_path: Path, dbs: Path) -> None:
    db = make_search_db(dbs / "search.sqlite")
    rows = [
        _row(db, "SELECT title FROM docs WHERE docs MATCH 'hello'", "SELECT title FROM docs WHERE body LIKE 'hello%'"),
        _row(db, "SELECT title FROM docs WHERE docs MATCH 'hello'", "SELECT title FROM docs WHERE docs MATCH 'bye*'"),
        _row(db, "SELECT title FROM docs WHERE docs MATCH 'hello' ORDER BY rank", "SELECT title FROM docs"),
        _row(db, "SELECT highlight(docs, 1, '[', ']') FROM docs WHERE docs MATCH 'world'", "SELECT 'hello [world]'"),
        _row(db, "SELECT id FROM box WHERE x0 >= 8", "SELECT id FROM box WHERE x1 > 8"),
        _row(db, "SELECT id FROM box WHERE x0 >= 8", "SELECT id FROM box WHERE x1 > 4"),
        _row(db, "SELECT id FROM box WHERE x0 >= 8", "INSERT INTO docs(docs) VALUES ('delete-all')"),
        _row(db, "SELECT id FROM box WHERE x0 >= 8", "DELETE FROM box"),
    ]
    for workers in (0, 1):
        metrics, records = _score(tmp_path, rows, workers=workers)
        assert all(r["gold_valid"] for r in records), [r["error"] for r in records]
        assert [r["execution_match"] for r in records] == [True, False, False, True, True, False, False, False]
        assert [("denied" in (r["error"] or "")) for r in records[-2:]] == [True, True]
        assert metrics["worker_failures"] == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM docs").fetchone() == (3,)  # the writes were refused
    assert conn.execute("SELECT count(*) FROM box").fetchone() == (3,)
    conn.close()


def test_a_cached_database_reads_virtual_tables_and_denies_creating_them(tmp_path: Path, dbs: Path) -> None:
    db = make_search_db(dbs / "search.sqlite")
    cache = DatabaseCache()
    try:
        conn = cache.get(str(db), sandbox.DEFAULT_LIMITS)  # connecting its tables happens once, here
        assert sandbox.run_query(conn, "SELECT count(*) FROM docs") == [(3,)]
        with pytest.raises(sandbox.QueryError, match="denied"):
            sandbox.run_query(conn, "CREATE VIRTUAL TABLE v USING fts5(x)")
    finally:
        cache.close()


def test_large_files_are_queried_in_place_the_same_way(dbs: Path) -> None:
    """Files past IN_MEMORY_MAX_BYTES are not copied but opened in place: also immutable, virtual tables too."""
    wal, search = make_db(dbs / "wal.sqlite", wal=True), make_search_db(dbs / "search.sqlite")
    for db, sql, rows in ((wal, "SELECT count(*) FROM t", [(3,)]), (search, "SELECT count(*) FROM box", [(3,)])):
        conn = sandbox.connection_from_file_readonly(db)
        try:
            assert sandbox.run_query(conn, sql) == rows
            with pytest.raises(sandbox.QueryError, match="denied"):
                sandbox.run_query(conn, "DELETE FROM box" if db == search else "DELETE FROM t")
        finally:
            conn.close()
    assert side_files(dbs) == []
