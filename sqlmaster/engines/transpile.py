"""SQLite-flavoured SQL (sql-create-context's gold, a model's prediction) in another engine's dialect, meaning
what SQLite means by it.

sqlglot (pinned) rewrites the syntax; what it leaves to the caller is SQLite's *semantics*, which need the schema
(the example's ``CREATE TABLE`` context, as :func:`column_types` reads it). Rules applied, in order:

1. **Double-quoted names that name no column are strings** (SQLite's DQS rule: ``WHERE year = "2009"`` is the
   string ``'2009'`` in SQLite and a column in PostgreSQL/DuckDB): :func:`sqlmaster.evaluate.sqlast.dqs_to_strings`.
2. **Identifiers are lower-cased and quoted** (all of them, or with ``quote="needed"`` only where bare they would
   be misread): SQLite matches names case-insensitively; the scratch databases
   (:mod:`.scratch`) create every table and column lower-cased, so ``Name``, ``NAME`` and ``name`` all find it on
   PostgreSQL and MySQL too, and reserved words (``year``, ``rank``, ``order``) are safe.
3. **Comparison affinity** (SQLite's datatype docs, section 4.2): a text column compared with a number compares
   as text (``founded = 1976`` is ``founded = '1976'``; ``year > 1958`` compares strings), so the number becomes
   its text; a numeric column compared with a string that reads as a number compares as numbers, so the string
   becomes that number. Applied to ``=, <>, <, <=, >, >=, IN (...)`` and ``BETWEEN``.
4. **Text used as a number** (``SUM(points)``, ``points + 1`` on a VARCHAR column) is converted as SQLite does:
   to a number, text that does not read as one counting 0 (DuckDB ``TRY_CAST``; PostgreSQL a pattern test).
5. **Integer division**: ``a / b`` of two integers truncates in SQLite; on DuckDB it becomes ``a // b`` (its
   ``/`` is real division), on MySQL ``a DIV b``; PostgreSQL already truncates. Division by zero is NULL.
6. **LIKE is case-insensitive** in SQLite: ``ILIKE`` on PostgreSQL and DuckDB (a non-text operand cast to text),
   ``LOWER(x) LIKE LOWER(p)`` on MySQL (its scratch database collates binary, as SQLite does).
7. **Bare columns** (``SELECT name, MAX(score) FROM t``, columns neither grouped nor aggregated): SQLite takes
   them from the row that holds the MIN/MAX when the query has exactly one, else from some row. DuckDB gets
   ``ARG_MAX``/``ARG_MIN``/``ANY_VALUE``; PostgreSQL (no ANY_VALUE before 16) the first element of an ordered
   ``ARRAY_AGG``; MySQL's scratch session runs without ONLY_FULL_GROUP_BY, so it keeps them bare.
8. NULLs sort first ascending, as in SQLite (sqlglot writes ``NULLS FIRST``/``NULLS LAST`` where needed).
9. Ties of a grouped query's ORDER BY come in SQLite's order (the group keys', reversed under a descending last
   key): where LIMIT cuts a tie, the same rows are kept.
10. A number literal compared with a string literal (``WHERE 2010 = "2r"``, sql-create-context's year columns)
    is decided as SQLite does (every number sorts before every string); a comparison used as an operand of
    another (``score = 71 - 69 - 66 = 206``) is SQLite's integer 0 or 1.

A query these rules cannot carry over raises :class:`TranspileError` with a ``cause`` from :data:`CAUSES`;
callers count causes (never drop a row silently).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sqlmaster.engines.keywords import RESERVED
from sqlmaster.evaluate import sqlast

# engine name (sqlmaster.engines.ENGINE_NAMES, --engine, data.dialect) -> sqlglot's dialect name
DIALECTS: dict[str, str] = {"sqlite": "sqlite", "duckdb": "duckdb", "postgresql": "postgres", "mysql": "mysql"}
# How names are quoted (transpile's ``quote``).
QUOTING = ("all", "needed")
# Why a query could not be transpiled (TranspileError.cause).
CAUSES = ("parse", "unsupported", "generate")
# SQLite type affinities (synth.Column.affinity): what a column's kind is called here.
TEXT, INTEGER, REAL, NUMERIC, BLOB = "text", "integer", "real", "numeric", "blob"
_NUMBER_KINDS = (INTEGER, REAL, NUMERIC)

# table (lower-cased) -> column (lower-cased) -> kind (TEXT, INTEGER, REAL, NUMERIC or BLOB)
ColumnTypes = Mapping[str, Mapping[str, str]]

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_INT_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_REAL_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_POSTGRES_NUMBER = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_EXTREMES = {exp.Max: exp.ArgMax, exp.Min: exp.ArgMin}


class TranspileError(ValueError):
    """A query that cannot be carried over; ``cause`` is one of :data:`CAUSES`."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(f"{cause}: {message}")
        self.cause = cause


