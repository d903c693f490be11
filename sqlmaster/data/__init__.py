"""Text-to-SQL examples: loading, validation, splitting with a leakage guard, and the prompt–completion form."""

from sqlmaster.data.examples import Example
from sqlmaster.data.load import load_examples
from sqlmaster.data.split import Splits, make_splits

__all__ = ["Example", "Splits", "load_examples", "make_splits"]
