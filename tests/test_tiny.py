"""The tiny model: a deterministic data-trained tokenizer that keeps identifiers copyable, and a seeded Llama."""

from pathlib import Path

import pytest
import torch

from sqlmaster.models.tiny import SPECIAL_TOKENS, TinyArchitecture, build_model, build_tiny, save_tiny, train_tokenizer

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


def test_pre_tokenizer_isolates_whitespace_letters_digits_and_punctuation() -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200)
    pieces = [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str('term_end = "18 july",(x)')]
    assert pieces == ["term", "_", "end", " ", "=", " ", '"', "18", " ", "july", '"', ",", "(", "x", ")"]


def test_an_identifier_is_the_same_tokens_in_schema_question_and_sql() -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200)

    def tokens(text: str) -> list[str]:
        return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])

    ident = tokens("term_end")
    for context in ("(name VARCHAR, term_end VARCHAR)", "has a term_end of", "WHERE term_end ="):
        seq = tokens(context)
        assert any(seq[i : i + len(ident)] == ident for i in range(len(seq))), (context, seq, ident)


def test_decode_round_trips_the_training_text() -> None:
    tok = train_tokenizer(TEXTS, vocab_size=200)
    for text in TEXTS[:2]:
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
