"""The scoring conventions: which SQL runs for a gold or a prediction under each (no parsing, no SQLite).

* ``official``: the Spider test-suite evaluator's defaults (taoyds/test-suite-sql-eval, ``eval_exec_match``
  with ``keep_distinct=False, plug_value=False``): only the first statement of gold and prediction runs (it
  rebuilds each query from the first statement ``sqlparse`` finds, so ``q; DROP ...`` is scored as ``q;``),
  every ``DISTINCT`` keyword is removed from them before they run, and ``> =``/``< =``/``! =`` are joined as it
  joins them. Published Spider figures use it.
* ``strict``: the SQL runs as written (DISTINCT kept), so a missing or extra DISTINCT is a miss, and a
  prediction of several statements is refused by the sandbox (a miss that does not execute).

The scorer reports the chosen convention and the other beside it (:mod:`.score`).
"""

from __future__ import annotations

import re

CONVENTIONS = ("official", "strict")
DEFAULT_CONVENTION = "strict"  # `sqlmaster eval score` and every dataset but Spider dev (runner.DATASET_CONVENTIONS)


# One pass over the SQL that skips quoted strings, quoted identifiers and comments, so that only the keyword
# DISTINCT and the split operators outside them are touched.
_SCAN = re.compile(
    r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|\Z))"""
    r"""|(\bdistinct\b)|([<>!]) =""",
    re.IGNORECASE | re.DOTALL,
)


_OFFICIAL_CHANGES = re.compile(r"distinct|[<>!] =", re.IGNORECASE)  # what the scan below can change

# The same skipping of quoted text and comments, to find the ``;`` that ends the first statement.
_STATEMENT_END = re.compile(
    r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|\Z))|;""", re.DOTALL
)


def first_statement(sql: str) -> str:
    """``sql`` up to and including its first ``;`` outside strings, quoted names and comments (all of it when
    there is none). What follows is dropped, as the official evaluator drops it."""
    if ";" not in sql:
        return sql
    for match in _STATEMENT_END.finditer(sql):
        if match.group(1) is None:
            return sql[: match.end()]
    return sql


def _official_token(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group(1)
    if match.group(2) is not None:
        return ""
    return match.group(3) + "="


def apply_convention(sql: str, convention: str) -> str:
    """The SQL that runs under ``convention`` (see the module docstring)."""
    if convention == "strict":
        return sql
    if convention == "official":
        sql = first_statement(sql)
        # Most SQL has neither DISTINCT nor a split operator: one cheap search instead of the full scan.
        return _SCAN.sub(_official_token, sql) if _OFFICIAL_CHANGES.search(sql) else sql
    raise ValueError(f"unknown convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
