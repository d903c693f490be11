"""The GRPO stage (issue 19): a finished SFT run keeps training on its own samples, rewarded by the scorer.

    sqlmaster train --model tiny --stage grpo --init-from runs/sft --output-dir runs/grpo

Each optimizer step takes ``grpo.prompts_per_step`` training prompts, samples ``grpo.num_generations`` SQL
queries for each (TRL ``GRPOTrainer``: HF ``generate`` here; vLLM colocated on a GPU where it is installed), scores
every sample with :class:`~sqlmaster.train.reward.ExecutionReward` (the scorer's verdict in its isolated workers:
``grpo.match_reward`` for a match, ``grpo.executes_credit`` for SQL that runs, 0 otherwise) and moves the policy
towards the samples that beat their group's mean. ``grpo.beta`` > 0 keeps it near the SFT model (KL).
``grpo.gold_in_group`` replaces the first sample of each group with the gold SQL (off-policy guidance), so that
groups whose samples all miss still teach something.

Everything else is the SFT path's (sqlmaster/train/runner.py): the run directory and its guard, the ownership
lock, checkpoints and resume after SIGKILL, the time budget, W&B, exit codes and run.json, which also records
``stage: grpo`` and ``init_from``. The model starts from the SFT run's weights: ``model/`` for a full run (tiny),
the base + ``adapter/`` for a LoRA run, whose adapter keeps training (TRL keeps a frozen copy as the KL
reference). Each log line carries the reward's figures: mean reward, execution and match rates, rewards/s and
the reward's share of the step time.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from sqlmaster.prompt import PromptTemplate, render_completion, render_prompt
from sqlmaster.train.budget import TimeBudget
from sqlmaster.train.trainer import TimeBudgetMixin

log = logging.getLogger("sqlmaster.train")

HF_GENERATE, VLLM_COLOCATED = "HF generate", "vLLM colocated"
# An advantage below this is 0: equal rewards give r - mean of a few 1e-17 (float sums), real ones are >= 1/G of the
# smallest reward step (0.1 / 8 with tiny's recipe).
ZERO_ADVANTAGE = 1e-6


def generator(device: str) -> str:
    """Which generator samples the rollouts: vLLM colocated where it is installed and a GPU is present."""
    if device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        return VLLM_COLOCATED
    return HF_GENERATE


def prompt_rows(examples: Any, template: PromptTemplate) -> list[dict[str, str]]:
    """GRPO's dataset: the SFT prompt of each example, and the gold and its schema for the reward."""
    return [
        {"prompt": render_prompt(template, ex.question, ex.context), "answer": ex.answer, "context": ex.context}
        for ex in examples
    ]


def gold_completion_ids(tokenizer: Any, prompt_ids: list[int], prompt: str, completion: str) -> list[int]:
    """The gold completion's token ids after ``prompt_ids``, as TRL's SFTTrainer tokenizes a prompt-completion row:
    prompt + completion + EOS as one text, the completion being what follows the prompt's tokens."""
    full = tokenizer(text=prompt + completion + tokenizer.eos_token)["input_ids"]
    if full[: len(prompt_ids)] == list(prompt_ids):
        return full[len(prompt_ids) :]
    # The prompt's last token merged with the completion's first: tokenize the completion on its own.
    return tokenizer(text=completion + tokenizer.eos_token, add_special_tokens=False)["input_ids"]


