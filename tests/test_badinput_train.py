"""Bad and hostile input for `sqlmaster train`, `sqlmaster recipe` and the recipe: one clear line, the right exit code.

Every case asserts the exit code (2: configuration, 1: transient, 130/143: interrupted, 0: a correct result), the
message, that no traceback was printed, and that nothing that existed before changed: a completed run directory
and the input files are hashed before and after each command. The cases are counted in ``test_corpus_size``
(issue 12 asks for the count); the runtime cases (divergence, SIGTERM, W&B, hub, --overwrite) follow the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _micro import MICRO_SFT
from _procs import alive, descendants

REPO = Path(__file__).resolve().parents[1]
STEPS = 6
MICRO = [*MICRO_SFT, f"training.max_steps={STEPS}", "training.eval_steps=3", "training.save_steps=3"]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the names of empty folders): what "unchanged" is checked against."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir() and not any(path.iterdir()):
            found[rel] = "<empty dir>"
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Inputs (a small data file, good and bad recipe files) and one completed micro run trained on that data."""
    from sqlmaster.data.load import load_examples
    from sqlmaster.train.runner import run_training

    root = tmp_path_factory.mktemp("badinput")
    inputs = root / "inputs"
    inputs.mkdir()
    data = inputs / "data.jsonl"
    rows = load_examples("shipped")[:200]
    data.write_text(
        "".join(json.dumps({"question": e.question, "context": e.context, "answer": e.answer}) + "\n" for e in rows)
    )
    (inputs / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (inputs / "a-directory.yaml").mkdir()
    (inputs / "invalid.yaml").write_text("training: [unclosed\n")
    (inputs / "list.yaml").write_text("- training\n- model\n")
    (inputs / "two-runs.yaml").write_text("runs:\n  - model: tiny\n  - model: tiny\n")
    (inputs / "runs-not-list.yaml").write_text("runs: tiny\n")
    (inputs / "recipe-not-mapping.yaml").write_text("runs:\n  - model: tiny\n    recipe: [1, 2]\n")
    (inputs / "garbage.parquet").write_bytes(b"PAR1 this is not parquet at all " * 10)
    (inputs / "bad-line.jsonl").write_text('{"question": "q", "context": "c", "answer": "a"}\n{not json\n')
    (inputs / "missing-field.jsonl").write_text(json.dumps({"question": "q", "context": "CREATE TABLE t (a INT)"}))
    (inputs / "empty.jsonl").write_text("\n\n")
    (inputs / "truncated.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6)
    (inputs / "not-utf8.jsonl").write_bytes(b'{"question": "\xff\xfe"}\n')
    (inputs / "a-file").write_text("not a directory\n")
    (inputs / "alias-bomb.yaml").write_text(_ALIAS_BOMB_FILE)
    (inputs / "alias-loop.yaml").write_text("training: &a {max_steps: [*a]}\n")
    (inputs / "huge.yaml").write_text("training: {max_steps: 3}\n" + "#" * (1 << 20) + "\n")
    (inputs / "deep.yaml").write_text("training: {max_steps: " + "[" * 5000 + "]" * 5000 + "}\n")

    run = root / "completed"
    run_training("tiny", run, _recipe(f"data.source={data}"))
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    return {"root": root, "inputs": inputs, "data": data, "run": run}


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A flow sequence of nested aliases: ~400 characters that stand for width**levels (387 million) values."""
    items = [f"&a0 [{', '.join(['lol'] * width)}]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return f"[{', '.join(items)}]"


# The same as a 1.3 KB recipe file, one anchor per line as a values file would write it.
_ALIAS_BOMB_FILE = "training:\n  seed: 1\nmodel:\n  target_modules: " + _alias_bomb(12, 9) + "\n"


def _recipe(*extra: str):  # type: ignore[no-untyped-def]
    """The recipe `sqlmaster train --model tiny --set ...` resolves (tiny's jobs/ file under the --set values)."""
    from sqlmaster.recipes import resolve_recipe

    return resolve_recipe("train", "tiny", None, [*MICRO, *extra]).recipe


def _main(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Run the `sqlmaster` entry point in this process; return (exit code, stdout + stderr)."""
    from sqlmaster.cli import main

    monkeypatch.setattr(sys, "argv", ["sqlmaster", *argv])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# (case id, argv with {run} {data} {inputs} {new} placeholders, exit code, regex the output must match)
# {new} is a fresh directory per case; {run} the completed run, which must not change.
TRAIN = ["train", "--model", "tiny", "--output-dir"]
CASES: list[tuple[str, list[str], int, str]] = [
    # the recipe file
    ("binary recipe file", [*TRAIN, "{new}", "--recipe", "{inputs}/binary.yaml"], 2, r"error: .*not UTF-8 text"),
    ("recipe is a directory", [*TRAIN, "{new}", "--recipe", "{inputs}/a-directory.yaml"], 2, r"is a directory"),
    ("recipe missing", [*TRAIN, "{new}", "--recipe", "{inputs}/nope.yaml"], 2, r"cannot read recipe file"),
    ("recipe invalid YAML", [*TRAIN, "{new}", "--recipe", "{inputs}/invalid.yaml"], 2, r"is not valid YAML"),
    ("recipe is a list", [*TRAIN, "{new}", "--recipe", "{inputs}/list.yaml"], 2, r"must be a mapping of sections"),
    ("values file, two runs", [*TRAIN, "{new}", "--recipe", "{inputs}/two-runs.yaml"], 2, r"values file with 2 runs"),
    ("values file, runs: str", [*TRAIN, "{new}", "--recipe", "{inputs}/runs-not-list.yaml"], 2, r"values file"),
    ("values recipe is a list", [*TRAIN, "{new}", "--recipe", "{inputs}/recipe-not-mapping.yaml"], 2, r"mapping"),
    # bounded YAML: aliases that expand without end, oversized or endless files, deep nesting (issue 20, class 1)
    ("alias bomb --set", [*TRAIN, "{new}", "--set", f"model.target_modules={_alias_bomb()}"], 2, r"expands to more"),
    ("alias bomb file", [*TRAIN, "{new}", "--recipe", "{inputs}/alias-bomb.yaml"], 2, r"expands to more than"),
    ("alias loop file", [*TRAIN, "{new}", "--recipe", "{inputs}/alias-loop.yaml"], 2, r"alias inside the value"),
    ("recipe over 1 MiB", [*TRAIN, "{new}", "--recipe", "{inputs}/huge.yaml"], 2, r"is over 1,048,576 bytes"),
    ("recipe /dev/zero", [*TRAIN, "{new}", "--recipe", "/dev/zero"], 2, r"/dev/zero is not a regular file"),
    ("recipe nests 5000 deep", [*TRAIN, "{new}", "--recipe", "{inputs}/deep.yaml"], 2, r"nests deeper than 64"),
    ("--set 100 KB value", [*TRAIN, "{new}", "--set", "data.source=" + "x" * 100_000], 2, r"over the 65,536 allowed"),
    ("recipe show bomb", ["recipe", "show", "--set", f"training.seed={_alias_bomb()}"], 2, r"expands to more than"),
    # values
    ("tiny_heads=0", [*TRAIN, "{new}", "--set", "model.tiny_heads=0"], 2, r"model\.tiny_heads must be >= 1 \(got 0\)"),
    ("odd head size", [*TRAIN, "{new}", "--set", "model.tiny_heads=3"], 2, r"multiple of 2 x model\.tiny_heads"),
    ("max_train_rows=0", [*TRAIN, "{new}", "--set", "data.max_train_rows=0"], 2, r"data\.max_train_rows must be >= 1"),
    ("warmup_steps=-5", [*TRAIN, "{new}", "--set", "training.warmup_steps=-5"], 2, r"warmup_steps must be >= 0"),
    ("eval batch_size=0", [*TRAIN, "{new}", "--set", "evaluation.batch_size=0"], 2, r"batch_size must be >= 1"),
    ("learning_rate=1e400", [*TRAIN, "{new}", "--set", "training.learning_rate=1e400"], 2, r"finite number"),
    ("learning_rate=nan", [*TRAIN, "{new}", "--set", "training.learning_rate=.nan"], 2, r"finite number"),
    ("learning_rate=0", [*TRAIN, "{new}", "--set", "training.learning_rate=0"], 2, r"learning_rate must be > 0"),
    ("max_steps=0", [*TRAIN, "{new}", "--max-steps", "0"], 2, r"training\.max_steps must be >= 1"),
    ("max_steps=abc", [*TRAIN, "{new}", "--set", "training.max_steps=abc"], 2, r"max_steps must be an integer"),
    ("--max-steps abc", [*TRAIN, "{new}", "--max-steps", "abc"], 2, r"Invalid value for '--max-steps'"),
    ("seed=-1", [*TRAIN, "{new}", "--set", "training.seed=-1"], 2, r"training\.seed must be >= 0"),
    ("top_p=2", [*TRAIN, "{new}", "--set", "evaluation.top_p=2"], 2, r"top_p must be <= 1"),
    ("lora_dropout=1", [*TRAIN, "{new}", "--set", "model.lora_dropout=1"], 2, r"lora_dropout must be < 1"),
    ("scheduler name", [*TRAIN, "{new}", "--set", "training.lr_scheduler_type=bogus"], 2, r"must be one of .*cosine"),
    ("mode=qlora", [*TRAIN, "{new}", "--set", "model.mode=qlora"], 2, r"model\.mode must be one of lora, full"),
    ("target_modules=[]", [*TRAIN, "{new}", "--set", "model.target_modules=[]"], 2, r"must be non-empty"),
    ("packing=maybe", [*TRAIN, "{new}", "--set", "training.packing=maybe"], 2, r"must be true or false"),
    (
        "save/eval steps",
        [
            *TRAIN,
            "{new}",
            "--set",
            "training.save_steps=30",
            "--set",
            "training.eval_steps=20",
            "--set",
            "training.early_stopping_patience=1",
        ],
        2,
        r"save_steps must be a multiple",
    ),
    ("push without repo", [*TRAIN, "{new}", "--set", "output.push_to_hub=true"], 2, r"needs output\.hub_repo_id"),
    (
        "push without token",
        [*TRAIN, "{new}", "--set", "output.push_to_hub=true", "--set", "output.hub_repo_id=o/n"],
        2,
        r"needs HF_TOKEN",
    ),
    ("wandb_mode=sometimes", [*TRAIN, "{new}", "--set", "tracking.wandb_mode=sometimes"], 2, r"must be one of auto"),
    ("unknown key", [*TRAIN, "{new}", "--set", "training.max_stepz=3"], 2, r"unknown key\(s\) \['max_stepz'\]"),
    # a section's ClassVars (ROLE, SECTION) are annotations but not keys
    ("class attribute as key", [*TRAIN, "{new}", "--set", "data.ROLE=x"], 2, r"unknown key\(s\) \['ROLE'\]"),
    ("unknown section", [*TRAIN, "{new}", "--set", "trainer.max_steps=3"], 2, r"unknown recipe section"),
    (
        "helm-style --set",
        [*TRAIN, "{new}", "--set", "runs[0].recipe.training.max_steps=5"],
        2,
        r"Helm-style key .*--set training\.max_steps=5",
    ),
    ("--set without =", [*TRAIN, "{new}", "--set", "max_steps"], 2, r"write it as section\.key=value"),
    # data
    (
        "garbage parquet",
        [*TRAIN, "{new}", "--set", "data.source={inputs}/garbage.parquet"],
        2,
        r"not a readable parquet",
    ),
    (
        "bad JSONL line",
        [*TRAIN, "{new}", "--set", "data.source={inputs}/bad-line.jsonl"],
        2,
        r"line 2 is not valid JSON",
    ),
    ("missing field", [*TRAIN, "{new}", "--set", "data.source={inputs}/missing-field.jsonl"], 2, r"missing or empty"),
    ("empty data file", [*TRAIN, "{new}", "--set", "data.source={inputs}/empty.jsonl"], 2, r"holds no examples"),
    ("truncated gzip", [*TRAIN, "{new}", "--set", "data.source={inputs}/truncated.jsonl.gz"], 2, r"cannot read data"),
    ("not UTF-8 data", [*TRAIN, "{new}", "--set", "data.source={inputs}/not-utf8.jsonl"], 2, r"cannot read data"),
    ("missing data file", [*TRAIN, "{new}", "--set", "data.source={inputs}/nope.jsonl"], 2, r"does not exist"),
    # a folder is read as `data from-db` output: one without train.jsonl says what it needs
    ("data is a folder", [*TRAIN, "{new}", "--set", "data.source={inputs}/a-directory.yaml"], 2, r"no train\.jsonl"),
    ("data is /dev/zero", [*TRAIN, "{new}", "--set", "data.source=/dev/zero"], 2, r"/dev/zero is not a regular file"),
    ("not a source", [*TRAIN, "{new}", "--set", "data.source=nonsense"], 2, r"neither 'shipped'"),
    (
        "splits too big",
        [*TRAIN, "{new}", "--set", "data.source={data}", "--set", "data.test_size=500"],
        2,
        r"only 200 usable rows",
    ),
    # model and output directory
    ("unknown model", ["train", "--model", "mistral-7", "--output-dir", "{new}"], 2, r"unknown model 'mistral-7'"),
    ("gated, no HF_TOKEN", ["train", "--model", "mistral7b", "--output-dir", "{new}"], 2, r"HF_TOKEN is not set"),
    ("output dir is a file", [*TRAIN, "{inputs}/a-file"], 2, r"is a file"),
    ("output under a file", [*TRAIN, "{inputs}/a-file/run"], 2, r"cannot write to output directory"),
    # the guarded run directory ({run} is a completed run on {data}; every command below must leave it unchanged)
    (
        "another data split",
        [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}", "--set", "data.seed=7"],
        2,
        r"another recipe made: data\.seed 1399 -> 7\. data\.seed defines the run",
    ),
    (
        "another prompt",
        [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}", "--set", "prompt.template=original"],
        2,
        r"prompt\.template .*--overwrite",
    ),
    (
        "another shape",
        [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}", "--set", "model.tiny_layers=2"],
        2,
        r"model\.tiny_layers 1 -> 2",
    ),
    (
        "another lr",
        [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}", "--set", "training.learning_rate=1e-3"],
        2,
        r"learning_rate 0\.003 -> 0\.001",
    ),
    (
        "another model",
        [
            "train",
            "--model",
            "someorg/othermodel",
            "--output-dir",
            "{run}",
            *_sets(MICRO),
            "--set",
            "data.source={data}",
        ],
        2,
        r"model \"tiny\" -> \"someorg/othermodel\"",
    ),
    (
        "resumable change",
        [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}", "--set", "training.max_length=128"],
        2,
        r"max_length 256 -> 128\. .*--resume-with-changes",
    ),
    (
        "max_steps below ckpt",
        [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}", "--max-steps", "2", "--resume-with-changes"],
        2,
        r"below the step of the latest checkpoint .*\(6\)",
    ),
    (
        "identity + flag",
        [
            *TRAIN,
            "{run}",
            *_sets(MICRO),
            "--set",
            "data.source={data}",
            "--set",
            "data.seed=7",
            "--resume-with-changes",
        ],
        2,
        r"cannot be continued",
    ),
    ("same recipe again", [*TRAIN, "{run}", *_sets(MICRO), "--set", "data.source={data}"], 0, r"nothing to do"),
    # sqlmaster recipe
    ("recipe show --task", ["recipe", "show", "--task", "deploy"], 2, r"--task must be one of train, eval"),
    ("recipe show -o", ["recipe", "show", "-o", "xml"], 2, r"--output must be yaml or json"),
    ("recipe show bad --set", ["recipe", "show", "--set", "training.warmup_steps=-1"], 2, r"must be >= 0"),
    ("recipe show helm --set", ["recipe", "show", "--set", "runs[0].recipe.data.seed=3"], 2, r"Helm-style key"),
    ("recipe show binary", ["recipe", "show", "--recipe", "{inputs}/binary.yaml"], 2, r"not UTF-8 text"),
    ("recipe show model", ["recipe", "show", "--model", "gpt-17"], 2, r"unknown model 'gpt-17'"),
    ("recipe keys -o", ["recipe", "keys", "-o", "csv"], 2, r"--output must be table or json"),
]


@pytest.mark.parametrize(("argv", "code", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(
    world: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    pattern: str,
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    new = tmp_path / "new-run"
    args = [a.format(run=world["run"], data=world["data"], inputs=world["inputs"], new=new) for a in argv]
    before = {name: _digest(world[name]) for name in ("run", "inputs")}
    got, output = _main(args, capsys, monkeypatch)
    assert got == code, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    if code == 2:
        error_lines = [line for line in output.splitlines() if line.startswith("error: ")]
        assert error_lines or "Invalid value" in output, output[-2000:]
        assert re.search(pattern, error_lines[-1] if error_lines else output), output[-2000:]
        assert not new.exists() or not any(new.iterdir()), "a refused command wrote into its output directory"
    else:
        assert re.search(pattern, output) or _logged(world["run"], pattern), output[-2000:]
    assert {name: _digest(world[name]) for name in ("run", "inputs")} == before


def _logged(run: Path, pattern: str) -> bool:
    """The "nothing to do" line goes through logging, which a previous test's capture may have swallowed."""
    return pattern == r"nothing to do" and json.loads((run / "run.json").read_text())["status"] == "completed"


# --- runtime cases: each trains a few steps in a subprocess -------------------------------------------------------

RUNTIME_CASES = [
    "diverging loss",
    "SIGTERM",
    "resume after SIGTERM",
    "W&B unreachable",
    "hub unreachable (model)",
    "hub outage, real libraries (slow)",
    "hub unreachable (dataset)",
    "hub: repository not found",
    "--overwrite",
    "--resume-with-changes",
    "data changed under the run",
    # issue 20 (the parametrized DAMAGED and BROKEN_LATEST tables below are counted on their own)
    "alias bomb: bounded time and memory",
    "stale running record",
    "one owner, SIGINT recorded as SIGINT, kill -9 leaves no trainer",
    "no usable checkpoint",
    "resume failing before its first step",
    "full disk while checkpointing",
    "max_length drops every example",
    "--overwrite with eval/ a link",
    "--overwrite all or nothing",
]


def test_corpus_size() -> None:
    """Issue 12 asks for the count: printed here, and kept honest by listing the cases."""
    tables = len(DAMAGED) + len(BROKEN_LATEST)
    print(f"bad-input corpus: {len(CASES)} table cases + {len(RUNTIME_CASES)} runtime cases + {tables} record cases")
    assert len(CASES) + len(RUNTIME_CASES) + tables >= 104


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_TOKEN"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'cli'}", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _train_cmd(run: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sqlmaster.cli", *TRAIN, str(run), *_sets([*MICRO, f"data.source={data}"]), *extra]


def _signal_after_first_checkpoint(
    run: Path, cmd: list[str], signum: int = signal.SIGTERM, terminal: bool = False
) -> tuple[str, str, dict[int, int], int]:
    """Start ``cmd``, send it ``signum`` once checkpoint-3 is complete, and check that the run ended as one run
    interrupted by that signal (exit 128 + signal, the message, no traceback, run.json, the checkpoint kept).
    ``terminal``: the signal goes to the command's whole process group, as a Ctrl-C at a terminal does. Returns its
    stdout, stderr, the processes below it when the signal went out (pid: process group) and its own pid."""
    proc = subprocess.Popen(
        cmd, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 300
    name = signal.Signals(signum).name
    try:
        while not (run / "checkpoints" / "checkpoint-3" / "COMPLETE").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.05)
        below = {pid: _process_group(pid) for pid in descendants(proc.pid)}
        if terminal:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and f"interrupted by {name}" in err, err[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["error"] == f"interrupted by {name}"
    assert (run / "checkpoints" / "checkpoint-3" / "COMPLETE").is_file()
    return out, err, below, proc.pid


def _process_group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


@pytest.mark.parametrize(
    ("signum", "terminal"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["kubernetes-sigterm", "ctrl-c"]
)
def test_a_stop_reaches_every_training_process(
    world: dict[str, Path], tmp_path: Path, signum: int, terminal: bool
) -> None:
    """training.cpu_processes=2: Kubernetes' SIGTERM to the launching process, or a Ctrl-C at a terminal (SIGINT to
    the whole foreground process group), goes through torchrun to both workers; the run ends as one run interrupted
    by that signal (exit 128 + signal, one message, no traceback), its checkpoints kept and no training process left
    behind. torchrun runs in a process group of its own, so it hears a Ctrl-C once, passed on by `sqlmaster train`,
    not a second time from the terminal (a second signal cuts its workers' stop short)."""
    from sqlmaster.cores import available_cores

    if available_cores() < 2:
        pytest.skip(f"needs 2 cores for 2 training processes; this process may use {available_cores()}")
    run = tmp_path / "stopped-ddp"
    cmd = _train_cmd(
        run, world["data"], "--max-steps", "400", "--set", "training.save_steps=3", "--set", "training.cpu_processes=2"
    )
    _, _, below, command = _signal_after_first_checkpoint(run, cmd, signum, terminal=terminal)
    assert len(below) >= 3, below  # torchrun and two workers
    # The command leads its own process group (start_new_session), as a shell's foreground job does.
    assert command not in below.values(), f"a training process shares the command's process group: {below}"
    deadline = time.monotonic() + 30  # the workers are gone (reparented ones are reaped by init)
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in below if alive(pid)]


def test_a_diverging_run_stops_with_status_diverged(world: dict[str, Path], tmp_path: Path) -> None:
    """learning_rate=1e30 is finite (so the recipe is valid) but blows the weights up within a step or two."""
    run = tmp_path / "diverged"
    done = subprocess.run(
        _train_cmd(run, world["data"], "--set", "training.learning_rate=1e30", "--max-steps", "20"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert re.search(r"^error: training diverged at step \d+: the loss became NaN", done.stderr, re.M), done.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "diverged" and "diverged" in info["error"]
    assert not (run / "model").exists()
    # The same recipe again is refused (it would diverge again) and changes nothing.
    before = _digest(run)
    again = subprocess.run(
        _train_cmd(run, world["data"], "--set", "training.learning_rate=1e30", "--max-steps", "20"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 2 and "diverged; the same recipe would diverge again" in again.stderr
    assert _digest(run) == before


def test_sigterm_records_interrupted_keeps_checkpoints_and_resumes(world: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "terminated"
    _signal_after_first_checkpoint(
        run, _train_cmd(run, world["data"], "--max-steps", "400", "--set", "training.save_steps=3")
    )

    # Resume after SIGTERM from the kept checkpoint. A few steps past it rather than all 400: max_steps is a
    # resumable key, so the shorter run needs --resume-with-changes (and is recorded as a change).
    last = max(
        int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*") if (p / "COMPLETE").exists()
    )
    target = last + 3
    resumed = subprocess.run(
        _train_cmd(
            run, world["data"], "--max-steps", str(target), "--set", "training.save_steps=3", "--resume-with-changes"
        ),
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_from"] == [str(run / "checkpoints" / f"checkpoint-{last}")]
    assert info["recipe_changes"] == [{"at_step": last, "changes": {"training.max_steps": [400, target]}}]


def test_wandb_unreachable_degrades_to_offline(world: dict[str, Path], tmp_path: Path) -> None:
    """WANDB_API_KEY set, W&B online, server unreachable: a warning, then the run trains offline and completes."""
    run = tmp_path / "wandb"
    fake_key = "wandb-unreachable-test-" + "0" * 17  # 40 characters, like a real key; never sent anywhere real
    env = _env(WANDB_API_KEY=fake_key, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_INIT_TIMEOUT="5")
    cmd = _train_cmd(run, world["data"], "--max-steps", "2", "--set", "tracking.wandb_mode=online")
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "W&B is unreachable or refused the run" in done.stdout and "continuing offline" in done.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert list((run / "logs" / "wandb").glob("offline-run-*"))
    for path in run.rglob("*"):
        if path.is_file():
            assert fake_key.encode() not in path.read_bytes(), path


def _connect_error() -> OSError:
    """What transformers raises when the hub cannot be reached (cause chain as observed with HF_ENDPOINT down)."""
    import httpx
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        try:
            try:
                raise httpx.ConnectError("[Errno 111] Connection refused")
            except httpx.ConnectError as exc:
                raise LocalEntryNotFoundError("cannot find the requested files in the local cache") from exc
        except LocalEntryNotFoundError as exc:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from exc
    except OSError as exc:
        return exc


def test_unreachable_hub_is_retried_then_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown hub id while the hub is down: retried with back-off, then exit 1 (a Job retries it)."""
    import transformers

    from sqlmaster import hub

    calls: list[str] = []

    def unreachable(source: str, **kwargs: object) -> None:
        calls.append(source)
        raise _connect_error()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("SQLMASTER_HUB_ATTEMPTS", "3")
    monkeypatch.setattr(hub, "BACKOFF_SECONDS", (0.0,))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unreachable)
    code, output = _main([*TRAIN[:2], "someorg/somemodel", "--output-dir", str(tmp_path / "hub")], capsys, monkeypatch)
    assert code == 1, output[-2000:]
    assert calls == ["someorg/somemodel"] * 3
    assert re.search(
        r"^error: cannot reach the Hugging Face hub for the tokenizer of someorg/somemodel after 3 "
        r"attempts",
        output,
        re.M,
    ), output
    assert "Traceback" not in output and not (tmp_path / "hub" / "run.json").exists()


@pytest.mark.slow
def test_a_real_hub_outage_exits_1(tmp_path: Path) -> None:
    """The same through the real libraries: the hub endpoint refuses connections (huggingface_hub retries ~50 s)."""
    env = _env(HF_ENDPOINT="http://127.0.0.1:9", SQLMASTER_HUB_ATTEMPTS="1")
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(key, None)
    cmd = [
        sys.executable,
        "-m",
        "sqlmaster.cli",
        *TRAIN[:2],
        "someorg/somemodel",
        "--output-dir",
        str(tmp_path / "x"),
        "--set",
        "data.max_train_rows=10",
        "--set",
        "tracking.wandb_mode=disabled",
    ]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "error: cannot reach the Hugging Face hub for the tokenizer of someorg/somemodel" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_hub_for_a_dataset_is_retried_then_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    from sqlmaster import hub

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'someorg/somedata' on the Hub (ConnectionError)")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("SQLMASTER_HUB_ATTEMPTS", "2")
    monkeypatch.setattr(hub, "BACKOFF_SECONDS", (0.0,))
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    argv = [*TRAIN, str(tmp_path / "hubdata"), *_sets(MICRO), "--set", "data.source=someorg/somedata"]
    code, output = _main(argv, capsys, monkeypatch)
    assert code == 1 and "cannot reach the Hugging Face hub for dataset someorg/somedata after 2" in output, output
    assert "Traceback" not in output


def test_a_repository_the_hub_does_not_have_is_exit_2_without_retries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    import transformers
    from huggingface_hub.errors import RepositoryNotFoundError

    calls: list[str] = []

    def missing(source: str, **kwargs: object) -> None:
        calls.append(source)
        response = httpx.Response(404, request=httpx.Request("GET", f"https://huggingface.co/api/models/{source}"))
        try:
            raise RepositoryNotFoundError("404 Client Error: Repository Not Found", response=response)
        except RepositoryNotFoundError as exc:
            raise OSError(f"{source} is not a local folder and is not a valid model identifier") from exc

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", missing)
    code, output = _main([*TRAIN[:2], "someorg/nomodel", "--output-dir", str(tmp_path / "x")], capsys, monkeypatch)
    assert code == 2 and calls == ["someorg/nomodel"], output
    assert re.search(
        r"^error: cannot load the tokenizer of someorg/nomodel: .*not a valid model identifier", output, re.M
    )


def test_overwrite_replaces_a_run_of_another_recipe_and_says_so(world: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "replaced"
    shutil.copytree(world["run"], run)
    (run / "recipe.yaml").write_text("training: {max_steps: 6}\n")  # not a run output: kept
    (run / "notes.txt").write_text("mine\n")
    done = subprocess.run(
        _train_cmd(run, world["data"], "--set", "model.tiny_layers=2", "--overwrite"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--overwrite: replacing the earlier run" in done.stdout and "model.tiny_layers 1 -> 2" in done.stdout
    assert f"removed {run / 'checkpoints'}" in done.stdout
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["recipe"]["model"]["tiny_layers"] == 2 and not info["resumed_from"]
    assert (run / "recipe.yaml").read_text() == "training: {max_steps: 6}\n" and (run / "notes.txt").is_file()


def test_resume_with_changes_extends_a_completed_run(world: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "extended"
    shutil.copytree(world["run"], run)
    done = subprocess.run(
        _train_cmd(run, world["data"], "--max-steps", "9", "--resume-with-changes"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["recipe_changes"] == [{"at_step": STEPS, "changes": {"training.max_steps": [STEPS, 9]}}]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 9


def test_data_changed_under_a_run_is_refused(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming with the same recipe on a file whose content changed: the split sha256 in run.json no longer matches.

    (A *completed* run asked for again is left alone without reading the data: nothing would be written.)
    """
    import shutil

    run = tmp_path / "datachanged"
    shutil.copytree(world["run"], run)
    data = tmp_path / "inputs" / "data.jsonl"
    data.parent.mkdir()
    lines = world["data"].read_text().splitlines(keepends=True)
    data.write_text("".join(lines))
    info = json.loads((run / "run.json").read_text())
    info["recipe"]["data"]["source"] = str(data)  # the copied run trained on this path
    info["status"] = "interrupted"  # and was stopped: the next train resumes it
    (run / "run.json").write_text(json.dumps(info))
    data.write_text("".join(reversed(lines)))  # same rows, other order: other splits
    before = _digest(run)
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={data}"]
    code, output = _main(argv, capsys, monkeypatch)
    assert code == 2 and re.search(r"^error: the data differs from what the run in .* trained on", output, re.M), output
    assert "Traceback" not in output and _digest(run) == before


def test_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """Issue 20 class 1: the 400-character --set of nested aliases grew `recipe show` to 3 GB in 40 s (then
    MemoryError, exit 1). Now it is refused before any value is built: exit 2, one line, within seconds, at the
    peak memory of an ordinary command. The peak is the child's own VmHWM (rusage would count the pages of this
    pytest process that the child shared before exec), written at exit by a wrapper around the entry point."""
    peak_file = tmp_path / "peak"
    wrapper = (
        "import atexit, pathlib, sys\n"
        "def peak():\n"
        "    status = pathlib.Path('/proc/self/status').read_text()\n"
        "    line = next(l for l in status.splitlines() if l.startswith('VmHWM:'))\n"
        f"    pathlib.Path({str(peak_file)!r}).write_text(line.split()[1])\n"
        "atexit.register(peak)\n"
        "from sqlmaster.cli import main\n"
        "sys.argv = ['sqlmaster', *sys.argv[1:]]\n"
        "main()\n"
    )
    cmd = [sys.executable, "-c", wrapper, "recipe", "show", "--set", f"model.target_modules={_alias_bomb()}"]
    started = time.monotonic()
    done = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    err = done.stderr
    assert done.returncode == 2, err
    assert "Traceback" not in err and err.splitlines() == [err.strip()] and err.startswith("error: "), err
    assert "expands to more than 100,000 values" in err
    assert elapsed < 30, elapsed
    peak_mb = int(peak_file.read_text()) / 1024
    assert peak_mb < 200, f"peak {peak_mb:.0f} MB"


# --- issue 20: damaged records, owners, processes that outlive their parent -----------------------------------

DAMAGED = {
    "base_model a string": ("base_model", "tiny", r"base_model is a string, not an object"),
    "recipe a list": ("recipe", [1, 2], r"recipe is a list, not an object"),
    "recipe section a number": ("recipe", {"training": 3}, r"recipe\.training is a number, not an object"),
    "data.sha256 a string": ("data", {"sha256": "abc"}, r"data\.sha256 is a string, not an object"),
    "recipe_changes an object": ("recipe_changes", {"a": 1}, r"recipe_changes is an object, not a list"),
    "resumed_from a string": ("resumed_from", "checkpoint-3", r"resumed_from is a string, not a list"),
    "status a number": ("status", 3, r"status is a number, not a string"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_run_record_is_one_error_line(
    world: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """run.json with wrong types (issue 20 class 7: five variants were an AttributeError traceback)."""
    import shutil

    key, value, pattern = DAMAGED[name]
    run = tmp_path / "damaged"
    shutil.copytree(world["run"], run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, key: value}))
    before = _digest(run)
    code, output = _main(
        [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}"], capsys, monkeypatch
    )
    assert code == 2, output[-2000:]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(rf"run\.json is damaged: {pattern}", errors[0]), output[-2000:]
    assert _digest(run) == before


def test_a_stale_running_record_is_noticed_and_continued(
    world: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """run.json says running but nobody holds the folder (its trainer was SIGKILLed): said so, then resumed."""
    import logging
    import shutil

    run = tmp_path / "stale"
    shutil.copytree(world["run"], run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}", "--max-steps", str(STEPS + 1)]
    with caplog.at_level(logging.WARNING, logger="sqlmaster.train"):
        code, output = _main([*argv, "--resume-with-changes"], capsys, monkeypatch)
    assert code == 0, output[-2000:]
    assert "says running, but no process holds" in caplog.text + output
    assert json.loads((run / "run.json").read_text())["status"] == "completed"


def _wait_for(path: Path, proc: subprocess.Popen[str], within: float = 300) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear within {within:.0f} s"
        time.sleep(0.05)


def test_one_owner_sigint_recorded_as_sigint_and_kill_9_leaves_no_trainer(
    world: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 20 classes 4, 6 and 9 on a real two-process run (torchrun + 2 workers):
    - a second `train` into the folder while the first runs: exit 2 naming the first's pid, nothing changed;
    - Ctrl-C (SIGINT) to the first: run.json says "interrupted by SIGINT" (torchrun stops its workers with
      SIGTERM, which was what got recorded), no process left;
    - `kill -9` of a resumed run's parent: torchrun and both workers go too (they die with their parent), the
      workers record "interrupted", and the folder is free again at once."""
    from sqlmaster.cores import available_cores

    if available_cores() < 2:
        pytest.skip(f"needs 2 cores for 2 training processes; this process may use {available_cores()}")
    run = tmp_path / "owned"
    # Far more steps than the test waits for: a process that survived would still be training, not finished.
    extra = ["--max-steps", "100000", "--set", "training.save_steps=3", "--set", "training.cpu_processes=2"]
    first = subprocess.Popen(
        _train_cmd(run, world["data"], *extra), env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(run / "checkpoints" / "checkpoint-3" / "COMPLETE", first)
        second = subprocess.run(
            _train_cmd(run, world["data"], *extra), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"in use by another sqlmaster command (pid {first.pid}" in errors[0], errors
        assert "Traceback" not in second.stderr
        below = descendants(first.pid)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 130, err[-3000:]
        assert "Traceback" not in err and "interrupted by SIGINT" in err, err[-3000:]
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "interrupted" and info["error"] == "interrupted by SIGINT", info.get("error")
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in below if alive(pid)]
    finally:
        first.kill()

    survivors: set[int] = set()
    resumed = subprocess.Popen(
        _train_cmd(run, world["data"], *extra), env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        last = max(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))
        _wait_for(run / "checkpoints" / f"checkpoint-{last + 3}" / "COMPLETE", resumed)
        survivors = descendants(resumed.pid)
        assert len(survivors) >= 3, survivors  # torchrun and two workers
        resumed.kill()
        resumed.wait()
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in survivors) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in survivors if alive(pid)], "training processes outlived `kill -9` of their parent"
        from sqlmaster.ownership import holder_of

        assert holder_of(run) is None
        assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    finally:
        resumed.kill()
        for pid in survivors | descendants(resumed.pid):  # reparented ones too, if the test failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _copy_run(world: dict[str, Path], tmp_path: Path, name: str) -> Path:
    import shutil

    run = tmp_path / name
    shutil.copytree(world["run"], run)
    return run


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BROKEN_LATEST = {
    "weights truncated": (lambda ckpt: _truncate(ckpt / "model.safetensors"), r"model\.safetensors is unreadable"),
    "weights missing": (lambda ckpt: (ckpt / "model.safetensors").unlink(), r"it holds no weights"),
    "optimizer missing": (lambda ckpt: (ckpt / "optimizer.pt").unlink(), r"optimizer\.pt is missing"),
    "optimizer truncated": (lambda ckpt: _truncate(ckpt / "optimizer.pt"), r"optimizer\.pt is unreadable"),
}


@pytest.mark.parametrize("name", list(BROKEN_LATEST))
def test_resume_falls_back_to_the_newest_usable_checkpoint(
    world: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    """Issue 20 class 5: the latest checkpoint is damaged. It was resumed from (tracebacks from both ranks, run.json
    rewritten to failed) or, without optimizer.pt, silently with a fresh optimizer. Now the newest usable one is
    picked, saying why, and the damaged one is set aside."""
    import logging

    damage, why = BROKEN_LATEST[name]
    run = _copy_run(world, tmp_path, "fallback")
    damage(run / "checkpoints" / "checkpoint-6")
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}", "--max-steps", "8"]
    with caplog.at_level(logging.WARNING, logger="sqlmaster.train"):
        code, output = _main([*argv, "--resume-with-changes"], capsys, monkeypatch)
    assert code == 0 and "Traceback" not in output, output[-3000:]
    assert re.search(rf"checkpoint-6 cannot be resumed from \({why}.*resuming from .*checkpoint-3", caplog.text)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["resumed_from"] == [str(run / "checkpoints" / "checkpoint-3")]
    assert (run / "checkpoints" / "invalid-checkpoint-6").is_dir()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 8


def test_no_usable_checkpoint_is_refused_and_changes_nothing(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy_run(world, tmp_path, "nothing-usable")
    for step in (3, 6):
        (run / "checkpoints" / f"checkpoint-{step}" / "model.safetensors").unlink()
    before = _digest(run)
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}", "--max-steps", "8"]
    code, output = _main([*argv, "--resume-with-changes"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "can be resumed from (checkpoint-6: it holds no weights" in errors[0], output
    assert _digest(run) == before


def test_a_resume_that_fails_before_its_first_step_leaves_run_json_as_it_was(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint whose files pass the checks but cannot be loaded (scheduler.pt is garbage): one error line,
    exit 2 (the same checkpoint fails again), and the completed run's run.json and outputs byte-identical."""
    run = _copy_run(world, tmp_path, "failed-resume")
    (run / "checkpoints" / "checkpoint-6" / "scheduler.pt").write_bytes(b"not a torch file at all")
    record, metrics = (run / "run.json").read_bytes(), (run / "metrics.json").read_bytes()
    outputs = _digest(run / "model")
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}", "--max-steps", "8"]
    code, output = _main([*argv, "--resume-with-changes"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.search(r"cannot resume from .*checkpoint-6: .*was left as it was", errors[0])
    assert (run / "run.json").read_bytes() == record and (run / "metrics.json").read_bytes() == metrics
    assert _digest(run / "model") == outputs


def test_a_full_disk_while_checkpointing_is_one_line_exit_1_and_keeps_the_last_checkpoint(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while checkpoint-6 is written (safetensors' own error, as observed): exit 1 (a Job retries
    once space is freed), one line, checkpoint-3 complete and untouched, run.json "failed" with the cause."""
    import transformers.modeling_utils as modeling_utils
    from safetensors import SafetensorError

    real = modeling_utils.safe_save_file
    saved: list[str] = []

    def fills_up(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        saved.append(filename)
        if "checkpoint-6" in filename:
            raise SafetensorError(
                "Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                'message: "No space left on device" })'
            )
        real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(modeling_utils, "safe_save_file", fills_up)
    run = tmp_path / "full"
    code, output = _main(
        [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}"], capsys, monkeypatch
    )
    assert code == 1 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no space left on the device" in errors[0] and "(checkpoint-3) is intact" in errors[0]
    from sqlmaster.train.checkpoints import problem_with

    assert (run / "checkpoints" / "checkpoint-3" / "COMPLETE").is_file()
    assert problem_with(run / "checkpoints" / "checkpoint-3") is None
    assert not (run / "checkpoints" / "checkpoint-6" / "COMPLETE").exists()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["error"]


def test_max_length_that_drops_every_example_is_one_error_line(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """training.max_length=1: every example lost all its SQL to truncation and was dropped; the Trainer then
    failed with an IndexError (exit 1, so a Job retried it). Now: exit 2, one line, no run record."""
    run = tmp_path / "short"
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}", "--set", "training.max_length=1"]
    code, output = _main(argv, capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "within training.max_length=1 tokens" in errors[0], output[-2000:]
    assert not (run / "run.json").exists()


def test_overwrite_removes_an_eval_link_as_a_link(world: dict[str, Path], tmp_path: Path) -> None:
    """--overwrite when eval/ is a symlink (to another disk, say): OSError, and the old run half removed. Now the
    outputs go all or nothing, the link is removed as a link and what it points to is left alone."""
    import shutil

    run = tmp_path / "linked"
    shutil.copytree(world["run"], run)
    elsewhere = tmp_path / "other-disk" / "eval"
    elsewhere.mkdir(parents=True)
    (elsewhere / "keep.json").write_text('{"mine": true}')
    (run / "eval").symlink_to(elsewhere, target_is_directory=True)
    done = subprocess.run(
        _train_cmd(run, world["data"], "--set", "model.tiny_layers=2", "--overwrite"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"removed {run / 'eval'} (a link to {elsewhere}, which is left alone)" in done.stdout
    assert not (run / "eval").exists() and (elsewhere / "keep.json").read_text() == '{"mine": true}'
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["recipe"]["model"]["tiny_layers"] == 2
    assert not list(run.glob(".overwritten-*"))


def test_overwrite_that_cannot_remove_everything_removes_nothing(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One output cannot be moved (here: renaming metrics.json fails): every other output is put back."""
    import shutil

    run = tmp_path / "stuck"
    shutil.copytree(world["run"], run)
    before = _digest(run)
    real_rename = Path.rename

    def rename(self: Path, target: Any) -> Any:
        if self.name == "metrics.json":
            raise PermissionError(1, "Operation not permitted")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    argv = [*TRAIN, str(run), *_sets(MICRO), "--set", f"data.source={world['data']}", "--set", "model.tiny_layers=2"]
    code, output = _main([*argv, "--overwrite"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "nothing was removed" in errors[0], output[-2000:]
    assert _digest(run) == before
