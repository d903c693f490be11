"""Answers written for a dialect with no more quoting than the engine needs (``transpile(quote="needed")``, what
``data.dialect`` trains on): plain lower-case names bare, every word the engine reserves quoted, and the SQL the same
as the all-quoted form. The reserved lists (sqlmaster/engines/keywords.py) are checked against the real engines:
every word any engine lists and a set of everyday column names, bare or quoted as transpile writes them, name a table
and a column that the engine finds."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import duckdb
import pytest
import sqlglot

from sqlmaster.engines import mysql, postgresql
from sqlmaster.engines.keywords import RESERVED
from sqlmaster.engines.transpile import DIALECTS, transpile

# Names sql-create-context's columns use that are keywords somewhere, and plain ones.
EVERYDAY = [
    "year",
    "rank",
    "name",
    "date",
    "time",
    "position",
    "result",
    "type",
    "count",
    "value",
    "level",
    "class",
    "first",
    "last",
    "number",
    "season",
    "round",
    "language",
    "current",
    "status",
    "section",
    "comment",
]
ENGINES = ["postgresql", "mysql", "duckdb"]


def _probe(word: str, engine: str) -> str:
    """``SELECT word FROM word WHERE word = 1`` for ``engine``, quoted where needed."""
    return transpile(f'SELECT "{word}" FROM "{word}" WHERE "{word}" = 1', engine, {word: {word: "integer"}}, "needed")


@pytest.mark.parametrize("engine", ENGINES)
def test_plain_names_are_bare_and_reserved_ones_quoted(engine: str) -> None:
    types = {"table_name_12": {"year": "text", "order": "integer", "total points": "integer"}}
    sql = 'SELECT Year, "order", COUNT(*) FROM table_name_12 WHERE "Total Points" > 3 GROUP BY Year, "order"'
    needed = transpile(sql, engine, types, quote="needed")
    q = "`" if engine == "mysql" else '"'
    assert f"SELECT year, {q}order{q}, COUNT(*) FROM table_name_12 WHERE {q}total points{q} > 3" in needed
    every = transpile(sql, engine, types)
    assert len(needed) < len(every)
    dialect = DIALECTS[engine]  # the same statement once the engine reads it
    assert sqlglot.parse_one(needed, read=dialect).sql(dialect=dialect, identify=True) == every
    with pytest.raises(ValueError, match="unknown quote"):
        transpile(sql, engine, types, quote="some")


@pytest.fixture
def run_on(request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], None]]:
    """``run_on(name, query)``: a temporary table ``name`` with one column ``name`` (both quoted as given), queried on
    the engine of the test's parameter and dropped."""
    engine = request.node.callspec.params["engine"]
    if engine == "duckdb":
        conn = duckdb.connect()
        execute: Callable[[str], object] = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
    else:
        server = request.getfixturevalue("pg_server" if engine == "postgresql" else "mysql_server")
        conn = (postgresql if engine == "postgresql" else mysql).connect(server.owner_url, readonly=False)

        def execute(sql: str) -> object:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else None

    drop = "DROP TEMPORARY TABLE" if engine == "mysql" else "DROP TABLE"

    def run(name: str, query: str) -> None:
        execute(f"CREATE TEMPORARY TABLE {name} ({name} INTEGER)")
        try:
            execute(query)
        finally:
            execute(f"{drop} {name}")

    yield run
    conn.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_every_name_as_transpile_writes_it_runs_on_the_real_engine(engine: str, run_on) -> None:
    words = sorted(set().union(*RESERVED.values(), EVERYDAY))  # another engine's keywords must work bare here
    q = "`" if engine == "mysql" else '"'
    failed = []
    for word in words:
        query = _probe(word, engine)
        try:
            run_on(f"{q}{word}{q}", query)
        except Exception as exc:  # collected and reported below
            failed.append((word, query, str(exc).splitlines()[0]))
    assert not failed, failed
    assert _probe("year", engine).startswith("SELECT year FROM year")  # an everyday name stays bare
