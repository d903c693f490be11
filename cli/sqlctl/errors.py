"""One error type that every command turns into `error: <what>. <fix>` and a non-zero exit."""

from __future__ import annotations

import sys

from sqlmaster import exitcodes  # the workload's codes: 1 the run or the cluster failed, 2 the input is wrong


class SqlctlError(Exception):
    """A problem the user can fix: `what` names it, `fix` says how to fix it."""

    def __init__(self, what: str, fix: str = "", code: int = exitcodes.CONFIG, detail: str = "") -> None:
        super().__init__(what)
        self.what = what.rstrip(".")
        self.fix = fix
        self.code = code
        self.detail = detail  # extra lines (e.g. helm's own message), printed after the one-line error

    def message(self) -> str:
        text = f"error: {self.what}."
        if self.fix:
            text += f" {self.fix}"
        return text


def print_error(err: SqlctlError) -> None:
    """Print the error line (and any detail) to stderr."""
    print(err.message(), file=sys.stderr)
    if err.detail:
        print(err.detail.rstrip(), file=sys.stderr)


def warn(message: str) -> None:
    """Print a warning line to stderr; warnings never change the exit code."""
    print(f"warning: {message}", file=sys.stderr)
