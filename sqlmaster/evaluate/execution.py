"""Execution accuracy: does the predicted SQL return what the gold SQL returns?

An example's databases are either ``k`` synthesized from its ``CREATE TABLE`` context (:mod:`.synth`) or one
real SQLite file (Spider, BIRD). Gold and prediction run on each inside the sandbox (:mod:`.sandbox`), and a
match needs the results to agree on **every** database:

* results are compared as multisets of rows (``Counter``); as lists when the gold's outermost query has
  ORDER BY (then row order is part of the answer) — except that rows the gold's ORDER BY leaves **tied** may
  come in any order: the gold is also run with its sort keys as extra columns, and the prediction must list
  each run of tied rows as the same multiset, in the same place (ties across a LIMIT cut are not resolved);
* floats are compared after rounding to 9 significant digits (``AVG`` vs ``SUM/COUNT`` differ in the last
  bits); ``1`` and ``1.0`` are equal, ``'1'`` and ``1`` are not;
* by default the column order of the prediction may differ from the gold's (as in Spider's test-suite
  evaluation: "names and ages" answered as ages and names is right); ``column_order_matters=True`` turns
  that off.

**Conventions** (named, recorded in metrics.json; :mod:`.conventions` says which SQL runs under each):
``official`` (the Spider test-suite evaluator's: first statement only, DISTINCT removed) and ``strict`` (the SQL
as written).

``executes`` is true when the prediction ran without error on every database it was run on (the scorer stops
at the first database where the results differ, and stops reading a prediction's rows once it has returned more
than the gold: a match needs equally many). A gold query that does not run is not scored
(``gold_valid`` false): that example is excluded from execution accuracy and counted.

Work is shared wherever it is the same: each real database is read once per worker process and kept as a
locked, read-only in-memory connection (:class:`DatabaseCache`); each gold runs once per database (and once
more under the official convention only if that removes a DISTINCT: :class:`GoldCache`); an example's
synthesized databases are built once and reused by every prediction of it (:class:`ExampleCache`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlmaster.evaluate import sqlast
from sqlmaster.evaluate.cache import BoundedCache
from sqlmaster.evaluate.conventions import DEFAULT_CONVENTION, apply_convention
from sqlmaster.evaluate.sandbox import (
    DEFAULT_LIMITS,
    Limits,
    QueryError,
    Row,
    connection_from_bytes,
    connection_from_file_readonly,
    read_database_file,
    run_query,
)
from sqlmaster.evaluate.synth import DATABASES_PER_EXAMPLE, POOL, SynthesizedExample, synthesize

_MAX_PERMUTED_COLUMNS = 5  # 120 permutations at most
PREVIEW_ROWS = 10  # rows of gold and prediction kept per record (records.jsonl ``rows``, report.html)


@dataclass(frozen=True)
class Verdict:
    """One prediction under one convention: does it match the gold, did it run, and why not."""

    match: bool
    executes: bool
    error: str | None = None
    # The prediction's first PREVIEW_ROWS + 1 rows on the first database (None: it did not run there), for
    # records.jsonl's ``rows`` preview; not part of the verdict.
    preview: tuple[Row, ...] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GoldError:
    """Why a gold query cannot be scored: the message only (an exception's traceback would keep frames alive).

    ``convention`` is the one the gold was run under; ``None`` when it failed before any convention applied
    (its context or the gold itself is invalid for synthesis).
    """

    reason: str
    convention: str | None = None

    def __str__(self) -> str:
        if self.convention is None:
            return f"gold invalid: {self.reason}"
        return f"gold ({self.convention} convention): {self.reason}"


# ------------------------------------------------------------------------------------------------ comparison


def _norm_value(v: Any) -> Any:
    if isinstance(v, float):
        if v != v:  # NaN
            return "NaN"
        r = float(f"{v:.9g}")
        return int(r) if r.is_integer() and abs(r) < 2**53 else r
    return v


def normalize_rows(rows: list[Row]) -> list[Row]:
    return [tuple(_norm_value(v) for v in row) for row in rows]


def _same(gold: list[Row], pred: list[Row], ordered: bool, ties: tuple[int, ...] | None) -> bool:
    if not ordered:
        return Counter(gold) == Counter(pred)
    if gold == pred:
        return True
    if ties is None:
        return False
    start = 0
    for size in ties:  # each run of tied rows as a multiset, in place
        end = start + size
        if (size == 1 and gold[start] != pred[start]) or (
            size > 1 and Counter(gold[start:end]) != Counter(pred[start:end])
        ):
            return False
        start = end
    return True


def results_match(
    gold: list[Row],
    pred: list[Row],
    ordered: bool,
    column_order_matters: bool = False,
    ties: tuple[int, ...] | None = None,
    gold_normalized: bool = False,
) -> bool:
    """Compare two result sets as described in the module docstring.

    ``ties``: sizes of the consecutive runs of gold rows that the gold's ORDER BY leaves tied (summing to
    ``len(gold)``); ``gold_normalized``: ``gold`` has been through :func:`normalize_rows` already.
    """
    if len(gold) != len(pred):
        return False
    g = gold if gold_normalized else normalize_rows(gold)
    p = normalize_rows(pred)
    if _same(g, p, ordered, ties):
        return True
    if column_order_matters or not g:
        return False
    width = len(g[0])
    if width < 2 or width > _MAX_PERMUTED_COLUMNS or any(len(r) != width for r in p):
        return False
    # Only permutations that map each gold column to a predicted column with the same multiset of values.
    gcols = [Counter(r[i] for r in g) for i in range(width)]
    pcols = [Counter(r[i] for r in p) for i in range(width)]
    for perm in itertools.permutations(range(width)):
        if all(gcols[i] == pcols[perm[i]] for i in range(width)):
            permuted = [tuple(r[perm[i]] for i in range(width)) for r in p]
            if _same(g, permuted, ordered, ties):
                return True
    return False


# ------------------------------------------------------------------------------------------------ gold plans

_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def gold_is_ordered(gold: str) -> bool:
    """Whether row order is part of the gold's answer (outermost ORDER BY)."""
    if not _ORDER_BY.search(gold):
        return False
    tree = sqlast.parse(gold)
    if tree is None:
        # Unparseable: an ORDER BY after the last closing parenthesis belongs to the outer query.
        return bool(_ORDER_BY.search(gold[gold.rfind(")") + 1 :]))
    return sqlast.has_top_level_order_by(tree)


