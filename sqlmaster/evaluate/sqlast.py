"""Small sqlglot helpers shared by synthesis, mutation and exact match.

sql-create-context writes string values in double quotes (``WHERE name = "essendon"``). SQLite's default
("DQS") reads a double-quoted token as an identifier when it names a column and as a string otherwise; sqlglot
always reads it as an identifier. :func:`dqs_to_strings` rewrites the tree the way SQLite would read it, so
that a
literal is a literal everywhere downstream.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "sqlite"

# Predicates whose right-hand side holds a value, and the argument names that hold it.
_VALUE_ARGS = ("expression", "expressions", "low", "high")
PREDICATES: tuple[type[exp.Expr], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Like,
    exp.ILike,
    exp.Glob,
    exp.In,
    exp.Between,
    exp.Is,
)


def parse(sql: str) -> exp.Expr | None:
    """Parse one SQLite statement; ``None`` when sqlglot cannot parse it or it holds several statements."""
    try:
        trees = [t for t in sqlglot.parse(sql, read=DIALECT) if t is not None]
    except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return trees[0] if len(trees) == 1 else None


def _is_value_position(node: exp.Expr) -> bool:
    parent = node.parent
    return isinstance(parent, PREDICATES) and node.arg_key in _VALUE_ARGS


def dqs_to_strings(tree: exp.Expr, column_names: AbstractSet[str] | None = None) -> exp.Expr:
    """Turn double-quoted identifiers that SQLite would read as strings into string literals (in place).

    With ``column_names`` (lower-cased names from the schema) a quoted, unqualified name that is not a
    column is
    a string, exactly SQLite's rule. Without a schema, a quoted name in a predicate's value position is a
    string.
    """
    for col in list(tree.find_all(exp.Column)):
        ident = col.this
        if col.table or not isinstance(ident, exp.Identifier) or not ident.quoted:
            continue
        name = ident.this
        is_string = name.lower() not in column_names if column_names is not None else _is_value_position(col)
        if is_string:
            replacement = exp.Literal.string(name)
            if col is tree:
                return replacement
            col.replace(replacement)
    return tree


def literal_value(node: exp.Expr) -> str | int | float | None:
    """The Python value of a literal (``-3``, ``'x'``, ``2.5``), or ``None`` when the node is not one."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        inner = literal_value(node.this)
        return -inner if isinstance(inner, int | float) else None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        text = str(node.this)
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    return None


def has_top_level_order_by(tree: exp.Expr) -> bool:
    """Whether the outermost query orders its rows (then row order is part of the answer)."""
    node = tree
    while isinstance(node, exp.Subquery | exp.Paren):
        node = node.this
    return node.args.get("order") is not None
