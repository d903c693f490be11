"""The question grammar: several styles per SQL shape, filled with the schema's words and the database's values.

Templates are written from the SQL and the schema only (never from any evaluation set's questions). Each shape
(the key) has several styles; the synthesizer picks one with its seeded random generator, so the same database
and seed give the same questions. Slots: ``{col}``/``{col2}`` column phrases, ``{fcol}`` the filtered column,
``{value}``/``{value2}`` values as they appear in the database, ``{tables}`` the table as a plural phrase,
``{table}`` singular, ``{other}`` the joined table (plural), ``{n}`` a number, ``{agg}`` an aggregate's words.
"""

from __future__ import annotations

import random

STYLES: dict[str, tuple[str, ...]] = {
    "filter_eq": (
        "What is the {col} of the {tables} whose {fcol} is {value}?",
        "Show the {col} of {tables} with {fcol} {value}.",
        "List the {col} of every {table} where {fcol} equals {value}.",
        "Find the {col} for {tables} that have {value} as {fcol}.",
    ),
    "filter_cmp": (
        "What is the {col} of the {tables} whose {fcol} is {op_words} {value}?",
        "Show the {col} of {tables} with {fcol} {op_words} {value}.",
        "List the {col} of all {tables} having a {fcol} {op_words} {value}.",
    ),
    "filter_two": (
        "What are the {col} and {col2} of the {tables} whose {fcol} is {value}?",
        "Show the {col} and {col2} of {tables} with {fcol} {value}.",
        "Give the {col} and the {col2} of every {table} where {fcol} equals {value}.",
    ),
    "filter_like": (
        "Which {tables} have a {fcol} containing '{value}'? Give their {col}.",
        "Show the {col} of {tables} whose {fcol} contains the word {value}.",
        "List the {col} of every {table} with {value} in its {fcol}.",
    ),
    "count_distinct": (
        "How many different {fcol} values do the {tables} have?",
        "Count the distinct {fcol} of {tables}.",
        "How many distinct {fcol} are there among the {tables}?",
    ),
    "count_all": (
        "How many {tables} are there?",
        "Count the number of {tables}.",
        "What is the total number of {tables}?",
    ),
    "count_eq": (
        "How many {tables} have {fcol} {value}?",
        "Count the {tables} whose {fcol} is {value}.",
        "What is the number of {tables} with {value} as {fcol}?",
    ),
    "aggregate": (
        "What is the {agg} {col} of all {tables}?",
        "Find the {agg} {col} over the {tables}.",
        "Give the {agg} {col} among {tables}.",
    ),
    "aggregate_range": (
        "What are the maximum and minimum {col} of all {tables}?",
        "Show the highest and the lowest {col} among {tables}.",
    ),
    "aggregate_eq": (
        "What is the {agg} {col} of {tables} whose {fcol} is {value}?",
        "Find the {agg} {col} of the {tables} with {fcol} {value}.",
    ),
    "order_top": (
        "What is the {col} of the {table} with the {extreme} {col2}?",
        "Which {table} has the {extreme} {col2}? Give its {col}.",
        "Show the {col} of the {table} whose {col2} is the {extreme}.",
    ),
    "order_all": (
        "List the {col} of all {tables} ordered by {col2} {direction}.",
        "Show every {table}'s {col}, sorted by {col2} in {direction} order.",
        "Sort the {tables} by {col2} {direction} and give their {col}.",
    ),
    "group_count": (
        "How many {tables} are there for each {fcol}?",
        "Show each {fcol} and the number of {tables} with it.",
        "For every {fcol}, count the {tables}.",
    ),
    "group_top": (
        "Which {fcol} is the most common among {tables}?",
        "What is the {fcol} shared by the most {tables}?",
        "Find the {fcol} that the largest number of {tables} have.",
    ),
    "group_agg": (
        "What is the {agg} {col} of {tables} for each {fcol}?",
        "Show each {fcol} with the {agg} {col} of its {tables}.",
        "For every {fcol}, give the {agg} {col} of the {tables}.",
    ),
    "having": (
        "Which {fcol} values are shared by at least {n} {tables}?",
        "Show the {fcol} that appear in {n} or more {tables}.",
        "List every {fcol} with at least {n} {tables}.",
    ),
    "join_eq": (
        "What is the {col} of the {tables} whose {other_one} has {fcol} {value}?",
        "Show the {col} of {tables} linked to {other} with {fcol} {value}.",
        "List the {col} of {tables} for the {other} whose {fcol} is {value}.",
    ),
    "join_group": (
        "For each {other_one}, what is its {col} and how many {tables} does it have?",
        "Show the {col} of every {other_one} and the number of {tables} it has.",
        "Count the {tables} of each {other_one}, with the {other_one}'s {col}.",
    ),
    "join_top": (
        "Which {other_one} has the most {tables}? Give its {col}.",
        "What is the {col} of the {other_one} with the largest number of {tables}?",
        "Show the {col} of the {other_one} that has the most {tables}.",
    ),
    "above_average": (
        "Which {tables} have a {col2} above the average? Give their {col}.",
        "Show the {col} of {tables} whose {col2} is greater than the average {col2}.",
        "List the {col} of the {tables} with more {col2} than average.",
    ),
    "not_in": (
        "What is the {col} of the {tables} that have no {other}?",
        "Show the {col} of {tables} without any {other}.",
        "List the {col} of every {table} that does not appear in {other}.",
    ),
    "in": (
        "What is the {col} of the {tables} that have some {other}?",
        "Show the {col} of {tables} with at least one {other_one}.",
        "List the {col} of every {table} that appears in {other}.",
    ),
    "union": (
        "Show the {col} of {tables} whose {fcol} is {value} or {value2}.",
        "What is the {col} of the {tables} with {fcol} {value}, together with those with {fcol} {value2}?",
    ),
    "intersect": (
        "Which {col} is shared by {tables} with {fcol} {value} and {tables} with {fcol} {value2}?",
        "Show the {col} found both among {tables} whose {fcol} is {value} and those whose {fcol} is {value2}.",
    ),
    "except": (
        "Which {col} of {tables} with {fcol} {value} never occurs for {fcol} {value2}?",
        "Show the {col} of {tables} with {fcol} {value}, except those also found with {fcol} {value2}.",
    ),
}

AGGREGATE_WORDS = {"MAX": "maximum", "MIN": "minimum", "AVG": "average", "SUM": "total"}
OPERATOR_WORDS = {">": "greater than", "<": "less than", ">=": "at least", "<=": "at most"}


def ask(shape: str, rng: random.Random, **slots: str) -> str:
    """One question for ``shape`` in a style chosen by ``rng``."""
    text = rng.choice(STYLES[shape]).format(**slots)
    text = text.replace("..", ".").replace(".?", "?")  # a value that ends with a full stop
    return text[0].upper() + text[1:]
