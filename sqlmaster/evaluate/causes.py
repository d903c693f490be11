"""Why a prediction missed: one cause per miss, from the scorer's error or from the two parse trees.

A miss that did not run is named from the sandbox's error (``parse_error``, ``execution_error`` with SQLite's
error class as the detail, ``timeout``). A miss that ran is named by comparing the prediction's sqlglot tree
with the gold's, after the normalisation exact match uses (identifiers lower case, double-quoted values read
as SQLite reads them), checking in the order :func:`compare` gives and naming the first difference found::

    >>> classify("SELECT name FROM t WHERE city = 'Paris'", "SELECT name FROM t WHERE city = 'paris'")
    Cause(cause='literal_case', detail="'Paris' for 'paris'")

Each side is parsed once, and only for misses (the scorer calls :func:`miss_cause` for a wrong prediction
only). ``records.jsonl`` holds ``cause`` (one of :data:`CAUSES`, null for a match or an unscored row) and
``cause_detail``; :func:`cause_of` reads them back, or computes them for a record written before causes were.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlglot import exp
from sqlglot.errors import SqlglotError

from sqlmaster.evaluate import sqlast

# Every cause id, with its one-line label (the leaderboard and the HTML report print the label).
CAUSES: dict[str, str] = {
    "parse_error": "does not parse (SQLite syntax error, or no SQL at all)",
    "execution_error": "parses but does not run (no such column, no such table, ...; the detail names SQLite's error)",
    "timeout": "ran past the time or CPU limit",
    "wrong_table": "reads another table",
    "join": "joins other tables, more or fewer, or on other columns",
    "aggregate": "an aggregate (COUNT, SUM, AVG, MIN, MAX) missing, extra or a different one",
    "wrong_column": "selects or filters on another column, or one more or fewer",
    "distinct": "DISTINCT in one query only",
    "condition_missing": "a WHERE/HAVING condition of the gold's is missing",
    "condition_extra": "a WHERE/HAVING condition the gold does not have",
    "wrong_operator": "another comparison (= for LIKE, > for >=) or connective (AND for OR)",
    "literal_case": "a value right but its letter case differs ('Paris' for 'paris')",
    "wrong_literal": "a value differs (misspelt, another number)",
    "group_by": "GROUP BY differs",
    "order_by": "ORDER BY differs (what, or the direction)",
    "limit": "LIMIT or OFFSET differs",
    "other": "none of these: the trees differ elsewhere (subquery, set operation, arithmetic) or not at all",
}

MAX_PARSE_CHARS = 20_000  # as exact match: longer SQL is not parsed (a miss that ran, named "other")


class Cause(NamedTuple):
    cause: str  # a key of CAUSES
    detail: str | None  # what differs, in a few words ("no such column", "'Paris' for 'paris'")


# ------------------------------------------------------------------------------------------------ errors

_PARSE_CLASSES = ("syntax error", "incomplete input", "unrecognized token")
_QUOTED = re.compile(r""""[^"]*"|'[^']*'|`[^`]*`|\[[^\]]*\]""")


def engine_error_class(message: str) -> str:
    """SQLite's error class without the names in it: ``no such column: T2.x`` → ``no such column``."""
    for parse_class in _PARSE_CLASSES:
        if parse_class in message:
            return parse_class
    text = _QUOTED.sub("", message)
    text = re.split(r":| - ", text, maxsplit=1)[0]
    words = [w for w in text.split() if not any(ch.isdigit() for ch in w) and not w.endswith(")")]
    return " ".join(words)[:60] or "error"


def error_cause(error: str) -> Cause:
    """The cause of a prediction that did not run, from the scorer's ``error`` text (``kind: message``)."""
    text = error.removeprefix("scorer: ")
    kind, _, message = text.partition(": ")
    if kind in ("timeout", "watchdog", "CPU-time limit"):
        return Cause("timeout", text[:80])
    if kind == "empty":
        return Cause("parse_error", "empty prediction")
    if kind == "multiple_statements":
        return Cause("execution_error", "more than one statement")
    if kind == "row_cap":
        return Cause("execution_error", "result over the row or size cap")
    if kind == "denied":
        return Cause("execution_error", "refused by the read-only sandbox")
    if text.startswith("prediction longer than"):
        return Cause("execution_error", "too long (not run)")
    if text.startswith("worker process"):
        return Cause("execution_error", text[:80])
    klass = engine_error_class(message if kind == "sql" else text)
    return Cause("parse_error" if klass in _PARSE_CLASSES else "execution_error", klass)


# ------------------------------------------------------------------------------------------------ tree shapes


