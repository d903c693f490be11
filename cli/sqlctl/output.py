"""Printing: tables with uppercase headers for people, `-o json|yaml` for scripts and CI."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def emit(data: Any, fmt: OutputFormat) -> None:
    """Print `data` as JSON or YAML on stdout (tables are printed by the commands themselves)."""
    if fmt == OutputFormat.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A plain, kubectl-like table (no box drawing, so it pipes cleanly into grep/awk)."""
    from rich.console import Console
    from rich.table import Table, box

    tbl = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left")
    for header in headers:
        tbl.add_column(header.upper(), overflow="fold")
    for row in rows:
        tbl.add_row(*("" if cell is None else str(cell) for cell in row))
    console = Console()
    # Piped output (grep, awk, CI logs) keeps one row per line instead of wrapping at 80 columns.
    Console(width=console.width if console.is_terminal else 1000).print(tbl)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def age(value: str | None, now: datetime | None = None) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d."""
    started = parse_time(value)
    if started is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - started).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
