"""The `tiny` model: a few-million-parameter Llama built from config, with a BPE tokenizer trained on the data.

Nothing is downloaded: the tokenizer is trained on the run's own training split and the weights are randomly
initialised from a seed, so `tiny` runs anywhere (CI, a laptop, a CPU pod) in minutes.

The tokenizer's pre-tokenizer is what makes a model this small learn text-to-SQL at all: it decides what is
one token *before* BPE merges, so it decides how hard copying a name or a value is. Three are offered
(``model.tiny_pre_tokenizer``), measured by execution accuracy on held-out rows at equal training time:

* ``runs``: whitespace runs | letter runs | digit runs | single punctuation marks. A column name is the same
  token sequence in the question, the schema and the SQL, so copying it is a token-for-token copy (a previous
  measurement took execution accuracy from ~22% to ~40% over plain BPE with this change alone).
* ``digits``: the same with every digit its own token (table_25604014_5 is copied digit by digit).
* ``initials`` (tiny's recipe): a space belongs to the word after it, and a word's first letter is a token of
  its own: ``" Brazilian"`` is ``" B" + "razilian"``, ``"brazilian"`` is ``"b" + "razilian"``. Copying then
  needs no separator tokens (a lone space or underscore is ambiguous to a copying head: it follows every
  word), and changing a word's case changes one token among ~100 frequent ones. That case change is common in
  the data: every string literal of sql-create-context's WikiSQL-derived rows is lowercased, and 39% of them
  differ from the question's spelling ("Brazilian Grand Prix" -> "brazilian grand prix"); question words also
  match schema column names by the same pieces ("Themed Area" and themed_area share "hem", "ed", "rea").
  Digits are single tokens. Measured on 2 cores: 10.2% execution accuracy against 2.6% (``runs``) and
  1.5% (``digits``) after the same 6.5 minutes of training.

Both parts are deterministic: the same texts and seed give the same vocabulary and the same initial weights.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmaster.config import ModelConfig, TrainingConfig, declared_default, from_section, recipe_field
from sqlmaster.models.pretokenizers import PRE_TOKENIZERS

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

TRAINING_SEED: int = declared_default(TrainingConfig, "seed")  # the recipe's default training seed

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in this order


@dataclass(frozen=True)
class TinyArchitecture:
    """Sizes of the tiny Llama: the recipe's ``model.tiny_*`` keys (defaults and help declared in
    sqlmaster/config.py); the measured best for 10 minutes on 2 CPU cores is what jobs/train/tiny.yaml sets."""

    vocab_size: int = recipe_field(ModelConfig, "tiny_vocab_size")  # BPE target (the trained one can be smaller)
    hidden_size: int = recipe_field(ModelConfig, "tiny_hidden_size")
    num_hidden_layers: int = recipe_field(ModelConfig, "tiny_layers")
    num_attention_heads: int = recipe_field(ModelConfig, "tiny_heads")
    intermediate_size: int = recipe_field(ModelConfig, "tiny_intermediate_size")
    max_position_embeddings: int = 1024  # not a recipe key: longer than any example
    tie_word_embeddings: bool = recipe_field(ModelConfig, "tiny_tie_embeddings")
    pre_tokenizer: str = recipe_field(ModelConfig, "tiny_pre_tokenizer")  # a key of PRE_TOKENIZERS


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4096, *, pre_tokenizer: str = "initials"
) -> PreTrainedTokenizerFast:
    """Train the tiny model's BPE tokenizer on ``texts`` (the training split's prompts and completions).

    Encoding prepends ``<s>``; TRL appends ``</s>`` to every completion. Decoding concatenates tokens exactly
    (whitespace is kept in tokens), so ``decode(encode(text)) == text`` for characters seen in training.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENIZERS[pre_tokenizer]), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        # Every printable ASCII character has a token even if the training text lacks it, so a digit or a mark
        # first seen in a test question is still copyable instead of becoming <unk>.
        initial_alphabet=list(string.digits + string.ascii_letters + string.punctuation),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )


def build_model(
    tokenizer: PreTrainedTokenizerFast, arch: TinyArchitecture | None = None, *, seed: int = TRAINING_SEED
) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by ``arch`` whose vocabulary matches ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = arch or TinyArchitecture()
    # The architecture's fields are LlamaConfig's names, but for the tokenizer's: vocab_size is the trained one's.
    sizes = {k: v for k, v in asdict(arch).items() if k not in ("vocab_size", "pre_tokenizer")}
    config = LlamaConfig(
        **sizes,
        vocab_size=len(tokenizer),
        num_key_value_heads=arch.num_attention_heads,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )
    # Fork the RNG so building a model does not shift the caller's random stream (and vice versa).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def build_tiny(
    texts: Iterable[str], arch: TinyArchitecture | None = None, *, seed: int = TRAINING_SEED
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Train the tokenizer on ``texts`` and build a model for it."""
    arch = arch or TinyArchitecture()
    tokenizer = train_tokenizer(texts, vocab_size=arch.vocab_size, pre_tokenizer=arch.pre_tokenizer)
    return build_model(tokenizer, arch, seed=seed), tokenizer


def save_tiny(model: Any, tokenizer: Any, directory: Path) -> Path:
    """Save model and tokenizer together, so ``from_pretrained(directory)`` restores both."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def architecture_from(model_cfg: ModelConfig) -> TinyArchitecture:
    """The tiny architecture a recipe's ``model`` section asks for (its ``tiny_*`` fields)."""
    return from_section(TinyArchitecture, model_cfg)
