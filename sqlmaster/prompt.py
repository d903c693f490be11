"""The prompt templates: one source for training and inference.

The original project trained with one prompt and evaluated with another (single vs. triple backticks,
different endings). Here a run records its template name in ``run.json`` and evaluation always renders the
same template through these functions, so the prompt cannot drift between the two.

Each template splits an example into a *prompt* (question + schema; no loss) and a *completion* (the SQL;
the only tokens that carry loss). The tokenizer's EOS token is appended to the completion by the trainer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlmaster.errors import ConfigError


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt/completion pair of format strings and the marker that closes the SQL."""

    name: str
    prompt: str  # format string with {question} and {context}
    completion: str  # format string with {answer}
    stop: str | None  # text that ends the SQL in generated output (besides EOS)
    schema: Callable[[str], str] | None = None  # rewrites the CREATE TABLE context before it is inserted
    use: str = ""  # who it is for, in a few words: the prompt.template key's help lists it (sqlmaster/config.py)


# The original 7B-SQLMaster training prompt, kept verbatim so the 7B recipes stay faithful to it.
ORIGINAL = PromptTemplate(
    name="original",
    prompt=(
        "You are a powerful text-to-SQL model. Your job is to answer questions about a database. "
        "You are given a question and context regarding one or more tables.\n\n"
        "You must output the SQL query that answers the question.\n\n"
        "### Input:\n```{question}```\n\n"
        "### Context:\n```{context}```\n\n"
        "### Response:\n```"
    ),
    completion="{answer};```",
    stop="```",
    use="the 7B recipes: the original's prompt",
)

# A short template for the CPU `tiny` model: with a small model and a short budget the long preamble costs
# sequence length and (measured at one thread) accuracy, and carries no information.
COMPACT = PromptTemplate(
    name="compact",
    prompt="{context}\n-- {question}\n",
    completion="{answer}",
    stop="\n",  # the SQL is one line: a pretrained model that has not learnt EOS yet (zero-shot) stops there
    use="schema and question only, for small models",
)

_CREATE = re.compile(r"CREATE TABLE\s+(\w+)\s*\(([^()]*)\)\s*;?\s*", re.IGNORECASE)
_COLUMN = re.compile(r"(\w+)(?:\s+(\w+))?")


def terse_schema(context: str) -> str:
    """``CREATE TABLE t (a VARCHAR, b INTEGER)`` as ``t: a, b INTEGER`` (one table per line).

    Keeps every table and column name and every type except the ubiquitous VARCHAR (2 of every 3 columns), so the
    types that hint at the SQL (INTEGER: MAX, SUM, comparisons) stay. A context that is not a list of simple
    CREATE TABLE statements is returned unchanged.
    """
    tables = []
    position = 0
    for match in _CREATE.finditer(context):
        if context[position : match.start()].strip():
            return context
        position = match.end()
        columns = []
        for part in match.group(2).split(","):
            column = _COLUMN.fullmatch(part.strip())
            if column is None:
                return context
            name, kind = column.groups()
            columns.append(name if not kind or kind.upper() == "VARCHAR" else f"{name} {kind}")
        tables.append(f"{match.group(1)}: {', '.join(columns)}")
    if not tables or context[position:].strip():
        return context
    return "\n".join(tables)


# `compact` with the schema rendered by terse_schema: ~30% fewer tokens per example than `compact` for `tiny`,
# so more examples per second of a CPU budget; what the model must copy (table, column names) is all there.
TERSE = PromptTemplate(
    name="terse",
    prompt="{context}\n-- {question}\n",
    completion="{answer}",
    stop="\n",
    schema=terse_schema,
    use="compact with a terse schema: tiny's, SmolLM2's and Gemma 3 270M's",
)

TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (ORIGINAL, COMPACT, TERSE)}


# How a dialect other than SQLite is named in the prompt: (text of the template, what it becomes). The SQLite
# prompts stay byte-identical to the ones recipes and adapters were trained with.
_DIALECT_NAMES = {"duckdb": "DuckDB", "postgresql": "PostgreSQL", "mysql": "MySQL"}
_DIALECT_EDITS = {
    "original": ("You must output the SQL query", "You must output the {dialect} SQL query"),
    "compact": ("{context}\n", "-- {dialect}\n{context}\n"),
    "terse": ("{context}\n", "-- {dialect}\n{context}\n"),
}


def for_dialect(template: PromptTemplate, dialect: str) -> PromptTemplate:
    """``template`` naming ``dialect`` (a ``data.dialect`` value); ``sqlite`` returns it unchanged."""
    if dialect == "sqlite":
        return template
    name = _DIALECT_NAMES.get(dialect)
    if name is None:
        raise ConfigError(f"no prompt wording for dialect {dialect!r}. Use one of: sqlite, {', '.join(_DIALECT_NAMES)}")
    old, new = _DIALECT_EDITS[template.name]
    prompt = template.prompt.replace(old, new.replace("{dialect}", name), 1)
    return replace(template, prompt=prompt)


def templates_help() -> str:
    """Each template's name and use, for the ``prompt.template`` key's help (and so ``recipe keys`` and the
    charts' schemas): generated here so that a new template cannot be missing from it."""
    return "; ".join(f'"{t.name}" ({t.use})' for t in TEMPLATES.values())


def get_template(name: str, dialect: str = "sqlite") -> PromptTemplate:
    """Return the template called ``name`` (naming ``dialect`` unless it is sqlite) or raise a ConfigError
    listing the valid names."""
    try:
        template = TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown prompt template {name!r}. Choose one of: {', '.join(sorted(TEMPLATES))}") from None
    return for_dialect(template, dialect)


def render_prompt(template: PromptTemplate, question: str, context: str) -> str:
    """The model input for one example (identical at training and inference)."""
    context = context.strip()
    if template.schema is not None:
        context = template.schema(context)
    return template.prompt.format(question=question.strip(), context=context)


def render_completion(template: PromptTemplate, answer: str) -> str:
    """The training target for one example (without EOS; the trainer appends it)."""
    return template.completion.format(answer=answer.strip().rstrip(";").strip())


_FENCE = re.compile(r"```(?:sql)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_sql(template: PromptTemplate, generated: str) -> str:
    """Cut the SQL out of raw generated text.

    Handles: the template's closing marker, a fenced block anywhere in the text, trailing explanations
    after a blank line, and a trailing semicolon.
    """
    text = generated
    # One-line templates (stop "\n"): a fenced block is looked for first, then the SQL is its first line.
    one_line = template.stop == "\n"
    if template.stop and not one_line and template.stop in text:
        text = text.split(template.stop, 1)[0]
    elif (match := _FENCE.search(text)) is not None and match.group(1).strip():
        text = match.group(1)
    elif "```" in text:  # the SQL came first and a fence closed it, e.g. "SELECT ...;```"
        text = text.split("```", 1)[0]
    text = text.strip().strip("`").strip()
    if text.lower().startswith("sql\n"):
        text = text[4:]
    if one_line:
        text = text.strip().split("\n", 1)[0]
    # A model that keeps talking after the query usually starts a new paragraph or a new prompt section.
    text = re.split(r"\n\s*\n|\n###", text, maxsplit=1)[0]
    text = text.split(";", 1)[0]
    return " ".join(text.split())
