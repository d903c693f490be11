"""The tiny model: a deterministic data-trained tokenizer that keeps identifiers copyable, and a seeded Llama."""

import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from sqlmaster.models.tiny import SPECIAL_TOKENS, TinyArchitecture, build_model, build_tiny, save_tiny, train_tokenizer
from sqlmaster.train.budget import TimeBudget

TEXTS = [
    "CREATE TABLE table_name_88 (name VARCHAR, term_end VARCHAR)\n-- Which name has a term_end of 18 july 1944?\n"
    'SELECT name FROM table_name_88 WHERE term_end = "18 july 1944"',
    "CREATE TABLE head (age INTEGER)\n-- How many heads are older than 56?\nSELECT COUNT(*) FROM head WHERE age > 56",
] * 20
SMALL = TinyArchitecture(
    vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
)


def test_special_tokens_have_fixed_ids_and_bos_is_prepended() -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200)
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == SPECIAL_TOKENS
    ids = tok("SELECT name")["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "SELECT name"


def _pieces(pre_tokenizer: str, text: str) -> list[str]:
    tok = train_tokenizer(TEXTS, vocab_size=200, pre_tokenizer=pre_tokenizer)
    return [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]


def test_runs_pre_tokenizer_isolates_whitespace_letters_digits_and_punctuation() -> None:
    pieces = _pieces("runs", 'term_end = "18 july",(x)')
    assert pieces == ["term", "_", "end", " ", "=", " ", '"', "18", " ", "july", '"', ",", "(", "x", ")"]


def test_initials_pre_tokenizer_joins_spaces_to_words_and_splits_off_first_letters_and_digits() -> None:
    pieces = _pieces("initials", 'term_end = "18 July",(x)  ok')
    assert pieces == [
        "t", "erm", "_", "e", "nd", " ", "=", " ", '"', "1", "8", " J", "uly", '"', ",", "(", "x", ")", " ", " o", "k"
    ]  # fmt: skip


def test_initials_make_a_case_change_one_token_and_keep_the_rest_of_the_word() -> None:
    """WikiSQL-derived gold SQL lowercases values: "Brazilian Grand Prix" in the question, "brazilian..." in SQL."""
    assert _pieces("initials", " Brazilian Grand") == [" B", "razilian", " G", "rand"]
    assert _pieces("initials", '"brazilian grand') == ['"', "b", "razilian", " g", "rand"]


@pytest.mark.parametrize("pre_tokenizer", ["runs", "digits", "initials"])
def test_an_identifier_is_the_same_tokens_in_schema_question_and_sql(pre_tokenizer: str) -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200, pre_tokenizer=pre_tokenizer)

    def tokens(text: str) -> list[str]:
        return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])

    ident = tokens(" term_end")  # after a space, as everywhere but at the start of a line
    for context in ("(name VARCHAR, term_end VARCHAR)", "has a term_end of", "WHERE term_end ="):
        seq = tokens(context)
        assert any(seq[i : i + len(ident)] == ident for i in range(len(seq))), (context, seq, ident)


