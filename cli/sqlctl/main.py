"""`sqlctl`'s console entry point: the root command (sqlctl.app) with every command module registered on it."""

from __future__ import annotations

from sqlctl.app import app
from sqlctl.commands import artifacts, cancel, listing, logs, models, status, submit  # noqa: F401  (they register)

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point (`sqlctl`); commands turn their errors into `error: ...` and an exit code."""
    app()
