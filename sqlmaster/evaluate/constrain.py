"""Constrained decoding: a per-example grammar the generated SQL must follow, so it cannot misspell the schema or
the question (``evaluation.constrain``; docs/constrained-decoding.md).

    grammar = sql_grammar(context, question, mode="grammar+values", stop="\\n", values=database_values(db, question))
    admits(grammar, 'SELECT name FROM t WHERE x = "brazilian grand prix"')   # True / False
    processor = GrammarLogitsProcessor(tokenizer, [grammar, ...])            # one grammar per row of a batch

**The grammar** (a Lark grammar for llguidance) is lexical, with balanced parentheses: the answer opens with
SELECT and is then a sequence of SQL keywords and functions, operators, commas, numbers, string literals and
identifiers, and ends with an optional ``;`` and the template's stop string. Identifiers are the context's table
names (only after FROM or JOIN, or a comma: in a column's place a table name never runs) and column names,
``T1``-style aliases, and qualified ``table.column`` / ``alias.column`` names (any case: Spider's gold writes
``Singer`` for ``singer``). Under ``grammar`` a string literal is any quoted text; under
``grammar+values`` it is a span of the question (whole words, ``%`` allowed at either end for LIKE) in the case
the training data writes such literals for this kind of table (:mod:`.literal_case`: sql-create-context lower-cases
them for ``table_name_N`` tables and copies them as written for the others; any case where the data is mixed),
or a value of the example's database that matches the question (:func:`database_values`). Numbers are any
number (``LIMIT 1``, ``> 1`` are rarely in the question).

**Each engine's answers** (``dialect``, the run's ``data.dialect``): the string quotes, extra words (``NULLS LAST``,
``ILIKE``, ``ARRAY_AGG``, ``TRY_CAST``, ``SIGNED``) and operators are the engine class's data
(``Engine.string_quotes``, ``answer_words``, ``answer_operators``: what transpile writes for it). Where the
identifier quote is not a string quote (PostgreSQL's and DuckDB's ``"``, MySQL's backtick), a quoted schema name is
a name and a string is single-quoted only; SQLite keeps sql-create-context's double-quoted literals.

**Decoding** (:class:`GrammarLogitsProcessor`): one llguidance matcher per row of a batch, fed each row's last
token and masking the next token's logits to what the grammar allows; EOS is allowed once the grammar is
complete, so the model's own stop rule (EOS or the stop string) still ends the row. A row whose matcher errs or
that runs out of tokens before the grammar completes is marked failed; the generator then decodes it again
unconstrained and counts it (``GenerationRecord.constraint == "fallback"``).
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmaster.evaluate.literal_case import CASES, LiteralCase

MODES = ("none", "grammar", "grammar+values")
MAX_SPAN_UNITS = 30  # longest question span offered as a literal, in words/punctuation (gold: 99.9% <= 22)
MAX_VALUES = 200  # database values offered per question
KEYWORDS = (
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "GLOB",
    "BETWEEN",
    "IS",
    "NULL",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "ASC",
    "DESC",
    "DISTINCT",
    "AS",
    "JOIN",
    "ON",
    "USING",
    "INNER",
    "LEFT",
    "RIGHT",
    "OUTER",
    "CROSS",
    "NATURAL",
    "UNION",
    "ALL",
    "INTERSECT",
    "EXCEPT",
    "EXISTS",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "ABS",
    "ROUND",
    "LENGTH",
    "LOWER",
    "UPPER",
    "SUBSTR",
    "TRIM",
    "REPLACE",
    "COALESCE",
    "IFNULL",
    "INSTR",
    "STRFTIME",
    "DATE",
    "JULIANDAY",
    "TRUE",
    "FALSE",
    "INTEGER",
    "INT",
    "REAL",
    "TEXT",
    "VARCHAR",
    "FLOAT",
    "NUMERIC",
)
SOURCE_KEYWORDS = ("FROM", "JOIN")  # the words a table name follows (the grammar's ``source``)
OPERATORS = ("!=", "<>", "<=", ">=", "==", "||", "=", "<", ">", "+", "-", "*", "/", "%")
_UNIT = re.compile(r"\w+|[^\w\s]")


@dataclass
class Schema:
    """Table name → its column names, as a CREATE TABLE context declares them."""

    tables: dict[str, list[str]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return sorted({c for cols in self.tables.values() for c in cols})


def parse_schema(context: str) -> Schema:
    """The tables and columns of ``context``: run in an empty in-memory SQLite database (never a user's file),
    or, when SQLite refuses it, read with a regular expression."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(context)
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return Schema({t: [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')] for t in names})
    except sqlite3.Error:
        return _regex_schema(context)
    finally:
        conn.close()


def _regex_schema(context: str) -> Schema:
    schema = Schema()
    for name, body in re.findall(r"CREATE TABLE\s+[`\"]?(\w+)[`\"]?\s*\(([^()]*)\)", context, re.I):
        schema.tables[name] = re.findall(r"(?:^|,)\s*[`\"]?(\w+)", body)
    return schema


def question_spans(question: str, max_units: int = MAX_SPAN_UNITS) -> list[str]:
    """Every run of whole words and punctuation marks of ``question``, as written (with its own spacing)."""
    units = [(m.start(), m.end()) for m in _UNIT.finditer(question)]
    spans = {
        question[units[i][0] : units[j][1]] for i in range(len(units)) for j in range(i, min(len(units), i + max_units))
    }
    return sorted(spans)


def database_values(db_path: str | None, question: str, limit: int = MAX_VALUES) -> list[str]:
    """Text values of the database that match the question (value linking): the value is in the question (any
    case) or shares a word of 3+ letters with it ("Bootup Baltimore" for 'club "Bootup Baltimore"')."""
    if not db_path:
        return []
    words = {w for w in re.findall(r"\w+", question.lower()) if len(w) >= 3}
    lowered = question.lower()
    found = []
    for value in _text_values(db_path):
        low = value.lower()
        if low in lowered or words.intersection(re.findall(r"\w+", low)):
            found.append(value)
            if len(found) >= limit:
                break
    return found


@functools.lru_cache(maxsize=32)
def _text_values(db_path: str, per_column: int = 5000) -> tuple[str, ...]:
    """The database's distinct one-line text values of 80 characters at most (opened read-only, read once)."""
    seen: dict[str, None] = {}
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return ()
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]:
                query = (
                    f'SELECT DISTINCT "{column}" FROM "{table}" WHERE typeof("{column}") = \'text\' LIMIT {per_column}'
                )
                for (value,) in conn.execute(query):
                    if isinstance(value, str) and 0 < len(value) <= 80 and "\n" not in value:
                        seen.setdefault(value)
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return tuple(seen)


def _alternatives(strings: Iterable[str], insensitive: bool = True) -> str:
    suffix = "i" if insensitive else ""
    return " | ".join(json.dumps(s) + suffix for s in sorted(set(strings), key=lambda s: (-len(s), s)))


def _span_rules(question: str, name: str, quote: str, case: str = "any") -> list[str]:
    """Terminals ``{name}_i``: a span of the question starting at its i-th unit (a word or punctuation mark, in
    ``case``: a value of literal_case.CASES), written chained (unit i, then optionally the gap and the span at unit
    i + 1), so the grammar grows linearly with the question; ``{name}``: any of them. A unit holding the quote
    character ends a chain."""
    units = list(_UNIT.finditer(question))
    ok = [quote not in m.group() for m in units]
    flag = "i" if case == "any" else ""
    rules = []
    for i, unit in enumerate(units):
        if not ok[i]:
            continue
        text = unit.group().lower() if case == "lower" else unit.group()
        rule = f"{name}_{i}: {json.dumps(text)}{flag}"
        if i + 1 < len(units) and ok[i + 1]:
            gap = question[unit.end() : units[i + 1].start()]
            rule += f" ({json.dumps(gap)} {name}_{i + 1})?" if gap else f" {name}_{i + 1}?"
        rules.append(rule)
    starts = [f"{name}_{i}" for i in range(len(units)) if ok[i]]
    rules.append(f"{name}: {' | '.join(starts) or json.dumps('_')}")
    return rules


_QUOTE_NAMES = {'"': "DQ", "'": "SQ"}


def _literal_rules(question: str, values: Sequence[str], mode: str, case: str, quotes: Sequence[str]) -> list[str]:
    """``STRING``: a literal in one of the engine's string ``quotes``."""
    if mode == "grammar":
        escaped = [q.replace('"', '\\"') for q in quotes]
        return ["STRING: " + " | ".join(f"/{q}[^{q}\\n]*{q}/" for q in escaped)]
    rules = []
    for quote in quotes:
        name = _QUOTE_NAMES[quote]
        rules += _span_rules(question, f"SPAN_{name}", quote, case)
        exact = [v for v in values if quote not in v]
        inner = f"SPAN_{name}" + (f" | {_alternatives(exact, insensitive=False)}" if exact else "")
        q = json.dumps(quote)
        rules.append(f'STR_{name}: {q} "%"? ({inner}) "%"? {q}')
    rules.append("STRING: " + " | ".join(f"STR_{_QUOTE_NAMES[q]}" for q in quotes))
    return rules


def sql_grammar(
    context: str,
    question: str,
    *,
    mode: str = "grammar+values",
    stop: str = "",
    values: Sequence[str] = (),
    case: str = "any",
    dialect: str = "sqlite",
) -> str:
    """The Lark grammar of the answers allowed for one example (see the module docstring); ``case``: how question
    spans may be written as literals (literal_case.CASES, the dataset's convention: literal_case.py); ``dialect``:
    the engine the answer is written for (an engine name: its string quotes, quoted names and extra words)."""
    if mode not in MODES[1:]:
        raise ValueError(f"constrained decoding mode must be one of {MODES[1:]}, not {mode!r}")
    if case not in CASES:
        raise ValueError(f"literal case must be one of {CASES}, not {case!r}")
    from sqlmaster.engines import engine_named

    engine = engine_named(dialect)
    schema = parse_schema(context)
    tables = [*schema.tables] or ["_"]
    aliases = ["T1", "T2", "T3", "T4", "T5", "T6"]
    name_terms = [_alternatives([*schema.tables, *aliases])]
    column_terms = [_alternatives([*schema.columns, "*"])]
    table_terms = [_alternatives(tables)]
    words = [k for k in KEYWORDS if k not in SOURCE_KEYWORDS]
    word_terms = [_alternatives([*words, *engine.answer_words, *schema.columns, *aliases])]
    if engine.quote not in engine.string_quotes:
        # A quoted name (PostgreSQL's "year", MySQL's `rank`), in the schema's case or lower-cased (transpile and
        # the scorer's databases lower-case names). Where the quote also quotes strings (SQLite's "), a quoted
        # word stays a string literal, as sql-create-context's gold writes it.
        def quoted(names: Iterable[str]) -> str:
            forms = {engine.quote_identifier(n) for name in names for n in (name, name.lower())}
            return _alternatives(forms or {engine.quote_identifier("_")}, insensitive=False)

        quoted_columns = quoted(schema.columns)
        name_terms.append(quoted([*schema.tables, *schema.columns]))
        column_terms.append(quoted_columns)
        table_terms.append(quoted(schema.tables))
        word_terms.append(quoted_columns)
    ending = f" {json.dumps(stop)}?" if stop else ""
    lines = [
        "%ignore /[ \\t]+/",
        f'start: "SELECT"i items ";"?{ending}',
        "items: item*",
        # A table name only where a table goes: after FROM or JOIN (or a comma, for FROM a, b); a column, a
        # keyword or a subquery anywhere else. A table's name in a column's place never runs ("no such column").
        'item: WORD | QUALIFIED | OP | STRING | NUMBER | "," | "," TABLE | "(" items ")" | SOURCE source',
        'source: TABLE | "(" items ")"',
        f"SOURCE: {_alternatives(SOURCE_KEYWORDS)}",
        f"TABLE: {' | '.join(table_terms)}",
        f"WORD: {' | '.join(word_terms)}",
        f'QUALIFIED: ({" | ".join(name_terms)}) "." ({" | ".join(column_terms)})',
        f"OP: {_alternatives([*OPERATORS, *engine.answer_operators], insensitive=False)}",
        r"NUMBER: /[0-9]+(\.[0-9]+)?/ | /\.[0-9]+/",
        *_literal_rules(question, values, mode, case, engine.string_quotes),
    ]
    return "\n".join(lines) + "\n"


class _ByteTokenizer:
    """A tokenizer whose tokens are the 256 bytes (and EOS): a grammar's own language, with no model at hand."""

    def __init__(self) -> None:
        self.eos_token_id = 256
        self.bos_token_id = None
        self.tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
        self.special_token_ids = [256]

    def __call__(self, text: bytes | str) -> list[int]:
        return list(text.encode() if isinstance(text, str) else text)


_BYTES: Any = None


def compile_error(grammar: str) -> str | None:
    """Why llguidance refuses ``grammar``, or None."""
    import llguidance

    message = llguidance.LLMatcher.validate_grammar(grammar, None)
    return message or None


def admits(grammar: str, text: str) -> bool:
    """``text`` (then end of text) is a complete answer of ``grammar``."""
    import llguidance

    global _BYTES
    if _BYTES is None:
        _BYTES = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokenizer()))
    matcher = llguidance.LLMatcher(_BYTES, grammar, log_level=0)
    return bool(matcher.consume_tokens(list(text.encode())) and matcher.is_accepting() and not matcher.is_error())


_LLTOKENIZERS: dict[int, Any] = {}


def ll_tokenizer(tokenizer: Any, eos_ids: Sequence[int]) -> Any:
    """llguidance's view of a fast transformers tokenizer (built once per tokenizer: ~1 s)."""
    key = id(tokenizer)
    if key not in _LLTOKENIZERS:
        import llguidance
        import llguidance.hf

        try:
            _LLTOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, eos_token=sorted(eos_ids))
        except ValueError:  # a decoder llguidance cannot read: each token's text, decoded alone
            wrapper = _DecodedTokenizer(tokenizer, min(eos_ids))
            _LLTOKENIZERS[key] = llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper), eos_token=sorted(eos_ids))
    return _LLTOKENIZERS[key]


