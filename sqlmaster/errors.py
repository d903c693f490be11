"""Errors that the command line turns into a one-line message and an exit code (sqlmaster/exitcodes.py says
what each code means; sqlctl uses the same codes)."""

from __future__ import annotations

import signal

from sqlmaster import exitcodes


class ConfigError(ValueError):
    """Bad input from the user: an unknown model, a missing field, an unreadable path, a bad recipe key.

    The message names the problem and the fix, e.g. ``unknown model 'foo'. Choose one of: ...``.
    """

    exit_code = exitcodes.CONFIG


class RunDiverged(ConfigError):
    """The loss became NaN or infinite: the same recipe would diverge again, so this is not retried (exit 2)."""


class TransientError(RuntimeError):
    """A failure that may pass (hub or network unreachable after retries): exit 1, so a Job retries it."""

    exit_code = exitcodes.FAILURE


class Interrupted(BaseException):  # like KeyboardInterrupt: `except Exception` in libraries lets it pass
    """SIGINT or SIGTERM arrived: the run records "interrupted" and exits 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = exitcodes.interrupted(signum)
        super().__init__(signal.Signals(signum).name)
