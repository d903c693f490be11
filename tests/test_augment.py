"""Augmented training copies: fresh table ids, donor values and numbers, each consistent between prompt and SQL."""

from __future__ import annotations

import re

from sqlmaster.data.augment import augment
from sqlmaster.data.examples import Example

WIKISQL = Example(
    question="What is the score of player Brian Watts, who has a to par of 5 after 1958?",
    context="CREATE TABLE table_name_5 (score VARCHAR, to_par VARCHAR, player VARCHAR, year INTEGER)",
    answer='SELECT score FROM table_name_5 WHERE player = "brian watts" AND to_par = 5 AND year > 1958',
)
OTHER = Example(
    question="what's the points with driver rusty wallace",
    context="CREATE TABLE table_10160447_1 (points VARCHAR, driver VARCHAR)",
    answer='SELECT points FROM table_10160447_1 WHERE driver = "Rusty Wallace"',
)
DONORS = [
    Example(
        question=f"Which team has a Coach of Name {i}?",
        context=f"CREATE TABLE table_name_{i} (team VARCHAR, coach VARCHAR)",
        answer=f'SELECT team FROM table_name_{i} WHERE coach = "name {i}"',
    )
    for i in range(10, 20)
]


def test_copies_follow_the_rows_and_the_same_seed_gives_the_same_copies() -> None:
    rows = [WIKISQL, OTHER, *DONORS]
    out = augment(rows, 2, seed=7)
    assert out[: len(rows)] == rows and len(out) == 3 * len(rows)
    assert out == augment(rows, 2, seed=7) and out != augment(rows, 2, seed=8)
    assert augment(rows, 0, seed=7) == rows


def test_a_copy_has_a_new_table_id_in_schema_and_sql_and_keeps_everything_else_of_the_schema() -> None:
    for copy in augment([OTHER, WIKISQL, *DONORS], 3, seed=1)[12:]:
        (table,) = re.findall(r"table_(?:name_)?\d+(?:_\d+)?", copy.context)
        assert re.search(rf"FROM {table}\b", copy.answer)
        original = next(r for r in [OTHER, WIKISQL, *DONORS] if r.context.split("(")[1] == copy.context.split("(")[1])
        assert re.sub(r"\d", "0", table) == re.sub(r"\d", "0", re.findall(r"table_\w+", original.context)[0])


def test_a_wikisql_copy_takes_a_wikisql_donors_value_spelled_as_each_side_spells_it() -> None:
    copies = augment([WIKISQL, *DONORS], 4, seed=3)[11:][::11]
    for copy in copies:
        (value,) = re.findall(r'player = "([^"]+)"', copy.answer)
        assert value.startswith("name 1") and f"Name {value[5:]}" in copy.question  # "Name 13" asked, "name 13" in SQL
        (year,) = re.findall(r"year > (\d+)", copy.answer)
        assert len(year) == 4 and f"after {year}?" in copy.question
        (par,) = re.findall(r"to_par = (\d+)", copy.answer)
        assert len(par) == 1 and f"to par of {par} after" in copy.question
    assert any(copy.answer != WIKISQL.answer for copy in copies)


def test_a_literal_the_question_does_not_contain_is_left_as_it_is() -> None:
    row = Example(
        question="Which team has the best record?",
        context="CREATE TABLE table_name_3 (team VARCHAR, record VARCHAR)",
        answer='SELECT team FROM table_name_3 WHERE record = "best"',
    )
    unrelated = Example(question="Who?", context="CREATE TABLE t (a VARCHAR)", answer='SELECT a FROM t WHERE a = "x"')
    copy = augment([row, unrelated], 1, seed=0)[2]
    assert copy.question != row.question or copy.answer.endswith('"best"')
    # "best" is a whole word in the question, so it is replaced consistently or (no donor of its kind) kept
    (value,) = re.findall(r'record = "([^"]+)"', copy.answer)
    assert value.lower() in copy.question.lower()