@dataclass(frozen=True)
class GoldPlan:
    """How one gold query runs: the SQL, whether order matters, and how to find its tied rows."""

    sql: str
    ordered: bool = False
    key_columns: tuple[int, ...] = ()  # output columns that are ORDER BY keys
    tie_sql: str | None = None  # the gold with the other ORDER BY keys appended as extra columns
    extra_keys: int = 0  # how many columns tie_sql appends


def _outer_select(tree: exp.Expr) -> exp.Expr:
    node = tree
    while isinstance(node, exp.Subquery | exp.Paren):
        node = node.this
    return node


def _key_column(key: exp.Expr, select: exp.Select) -> int | None:
    """The output column that ORDER BY ``key`` sorts on, if it is one."""
    if isinstance(key, exp.Literal) and key.is_int:
        index = int(key.this) - 1
        return index if 0 <= index < len(select.expressions) else None
    text = key.sql(dialect=sqlast.DIALECT).lower()
    for index, projection in enumerate(select.expressions):
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if inner.sql(dialect=sqlast.DIALECT).lower() == text:
            return index
        if isinstance(key, exp.Column) and not key.table and projection.alias_or_name.lower() == key.name.lower():
            return index
    return None


@functools.lru_cache(maxsize=4096)  # per process: both conventions of a gold without DISTINCT run the same SQL
def plan_gold(gold: str) -> GoldPlan:
    """Parse the gold once to learn whether its order matters and how to resolve its ties."""
    if not _ORDER_BY.search(gold):
        return GoldPlan(gold)
    tree = sqlast.parse(gold)
    if tree is None:
        return GoldPlan(gold, ordered=gold_is_ordered(gold))
    outer = _outer_select(tree)
    order = outer.args.get("order")
    if order is None:
        return GoldPlan(gold)
    first = outer
    while isinstance(first, exp.SetOperation):
        first = first.left
    if not isinstance(first, exp.Select) or any(isinstance(e, exp.Star) for e in first.expressions):
        return GoldPlan(gold, ordered=True)
    keys = [o.this for o in order.expressions]
    columns = [_key_column(k, first) for k in keys]
    extras = [k for k, c in zip(keys, columns, strict=True) if c is None]
    if not extras:
        return GoldPlan(gold, ordered=True, key_columns=tuple(c for c in columns if c is not None))
    # Sort keys that are not output columns are added as columns; a compound query or DISTINCT (whose rows
    # the extra columns would change) keeps plain ordered comparison.
    if outer is not first or first.args.get("distinct") is not None:
        return GoldPlan(gold, ordered=True)
    width = len(first.expressions)
    tie = tree.copy()
    tie_select = _outer_select(tie)
    assert isinstance(tie_select, exp.Select)
    for i, key in enumerate(extras):
        tie_select.append("expressions", exp.alias_(key.copy(), f"__tie_key_{i}"))
    try:
        tie_sql = tie.sql(dialect=sqlast.DIALECT)
    except Exception:  # sqlglot cannot render it back: keep plain ordered comparison
        return GoldPlan(gold, ordered=True)
    key_columns = tuple(c if c is not None else width + extras.index(k) for k, c in zip(keys, columns, strict=True))
    return GoldPlan(gold, ordered=True, key_columns=key_columns, tie_sql=tie_sql, extra_keys=len(extras))


