"""``sqlmaster db``: the SELECT-only login's SQL (printed, documented, applied to real servers and then proved unable
to write or read files with the servers' own clients), the schema command, and no password in anything a command
prints or writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqlmaster.engines.roles import readonly_role_script
from tests._servers import OWNER_PASSWORD, Server

REPO = Path(__file__).resolve().parents[1]
NEW_PASSWORD = "Applied-pw-91ab"


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue("pg_server" if request.param == "postgresql" else "mysql_server")


def _sqlmaster(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'cli'}", "HOME": str(cwd), **(env or {})}
    argv = [sys.executable, "-m", "sqlmaster.cli", *args]
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def test_the_documented_sql_is_what_the_command_prints(tmp_path: Path) -> None:
    docs = (REPO / "docs" / "databases.md").read_text()
    for engine in ("postgresql", "mysql"):
        script = readonly_role_script(engine, "sqlmaster_reader", "shop")
        assert script.strip() in docs, f"docs/databases.md is stale for {engine}: paste the printed SQL"
    url = "postgres://admin:Hidden-pw-5e@db/shop"
    done = _sqlmaster("db", "create-readonly-role", url, "--role", "sqlmaster_reader", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == readonly_role_script("postgresql", "sqlmaster_reader", "shop")
    bad = _sqlmaster("db", "create-readonly-role", "mysql://root@db/shop", "--role", "x; DROP", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: role 'x; DROP' is not a plain SQL name")
    assert "Traceback" not in bad.stderr


def _role_cannot_write_or_read_files(server: Server, role: str) -> None:
    """With the server's own client (not SQLMaster's guarded session): reads work, writes and files do not."""
    if server.engine == "postgresql":
        import psycopg

        with psycopg.connect(server.url(role, NEW_PASSWORD), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM team").fetchone() == (3,)
            for sql in ["DELETE FROM player", "SELECT pg_read_file('/etc/hostname')", "CREATE TABLE x (a int)"]:
                with pytest.raises(psycopg.Error):
                    conn.execute(sql)
        return
    import pymysql

    conn = pymysql.connect(host=server.host, port=server.port, user=role, password=NEW_PASSWORD, database="shop")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM team")
            assert cur.fetchone() == (3,)
            cur.execute("SELECT LOAD_FILE('/etc/hostname')")
            assert cur.fetchone() == (None,)  # no FILE privilege: NULL
            for sql in ["DELETE FROM player", "CREATE TABLE x (a INT)"]:
                with pytest.raises(pymysql.err.OperationalError):
                    cur.execute(sql)
    finally:
        conn.close()


def test_apply_creates_a_login_that_can_only_read(server: Server, tmp_path: Path) -> None:
    role = f"applied_{server.engine[:2]}"
    done = _sqlmaster("db", "create-readonly-role", server.owner_url, "--role", role, "--apply", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ran: GRANT SELECT" in done.stdout and OWNER_PASSWORD not in done.stdout + done.stderr
    _set_password(server, role)
    _role_cannot_write_or_read_files(server, role)
    again = _sqlmaster("db", "create-readonly-role", server.owner_url, "--role", role, "--apply", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("error: the server refused it:")
    assert OWNER_PASSWORD not in again.stdout + again.stderr


def _set_password(server: Server, role: str) -> None:
    if server.engine == "postgresql":
        import psycopg

        with psycopg.connect(server.owner_url, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {role} PASSWORD '{NEW_PASSWORD}'")
        return
    import pymysql

    conn = pymysql.connect(host=server.host, port=server.port, user="owner", password=OWNER_PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute(f"ALTER USER '{role}'@'%' IDENTIFIED BY '{NEW_PASSWORD}' ACCOUNT UNLOCK")
    finally:
        conn.close()


def test_a_url_password_never_appears_in_output_or_files(server: Server, tmp_path: Path) -> None:
    """Real commands with a distinctive password in the URL: every byte printed and every file written is searched."""
    runs = [
        _sqlmaster("db", "schema", server.owner_url, cwd=tmp_path),
        _sqlmaster("db", "schema", server.url("owner", "Wrong-" + OWNER_PASSWORD), cwd=tmp_path),
        _sqlmaster("db", "create-readonly-role", server.owner_url, "--role", "owner", "--apply", cwd=tmp_path),
    ]
    assert runs[0].returncode == 0 and "team (3 rows)" in runs[0].stdout and ":***@" in runs[0].stdout
    assert runs[1].returncode == 2 and runs[1].stderr.startswith("error: cannot connect to")
    assert runs[2].returncode == 2  # the role exists: the server's refusal is reported
    printed = "".join(r.stdout + r.stderr for r in runs)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert OWNER_PASSWORD not in printed
    assert OWNER_PASSWORD.encode() not in written
