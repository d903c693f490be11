"""How many CPU cores this process may use (torch-free: the scorer and the training launcher both ask)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on: a container's or ``taskset``'s CPU set, not the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def scorer_workers(sharing: int = 1) -> int:
    """Scorer worker processes to start by default: up to 2, within the share of the cores left to one of
    ``sharing`` processes that each start their own (GRPO in two processes on 2 cores: one each), and at least 1,
    since the workers are the scorer's sandbox, not only its speed."""
    return max(1, min(2, available_cores() // max(1, sharing)))