@dataclass(frozen=True)
class GoldResult:
    """The gold's normalized rows on one database, with its runs of tied rows when order matters."""

    rows: list[Row]
    ordered: bool
    ties: tuple[int, ...] | None = None
    raw: list[Row] | None = field(default=None, compare=False, repr=False)  # rows as SQLite returned them


def _runs(keys: list[tuple[Any, ...]]) -> tuple[int, ...] | None:
    sizes = [len(list(group)) for _, group in itertools.groupby(keys)]
    return tuple(sizes) if any(s > 1 for s in sizes) else None


def run_gold(conn: sqlite3.Connection, plan: GoldPlan, limits: Limits = DEFAULT_LIMITS) -> GoldResult:
    """Run the gold (raises :class:`QueryError`) and find its tied rows."""
    if plan.tie_sql is not None:
        try:
            extended = normalize_rows(run_query(conn, plan.tie_sql, limits))
        except QueryError:
            extended = None
        if extended is not None:
            rows = [r[: len(r) - plan.extra_keys] for r in extended]
            plain = normalize_rows(run_query(conn, plan.sql, limits))
            if Counter(rows) == Counter(plain):  # the rewrite returned the gold's rows: trust its keys
                return GoldResult(rows, True, _runs([tuple(r[i] for i in plan.key_columns) for r in extended]))
            return GoldResult(plain, True)
    raw = run_query(conn, plan.sql, limits)
    rows = normalize_rows(raw)
    ties = _runs([tuple(r[i] for i in plan.key_columns) for r in rows]) if plan.key_columns else None
    return GoldResult(rows, plan.ordered, ties, raw)


def compare(gold: GoldResult, pred_rows: list[Row], column_order_matters: bool) -> bool:
    if gold.raw is not None and pred_rows == gold.raw:  # identical rows: no normalisation needed
        return True
    return results_match(gold.rows, pred_rows, gold.ordered, column_order_matters, gold.ties, gold_normalized=True)


def score_on_connections(
    connections: list[sqlite3.Connection],
    golds: list[GoldResult],
    prediction: str,
    limits: Limits = DEFAULT_LIMITS,
    column_order_matters: bool = False,
) -> Verdict:
    """Run the (convention-applied) prediction on each database and compare with the gold's result there.

    Under every convention a match needs as many rows as the gold has (:func:`results_match`, and the official
    evaluator's ``result_eq``), so the prediction is abandoned at its ``len(gold) + 1``-th row: the verdict is the
    same, and a prediction that streams a huge result (a join condition turned into ``<>``) stops early. Such a
    prediction counts as executing (it ran without error as far as it was run).
    """
    if not prediction or not prediction.strip():
        return Verdict(False, False, "empty: no SQL to execute")
    preview: tuple[Row, ...] | None = None
    for conn, gold in zip(connections, golds, strict=True):
        try:
            rows = run_query(conn, prediction, limits, stop_after=len(gold.rows))
        except QueryError as exc:
            return Verdict(False, False, str(exc), preview)
        if preview is None:
            preview = tuple(rows[: PREVIEW_ROWS + 1])
        if not compare(gold, rows, column_order_matters):
            return Verdict(False, True, None, preview)
    return Verdict(True, True, None, preview)


# ------------------------------------------------------------------------------------------------ examples