class Atom(NamedTuple):
    """One condition of a WHERE or HAVING, e.g. ``city = 'Paris'``: its left side, operator and values."""

    subject: str  # the column's name (no table qualifier), or the left side's text
    op: str  # the predicate's class: EQ, GT, Like, In, Between, Not Like, ...
    values: tuple[Any, ...]  # the right side's literal values, or its node where not a literal (column, subquery)
    text: str  # the whole condition, qualifiers dropped


@dataclass
class Shape:
    """What the comparison looks at in one query tree (each SELECT but those inside a condition, see shape_of)."""

    tables: Counter[str] = field(default_factory=Counter)
    joins: Counter[str] = field(default_factory=Counter)  # per JOIN: its kind and ON/USING, qualifiers dropped
    aggregates: Counter[str] = field(default_factory=Counter)
    projection: Counter[str] = field(default_factory=Counter)  # column names in the SELECT lists
    width: int = 0  # number of SELECT items
    distinct: int = 0
    atoms: list[Atom] = field(default_factory=list)
    connectives: Counter[str] = field(default_factory=Counter)
    group: Counter[str] = field(default_factory=Counter)
    order: list[tuple[str, bool]] = field(default_factory=list)
    limit: list[str] = field(default_factory=list)
    columns: Counter[str] = field(default_factory=Counter)
    literals: Counter[str] = field(default_factory=Counter)


def _unqualified(node: exp.Expr) -> str:
    """A node's SQL with table qualifiers and aliases dropped (``T1.name AS n`` → ``name``)."""
    node = node.copy()
    for col in node.find_all(exp.Column):
        col.set("table", None)
    if isinstance(node, exp.Alias):
        node = node.this
    return node.sql(dialect=sqlast.DIALECT)


def _value(node: exp.Expr) -> Any:
    """A literal's value (``'x'``, ``-3``), else the node itself (a column, a subquery, an expression)."""
    value = sqlast.literal_value(node)
    return node if value is None else value


def _text(value: Any) -> str:
    return _unqualified(value) if isinstance(value, exp.Expr) else str(value)


def _atom(node: exp.Expr) -> Atom:
    op = ("Not " if node.args.get("negate") else "") + type(node).__name__  # NOT LIKE, NOT IN: Like(negate=True)
    if isinstance(node, exp.Not) and node.this is not None:
        inner = node.this.unnest()
        return _atom(inner)._replace(op=f"Not {type(inner).__name__}", text=_unqualified(node))
    left = node.this if isinstance(node.this, exp.Expr) else None
    values = [node.args.get(k) for k in ("expression", "query", "low", "high")] + list(
        node.args.get("expressions") or []
    )
    rights = [v for v in values if isinstance(v, exp.Expr)]
    if isinstance(left, exp.Expr) and len(rights) == 1 and sqlast.literal_value(left) is not None:
        left, rights = rights[0], [left]  # 'x' = col reads as col = 'x'
    if isinstance(left, exp.Query | exp.Subquery):  # EXISTS (SELECT ...)
        rights = [left, *rights]
        left = None
    if isinstance(left, exp.Column):
        subject = left.name.lower()
    elif left is not None:
        subject = _unqualified(left)
    else:
        subject = op
    return Atom(subject, op, tuple(_value(r) for r in rights), _unqualified(node))


def _collect_atoms(node: exp.Expr, shape: Shape) -> None:
    node = node.unnest()
    if isinstance(node, exp.And | exp.Or):
        shape.connectives[type(node).__name__.upper()] += 1
        _collect_atoms(node.this, shape)
        _collect_atoms(node.expression, shape)
    else:
        shape.atoms.append(_atom(node))


def _join_key(join: exp.Join) -> str:
    """``LEFT JOIN ON id = tid`` (qualifiers dropped: aliases differ between equal queries)."""
    on, using = join.args.get("on"), join.args.get("using")
    condition = f" ON {_unqualified(on)}" if on is not None else ""
    condition += f" USING {', '.join(_unqualified(u) for u in using)}" if using else ""
    return " ".join(filter(None, (join.side, join.kind, "JOIN"))) + condition


def _condition_queries(tree: exp.Expr) -> set[int]:
    """The ids of every node inside a subquery of a WHERE or HAVING (compared as that condition's value)."""
    inside: set[int] = set()
    for clause in tree.find_all(exp.Where, exp.Having):
        for query in clause.find_all(exp.Query, exp.Subquery):
            inside.update(id(n) for n in query.walk())
    return inside


