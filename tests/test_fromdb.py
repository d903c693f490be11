"""`sqlmaster data from-db` (issue 30): pairs synthesized from a database's own schema and values, each SQL run on
it; the split's guard, the card, reproducibility, SQLite and DuckDB alike, and the database never written to."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import duckdb
import pytest

from sqlmaster.data.fromdb import FromDbSettings, from_db
from sqlmaster.data.fromdb.keep import literals, skeleton
from sqlmaster.data.fromdb.split import split_key
from sqlmaster.data.fromdb.words import column_phrase, table_phrase
from sqlmaster.data.spider import database_path, dev_questions
from sqlmaster.engines import open_database

FAST = FromDbSettings(draws=160, time_budget_s=20.0)


def _stamp(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def spider_copy(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("spider")
    return [Path(shutil.copy(database_path(db), folder / f"{db}.sqlite")) for db in ("concert_singer", "car_1")]


@pytest.fixture(scope="module")
def built(spider_copy: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("out")
    before = [_stamp(p) for p in spider_copy]
    info = from_db([str(p) for p in spider_copy], out, FAST)
    assert [_stamp(p) for p in spider_copy] == before  # never written, not even touched
    return out, info


def test_words_of_names() -> None:
    assert table_phrase("singer_in_concert") == "singers in concerts"
    assert column_phrase("Song_release_year") == "song release year"
    assert column_phrase("HomeTown") == "home town"
    assert table_phrase("country") == "countries" and table_phrase("people") == "people"
    assert table_phrase("AREA_CODE_STATE") == "area code states" and column_phrase("GDP_per_capita") == "GDP per capita"


def test_pairs_run_on_their_database_and_cover_families_and_levels(built: tuple[Path, dict[str, object]]) -> None:
    out, info = built
    train, test = _rows(out / "train.jsonl"), _rows(out / "test.jsonl")
    assert len(train) > 100 and len(test) > 15
    counts = info["counts"]
    assert isinstance(counts, dict)
    assert set(counts["per_family"]) == {"filter", "count", "aggregate", "order", "group", "join", "subquery", "set_op"}
    assert set(counts["per_level"]) == {"1", "2", "3"}
    for row in [*train, *test][::7]:
        assert {"question", "context", "answer", "db_id", "db_path", "family", "level"} <= set(row)
        assert Path(str(row["db_path"])).is_absolute()
        with open_database(str(row["db_path"])) as session:
            rows = session.run(str(row["answer"]))
        assert rows and any(v is not None for r in rows for v in r)
        assert str(row["context"]).startswith("CREATE TABLE")
    joins = [r for r in train if r["family"] == "join"]
    assert joins and all(" JOIN " in str(r["answer"]) for r in joins)


def test_split_guard_and_no_spider_question(built: tuple[Path, dict[str, object]]) -> None:
    out, _ = built
    train, test = _rows(out / "train.jsonl"), _rows(out / "test.jsonl")
    train_keys = {split_key(str(r["answer"])) for r in train}
    assert not [r for r in test if split_key(str(r["answer"])) in train_keys]
    # skeletons may be shared (other literals), which is what the guard allows
    assert {skeleton(str(r["answer"])) for r in test} & {skeleton(str(r["answer"])) for r in train}
    # Templates come from the SQL, never from Spider dev; the one that can coincide with a dev question is the
    # bare count ("How many continents are there?"), and rarely.
    same = [r for r in [*train, *test] if str(r["question"]) in dev_questions()]
    assert len(same) <= 0.01 * len(train + test) and all(r["answer"].startswith("SELECT count(*) FROM") for r in same)
    sqls = [str(r["answer"]) for r in [*train, *test]]
    assert len(sqls) == len(set(sqls))


def test_card_fingerprints_sources(built: tuple[Path, dict[str, object]], spider_copy: list[Path]) -> None:
    out, _ = built
    card = json.loads((out / "dataset.json").read_text())
    first = card["sources"][0]
    assert first["sha256"] == hashlib.sha256(spider_copy[0].read_bytes()).hexdigest()
    assert first["size"] == spider_copy[0].stat().st_size
    assert card["splits"]["train"]["pairs"] + card["splits"]["test"]["pairs"] == card["counts"]["pairs"]
    assert card["seconds"] > 0 and card["settings"]["seed"] == FAST.seed


def test_same_seed_same_files(built: tuple[Path, dict[str, object]], spider_copy: list[Path], tmp_path: Path) -> None:
    out, _ = built
    from_db([str(p) for p in spider_copy], tmp_path, FAST)
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    other = tmp_path / "other"
    from_db([str(p) for p in spider_copy], other, FromDbSettings(draws=160, seed=7))
    assert (other / "train.jsonl").read_bytes() != (out / "train.jsonl").read_bytes()


def test_literals_and_skeleton() -> None:
    sql = "SELECT name FROM singer WHERE country = 'It''s' AND age > 30.5 AND T1.x = 2"
    assert skeleton(sql) == "select name from singer where country = '_' and age > 0 and t1.x = 0"
    assert literals(sql) == ("'It''s'", "30.5", "2")


def _duckdb_shop(path: Path, tables: int = 2) -> Path:
    conn = duckdb.connect(str(path))
    conn.execute(
        "CREATE TABLE team (id INTEGER PRIMARY KEY, name VARCHAR, city VARCHAR, budget DOUBLE);"
        "CREATE TABLE player (id INTEGER PRIMARY KEY, team_id INTEGER REFERENCES team(id), name VARCHAR, age INTEGER);"
        "INSERT INTO team SELECT range, 'team ' || range, ['Oslo', 'Rome', 'Lima'][1 + range % 3], range * 1.5 "
        "FROM range(1, 30);"
        "INSERT INTO player SELECT range, 1 + range % 29, 'player ' || range, 18 + range % 20 FROM range(1, 300);"
    )
    for i in range(tables - 2):
        conn.execute(f"CREATE TABLE extra_{i} AS SELECT range AS id, 'v' || (range % 4) AS kind FROM range(5)")
    conn.close()
    return path


def test_duckdb_file(tmp_path: Path) -> None:
    db = _duckdb_shop(tmp_path / "shop.duckdb")
    before = _stamp(db)
    info = from_db([str(db)], tmp_path / "out", FAST)
    assert _stamp(db) == before
    rows = _rows(tmp_path / "out" / "train.jsonl") + _rows(tmp_path / "out" / "test.jsonl")
    assert rows and all("db_path" not in r and r["db_id"] == "shop" for r in rows)
    assert {r["db_source"] for r in rows} == {str(db.resolve())}  # scored there, through the engine layer
    assert info["counts"]["per_family"].get("join", 0) > 0  # type: ignore[index]


def test_duckdb_pairs_are_scored_on_the_duckdb_file(tmp_path: Path) -> None:
    """test.jsonl of a DuckDB source, as `eval run --dataset DIR/test.jsonl` reads it: each gold and prediction run
    on the file itself (not on databases synthesized from the prompt's schema), which stays untouched."""
    from sqlmaster.config import DataConfig
    from sqlmaster.evaluate.datasets import SplitCache, load_eval_dataset
    from sqlmaster.evaluate.score import ScoreInputError, score_file

    db = _duckdb_shop(tmp_path / "shop.duckdb")
    from_db([str(db)], tmp_path / "out", FAST)
    before = _stamp(db)
    dataset = load_eval_dataset(str(tmp_path / "out" / "test.jsonl"), SplitCache(DataConfig(), None))
    assert dataset.examples and all(ex.db_source == str(db.resolve()) for ex in dataset.examples)
    wrong = "SELECT name FROM player WHERE age < 0"
    lines = [{**ex.to_dict(), "prediction": p} for ex in dataset.examples[:5] for p in (ex.answer, wrong)]
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    metrics = score_file(tmp_path / "pred.jsonl", tmp_path / "scored")
    records = _rows(tmp_path / "scored" / "records.jsonl")
    assert [r["execution_match"] for r in records] == [True, False] * 5
    assert all(r["gold_valid"] and r["gold_nontrivial"] for r in records)
    assert records[1]["cause"] is not None
    assert metrics["databases"] == {"real": 10, "synthesized": 0}
    assert _stamp(db) == before
    (tmp_path / "bad.jsonl").write_text(json.dumps({**lines[0], "db_source": "postgresql://u:s3cret@h/db"}) + "\n")
    with pytest.raises(ScoreInputError, match="holds a password") as info:
        score_file(tmp_path / "bad.jsonl", tmp_path / "bad")
    assert "s3cret" not in str(info.value) and "u:***@h" in str(info.value)


def test_duckdb_200_tables_within_bound(tmp_path: Path) -> None:
    db = _duckdb_shop(tmp_path / "wide.duckdb", tables=200)
    settings = FromDbSettings(draws=200, time_budget_s=30.0, schema_chars=1500)
    info = from_db([str(db)], tmp_path / "out", settings)
    assert float(info["seconds"]) < 45  # type: ignore[arg-type]
    rows = _rows(tmp_path / "out" / "train.jsonl")
    assert rows and max(len(str(r["context"])) for r in rows) <= 1500  # 200 tables filtered to the budget


def test_ten_million_rows_stay_bounded(tmp_path: Path) -> None:
    db = tmp_path / "big.duckdb"
    conn = duckdb.connect(str(db))
    conn.execute(
        "CREATE TABLE big AS SELECT range AS id, 'k' || (range % 5) AS kind, range % 1000 AS score "
        "FROM range(10000000); CREATE TABLE small (id INTEGER, label VARCHAR, size INTEGER);"
        "INSERT INTO small SELECT range, 'label ' || (range % 6), range FROM range(40)"
    )
    conn.close()
    info = from_db([str(db)], tmp_path / "out", FromDbSettings(draws=120, time_budget_s=20.0))
    assert float(info["seconds"]) < 30  # type: ignore[arg-type]
    (database,) = info["databases"]  # type: ignore[misc]
    assert "more than 1000000 rows" in database["skipped_tables"]["big"]
    assert database["pairs"] > 0
    assert not [r for r in _rows(tmp_path / "out" / "train.jsonl") if "big" in str(r["answer"])]


def test_odd_names(tmp_path: Path) -> None:
    db = _sqlite(
        tmp_path / "odd.sqlite",
        'CREATE TABLE "order" ("select" TEXT, "my ""quoted"" col" INTEGER, größe TEXT, "a b" REAL);'
        'CREATE TABLE "line item" (id INTEGER PRIMARY KEY, "order" TEXT, "qty" INTEGER);'
        + "".join(f"INSERT INTO \"order\" VALUES ('s{i % 3}', {i}, 'ü{i % 4}', {i / 2});" for i in range(30))
        + "".join(f"INSERT INTO \"line item\" VALUES ({i}, 's{i % 2}', {i * 3});" for i in range(12)),
    )
    before = _stamp(db)
    from_db([str(db)], tmp_path / "out", FromDbSettings(draws=200, time_budget_s=20.0))
    assert _stamp(db) == before
    rows = _rows(tmp_path / "out" / "train.jsonl") + _rows(tmp_path / "out" / "test.jsonl")
    odd = [r for r in rows if '"order"' in str(r["answer"]) or '"line item"' in str(r["answer"])]
    assert len(odd) > 20, "tables named like a keyword or with a space are queried, quoted"
    assert any("größe" in str(r["answer"]) for r in rows) and any("ü" in str(r["question"]) for r in rows)
    with open_database(str(db)) as session:
        for row in odd:
            assert session.run(str(row["answer"]))


def test_500_tables_within_bound(tmp_path: Path) -> None:
    db = tmp_path / "wide.sqlite"
    conn = sqlite3.connect(db)
    for i in range(500):
        conn.execute(f'CREATE TABLE "t {i}" (id INTEGER PRIMARY KEY, kind TEXT, n INTEGER)')
        conn.executemany(f'INSERT INTO "t {i}" VALUES (?, ?, ?)', [(j, f"k{j % 3}", j) for j in range(4)])
    conn.commit()
    conn.close()
    before = _stamp(db)
    info = from_db([str(db)], tmp_path / "out", FromDbSettings(draws=100, time_budget_s=20.0, schema_chars=1000))
    assert _stamp(db) == before and float(info["seconds"]) < 30  # type: ignore[arg-type]
    rows = _rows(tmp_path / "out" / "train.jsonl")
    assert rows and max(len(str(r["context"])) for r in rows) <= 1000


# --- the command line: one error line and exit 2, or counts of what was skipped --------------------------------


def _cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    from sqlmaster.cli import main

    monkeypatch.setattr(sys, "argv", ["sqlmaster", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return int(exit_.value.code or 0), captured.out, captured.err


def _sqlite(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


BAD = {
    "empty database": ("empty.sqlite", "CREATE TABLE IF NOT EXISTS x (a); DROP TABLE x;", "no tables"),
    "one table, no rows": ("norows.sqlite", "CREATE TABLE t (a TEXT, b INTEGER);", "no table with rows"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_database_without_rows_is_one_error_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, script, message = BAD[case]
    db = _sqlite(tmp_path / name, script)
    before = _stamp(db)
    code, _, err = _cli(["data", "from-db", str(db), "-o", str(tmp_path / "out")], capsys, monkeypatch)
    assert code == 2 and err.count("error:") == 1 and message in err and "Traceback" not in err
    assert _stamp(db) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "source, message",
    [
        ("{t}/missing.sqlite", "missing.sqlite"),
        ("{t}/notadb.sqlite", "not an SQLite database"),
        ("{t}", "directory"),
        ("postgresql://reader:s3cret@127.0.0.1:1/shop", "127.0.0.1"),
    ],
)
def test_unusable_source_is_one_error_line(
    source: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notadb.sqlite").write_text("hello")
    args = ["data", "from-db", source.format(t=tmp_path), "-o", str(tmp_path / "out")]
    code, out, err = _cli(args, capsys, monkeypatch)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
    assert message in err and "s3cret" not in err + out


def test_locked_database_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _databases import held_exclusive, make_db

    db = make_db(tmp_path / "locked.sqlite")
    with held_exclusive(db):
        code, _, err = _cli(["data", "from-db", str(db), "-o", str(tmp_path / "out")], capsys, monkeypatch)
    assert code == 2 and err.count("error:") == 1 and "locked.sqlite" in err


def test_cli_writes_folder_and_counts_skips(tmp_path: Path) -> None:
    good = _duckdb_shop(tmp_path / "shop.duckdb")
    empty = _sqlite(tmp_path / "norows.sqlite", "CREATE TABLE t (a TEXT);")
    args = ["data", "from-db", str(good), str(empty), "-o", str(tmp_path / "out"), "--draws", "80"]
    from typer.testing import CliRunner

    from sqlmaster.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "norows.sqlite: 0 pairs, 1 table(s) skipped (t: no rows) — skipped: no table with rows" in result.output
    assert (tmp_path / "out" / "train.jsonl").stat().st_size > 0
    assert os.path.exists(tmp_path / "out" / "dataset.json")


def test_help_and_bad_settings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sqlmaster.cli import app

    result = CliRunner().invoke(app, ["data", "from-db", "--help"])
    assert result.exit_code == 0 and "--output-dir" in result.output
    db = _duckdb_shop(tmp_path / "shop.duckdb")
    bad = CliRunner().invoke(app, ["data", "from-db", str(db), "-o", str(tmp_path / "o"), "--test-share", "2"])
    assert bad.exit_code != 0 and not (tmp_path / "o").exists()


def test_card_never_holds_a_password(tmp_path: Path) -> None:
    from sqlmaster.data.fromdb.card import card, fingerprint_source

    url = "postgresql://reader:s3cret@db.example:5432/shop"
    shown = fingerprint_source(url)
    assert shown == {"url": "postgresql://reader:***@db.example:5432/shop"}
    text = json.dumps(card([{"source": url, **shown}], {}, [], [], 1.0))
    assert "s3cret" not in text and "reader:***@" in text
