"""Issue 34: nothing loaded blindly, nothing unbounded, nothing sent that the user turned off.

The corpus (``CORPUS``) runs the real command line in a subprocess, one case each, and asserts exit 2, exactly one
``error:`` line matching the case's pattern and no Python traceback on stderr. Cases that need a fault injected
(a full disk, a read-only file system, a refused permission: the suite runs as root, which ignores file modes) patch
the os function in-process and say so in their names. The runtime cases (W&B, a question longer than the model's
context) follow the table.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_TOKEN", "OPENAI_", "LANGSMITH_"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'cli'}", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _sqlmaster(*argv: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sqlmaster.cli", *argv],
        env=env or _env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_record(root: Path, text: str) -> Path:
    """A directory that looks like a finished SFT run of tiny whose run.json is ``text``."""
    run = root / "sft"
    (run / "model").mkdir(parents=True)
    (run / "run.json").write_text(text)
    return run


def _deep_record(root: Path) -> list[str]:
    run = _run_record(root, '{"status": "completed", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return _grpo_from(run, root)


def _long_number_record(root: Path) -> list[str]:
    run = _run_record(root, '{"status": "completed", "base_model": {"name": "tiny"}, "n": ' + "9" * 5000 + "}")
    return _grpo_from(run, root)


def _huge_record(root: Path) -> list[str]:
    run = _run_record(root, '{"status": "completed", "pad": "' + "x" * (17 << 20) + '"}')
    return _grpo_from(run, root)


def _grpo_from(run: Path, root: Path) -> list[str]:
    return ["train", "--model", "tiny", "--stage", "grpo", "--init-from", str(run), "--output-dir", str(root / "g")]


def _deep_eval_record(root: Path) -> list[str]:
    run = _run_record(root, '{"base_model": ' + "{" * 100_000 + "}" * 100_000 + "}")
    return ["eval", "run", "--model", "tiny", "--adapter", str(run), "--output-dir", str(root / "e")]


def _recipe_key(*sets: str) -> Callable[[Path], list[str]]:
    def argv(root: Path) -> list[str]:
        return ["train", "--model", "tiny", "--output-dir", str(root / "r"), *[a for s in sets for a in ("--set", s)]]

    return argv


@functools.cache
def _lora_template() -> Path:
    """A LoRA run of tiny as `sqlmaster train` lays it out (random micro base, base/ + adapter/ + run.json with the
    adapter's record), built once per session; each case copies it."""
    import tempfile

    from eval_fixtures import tiny_model, tiny_tokenizer
    from peft import LoraConfig, get_peft_model

    from sqlmaster.config import load_recipe
    from sqlmaster.models.adapters import adapter_record

    root = Path(tempfile.mkdtemp(prefix="hardening-lora-")) / "tiny"
    tokenizer = tiny_tokenizer()
    base = tiny_model(tokenizer, hidden=32, layers=1)
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(root / "adapter")
    tokenizer.save_pretrained(root / "adapter")
    recipe = load_recipe(overrides=["prompt.template=compact", "data.test_size=10", "data.validation_size=8"])
    info = {
        "run_id": "hardening",
        "status": "completed",
        "base_model": {"name": "tiny", "hub_id": "sqlmaster/tiny", "path": "base"},
        "mode": "lora",
        "prompt_template": "compact",
        "recipe": recipe.to_dict(),
        "outputs": {"adapter": "adapter"},
        "adapter_record": adapter_record(root / "adapter"),
    }
    (root / "run.json").write_text(json.dumps(info))
    return root


def _lora_run(root: Path, damage: Callable[[Path], None] | None = None, rerecord: bool = False) -> Path:
    import shutil

    run = root / "tiny"
    shutil.copytree(_lora_template(), run)
    if damage is not None:
        damage(run / "adapter" / "adapter_model.safetensors")
    if rerecord:  # as if the run itself had saved the damaged adapter (e.g. trained to NaN)
        from sqlmaster.models.adapters import adapter_record

        info = json.loads((run / "run.json").read_text())
        info["adapter_record"] = adapter_record(run / "adapter")
        (run / "run.json").write_text(json.dumps(info))
    return run


def _bad_header(weights: Path) -> None:
    data = weights.read_bytes()
    weights.write_bytes(b"\xff" * 8 + data[8:])


def _non_finite(weights: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    save_file({k: torch.full_like(v, float("nan")) for k, v in tensors.items()}, str(weights))


def _foreign(weights: Path) -> None:
    """Another adapter's file (rank 8 instead of 4) in this run's place."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    save_file({k: torch.zeros([8 if d == 4 else d for d in v.shape]) for k, v in tensors.items()}, str(weights))


def _eval_adapter(damage: Callable[[Path], None], rerecord: bool = False) -> Callable[[Path], list[str]]:
    def argv(root: Path) -> list[str]:
        run = _lora_run(root, damage, rerecord)
        return ["eval", "run", "--model", "tiny", "--adapter", str(run), "-o", str(root / "e"), "--limit", "2"]

    return argv


def _init_from_adapter(damage: Callable[[Path], None], rerecord: bool = False) -> Callable[[Path], list[str]]:
    def argv(root: Path) -> list[str]:
        return _grpo_from(_lora_run(root, damage, rerecord), root)

    return argv


def _loop(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "loop").symlink_to(root / "loop")
    return root / "loop"


def _train_into(where: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def argv(root: Path) -> list[str]:
        return ["train", "--model", "tiny", "--output-dir", str(where(root)), "--set", "training.cpu_processes=1"]

    return argv


def _a_file(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "a-file").write_text("not a folder\n")
    return root / "a-file"


# (case id, argv builder given a fresh directory, regex the one error line must match)
CORPUS: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # bounded JSON: records read from another run
    ("--init-from run.json nested 100,000 deep", _deep_record, r"nests deeper than 64 levels"),
    ("--init-from run.json with a 5,000-digit number", _long_number_record, r"number of more than 64 characters"),
    ("--init-from run.json of 17 MB", _huge_record, r"over the 16,777,216 allowed|over 16,777,216 bytes"),
    ("eval run --adapter run.json nested 100,000 deep", _deep_eval_record, r"nests deeper than 64 levels"),
    # upper bounds on every key that sizes memory or time, checked before anything loads
    ("evaluation.vote=1000000", _recipe_key("evaluation.vote=1000000"), r"evaluation.vote must be <= 64"),
    ("evaluation.batch_size=10^9", _recipe_key("evaluation.batch_size=1000000000"), r"batch_size must be <= 1024"),
    ("evaluation.max_new_tokens=10^7", _recipe_key("evaluation.max_new_tokens=10000000"), r"must be <= 8192"),
    ("training.max_length=10^8", _recipe_key("training.max_length=100000000"), r"max_length must be <= 131072"),
    ("training batch 10^6", _recipe_key("training.per_device_train_batch_size=1000000"), r"must be <= 1024"),
    ("grpo.num_generations=10^5", _recipe_key("grpo.num_generations=100000"), r"num_generations must be <= 256"),
    ("grpo.max_completion_length=10^6", _recipe_key("grpo.max_completion_length=1000000"), r"must be <= 8192"),
    # paths: a symbolic link loop, a file where a folder is expected
    ("train --output-dir a link loop", _train_into(_loop), r"symbolic link that loops or leads nowhere"),
    ("train --output-dir below a file", _train_into(lambda r: _a_file(r) / "run"), r"is not a writable directory"),
    (
        "train data.source a link loop",
        lambda r: [*_train_into(lambda q: q / "r")(r), "--set", f"data.source={_loop(r)}"],
        r"data file .* is a symbolic link that loops",
    ),
    ("--init-from a link loop", lambda r: _grpo_from(_loop(r), r), r"--init-from .* does not exist"),
    (
        "eval --adapter a file",
        lambda r: ["eval", "run", "--model", "tiny", "--adapter", str(_a_file(r)), "-o", str(r)],
        r"is not a directory",
    ),
    # adapters: checked against run.json's record and for finite weights before anything loads
    ("eval: adapter header damaged", _eval_adapter(_bad_header), r"is damaged \(its header length"),
    ("eval: adapter replaced by a foreign one", _eval_adapter(_foreign), r"is not the adapter this run saved"),
    ("eval: adapter of NaN saved by its run", _eval_adapter(_non_finite, True), r"holds NaN or infinite weights"),
    ("--init-from: adapter header damaged", _init_from_adapter(_bad_header), r"is damaged \(its header length"),
    ("--init-from: adapter of NaN", _init_from_adapter(_non_finite, True), r"holds NaN or infinite weights"),
]


@pytest.mark.parametrize(("build", "pattern"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_is_one_error_line_without_traceback(
    tmp_path: Path, build: Callable[[Path], list[str]], pattern: str
) -> None:
    done = _sqlmaster(*build(tmp_path))
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert re.search(pattern, errors[0]), errors[0]


def test_bounded_json_reads_what_sqlmaster_writes_and_ignores_brackets_in_strings(tmp_path: Path) -> None:
    from sqlmaster import boundedjson

    value = {"a": [1, 2.5e-7, None, float("nan")], "s": "[[[[{{{{" * 100 + "9" * 200, "n": -(2**62)}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(value))
    loaded = boundedjson.load_file(path, "record")
    assert loaded["s"] == value["s"] and loaded["n"] == value["n"] and loaded["a"][:3] == value["a"][:3]


# --- runtime cases ----------------------------------------------------------------------------------------------


class _Embedder:
    """A deterministic stand-in embedder (no model, no network)."""

    name = "test:length"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)) + 1.0, 1.0] for t in texts]


RUNTIME_CASES = ["a question longer than the model's context", "the same, with vote"]


@pytest.mark.parametrize("vote", [0, 3])
def test_a_question_longer_than_the_context_is_failed_alone_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vote: int
) -> None:
    """One 1 MB question among short ones: the others are generated and scored, the long one is answered empty,
    scored wrong and counted in metrics.json (it once made the whole evaluation die on a 194 GB allocation)."""
    from eval_fixtures import tiny_model, tiny_tokenizer

    from sqlmaster.config import load_recipe
    from sqlmaster.evaluate.generate import GenerationSettings, HFGenerator
    from sqlmaster.evaluate.runner import run_evaluation
    from sqlmaster.prompt import get_template

    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    ctx = "CREATE TABLE t (name VARCHAR, age INTEGER)"
    rows = [
        {"question": "How many rows?", "context": ctx, "answer": "SELECT COUNT(*) FROM t"},
        {"question": "What is the name? " * 60_000, "context": ctx, "answer": "SELECT name FROM t"},
        {"question": "Oldest age?", "context": ctx, "answer": "SELECT MAX(age) FROM t"},
    ]
    assert len(rows[1]["question"]) > 1_000_000
    data = tmp_path / "triplets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = ["evaluation.max_new_tokens=8", "evaluation.batch_size=2", f"evaluation.vote={vote}"]
    recipe = load_recipe(overrides=[*overrides, "prompt.template=compact"])
    tokenizer = tiny_tokenizer()
    settings = GenerationSettings.from_config(recipe.evaluation)
    generator = HFGenerator(tiny_model(tokenizer), tokenizer, get_template("compact"), settings)
    assert generator.prompt_limit() == 1024 - 8
    weights = tmp_path / "weights"  # a model directory: the injected generator holds the model itself
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    results = run_evaluation(
        "tiny", weights, tmp_path / "out", [str(data)], None, recipe, generator=generator, embedder=_Embedder()
    )
    metrics = next(iter(results.values()))
    assert metrics["n"] == 3 and metrics["stopped_by"]["prompt_too_long"] == 1
    assert sum(metrics["stopped_by"].values()) == 3
    predictions = (tmp_path / "out" / "eval" / next(iter(results)) / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in predictions]
    assert [r["stopped_by"] == "prompt_too_long" for r in records] == [False, True, False]
    assert records[1]["prediction"] == "" and records[1]["prompt_tokens"] > 1024
    assert all(r["batch_latency_s"] > 0 for r in (records[0], records[2]))  # generated, unlike the long one


class _StandIn:
    """A stand-in W&B server on loopback: records every request; answers each with ``status``."""

    def __init__(self, status: int) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, bytes(str(self.headers), "utf-8") + body))
                payload = b'{"errors": [{"message": "refused by the stand-in"}]}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


FAKE_KEY = "hardening-test-key-" + "0" * 21  # 40 characters, like a real key; only ever sent to the stand-in


def _micro_train(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """Train the micro model 2 steps with W&B on auto (the given environment), HOME in tmp_path/home."""
    from _micro import MICRO_SFT

    from sqlmaster.data.load import load_examples

    data = tmp_path / "data.jsonl"
    rows = load_examples("shipped")[:120]
    data.write_text("".join(json.dumps({"question": e.question, "context": e.context, "answer": e.answer}) + "\n"
                            for e in rows))  # fmt: skip
    home, run = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    sets = [*MICRO_SFT, "training.max_steps=2", "training.eval_steps=2", "training.save_steps=2",
            f"data.source={data}", "tracking.wandb_mode=auto"]  # fmt: skip
    argv = ["train", "--model", "tiny", "--output-dir", str(run), *[a for s in sets for a in ("--set", s)]]
    done = _sqlmaster(*argv, env=_env(HOME=str(home), XDG_CACHE_HOME="", XDG_CONFIG_HOME="", **env), timeout=600)
    return done, run, home


def _no_key_anywhere(*roots: Path) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_wandb_mode_offline_with_a_key_sends_nothing_and_keeps_its_files_in_the_run(tmp_path: Path) -> None:
    server = _StandIn(200)
    try:
        done, run, home = _micro_train(
            tmp_path, WANDB_MODE="offline", WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=server.url, WANDB_INIT_TIMEOUT="10"
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert server.requests == [], [r[:2] for r in server.requests]
    assert "mode offline" in done.stdout and "mode online" not in done.stdout
    assert list((run / "logs" / "wandb").glob("offline-run-*"))
    assert not [p for p in home.rglob("*") if "wandb" in str(p).lower()], "W&B wrote under $HOME"
    _no_key_anywhere(run, home)


def test_wandb_refusing_the_key_continues_offline_with_a_fresh_run_id(tmp_path: Path) -> None:
    server = _StandIn(401)
    try:
        done, run, home = _micro_train(
            tmp_path, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=server.url, WANDB_INIT_TIMEOUT="20"
        )
    finally:
        server.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert server.requests, "the stand-in was never asked: the test did not test a refusal"
    assert "W&B is unreachable or refused the run" in done.stdout and "continuing offline" in done.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    offline = list((run / "logs" / "wandb").glob("offline-run-*"))
    assert offline and all("-offline-" in p.name for p in offline), offline
    assert not [p for p in home.rglob("*") if "wandb" in str(p).lower()], "W&B wrote under $HOME"
    _no_key_anywhere(run, home)


def test_a_stray_openai_key_is_one_warning_once_and_the_local_embedder_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """quickstart's check, then the evaluation's (as in quickstart: the phase inherits the environment)."""
    from sqlmaster.evaluate.embedding import LocalEmbedder
    from sqlmaster.evaluate.runner import _checked_embedder
    from sqlmaster.quickstart import _check_openai

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "0")
    with caplog.at_level("WARNING"):
        _check_openai()
        assert isinstance(_checked_embedder(), LocalEmbedder)
    warnings = [r.getMessage() for r in caplog.records if "OPENAI_API_KEY" in r.getMessage()]
    assert len(warnings) == 1 and "local model" in warnings[0], warnings
    assert "OPENAI_API_KEY" not in os.environ


class _EmptyGenerator:
    """What a model with NaN weights produced: an empty answer for every prompt."""

    backend = "hf"

    def generate(self, prompts: list[str], *, skip: Any = (), on_batch: Any = None) -> list[Any]:
        from sqlmaster.evaluate.generate import GenerationRecord

        records = [GenerationRecord(i, p, "", "", 5, 0, 0.01, 0.01, 1, "eos") for i, p in enumerate(prompts)]
        if on_batch is not None:
            on_batch(records)
        return records


def test_a_run_whose_predictions_are_all_empty_is_flagged_in_the_log_metrics_and_leaderboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlmaster.config import load_recipe
    from sqlmaster.evaluate.report import EMPTY_FLAG, write_report
    from sqlmaster.evaluate.runner import run_evaluation

    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    ctx = "CREATE TABLE t (name VARCHAR)"
    data = tmp_path / "triplets.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "context": ctx, "answer": "SELECT name FROM t"}) + "\n"
                            for i in range(3)))  # fmt: skip
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    run = tmp_path / "run"
    results = run_evaluation(
        "tiny", weights, run, [str(data)], None, load_recipe(), generator=_EmptyGenerator(), embedder=_Embedder()
    )
    metrics = next(iter(results.values()))
    assert metrics["all_predictions_empty"] is True and metrics["execution_accuracy"] == 0.0
    assert "EVERY PREDICTION IS EMPTY (3 of 3)" in capsys.readouterr().out
    written = json.loads((run / "eval" / next(iter(results)) / "metrics.json").read_text())
    assert written["all_predictions_empty"] is True
    markdown = write_report([run], tmp_path / "report")
    assert EMPTY_FLAG in markdown


@pytest.mark.parametrize(
    ("code", "fix"),
    [(28, "Free space on that disk"), (30, "file system is read-only"), (13, "write permission")],
    ids=["full disk (ENOSPC, patched)", "read-only file system (EROFS, patched)", "permission denied (patched)"],
)
def test_an_output_dir_that_cannot_be_written_is_one_line_with_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int, fix: str
) -> None:
    """The suite runs as root, which ignores file modes: the first write into the output directory is patched to
    fail with the errno a full disk, a read-only mount or a refused permission gives."""
    from _micro import MICRO_SFT

    from sqlmaster.cli import main
    from sqlmaster.train import runner

    def refuse(path: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(runner, "write_text", refuse)
    sets = [a for s in [*MICRO_SFT, "training.max_steps=1"] for a in ("--set", s)]
    monkeypatch.setattr(
        sys, "argv", ["sqlmaster", "train", "--model", "tiny", "--output-dir", str(tmp_path / "r"), *sets]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    assert exited.value.code == 2, captured.out[-2000:] + captured.err[-2000:]
    assert "Traceback" not in captured.out + captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "cannot write to output directory" in errors[0] and fix in errors[0], errors


def test_corpus_size() -> None:
    """Every CORPUS case asserts exit 2, one error line and no traceback; the count is printed for the report."""
    runtime = len(RUNTIME_CASES) + 2 + 1 + 1 + 3  # W&B x2, stray OpenAI key, all-empty predictions, unwritable x3
    print(f"hardening corpus: {len(CORPUS)} command-line cases + {runtime} runtime cases")
    assert len(CORPUS) >= 20 and len({c[0] for c in CORPUS}) == len(CORPUS)
