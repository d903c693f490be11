"""Simple wrong variants ("mutants") of a gold query, to check that execution accuracy can tell them apart.

A scorer that cannot distinguish ``x > 5`` from ``x < 5`` on its databases would hand out credit for wrong
SQL.
The tests and ``bench/bench_scorer.py`` score mutants against their gold and report the share told apart (the
*kill rate*) per kind. Kinds:

* ``flip_comparison``: ``=``↔``<>``, ``<``↔``>``, ``<=``↔``>=``
* ``min_max``: ``MIN``↔``MAX``
* ``drop_condition``: one conjunct of WHERE/HAVING removed (the whole clause when it has one condition)
* ``change_literal``: a number +1, a string swapped for another string of the query or given a suffix
* ``sum_avg``: ``SUM``↔``AVG``
* ``and_or``: one ``AND``↔``OR``
* ``asc_desc``: an ORDER BY direction reversed
* ``distinct``: ``DISTINCT`` added to or removed from the outer SELECT or a COUNT

Each kind yields at most ``per_kind`` mutants per query (the first sites in sqlglot's traversal order), so the
output is deterministic. Mutants whose SQL equals the gold's are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlglot import exp

from sqlmaster.evaluate import sqlast

KINDS = (
    "flip_comparison",
    "min_max",
    "drop_condition",
    "change_literal",
    "sum_avg",
    "and_or",
    "asc_desc",
    "distinct",
)

_FLIPS: dict[type[exp.Expr], type[exp.Expr]] = {
    exp.EQ: exp.NEQ,
    exp.NEQ: exp.EQ,
    exp.GT: exp.LT,
    exp.LT: exp.GT,
    exp.GTE: exp.LTE,
    exp.LTE: exp.GTE,
}


@dataclass(frozen=True)
class Mutant:
    kind: str
    sql: str


def _sites(tree: exp.Expr, pred: Callable[[exp.Expr], bool]) -> list[int]:
    return [i for i, node in enumerate(tree.walk()) if pred(node)]


def _mutate_at(tree: exp.Expr, index: int, fn: Callable[[exp.Expr], exp.Expr | None]) -> str | None:
    copy = tree.copy()
    for i, node in enumerate(copy.walk()):
        if i == index:
            replacement = fn(node)
            if replacement is None:
                node.pop()
            elif replacement is not node:
                if node is copy:
                    copy = replacement
                else:
                    node.replace(replacement)
            return copy.sql(dialect=sqlast.DIALECT)
    return None


def _flip(node: exp.Expr) -> exp.Expr:
    new_type = _FLIPS[type(node)]
    return new_type(this=node.this.copy(), expression=node.expression.copy())


def _swap_minmax(node: exp.Expr) -> exp.Expr:
    return (exp.Max if isinstance(node, exp.Min) else exp.Min)(this=node.this.copy())


def _swap_sumavg(node: exp.Expr) -> exp.Expr:
    return (exp.Avg if isinstance(node, exp.Sum) else exp.Sum)(this=node.this.copy())


def _and_or(node: exp.Expr) -> exp.Expr:
    new_type = exp.Or if isinstance(node, exp.And) else exp.And
    return new_type(this=node.this.copy(), expression=node.expression.copy())


def _is_condition_site(node: exp.Expr) -> bool:
    """A conjunct directly under WHERE/HAVING or under an AND chain that hangs from one."""
    parent = node.parent
    if isinstance(parent, exp.Where | exp.Having):
        return True
    while isinstance(parent, exp.And | exp.Paren):
        if isinstance(parent.parent, exp.Where | exp.Having):
            return True
        parent = parent.parent
    return False


def _drop(node: exp.Expr) -> exp.Expr | None:
    parent = node.parent
    if isinstance(parent, exp.Where | exp.Having):
        parent.pop()
        return node  # already detached with its clause
    assert isinstance(parent, exp.And)
    other = parent.expression if node is parent.this else parent.this
    parent.replace(other.copy())
    return node


def _changed_literal(strings: list[str]) -> Callable[[exp.Expr], exp.Expr]:
    def change(node: exp.Expr) -> exp.Expr:
        value = sqlast.literal_value(node)
        if isinstance(value, int):
            return exp.Literal.number(value + 1)
        if isinstance(value, float):
            return exp.Literal.number(value + 1.0)
        others = [s for s in strings if s != value]
        return exp.Literal.string(others[0] if others else f"{value}x")

    return change


def _toggle_distinct(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Select):
        node.set("distinct", None if node.args.get("distinct") else exp.Distinct())
        return node
    assert isinstance(node, exp.Count)
    inner = node.this
    if isinstance(inner, exp.Distinct):
        return exp.Count(this=inner.expressions[0].copy())
    return exp.Count(this=exp.Distinct(expressions=[inner.copy()]))


def _reverse(node: exp.Expr) -> exp.Expr:
    assert isinstance(node, exp.Ordered)
    node.set("desc", not node.args.get("desc"))
    return node


def mutants(gold: str, column_names: set[str] | None = None, per_kind: int = 2) -> list[Mutant]:
    """Deterministic single-site mutants of ``gold`` (none when sqlglot cannot parse it)."""
    tree = sqlast.parse(gold)
    if tree is None:
        return []
    tree = sqlast.dqs_to_strings(tree, column_names)
    baseline = tree.sql(dialect=sqlast.DIALECT)
    strings = [str(lit.this) for lit in tree.find_all(exp.Literal) if lit.is_string]
    seen = {baseline}
    out: list[Mutant] = []
    for kind, sql in _candidates(tree, strings, per_kind):
        if sql is not None and sql not in seen:
            seen.add(sql)
            out.append(Mutant(kind, sql))
    return out


def _candidates(tree: exp.Expr, strings: list[str], per_kind: int) -> Iterator[tuple[str, str | None]]:
    def is_literal(n: exp.Expr) -> bool:
        return (
            isinstance(n, exp.Literal)
            and not isinstance(n.parent, exp.Limit | exp.Offset | exp.Neg)
            and not isinstance(n.parent, exp.Ordered)
        )

    def is_count(n: exp.Expr) -> bool:
        return isinstance(n, exp.Count) and not isinstance(n.this, exp.Star)

    plans: list[tuple[str, Callable[[exp.Expr], bool], Callable[[exp.Expr], exp.Expr | None]]] = [
        ("flip_comparison", lambda n: type(n) in _FLIPS, _flip),
        ("min_max", lambda n: isinstance(n, exp.Min | exp.Max), _swap_minmax),
        ("drop_condition", _is_condition_site_not_and, _drop),
        ("change_literal", is_literal, _changed_literal(strings)),
        ("sum_avg", lambda n: isinstance(n, exp.Sum | exp.Avg), _swap_sumavg),
        ("and_or", lambda n: isinstance(n, exp.And | exp.Or), _and_or),
        ("asc_desc", lambda n: isinstance(n, exp.Ordered), _reverse),
        ("distinct", lambda n: _is_multirow_select(n) or is_count(n), _toggle_distinct),
    ]
    for kind, where, fn in plans:
        for index in _sites(tree, where)[:per_kind]:
            try:
                yield kind, _mutate_at(tree, index, fn)
            except (AssertionError, AttributeError, IndexError, ValueError):
                continue


def _is_condition_site_not_and(node: exp.Expr) -> bool:
    return not isinstance(node, exp.And | exp.Paren) and _is_condition_site(node)


def _is_multirow_select(node: exp.Expr) -> bool:
    """The outer SELECT, unless it returns one aggregate row (``SELECT DISTINCT MAX(x)`` is ``MAX(x)``)."""
    if not isinstance(node, exp.Select) or node.parent is not None:
        return False
    # Also skipped: GROUP BY (rows are usually distinct already) and LIMIT 1 (one row): equivalent mutants.
    aggregate_only = all(e.find(exp.AggFunc) is not None for e in node.expressions)
    limit = node.args.get("limit")
    one_row = limit is not None and limit.expression is not None and limit.expression.name == "1"
    return not aggregate_only and node.args.get("group") is None and not one_row
