"""A live database's schema as prompt text: CREATE TABLE statements with their keys and a few example values per
column, the same at training (``data from-db``) and at evaluation (from-db test files, and Spider dev under
``data.live_schema``), so a model sees one schema format.

    CREATE TABLE singer (Singer_ID int /* 1, 2, 3 */, Name text /* 'Joe Sharp' */, PRIMARY KEY (Singer_ID));

The text is valid SQL (values sit in comments), so it still creates the empty tables the scorer's fallback and
``data.drop_invalid_gold`` run the gold on. Identifiers that are not plain words are double-quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlmaster.data.fromdb.profile import DbProfile
from sqlmaster.engines.base import Table

VALUES_SHOWN = 3  # example values per column
VALUE_CHARS = 24  # a text value longer than this is not shown
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names quoted even when plain: SQL keywords on some engine, and words a model would misread as one.
_RESERVED_WORDS = """
all and as asc between by case cast check column create cross default delete desc distinct drop else end except
exists from full group having in index inner insert intersect into is join key left like limit natural not null of
offset on or order outer primary references right select set table then to union unique update using values when
where with user rank count
"""
RESERVED = frozenset(_RESERVED_WORDS.split())


def ident(name: str, quote: str = '"') -> str:
    """``name`` as SQL: bare when a plain word that is not reserved, else quoted with ``quote`` (doubled inside)."""
    if _PLAIN.fullmatch(name) and name.lower() not in RESERVED:
        return name
    return quote + name.replace(quote, quote + quote) + quote


def _shown(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    text = str(value)
    if len(text) > VALUE_CHARS or "*/" in text or "\n" in text or "\r" in text:
        return None
    return "'" + text.replace("'", "''") + "'"


def render_table(profile: DbProfile, table: Table, with_values: Iterable[str] | None = None) -> str:
    """One CREATE TABLE line; example values for the columns in ``with_values`` (all when None)."""
    valued = None if with_values is None else {c.lower() for c in with_values}
    parts = []
    for column in table.columns:
        text = f"{ident(column.name)} {column.type}".rstrip() if column.type else ident(column.name)
        cp = profile.columns.get((table.name, column.name))
        if cp is not None and (valued is None or column.name.lower() in valued):
            shown = [s for s in (_shown(v) for v in cp.values[:VALUES_SHOWN]) if s is not None]
            if shown:
                text += f" /* {', '.join(shown)} */"
        parts.append(text)
    if table.primary_key:
        parts.append(f"PRIMARY KEY ({', '.join(ident(c) for c in table.primary_key)})")
    for key in table.foreign_keys:
        ref = ", ".join(ident(c) for c in key.ref_columns if c)
        parts.append(
            f"FOREIGN KEY ({', '.join(ident(c) for c in key.columns)}) REFERENCES {ident(key.ref_table)}"
            + (f" ({ref})" if ref else "")
        )
    return f"CREATE TABLE {ident(table.name)} ({', '.join(parts)});"


def table_lines(profile: DbProfile) -> dict[str, tuple[str, str]]:
    """Each table's CREATE TABLE line with and without example values, rendered once per profile."""
    if not profile.lines:
        for table in profile.schema.tables:
            profile.lines[table.name] = (render_table(profile, table), render_table(profile, table, ()))
    return profile.lines


def render_schema(profile: DbProfile, tables: Iterable[str] | None = None, values: bool = True) -> str:
    """The CREATE TABLE lines of ``tables`` (all, in the database's order, when None)."""
    wanted = None if tables is None else {t.lower() for t in tables}
    lines = table_lines(profile)
    return "\n".join(
        lines[t.name][0 if values else 1] for t in profile.schema.tables if wanted is None or t.name.lower() in wanted
    )
