"""Loss on the completion only, and packing in which no example can attend to another.

transformers 5 builds a block-diagonal (per-example) attention mask from position ids only when no attention
mask is passed and there is no KV cache (``masking_utils._preprocess_mask_arguments``: ``position_ids is not
None and attention_mask is None and past_key_values is None``). TRL's padding-free collator drops the
attention mask and SFTTrainer.compute_loss sets ``use_cache=False``; these tests check the result on losses,
and check that the conditions matter (with a mask or a cache the examples do leak into each other).
"""

import itertools
from pathlib import Path

import pytest
import torch

from sqlmaster.config import load_recipe
from sqlmaster.data import Example
from sqlmaster.models.registry import resolve_model
from sqlmaster.models.tiny import TinyArchitecture, build_tiny
from sqlmaster.prompt import get_template

EXAMPLES = [
    Example(
        "How many heads are older than 56?",
        "CREATE TABLE head (age INTEGER)",
        "SELECT COUNT(*) FROM head WHERE age > 56",
    ),
    Example(
        "Which name has a term end of 18 july 1944?",
        "CREATE TABLE t88 (name VARCHAR, term_end VARCHAR)",
        'SELECT name FROM t88 WHERE term_end = "18 july 1944"',
    ),
    Example(
        "What is the total revenue?",
        "CREATE TABLE orders (revenue INTEGER, region VARCHAR)",
        "SELECT SUM(revenue) FROM orders",
    ),
    Example("List regions.", "CREATE TABLE orders (region VARCHAR)", "SELECT DISTINCT region FROM orders"),
]
ARCH = TinyArchitecture(
    vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
)


def _trainer(tmp_path: Path, template: str, packing: bool, attn: str = "sdpa"):  # type: ignore[no-untyped-def]
    from datasets import Dataset

    from sqlmaster.train.arguments import sft_config
    from sqlmaster.train.trainer import SQLMasterTrainer

    tpl = get_template(template)
    rows = [ex.to_prompt_completion(tpl) for ex in EXAMPLES]
    model, tok = build_tiny((r["prompt"] + r["completion"] for r in rows * 5), ARCH, seed=0)
    model.config._attn_implementation = attn
    recipe = load_recipe(
        None,
        [
            f"training.packing={str(packing).lower()}",
            "model.gradient_checkpointing=false",
            "tracking.wandb_mode=disabled",
            "training.max_length=512",
            "training.early_stopping_patience=null",
        ],
    )
    args = sft_config(recipe, checkpoints_dir=tmp_path, run_id="t", report_to=[], device="cpu")
    trainer = SQLMasterTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(rows[:1]),
        processing_class=tok,
    )
    return trainer, tok, rows


@pytest.mark.parametrize("template", ["original", "compact"])
def test_labels_are_minus_100_on_every_prompt_token(tmp_path: Path, template: str) -> None:
    trainer, tok, rows = _trainer(tmp_path, template, packing=False)
    by_ids = {}
    for row in rows:
        prompt_ids = tok(row["prompt"])["input_ids"]
        full_ids = tok(row["prompt"] + row["completion"] + tok.eos_token)["input_ids"]
        assert full_ids[: len(prompt_ids)] == prompt_ids  # the prompt ends on a token boundary
        by_ids[tuple(full_ids)] = len(prompt_ids)
    assert len(trainer.train_dataset) == len(rows)
    for item in trainer.train_dataset:
        n_prompt = by_ids[tuple(item["input_ids"])]
        labels = item["labels"]
        assert all(label == -100 for label in labels[:n_prompt])
        assert labels[n_prompt:] == item["input_ids"][n_prompt:]  # every completion token (and EOS) is trained
        assert labels[-1] == tok.eos_token_id


def test_packed_labels_mask_each_examples_prompt(tmp_path: Path) -> None:
    trainer, tok, rows = _trainer(tmp_path, "original", packing=True)
    prompt_len = {}
    for row in rows:
        ids = tok(row["prompt"] + row["completion"] + tok.eos_token)["input_ids"]
        prompt_len[tuple(ids)] = len(tok(row["prompt"])["input_ids"])
    seen = 0
    for item in trainer.train_dataset:
        start = 0
        for length in item["seq_lengths"]:
            ids = tuple(item["input_ids"][start : start + length])
            labels = item["labels"][start : start + length]
            n_prompt = prompt_len[ids]
            assert all(label == -100 for label in labels[:n_prompt])
            assert list(labels[n_prompt:]) == list(ids[n_prompt:])
            start += length
            seen += 1
    assert seen == len(rows)


def _per_example_losses(logits: torch.Tensor, labels: torch.Tensor, bounds: list[tuple[int, int]]) -> list[float]:
    losses = []
    for start, end in bounds:
        lg, lb = logits[start : end - 1], labels[start + 1 : end]
        keep = lb != -100
        losses.append(torch.nn.functional.cross_entropy(lg[keep], lb[keep]).item())
    return losses


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packing_isolates_examples(tmp_path: Path, attn: str) -> None:
    trainer, _tok, rows = _trainer(tmp_path, "compact", packing=True, attn=attn)
    model = trainer.model.eval()
    items = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(items)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # one flat sequence, no mask
    pos = batch["position_ids"][0]
    starts = [*(pos == 0).nonzero().flatten().tolist(), pos.numel()]
    bounds = list(itertools.pairwise(starts))
    assert len(bounds) == len(rows)

    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        packed_losses = _per_example_losses(packed, batch["labels"][0], bounds)
        alone = []
        for start, end in bounds:
            ids = batch["input_ids"][:, start:end]
            logits = model(input_ids=ids, use_cache=False).logits[0]
            alone += _per_example_losses(logits, batch["labels"][0, start:end].clone(), [(0, end - start)])
        # Controls: an all-ones mask or a KV cache turn the per-example mask off, and later examples then see
        # earlier ones. If these stopped differing, the test above would prove nothing.
        masked = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=torch.ones_like(batch["input_ids"]),
            use_cache=False,
        ).logits[0]
        cached = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).logits[0]

    assert packed_losses == pytest.approx(alone, abs=1e-4)
    for leaky in (masked, cached):
        leaky_losses = _per_example_losses(leaky, batch["labels"][0], bounds)
        assert leaky_losses[0] == pytest.approx(alone[0], abs=1e-4)  # the first example has nothing before it
        assert max(abs(a - b) for a, b in zip(leaky_losses[1:], alone[1:], strict=True)) > 1e-3


def test_trainer_loss_on_a_packed_batch_equals_the_mean_over_unpacked_completion_tokens(tmp_path: Path) -> None:
    trainer, tok, rows = _trainer(tmp_path, "compact", packing=True)
    model = trainer.model.eval()
    items = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(items)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch)).item()  # the trainer's own path (use_cache=False)
        total, count = 0.0, 0
        for row in rows:
            ids = tok(row["prompt"] + row["completion"] + tok.eos_token, return_tensors="pt")["input_ids"]
            n_prompt = len(tok(row["prompt"])["input_ids"])
            labels = ids.clone()
            labels[:, :n_prompt] = -100
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
            target = labels[0, 1:]
            keep = target != -100
            total += torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum").item()
            count += int(keep.sum())
    assert loss == pytest.approx(total / count, abs=1e-4)
    assert resolve_model("tiny").padding_side_train == "right"
