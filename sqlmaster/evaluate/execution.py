"""Execution accuracy: does the predicted SQL return what the gold SQL returns?

For an example from a ``CREATE TABLE`` context we synthesize ``k`` databases (:mod:`.synth`), run the gold
and the
prediction on each inside the sandbox (:mod:`.sandbox`), and count a match only when the results agree on
**every** database:

* results are compared as multisets of rows (``Counter``); as lists when the gold's outermost query has
  ORDER BY (then row order is part of the answer);
* floats are compared after rounding to 9 significant digits (``AVG`` vs ``SUM/COUNT`` differ in the last
  bits);
  ``1`` and ``1.0`` are equal, ``'1'`` and ``1`` are not;
* by default the column order of the prediction may differ from the gold's (as in Spider's test-suite
  evaluation: "names and ages" answered as ages and names is right); ``column_order_matters=True`` turns
  that off.

``executes`` is true when the prediction ran without error on every database it was run on (the scorer stops
at
the first database where the results differ). A gold query that does not run is not scored (``gold_valid``
false): that example is excluded from execution accuracy and counted.

:func:`score_on_database_file` scores against a real SQLite file (Spider dev), opened read-only and copied
into
memory, under the same sandbox.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmaster.evaluate import sqlast
from sqlmaster.evaluate.sandbox import (
    DEFAULT_LIMITS,
    Limits,
    QueryError,
    Row,
    connection_from_bytes,
    read_database_file,
    run_query,
)
from sqlmaster.evaluate.synth import SynthesizedExample, synthesize

_MAX_PERMUTED_COLUMNS = 5  # 120 permutations at most


@dataclass(frozen=True)
class PredictionResult:
    match: bool
    executes: bool
    error: str | None = None


def _norm_value(v: Any) -> Any:
    if isinstance(v, float):
        if v != v:  # NaN
            return "NaN"
        r = float(f"{v:.9g}")
        return int(r) if r.is_integer() and abs(r) < 2**53 else r
    return v


def normalize_rows(rows: list[Row]) -> list[Row]:
    return [tuple(_norm_value(v) for v in row) for row in rows]


def _same(gold: list[Row], pred: list[Row], ordered: bool) -> bool:
    return gold == pred if ordered else Counter(gold) == Counter(pred)


def results_match(gold: list[Row], pred: list[Row], ordered: bool, column_order_matters: bool = False) -> bool:
    """Compare two result sets as described in the module docstring."""
    if len(gold) != len(pred):
        return False
    g, p = normalize_rows(gold), normalize_rows(pred)
    if _same(g, p, ordered):
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
            if _same(g, permuted, ordered):
                return True
    return False


_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def gold_is_ordered(gold: str) -> bool:
    """Whether row order is part of the gold's answer (outermost ORDER BY)."""
    tree = sqlast.parse(gold)
    if tree is None:
        # Unparseable: an ORDER BY after the last closing parenthesis belongs to the outer query.
        return bool(_ORDER_BY.search(gold[gold.rfind(")") + 1 :]))
    return sqlast.has_top_level_order_by(tree)


@dataclass
class PreparedExample:
    """Everything about one (context, gold) that does not depend on the prediction."""

    synth: SynthesizedExample
    ordered: bool  # gold's outermost query has ORDER BY
    gold_normalized: str | None  # exact-match form of the gold (None: sqlglot cannot parse it)


def prepare_example(
    context: str, gold: str, k: int = 3, seed: int = 0, limits: Limits = DEFAULT_LIMITS
) -> PreparedExample:
    """Synthesize the databases and parse the gold once."""
    from sqlmaster.evaluate.exact_match import normalize_tree

    tree = sqlast.parse(gold)
    if tree is None:
        synth = synthesize(context, gold, k=k, base_seed=seed, limits=limits)
        return PreparedExample(synth, gold_is_ordered(gold), None)
    ordered = sqlast.has_top_level_order_by(tree)
    synth = synthesize(context, gold, k=k, base_seed=seed, limits=limits, gold_tree=tree.copy())
    return PreparedExample(synth, ordered, normalize_tree(tree, synth.column_names or None))


class ExampleCache:
    """LRU cache of prepared examples per (context, gold, k, seed): several predictions of one example
    (mutants, several models) reuse one synthesis."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, PreparedExample] = OrderedDict()

    def get(self, context: str, gold: str, k: int, seed: int, limits: Limits) -> PreparedExample:
        key = hashlib.sha256(f"{k}\0{seed}\0{context}\0{gold}".encode()).hexdigest()
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        value = prepare_example(context, gold, k, seed, limits)
        self._items[key] = value
        if len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return value


def score_prediction(
    example: SynthesizedExample,
    prediction: str,
    ordered: bool,
    limits: Limits = DEFAULT_LIMITS,
    column_order_matters: bool = False,
) -> PredictionResult:
    """Run ``prediction`` on each synthesized database and compare with the gold's rows there."""
    if example.gold_error is not None:
        raise ValueError("gold is invalid for this example; it cannot be scored")
    if not prediction or not prediction.strip():
        return PredictionResult(False, False, "empty: no SQL to execute")
    for data, gold_rows in zip(example.databases, example.gold_rows, strict=True):
        conn = connection_from_bytes(data, limits)
        try:
            rows = run_query(conn, prediction, limits)
        except QueryError as exc:
            return PredictionResult(False, False, str(exc))
        finally:
            conn.close()
        if not results_match(gold_rows, rows, ordered, column_order_matters):
            return PredictionResult(False, True, None)
    return PredictionResult(True, True, None)


def score_on_database_file(
    db_path: str | Path,
    gold: str,
    prediction: str,
    limits: Limits = DEFAULT_LIMITS,
    column_order_matters: bool = False,
) -> tuple[bool, PredictionResult]:
    """Score against a real SQLite database. Returns ``(gold_valid, result)``.

    The file is opened read-only (``mode=ro`` URI) and copied into memory; gold and prediction each run on a
    fresh locked-down copy, so neither can change the file or each other's view.
    """
    data = read_database_file(db_path)
    gold_conn = connection_from_bytes(data, limits)
    try:
        gold_rows = run_query(gold_conn, gold, limits)
    except QueryError as exc:
        return False, PredictionResult(False, False, f"gold: {exc}")
    finally:
        gold_conn.close()
    example = SynthesizedExample([data], [gold_rows])
    return True, score_prediction(example, prediction, gold_is_ordered(gold), limits, column_order_matters)
