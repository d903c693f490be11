"""The exit codes of both command lines, `sqlmaster` (the workload) and `sqlctl` (the client), declared once.

0    success
1    a failure a retry may fix (network, hub, cluster, a crash): the charts' Jobs retry it
2    the configuration or input is wrong (or the run diverged): retrying cannot help, so the Helm charts'
     podFailurePolicy fails the Kubernetes Job at once instead of burning GPU hours on retries
130 / 143  interrupted by SIGINT / SIGTERM (128 + the signal number, the shell's convention); retried

Torch-free and import-free, so sqlctl shares it without loading the workload.
"""

from __future__ import annotations

OK = 0
FAILURE = 1
CONFIG = 2
INTERRUPTED_BASE = 128  # + the signal number


def interrupted(signum: int) -> int:
    """The exit code of a process stopped by signal ``signum``."""
    return INTERRUPTED_BASE + signum
