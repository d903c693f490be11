"""SQL families at three complexity levels, each drawn at random over one database's profile with its question.

A family function takes a :class:`Draw` (the profile, the seeded generator, the join edges) and returns one
:class:`Candidate` — SQL plus question — or None when the database has nothing of the shape it needs (no
numeric column, no foreign key ...). Nothing here runs SQL: :mod:`.keep` executes each candidate and keeps it only
when it runs in time and returns something telling.

| family | level | SQL |
|---|---|---|
| `filter` | 1-2 | ``SELECT c FROM t WHERE f = v`` (1) / ``f > n`` (2) |
| `count` | 1 | ``SELECT count(*) FROM t [WHERE f = v]`` |
| `aggregate` | 1-2 | ``SELECT MAX(n) FROM t [WHERE f = v]`` |
| `order` | 2 | ``... ORDER BY n DESC LIMIT 1`` / ``ORDER BY n`` |
| `group` | 2-3 | ``GROUP BY f`` with count / most common / ``HAVING count(*) >= k`` |
| `join` | 2-3 | joins along foreign keys (or shared column names): filter on the other table, count per parent |
| `subquery` | 3 | above average, ``NOT IN`` / ``IN (SELECT fk FROM child)`` |
| `set_op` | 3 | ``UNION`` / ``INTERSECT`` / ``EXCEPT`` of two filters |
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sqlmaster.data.fromdb.profile import ColumnProfile, DbProfile
from sqlmaster.data.fromdb.questions import AGGREGATE_WORDS, OPERATOR_WORDS, ask
from sqlmaster.data.fromdb.render import ident
from sqlmaster.data.fromdb.words import column_phrase, table_phrase, value_text


@dataclass(frozen=True)
class Candidate:
    family: str
    level: int
    sql: str
    question: str
    tables: tuple[str, ...]


@dataclass(frozen=True)
class Edge:
    """``child.child_col`` refers to ``parent.parent_col`` (a declared key, or a shared column name)."""

    child: str
    child_col: str
    parent: str
    parent_col: str
    declared: bool


class Draw:
    """One database's profile with the seeded generator every family draws from."""

    def __init__(self, profile: DbProfile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self.tables = [t for t in profile.queryable]
        self.edges = join_edges(profile)

    def q(self, name: str) -> str:
        return ident(name, self.profile.quote)

    def columns(self, table: str, kind: str = "any") -> list[ColumnProfile]:
        """Columns with sampled values; ``num``: numbers that are not keys (ids are not measured), ``cat``: short
        text."""
        schema_table = self.profile.table(table)
        keys = {c for k in schema_table.foreign_keys for c in k.columns} | set(schema_table.primary_key)
        out = []
        for column in schema_table.columns:
            cp = self.profile.profile(table, column.name)
            is_key = column.name in keys or column.name.lower().endswith("id")
            num = cp.numeric and not is_key
            if cp.values and (kind == "any" or (kind == "num" and num) or (kind == "cat" and cp.categorical)):
                out.append(cp)
        return out

    def pick(self, table: str, kind: str = "any", avoid: str = "") -> ColumnProfile | None:
        options = [c for c in self.columns(table, kind) if c.column.name != avoid]
        return self.rng.choice(options) if options else None

    def label(self, table: str) -> ColumnProfile | None:
        """A column that names a row (text, not a key) for the SELECT list; else any column."""
        keys = {c.name for c in self.profile.table(table).columns if c.primary_key}
        texts = [c for c in self.columns(table, "cat") if c.column.name not in keys]
        named = [c for c in texts if "name" in c.column.name.lower() or "title" in c.column.name.lower()]
        return self.rng.choice(named or texts) if (named or texts) else self.pick(table)


def literal(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value_text(value)
    text = str(value).replace("'", "''")
    return f"'{text}'"


def join_edges(profile: DbProfile) -> list[Edge]:
    """Declared foreign keys between queryable tables; where a pair has none, a shared column name that is a
    primary key on one side."""
    queryable = set(profile.queryable)
    edges: list[Edge] = []
    for table in profile.schema.tables:
        for key in table.foreign_keys:
            parent = profile.schema.table(key.ref_table)
            if table.name in queryable and parent is not None and parent.name in queryable and len(key.columns) == 1:
                ref = key.ref_columns[0] or (parent.primary_key or ("",))[0]
                if ref:
                    edges.append(Edge(table.name, key.columns[0], parent.name, ref, True))
    linked = {frozenset((e.child, e.parent)) for e in edges}
    holders: dict[str, list[tuple[str, str]]] = {}  # lowercased column name -> (table, column) not a primary key
    for table in profile.schema.tables:
        for column in table.columns:
            if not column.primary_key and table.name in queryable:
                holders.setdefault(column.name.lower(), []).append((table.name, column.name))
    for parent in profile.schema.tables:
        if parent.name not in queryable or len(parent.primary_key) != 1:
            continue
        pk = parent.primary_key[0]
        for child, col in holders.get(pk.lower(), ()):
            pair = frozenset((child, parent.name))
            if child != parent.name and pair not in linked:
                edges.append(Edge(child, col, parent.name, pk, False))
                linked.add(pair)
    return edges


def _words(d: Draw, table: str) -> dict[str, str]:
    return {"tables": table_phrase(table), "table": table_phrase(table, many=False)}


def fam_filter(d: Draw) -> Candidate | None:
    t = d.rng.choice(d.tables)
    out, f = d.label(t), d.pick(t, d.rng.choice(("cat", "num")))
    if out is None or f is None or out.column.name == f.column.name:
        return None
    value = d.rng.choice(f.values)
    slots = {**_words(d, t), "col": column_phrase(out.column.name), "fcol": column_phrase(f.column.name)}
    head = f"SELECT {d.q(out.column.name)} FROM {d.q(t)} WHERE {d.q(f.column.name)}"
    if f.numeric and d.rng.random() < 0.6:
        op = d.rng.choice(tuple(OPERATOR_WORDS))
        question = ask("filter_cmp", d.rng, op_words=OPERATOR_WORDS[op], value=value_text(value), **slots)
        return Candidate("filter", 2, f"{head} {op} {literal(value)}", question, (t,))
    word = _word_of(value)
    if word and d.rng.random() < 0.2:
        sql = f"{head} LIKE {literal(f'%{word}%')}"
        return Candidate("filter", 2, sql, ask("filter_like", d.rng, value=word, **slots), (t,))
    second = d.pick(t, avoid=out.column.name) if d.rng.random() < 0.35 else None
    if second is not None and second.column.name != f.column.name:
        head = head.replace(
            "SELECT " + d.q(out.column.name), f"SELECT {d.q(out.column.name)}, {d.q(second.column.name)}", 1
        )
        question = ask("filter_two", d.rng, col2=column_phrase(second.column.name), value=value_text(value), **slots)
        return Candidate("filter", 2, f"{head} = {literal(value)}", question, (t,))
    return Candidate(
        "filter", 1, f"{head} = {literal(value)}", ask("filter_eq", d.rng, value=value_text(value), **slots), (t,)
    )


def _word_of(value: object) -> str | None:
    """A word inside a multi-word text value (for LIKE), or None."""
    if not isinstance(value, str):
        return None
    parts = [w for w in value.split() if w.isalpha() and len(w) > 3]
    return parts[0] if len(value.split()) > 1 and parts else None


def fam_count(d: Draw) -> Candidate | None:
    t = d.rng.choice(d.tables)
    f = d.pick(t, "cat") if d.rng.random() < 0.8 else None
    if f is not None and d.rng.random() < 0.25:
        sql = f"SELECT count(DISTINCT {d.q(f.column.name)}) FROM {d.q(t)}"
        question = ask("count_distinct", d.rng, fcol=column_phrase(f.column.name), **_words(d, t))
        return Candidate("count", 1, sql, question, (t,))
    if f is None:
        return Candidate("count", 1, f"SELECT count(*) FROM {d.q(t)}", ask("count_all", d.rng, **_words(d, t)), (t,))
    value = d.rng.choice(f.values)
    sql = f"SELECT count(*) FROM {d.q(t)} WHERE {d.q(f.column.name)} = {literal(value)}"
    question = ask("count_eq", d.rng, fcol=column_phrase(f.column.name), value=value_text(value), **_words(d, t))
    return Candidate("count", 1, sql, question, (t,))


def fam_aggregate(d: Draw) -> Candidate | None:
    t = d.rng.choice(d.tables)
    n = d.pick(t, "num")
    if n is None:
        return None
    agg = d.rng.choice(tuple(AGGREGATE_WORDS))
    slots = {**_words(d, t), "agg": AGGREGATE_WORDS[agg], "col": column_phrase(n.column.name)}
    sql = f"SELECT {agg}({d.q(n.column.name)}) FROM {d.q(t)}"
    if d.rng.random() < 0.2:
        sql = f"SELECT max({d.q(n.column.name)}), min({d.q(n.column.name)}) FROM {d.q(t)}"
        return Candidate("aggregate", 1, sql, ask("aggregate_range", d.rng, **slots), (t,))
    f = d.pick(t, "cat", avoid=n.column.name) if d.rng.random() < 0.5 else None
    if f is None:
        return Candidate("aggregate", 1, sql, ask("aggregate", d.rng, **slots), (t,))
    value = d.rng.choice(f.values)
    sql += f" WHERE {d.q(f.column.name)} = {literal(value)}"
    question = ask("aggregate_eq", d.rng, fcol=column_phrase(f.column.name), value=value_text(value), **slots)
    return Candidate("aggregate", 2, sql, question, (t,))


def fam_order(d: Draw) -> Candidate | None:
    t = d.rng.choice(d.tables)
    n, out = d.pick(t, "num"), d.label(t)
    if n is None or out is None or n.column.name == out.column.name:
        return None
    desc = d.rng.random() < 0.5
    slots = {**_words(d, t), "col": column_phrase(out.column.name), "col2": column_phrase(n.column.name)}
    base = f"SELECT {d.q(out.column.name)} FROM {d.q(t)} ORDER BY {d.q(n.column.name)}"
    if d.rng.random() < 0.6:
        sql = f"{base}{' DESC' if desc else ''} LIMIT 1"
        question = ask("order_top", d.rng, extreme="highest" if desc else "lowest", **slots)
    else:
        sql = f"{base}{' DESC' if desc else ' ASC'}"
        question = ask("order_all", d.rng, direction="descending" if desc else "ascending", **slots)
    return Candidate("order", 2, sql, question, (t,))


def fam_group(d: Draw) -> Candidate | None:
    t = d.rng.choice(d.tables)
    f = d.pick(t, "cat")
    if f is None:
        return None
    col, ft = d.q(f.column.name), d.q(t)
    slots = {**_words(d, t), "fcol": column_phrase(f.column.name)}
    shape = d.rng.choice(("group_count", "group_top", "having", "group_agg"))
    n = d.pick(t, "num", avoid=f.column.name)
    if shape == "group_agg" and n is not None:
        agg = d.rng.choice(tuple(AGGREGATE_WORDS))
        sql = f"SELECT {col}, {agg}({d.q(n.column.name)}) FROM {ft} GROUP BY {col}"
        question = ask(shape, d.rng, agg=AGGREGATE_WORDS[agg], col=column_phrase(n.column.name), **slots)
        return Candidate("group", 2, sql, question, (t,))
    if shape in ("group_count", "group_agg"):  # group_agg without a numeric column: the count
        shape = "group_count"
        return Candidate(
            "group", 2, f"SELECT {col}, count(*) FROM {ft} GROUP BY {col}", ask(shape, d.rng, **slots), (t,)
        )
    if shape == "group_top":
        sql = f"SELECT {col} FROM {ft} GROUP BY {col} ORDER BY count(*) DESC LIMIT 1"
        return Candidate("group", 2, sql, ask(shape, d.rng, **slots), (t,))
    k = d.rng.choice((2, 3))
    sql = f"SELECT {col} FROM {ft} GROUP BY {col} HAVING count(*) >= {k}"
    return Candidate("group", 3, sql, ask(shape, d.rng, n=str(k), **slots), (t,))


def _join(d: Draw, e: Edge) -> str:
    return f"FROM {d.q(e.child)} AS T1 JOIN {d.q(e.parent)} AS T2 ON T1.{d.q(e.child_col)} = T2.{d.q(e.parent_col)}"


def fam_join(d: Draw) -> Candidate | None:
    if not d.edges:
        return None
    e = d.rng.choice(d.edges)
    other = {"other": table_phrase(e.parent), "other_one": table_phrase(e.parent, many=False)}
    if d.rng.random() < 0.5:
        out, f = d.label(e.child), d.pick(e.parent, "cat")
        if out is None or f is None:
            return None
        value = d.rng.choice(f.values)
        sql = f"SELECT T1.{d.q(out.column.name)} {_join(d, e)} WHERE T2.{d.q(f.column.name)} = {literal(value)}"
        slots = {**_words(d, e.child), **other, "col": column_phrase(out.column.name)}
        question = ask("join_eq", d.rng, fcol=column_phrase(f.column.name), value=value_text(value), **slots)
        return Candidate("join", 2, sql, question, (e.child, e.parent))
    out = d.label(e.parent)
    if out is None:
        return None
    group = f"T1.{d.q(e.child_col)}"  # Spider's form; engines stricter than SQLite need the label grouped too
    if d.profile.dialect != "sqlite":
        group = f"T2.{d.q(e.parent_col)}, T2.{d.q(out.column.name)}"
    if d.rng.random() < 0.4:
        sql = f"SELECT T2.{d.q(out.column.name)} {_join(d, e)} GROUP BY {group} ORDER BY count(*) DESC LIMIT 1"
        question = ask("join_top", d.rng, col=column_phrase(out.column.name), **_words(d, e.child), **other)
        return Candidate("join", 3, sql, question, (e.child, e.parent))
    sql = f"SELECT T2.{d.q(out.column.name)}, count(*) {_join(d, e)} GROUP BY {group}"
    question = ask("join_group", d.rng, col=column_phrase(out.column.name), **_words(d, e.child), **other)
    return Candidate("join", 3, sql, question, (e.child, e.parent))


def fam_subquery(d: Draw) -> Candidate | None:
    if d.edges and d.rng.random() < 0.6:
        e = d.rng.choice(d.edges)
        out = d.label(e.parent)
        if out is None:
            return None
        negate = d.rng.random() < 0.6
        sql = (
            f"SELECT {d.q(out.column.name)} FROM {d.q(e.parent)} WHERE {d.q(e.parent_col)} {'NOT ' if negate else ''}"
            f"IN (SELECT {d.q(e.child_col)} FROM {d.q(e.child)})"
        )
        slots = {**_words(d, e.parent), "other": table_phrase(e.child), "other_one": table_phrase(e.child, False)}
        question = ask("not_in" if negate else "in", d.rng, col=column_phrase(out.column.name), **slots)
        return Candidate("subquery", 3, sql, question, (e.parent, e.child))
    t = d.rng.choice(d.tables)
    n, out = d.pick(t, "num"), d.label(t)
    if n is None or out is None or n.column.name == out.column.name:
        return None
    c = d.q(n.column.name)
    sql = f"SELECT {d.q(out.column.name)} FROM {d.q(t)} WHERE {c} > (SELECT avg({c}) FROM {d.q(t)})"
    slots = {**_words(d, t), "col": column_phrase(out.column.name), "col2": column_phrase(n.column.name)}
    return Candidate("subquery", 3, sql, ask("above_average", d.rng, **slots), (t,))


def fam_set_op(d: Draw) -> Candidate | None:
    t = d.rng.choice(d.tables)
    out, f = d.label(t), d.pick(t, "cat")
    if out is None or f is None or f.column.name == out.column.name or len(f.values) < 2:
        return None
    v1, v2 = d.rng.sample(list(f.values), 2)
    op = d.rng.choice(("UNION", "INTERSECT", "EXCEPT"))
    part = f"SELECT {d.q(out.column.name)} FROM {d.q(t)} WHERE {d.q(f.column.name)} = "
    sql = f"{part}{literal(v1)} {op} {part}{literal(v2)}"
    slots = {**_words(d, t), "col": column_phrase(out.column.name), "fcol": column_phrase(f.column.name)}
    question = ask(op.lower(), d.rng, value=value_text(v1), value2=value_text(v2), **slots)
    return Candidate("set_op", 3, sql, question, (t,))


FAMILIES: dict[str, Callable[[Draw], Candidate | None]] = {
    "filter": fam_filter,
    "count": fam_count,
    "aggregate": fam_aggregate,
    "order": fam_order,
    "group": fam_group,
    "join": fam_join,
    "subquery": fam_subquery,
    "set_op": fam_set_op,
}
