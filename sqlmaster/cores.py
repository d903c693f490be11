"""How many CPU cores this process may use (torch-free: the scorer and the training launcher both ask)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on: a container's or ``taskset``'s CPU set, not the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