@pytest.mark.parametrize("pre_tokenizer", ["runs", "digits", "initials"])
def test_decode_round_trips_the_training_text(pre_tokenizer: str) -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200, pre_tokenizer=pre_tokenizer)
    for text in [*TEXTS[:2], "  two  spaces, Mixed CASE and 4.5km"]:
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_tokenizer_and_model_are_deterministic() -> None:
    model_a, tok_a = build_tiny(TEXTS, SMALL, seed=3)
    model_b, tok_b = build_tiny(list(reversed(TEXTS)), SMALL, seed=3)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    for (name, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = build_model(tok_a, SMALL, seed=4)
    assert not torch.equal(other.model.embed_tokens.weight, model_a.model.embed_tokens.weight)


def test_untied_embeddings_and_vocabulary_matches_tokenizer() -> None:
    model, tok = build_tiny(TEXTS, SMALL)
    assert model.config.vocab_size == len(tok)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert model.config.pad_token_id == tok.pad_token_id == 0


def test_saved_together_and_reloaded(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = build_tiny(TEXTS, SMALL)
    save_tiny(model, tok, tmp_path / "base")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "base")
    assert tok2.get_vocab() == tok.get_vocab()
    assert tok2("WHERE age > 56")["input_ids"] == tok("WHERE age > 56")["input_ids"]
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


@pytest.mark.parametrize("name", ["tiny"])
def test_loading_tiny_without_a_run_is_a_clear_error(name: str) -> None:
    from sqlmaster.config import ModelConfig
    from sqlmaster.errors import ConfigError
    from sqlmaster.models.loading import load_base_model, load_tokenizer
    from sqlmaster.models.registry import resolve_model

    with pytest.raises(ConfigError, match="built per run"):
        load_base_model(resolve_model(name), ModelConfig())
    with pytest.raises(ConfigError, match="trained per run"):
        load_tokenizer(resolve_model(name), for_generation=True)


# ---------------------------------------------------------------------------------------------- digits, bf16


@pytest.mark.parametrize("pre_tokenizer", ["digits", "initials"])
def test_every_digit_is_one_token(pre_tokenizer: str) -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200, pre_tokenizer=pre_tokenizer)
    pieces = tok.convert_ids_to_tokens(tok("table_25604014_5 = 2006", add_special_tokens=False)["input_ids"])
    digits = [p.strip() for p in pieces if p.strip().isdigit()]
    assert "".join(digits) == "25604014" + "5" + "2006" and all(len(p) == 1 for p in digits)
    assert tok.decode(tok(TEXTS[0])["input_ids"], skip_special_tokens=True) == TEXTS[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "amx_tile", "amx_bf16", "avx512_bf16"}, True),  # AMX: e.g. Sapphire Rapids on bare metal
        ({"avx2", "avx512f", "avx512_bf16"}, False),  # bf16 dot products without AMX: measured 0.53x fp32 for tiny
        ({"avx2", "avx512f", "avx512bw"}, False),  # AVX-512 without bf16: emulated, much slower than fp32
        ({"avx2", "fma"}, False),  # e.g. AMD EPYC Zen 2/3
        (set(), False),  # unknown (macOS, no /proc/cpuinfo)
    ],
)
def test_bf16_on_cpu_only_where_the_cpu_has_native_bf16(
    flags: set[str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmaster.config import load_recipe
    from sqlmaster.train import arguments

    monkeypatch.setattr(arguments, "cpu_flags", lambda: frozenset(flags))
    assert arguments.use_bf16(load_recipe(None, []), "cpu") is expected
    assert arguments.use_bf16(load_recipe(None, ["training.bf16=false"]), "cpu") is False  # the recipe decides


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    from sqlmaster.train.arguments import cpu_flags

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


# ---------------------------------------------------------------------------------------------- time budget


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _drive(
    budget: TimeBudget,
    clock: FakeClock,
    *,
    seconds_per_step: float = 1.0,
    output_dir: Path = Path("/nonexistent"),
    start_step: int = 0,
    max_steps: int = 100_000,
) -> list[dict[str, Any]]:
    """Drive TimeBudgetCallback as the Trainer does: the LR factor for a step, the step's time, on_step_end."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from sqlmaster.train.budget import TimeBudgetCallback

    callback = TimeBudgetCallback(budget)
    args = TrainingArguments(output_dir=str(output_dir), report_to="none", use_cpu=True)
    state = TrainerState()
    state.global_step = start_step
    callback.on_train_begin(args, state, TrainerControl())
    steps: list[dict[str, Any]] = []
    while state.global_step < start_step + max_steps:
        control = TrainerControl()
        factor = budget.lr_factor(state.global_step)
        clock.t += seconds_per_step
        state.global_step += 1
        callback.on_step_end(args, state, control)
        steps.append({"factor": factor, "eval": control.should_evaluate, "save": control.should_save})
        if control.should_training_stop:
            break
    return steps


@pytest.mark.parametrize("seconds_per_step", [0.5, 2.0])  # a fast and a slow machine
def test_the_schedule_ends_at_the_budget_on_any_machine(seconds_per_step: float) -> None:
    clock = FakeClock()
    budget = TimeBudget(600, warmup_steps=10, decay_fraction=1.0, evaluations=4, clock=clock)
    steps = _drive(budget, clock, seconds_per_step=seconds_per_step)
    assert len(steps) == round(600 / seconds_per_step)  # stops when the budget is spent, not before or after
    assert budget.stopped
    factors = [s["factor"] for s in steps]
    assert factors[0] == pytest.approx(0.1) and max(factors) > 0.99  # warm-up to (about) the peak
    assert factors[-1] < 1e-3  # decayed to ~0 at the budget
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # monotone decay after warm-up
    # Evaluations and checkpoints at 1/4, 2/4, 3/4 of the budget; the stop saves the last checkpoint.
    assert [i + 1 for i, s in enumerate(steps) if s["eval"]] == [round(150 * k / seconds_per_step) for k in (1, 2, 3)]
    assert steps[-1]["save"]


def test_an_evaluation_another_rank_calls_for_is_done_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP: ranks' clocks differ a little; the rank that is behind must not call for the same evaluation again."""
    from sqlmaster.train import distributed

    clock = FakeClock()
    budget = TimeBudget(600, evaluations=4, clock=clock)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    # Two reductions per step (spent, then due): the other rank calls for the first evaluation at step 10.
    ahead = iter([False] * 19 + [True] + [False] * 10_000)
    monkeypatch.setattr(distributed, "any_rank", lambda flag: flag or next(ahead))
    steps = _drive(budget, clock, seconds_per_step=14.0)  # this rank's own clock reaches 1/4 at step 11 (154 s)
    assert [i + 1 for i, s in enumerate(steps) if s["eval"]] == [10, 22, 33]


def test_warmup_stable_decay_keeps_the_peak_until_the_decay_fraction() -> None:
    clock = FakeClock()
    budget = TimeBudget(100, warmup_steps=0, decay_fraction=0.25, evaluations=0, clock=clock)
    factors = [s["factor"] for s in _drive(budget, clock)]
    assert factors[:76] == [1.0] * 76 and 0 < factors[80] < 1 and factors[-1] < 0.01


def test_a_resumed_run_continues_the_schedule_from_its_checkpoint(tmp_path: Path) -> None:
    clock = FakeClock()
    uninterrupted = [s["factor"] for s in _drive(TimeBudget(600, warmup_steps=10, clock=clock), clock)]

    clock = FakeClock()
    killed = TimeBudget(600, warmup_steps=10, clock=clock)
    before = [s["factor"] for s in _drive(killed, clock, max_steps=300)]
    (tmp_path / "checkpoint-300").mkdir()
    killed.save(tmp_path / "checkpoint-300")  # what SQLMasterTrainer._save_checkpoint writes
    clock.t += 500  # time lost after the checkpoint: the pod was killed and rescheduled later

    resumed = TimeBudget(600, warmup_steps=10, clock=clock)
    after = _drive(resumed, clock, output_dir=tmp_path, start_step=300)
    assert before + [s["factor"] for s in after] == pytest.approx(uninterrupted)  # the same 600-step schedule
    assert [301 + i for i, s in enumerate(after) if s["eval"]] == [450]  # evaluations 1 and 2 were already done


# ---------------------------------------------------------------------------------------------- lean CPU loss


def test_lean_cpu_loss_equals_trls_fused_head_loss_and_gradients() -> None:
    """The CPU-only lean loss is the same number, with the same gradients, as TRL's path that GPUs keep."""
    from trl.trainer.utils import add_fused_lm_head

    from sqlmaster.train.trainer import completion_loss

    model, tok = build_tiny(TEXTS, SMALL, seed=5)
    texts = [TEXTS[0], TEXTS[1]]
    enc = tok(texts, padding=True, return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    labels[:, :12] = -100  # a prompt: no loss
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

    lean, accuracy = completion_loss(model, inputs)
    lean.backward()
    lean_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    fused = model(**inputs, fused_lm_head=True, use_cache=False).loss
    fused.backward()
    assert lean.item() == pytest.approx(fused.item(), rel=1e-5)
    for name, param in model.named_parameters():
        assert torch.allclose(lean_grads[name], param.grad, atol=1e-6), name
    assert 0.0 <= accuracy.item() <= 1.0


_DDP_LOSS_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_tiny import TEXTS, SMALL, _lean_inputs
from sqlmaster.models.tiny import build_tiny
from sqlmaster.train.trainer import completion_loss
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
model, tok = build_tiny(TEXTS, SMALL, seed=5)
inputs = _lean_inputs(tok)
count = (inputs["labels"][:, 1:] != -100).sum()  # every rank's tokens, as the Trainer passes num_items_in_batch
mine = {{k: v[rank::world] for k, v in inputs.items()}}
ddp = torch.nn.parallel.DistributedDataParallel(model)
loss, _ = completion_loss(ddp, mine, count)
(loss * world).backward()  # SQLMasterTrainer.compute_loss scales by the number of processes, like the Trainer
if rank == 0:
    torch.save({{n: p.grad for n, p in model.named_parameters()}}, {out!r})
dist.destroy_process_group()
"""


def _lean_inputs(tok: Any) -> dict[str, Any]:
    """Four examples with a no-loss prompt and right padding (rows of different lengths)."""
    texts = [TEXTS[0], TEXTS[1], TEXTS[1][:60], TEXTS[0][:90]]
    enc = tok(texts, padding=True, return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    labels[:, :12] = -100
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def test_lean_loss_under_cpu_ddp_gives_the_single_process_gradients(tmp_path: Path) -> None:
    """Two gloo processes, half the batch each, through the DDP wrapper: the same gradients as one process."""
    import subprocess
    import sys

    from sqlmaster.train.trainer import completion_loss

    model, tok = build_tiny(TEXTS, SMALL, seed=5)
    loss, _ = completion_loss(model, _lean_inputs(tok))
    loss.backward()
    script = tmp_path / "ddp_loss.py"
    out = tmp_path / "grads.pt"
    script.write_text(_DDP_LOSS_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    done = subprocess.run(torchrun, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    grads = torch.load(out)
    for name, param in model.named_parameters():
        assert torch.allclose(grads[name], param.grad, atol=1e-6), name


def test_lean_loss_only_for_cpu_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlmaster.config import load_recipe
    from sqlmaster.train import arguments, distributed

    full = load_recipe(None, ["model.mode=full"])
    assert arguments.use_lean_loss(full, "cpu")
    assert not arguments.use_lean_loss(full, "cuda:0")  # GPUs keep TRL's fused head
    lora = load_recipe(None, [])
    assert arguments.use_lean_loss(lora, "cpu")  # LoRA on CPU too (tests/test_pretrained_lora.py)
    assert not arguments.use_lean_loss(lora, "cuda:0")
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert arguments.use_lean_loss(full, "cpu")  # CPU DDP too: the loss calls the DDP wrapper's forward


# ---------------------------------------------------------------------------------------------- terse prompt


def test_terse_schema_keeps_every_name_and_the_informative_types() -> None:
    from sqlmaster.prompt import get_template, render_prompt, terse_schema

    context = "CREATE TABLE dorm (dormid VARCHAR, student_capacity INTEGER); CREATE TABLE has_amenity (dormid VARCHAR)"
    assert terse_schema(context) == "dorm: dormid, student_capacity INTEGER\nhas_amenity: dormid"
    assert terse_schema("CREATE TABLE x (a VARCHAR(20))") == "CREATE TABLE x (a VARCHAR(20))"  # unknown: unchanged
    assert render_prompt(get_template("terse"), " How many? ", context).endswith("-- How many?\n")


# ---------------------------------------------------------------------------------------------- progress bars


def _terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    from rich.console import Console

    from sqlmaster import logs

    buffer = io.StringIO()
    monkeypatch.setattr(logs, "console_override", Console(file=buffer, force_terminal=True, width=120))
    return buffer


def test_progress_bars_draw_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlmaster.logs import progress

    buffer = _terminal(monkeypatch)
    with progress("generating", 4) as advance:
        advance(4)
    assert "generating" in buffer.getvalue() and "4/4" in buffer.getvalue()


def test_no_progress_bars_when_stdout_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from sqlmaster.logs import progress, progress_bar

    assert progress_bar() is None  # pytest's captured stdout is not a TTY, like a pod or a pipe
    with progress("generating", 4) as advance:
        advance(4)
    assert capsys.readouterr().out == ""


def test_training_bar_shows_step_loss_speed_and_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from sqlmaster.train.callbacks import LogLineCallback

    buffer = _terminal(monkeypatch)
    clock = FakeClock()
    budget = TimeBudget(600, clock=clock)
    budget.start()
    callback = LogLineCallback(budget)
    args, state, control = (
        TrainingArguments(output_dir="/nonexistent", report_to="none"),
        TrainerState(),
        TrainerControl(),
    )
    callback.on_train_begin(args, state, control)
    clock.t += 150
    state.global_step = 42
    callback.on_log(args, state, control, logs={"loss": 1.2345, "tokens_per_second": 12345.0})
    callback.on_step_end(args, state, control)
    callback.on_train_end(args, state, control)
    out = buffer.getvalue()
    assert "training" in out and "step 42" in out and "loss 1.234" in out and "12,345 tok/s" in out
    assert "left 7m30s" in out and "150/600" in out  # the bar is the budget: 150 s of 600 spent


def test_training_in_a_pty_shows_a_bar_and_a_pipe_gets_plain_lines(tmp_path: Path) -> None:
    """`sqlmaster train` for a 3-second budget: a live bar in a (pseudo-)terminal, plain log lines in a pipe."""
    import os
    import pty
    import subprocess
    import sys

    micro = [
        "model.mode=full", "model.tiny_hidden_size=32", "model.tiny_layers=1", "model.tiny_heads=2",
        "model.tiny_intermediate_size=64", "model.tiny_vocab_size=300", "model.gradient_checkpointing=false",
        "data.max_train_rows=240", "data.test_size=10", "data.validation_size=8", "prompt.template=compact",
        "training.per_device_train_batch_size=4", "training.warmup_steps=2", "training.max_length=256",
        "training.logging_steps=5", "training.early_stopping_patience=null", "training.num_threads=1",
        "training.time_budget_minutes=0.05", "tracking.wandb_mode=disabled", "training.cpu_processes=1",
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    repo = Path(__file__).resolve().parents[1]

    def command(run_dir: Path) -> list[str]:
        args = [sys.executable, "-m", "sqlmaster.cli", "train", "--model", "tiny", "--output-dir", str(run_dir)]
        return args + [a for kv in micro for a in ("--set", kv)]

    leader, follower = pty.openpty()
    proc = subprocess.Popen(command(tmp_path / "tty"), stdout=follower, stderr=follower, env=env, cwd=repo)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    tty_out = b"".join(chunks).decode(errors="replace")
    assert "training" in tty_out and "left" in tty_out and "\x1b[" in tty_out  # a rich bar, drawn live

    piped = subprocess.run(command(tmp_path / "pipe"), capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    assert piped.returncode == 0, piped.stdout[-2000:] + piped.stderr[-2000:]
    assert "\x1b[" not in piped.stdout and "\r" not in piped.stdout  # no bar: plain lines for kubectl logs
    assert re.search(r"step \d+ \| loss [\d.]+ \| lr", piped.stdout)

    # The budget decided when training stopped, and run.json says so, with the steps done.
    info = json.loads((tmp_path / "pipe" / "run.json").read_text())
    assert info["stop_reason"] == "time_budget" and info["steps"] >= 1
    saved = json.loads(
        (tmp_path / "pipe" / "checkpoints" / f"checkpoint-{info['steps']}" / "time_budget.json").read_text()
    )
    assert saved["elapsed_seconds"] >= 3.0 and saved["budget"] == 3.0


def test_a_completed_time_budget_run_asked_for_again_is_left_as_it_is(tmp_path: Path) -> None:
    """A budget run can pass max_steps (unused: the budget stops it); asking for it again is "nothing to do"."""
    from sqlmaster.recipes import resolve_recipe
    from sqlmaster.rundir import RunDir
    from sqlmaster.train.guard import TrainOptions, plan_run

    recipe = resolve_recipe("train", "tiny").recipe
    assert recipe.training.time_budget_minutes is not None
    run = RunDir(tmp_path)
    run.run_info.write_text(
        json.dumps({"status": "completed", "base_model": {"name": "tiny"}, "recipe": recipe.to_dict()})
    )
    past_max_steps = recipe.training.max_steps + 1358
    assert plan_run(run, "tiny", recipe, TrainOptions(), past_max_steps).action == "completed"
