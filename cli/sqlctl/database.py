"""`sqlctl submit train|eval --from-db SOURCE --db-secret NAME | --data-dir DIR`: a user's own database on the cluster.

The flags become the charts' `database.*` values (docs/cluster.md, "Your own database on the cluster"), passed to
helm as `--set-json` (a URL's `,` or `=` stays one value); the chart renders the initContainer that runs
`sqlmaster data from-db` and the Secret volume. A password never reaches helm, a manifest or a message: a SOURCE
holding one is refused here, shown as `***`, with the `--db-secret` fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sqlctl.errors import SqlctlError
from sqlmaster.engines.source import is_url, redact

SECRET_KEY = "password"  # the key of the password in the --db-secret Secret (the chart's database.passwordKey)
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HAS_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:.*@|(?i:password=)")
_QUERY_PASSWORD = re.compile(r"(?i)([?&])password=[^&]*&?")


@dataclass(frozen=True)
class DatabaseFlags:
    """The three flags as given (None: not given)."""

    source: str | None = None
    secret: str | None = None
    data_dir: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in (self.source, self.secret, self.data_dir))


# Up to the LAST '@': an unescaped '/' or '@' in a password still ends up hidden (engines' redact stops at '/').
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):.*@")


def _shown(source: str) -> str:
    """``source`` as it may be printed: a userinfo password and a ``password=`` parameter as ``***``."""
    shown = redact(_USERINFO.sub(lambda m: f"{m.group('head')}:***@", source))
    return re.sub(r"(?i)password=[^&]*", "password=***", shown)


def _without_password(source: str) -> str:
    shown = _shown(source).replace(":***@", "@")
    return _QUERY_PASSWORD.sub(lambda m: m.group(1), shown).rstrip("?&")


def check_source(source: str) -> None:
    """Refuse a SOURCE holding a password (it would be stored in the Job); the message never shows it."""
    if _HAS_PASSWORD.search(source) or (not is_url(source) and re.match(r"^[^/@:]*:.*@", source)):
        shown = _shown(source) if is_url(source) else "(not shown)"
        raise SqlctlError(
            f"--from-db {shown} holds a password: it would be stored in the Job, readable by anyone who can read Jobs",
            "Put it in a Secret: kubectl create secret generic my-db --from-file=password=FILE, then "
            f"--from-db {_without_password(source) if is_url(source) else 'postgresql://USER@HOST:5432/DB'} "
            "--db-secret my-db (the pod reads it through SQLMASTER_DB_PASSWORD_FILE).",
        )


def database_sets(flags: DatabaseFlags, local: bool = False) -> list[str]:
    """Helm `--set-json` assignments of `database.*` for the flags given; checks what needs no helm."""
    if not flags.given():
        return []
    if local:
        raise SqlctlError(
            "--from-db, --db-secret and --data-dir are for the cluster (the chart builds the data in the pod)",
            "Locally: sqlmaster data from-db SOURCE -o DIR, then --recipe-set data.source=DIR (train) or "
            "--recipe-set 'evaluation.datasets=[\"DIR/test.jsonl\"]' (eval).",
        )
    if flags.source is not None:
        check_source(flags.source)
    if flags.secret is not None:
        if flags.source is None:
            raise SqlctlError(
                "--db-secret names the Secret of a server's password but no --from-db server is given",
                "Add --from-db postgresql://USER@HOST:5432/DB (or mysql://...), or drop --db-secret.",
            )
        if not _SECRET_NAME.match(flags.secret) or len(flags.secret) > 253:
            raise SqlctlError(
                "--db-secret is not a Secret name (DNS-1123: lowercase letters, digits, '-' and '.')",
                f"Pass the name of an existing Secret with the key {SECRET_KEY!r}, e.g. --db-secret my-db.",
            )
    values = {"source": flags.source, "passwordSecret": flags.secret, "dataDir": flags.data_dir}
    return [f"database.{key}={json.dumps(value)}" for key, value in values.items() if value is not None]
