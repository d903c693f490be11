"""The schema filter: when a database's rendered schema does not fit the prompt's budget, keep the tables whose
names, columns or sampled values the question mentions, plus the tables that join them, and drop example values
before dropping tables. Training (``data from-db``) and evaluation call the same function; training also keeps
``extra`` unrelated tables at random so the model does not learn that every table shown is used.

Recall (the share of Spider dev gold queries whose tables all survive) is measured in tests/test_fromdb_prompt.py.
"""

from __future__ import annotations

import random
import re

from sqlmaster.data.fromdb.profile import DbProfile, TableTerms
from sqlmaster.data.fromdb.render import ident, render_schema, table_lines
from sqlmaster.data.fromdb.words import plural, words

SCHEMA_CHARS = 2000  # default budget of the rendered schema, in characters (~550 tokens of a BPE vocabulary)
_TOKEN = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _question_terms(question: str) -> set[str]:
    return {_stem(t) for t in _TOKEN.findall(question)} | {t.lower() for t in _TOKEN.findall(question)}


def _terms(profile: DbProfile) -> list[TableTerms]:
    if not profile.terms:
        for table in profile.schema.tables:
            name = frozenset({_stem(w) for w in words(table.name)} | {plural(table.name).lower()})
            columns = tuple(frozenset({_stem(w) for w in words(c.name)} - {"id", "name"}) for c in table.columns)
            values = tuple(
                text
                for c in table.columns
                for v in (
                    profile.columns[(table.name, c.name)].values if (table.name, c.name) in profile.columns else ()
                )
                if len(text := str(v).lower()) > 2
            )
            profile.terms.append(TableTerms(table.name, name, columns, values))
    return profile.terms


def table_scores(profile: DbProfile, question: str) -> dict[str, float]:
    """How strongly ``question`` points at each table: its name (3), a column name (1 each), a value (2 each)."""
    terms = _question_terms(question)
    lowered = question.lower()
    scores: dict[str, float] = {}
    for table in _terms(profile):
        score = 3.0 * len(table.name & terms) + sum(1.0 for c in table.columns if c and c <= terms)
        for text in table.values:
            if text in lowered and re.search(rf"(?<!\w){re.escape(text)}(?!\w)", lowered):
                score += 2.0
        scores[table.table] = score
    return scores


def _neighbours(profile: DbProfile) -> dict[str, set[str]]:
    links: dict[str, set[str]] = {t.name: set() for t in profile.schema.tables}
    for table in profile.schema.tables:
        for key in table.foreign_keys:
            parent = profile.schema.table(key.ref_table)
            if parent is not None and parent.name != table.name:
                links[table.name].add(parent.name)
                links[parent.name].add(table.name)
    return links


def keep_tables(profile: DbProfile, question: str) -> list[str]:
    """The tables the question points at, with every table that links two of them (a bridge)."""
    scores = table_scores(profile, question)
    chosen = [t for t, s in sorted(scores.items(), key=lambda kv: -kv[1]) if s > 0]
    if not chosen:
        chosen = [t.name for t in profile.schema.tables[:1]]
    links = _neighbours(profile)
    picked = set(chosen)
    for table, linked in links.items():
        if table not in picked and len(linked & picked) >= 2:
            chosen.append(table)
    return chosen


def _fill(ranked: list[str], lines: dict[str, tuple[str, str]], budget: int, values: bool, forced: int) -> list[str]:
    """The ranked tables whose lines fit ``budget`` together, best first; the first ``forced`` (at least one)
    whatever their size."""
    chosen, size = [], 0
    for index, table in enumerate(ranked):
        length = len(lines[table][0 if values else 1]) + 1
        if size + length <= budget + 1 or index < max(forced, 1):
            chosen.append(table)
            size += length
    return chosen


def schema_for(
    profile: DbProfile,
    question: str,
    budget: int = SCHEMA_CHARS,
    rng: random.Random | None = None,
    extra: int = 1,
    needed: tuple[str, ...] = (),
) -> str:
    """The schema text for one question: everything when it fits ``budget``; else the filtered tables, best
    first, with example values when they all fit so, else without. Training (``rng`` given) adds ``extra``
    unrelated tables and puts the tables its SQL reads (``needed``) first: a pair never teaches SQL over a
    table the prompt does not show (the filter finds them for 99.5% of Spider dev's gold queries anyway)."""
    full = render_schema(profile)
    if len(full) <= budget:
        return full
    lines = table_lines(profile)
    ranked = list(dict.fromkeys([*needed, *keep_tables(profile, question)]))
    if rng is not None:
        taken = set(ranked)
        others = [t.name for t in profile.schema.tables if t.name not in taken]
        ranked += rng.sample(others, min(extra, len(others)))
    with_values = _fill(ranked, lines, budget, values=True, forced=len(needed))
    bare = _fill(ranked, lines, budget, values=False, forced=len(needed))
    values = len(with_values) >= len(bare)
    chosen = set(with_values if values else bare)
    return render_schema(profile, [t.name for t in profile.schema.tables if t.name in chosen], values=values)


def gold_survives(profile: DbProfile, shown: str, sql: str) -> bool:
    """Do every table and column that ``sql`` names appear in the schema text ``shown``? (The filter's recall is
    the share of gold queries for which this holds.) SQL that does not parse counts as not surviving."""
    import sqlglot
    from sqlglot import expressions as exp

    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return False
    kept = {t.name.lower() for t in profile.schema.tables if f"CREATE TABLE {ident(t.name)} (" in shown}
    tables = {t.name.lower() for t in tree.find_all(exp.Table)}
    if not tables <= kept:
        return False
    everywhere = {c.name.lower() for t in profile.schema.tables for c in t.columns}
    columns = {
        c.name.lower()
        for c in tree.find_all(exp.Column)
        if c.name and c.name != "*" and not (c.this.args.get("quoted") and c.name.lower() not in everywhere)
    }  # a double-quoted word that names no column is SQLite's string literal, as Spider writes them
    aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}
    available = {c.name.lower() for t in profile.schema.tables if t.name.lower() in kept for c in t.columns}
    return columns - aliases <= available