def load_init(job: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The SFT run's model to continue: ``model/`` (full), or its base + ``adapter/`` with the adapter trainable."""
    from sqlmaster.models.loading import load_base_model, load_tokenizer, peft_from_pretrained, recorded_base_path
    from sqlmaster.rundir import RunDir

    init = RunDir(Path(job.options.init_from))
    sft = job.init_info
    spec, recipe, device = job.spec, job.recipe, job.device
    info = dict(sft.get("base_model") or {})
    if sft.get("mode") == "full":
        model: Any = load_base_model(spec, recipe.model, device=device, path=init.model)
        tokenizer = load_tokenizer(spec, for_generation=False, path=init.model)
        info.pop("path", None)  # a full run's model/ is all it needs
        return model, tokenizer, info

    base_path = recorded_base_path(init.path, spec, info)
    base = load_base_model(spec, recipe.model, device=device, path=base_path)
    if info.get("path"):  # tiny's base/ stays in the SFT run: record where
        info["path"] = str((init.path / info["path"]).resolve())
    tokenizer = load_tokenizer(spec, for_generation=False, path=init.adapter)
    model = peft_from_pretrained(base, init.adapter, trainable=True)
    return model, tokenizer, info


class SQLMasterGRPOTrainer(TimeBudgetMixin, GRPOTrainer):
    """GRPOTrainer plus the time budget's schedule and saves, and the reward's share of the step time in each log."""

    def __init__(
        self,
        *args: Any,
        time_budget: TimeBudget | None = None,
        gold_template: PromptTemplate | None = None,
        skip_zero_advantage: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.time_budget = time_budget
        self.gold_template = gold_template  # grpo.gold_in_group: the template that renders the gold; None = off
        self.skip_zero_advantage = skip_zero_advantage
        self._batch_rows: list[dict[str, Any]] = []  # the rows being generated for (their gold, for gold_in_group)
        self.reward: Any = self.reward_funcs[0]  # the ExecutionReward build_trainer passes
        self._last_log_time = time.monotonic()
        self._last_reward_seconds = 0.0
        self._excluded_seconds = 0.0  # checkpointing time since the last log

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        return {}  # no evaluation pass (the time budget's evaluations are only its checkpoints)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        finally:
            self.reward.close()  # the scorer's worker processes

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_rows = inputs
        batch = super()._generate_and_score_completions(inputs)
        if self.skip_zero_advantage and self.beta == 0.0 and self.model is not None and self.model.training:
            batch = self._teaching_rows(batch)
        return batch

    def _teaching_rows(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The generation batch without its zero-advantage samples (grpo.skip_zero_advantage; beta is 0, so their
        gradient is 0), and the loss's token count over the samples kept. TRL splits the batch into
        ``steps_per_generation`` equal micro-batches, so as many zero-advantage samples as that needs stay (they
        add nothing to the gradient); a process with none to teach keeps one per micro-batch, so that every
        process still takes part in each gradient all-reduce. Every process keeps as many samples as the one
        with the most to teach (TRL gathers per-sample figures in the loss)."""
        import torch

        advantages = batch["advantages"]
        rows = advantages.shape[0]
        teaches = advantages.abs() > ZERO_ADVANTAGE
        if teaches.dim() > 1:  # per-token advantages (a subclass's): a sample teaches if any token does
            teaches = teaches.any(dim=1)
        taught = teaches.nonzero().flatten().tolist()
        chunks: int = getattr(self.args, "steps_per_generation", 1)  # a GRPOConfig field
        # TRL gathers per-sample figures across processes in the loss, which needs as many rows on each
        most = int(self.accelerator.gather(torch.tensor([len(taught)], device=advantages.device)).max().item())
        kept = max(chunks, -(-most // chunks) * chunks)
        filler = (~teaches).nonzero().flatten().tolist()[: kept - len(taught)]
        index = sorted(taught + filler)
        loss_mask = batch["completion_mask"] * batch["tool_mask"] if "tool_mask" in batch else batch["completion_mask"]
        out = {key: _rows(value, index, rows) for key, value in batch.items() if key != "num_items_in_batch"}
        out["num_items_in_batch"] = self.accelerator.gather(loss_mask[teaches].sum()).sum()
        self._metrics["train"]["grpo/teaching_fraction"].append(
            self.accelerator.gather(teaches.float().mean()).mean().item()
        )
        return out

    def _generate_single_turn(self, prompt_ids: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        if self.gold_template is not None and self.model is not None and self.model.training:  # not in eval
            completion_ids, logprobs = self._put_gold_in_groups(
                self.gold_template, prompt_ids, completion_ids, logprobs
            )
        return completion_ids, logprobs

    def _put_gold_in_groups(
        self, template: PromptTemplate, prompt_ids: list[list[int]], completion_ids: list[list[int]], logprobs: Any
    ) -> Any:
        """Replace the first sample of each group with the gold completion, tokenized as SFT tokenized it.

        Each process generates a contiguous slice of the global batch, whose groups are ``num_generations``
        consecutive rows (TRL's RepeatSampler), so row i of this process is the first of its group when its global
        index is a multiple of ``num_generations``."""
        offset = self.accelerator.process_index * len(completion_ids)
        completion_ids = list(completion_ids)
        logprobs = list(logprobs) if logprobs is not None else None
        for i, row in enumerate(self._batch_rows):
            if (offset + i) % self.num_generations:
                continue
            completion = render_completion(template, row["answer"])
            completion_ids[i] = gold_completion_ids(self.processing_class, prompt_ids[i], row["prompt"], completion)
            if logprobs is not None:  # vLLM's sampling log-probs: the gold was not sampled (its correction is off)
                logprobs[i] = [0.0] * len(completion_ids[i])
        return completion_ids, logprobs

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            now = time.monotonic()
            seconds = max(now - self._last_log_time - self._excluded_seconds, 1e-9)
            spent = self.reward.seconds_total - self._last_reward_seconds
            logs["reward/share_of_step_time"] = round(min(spent / seconds, 1.0), 4)
            self._last_log_time, self._last_reward_seconds, self._excluded_seconds = now, self.reward.seconds_total, 0
        super().log(logs, start_time)


def build_trainer(
    job: Any, model: Any, tokenizer: Any, data: Any, report_to: list[str], resume_from: Path | None
) -> tuple[Any, Any]:
    """The GRPO trainer of a run and the wall-time callback (or None), as runner._build_trainer for SFT."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback

    from sqlmaster.prompt import get_template
    from sqlmaster.train.arguments import grpo_config
    from sqlmaster.train.budget import TimeBudgetCallback
    from sqlmaster.train.callbacks import WandbRecipeCallback
    from sqlmaster.train.outputs import save_without_hub_lookup
    from sqlmaster.train.reward import ExecutionReward
    from sqlmaster.train.runner import _callbacks

    recipe, g = job.recipe, job.recipe.grpo
    used = generator(job.device)
    args = grpo_config(
        recipe,
        checkpoints_dir=job.run.checkpoints,
        run_id=job.run_id,
        report_to=report_to,
        device=job.device,
        use_vllm=used == VLLM_COLOCATED,
    )
    callbacks, max_time = _callbacks(recipe, resume_from)
    callbacks = [c for c in callbacks if not isinstance(c, EarlyStoppingCallback)]  # no evaluation to stop on
    budget = next((c.budget for c in callbacks if isinstance(c, TimeBudgetCallback)), None)
    template = get_template(recipe.prompt.template)
    reward = ExecutionReward(template, credit=g.executes_credit, match=g.match_reward)
    trainer = SQLMasterGRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(data.train_rows),
        processing_class=tokenizer,
        callbacks=callbacks,
        time_budget=budget,
        gold_template=template if g.gold_in_group else None,
        skip_zero_advantage=g.skip_zero_advantage,
    )
    save_without_hub_lookup(trainer.model)  # every checkpoint's and the final adapter's save
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if recipe.tracking.wandb_mode != "disabled" and report_to:
        trainer.add_callback(WandbRecipeCallback(recipe.to_dict()))
    _announce(job, used, reward.workers)
    return trainer, max_time


def _announce(job: Any, used: str, workers: int) -> None:
    """The run's first GRPO log line: the step's shape, the generator used and the reward's settings."""
    from sqlmaster.train.arguments import grpo_batches

    g = job.recipe.grpo
    micro, accumulation = grpo_batches(job.recipe, 1)
    log.info(
        "GRPO from %s: %d prompts x %d samples per step (micro-batch %d x %d), generator %s, beta %g, temperature "
        "%g, up to %d new tokens%s; reward %g match / %g executes, %d scorer worker(s)",
        job.options.init_from,
        g.prompts_per_step,
        g.num_generations,
        micro,
        accumulation,
        used,
        g.beta,
        g.temperature,
        g.max_completion_length,
        ", the gold as one sample of each group" if g.gold_in_group else "",
        g.match_reward,
        g.executes_credit,
        workers,
    )


def _rows(value: Any, index: list[int], rows: int) -> Any:
    """The rows ``index`` of one generation-batch entry: a tensor or list with one entry per sample; else as is."""
    import torch

    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows:
        return value[torch.tensor(index, dtype=torch.long, device=value.device)]
    if isinstance(value, list) and len(value) == rows:
        return [value[i] for i in index]
    return value


REWARD_KEYS = ("mean_reward", "execution_rate", "match_rate", "rewards_per_s", "share_of_step_time")


def metrics(trainer: Any, train_metrics: dict[str, Any], stop_reason: str, wall: float) -> dict[str, Any]:
    """metrics.json of a GRPO run: steps, time, and each reward figure first, last and mean over the logs."""
    history = [h for h in trainer.state.log_history if "reward/mean_reward" in h]
    figures: dict[str, Any] = {}
    for key in REWARD_KEYS:
        values = [h[f"reward/{key}"] for h in history if h.get(f"reward/{key}") is not None]
        figures[key] = {
            "first": values[0] if values else None,
            "last": values[-1] if values else None,
            "mean": sum(values) / len(values) if values else None,
        }
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    teaching = [h["grpo/teaching_fraction"] for h in trainer.state.log_history if "grpo/teaching_fraction" in h]
    return {
        "stage": "grpo",
        "train_loss": losses[-1] if losses else None,
        "train_loss_mean": train_metrics.get("train_loss"),
        "reward": figures,
        # grpo.skip_zero_advantage: the mean share of samples trained on (None: every sample was)
        "teaching_fraction": sum(teaching) / len(teaching) if teaching else None,
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epochs": trainer.state.epoch,
        "train_runtime_seconds": train_metrics.get("train_runtime"),
        "wall_seconds": round(wall, 1),
        "stop_reason": stop_reason,
    }


def summary(metrics: dict[str, Any]) -> str:
    reward = metrics["reward"]

    def show(key: str, form: str) -> str:
        first, last = reward[key]["first"], reward[key]["last"]
        return "?" if first is None else f"{first:{form}} -> {last:{form}}"

    return (
        f"finished: {metrics['steps']} GRPO steps ({metrics['stop_reason']}), mean reward "
        f"{show('mean_reward', '.3f')}, execution rate {show('execution_rate', '.0%')}, match rate "
        f"{show('match_rate', '.0%')}"
    )
