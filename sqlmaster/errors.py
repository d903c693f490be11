"""Errors that the command line turns into a one-line message and an exit code.

Exit code 2 means "the configuration is wrong": retrying cannot help, so the Helm charts' podFailurePolicy
fails the Kubernetes Job at once on it instead of burning GPU hours on retries.
"""

CONFIG_ERROR_EXIT_CODE = 2


class ConfigError(ValueError):
    """Bad input from the user: an unknown model, a missing field, an unreadable path, a bad recipe key.

    The message names the problem and the fix, e.g. ``unknown model 'foo'. Choose one of: ...``.
    """

    exit_code = CONFIG_ERROR_EXIT_CODE
