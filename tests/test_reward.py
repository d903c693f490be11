"""The GRPO execution reward: match 1.0, runs-but-wrong the credit, anything else 0; hostile SQL never ends a call;
a prompt's databases are built once for all of its samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sqlmaster.errors import ConfigError
from sqlmaster.evaluate import execution
from sqlmaster.evaluate.score import Score
from sqlmaster.prompt import get_template
from sqlmaster.train.reward import EXECUTES_CREDIT, MATCH_REWARD, ExecutionReward, RewardStats, reward_of
from tests.test_score_hostile import HOSTILE

CTX = "CREATE TABLE t (name VARCHAR, age INTEGER)"
GOLD = "SELECT name FROM t WHERE age > 30"
OTHER_CTX = "CREATE TABLE head (head_id INTEGER, born_state VARCHAR)"
OTHER_GOLD = "SELECT COUNT(*) FROM head WHERE born_state = 'California'"


def _call(
    reward: ExecutionReward, completions: list[Any], gold: str = GOLD, ctx: str = CTX, **kwargs: Any
) -> list[float]:
    """Called as TRL's GRPOTrainer calls a reward function: every other dataset column comes as a keyword."""
    n = len(completions)
    return reward(
        prompts=["prompt"] * n,
        completions=completions,
        completion_ids=[[1, 2]] * n,
        answer=[gold] * n,
        context=[ctx] * n,
        question=["q"] * n,
        trainer_state=None,
        **kwargs,
    )


def test_match_executes_and_error_in_process() -> None:
    reward = ExecutionReward(workers=0)
    completions = [
        GOLD,  # the gold itself
        "SELECT name FROM t WHERE 30 < age",  # another query with the same answer
        "SELECT name FROM t WHERE age >= 30",  # runs, answers something else (a boundary row differs)
        "SELECT name FROM t",  # runs, wrong
        "SELEC name FROM t",  # syntax error
        "SELECT nom FROM t",  # no such column
        "",  # nothing
    ]
    rewards = _call(reward, completions)
    assert rewards == [MATCH_REWARD, MATCH_REWARD, EXECUTES_CREDIT, EXECUTES_CREDIT, 0.0, 0.0, 0.0]
    stats = reward.last
    assert isinstance(stats, RewardStats) and stats.n == 7
    assert stats.match_rate == pytest.approx(2 / 7) and stats.execution_rate == pytest.approx(4 / 7)
    assert stats.mean_reward == pytest.approx((2 + 2 * EXECUTES_CREDIT) / 7)
    assert stats.gold_invalid == 0 and stats.worker_failures == 0 and stats.rewards_per_s > 0
    assert stats.as_metrics()["reward/match_rate"] == stats.match_rate
    logged: dict[str, float] = {}
    _call(reward, completions[:1], log_metric=logged.__setitem__)  # as TRL's GRPOTrainer passes it
    assert logged["reward/mean_reward"] == MATCH_REWARD and logged["reward/execution_rate"] == 1.0
    assert set(logged) == set(stats.as_metrics())


def test_template_cuts_the_sql_as_evaluation_does_and_chat_completions() -> None:
    reward = ExecutionReward(get_template("original"), workers=0)
    completions = [
        f"{GOLD};```",  # the original template's completion
        f"{GOLD};``` and an explanation",
        [{"role": "assistant", "content": f"{GOLD};```"}],  # conversational format: the last message
        "I don't know```",
    ]
    assert _call(reward, completions) == [MATCH_REWARD, MATCH_REWARD, MATCH_REWARD, 0.0]


def test_invalid_gold_gives_zero_to_every_sample() -> None:
    reward = ExecutionReward(workers=0)
    assert _call(reward, ["SELECT name FROM t", "SELECT 1"], gold="SELECT missing FROM t") == [0.0, 0.0]
    assert reward.last is not None and reward.last.gold_invalid == 2


def test_missing_columns_and_bad_credit_are_configuration_errors() -> None:
    reward = ExecutionReward(workers=0)
    with pytest.raises(ConfigError, match="'context'"):
        reward(["p"], [GOLD], answer=[GOLD])
    with pytest.raises(ConfigError, match="'answer'"):
        reward(["p"], [GOLD], context=[CTX])
    with pytest.raises(ConfigError, match="rows for"):
        reward(["p", "p"], [GOLD, GOLD], answer=[GOLD], context=[CTX])
    with pytest.raises(ConfigError, match="credit"):
        ExecutionReward(credit=1.0)
    runs_but_wrong = Score(
        execution_match=False, exact_match=None, executes=True, gold_valid=True, gold_nontrivial=True, error=None
    )
    assert reward_of(runs_but_wrong, credit=0.25) == 0.25


def _counting_prepare(log: Path) -> Any:
    real = execution.prepare_example

    def prepare(context: str, gold: str, *args: Any, **kwargs: Any) -> Any:
        with log.open("a") as handle:  # a file: the count must survive the forked workers
            handle.write(gold + "\n")
        return real(context, gold, *args, **kwargs)

    return prepare


