"""Exact match normalises case, whitespace, quoting and semicolons, and nothing that changes meaning."""

from __future__ import annotations

from sqlmaster.evaluate.exact_match import exact_match, fallback_normalize, normalize_sql

COLS = {"name", "team", "score"}


def test_equivalent_spellings_match() -> None:
    gold = 'SELECT name FROM table_1 WHERE team = "essendon"'
    for pred in (
        "select NAME from TABLE_1 where TEAM = 'essendon';",
        "SELECT  name\nFROM table_1\tWHERE team='essendon'",
        'SELECT "name" FROM table_1 WHERE team = "essendon"',
        "SELECT `name` FROM [table_1] WHERE team = 'essendon' ;",
    ):
        assert exact_match(pred, gold, COLS), pred


def test_different_queries_do_not_match() -> None:
    gold = 'SELECT name FROM table_1 WHERE team = "essendon"'
    assert not exact_match("SELECT name FROM table_1 WHERE team = 'Essendon'", gold, COLS)  # values keep case
    assert not exact_match("SELECT name FROM table_1 WHERE team <> 'essendon'", gold, COLS)
    assert not exact_match("SELECT team FROM table_1 WHERE team = 'essendon'", gold, COLS)
    assert not exact_match("", gold, COLS)


def test_double_quoted_column_stays_a_column() -> None:
    # "score" names a column, so SQLite reads it as one; "80" does not, so it is a string.
    expected = "SELECT name FROM t WHERE score > '80'"
    assert normalize_sql('SELECT name FROM t WHERE "score" > "80"', COLS) == expected


def test_fallback_when_sqlglot_cannot_parse() -> None:
    gold = "SELECT MIN(180 AS s) FROM table_1"
    assert exact_match("select min( 180 as s ) from TABLE_1;", gold)
    assert fallback_normalize('SELECT  A FROM t WHERE b = "x";') == "select a from t where b='x'"
