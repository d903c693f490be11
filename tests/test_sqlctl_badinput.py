"""A corpus of bad and hostile inputs for sqlctl (issue 12). Each case asserts: the exit code, one `error:` line
naming the problem, no traceback, nothing that existed before changed (a sandbox holding a jobs/ folder, a
finished local run, an earlier pull with the user's own files, a values file), and — for every case that stops
on input checks — no connection to the API server (a listening socket counts them)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "kubeconfig alias bomb": Case(("list", "--kubeconfig", "{sandbox}/bomb.yaml"), "expands to more than"),
    "kubeconfig /dev/zero": Case(("list", "--kubeconfig", "/dev/zero"), "/dev/zero is not a regular file"),
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
    (tmp_path / "bomb.yaml").write_text(f"apiVersion: v1\nkind: Config\nclusters: {BOMB}\n")
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


# --- issue 20 class 8: a server that is slow, endless or not an API server; a credential plugin that hangs ---------

VERSION = b'{"major": "1", "minor": "31", "gitVersion": "v1.31.0"}'


def _answer(handler: Any, body: bytes, content_type: str = "application/json") -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _drip(handler: Any) -> None:
    """Headers at once, then one byte of body every 0.3 s (each byte restarts a per-read timeout)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    for _ in range(400):  # stops by itself after ~2 minutes, or at once when the client hangs up
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.3)


def _endless(handler: Any) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    block = b"[" * 65536
    for _ in range(100_000):  # ~6 GB if nobody stops reading; a closed connection ends it
        handler.wfile.write(block)


BEHAVIOURS: dict[str, Any] = {
    "drip": _drip,
    "endless": _endless,
    "html": lambda h: _answer(h, b"<html><body>Please log in</body></html>", "text/html"),
    "list": lambda h: _answer(h, b"[1, 2, 3]"),
    "items not a list": lambda h: _answer(h, VERSION if h.path == "/version" else b'{"items": "nope"}'),
}


@pytest.fixture
def odd_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering every request in one odd way (daemon threads, shut down after)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    behaviour = BEHAVIOURS[request.param]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                behaviour(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _kubeconfig(path: Path, server: str, user: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


NETWORK_CASES = {
    # behaviour: (command, part of the error line, exit code)
    "drip": (("status", "run-1"), "did not finish answering GET /version within 3 s", 1),
    "endless": (("status", "run-1"), "answered GET /version with more than 1 MB", 1),
    "html": (("status", "run-1"), "with something that is not JSON (it starts '<html><body>Please log in", 1),
    "list": (("status", "run-1"), "answered GET /version with a JSON list, not an object", 1),
    "items not a list": (("list",), "with items that are not a list of objects", 1),
}


@pytest.mark.parametrize("odd_server", list(NETWORK_CASES), indirect=True, ids=list(NETWORK_CASES))
def test_an_odd_server_is_one_error_line_within_a_bound(
    odd_server: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ends within the deadline (3 s here, 60 s by default) and reads at most the cap (1 MB here, 64 MB)."""
    import resource

    from sqlctl import kube

    args, message, code = NETWORK_CASES[request.node.callspec.id]
    monkeypatch.setattr(kube, "TOTAL_SECONDS", 3.0)
    monkeypatch.setattr(kube, "MAX_ANSWER_BYTES", 1 << 20)
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kubeconfig", odd_server, {"token": "t"})))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = CliRunner().invoke(app, list(args))
    elapsed = time.monotonic() - started
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert elapsed < 15, elapsed
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"


PLUGIN_HANGS = "import time; time.sleep(600)"
PLUGIN_FAILS = "import sys; sys.stderr.write('your login expired'); sys.exit(1)"


@pytest.mark.parametrize(
    ("script", "message", "code"),
    [
        (PLUGIN_HANGS, "did not answer within 2 s", 1),
        (PLUGIN_FAILS, "exec: process returned 1. your login expired", 2),
    ],
    ids=["plugin hangs", "plugin fails"],
)
def test_a_credential_plugin_is_bounded_and_named(
    script: str, message: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: tuple[str, list[int]]
) -> None:
    """A kubeconfig `exec` plugin that never returns hung sqlctl silently; one that failed was reported as
    "cannot reach the API server". Now: a deadline, the plugin named, no plugin process left behind."""
    from sqlctl import kube

    monkeypatch.setattr(kube, "PLUGIN_SECONDS", 2.0)
    marker = f"sqlctl-plugin-test-{os.getpid()}-{len(script)}"
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable}}
    user["exec"]["args"] = ["-c", script, marker]
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kubeconfig", api[0], user)))
    started = time.monotonic()
    result = CliRunner().invoke(app, ["status", "run-1"])
    assert time.monotonic() - started < 15
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "credential plugin failed" in errors[0] and message in errors[0], result.output
    assert api[1] == [], "the API server was contacted without credentials"
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]
    assert not left, "the plugin process was left running"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_network_corpus_size() -> None:
    assert len(NETWORK_CASES) + 2 == 7