@dataclass(frozen=True)
class Scope:
    """The tables a SELECT reads: alias or name -> table (all lower-cased)."""

    aliases: dict[str, str]


def column_types(tables: object) -> dict[str, dict[str, str]]:
    """Kinds of the columns of ``tables`` (:class:`sqlmaster.evaluate.synth.Table` objects), by SQLite affinity."""
    return {t.name.lower(): {c.name.lower(): c.affinity for c in t.columns} for t in tables}  # type: ignore[attr-defined]


def sqlite_text(value: int | float) -> str:
    """A number as SQLite writes it as text (``5`` → ``'5'``, ``5.50`` → ``'5.5'``, ``2.0`` → ``'2.0'``)."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.15g}"
    return text if any(ch in text for ch in ".en") else f"{text}.0"


def transpile(sql: str, engine: str, types: ColumnTypes | None = None, quote: str = "all") -> str:
    """``sql`` (SQLite) written for ``engine`` (a name in :data:`DIALECTS`) with the rules of this module.

    ``types``: the schema's column kinds (:func:`column_types`); without it only the syntax and the rules that
    need no schema apply. ``quote``: ``"all"`` quotes every name (scoring: nothing can be misread);
    ``"needed"`` only the names the engine would misread bare (:mod:`.keywords`, names that are not plain
    lower-case words): the answers a model learns from (``data.dialect``), as short as SQLite's. Both mean the
    same on the lower-cased databases the scorer builds. Raises :class:`TranspileError`.
    """
    dialect = DIALECTS.get(engine)
    if dialect is None:
        raise ValueError(f"unknown engine {engine!r}; one of {', '.join(DIALECTS)}")
    if quote not in QUOTING:
        raise ValueError(f"unknown quote {quote!r}; one of {', '.join(QUOTING)}")
    if engine == "sqlite":
        return sql
    tree = sqlast.parse(sql)
    if tree is None:
        raise TranspileError("parse", "sqlglot cannot parse it as one SQLite statement")
    lowered = {t.lower(): {c.lower(): k for c, k in cols.items()} for t, cols in (types or {}).items()}
    columns = {c for cols in lowered.values() for c in cols}
    tree = sqlast.dqs_to_strings(tree, columns if lowered else None)
    _lower_identifiers(tree)
    try:
        tree = _apply_rules(tree, engine, lowered)
        if quote == "needed":
            _quote_where_needed(tree, engine)
        return tree.sql(dialect=dialect, identify=quote == "all", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except TranspileError:
        raise
    except SqlglotError as exc:
        raise TranspileError("unsupported", str(exc).splitlines()[0]) from None
    except (ValueError, KeyError, AttributeError, TypeError, RecursionError) as exc:
        raise TranspileError("generate", f"{type(exc).__name__}: {exc}") from None


def _lower_identifiers(tree: exp.Expr) -> None:
    for ident in tree.find_all(exp.Identifier):
        ident.set("this", ident.this.lower())


def _quote_where_needed(tree: exp.Expr, engine: str) -> None:
    reserved = RESERVED[engine]
    for ident in tree.find_all(exp.Identifier):
        name = ident.this
        ident.set("quoted", name in reserved or _PLAIN_NAME.fullmatch(name) is None)


def _apply_rules(tree: exp.Expr, engine: str, types: dict[str, dict[str, str]]) -> exp.Expr:
    if engine != "duckdb" and (isinstance(tree, exp.Glob) or tree.find(exp.Glob) is not None):
        raise TranspileError("unsupported", f"GLOB has no equivalent on {engine}")
    kinds = _Kinds(types)
    for comparison in list(tree.find_all(*_COMPARISONS)):
        _comparison_operands(comparison)
    for predicate in list(tree.find_all(*_COMPARISONS, exp.In, exp.Between)):
        tree = _affinity(tree, predicate, kinds)
    for operation in list(tree.find_all(exp.Sum, exp.Avg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg)):
        _numbers_of_text(operation, kinds, engine)
    for division in list(tree.find_all(exp.Div)):
        _integer_division(division, kinds, engine)
    for like in list(tree.find_all(exp.Like)):
        tree = _case_insensitive_like(tree, like, kinds, engine)
    for select in list(tree.find_all(exp.Select)):
        _group_order_ties(select)
        if engine in ("duckdb", "postgresql"):
            _bare_columns(select, engine, kinds)
    return tree


def _group_order_ties(select: exp.Select) -> None:
    """Rule 9: a grouped query's rows that its ORDER BY leaves tied come in SQLite's order: the groups' (SQLite
    groups by sorting on the keys), reversed when the last sort key is descending. Matters where LIMIT cuts a
    tie (``GROUP BY country ORDER BY COUNT(*) DESC LIMIT 1``)."""
    group, order = select.args.get("group"), select.args.get("order")
    if group is None or order is None or not order.expressions or not group.expressions:
        return
    desc = bool(order.expressions[-1].args.get("desc"))
    for key in group.expressions:
        if isinstance(key, exp.Literal):  # GROUP BY 1: an output position, not a value
            return
        order.append("expressions", exp.Ordered(this=key.copy(), desc=desc, nulls_first=not desc))


class _Kinds:
    """The kind (affinity) of an expression: a column's from the schema; literals and a few functions by type."""

    def __init__(self, types: dict[str, dict[str, str]]) -> None:
        self.types = types

    def of(self, node: exp.Expr) -> str | None:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Cast):
            return _cast_kind(node)
        if isinstance(node, exp.Literal):
            return TEXT if node.is_string else (INTEGER if node.is_int else REAL)
        if isinstance(node, exp.Count | exp.Length):
            return INTEGER
        if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod):
            left, right = self.of(node.this), self.of(node.expression)
            return INTEGER if left == right == INTEGER else (REAL if left and right else None)
        return None

    def column(self, col: exp.Column) -> str | None:
        name = col.name.lower()
        if col.table:
            table = _scope_of(col).aliases.get(col.table.lower(), col.table.lower())
            return self.types.get(table, {}).get(name)
        scope = _scope_of(col)
        found = {self.types[t][name] for t in scope.aliases.values() if name in self.types.get(t, {})}
        if not found:  # a correlated reference: any table of the schema
            found = {cols[name] for cols in self.types.values() if name in cols}
        return found.pop() if len(found) == 1 else None

    def is_text_column(self, node: exp.Expr) -> bool:
        return isinstance(node, exp.Column) and self.column(node) in (TEXT, BLOB)