def shape_of(tree: exp.Expr) -> Shape:
    """The parts of ``tree`` that :func:`compare` looks at (identifiers already lower case). A subquery inside a
    condition counts only through that condition (and its columns and literals)."""
    shape = Shape()
    inside = _condition_queries(tree)
    for node in tree.walk():
        if isinstance(node, exp.Column):
            shape.columns[node.name.lower()] += 1
        elif isinstance(node, exp.Literal):
            shape.literals[str(sqlast.literal_value(node))] += 1
        if id(node) in inside:
            continue
        if isinstance(node, exp.Table):
            shape.tables[node.name.lower()] += 1
        elif isinstance(node, exp.Join):
            shape.joins[_join_key(node)] += 1
        elif isinstance(node, exp.Distinct):
            shape.distinct += 1
        elif isinstance(node, exp.Where | exp.Having):
            _collect_atoms(node.this, shape)
        elif isinstance(node, exp.Group):
            shape.group.update(_unqualified(g) for g in node.expressions)
        elif isinstance(node, exp.Order):
            shape.order += [(_unqualified(o.this), bool(o.args.get("desc"))) for o in node.expressions]
        elif isinstance(node, exp.Limit | exp.Offset):
            shape.limit.append(f"{type(node).__name__.upper()} {_unqualified(node.expression)}")
        elif isinstance(node, exp.Select):
            shape.width += len(node.expressions)
            for item in node.expressions:
                shape.projection.update(c.name.lower() for c in item.find_all(exp.Column))
                shape.aggregates.update(type(a).__name__.upper() for a in item.find_all(exp.AggFunc))
    return shape


# ------------------------------------------------------------------------------------------------ comparison

