"""A corpus of bad and hostile inputs for sqlctl (issue 12). Each case asserts: the exit code, one `error:` line
naming the problem, no traceback, nothing that existed before changed (a sandbox holding a jobs/ folder, a
finished local run, an earlier pull with the user's own files, a values file), and — for every case that stops
on input checks — no connection to the API server (a listening socket counts them)."""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlctl.main import app
from typer.testing import CliRunner

LONG = "a" * 300
# ~400 characters of nested YAML aliases standing for 9**9 values (issue 20, class 1)
BOMB = "[&a0 [x,x,x,x,x,x,x,x,x], " + ", ".join(f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)) + "]"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    message: str  # a part of the error line
    code: int = 2
    api_calls: bool = False  # may this case talk to the API server (it gets a dead end)?
    new_run: bool = False  # the case starts a new local run (its folder appears; nothing else may change)


def _submit(*extra: str) -> tuple[str, ...]:
    return ("submit", "train", "-m", "tiny", "--jobs-dir", "{jobs}", *extra)


def _local(*extra: str) -> tuple[str, ...]:
    return _submit("--local", "--runs-dir", "{sandbox}/runs", *extra)


CASES: dict[str, Case] = {
    # run ids, in every verb that takes one
    "status ../../etc": Case(("status", "../../etc"), "run id '../../etc' is not a valid run id"),
    "status uppercase": Case(("status", "Train-TINY-1"), "is not a valid run id"),
    "status 300 characters": Case(("status", LONG), "(300 characters)' is not a valid run id"),
    "status newline": Case(("status", "run\n-1"), "is not a valid run id"),
    "status empty": Case(("status", ""), "run id '' is not a valid run id"),
    "logs ../../etc": Case(("logs", "../../etc", "-f"), "is not a valid run id"),
    "logs uppercase": Case(("logs", "ABC"), "is not a valid run id"),
    "logs 300 characters": Case(("logs", LONG), "is not a valid run id"),
    "cancel ../../etc": Case(("cancel", "../../etc", "-y"), "is not a valid run id"),
    "cancel uppercase": Case(("cancel", "ABC", "-y"), "is not a valid run id"),
    "cancel 300 characters": Case(("cancel", LONG, "-y"), "is not a valid run id"),
    "artifacts pull ../../etc": Case(("artifacts", "pull", "../../etc"), "is not a valid run id"),
    "artifacts pull uppercase": Case(("artifacts", "pull", "ABC"), "is not a valid run id"),
    "artifacts pull 300 characters": Case(("artifacts", "pull", LONG), "is not a valid run id"),
    "submit --run-id ../x": Case(_submit("--run-id", "../x"), "is not a valid run id"),
    "submit --run-id uppercase": Case(_submit("--run-id", "Bad_ID"), "is not a valid run id"),
    "submit --run-id 300 characters": Case(_submit("--run-id", LONG), "is not a valid run id"),
    "submit eval --adapter-run ../x": Case(
        ("submit", "eval", "-m", "tiny", "--jobs-dir", "{jobs}", "-a", "../x"), "--adapter-run '../x' is not"
    ),
    # namespaces and other names that reach the API as path segments
    "status -n ../x": Case(("status", "run-1", "-n", "../x"), "namespace '../x' is not a valid namespace"),
    "root -n uppercase": Case(("-n", "Team", "list"), "namespace 'Team' is not a valid namespace"),
    "artifacts pull --claim ../x": Case(("artifacts", "pull", "run-1", "--claim", "../x"), "is not a valid claim"),
    # kubeconfig
    "kubeconfig missing": Case(("--kubeconfig", "{sandbox}/nope", "list"), "does not exist"),
    "kubeconfig garbage": Case(("list", "--kubeconfig", "{sandbox}/values.yaml"), "kubeconfig"),
    # logs options
    "logs --since 5x": Case(("logs", "run-1", "--since", "5x"), "cannot read duration '5x'"),
    "logs --tail -1": Case(("logs", "run-1", "--tail", "-1"), "--tail -1 is negative"),
    "logs --rank and --all": Case(("logs", "run-1", "--rank", "1", "--all"), "--rank and --all exclude"),
    # artifacts destinations and sources
    "artifacts pull --dest is a file": Case(
        ("artifacts", "pull", "run-1", "--dest", "{sandbox}/values.yaml"), "exists and is not a folder"
    ),
    "artifacts pull --source unknown scheme": Case(
        ("artifacts", "pull", "run-1", "--source", "nosuch://bucket", "--dest", "{sandbox}/out"), "cannot open"
    ),
    "artifacts pull over the user's changed file": Case(
        ("artifacts", "pull", "run-1", "--source", "{sandbox}/bucket", "--dest", "{sandbox}/pulled"),
        "that differ from the run's and are not from an earlier pull, e.g. tiny/metrics.json; nothing was changed",
    ),
    # models, folders, values files
    "submit unknown model": Case(("submit", "train", "-m", "gpt5", "--jobs-dir", "{jobs}"), "unknown model 'gpt5'"),
    "submit model path": Case(("submit", "train", "-m", "../../x", "--jobs-dir", "{jobs}"), "unknown model"),
    "submit --chart-dir missing": Case(_submit("--chart-dir", "{sandbox}/nope"), "cannot find the SQLMaster charts/"),
    "submit --jobs-dir missing": Case(("submit", "train", "-m", "tiny", "--jobs-dir", "{sandbox}/nope"), "jobs/"),
    "submit --values missing": Case(_submit("--values", "{sandbox}/nope.yaml"), "nope.yaml does not exist"),
    "submit --values is a folder": Case(_submit("--values", "{sandbox}/runs"), "is not a file"),
    "submit --values binary": Case(_submit("--values", "{sandbox}/binary.yaml", "--dry-run"), "helm template failed"),
    "submit --values not YAML": Case(_submit("--values", "{sandbox}/broken.yaml", "--dry-run"), "helm template"),
    "submit --values a list": Case(_submit("--values", "{sandbox}/list.yaml", "--dry-run"), "helm template"),
    "submit -m all --run-id": Case(
        ("submit", "train", "-m", "all", "--jobs-dir", "{jobs}", "--run-id", "r1"), "--run-id names one run"
    ),
    # --set and --recipe-set
    "--set in recipe syntax": Case(_submit("--set", "training.max_steps=5"), "Use --recipe-set training.max_steps=5"),
    "--set gpus=0 (schema)": Case(_submit("--set", "runs[0].gpus=0", "--dry-run"), "refused these values"),
    "--set unknown recipe key (schema)": Case(
        _submit("--set", "runs[0].recipe.training.max_stepz=5", "--dry-run"), "refused these values"
    ),
    "--recipe-set no section": Case(_submit("--recipe-set", "max_steps=5"), "is not section.key=value"),
    "--recipe-set unknown section": Case(_submit("--recipe-set", "nosuch.key=1"), "'nosuch' is not a recipe section"),
    "--recipe-set alias bomb": Case(_submit("--recipe-set", f"model.target_modules={BOMB}"), "expands to more than"),
    "--recipe-set alias loop": Case(_submit("--recipe-set", "training.seed=&a [*a]"), "alias inside the value"),
    "--recipe-set 100 KB value": Case(_submit("--recipe-set", "data.source=" + "x" * 100_000), "over the 65,536"),
    "--recipe-set infinite": Case(_submit("--recipe-set", "training.learning_rate=.inf"), "not a finite number"),
    "--recipe-set unknown key (schema)": Case(
        _submit("--recipe-set", "training.max_stepz=5", "--dry-run"), "refused these values"
    ),
    "--adapter-run and --set adapterRunId": Case(
        ("submit", "eval", "-m", "tiny", "--jobs-dir", "{jobs}", "-a", "train-1", "--set", "runs[0].adapterRunId=x"),
        "both choose the training run",
    ),
    # --local: nothing outside --runs-dir, nothing the local machine cannot do
    "--local model path traversal": Case(_local("--set", "runs[0].model=../../../../tmp/x"), "refused these values"),
    "--local extraArgs escape": Case(
        _local("--set", "runs[0].extraArgs={{--output-dir,/data/runs/../../../escape}}"), "outside the runs folder"
    ),
    "--local claim path": Case(_local("--set", "runs[0].extraArgs={{--cache,/data/hf-cache}}"), "no local equivalent"),
    "--local multi-node": Case(
        _local("--set", "runs[0].nodes=2,storage.existingClaim=x"), "--local runs on this machine only"
    ),
    "--local --runs-dir is a file": Case(_submit("--local", "--runs-dir", "{sandbox}/values.yaml"), "is not a folder"),
    "--local eval of a missing training run": Case(
        (
            "submit",
            "eval",
            "-m",
            "tiny",
            "--jobs-dir",
            "{jobs}",
            "--local",
            "--runs-dir",
            "{sandbox}/runs",
            "-a",
            "t-9",
        ),
        "no local training run 't-9'",
    ),
    "--local workload exits 2": Case(_local("--run-id", "fail-2"), "exited with code 2", new_run=True),
}


