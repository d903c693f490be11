"""Synthesize small SQLite databases on which a gold query returns something worth comparing.

On empty tables every simple wrong variant of a gold query ties with it, so execution accuracy needs rows. For
each example we build ``k`` databases from its ``CREATE TABLE`` context and fill them with rows whose values
are
chosen from what the gold query looks at:

* **Literals go to the column they are compared with.** sqlglot pulls every predicate (``=``, ``<>``, ``<``,
  ``LIKE``, ``IN``, ``BETWEEN``, ``IS NULL``) and records (column, operator, value). A column then draws from
  *hits* (values that satisfy the predicate: the literal, values past a threshold, instances of a LIKE
  pattern,
  case variants where matching is case-insensitive) and *near misses* (values on the other side of a
  threshold,
  case variants where ``=`` is case-sensitive, other literals of the same query, the threshold itself).
* **Structured rows.** Each table gets rows that satisfy all of its predicates at once (several, so that
  MIN/MAX/COUNT/SUM see more than one row), one row per predicate that violates exactly that predicate (so a
  dropped condition changes the answer), then random rows.
* **Joinable keys.** Columns equated in joins or linked by ``IN (SELECT ...)``, and same-named columns across
  tables, share one small pool of values so joins match; ID-like columns draw from a small range.
* **Duplicates and NULLs.** Generic values come from small pools (so GROUP BY, COUNT and DISTINCT matter);
  later databases add a few NULLs.
* **Gold-guided retries.** A database on which the gold returns nothing non-trivial (empty, NULL or 0) is
  regenerated with a denser profile, a few times. Mutants are *not* used to pick databases: the mutant kill
  rate
  measured by the tests and the bench would otherwise be circular.

Everything is seeded from a hash of (context, gold, database index), so results are reproducible.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlglot import exp

from sqlmaster.config import EvaluationConfig, declared_default
from sqlmaster.evaluate import sqlast
from sqlmaster.evaluate.sandbox import (
    DEFAULT_LIMITS,
    ConnectionPool,
    Limits,
    QueryError,
    Row,
    lock_setup_connection,
    run_query,
    run_script,
    serialize_setup,
)

Value = str | int | float | None
# Connections of this process's synthesized databases, reused once an example is done with them.
POOL = ConnectionPool()
# databases synthesized per example when the caller does not say: the recipe's evaluation key
DATABASES_PER_EXAMPLE: int = declared_default(EvaluationConfig, "databases_per_example")


def _empty_database() -> bytes:
    """An empty database as bytes (a new connection's database cannot be serialized before it is written)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.executescript("CREATE TABLE t (a); DROP TABLE t; VACUUM")
        return conn.serialize()
    finally:
        conn.close()


EMPTY_DATABASE = _empty_database()

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
_ID_LIKE = re.compile(r"(^id$|_id$|id$|_code$|code$|_num$|_no$|^no$|key$)", re.IGNORECASE)
_FLIP = {"gt": "lt", "lt": "gt", "gte": "lte", "lte": "gte"}
_OPS: dict[type[exp.Expr], str] = {
    exp.EQ: "eq",
    exp.NEQ: "neq",
    exp.GT: "gt",
    exp.GTE: "gte",
    exp.LT: "lt",
    exp.LTE: "lte",
}
_CASE_FUNCS = (exp.Lower, exp.Upper)


@dataclass(frozen=True)
class Column:
    name: str
    decl_type: str

    @functools.cached_property  # asked for every value pool of every database
    def affinity(self) -> str:
        """SQLite's type-affinity rules (section 3.1 of the datatype docs)."""
        t = self.decl_type.upper()
        if "INT" in t:
            return "integer"
        if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
            return "text"
        if "BLOB" in t or not t:
            return "blob"
        if any(s in t for s in ("REAL", "FLOA", "DOUB")):
            return "real"
        return "numeric"


@dataclass
class Table:
    name: str
    columns: list[Column]


@dataclass
class Constraint:
    op: str  # eq | neq | gt | gte | lt | lte | like | in | between | isnull | notnull
    values: tuple[Value, ...]
    case_insensitive: bool = False


ColKey = tuple[str, str]  # (table lower, column lower)


@dataclass
class GoldHints:
    """What the gold query says about the data it wants to see."""

    constraints: dict[ColKey, list[Constraint]] = field(default_factory=lambda: defaultdict(list))
    links: list[tuple[ColKey, ColKey]] = field(default_factory=list)  # joined / IN-subquery column pairs
    numeric: set[ColKey] = field(default_factory=set)  # aggregated or compared with numbers
    aggregated: set[ColKey] = field(default_factory=set)  # under SUM/AVG/MIN/MAX
    extremes: dict[ColKey, str] = field(default_factory=dict)  # "low" under MIN only, "high" under MAX only, else "any"
    grouped: set[ColKey] = field(default_factory=set)
    count_threshold: int = 0  # largest N in HAVING COUNT(...) > N
    loose_literals: list[Value] = field(default_factory=list)  # literals we could not pin to a column


def seed_for(context: str, gold: str, index: int, base_seed: int = 0) -> int:
    digest = hashlib.sha256(f"{base_seed}\0{context}\0{gold}\0{index}".encode(errors="surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def read_schema(conn: sqlite3.Connection) -> list[Table]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
    tables = []
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        cols = [Column(str(r[1]), str(r[2] or "")) for r in conn.execute(f"PRAGMA table_info({quoted})")]
        tables.append(Table(name, cols))
    return tables


# --------------------------------------------------------------------------------------------- gold analysis


def _alias_map(table_nodes: list[exp.Expr], table_names: set[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for t in table_nodes:
        name = t.name.lower()
        if name in table_names:
            aliases[name] = name
            if t.alias:
                aliases[t.alias.lower()] = name
    return aliases


def _resolve(col: exp.Column, aliases: dict[str, str], tables: list[Table]) -> list[ColKey]:
    cname = col.name.lower()
    if col.table:
        tname = aliases.get(col.table.lower(), col.table.lower())
        return [(tname, cname)]
    return [(t.name.lower(), cname) for t in tables if any(c.name.lower() == cname for c in t.columns)]


def _unwrap_column(node: exp.Expr) -> tuple[exp.Column | None, bool]:
    """The column under casts, parentheses and LOWER/UPPER; flag whether a case function was crossed."""
    case = False
    while not isinstance(node, exp.Column):
        if isinstance(node, _CASE_FUNCS):
            case = True
        if isinstance(node, exp.Paren | exp.Cast | exp.Trim | exp.Lower | exp.Upper | exp.Abs):
            node = node.this
        else:
            return None, case
    return node, case


def analyse_gold(gold: str, tables: list[Table], tree: exp.Expr | None = None) -> GoldHints:
    """Predicates, join links and aggregated columns of the gold (``tree``: its parse, if already made)."""
    hints = GoldHints()
    tree = tree if tree is not None else sqlast.parse(gold)
    if tree is None:  # unparseable: keep whatever looks like a literal
        hints.loose_literals = [s for s in re.findall(r"[\"']([^\"']*)[\"']", gold)]
        hints.loose_literals += [int(n) for n in re.findall(r"\b\d+\b", gold)[:10]]
        return hints
    column_names = {c.name.lower() for t in tables for c in t.columns}
    tree = sqlast.dqs_to_strings(tree, column_names)
    # One breadth-first walk (find_all's order) serves every lookup below: walking the tree once per node type
    # was a tenth of the scorer's time.
    nodes = list(tree.walk())

    def find_all(*types: type[exp.Expr]) -> list[exp.Expr]:
        return [n for n in nodes if isinstance(n, types)]

    collect = _HintCollector(hints, tables, _alias_map(find_all(exp.Table), {t.name.lower() for t in tables}))
    for node in find_all(*sqlast.PREDICATES):
        collect.predicate(node)
    collect.aggregates(find_all(exp.Sum, exp.Avg, exp.Min, exp.Max))
    collect.groups(find_all(exp.Group))
    collect.loose_literals(find_all(exp.Literal))
    return hints


class _HintCollector:
    """Fills :class:`GoldHints` from the nodes of the parsed gold, one kind of node at a time."""

    def __init__(self, hints: GoldHints, tables: list[Table], aliases: dict[str, str]) -> None:
        self.hints, self.tables, self.aliases = hints, tables, aliases
        self.pinned: set[int] = set()  # literals a predicate took (the rest are loose literals)

    def resolve(self, col: exp.Column) -> list[ColKey]:
        return _resolve(col, self.aliases, self.tables)

    def add(self, col_node: exp.Expr, c: Constraint) -> None:
        col, case = _unwrap_column(col_node)
        if col is None:
            return
        c.case_insensitive = c.case_insensitive or case
        for key in self.resolve(col):
            self.hints.constraints[key].append(c)
            if any(isinstance(v, int | float) for v in c.values):
                self.hints.numeric.add(key)

    def link(self, left: exp.Column, right: exp.Column) -> None:
        for a in self.resolve(left):
            for b in self.resolve(right):
                self.hints.links.append((a, b))

    def predicate(self, node: exp.Expr) -> None:
        if isinstance(node, exp.In):
            self.in_list_or_subquery(node)
        elif isinstance(node, exp.Between):
            lo, hi = sqlast.literal_value(node.args["low"]), sqlast.literal_value(node.args["high"])
            if lo is not None and hi is not None:
                self.add(node.this, Constraint("between", (lo, hi)))
                self.pinned.update({id(node.args["low"]), id(node.args["high"])})
        elif isinstance(node, exp.Is):
            negated = isinstance(node.parent, exp.Not)
            self.add(node.this, Constraint("notnull" if negated else "isnull", ()))
        else:
            self.comparison(node)

    def in_list_or_subquery(self, node: exp.In) -> None:
        vals = tuple(sqlast.literal_value(e) for e in node.expressions)
        if node.expressions and all(v is not None for v in vals):
            self.add(node.this, Constraint("in", vals))
            self.pinned.update(id(e) for e in node.expressions)
        sub = node.args.get("query")
        left, _ = _unwrap_column(node.this)
        if sub is not None and left is not None:  # x IN (SELECT y ...) links x and y like a join
            select = sub.this if isinstance(sub, exp.Subquery) else sub
            for proj in getattr(select, "expressions", [])[:1]:
                right, _ = _unwrap_column(proj)
                if right is not None:
                    self.link(left, right)

    def comparison(self, node: exp.Expr) -> None:
        """column <op> literal (either way round), LIKE/GLOB, a join condition column = column, HAVING COUNT."""
        left, right = node.this, node.expression
        lval, rval = sqlast.literal_value(left), sqlast.literal_value(right)
        lcol, _ = _unwrap_column(left)
        rcol, _ = _unwrap_column(right)
        if lcol is not None and rcol is not None:
            self.link(lcol, rcol)
            return
        if isinstance(node, exp.Like | exp.ILike | exp.Glob):
            if rval is not None:
                self.add(left, Constraint("like", (rval,), case_insensitive=not isinstance(node, exp.Glob)))
                self.pinned.add(id(right))
            return
        op = _OPS.get(type(node))
        if op is None:
            return
        col_side, val, val_node = (left, rval, right) if rval is not None else (right, lval, left)
        if val is None:
            _having_count(self.hints, node, self.aliases, self.tables)
            return
        if col_side is right and op in _FLIP:
            op = _FLIP[op]
        self.add(col_side, Constraint(op, (val,)))
        self.pinned.add(id(val_node))

    def aggregates(self, funcs: list[exp.Expr]) -> None:
        for func in funcs:
            col, _ = _unwrap_column(func.this)
            if col is None:
                continue
            side = "low" if isinstance(func, exp.Min) else "high" if isinstance(func, exp.Max) else "any"
            for key in self.resolve(col):
                self.hints.numeric.add(key)
                self.hints.aggregated.add(key)
                self.hints.extremes[key] = side if self.hints.extremes.get(key, side) == side else "any"

    def groups(self, groups: list[exp.Expr]) -> None:
        for group in groups:
            for e in group.expressions:
                col, _ = _unwrap_column(e)
                if col is not None:
                    self.hints.grouped.update(self.resolve(col))

    def loose_literals(self, literals: list[exp.Expr]) -> None:
        for lit in literals:
            if id(lit) not in self.pinned and (lit.parent is None or id(lit.parent) not in self.pinned):
                v = sqlast.literal_value(lit)
                if v is not None and not isinstance(lit.parent, exp.Limit | exp.Offset):
                    self.hints.loose_literals.append(v)


def _having_count(hints: GoldHints, node: exp.Expr, aliases: dict[str, str], tables: list[Table]) -> None:
    """``HAVING COUNT(*) > N``: remember N so that some group gets more than N rows."""
    for side, other in ((node.this, node.expression), (node.expression, node.this)):
        if isinstance(side, exp.Count):
            n = sqlast.literal_value(other)
            if isinstance(n, int | float):
                hints.count_threshold = max(hints.count_threshold, int(n))


# --------------------------------------------------------------------------------------------- value pools


def _case_variants(s: str) -> list[str]:
    return list(dict.fromkeys(v for v in (s.upper(), s.title(), s.lower(), s.capitalize()) if v != s))


def _like_instances(pattern: str, rng: random.Random) -> tuple[list[Value], list[Value]]:
    core = pattern.replace("%", "").replace("_", "")
    word = rng.choice(_WORDS)
    hit = pattern.replace("%", " ").replace("_", "x").strip() or core or word
    hits: list[Value] = [hit, pattern.replace("%", f" {word} ").replace("_", "q").strip(), hit.upper()]
    if pattern.startswith("%"):
        hits.append(f"{word} {core}")
    if pattern.endswith("%"):
        hits.append(f"{core} {word}")
    near: list[Value] = [core[:-1] if len(core) > 1 else word, word, f"{core[::-1]}z" if core else "zz"]
    return [h for h in hits if h], near


def _numeric_neighbours(v: int | float) -> list[int | float]:
    if isinstance(v, int):
        return [v - 2, v - 1, v, v + 1, v + 2]
    return [v - 1.5, v - 0.5, v, v + 0.5, v + 1.5]


def _hits_and_near(
    c: Constraint, rng: random.Random, others: list[Value], text_affinity: bool = False
) -> tuple[list[Value], list[Value]]:
    hits: list[Value] = []
    near: list[Value] = []
    if c.op in ("eq", "neq", "in"):
        for v in c.values:
            hits.append(v)
            if isinstance(v, str):
                (hits if c.case_insensitive else near).extend(_case_variants(v))
                near.append(v + "s" if len(v) < 40 else v[:-1])
                if v.strip().lstrip("-").replace(".", "", 1).isdigit():
                    num = float(v) if "." in v else int(v)
                    near.extend(str(x) for x in _numeric_neighbours(num) if x != num)
            elif isinstance(v, int | float):
                near.extend(x for x in _numeric_neighbours(v) if x != v)
                hits.append(str(v))  # the text form of a number equals it under TEXT affinity
        near.extend(o for o in others if o not in c.values)
        if c.op == "neq":
            hits, near = near, hits
    elif c.op in ("gt", "gte", "lt", "lte"):
        v = c.values[0]
        if text_affinity:
            # A TEXT column compares as text even against a number ('9' > '10'): sort candidates by that rule.
            lit = str(v)
            cands: list[Value] = [lit, lit + "0", lit[:-1] or "0", "9" * max(1, len(lit)), "0", "a", "z"]
            if isinstance(v, int | float):
                cands += [str(x) for x in (*_numeric_neighbours(v), v * 10, v // 10 if isinstance(v, int) else v / 10)]
            test = {"gt": str.__gt__, "gte": str.__ge__, "lt": str.__lt__, "lte": str.__le__}[c.op]
            for x in dict.fromkeys(cands):
                (hits if test(str(x), lit) else near).append(x)
        elif isinstance(v, int | float):
            below: list[Value] = [v - 1, v - 2, v - 5, v // 2 if isinstance(v, int) else v / 2]
            above: list[Value] = [v + 1, v + 2, v + 5, v * 2 + 1]
            hits, near = (above, below) if c.op in ("gt", "gte") else (below, above)
            (hits if c.op in ("gte", "lte") else near).append(v)
        else:
            s = str(v)
            above, below = [s + "a", s + "z", "z" + s], [s[:-1] or "a", "0" + s, "a"]
            hits, near = (above, below) if c.op in ("gt", "gte") else (below, above)
            (hits if c.op in ("gte", "lte") else near).append(s)
    elif c.op == "like":
        hits, near = _like_instances(str(c.values[0]), rng)
        if not c.case_insensitive:
            near.append(str(c.values[0]).upper())
    elif c.op == "between":
        lo, hi = c.values
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            hits = [lo, hi, (lo + hi) // 2 if isinstance(lo, int) and isinstance(hi, int) else (lo + hi) / 2]
            near = [lo - 1, hi + 1, lo - 3, hi + 3]
        else:
            hits, near = [lo, hi], [str(lo)[:-1], str(hi) + "z"]
    elif c.op == "isnull":
        hits, near = [None], []
    elif c.op == "notnull":
        hits, near = [], [None]
    return hits, near


@dataclass
class _ColumnPlan:
    hits: list[Value]
    near: list[Value]
    generic: list[Value]
    key_pool: list[Value] | None  # join/ID pool, when the column is a key


@dataclass(frozen=True)
class Profile:
    """How one database is filled; the k databases use different profiles."""

    rows: int
    p_hit: float  # chance a constrained column takes a hit value in a random row
    p_near: float  # chance it takes a near miss (else a generic value)
    p_null: float  # chance a non-key, unconstrained value is NULL
    structured: int  # rows that satisfy every predicate of their table
    key_range: int  # size of the pool joinable keys are drawn from


PROFILES = (
    Profile(rows=24, p_hit=0.45, p_near=0.3, p_null=0.0, structured=3, key_range=5),
    Profile(rows=30, p_hit=0.3, p_near=0.4, p_null=0.04, structured=2, key_range=7),
    Profile(rows=16, p_hit=0.55, p_near=0.25, p_null=0.08, structured=4, key_range=4),
    Profile(rows=40, p_hit=0.35, p_near=0.35, p_null=0.02, structured=3, key_range=10),
)
# Denser profile used when the gold query came back trivial on a database.
RETRY_PROFILE = Profile(rows=30, p_hit=0.75, p_near=0.15, p_null=0.0, structured=8, key_range=3)


def _key_classes(tables: list[Table], hints: GoldHints) -> dict[ColKey, int]:
    """Union-find over joined columns and same-named columns across tables: one value pool per class."""
    parent: dict[ColKey, ColKey] = {}

    def find(k: ColKey) -> ColKey:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: ColKey, b: ColKey) -> None:
        parent[find(a)] = find(b)

    for a, b in hints.links:
        union(a, b)
    by_name: dict[str, list[ColKey]] = defaultdict(list)
    for t in tables:
        for c in t.columns:
            by_name[c.name.lower()].append((t.name.lower(), c.name.lower()))
    if len(tables) > 1:
        for keys in by_name.values():
            for k in keys[1:]:
                union(keys[0], k)
    linked = {k for pair in hints.links for k in pair}
    classes: dict[ColKey, int] = {}
    roots: dict[ColKey, int] = {}
    for t in tables:
        for c in t.columns:
            key = (t.name.lower(), c.name.lower())
            is_key = key in linked or (len(tables) > 1 and len(by_name[key[1]]) > 1) or _ID_LIKE.search(c.name)
            if is_key:
                classes[key] = roots.setdefault(find(key), len(roots))
    return classes


def _generic_pool(col: Column, key: ColKey, hints: GoldHints, rng: random.Random) -> list[Value]:
    nums = [v for c in hints.constraints.get(key, []) for v in c.values if isinstance(v, int | float)]
    numeric = col.affinity in ("integer", "real", "numeric") or key in hints.numeric
    if numeric:
        centre = int(nums[0]) if nums else rng.randint(5, 40)
        spread = max(3, abs(centre) // 10)
        if key in hints.aggregated and not nums:
            # Distinct values: a different set of rows then (almost always) gives a different SUM/AVG/MIN/MAX.
            pool: list[Value] = list(rng.sample(range(centre - 10 * spread, centre + 10 * spread), 20))
        else:
            pool = [centre + rng.randint(-3 * spread, 3 * spread) for _ in range(8)]
        if col.affinity == "real":
            pool = [p + rng.choice((0.0, 0.25, 0.5)) for p in pool if isinstance(p, int)]
        return pool
    stem = col.name.lower()[:6]
    words = rng.sample(_WORDS, 5)
    names: list[Value] = [f"{w} {stem}" if i % 2 else w for i, w in enumerate(words)]
    return [*names, str(rng.randint(1, 30))]


def plan_columns(
    tables: list[Table],
    hints: GoldHints,
    rng: random.Random,
    profile: Profile,
    classes: dict[ColKey, int] | None = None,
) -> dict[ColKey, _ColumnPlan]:
    """Value pools per column; ``classes``: :func:`_key_classes` of (tables, hints) when already computed."""
    if classes is None:
        classes = _key_classes(tables, hints)
    class_pools: dict[int, list[Value]] = {}
    for key, cls in classes.items():
        if cls not in class_pools:
            class_pools[cls] = list(range(1, profile.key_range + 1))
        for c in hints.constraints.get(key, []):
            class_pools[cls].extend(v for v in c.values if v is not None and v not in class_pools[cls])
    plans: dict[ColKey, _ColumnPlan] = {}
    loose = list(hints.loose_literals)
    for t in tables:
        for col in t.columns:
            key = (t.name.lower(), col.name.lower())
            hits: list[Value] = []
            near: list[Value] = []
            for c in hints.constraints.get(key, []):
                others = [v for cs in hints.constraints.values() for o in cs for v in o.values if o is not c]
                h, n = _hits_and_near(c, rng, others[:6], col.affinity == "text")
                hits.extend(h)
                near.extend(n)
            generic = _generic_pool(col, key, hints, rng)
            if loose and not hits:
                generic.extend(rng.sample(loose, min(2, len(loose))))
            pool = class_pools.get(classes[key]) if key in classes else None
            if pool is not None and len(tables) > 1:
                # Each table sees most, not all, of the shared keys: NOT IN / EXCEPT / LEFT JOIN then matter.
                pool = rng.sample(pool, max(2, (len(pool) * 3 + 3) // 4))
            plans[key] = _ColumnPlan(hits, near, generic, pool)
    return plans


def _value(plan: _ColumnPlan, rng: random.Random, profile: Profile, mode: str) -> Value:
    # seq[int(random() * len(seq))] instead of rng.choice: choice draws through Python-level _randbelow, and
    # this runs for every cell of every synthesized row.
    rnd = rng.random
    if mode == "hit" and plan.hits:
        return plan.hits[int(rnd() * len(plan.hits))]
    if mode == "near" and plan.near:
        return plan.near[int(rnd() * len(plan.near))]
    if plan.key_pool is not None and (mode != "random" or not plan.hits):
        return plan.key_pool[int(rnd() * len(plan.key_pool))]
    if mode == "random":
        r = rnd()
        if plan.hits and r < profile.p_hit:
            return plan.hits[int(rnd() * len(plan.hits))]
        if plan.near and r < profile.p_hit + profile.p_near:
            return plan.near[int(rnd() * len(plan.near))]
        if plan.key_pool is not None:
            return plan.key_pool[int(rnd() * len(plan.key_pool))]
        if not plan.hits and rnd() < profile.p_null:
            return None
    return plan.generic[int(rnd() * len(plan.generic))]


def _random_picker(plan: _ColumnPlan, rng: random.Random, profile: Profile) -> Callable[[], Value]:
    """``_value(plan, rng, profile, "random")`` as a function of nothing, drawing the same random numbers: the
    column's branches are decided once per table instead of once per cell (most cells are in random rows)."""
    rnd = rng.random
    hits, near, pool, generic = plan.hits, plan.near, plan.key_pool, plan.generic
    if pool is not None and not hits:
        n_pool = len(pool)
        return lambda: pool[int(rnd() * n_pool)]
    p_hit, p_hit_or_near, p_null = profile.p_hit, profile.p_hit + profile.p_near, profile.p_null
    n_hits, n_near, n_generic = len(hits), len(near), len(generic)

    def pick() -> Value:
        r = rnd()
        if n_hits and r < p_hit:
            return hits[int(rnd() * n_hits)]
        if n_near and r < p_hit_or_near:
            return near[int(rnd() * n_near)]
        if pool is not None:
            return pool[int(rnd() * len(pool))]
        if not n_hits and rnd() < p_null:
            return None
        return generic[int(rnd() * n_generic)]

    return pick


def _shuffle(rng: random.Random, items: list[tuple[Value, ...]]) -> None:
    """Fisher-Yates on random() (rng.shuffle draws through the slower _randbelow)."""
    rnd = rng.random
    for i in range(len(items) - 1, 0, -1):
        j = int(rnd() * (i + 1))
        items[i], items[j] = items[j], items[i]


def generate_rows(
    table: Table, plans: dict[ColKey, _ColumnPlan], hints: GoldHints, rng: random.Random, profile: Profile
) -> list[tuple[Value, ...]]:
    keys = [(table.name.lower(), c.name.lower()) for c in table.columns]
    constrained = [i for i, k in enumerate(keys) if plans[k].hits or plans[k].near]
    rows: list[tuple[Value, ...]] = []
    # Rows that satisfy every predicate on this table at once.
    for _ in range(profile.structured):
        rows.append(
            tuple(_value(plans[k], rng, profile, "hit" if i in constrained else "random") for i, k in enumerate(keys))
        )
    # One row per predicate that breaks exactly that predicate (a dropped condition must show). Its aggregated
    # columns take values beyond every other row's so that the aggregate sees the row too: below them under MIN,
    # above them under MAX, alternately low and high under SUM/AVG (or both MIN and MAX).
    aggregated = [i for i, k in enumerate(keys) if k in hints.aggregated and not plans[k].hits]
    for n, j in enumerate(constrained):
        row = [
            _value(plans[k], rng, profile, "near" if i == j else ("hit" if i in constrained else "random"))
            for i, k in enumerate(keys)
        ]
        for i in aggregated:
            nums = [v for v in plans[keys[i]].generic if isinstance(v, int | float)]
            if nums:
                side = hints.extremes.get(keys[i], "any")
                low = side == "low" or (side == "any" and (n + profile.rows) % 2 == 1)
                row[i] = min(nums) - 1 - n if low else max(nums) + 1 + n
        rows.append(tuple(row))
    target = max(profile.rows, min(80, 2 * hints.count_threshold + 4))
    pickers = [_random_picker(plans[k], rng, profile) for k in keys]
    while len(rows) < target:
        rows.append(tuple([pick() for pick in pickers]))
    # Large groups for HAVING COUNT(*) > N: repeat a grouped value.
    grouped = [i for i, k in enumerate(keys) if k in hints.grouped]
    if hints.count_threshold and grouped:
        first = rows[0]
        for r in range(1, min(len(rows), hints.count_threshold + 2)):
            rows[r] = tuple(first[i] if i in grouped else v for i, v in enumerate(rows[r]))
    _shuffle(rng, rows)
    return rows


# --------------------------------------------------------------------------------------------- databases


@dataclass
class SynthesizedExample:
    """The k databases of one example (as ``serialize()`` bytes) and the gold's rows on each."""

    databases: list[bytes]
    gold_rows: list[list[Row]]
    gold_error: str | None = None  # set when the context or the gold query is itself invalid
    nontrivial: bool = False  # the gold returned something beyond empty/NULL/0 on at least one database
    column_names: frozenset[str] = frozenset()  # lower-cased schema columns (resolves double-quoted names)
    # The databases as locked, read-only connections (kept open for the predictions; not compared).
    connections: list[sqlite3.Connection] = field(default_factory=list, compare=False, repr=False)


def is_trivial(rows: list[Row]) -> bool:
    return all(v is None or v == 0 or v == "" for row in rows for v in row)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _build(
    schema: bytes,
    tables: list[Table],
    rows: dict[str, list[tuple[Value, ...]]],
    limits: Limits,
    conn: sqlite3.Connection | None = None,
) -> sqlite3.Connection:
    """Fill ``conn`` (a setup connection holding the context's empty tables) or a fresh copy of ``schema``."""
    if conn is None:
        conn = POOL.setup_connection(limits, schema)  # the context's empty tables, built once per example
    conn.execute("BEGIN")
    for t in tables:
        if rows.get(t.name):
            marks = ", ".join("?" * len(t.columns))
            try:
                conn.executemany(f"INSERT INTO {_quote(t.name)} VALUES ({marks})", rows[t.name])
            except sqlite3.DatabaseError:
                # A CHECK/UNIQUE/NOT NULL constraint in the context: insert row by row, keeping what fits.
                for r in rows[t.name]:
                    try:
                        conn.execute(f"INSERT INTO {_quote(t.name)} VALUES ({marks})", r)
                    except sqlite3.DatabaseError:
                        continue
    conn.execute("COMMIT")
    return conn


def _load_context(context: str, limits: Limits) -> tuple[sqlite3.Connection, list[Table], bytes] | SynthesizedExample:
    """Run the context on a pooled connection, which becomes the first database (one connection fewer per
    example): that connection, the tables and the empty schema's bytes; or a failed example saying why."""
    probe = POOL.setup_connection(limits, EMPTY_DATABASE)
    assert probe is not None
    try:
        run_script(probe, context, limits)
        tables = read_schema(probe)
        schema = serialize_setup(probe)
    except (QueryError, sqlite3.DatabaseError) as exc:
        POOL.release(probe)
        return SynthesizedExample([], [], gold_error=f"context: {exc}")
    if not tables:
        POOL.release(probe)
        return SynthesizedExample([], [], gold_error="context: no CREATE TABLE")
    return probe, tables, schema


def synthesize(
    context: str,
    gold: str,
    k: int = DATABASES_PER_EXAMPLE,
    base_seed: int = 0,
    limits: Limits = DEFAULT_LIMITS,
    retries: int = 3,
    gold_tree: exp.Expr | None = None,
) -> SynthesizedExample:
    """Build ``k`` databases for (context, gold) and run the gold on each.

    Raises nothing for bad input: an invalid context or gold comes back with ``gold_error`` set.
    """
    loaded = _load_context(context, limits)
    if isinstance(loaded, SynthesizedExample):
        return loaded
    probe: sqlite3.Connection | None = loaded[0]
    tables, schema = loaded[1], loaded[2]
    column_names = frozenset(c.name.lower() for t in tables for c in t.columns)
    hints = analyse_gold(gold, tables, gold_tree)
    classes = _key_classes(tables, hints)  # the same for every database
    databases: list[bytes] = []
    gold_rows: list[list[Row]] = []
    connections: list[sqlite3.Connection] = []
    nontrivial = False
    for i in range(k):
        best: tuple[bytes, list[Row], sqlite3.Connection] | None = None
        for attempt in range(retries + 1):
            rng = random.Random(seed_for(context, gold, i * 100 + attempt, base_seed))
            profile = PROFILES[i % len(PROFILES)] if attempt == 0 else RETRY_PROFILE
            plans = plan_columns(tables, hints, rng, profile, classes)
            data = {t.name: generate_rows(t, plans, hints, rng, profile) for t in tables}
            conn = _build(schema, tables, data, limits, probe)
            probe = None
            try:
                payload = serialize_setup(conn)
                lock_setup_connection(conn, limits)
                result = run_query(conn, gold, limits)
            except QueryError as exc:
                for c in (conn, *connections, *([best[2]] if best is not None else [])):
                    POOL.release(c)
                return SynthesizedExample([], [], gold_error=f"gold: {exc}", column_names=column_names)
            if best is not None:
                POOL.release(best[2])
            best = (payload, result, conn)
            if not is_trivial(result):
                nontrivial = True
                break
        assert best is not None
        databases.append(best[0])
        gold_rows.append(best[1])
        connections.append(best[2])
    if probe is not None:  # k == 0
        POOL.release(probe)
    return SynthesizedExample(
        databases, gold_rows, nontrivial=nontrivial, column_names=column_names, connections=connections
    )
