"""Does a gold query run on its own schema? (2.1% of sql-create-context does not.)

Runs on empty in-memory SQLite databases with SQLite's default double-quoted-string handling, which is how
sql-create-context writes string literals.
"""

from __future__ import annotations

import sqlite3


def gold_runs(context: str, answer: str) -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(context)
        conn.execute(answer).fetchall()
        return True
    except sqlite3.Error:
        return False
    except Exception:  # e.g. ValueError for NUL bytes or a second statement: still "does not run"
        return False
    finally:
        conn.close()
