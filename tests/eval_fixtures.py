"""Shared helpers for the evaluation tests: a tiny random Llama and a locally trained tokenizer (no downloads)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlmaster.data import load_examples
from sqlmaster.prompt import get_template, render_completion, render_prompt


@cache
def training_texts(n: int = 300) -> tuple[str, ...]:
    """Prompts and completions of the first ``n`` shipped examples in both templates (tokenizer corpus)."""
    texts: list[str] = []
    for ex in load_examples()[:n]:
        for name in ("original", "compact"):
            template = get_template(name)
            texts.append(render_prompt(template, ex.question, ex.context) + render_completion(template, ex.answer))
    return tuple(texts)


def tiny_tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=600, min_frequency=2, special_tokens=["<pad>", "<s>", "</s>", "<unk>"], show_progress=False
    )
    tok.train_from_iterator(training_texts(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_model(tokenizer: Any, seed: int = 0, hidden: int = 64, layers: int = 2) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def scramble(model: Any, std: float = 0.3, seed: int = 0) -> Any:
    """Re-draw the weights with a large spread, so a random model's greedy output varies token to token."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


def overfit(model: Any, tokenizer: Any, texts: list[str], steps: int = 80, lr: float = 1e-2) -> Any:
    """Train on ``texts`` until the model reproduces them (a few seconds): a model whose output we know."""
    import torch

    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def write_lora_run(root: Any, base: Any, tokenizer: Any, recipe: Any, splits: Any, run_id: str, rank: int) -> Any:
    """A training run directory as `sqlmaster train` leaves one for a LoRA run: ``base/`` weights, an ``adapter/``
    (q/v at ``rank``) and a run.json naming the recipe and the split fingerprints; returns ``root``."""
    import json

    from peft import LoraConfig, get_peft_model

    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    lora = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(root / "adapter")
    tokenizer.save_pretrained(root / "adapter")
    run_info = {
        "run_id": run_id,
        "base_model": {"name": "tiny", "hub_id": "sqlmaster/tiny", "path": "base"},
        "mode": "lora",
        "prompt_template": "compact",
        "data": {"source": "shipped", "sha256": splits.fingerprints()},
        "recipe": recipe.to_dict(),
    }
    (root / "run.json").write_text(json.dumps(run_info))
    return root
