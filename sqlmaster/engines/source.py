"""What a SOURCE argument names — a database file or a server URL — and how it is shown without its password.

``sqlmaster`` takes a database as one string: a path (``shop.sqlite``, ``warehouse.duckdb``) or a URL
(``postgresql://reader@db:5432/shop``, ``mysql://reader@db/shop``). A password is never written in a command line
that others can read, a log or a manifest: a URL's password is taken but only ever shown as ``***``
(:func:`redact`); the usual places hold it instead — ``PGPASSWORD``/``~/.pgpass`` for PostgreSQL (libpq reads them),
MySQL's option files and ``MYSQL_PWD`` for MySQL, or ``SQLMASTER_DB_PASSWORD_FILE`` (a file holding only the
password, as a mounted Kubernetes Secret is) for either.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

PASSWORD_FILE_ENV = "SQLMASTER_DB_PASSWORD_FILE"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A URL in running text: scheme://, then anything up to whitespace or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# user:password@ up to the URL's LAST '@', so an unescaped '/' or '@' inside the password is hidden too
_USERINFO_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):.*@")
# libpq and MySQL URLs also take the password as a query parameter
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def redact(text: str) -> str:
    """``text`` with every URL's password replaced by ``***`` (for logs, errors, run.json, metrics)."""

    def hide(match: re.Match[str]) -> str:
        url = _USERINFO_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", match.group(0))
        return _QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}***", url)

    return _URL_IN_TEXT.sub(hide, text)


@dataclass(frozen=True)
class ServerURL:
    """A server URL taken apart. ``password`` is None when the URL has none (libpq/MySQL find it elsewhere)."""

    scheme: str
    host: str | None
    port: int | None
    user: str | None
    password: str | None
    database: str | None
    query: str

    @classmethod
    def parse(cls, url: str) -> ServerURL:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {redact(url)}: {exc}") from None
        database = unquote(parts.path.lstrip("/")) or None
        return cls(
            scheme=parts.scheme.lower(),
            host=parts.hostname,
            port=port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            database=database,
            query=parts.query,
        )

    def shown(self) -> str:
        """The URL as it may be printed: the password, if any, as ``***``."""
        return self._written(":***" if self.password is not None else "")

    def without_password(self) -> str:
        """The URL as it may be stored and reconnected with: no password (the engines find it the documented way,
        e.g. PGPASSWORD), no query parameters (they may hold one)."""
        return self._written("")

    def _written(self, secret: str) -> str:
        user = f"{self.user}{secret}@" if self.user else ""
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{user}{host}{port}/{self.database or ''}"


def password_from_file() -> str | None:
    """The password in ``$SQLMASTER_DB_PASSWORD_FILE`` (trailing newline stripped), or None when unset."""
    path = os.environ.get(PASSWORD_FILE_ENV)
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        from sqlmaster.errors import ConfigError

        raise ConfigError(
            f"cannot read the database password file {PASSWORD_FILE_ENV}={path}: {exc.strerror}. "
            "Point it at a readable file holding only the password (e.g. a mounted Secret)"
        ) from None
