"""Errors that the command line turns into a one-line message and an exit code.

0  success
1  a failure a retry may fix (network, hub, a crash): the charts' Jobs retry it
2  the configuration is wrong (or the run diverged): retrying cannot help, so the Helm charts'
   podFailurePolicy fails the Kubernetes Job at once instead of burning GPU hours on retries
130 / 143  interrupted by SIGINT / SIGTERM (128 + signal number, the shell's convention); retried
"""

from __future__ import annotations

import signal

CONFIG_ERROR_EXIT_CODE = 2
TRANSIENT_ERROR_EXIT_CODE = 1


class ConfigError(ValueError):
    """Bad input from the user: an unknown model, a missing field, an unreadable path, a bad recipe key.

    The message names the problem and the fix, e.g. ``unknown model 'foo'. Choose one of: ...``.
    """

    exit_code = CONFIG_ERROR_EXIT_CODE


class RunDiverged(ConfigError):
    """The loss became NaN or infinite: the same recipe would diverge again, so this is not retried (exit 2)."""


class TransientError(RuntimeError):
    """A failure that may pass (hub or network unreachable after retries): exit 1, so a Job retries it."""

    exit_code = TRANSIENT_ERROR_EXIT_CODE


class Interrupted(BaseException):  # like KeyboardInterrupt: `except Exception` in libraries lets it pass
    """SIGINT or SIGTERM arrived: the run records "interrupted" and exits 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(signal.Signals(signum).name)
