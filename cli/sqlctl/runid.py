"""Run ids: unique, sortable by time, and valid as Kubernetes names, label values and helm release names."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from sqlctl.errors import SqlctlError

# A DNS-1123 label (names and label values both accept it) of at most 52 characters: helm refuses release
# names over 53, and the chart derives every name from the id within 63 (Job/ConfigMap/Service
# "<id>-<task>-<model>" is cut to 56 with a hash suffix, the claim "<id>-sqlmaster-<task>" to 58 + "-data",
# the artifact reader "<id>-r<4 hex>" is at most 58).
MAX_RUN_ID = 52
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RANDOM_HEX = 8  # 32 random bits: 200 ids made in one second collide with probability ~5e-6


def new_run_id(task: str, model: str, now: datetime | None = None) -> str:
    """`<task>-<model>-<yyyymmdd-hhmmss>-<8 hex>`, e.g. `train-gemma7b-20240315-142501-9f3c0a7e`.

    The model part is shortened when needed so the id stays within MAX_RUN_ID.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    suffix = f"-{stamp}-{secrets.token_hex(_RANDOM_HEX // 2)}"
    room = MAX_RUN_ID - len(task) - 1 - len(suffix)
    slug = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")[:room].strip("-")
    return validate_run_id(f"{task}-{slug}{suffix}" if slug else f"{task}{suffix}")


def validate_run_id(run_id: str, what: str = "run id") -> str:
    """Return `run_id` if DNS-safe, else raise a one-line error (the id is shortened in the message)."""
    if len(run_id) > MAX_RUN_ID or not _RUN_ID.match(run_id):
        shown = run_id if len(run_id) <= 60 else f"{run_id[:40]}…({len(run_id)} characters)"
        raise SqlctlError(
            f"{what} {shown!r} is not a valid run id",
            f"Use lowercase letters, digits and '-', starting and ending with a letter or digit, "
            f"at most {MAX_RUN_ID} characters (see `sqlctl list`).",
        )
    return run_id
