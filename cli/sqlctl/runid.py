"""Run ids: unique, sortable by time, and valid as Kubernetes names and label values."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from sqlctl.errors import SqlctlError

# A DNS-1123 label (names and label values both accept it); 63 characters at most. We keep run ids
# to 52 so that charts can append suffixes such as "-reader" or "-0" and stay within a Job name's limits.
MAX_RUN_ID = 52
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def new_run_id(task: str, model: str, now: datetime | None = None) -> str:
    """`<task>-<model>-<yyyymmdd-hhmmss>-<4 hex>`, e.g. `train-gemma7b-20240315-142501-9f3c`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
    run_id = f"{task}-{slug}-{stamp}-{secrets.token_hex(2)}"
    return validate_run_id(run_id)


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if DNS-safe, else raise a clear error."""
    if len(run_id) > MAX_RUN_ID or not _RUN_ID.match(run_id):
        raise SqlctlError(
            f"run id {run_id!r} is not a valid name",
            f"Use lowercase letters, digits and '-', starting and ending with a letter or digit, "
            f"at most {MAX_RUN_ID} characters.",
        )
    return run_id