def _tree(root: Path) -> dict[str, str]:
    """Every file and folder under root with a hash of its content (symlinks by target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[key] = "link:" + str(path.readlink())
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


@pytest.fixture
def api() -> Iterator[tuple[str, list[int]]]:
    """A TCP listener standing in for the API server: it counts connections and answers nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    hits: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}", hits
    stop.set()
    thread.join()
    server.close()


FAKE = """
import os, sys
from pathlib import Path
argv = sys.argv[1:]
print("fake sqlmaster", flush=True)
sys.exit(2 if "fail-2" in argv[argv.index("--output-dir") + 1] else 0)
"""


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: tuple[str, list[int]]) -> Path:
    jobs = tmp_path / "jobs"
    for task in ("train", "eval"):
        (jobs / task).mkdir(parents=True)
        for model in ("tiny", "gemma7b", "mistral7b"):
            recipe = {"training": {"max_steps": 3}} if task == "train" else {"data": {"seed": 3}}
            run = {"model": model, "gpus": 1, "recipe": recipe}
            (jobs / task / f"{model}.yaml").write_text(yaml.safe_dump({"runs": [run]}))
    finished = tmp_path / "runs" / "train-1" / "tiny"
    finished.mkdir(parents=True)
    (finished / "run.json").write_text('{"status": "completed"}')
    (tmp_path / "values.yaml").write_text("runs: [{model: tiny, gpus: 1}]\n")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "broken.yaml").write_text("runs: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    source = tmp_path / "bucket" / "run-1" / "tiny"
    source.mkdir(parents=True)
    (source / "metrics.json").write_text('{"loss": 1}')
    pulled = tmp_path / "pulled" / "run-1" / "tiny"
    pulled.mkdir(parents=True)
    (pulled / "metrics.json").write_text("the user's own notes")  # not from a pull: must survive
    (tmp_path / "fake.py").write_text(FAKE)
    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"server": api[0], "insecure-skip-tls-verify": True}
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("SQLMASTER_BIN", f"{sys.executable} {tmp_path / 'fake.py'}")
    return tmp_path


@pytest.mark.parametrize("name", CASES, ids=list(CASES))
def test_bad_input(name: str, sandbox: Path, api: tuple[str, list[int]]) -> None:
    case = CASES[name]
    args = [a.format(sandbox=sandbox, jobs=sandbox / "jobs") for a in case.args]
    before = _tree(sandbox)
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == case.code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and case.message in errors[0], output
    after = _tree(sandbox)
    assert {k: after.get(k) for k in before} == before
    new = sorted(set(after) - set(before))
    assert all(k.startswith("runs/fail-2") for k in new) if case.new_run else not new, new
    if not case.api_calls:
        assert api[1] == [], "the API server was contacted"


def test_corpus_size() -> None:
    """The report counts these; keep the number honest if cases are added or removed."""
    assert len(CASES) >= 50