def _cast_kind(node: exp.Cast) -> str | None:
    to = node.to
    if to.is_type(*exp.DataType.INTEGER_TYPES):
        return INTEGER
    if to.is_type(*exp.DataType.REAL_TYPES):
        return REAL
    if to.is_type(*exp.DataType.TEXT_TYPES):
        return TEXT
    return None


def _scope_of(node: exp.Expr) -> Scope:
    select = node.find_ancestor(exp.Select)
    aliases: dict[str, str] = {}
    if select is not None:
        for table in select.find_all(exp.Table):
            if table.find_ancestor(exp.Select) is select:
                aliases[table.name.lower()] = table.name.lower()
                if table.alias:
                    aliases[table.alias.lower()] = table.name.lower()
    return Scope(aliases)


def _comparison_operands(node: exp.Expr) -> None:
    """A comparison used as an operand of another (``score = 71 - 69 = 206``) is SQLite's integer 0 or 1."""
    for key in ("this", "expression"):
        operand = node.args.get(key)
        while isinstance(operand, exp.Paren):
            operand = operand.this
        if isinstance(operand, _COMPARISONS):
            wrapper = exp.Cast(to=exp.DataType.build("INT"))
            operand.replace(wrapper)
            wrapper.set("this", exp.Paren(this=operand))