@dataclass
class PreparedExample:
    """Everything about one (context, gold) that does not depend on the prediction."""

    synth: SynthesizedExample
    ordered: bool  # gold's outermost query has ORDER BY
    _connections: list[sqlite3.Connection] | None = None
    _golds: dict[str, list[GoldResult] | GoldError] = field(default_factory=dict)  # gold SQL run -> results
    _normalized: dict[str, str | None] = field(default_factory=dict)

    def connections(self, limits: Limits) -> list[sqlite3.Connection]:
        """Locked, read-only connections to the synthesized databases, opened once for all predictions."""
        if self._connections is None:
            if len(self.synth.connections) == len(self.synth.databases):  # synthesis left them open and locked
                self._connections = self.synth.connections
            else:
                self._connections = [connection_from_bytes(data, limits) for data in self.synth.databases]
        return self._connections

    def gold_results(self, gold: str, convention: str, limits: Limits) -> list[GoldResult] | GoldError:
        """The gold's results under ``convention`` on each database (or why it does not run)."""
        sql = apply_convention(gold, convention)
        cached = self._golds.get(sql)  # keyed by the SQL: conventions that run the same SQL share results
        if cached is not None:
            return cached
        plan = plan_gold(sql)
        value: list[GoldResult] | GoldError
        if plan.sql == gold and plan.tie_sql is None:  # synthesis ran this very SQL: reuse its rows
            value = []
            for rows in self.synth.gold_rows:
                normalized = normalize_rows(rows)
                keys = [tuple(r[i] for i in plan.key_columns) for r in normalized] if plan.key_columns else []
                value.append(GoldResult(normalized, plan.ordered, _runs(keys) if keys else None, rows))
        else:
            try:
                value = [run_gold(conn, plan, limits) for conn in self.connections(limits)]
            except QueryError as exc:
                value = GoldError(str(exc), convention)
        self._golds[sql] = value
        return value

    def gold_normalized(self, gold: str) -> str | None:
        """Exact-match form of the gold, computed the first time a prediction differs from it textually."""
        from sqlmaster.evaluate.exact_match import normalize_sql

        if gold not in self._normalized:
            self._normalized[gold] = normalize_sql(gold, self.synth.column_names or None)
        return self._normalized[gold]

    def close(self) -> None:
        """Hand the databases' connections back to the pool; the example cannot be scored afterwards."""
        for conn in {id(c): c for c in [*(self._connections or []), *self.synth.connections]}.values():
            POOL.release(conn)
        self._connections = None
        self.synth.connections.clear()


def prepare_example(
    context: str, gold: str, k: int = DATABASES_PER_EXAMPLE, seed: int = 0, limits: Limits = DEFAULT_LIMITS
) -> PreparedExample:
    """Synthesize the databases (parsing the gold once, for synthesis and for its ORDER BY)."""
    tree = sqlast.parse(gold)
    if tree is None:
        return PreparedExample(synthesize(context, gold, k=k, base_seed=seed, limits=limits), gold_is_ordered(gold))
    ordered = sqlast.has_top_level_order_by(tree)
    # synthesis rewrites the tree in place (double-quoted strings); the exact-match form is parsed afresh
    synth = synthesize(context, gold, k=k, base_seed=seed, limits=limits, gold_tree=tree)
    return PreparedExample(synth, ordered)


class ExampleCache:
    """LRU cache of prepared examples per (context, gold, k, seed): several predictions of one example
    (mutants, several models) reuse one synthesis and its open databases.

    The scorer orders its tasks so that an example's predictions are adjacent, so a few entries suffice; fewer
    open databases also keep the working set in the CPU caches (16 entries scored ~4% faster than 128).
    """

    def __init__(self, maxsize: int = 16) -> None:
        self._items: BoundedCache[str, PreparedExample] = BoundedCache(maxsize, PreparedExample.close)

    def get(self, context: str, gold: str, k: int, seed: int, limits: Limits) -> PreparedExample:
        key = hashlib.sha256(f"{k}\0{seed}\0{context}\0{gold}".encode(errors="surrogatepass")).hexdigest()
        return self._items.get_or_make(key, lambda: prepare_example(context, gold, k, seed, limits))

    def values(self) -> list[PreparedExample]:
        return self._items.values()

    def close(self) -> None:
        self._items.clear()


