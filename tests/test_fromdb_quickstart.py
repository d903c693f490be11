"""`sqlmaster quickstart --from-db SOURCE` in miniature (issue 30): synthesize from the user's database, fine-tune
(the micro tiny model, a few steps), evaluate on the database's own held-out pairs, scored on the real file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import yaml
from _micro import MICRO_MODEL
from test_quickstart import EVAL, TRAIN, _values
from typer.testing import CliRunner

from sqlmaster.cli import app
from sqlmaster.data.spider import database_path


def test_quickstart_from_db_trains_and_scores_on_the_database(tmp_path: Path) -> None:
    model = {item.split("=", 1)[0].split(".", 1)[1]: yaml.safe_load(item.split("=", 1)[1]) for item in MICRO_MODEL}
    jobs = tmp_path / "jobs"
    (jobs / "train").mkdir(parents=True)
    (jobs / "eval").mkdir()
    (jobs / "train" / "tiny.yaml").write_text(_values({**TRAIN, "model": model}))
    (jobs / "eval" / "tiny.yaml").write_text(_values(EVAL))
    db = Path(shutil.copy(database_path("concert_singer"), tmp_path / "concert_singer.sqlite"))
    before = hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns
    out = tmp_path / "qs"

    args = ["quickstart", "--model", "tiny", "-o", str(out), "--jobs-dir", str(jobs), "--from-db", str(db)]
    result = CliRunner().invoke(app, [*args, "--set", "evaluation.limit=3"])

    assert result.exit_code == 0, result.output[-3000:]
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    info = json.loads((out / "tiny" / "run.json").read_text())
    data = info["recipe"]["data"]
    assert data["source"] == str(out / "data") and data["mix_source"] == "shipped"
    assert info["recipe"]["training"]["max_length"] == 512
    metrics = json.loads((out / "tiny" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["n"] == 3 and 0.0 <= metrics["execution_accuracy"] <= 1.0
    records = [json.loads(line) for line in (out / "tiny" / "eval" / "test" / "records.jsonl").read_text().splitlines()]
    assert records and all(r["db_path"] == str(db.resolve()) and r["db_id"] == "concert_singer" for r in records)
