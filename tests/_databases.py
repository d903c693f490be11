"""Small real SQLite files in the states a user's database can be in (WAL mode, un-checkpointed log, hot journal,
locked by another process, FTS5/R-tree tables), for the scorer's database tests and the bad-input corpus."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROWS = [("ann", 20), ("bob", 40), ("cid", 50)]  # table t (name, age)


def make_db(path: Path, wal: bool = False) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (name TEXT, age INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", ROWS)
    conn.commit()
    conn.close()
    return path


def make_pending_wal(path: Path) -> Path:
    """A WAL-mode file whose table lives only in its -wal (a copy taken while a writer had it open)."""
    scratch = path.with_name(f"scratch-{path.name}")
    conn = sqlite3.connect(scratch)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (name TEXT, age INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", ROWS)
    conn.commit()
    shutil.copy(scratch, path)
    shutil.copy(f"{scratch}-wal", f"{path}-wal")
    conn.close()
    scratch.unlink()
    return path


def make_hot_journal(path: Path) -> Path:
    """A rollback-journal file whose writer was killed mid-transaction: pages spilled, a hot -journal beside it."""
    make_db(path)
    code = "import os, sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    code += "c.execute('PRAGMA cache_size = 1')\nc.execute('BEGIN')\n"
    code += "c.executemany('INSERT INTO t VALUES (?, 1)', [(os.urandom(500),) for _ in range(2000)])\nos._exit(9)\n"
    subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert Path(f"{path}-journal").is_file()
    return path


def make_search_db(path: Path) -> Path:
    """FTS5 and R-tree virtual tables, as SQLite's own CLI would create them."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE VIRTUAL TABLE docs USING fts5(title, body)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)", [("a", "hello world"), ("b", "goodbye"), ("c", "hello again")])
    conn.execute("CREATE VIRTUAL TABLE box USING rtree(id, x0, x1)")
    conn.executemany("INSERT INTO box VALUES (?, ?, ?)", [(1, 0, 5), (2, 10, 20), (3, 8, 9)])
    conn.commit()
    conn.close()
    return path


def side_files(folder: Path) -> list[str]:
    """SQLite's side files in ``folder``: a read-only scorer must never create one."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(("-wal", "-shm", "-journal")))


@contextmanager
def held_exclusive(path: Path) -> Iterator[None]:
    """Another process holds ``path`` under BEGIN EXCLUSIVE (a rollback-journal file: readers are locked out)."""
    code = "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    code += "c.execute('BEGIN EXCLUSIVE')\nprint('held', flush=True)\ntime.sleep(300)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