def test_gold_databases_built_once_per_prompt_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "built.txt"
    monkeypatch.setattr(execution, "prepare_example", _counting_prepare(log))
    reward = ExecutionReward(workers=0)
    gold = "SELECT age FROM t WHERE name = 'only here'"  # a prompt no other test scores in this process's caches
    samples = [gold, "SELECT name FROM t", "SELECT age FROM t", "SELEC x"] * 2  # 8 samples of one prompt
    first = _call(reward, samples, gold=gold)
    second = _call(reward, samples, gold=gold)  # the next step sees the prompt again
    assert first == second == [MATCH_REWARD, EXECUTES_CREDIT, EXECUTES_CREDIT, 0.0] * 2
    assert log.read_text().splitlines() == [gold]


def test_gold_databases_built_once_per_prompt_in_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "built.txt"
    monkeypatch.setattr(execution, "prepare_example", _counting_prepare(log))
    samples = [GOLD, "SELECT name FROM t", "SELECT age FROM t", "SELEC x"] * 2
    other = [OTHER_GOLD, "SELECT COUNT(*) FROM head", "SELECT 1", "SELECT born FROM head"] * 2
    n = len(samples)
    # Interleaved, as if TRL had shuffled them: the reward groups each prompt's samples itself.
    completions = [c for pair in zip(samples, other, strict=True) for c in pair]
    answer = [g for _ in range(n) for g in (GOLD, OTHER_GOLD)]
    context = [c for _ in range(n) for c in (CTX, OTHER_CTX)]
    with ExecutionReward(workers=2, method="fork") as reward:
        first = reward(["p"] * 2 * n, completions, answer=answer, context=context)
        second = reward(["p"] * 2 * n, completions, answer=answer, context=context)
    assert first == second
    assert first[:2] == [MATCH_REWARD, MATCH_REWARD] and first[2:4] == [EXECUTES_CREDIT, EXECUTES_CREDIT]
    assert first[6:8] == [0.0, 0.0]  # "SELEC x"; "SELECT born FROM head" (no such column)
    built = log.read_text().splitlines()
    # Once per prompt for its 8 samples, on both calls: the same batch goes to the same workers.
    assert sorted(built) == sorted([GOLD, OTHER_GOLD]), built


# The hostile corpus of the scorer's tests, as completions. The bombs, ATTACH and a second statement must give
# 0; the rest of the corpus (a cartesian product, zeroblob rows) runs within its limits and may earn the credit.
MUST_BE_ZERO = (
    "printf bomb",
    "40 instr on 1 MB strings",
    "runaway recursive CTE",
    "2 MB prediction",
    "deep nesting",
    "ATTACH",
    "two statements",
)
# The reward's budgets are 1 s per statement: ~10 s on an idle 2-core machine (two CPU bombs, a runaway CTE and a
# 2 MB parse). The bound is the scorer's own for its hostile corpus (tests/test_score_hostile.py): a loaded, niced
# runner stretches each CPU second many times over in wall time (33 s measured here at load 12 on 2 cores).
HOSTILE_BOUND_S = 180.0


def test_hostile_completions_get_zero_and_the_call_completes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where an ATTACH would create its file
    completions = [*HOSTILE.values(), GOLD, "SELECT name FROM t"]
    start = time.monotonic()
    with ExecutionReward(workers=2) as reward:
        rewards = _call(reward, completions)
        again = _call(reward, [GOLD, "SELECT name FROM t"])  # the pool survived its killed workers
    elapsed = time.monotonic() - start
    by_name = dict(zip(HOSTILE, rewards, strict=False))
    assert {name: by_name[name] for name in MUST_BE_ZERO} == dict.fromkeys(MUST_BE_ZERO, 0.0)
    assert all(r in (0.0, EXECUTES_CREDIT) for r in by_name.values())
    assert rewards[-2:] == [MATCH_REWARD, EXECUTES_CREDIT] and again == [MATCH_REWARD, EXECUTES_CREDIT]
    assert not (tmp_path / "escape.db").exists()
    assert elapsed < HOSTILE_BOUND_S


def test_raw_multi_statement_is_zero_but_templated_is_cut() -> None:
    raw = ExecutionReward(workers=0)
    assert _call(raw, [f"{GOLD}; DROP TABLE t"]) == [0.0]  # the sandbox refuses a second statement
    templated = ExecutionReward(get_template("compact"), workers=0)
    # extract_sql cuts at the first ';' as evaluation does: the SQL scored is the gold, the DROP never runs.
    assert _call(templated, [f"{GOLD}; DROP TABLE t"]) == [MATCH_REWARD]


def test_the_reward_values_are_the_recipe_keys_defaults() -> None:
    from sqlmaster.config import GrpoConfig

    assert (MATCH_REWARD, EXECUTES_CREDIT) == (GrpoConfig().match_reward, GrpoConfig().executes_credit) == (1.0, 0.1)


@pytest.mark.parametrize(
    ("cores", "local_processes", "workers"), [(2, None, 2), (2, "2", 1), (1, None, 1), (16, "8", 2)]
)
def test_scorer_workers_share_the_cores_with_the_training_processes(
    monkeypatch: pytest.MonkeyPatch, cores: int, local_processes: str | None, workers: int
) -> None:
    """GRPO in two processes on 2 cores starts one scorer worker in each, not two (four processes on two cores);
    never none, since the workers are the sandbox."""
    from sqlmaster import cores as machine
    from sqlmaster.train import reward

    monkeypatch.setattr(machine, "available_cores", lambda: cores)
    if local_processes is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    assert reward.default_workers() == workers
    assert ExecutionReward().workers == workers  # the default an unconfigured reward takes (no process started yet)