def _affinity(tree: exp.Expr, node: exp.Expr, kinds: _Kinds) -> exp.Expr:
    """Rule 3: the literal side of a comparison takes the column side's affinity."""
    if isinstance(node, exp.In):
        values = node.expressions
    elif isinstance(node, exp.Between):
        values = [node.args["low"], node.args["high"]]
    else:
        left, right = node.this, node.expression
        lval, rval = sqlast.literal_value(left), sqlast.literal_value(right)
        if lval is not None and rval is not None:
            return _fold_literals(tree, node, lval, rval)
        if lval is not None:
            left, right = right, left
        kind = kinds.of(left) if isinstance(_unparen(left), exp.Column | exp.Cast) else None
        if rval is None and lval is None and kinds.is_text_column(left) and not isinstance(_unparen(right), exp.Column):
            if kinds.of(right) == INTEGER:  # no affinity on that side: SQLite compares its text
                right.replace(exp.Cast(this=right.copy(), to=exp.DataType.build("TEXT")))
            return tree
        _convert_literal(right, kind)
        return tree
    subject = node.this
    kind = kinds.of(subject) if isinstance(_unparen(subject), exp.Column | exp.Cast) else None
    for value in list(values):
        _convert_literal(value, kind)
    return tree


def _fold_literals(tree: exp.Expr, node: exp.Expr, left: object, right: object) -> exp.Expr:
    """A number compared with a string (``WHERE 2010 = "2r"``): SQLite orders every number before every string,
    and never converts either (literals have no affinity); other engines refuse or convert."""
    if isinstance(left, str) == isinstance(right, str):
        return tree
    if isinstance(node, exp.EQ | exp.NEQ):
        result = isinstance(node, exp.NEQ)
    else:  # number < string: true when the string is on the greater side
        result = isinstance(right if isinstance(node, exp.LT | exp.LTE) else left, str)
    value = exp.Boolean(this=result)
    if node is tree:
        return value
    node.replace(value)
    return tree


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _convert_literal(node: exp.Expr, kind: str | None) -> None:
    value = sqlast.literal_value(node)
    if value is None or kind is None:
        return
    if kind == TEXT and isinstance(value, int | float):
        node.replace(exp.Literal.string(sqlite_text(value)))
    elif kind in _NUMBER_KINDS and isinstance(value, str):
        number: int | float | None = None
        if _INT_TEXT.fullmatch(value):
            number = int(value)
        elif _REAL_TEXT.fullmatch(value):
            number = float(value)
        if number is not None:
            literal = exp.Literal.number(abs(number))
            node.replace(exp.Neg(this=literal) if number < 0 else literal)


def _numbers_of_text(node: exp.Expr, kinds: _Kinds, engine: str) -> None:
    """Rule 4: a text column under SUM/AVG or arithmetic becomes the number SQLite reads in it (0 if none)."""
    operands = [node.this] if isinstance(node, exp.Sum | exp.Avg | exp.Neg) else [node.this, node.expression]
    for operand in operands:
        if kinds.is_text_column(operand):
            operand.replace(_text_to_number(operand.copy(), engine))


def _text_to_number(col: exp.Expr, engine: str) -> exp.Expr:
    double = exp.DataType.build("DOUBLE")
    if engine == "duckdb":
        converted: exp.Expr = exp.func("COALESCE", exp.TryCast(this=col.copy(), to=double), exp.Literal.number(0))
    elif engine == "postgresql":
        test = exp.RegexpLike(this=col.copy(), expression=exp.Literal.string(_POSTGRES_NUMBER))
        converted = exp.Case(
            ifs=[exp.If(this=test, true=exp.Cast(this=col.copy(), to=double))], default=exp.Literal.number(0)
        )
    else:  # MySQL's CAST reads a number's prefix and gives 0 for the rest, as SQLite does
        converted = exp.Cast(this=col.copy(), to=double)
    # NULL stays NULL (SUM skips it; arithmetic with it is NULL)
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=col.copy(), expression=exp.Null()), true=exp.Null())], default=converted
    )