_OP_SQL = {"EQ": "=", "NEQ": "<>", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<=", "NullSafeEQ": "IS"}


def _op_sql(op: str) -> str:
    """``Not Like`` → ``NOT LIKE``, ``GTE`` → ``>=``, ``Not Is`` → ``IS NOT``."""
    base = op.removeprefix("Not ")
    sql = _OP_SQL.get(base, base.upper())
    if base == op:
        return sql
    return f"{sql} NOT" if base == "Is" else f"NOT {sql}"


def _show(items: Iterable[Any], quote: bool = False) -> str:
    """Items for a detail: names as written, values (``quote``) as SQL literals."""
    return ", ".join("'" + i.replace("'", "''") + "'" if quote and isinstance(i, str) else _text(i) for i in items)


def _difference(gold: Counter[str], pred: Counter[str], what: str) -> str:
    """``x for y``, ``x extra`` or ``y missing``: what the prediction has instead of the gold's."""
    missing, extra = sorted((gold - pred).elements()), sorted((pred - gold).elements())
    if missing and extra:
        return f"{what} {_show(extra)} for {_show(missing)}"
    return f"{what} {_show(extra)} extra" if extra else f"{what} {_show(missing)} missing"


def _structure(pred: Shape, gold: Shape) -> Cause | None:
    """Tables, joins, aggregates, the SELECT list and DISTINCT, in this order."""
    n_pred, n_gold = sum(pred.tables.values()), sum(gold.tables.values())
    if n_pred != n_gold:
        return Cause("join", f"{n_pred} table(s) for {n_gold}: {_difference(gold.tables, pred.tables, 'table')}")
    if pred.tables != gold.tables:
        return Cause("wrong_table", _difference(gold.tables, pred.tables, "table"))
    if pred.joins != gold.joins:
        return Cause("join", _difference(gold.joins, pred.joins, "join"))
    if pred.aggregates != gold.aggregates:
        return Cause("aggregate", _difference(gold.aggregates, pred.aggregates, "aggregate"))
    if pred.width != gold.width:
        return Cause("wrong_column", f"selects {pred.width} items for {gold.width}")
    if pred.projection != gold.projection:
        return Cause("wrong_column", _difference(gold.projection, pred.projection, "selects"))
    if bool(pred.distinct) != bool(gold.distinct):
        return Cause("distinct", "DISTINCT extra" if pred.distinct else "DISTINCT missing")
    return None


def _values_cause(pred: tuple[Any, ...], gold: tuple[Any, ...]) -> Cause | None:
    """Two conditions' values: the same, the same but for letter case, or different."""
    if [_text(v) for v in pred] == [_text(v) for v in gold]:  # 5 and '5' compare equal on a TEXT column
        return None
    if len(pred) == len(gold):
        for p, g in zip(pred, gold, strict=True):
            if isinstance(p, exp.Expr) and isinstance(g, exp.Expr) and _text(p) != _text(g):
                inner = _expression_cause(p, g)
                if inner is not None:
                    return inner
    detail = f"{_show(pred, quote=True)} for {_show(gold, quote=True)}"
    folded = len(pred) == len(gold) and all(
        str(p).casefold() == str(g).casefold() for p, g in zip(pred, gold, strict=True)
    )
    return Cause("literal_case" if folded else "wrong_literal", detail)


def _expression_cause(pred: exp.Expr, gold: exp.Expr) -> Cause | None:
    """Two values that are not literals: subqueries compared as queries, else the columns they name."""
    if isinstance(pred, exp.Query | exp.Subquery) and isinstance(gold, exp.Query | exp.Subquery):
        return compare(shape_of(pred), shape_of(gold))
    columns = [Counter(c.name.lower() for c in e.find_all(exp.Column)) for e in (pred, gold)]
    if columns[0] != columns[1]:
        return Cause("wrong_column", _difference(columns[1], columns[0], "compared with"))
    return None


def _pair_cause(pred: Atom, gold: Atom) -> Cause | None:
    if pred.subject != gold.subject:
        return Cause("wrong_column", f"condition on {pred.subject} for {gold.subject}")
    if pred.op != gold.op:
        return Cause("wrong_operator", f"{pred.subject} {_op_sql(pred.op)} for {_op_sql(gold.op)}")
    return _values_cause(pred.values, gold.values)


def _pairs(pred: list[Atom], gold: list[Atom]) -> list[tuple[Atom, Atom]]:
    """Conditions paired: the same subject first, then in the order they are written."""
    pred = list(pred)
    paired, unpaired = [], []
    for g in gold:
        same = next((p for p in pred if p.subject == g.subject), None)
        if same is None:
            unpaired.append(g)
        else:
            pred.remove(same)
            paired.append((same, g))
    return paired + list(zip(pred, unpaired, strict=False))


def _unshared(atoms: list[Atom], others: list[Atom]) -> list[Atom]:
    """``atoms`` less those written identically in ``others`` (each of the others' used once)."""
    left = Counter(a.text for a in others)
    rest = []
    for atom in atoms:
        if left[atom.text] > 0:
            left[atom.text] -= 1
        else:
            rest.append(atom)
    return rest


_CONDITION_ORDER = ("wrong_column", "wrong_operator", "wrong_literal", "literal_case")


def _conditions(pred: Shape, gold: Shape) -> Cause | None:
    """Conditions missing or extra; else the pairs' first difference (column, operator, value)."""
    pred_rest, gold_rest = _unshared(pred.atoms, gold.atoms), _unshared(gold.atoms, pred.atoms)
    if len(pred.atoms) < len(gold.atoms):
        return Cause("condition_missing", "; ".join(a.text for a in gold_rest[: len(gold_rest) - len(pred_rest)]))
    if len(pred.atoms) > len(gold.atoms):
        return Cause("condition_extra", "; ".join(a.text for a in pred_rest[: len(pred_rest) - len(gold_rest)]))
    found = [c for c in (_pair_cause(p, g) for p, g in _pairs(pred_rest, gold_rest)) if c is not None]
    if pred.connectives != gold.connectives:
        found.append(Cause("wrong_operator", _difference(gold.connectives, pred.connectives, "connective")))
    found.sort(key=lambda c: _CONDITION_ORDER.index(c.cause) if c.cause in _CONDITION_ORDER else 1)
    return found[0] if found else None


def _clauses(pred: Shape, gold: Shape) -> Cause | None:
    """GROUP BY, ORDER BY, LIMIT/OFFSET, in this order."""
    if pred.group != gold.group:
        return Cause("group_by", _difference(gold.group, pred.group, "GROUP BY"))
    if pred.order != gold.order:
        if [o[0] for o in pred.order] == [o[0] for o in gold.order]:
            turned = next(p for p, g in zip(pred.order, gold.order, strict=True) if p != g)
            return Cause("order_by", f"{turned[0]} {'DESC for ASC' if turned[1] else 'ASC for DESC'}")
        keys = Counter(o[0] for o in pred.order), Counter(o[0] for o in gold.order)
        return Cause(
            "order_by", _difference(keys[1], keys[0], "ORDER BY") if keys[0] != keys[1] else "in another order"
        )
    if pred.limit != gold.limit:
        return Cause("limit", _difference(Counter(gold.limit), Counter(pred.limit), "").strip())
    return None


def compare(pred: Shape, gold: Shape) -> Cause | None:
    """The first difference between two query shapes, looking in this order: tables (``wrong_table``, ``join``),
    aggregates, the SELECT list (``wrong_column``), ``distinct``, the WHERE/HAVING conditions (missing, extra,
    then per condition its column, operator and value), ``group_by``, ``order_by``, ``limit``, and last any
    column or literal anywhere. ``None`` when none of these differ."""
    found = _structure(pred, gold) or _conditions(pred, gold) or _clauses(pred, gold)
    if found is not None:
        return found
    if pred.columns != gold.columns:
        return Cause("wrong_column", _difference(gold.columns, pred.columns, "column"))
    if pred.literals != gold.literals:
        missing, extra = (
            sorted((gold.literals - pred.literals).elements()),
            sorted((pred.literals - gold.literals).elements()),
        )
        return _values_cause(tuple(extra), tuple(missing))
    return None


# ------------------------------------------------------------------------------------------------ entry points


def _tree(sql: str, column_names: AbstractSet[str] | None) -> exp.Expr | None:
    """The normalised tree exact match compares (identifiers lower case, DQS values as strings), or None."""
    text = sql.strip().rstrip(";").strip()
    tree = sqlast.parse(text) if 0 < len(text) <= MAX_PARSE_CHARS else None
    if tree is None:
        return None
    try:
        tree = sqlast.dqs_to_strings(tree, column_names)
    except (SqlglotError, ValueError, TypeError, KeyError):
        return None
    for ident in tree.find_all(exp.Identifier):
        ident.set("this", str(ident.this).lower())
        ident.set("quoted", False)
    return tree


def classify(
    prediction: str, gold: str, error: str | None = None, column_names: AbstractSet[str] | None = None
) -> Cause:
    """The cause of one miss: from ``error`` when the prediction did not run, else from the two trees.

    ``prediction`` and ``gold`` are the SQL as it ran (after the convention); ``column_names`` (lower case)
    resolves double-quoted names as SQLite does, as in exact match.
    """
    if error:
        return error_cause(error)
    if not prediction.strip():
        return Cause("parse_error", "empty prediction")
    pred_tree = _tree(prediction, column_names)
    if pred_tree is None:
        return Cause("other", "sqlglot cannot parse the prediction (SQLite ran it)")
    gold_tree = _tree(gold, column_names)
    if gold_tree is None:
        return Cause("other", "sqlglot cannot parse the gold")
    try:
        found = compare(shape_of(pred_tree), shape_of(gold_tree))
    except (SqlglotError, RecursionError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return Cause("other", f"not compared ({type(exc).__name__})")
    if found is not None:
        return found
    same = pred_tree.sql(dialect=sqlast.DIALECT) == gold_tree.sql(dialect=sqlast.DIALECT)
    return Cause("other", "the same query after normalisation" if same else None)


def classify_under(
    convention: str, prediction: str, gold: str, error: str | None, column_names: AbstractSet[str] | None = None
) -> Cause:
    """:func:`classify` of a miss from the SQL that ran under ``convention`` (every scorer's path: files, engines,
    a user's database)."""
    from sqlmaster.evaluate.conventions import apply_convention

    return classify(apply_convention(prediction, convention), apply_convention(gold, convention), error, column_names)


def record_cause(record: Mapping[str, Any]) -> Cause | None:
    """The cause of a records.jsonl line: its stored ``cause``/``cause_detail``, or computed for a line written
    before causes were (under the line's convention); ``None`` for a match or a row whose gold does not run."""
    if "cause" in record:
        return Cause(record["cause"], record.get("cause_detail")) if record["cause"] else None
    if record.get("execution_match") or record.get("gold_valid") is False:
        return None
    from sqlmaster.evaluate.conventions import apply_convention

    convention = "official" if "execution_match_strict" in record else "strict"
    prediction = apply_convention(str(record.get("prediction") or ""), convention)
    gold = apply_convention(str(record.get("answer") or ""), convention)
    return classify(prediction, gold, record.get("error"))


def cause_of(record: Mapping[str, Any]) -> str | None:
    """The cause id of a records.jsonl line (a key of :data:`CAUSES`), ``None`` for a match."""
    found = record_cause(record)
    return found.cause if found is not None else None


def count_causes(causes: Iterable[str | None]) -> dict[str, int]:
    """How many misses each cause names, most frequent first (ties in the order of :data:`CAUSES`)."""
    counts = Counter(c for c in causes if c is not None)
    order = list(CAUSES)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], order.index(kv[0]) if kv[0] in order else len(order))))


def cause_figures(misses: Iterable[tuple[str | None, str | None]]) -> dict[str, dict[str, int]]:
    """metrics.json's counts from the scored misses' ``(cause, cause_detail)``: ``miss_causes`` (cause id → misses)
    and ``execution_errors`` (SQLite's error class → misses that did not run)."""
    pairs = list(misses)
    return {
        "miss_causes": count_causes(c or "other" for c, _ in pairs),
        "execution_errors": count_causes(d or "error" for c, d in pairs if c == "execution_error"),
    }
