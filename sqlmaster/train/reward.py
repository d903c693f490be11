"""The GRPO stage's reward: the scorer's verdict on each generated query (issue 19).

    reward = ExecutionReward(template=get_template("terse"))
    rewards = reward(prompts, completions, answer=golds, context=contexts)  # one float per completion
    reward.last      # RewardStats of that call: mean reward, execution rate, match rate, rewards/s
                     # (under TRL each component is also logged through the log_metric it passes)
    reward.close()   # stops its worker processes (also done when the object is collected)

``ExecutionReward`` has the shape of a TRL ``GRPOTrainer`` reward function: TRL calls it with the batch's
``prompts`` and ``completions`` and every other dataset column as a keyword argument (a list per column), so
a dataset with ``answer`` (the gold SQL) and ``context`` (its ``CREATE TABLE`` statements) is all it needs.
Per completion:

* ``MATCH_REWARD`` (1.0; ``grpo.match_reward``) when the SQL cut from it returns what the gold returns on every
  synthesized database;
* ``EXECUTES_CREDIT`` (0.1; ``grpo.executes_credit``) when that SQL runs without error but answers something else;
* 0 for anything else: no SQL, a syntax or schema error, a statement the sandbox refuses (``ATTACH``, writes,
  several statements), a query past its time or CPU budget, a worker that died on it.

A prompt whose gold does not run on its own schema gives all its completions 0: equal rewards carry no
advantage in GRPO, so that prompt teaches nothing instead of teaching noise (``RewardStats.gold_invalid``
counts them; ``data.drop_invalid_gold`` keeps them out of training data in the first place).

**Nothing here executes SQL.** Each completion is one task of :func:`sqlmaster.evaluate.score.score_example`,
the function that scores one example for ``sqlmaster eval score``, run in the scorer's
:class:`~sqlmaster.evaluate.isolated.IsolatedPool`: worker processes with a capped SQLite heap and address
space, a CPU-time guard per statement and a wall-clock watchdog per task. A hostile or runaway completion costs
one reward of 0 (its worker is killed and replaced), never the call, the step or the run. The SQL scored is the
SQL evaluation would score: :func:`sqlmaster.prompt.extract_sql` of the completion under the run's template (so
a completion ``SELECT 1; DROP TABLE t`` is scored as ``SELECT 1``, as evaluation scores it; its second
statement never runs). Without a template the completion is taken as the SQL itself, and a second statement
makes it a miss that does not execute.

**The gold's databases are built once per prompt.** The pool lives as long as this object, and each worker
keeps the scorer's bounded caches (:class:`~sqlmaster.evaluate.execution.ExampleCache`: the synthesized
databases and the gold's rows of the 16 examples it saw last). A call sends a prompt's completions to one worker
as one group, so its ``num_generations`` samples share one synthesis and one gold run; the same batch layout goes
to the same workers on the next call, so a prompt seen again reuses them while its entry lasts.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlmaster.config import GrpoConfig, declared_default
from sqlmaster.cores import scorer_workers
from sqlmaster.errors import ConfigError
from sqlmaster.evaluate.isolated import IsolatedPool
from sqlmaster.evaluate.score import Score, ScorerState, ScoreSettings, failure_record, score_example
from sqlmaster.prompt import PromptTemplate, extract_sql
from sqlmaster.train.distributed import local_world_size

# The recipe keys grpo.match_reward and grpo.executes_credit declare these values (and why 0.1): read from there, so
# the numbers are written once.
MATCH_REWARD: float = declared_default(GrpoConfig, "match_reward")
EXECUTES_CREDIT: float = declared_default(GrpoConfig, "executes_credit")

# Scorer settings for rewards. A GRPO step waits for its slowest reward, and synthesized tables hold a few dozen
# rows, on which a sensible query runs in well under a millisecond: one second of wall and CPU time per statement
# is a thousand times that, and stops a runaway query three times sooner than evaluation's budget does. Exact
# match is not part of the reward, so predictions are not parsed for it.
REWARD_SETTINGS = ScoreSettings(exact_match=False, timeout_s=1.0, cpu_s_per_statement=1.0, example_timeout_s=10.0)

Task = tuple[str | None, str, str, str]  # score_example's task: (database path, context, gold, prediction)


@dataclass(frozen=True)
class RewardStats:
    """The components of one call's rewards, for logging (``as_metrics``)."""

    n: int  # completions scored
    mean_reward: float
    execution_rate: float  # share of completions whose SQL ran without error
    match_rate: float  # share that matched the gold
    gold_invalid: int  # completions whose prompt's gold does not run on its own schema (rewarded 0)
    worker_failures: int  # completions whose worker crashed or overran (rewarded 0)
    seconds: float  # wall time of the call
    rewards_per_s: float

    def as_metrics(self, prefix: str = "reward/") -> dict[str, float]:
        return {f"{prefix}{key}": float(value) for key, value in asdict(self).items()}


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string (standard format) or a list of chat messages (the last one's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        return content if isinstance(content, str) else ""
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def reward_of(score: Score, credit: float = EXECUTES_CREDIT, match: float = MATCH_REWARD) -> float:
    """One completion's reward from its scorer record (see the module docstring)."""
    if not score.gold_valid:
        return 0.0
    if score.execution_match:
        return match
    return credit if score.executes else 0.0


def default_workers() -> int:
    """Scorer processes for one reward object: :func:`~sqlmaster.cores.scorer_workers` for each of the training
    processes on this machine, which all start their own."""
    return scorer_workers(local_world_size())


def _example(task: Task) -> tuple[str | None, str, str]:
    return task[:3]  # what the workers' caches are keyed by: one group per prompt


class ExecutionReward:
    """A TRL reward function whose verdicts come from the scorer's isolated workers (see the module docstring).

    ``template``: the run's prompt template, whose ``extract_sql`` cuts the SQL out of a completion (None: the
    completion is the SQL). ``workers``: scorer processes, kept for the object's lifetime (default:
    :func:`default_workers`; ``0`` scores in this process, without isolation, for debugging and tests).
    ``method`` forces the workers' start method (tests). ``last`` holds the latest call's :class:`RewardStats`.
    """

    def __init__(
        self,
        template: PromptTemplate | None = None,
        *,
        settings: ScoreSettings = REWARD_SETTINGS,
        workers: int | None = None,
        credit: float = EXECUTES_CREDIT,
        match: float = MATCH_REWARD,
        method: str | None = None,
    ) -> None:
        settings.validate()
        if not 0.0 <= credit < match:
            raise ConfigError(f"the executes credit must be in [0, {match}), got {credit}. Use e.g. 0.1")
        self.__name__ = "execution"  # TRL names a reward function's logged mean and std after this
        self.template = template
        self.settings = settings
        self.credit = credit
        self.match = match
        self.seconds_total = 0.0  # wall time of every call so far (the GRPO trainer logs its share of step time)
        self.workers = default_workers() if workers is None else workers
        self.method = method
        self.last: RewardStats | None = None
        self._pool: IsolatedPool[Score] | None = None
        self._state: ScorerState | None = None  # workers=0: the caches of scoring in this process
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        answer: Sequence[str] | None = None,
        context: Sequence[str] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """One reward per completion, in order. ``prompts`` and other columns (``kwargs``) are not needed:
        the gold and its schema name the example. ``log_metric(name, value)`` (TRL passes its own) receives each
        component of :class:`RewardStats` as ``reward/<component>``."""
        tasks = self.tasks(completions, answer, context)
        start = time.perf_counter()
        scores = self._score(tasks)
        rewards = [reward_of(s, self.credit, self.match) for s in scores]
        seconds = time.perf_counter() - start
        self.seconds_total += seconds
        n = len(rewards)
        self.last = RewardStats(
            n=n,
            mean_reward=sum(rewards) / n if n else 0.0,
            execution_rate=sum(s.executes for s in scores) / n if n else 0.0,
            match_rate=sum(s.execution_match for s in scores) / n if n else 0.0,
            gold_invalid=sum(not s.gold_valid for s in scores),
            worker_failures=sum(s.worker_failure for s in scores),
            seconds=seconds,
            rewards_per_s=n / seconds if seconds > 0 else 0.0,
        )
        if log_metric is not None:
            for name, value in self.last.as_metrics().items():
                log_metric(name, value)
        return rewards

    def tasks(
        self, completions: Sequence[Any], answer: Sequence[str] | None, context: Sequence[str] | None
    ) -> list[Task]:
        """The scorer's task for each completion. A dataset without the columns is a configuration error."""
        for name, column in (("answer", answer), ("context", context)):
            if column is None:
                raise ConfigError(
                    f"the execution reward needs a dataset column {name!r} (gold SQL and CREATE TABLE context). "
                    "Train GRPO on a text-to-SQL dataset that has both"
                )
            if len(column) != len(completions):
                raise ConfigError(f"column {name!r} has {len(column)} rows for {len(completions)} completions")
        assert answer is not None and context is not None
        tasks: list[Task] = []
        for completion, gold, schema in zip(completions, answer, context, strict=True):
            text = completion_text(completion)
            sql = extract_sql(self.template, text) if self.template is not None else text.strip()
            tasks.append((None, schema, gold, sql))
        return tasks

    def _score(self, tasks: list[Task]) -> list[Score]:
        # A prompt's samples next to each other, so that they go to one worker as one group (see the docstring).
        order = sorted(range(len(tasks)), key=lambda i: (tasks[i][1], tasks[i][2]))
        ordered = [tasks[i] for i in order]
        if self.workers <= 0:
            scores = [self._score_here(task) for task in ordered]
        else:
            scores = self._pool_started().map(ordered, group=_example)
        by_index = dict(zip(order, scores, strict=True))
        return [by_index[i] for i in range(len(tasks))]

    def _score_here(self, task: Task) -> Score:
        if self._state is None:
            self._state = ScorerState()  # this process's caches, for the reward's lifetime
        try:
            return score_example(self._state, self.settings, task)
        except Exception as exc:  # the pool's contract: a bug on one task is that task's 0, not the call's end
            return failure_record(f"{type(exc).__name__}: {exc}")

    def _pool_started(self) -> IsolatedPool:
        if self._pool is None:
            # The scorer's own worker set-up: a forked worker drops its parent's caches and connections.
            # The scorer's own worker: its state is made in the worker, after a fork drops the parent's connections.
            from sqlmaster.evaluate.score import _forget_inherited_connections, _ScoreWorker

            self._pool = IsolatedPool(
                _ScoreWorker(self.settings),
                self.workers,
                self.settings.example_timeout_s,
                failure_record,
                _forget_inherited_connections,
                self.method,
            )
            self._finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (and close this process's databases); a later call starts anew."""
        if self._state is not None:
            self._state.close()
            self._state = None
        if self._finalizer is not None:
            self._finalizer()
        self._pool = None
        self._finalizer = None

    def __enter__(self) -> ExecutionReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