def score_prediction(
    example: SynthesizedExample | PreparedExample,
    prediction: str,
    ordered: bool | None = None,
    limits: Limits = DEFAULT_LIMITS,
    column_order_matters: bool = False,
    convention: str = DEFAULT_CONVENTION,
    gold: str | None = None,
) -> Verdict:
    """Run ``prediction`` on each synthesized database and compare with the gold's rows there.

    With a :class:`PreparedExample` and ``gold``, the gold's results are cached per convention and the
    databases stay open between predictions; with a bare :class:`SynthesizedExample` the stored gold rows are
    used as they are (``ordered`` says whether row order matters; ``convention`` then only changes the
    prediction).
    """
    if isinstance(example, PreparedExample):
        if example.synth.gold_error is not None:
            raise ValueError("gold is invalid for this example; it cannot be scored")
        if gold is None:
            raise ValueError("pass the gold SQL with a PreparedExample")
        golds = example.gold_results(gold, convention, limits)
        if isinstance(golds, GoldError):
            raise ValueError(str(golds))
        connections = example.connections(limits)
    else:
        if example.gold_error is not None:
            raise ValueError("gold is invalid for this example; it cannot be scored")
        golds = [GoldResult(normalize_rows(rows), bool(ordered)) for rows in example.gold_rows]
        connections = [connection_from_bytes(data, limits) for data in example.databases]
    return score_on_connections(
        connections, golds, apply_convention(prediction, convention), limits, column_order_matters
    )


# ------------------------------------------------------------------------------------------------ real databases

IN_MEMORY_MAX_BYTES = 256 << 20  # larger database files are queried in place (read-only) instead of copied
# Page cache of a real database's connection: a wrong join's GROUP BY over a few hundred thousand rows then sorts
# in memory instead of spilling to a temporary file (~18% faster on Spider's heaviest predictions). Memory is
# taken only while a statement needs it; 32 cached databases stay well under the worker's SQLite heap cap.
REAL_DATABASE_CACHE_KIB = 16 << 10


class DatabaseCache:
    """Real SQLite files, each read once per process into a locked, read-only in-memory connection.

    Read-only queries cannot change a database (the authorizer denies every write), so one connection serves
    every gold and prediction on it. Files over ``IN_MEMORY_MAX_BYTES`` are opened in place, read-only.
    """

    def __init__(self, maxsize: int = 32) -> None:
        self._items: BoundedCache[str, sqlite3.Connection] = BoundedCache(maxsize, sqlite3.Connection.close)

    def get(self, path: str, limits: Limits) -> sqlite3.Connection:
        return self._items.get_or_make(path, lambda: _open_real_database(path, limits))

    def close(self) -> None:
        self._items.clear()


def _open_real_database(path: str, limits: Limits) -> sqlite3.Connection:
    if Path(path).stat().st_size > IN_MEMORY_MAX_BYTES:
        return connection_from_file_readonly(path, limits)
    return connection_from_bytes(read_database_file(path), limits, REAL_DATABASE_CACHE_KIB, virtual_tables=True)


class GoldCache:
    """The gold's result per (database, SQL that runs): each gold runs once per database, however many
    predictions (models, runs) are scored against it, and once for both conventions when they run the same SQL
    (a gold without DISTINCT)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._items: BoundedCache[tuple[str, str], GoldResult | GoldError] = BoundedCache(maxsize)

    def get(
        self, db_key: str, conn: sqlite3.Connection, gold: str, convention: str, limits: Limits
    ) -> GoldResult | GoldError:
        """The gold's result on the database, or why it does not run there (naming ``convention``)."""
        sql = apply_convention(gold, convention)
        value = self._items.get_or_make((db_key, sql), lambda: _run_gold_or_error(conn, sql, limits))
        if isinstance(value, GoldError) and value.convention != convention:  # shared by both conventions
            return replace(value, convention=convention)
        return value


def _run_gold_or_error(conn: sqlite3.Connection, sql: str, limits: Limits) -> GoldResult | GoldError:
    try:
        return run_gold(conn, plan_gold(sql), limits)
    except QueryError as exc:
        return GoldError(str(exc))


def score_on_database_file(
    db_path: str | Path,
    gold: str,
    prediction: str,
    limits: Limits = DEFAULT_LIMITS,
    column_order_matters: bool = False,
    convention: str = DEFAULT_CONVENTION,
) -> tuple[bool, Verdict]:
    """Score against a real SQLite database (one-off; the scorer's workers use the caches). Returns
    ``(gold_valid, result)``. The file is opened read-only and copied into memory."""
    conn = connection_from_bytes(read_database_file(db_path), limits, virtual_tables=True)
    try:
        gold_result = GoldCache(1).get(str(db_path), conn, gold, convention, limits)
        if isinstance(gold_result, GoldError):
            return False, Verdict(False, False, str(gold_result))
        pred = apply_convention(prediction, convention)
        return True, score_on_connections([conn], [gold_result], pred, limits, column_order_matters)
    finally:
        conn.close()
