"""Exact match after normalisation: the same query up to case, whitespace, quoting and a trailing semicolon.

sqlglot parses both sides (SQLite dialect) and prints them back canonically: keywords and function names upper
case, identifiers lower case and unquoted (SQLite identifiers are case-insensitive), double-quoted string
values
(``= "essendon"``, how sql-create-context writes them) turned into single-quoted literals the way SQLite reads
them, one space between tokens. String *values* keep their case: ``'Essendon'`` and ``'essendon'`` are
different
queries in SQLite. When sqlglot cannot parse a side, both sides fall back to whitespace/case normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from sqlglot import exp
from sqlglot.errors import SqlglotError

from sqlmaster.evaluate import sqlast

_SPACE = re.compile(r"\s+")
_PUNCT_SPACE = re.compile(r"\s*([(),=<>!*+/-])\s*")


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";").strip()


def fallback_normalize(sql: str) -> str:
    """Whitespace/case normalisation for SQL that sqlglot cannot parse."""
    text = _strip(sql).replace('"', "'").lower()
    text = _PUNCT_SPACE.sub(r"\1", text)
    return _SPACE.sub(" ", text)


def normalize_tree(tree: exp.Expr, column_names: AbstractSet[str] | None = None) -> str | None:
    """Canonical text of a parsed query (the tree is modified in place)."""
    tree = sqlast.dqs_to_strings(tree, column_names)
    for ident in tree.find_all(exp.Identifier):
        ident.set("this", str(ident.this).lower())
        ident.set("quoted", False)
    try:
        return tree.sql(dialect=sqlast.DIALECT, copy=False)  # the tree is ours to throw away: no deep copy
    except (SqlglotError, ValueError, TypeError, KeyError):
        return None


MAX_PARSE_CHARS = 20_000  # longer SQL is compared by the linear fallback (parsing 10 MB took minutes and GBs)


def normalize_sql(sql: str, column_names: AbstractSet[str] | None = None) -> str | None:
    """Canonical text of ``sql``, or ``None`` when sqlglot cannot parse it (or it is too long to parse)."""
    if len(sql) > MAX_PARSE_CHARS:
        return None
    tree = sqlast.parse(_strip(sql))
    return None if tree is None else normalize_tree(tree, column_names)


# Tokens whose multiset no normalisation below changes: words, numbers, quoted strings and identifiers (quotes
# dropped), operators. Keywords that normalisation adds or drops (AS, INNER, OUTER, ASC) and the spellings it
# unifies (!= and <>, == and =) are folded, so equal normal forms imply equal signatures.
_SIGNATURE_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|\w+|<>|!=|==|<=|>=|[<>=*+/%|-]""")
_SIGNATURE_DROP = frozenset({"as", "inner", "outer", "asc"})
_SIGNATURE_ADDED = re.compile(r"\bon\s+true\b|\blimit\s+-\s*1\b", re.IGNORECASE)  # sqlglot adds these
_SIGNATURE_SAME = {"!=": "<>", "==": "="}


def signature(sql: str) -> list[str]:
    """A cheap necessary condition for exact match: the sorted significant tokens, lower-cased.

    Two queries with different signatures cannot normalise to the same text, so most wrong predictions are
    told apart without parsing (parsing is most of the scorer's cost on real databases).
    """
    tokens = []
    for token in _SIGNATURE_TOKEN.findall(_SIGNATURE_ADDED.sub(" ", _strip(sql))):
        if token[0] in "'\"`[":
            quote = token[0]
            token = token[1:-1].replace(quote * 2, quote) if quote in "'\"" else token[1:-1]
        token = token.lower()
        if token in _SIGNATURE_DROP:
            continue
        tokens.append(_SIGNATURE_SAME.get(token, token))
    tokens.sort()
    return tokens


def exact_match(
    prediction: str,
    gold: str,
    column_names: AbstractSet[str] | None = None,
    gold_normalized: str | Callable[[], str | None] | None = None,
    gold_signature: list[str] | Callable[[], list[str]] | None = None,
) -> bool:
    """Whether ``prediction`` and ``gold`` are the same query after normalisation.

    ``column_names`` (lower-cased schema columns) lets double-quoted names resolve exactly as SQLite resolves
    them; without it a double-quoted name in a value position is taken as a string. ``gold_normalized`` is the
    gold's :func:`normalize_sql` when the caller has it already, or a function that returns it (a cache): it is
    called only when the signatures agree, so a gold that no prediction comes close to is never parsed.
    ``gold_signature`` is the gold's :func:`signature` or a function that returns it, likewise.
    """
    if not prediction or not prediction.strip():
        return False
    if _strip(prediction) == _strip(gold):
        return True
    if callable(gold_signature):
        gold_signature = gold_signature()
    if signature(prediction) != (gold_signature if gold_signature is not None else signature(gold)):
        return False
    if callable(gold_normalized):
        gold_norm = gold_normalized()
    else:
        gold_norm = gold_normalized if gold_normalized is not None else normalize_sql(gold, column_names)
    pred_norm = normalize_sql(prediction, column_names) if gold_norm is not None else None
    if pred_norm is not None and gold_norm is not None:
        return pred_norm == gold_norm
    return fallback_normalize(prediction) == fallback_normalize(gold)
