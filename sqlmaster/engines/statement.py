"""The statement check the server engines (PostgreSQL, MySQL) run before sending anything: exactly one statement, a
read (``SELECT``, ``WITH``, ``VALUES``, ``TABLE``, or one of those in parentheses), no ``INTO`` (a new table, a file,
a variable), no row locks (``FOR UPDATE``/``FOR SHARE``, ``LOCK IN SHARE MODE``), and none of the functions that
reach the server's files, other servers, or locks that outlive a transaction (:data:`DENIED_FUNCTIONS`).

It reads sqlglot's tokens of the engine's dialect (strings, quoted identifiers and comments are told apart the way
the engine does), not a full parse, so that any SQL the server would accept is judged, not only SQL sqlglot can
parse. It is the first of several guards, never the only one: the server's read-only transaction refuses writes, the
protocol refuses a second statement (psycopg's extended protocol, pymysql without ``MULTI_STATEMENTS``), and a
SELECT-only role (``sqlmaster db create-readonly-role``) holds no privilege to read files or run programs.
"""

from __future__ import annotations

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

from sqlmaster.engines.base import Limits, QueryError

_READ_STARTS = frozenset({TokenType.SELECT, TokenType.WITH, TokenType.VALUES, TokenType.TABLE})
_NAME_TOKENS = frozenset({TokenType.VAR, TokenType.IDENTIFIER})
# Functions that read or write the server's files, reach other servers or programs, or take locks that outlive the
# transaction (rolled back after every statement). Lower case; matched by name, also schema-qualified or quoted.
DENIED_FUNCTIONS = frozenset(
    {
        # PostgreSQL: server files (superusers and pg_read_server_files), large objects, other servers, locks
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
        "pg_ls_tmpdir", "pg_ls_archive_statusdir", "lo_import", "lo_export", "lo_get", "lo_from_bytea", "lo_put",
        "lo_create", "lo_creat", "lo_unlink", "lo_open", "lowrite", "lo_truncate",
        "dblink", "dblink_exec", "dblink_connect", "dblink_send_query", "dblink_open",
        "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "set_config",
        # PostgreSQL functions that run a query given as text (which this check cannot see)
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml", "ts_stat",
        # MySQL/MariaDB: server files, named locks (held by the session, not the transaction), user variables
        "load_file", "get_lock", "release_lock", "release_all_locks", "is_free_lock", "sys_exec", "sys_eval",
    }
)  # fmt: skip


def check_read_statement(sql: str, dialect: str, limits: Limits) -> str:
    """``sql`` as one read statement (trailing ``;`` and whitespace removed), or a ``QueryError``."""
    if len(sql) > limits.max_sql_chars:
        raise QueryError("sql", f"statement longer than {limits.max_sql_chars} characters")
    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except SqlglotError as exc:
        raise QueryError("sql", str(exc).splitlines()[0]) from None
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        raise QueryError("empty", "no SQL statement")
    if any(t.token_type == TokenType.SEMICOLON for t in tokens):
        raise QueryError("multiple_statements", "more than one SQL statement")
    first = next((t for t in tokens if t.token_type != TokenType.L_PAREN), tokens[0])
    if first.token_type not in _READ_STARTS:
        raise QueryError("denied", f"only SELECT, WITH and VALUES are allowed, not {first.text.upper()}")
    _refuse_side_effects(tokens)
    return sql[: tokens[-1].end + 1]


def _refuse_side_effects(tokens: list[Token]) -> None:
    for i, token in enumerate(tokens):
        kind = token.token_type
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == TokenType.INTO:
            raise QueryError("denied", "SELECT ... INTO writes a table, a file or a variable")
        if kind == TokenType.FOR and following is not None and following.text.upper() in ("UPDATE", "SHARE"):
            raise QueryError("denied", f"FOR {following.text.upper()} locks rows")
        if kind == TokenType.LOCK or (token.text.upper() == "LOCK" and kind in _NAME_TOKENS):
            raise QueryError("denied", "LOCK takes locks")
        name = token.text.lower()
        called = following is not None and following.token_type == TokenType.L_PAREN
        if kind in _NAME_TOKENS and name in DENIED_FUNCTIONS and called:
            raise QueryError("denied", f"the function {name} is not allowed (server files, other servers, locks)")
