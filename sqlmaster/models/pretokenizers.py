"""The tiny model's pre-tokenizers by name (sqlmaster/models/tiny.py's docstring says what each does and how they
measured): the one list that ``model.tiny_pre_tokenizer``'s choices (sqlmaster/config.py) and the tokenizer read.
Import-free, so the recipe can name them without loading the tokenizer libraries."""

from __future__ import annotations

# The pre-tokenizers (see sqlmaster/models/tiny.py), as Oniguruma patterns (the `tokenizers` regex engine); \p{L} and
# \p{N} cover non-ASCII letters and digits too. Every character belongs to exactly one piece, so decoding is exact.
PRE_TOKENIZERS: dict[str, str] = {
    # whitespace runs | letter runs | digit runs | any other single character (punctuation, operators, quotes)
    "runs": r"\s+|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]",
    # the same, one digit per piece
    "digits": r"\s+|\p{L}+|\p{N}|[^\s\p{L}\p{N}]",
    # the rest of a word (after its first letter) | optional space + first letter | optional space + one digit |
    # whitespace (leaving a word its one leading space) | one punctuation character
    "initials": r"(?<=\p{L})\p{L}+| ?\p{L}| ?\p{N}|\s+(?!\S)|\s+|[^\s\p{L}\p{N}]",
}
