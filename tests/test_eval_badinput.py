"""A corpus of bad inputs for `sqlmaster eval score | report | make-dataset` (issue 12). Each case runs the real
command line and asserts: the exit code (2: fix the input; 1: a transient failure worth retrying), exactly one
`error:` line naming the problem, no traceback, and that nothing in the sandbox changed (earlier results, the
inputs, the databases)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _databases import held_exclusive, make_db, make_hot_journal, make_pending_wal, make_search_db, side_files
from _procs import alive, carrying

from sqlmaster.data.spider import database_path

REPO = Path(__file__).resolve().parent.parent
CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"
GOOD = {"question": "q", "context": CTX, "answer": "SELECT name FROM t", "prediction": "SELECT name FROM t"}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    message: str  # a part of the error line
    code: int = 2
    env: tuple[tuple[str, str], ...] = ()
    hold: str | None = None  # a database that another process holds under BEGIN EXCLUSIVE while the command runs


def _row(**fields: object) -> str:
    return json.dumps({"answer": "SELECT 1", "prediction": "SELECT 1", **fields})


SCORE = ("eval", "score", "-i")
CASES: dict[str, Case] = {
    # eval score: the output
    "output is a file": Case((*SCORE, "{s}/good.jsonl", "-o", "{s}/good.jsonl"), "is a file, not a directory"),
    "output below a file": Case((*SCORE, "{s}/good.jsonl", "-o", "{s}/good.jsonl/out"), "cannot create --output-dir"),
    "earlier results": Case((*SCORE, "{s}/good.jsonl", "-o", "{s}/scored"), "already holds scoring results"),
    # eval score: the input
    "binary input": Case((*SCORE, "{s}/binary.jsonl", "-o", "{s}/new"), "binary.jsonl:1: not UTF-8 text"),
    "input is a directory": Case((*SCORE, "{s}/scored", "-o", "{s}/new"), "is a directory"),
    "input missing": Case((*SCORE, "{s}/nope.jsonl", "-o", "{s}/new"), "input file not found"),
    "empty input": Case((*SCORE, "{s}/empty.jsonl", "-o", "{s}/new"), "no records"),
    "malformed JSON": Case((*SCORE, "{s}/malformed.jsonl", "-o", "{s}/new"), "malformed.jsonl:2: not valid JSON"),
    "JSON array line": Case((*SCORE, "{s}/array.jsonl", "-o", "{s}/new"), "array.jsonl:1: expected a JSON object"),
    "answer not a string": Case((*SCORE, "{s}/badtype.jsonl", "-o", "{s}/new"), "field 'answer' must be"),
    "missing prediction": Case((*SCORE, "{s}/nopred.jsonl", "-o", "{s}/new"), "missing field(s) prediction"),
    "unknown db_id": Case(
        (*SCORE, "{s}/unknown_db.jsonl", "-o", "{s}/new", "--db-dir", "{s}/dbs"), "unknown_db.jsonl:2: unknown db_id"
    ),
    "db_id without --db-dir": Case((*SCORE, "{s}/known_db.jsonl", "-o", "{s}/new"), "but no --db-dir was given"),
    "--db-dir not a folder": Case(
        (*SCORE, "{s}/known_db.jsonl", "-o", "{s}/new", "--db-dir", "{s}/good.jsonl"), "is not a directory"
    ),
    "missing database file": Case((*SCORE, "{s}/missing_db.jsonl", "-o", "{s}/new"), "database file for db_path"),
    "not an SQLite file": Case((*SCORE, "{s}/not_sqlite.jsonl", "-o", "{s}/new"), "is not an SQLite database file"),
    # eval score: the row's real database (issue 20: these were scored as 0% with exit 0, or said "not found")
    "database: WAL changes not checkpointed": Case(
        (*SCORE, "{s}/db_pending.jsonl", "-o", "{s}/new"), "pending.sqlite-wal holds changes not yet checkpointed"
    ),
    "database: header, then garbage": Case(
        (*SCORE, "{s}/db_garbage.jsonl", "-o", "{s}/new"), "garbage.sqlite cannot be read (SQLite: "
    ),
    "database: locked by another process": Case(
        (*SCORE, "{s}/db_locked.jsonl", "-o", "{s}/new"),
        "locked.sqlite cannot be read (another process holds a write lock on it, still after waiting 5 s)",
        hold="{s}/dbfiles/locked.sqlite",
    ),
    "database: hot journal": Case((*SCORE, "{s}/db_hot.jsonl", "-o", "{s}/new"), "holds an interrupted write"),
    "database: a directory": Case(
        (*SCORE, "{s}/db_dir.jsonl", "-o", "{s}/new"), "dir.sqlite cannot be read (it is a directory)"
    ),
    "database: /dev/zero": Case(
        (*SCORE, "{s}/db_zero.jsonl", "-o", "{s}/new"), "database /dev/zero cannot be read (not a regular file"
    ),
    "input field named like a scorer field": Case(
        (*SCORE, "{s}/taken_field.jsonl", "-o", "{s}/new"), "field(s) 'line' would be overwritten"
    ),
    "--workers -3": Case((*SCORE, "{s}/good.jsonl", "-o", "{s}/new", "--workers", "-3"), "--workers must be >= 1"),
    "--workers 0": Case((*SCORE, "{s}/good.jsonl", "-o", "{s}/new", "--workers", "0"), "guarded worker process"),
    "input is /dev/zero": Case((*SCORE, "/dev/zero", "-o", "{s}/new"), "/dev/zero is not a regular file"),
    "unknown convention": Case(
        (*SCORE, "{s}/good.jsonl", "-o", "{s}/new", "--convention", "lenient"), "unknown convention 'lenient'"
    ),
    # eval run: the adapter (issue 20: a damaged run.json was an AttributeError; a missing path "neither a run...")
    "eval run: adapter missing": Case(
        ("eval", "run", "-m", "tiny", "--adapter", "{s}/nope", "-o", "{s}/new"), "--adapter {s}/nope does not exist"
    ),
    "eval run: damaged run.json": Case(
        ("eval", "run", "-m", "tiny", "--adapter", "{s}/run_damaged", "-o", "{s}/new"),
        "run.json is damaged: base_model is a string, not an object",
    ),
    # eval report
    "report: malformed metrics.json": Case(("eval", "report", "{s}/run_bad", "-o", "{s}/report"), "not a readable"),
    "report: binary metrics.json": Case(("eval", "report", "{s}/run_binary", "-o", "{s}/report"), "not a readable"),
    "report: output is a file": Case(("eval", "report", "{s}/run_ok", "-o", "{s}/good.jsonl"), "is a file"),
    "report: run is a file": Case(("eval", "report", "{s}/good.jsonl", "-o", "{s}/report"), "is not a directory"),
    "report: no results": Case(("eval", "report", "{s}/dbs", "-o", "{s}/report"), "no evaluation results"),
    # eval make-dataset: the output is checked before any API call; no network is retryable (exit 1)
    "make-dataset: output is a directory": Case(
        ("eval", "make-dataset", "-o", "{s}/scored", "--n", "1"), "is a directory"
    ),
    "make-dataset: n = 0": Case(("eval", "make-dataset", "-o", "{s}/t.jsonl", "--n", "0"), "--n must be >= 1"),
    "make-dataset: no key": Case(("eval", "make-dataset", "-o", "{s}/t.jsonl", "--n", "1"), "OPENAI_API_KEY"),
    "make-dataset: no network": Case(
        ("eval", "make-dataset", "-o", "{s}/t.jsonl", "--n", "1"),
        "could not be reached",
        code=1,
        env=(("OPENAI_API_KEY", "sk-test-not-a-key"), ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")),
    ),
}


def _sandbox(root: Path) -> None:
    """Inputs, databases, earlier scoring results and evaluated runs that no failed command may touch."""
    (root / "good.jsonl").write_text(json.dumps(GOOD) + "\n")
    (root / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "empty.jsonl").write_text("\n\n")
    (root / "malformed.jsonl").write_text(json.dumps(GOOD) + "\n{'question': 1\n")
    (root / "array.jsonl").write_text("[1, 2]\n")
    (root / "badtype.jsonl").write_text(json.dumps({**GOOD, "answer": 3}) + "\n")
    (root / "nopred.jsonl").write_text(json.dumps({"context": CTX, "answer": "SELECT 1"}) + "\n")
    dbs = root / "dbs"
    (dbs / "concert_singer").mkdir(parents=True)
    shutil.copy(database_path("concert_singer"), dbs / "concert_singer" / "concert_singer.sqlite")
    (root / "notdb.sqlite").write_text("SQLite? no")
    (root / "unknown_db.jsonl").write_text(json.dumps(GOOD) + "\n" + _row(db_id="no_such_db") + "\n")
    (root / "known_db.jsonl").write_text(_row(db_id="concert_singer") + "\n")
    (root / "missing_db.jsonl").write_text(_row(db_path=str(root / "gone.sqlite")) + "\n")
    (root / "not_sqlite.jsonl").write_text(_row(db_path=str(root / "notdb.sqlite")) + "\n")
    _database_sandbox(root)
    (root / "taken_field.jsonl").write_text(json.dumps({**GOOD, "line": "mine"}) + "\n")
    (root / "run_damaged").mkdir()
    (root / "run_damaged" / "run.json").write_text(json.dumps({"status": "completed", "base_model": "tiny"}))
    scored = root / "scored"
    scored.mkdir()
    (scored / "records.jsonl").write_text('{"earlier": true}\n')
    (scored / "metrics.json").write_text('{"earlier": true}\n')
    for name, content in (("run_bad", b"{not json"), ("run_binary", b"\xff\xfe\x00metrics"), ("run_ok", None)):
        dataset = root / name / "eval" / "spider-dev"
        dataset.mkdir(parents=True)
        data = content or json.dumps({"dataset": "spider-dev", "execution_accuracy": 0.5, "n": 2}).encode()
        (dataset / "metrics.json").write_bytes(data)


def _database_sandbox(root: Path) -> None:
    """Real databases in the states that cannot be scored, each named by a one-row input file."""
    folder = root / "dbfiles"
    folder.mkdir()
    make_pending_wal(folder / "pending.sqlite")
    (folder / "garbage.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 32)
    make_db(folder / "locked.sqlite")
    make_hot_journal(folder / "hot.sqlite")
    (folder / "dir.sqlite").mkdir()
    for name in ("pending", "garbage", "locked", "hot", "dir"):
        (root / f"db_{name}.jsonl").write_text(_row(db_path=str(folder / f"{name}.sqlite")) + "\n")
    (root / "db_zero.jsonl").write_text(_row(db_path="/dev/zero") + "\n")


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("badinput")
    _sandbox(root)
    return root


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(sandbox: Path, name: str) -> None:
    case = CASES[name]
    before = _snapshot(sandbox)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    mark = f"badinput-{os.getpid()}-{time.monotonic_ns()}"  # every process the command starts inherits it
    env.update(PYTHONPATH=f"{REPO}:{REPO / 'cli'}", SQLMASTER_TEST_MARK=mark, **dict(case.env))
    args = [a.replace("{s}", str(sandbox)) for a in case.args]
    message = case.message.replace("{s}", str(sandbox))
    held = held_exclusive(Path(case.hold.replace("{s}", str(sandbox)))) if case.hold else contextlib.nullcontext()
    with held:
        proc = subprocess.run(
            [sys.executable, "-m", "sqlmaster.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == case.code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert _snapshot(sandbox) == before  # byte-identical, and no new file: no -wal, -shm or -journal either
    assert side_files(sandbox) == ["hot.sqlite-journal", "pending.sqlite-wal"]  # the sandbox's own, untouched
    assert not [pid for pid in carrying(mark) if alive(pid)], "a process of the command outlived it"


def test_real_databases_score_and_stay_untouched(tmp_path: Path) -> None:
    """The good side of the database cases: a WAL-mode file and FTS5/R-tree tables score in worker processes,
    the databases stay byte-identical with nothing beside them, and no process outlives the command."""
    folder = tmp_path / "dbs"
    folder.mkdir()
    wal, search = make_db(folder / "wal.sqlite", wal=True), make_search_db(folder / "search.sqlite")
    gold = "SELECT name FROM t WHERE age > 30"
    pairs = [
        (wal, gold, "SELECT name FROM t"),
        (wal, gold, "SELECT name FROM t WHERE age >= 40"),
        (search, "SELECT title FROM docs WHERE docs MATCH 'hello'", "SELECT 'a' UNION SELECT 'c'"),
        (search, "SELECT id FROM box WHERE x0 >= 8", "SELECT 2 UNION SELECT 3"),
    ]
    rows = [{"db_path": str(db), "answer": answer, "prediction": pred} for db, answer, pred in pairs]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = _snapshot(folder)
    mark = f"badinput-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}", "SQLMASTER_TEST_MARK": mark}
    args = ["eval", "score", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--workers", "2"]
    proc = subprocess.run([sys.executable, "-m", "sqlmaster.cli", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "execution accuracy 75.0%" in proc.stdout, proc.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert [r["execution_match"] for r in records] == [False, True, True, True]
    assert _snapshot(folder) == before and side_files(folder) == []
    assert not [pid for pid in carrying(mark) if alive(pid)]


def test_read_only_output_directory(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(json.dumps(GOOD) + "\n")
    out = tmp_path / "ro"
    out.mkdir()
    with _read_only(out):
        env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}"}
        proc = subprocess.run(
            [sys.executable, "-m", "sqlmaster.cli", "eval", "score", "-i", str(tmp_path / "in.jsonl"), "-o", str(out)],
            capture_output=True,
            text=True,
            env=env,
        )
    assert proc.returncode == 2 and "cannot write into" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable, also for root (CI runs as root): the immutable attribute binds root too."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("runs as root on a filesystem without the immutable attribute: no directory is read-only to root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_the_corpus_size() -> None:
    """The report counts these: keep the number in one place."""
    assert len(CASES) == 38  # quickstart with a stray OpenAI key now goes on (tests/test_hardening.py, issue 34)
