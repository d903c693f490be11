"""Result values normalised across engines, before any comparison (the rules of sqlmaster.evaluate.execution then
apply to every engine alike).

What each engine returns for the same SQL value differs: PostgreSQL and MySQL return ``Decimal`` for NUMERIC and
for ``AVG`` of integers, DuckDB and PostgreSQL return ``bool`` where SQLite and MySQL return 0/1, servers return
``datetime.date``/``datetime`` objects where SQLite stores ISO text, MySQL returns ``bytes`` for some text
results. Normalised:

* ``bool`` → ``int`` (0/1), as SQLite stores it;
* ``Decimal`` → ``int`` when integral, else ``float`` (compared later within the scorer's 9 significant digits);
* ``date``/``datetime``/``time`` → ISO text (``2009-01-31``, ``2009-01-31 12:00:00``, ``12:00:00``), SQLite's form;
* ``timedelta`` (MySQL TIME) → ``HH:MM:SS`` text;
* ``UUID`` → text; ``memoryview``/``bytearray`` → ``bytes``;
* ``None`` stays ``None`` (NULL), ``str``/``int``/``float``/``bytes`` stay as they are.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlmaster.evaluate.sandbox import Row


def normalise_value(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return float(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
        return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    for base in (int, float, str):  # subclasses (an IntEnum, psycopg's text subtypes) as their base type
        if isinstance(value, base):
            return base(value)
    if hasattr(value, "item"):  # numpy scalar
        return normalise_value(value.item())
    return str(value)  # intervals, lists, structs, JSON: compared by their text


def normalise_row(row: Iterable[Any]) -> Row:
    return tuple(normalise_value(v) for v in row)