class _DecodedTokenizer:
    """A tokenizer's vocabulary as the bytes of each token decoded alone (exact for tokenizers without byte
    fallback or merged spaces), for llguidance.TokenizerWrapper."""

    def __init__(self, tokenizer: Any, eos: int) -> None:
        self.eos_token_id = eos
        self.bos_token_id = tokenizer.bos_token_id
        self.special_token_ids = list(tokenizer.all_special_ids)
        self.tokens = [tokenizer.decode([i]).encode() for i in range(len(tokenizer))]
        self._tokenizer = tokenizer

    def __call__(self, text: bytes | str) -> list[int]:
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])


class GrammarLogitsProcessor:
    """A transformers LogitsProcessor holding one llguidance matcher per row (row r follows ``grammars[r]``).

    Each step it feeds every live row's last token to its matcher, then masks the row's logits to the tokens its
    grammar allows next. A row whose grammar was complete when a token it refuses arrived (the padding after the
    stop string, or EOS) is done; a row whose matcher errs is ``failed`` and left unconstrained from then on.
    """

    def __init__(self, lltokenizer: Any, grammars: Sequence[str], prompt_length: int) -> None:
        import llguidance

        self.matchers = [llguidance.LLMatcher(lltokenizer, g, log_level=0) for g in grammars]
        self.failed = [m.is_error() for m in self.matchers]
        self.done = [False] * len(grammars)
        self.prompt_length = prompt_length
        self.vocab_size = lltokenizer.vocab_size

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] > self.prompt_length:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                self._consume(row, int(token))
        live = [r for r in range(len(self.matchers)) if not (self.failed[r] or self.done[r])]
        if not live:
            return scores
        words = (self.vocab_size + 31) // 32
        packed = torch.zeros((len(self.matchers), words), dtype=torch.int32)
        for row in live:
            self.matchers[row].unsafe_compute_mask_ptr(packed[row].data_ptr(), words * 4)
            self.failed[row] = self.matchers[row].is_error()
        shifts = torch.arange(32, dtype=torch.int32)
        allowed = ((packed.unsqueeze(-1) >> shifts) & 1).bool().reshape(len(self.matchers), -1)
        width = min(scores.shape[-1], allowed.shape[-1])
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        mask[:, :width] = allowed[:, :width].to(scores.device)
        rows = torch.tensor([r for r in live if not self.failed[r]], dtype=torch.long, device=scores.device)
        scores[rows] = scores[rows].masked_fill(~mask[rows], float("-inf"))
        return scores

    def _consume(self, row: int, token: int) -> None:
        if self.failed[row] or self.done[row]:
            return
        matcher = self.matchers[row]
        complete = matcher.is_accepting()
        if matcher.is_stopped():
            self.done[row] = True
        elif not matcher.consume_token(token):
            self.done[row] = complete
            self.failed[row] = not complete

    def settle(self, last_tokens: Sequence[int]) -> None:
        """Feed each row the token generated after the last call (generate() calls processors before sampling)."""
        for row, token in enumerate(last_tokens):
            self._consume(row, int(token))

    def finished(self, row: int) -> bool:
        """The row's text is a complete answer of its grammar."""
        return not self.failed[row] and (self.done[row] or self.matchers[row].is_accepting())


def example_grammars(
    examples: Sequence[Any], mode: str, stop: str, convention: LiteralCase | None = None, dialect: str = "sqlite"
) -> list[str]:
    """One grammar per evaluation example (``question``, ``context``, ``db_path``: datasets.EvalExample), question
    spans in the case ``convention`` gives the example's context (any case without one), answers in ``dialect``."""
    grammars = []
    for ex in examples:
        values = database_values(ex.db_path, ex.question) if mode == "grammar+values" else []
        case = convention.case_for(ex.context) if convention is not None else "any"
        grammars.append(
            sql_grammar(ex.context, ex.question, mode=mode, stop=stop, values=values, case=case, dialect=dialect)
        )
    return grammars