def _integer_division(node: exp.Div, kinds: _Kinds, engine: str) -> None:
    """Rule 5: integer / integer truncates."""
    if engine == "postgresql" or kinds.of(node.this) != INTEGER or kinds.of(node.expression) != INTEGER:
        return
    divisor = exp.Nullif(this=node.expression.copy(), expression=exp.Literal.number(0))
    node.replace(
        exp.IntDiv(this=node.this.copy(), expression=divisor if engine == "duckdb" else node.expression.copy())
    )


def _case_insensitive_like(tree: exp.Expr, node: exp.Like, kinds: _Kinds, engine: str) -> exp.Expr:
    """Rule 6: LIKE matches ASCII letters of either case, on any operand type."""
    subject = node.this
    if kinds.of(subject) != TEXT:
        subject = exp.Cast(this=subject.copy(), to=exp.DataType.build("TEXT"))
    replacement = exp.ILike(this=subject, expression=node.expression.copy())
    if node.args.get("escape") is not None:
        replacement.set("escape", node.args["escape"].copy())
    if node is tree:
        return replacement
    node.replace(replacement)
    return tree


def _bare_columns(select: exp.Select, engine: str, kinds: _Kinds) -> None:
    """Rule 7: columns neither grouped nor aggregated in an aggregating SELECT, as SQLite picks them."""
    aggregates = [
        a for e in select.expressions for a in e.find_all(exp.AggFunc) if a.find_ancestor(exp.Select) is select
    ]
    group = select.args.get("group")
    if not aggregates and group is None:
        return
    grouped = {g.sql().lower() for g in (group.expressions if group is not None else [])}
    extremes = [a for a in aggregates if type(a) in _EXTREMES]
    key = extremes[0] if len(extremes) == 1 and len(aggregates) == 1 else None
    for projection in list(select.expressions):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if not isinstance(inner, exp.Column) or inner.sql().lower() in grouped or inner.name.lower() in grouped:
            continue
        if _is_outer_reference(inner, kinds):  # a correlated subquery's outer column: one value, not aggregated
            continue
        inner.replace(_pick(inner.copy(), key, engine))


def _is_outer_reference(col: exp.Column, kinds: _Kinds) -> bool:
    scope = _scope_of(col)
    if col.table:
        return col.table.lower() not in scope.aliases
    tables = [kinds.types[t] for t in scope.aliases.values() if t in kinds.types]
    return bool(tables) and not any(col.name.lower() in cols for cols in tables)


def _pick(col: exp.Column, key: exp.AggFunc | None, engine: str) -> exp.Expr:
    """The bare column's value: from the row holding the one MIN/MAX, else from the group's first row."""
    if engine == "duckdb":
        if key is None:
            return exp.func("FIRST", col)  # NULL included (ANY_VALUE skips NULLs, SQLite does not)
        return _EXTREMES[type(key)](this=col, expression=key.this.copy())
    # PostgreSQL: (ARRAY_AGG(col [ORDER BY key DESC|ASC NULLS LAST]))[1]
    template = (
        "(ARRAY_AGG(c ORDER BY k DESC NULLS LAST))[1]"
        if isinstance(key, exp.Max)
        else ("(ARRAY_AGG(c ORDER BY k ASC NULLS LAST))[1]" if key is not None else "(ARRAY_AGG(c))[1]")
    )
    picked = sqlglot.parse_one(template, read="postgres")
    for placeholder in list(picked.find_all(exp.Column)):
        if placeholder.name == "c":
            placeholder.replace(col.copy())
        elif key is not None:
            placeholder.replace(key.this.copy())
    return picked
