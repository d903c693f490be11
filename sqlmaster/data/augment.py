"""Fresh table ids and values for copies of the training rows, for a model that learns from scratch (`tiny`).

A randomly initialised model that sees the same 15k rows for several epochs starts to memorise them (measured
for tiny: train loss 0.47 against eval loss 0.84 after ~7 epochs) and its predictions then carry table ids and
WHERE values remembered from training instead of those in the prompt. Each augmented copy of a row gets new
digits in its table ids (in the schema and the SQL alike), another row's value in place of each string literal
(in the question and the SQL alike) and new digits for each integer the SQL compares with. The donor value keeps
how its own SQL spelled its question's words, and donors come from rows of the same kind, so the data's
conventions survive: sql-create-context's WikiSQL rows (``table_name_N``) lowercase every literal, the others
mostly copy it. Copying from the prompt is then the only way to get an id or a value right.

Only training rows are augmented; validation and test rows are never touched. The same rows and seed give the
same copies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from sqlmaster.data.examples import Example

TABLE_ID = re.compile(r"\btable_(?:name_)?\d+(?:_\d+)?\b")  # table_25604014_5, table_name_12
LITERAL = re.compile(r'"([^"\n]+)"')  # a double-quoted string literal in the SQL
DIGITS = re.compile(r"\d+")
NUMBER = re.compile(r"(?<=[=<>] )\d+(?![\w.])")  # an unquoted integer compared with: "year > 1958"


def augment(examples: Sequence[Example], copies: int, seed: int) -> list[Example]:
    """``examples`` followed by ``copies`` variants of each, in the same order."""
    if copies <= 0:
        return list(examples)
    rng = random.Random(seed)
    donors = _value_pool(examples)
    out = list(examples)
    for _ in range(copies):
        out.extend(variant(example, donors, rng) for example in examples)
    return out


def variant(example: Example, donors: dict[bool, list[tuple[str, str]]], rng: random.Random) -> Example:
    """``example`` with new table-id digits and donor values (a literal not found in the question is kept)."""
    question, context, answer = example.question, example.context, example.answer
    for table in dict.fromkeys(TABLE_ID.findall(context)):
        fresh = DIGITS.sub(lambda m: _digits(len(m.group()), rng), table)
        pattern = re.compile(rf"\b{re.escape(table)}\b")
        context, answer = pattern.sub(fresh, context), pattern.sub(fresh, answer)
    pool = donors.get(_wikisql(example), [])
    for literal in dict.fromkeys(LITERAL.findall(answer)):
        span = _find(question, literal)
        if span is None or not pool:
            continue
        asked, written = rng.choice(pool)
        question = question[: span[0]] + asked + question[span[1] :]
        answer = answer.replace(f'"{literal}"', f'"{written}"')
    for number in dict.fromkeys(NUMBER.findall(answer)):
        span = _find(question, number)
        if span is None:
            continue
        fresh = _digits(len(number), rng)
        question = question[: span[0]] + fresh + question[span[1] :]
        answer = re.sub(rf"(?<=[=<>] ){number}(?![\w.])", fresh, answer)
    return Example(question=question, context=context, answer=answer)


def _value_pool(examples: Sequence[Example]) -> dict[bool, list[tuple[str, str]]]:
    """(as the question says it, as the SQL writes it) for every literal found in its question, by row kind."""
    pool: dict[bool, list[tuple[str, str]]] = {True: [], False: []}
    for example in examples:
        for literal in LITERAL.findall(example.answer):
            span = _find(example.question, literal)
            if span is not None:
                pool[_wikisql(example)].append((example.question[span[0] : span[1]], literal))
    return pool


def _find(question: str, literal: str) -> tuple[int, int] | None:
    """Where ``literal`` stands as whole words in ``question``: exact spelling first, then any case."""
    for flags in (0, re.IGNORECASE):
        match = re.search(rf"(?<!\w){re.escape(literal)}(?!\w)", question, flags)
        if match:
            return match.span()
    return None


def _wikisql(example: Example) -> bool:
    return "table_name_" in example.context


def _digits(length: int, rng: random.Random) -> str:
    first = str(rng.randint(1, 9)) if length > 1 else str(rng.randint(0, 9))
    return first + "".join(str(rng.randint(0, 9)) for _ in range(length - 1))
