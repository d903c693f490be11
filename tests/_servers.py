"""Real database servers for the engine tests: a PostgreSQL and a MariaDB of our own, started once per test session
in temporary data directories on free loopback ports, and stopped (data removed) at the end.

Never the machine's system services. The servers run as the unprivileged user ``sqlmaster-test`` (created here if
missing: PostgreSQL refuses to run as root). Each holds a database ``shop`` with two tables, owned by a login with
every privilege (``owner``: a PostgreSQL superuser, a MariaDB ``ALL PRIVILEGES`` user) and readable by a
SELECT-only login (``reader``) created the way ``sqlmaster db create-readonly-role`` prints it. Both logins have
passwords (``scram-sha-256`` / ``mysql_native_password`` over TCP), so a test can prove a password never leaks.

A missing server binary fails the fixture (never a skip) with the apt-get command that installs it. The fixtures
(``pg_server``, ``mysql_server``; loaded for every test by conftest.py, started only when a test asks) wrap the
context managers :func:`postgresql_server` and :func:`mariadb_server`, which bench/bench_engines.py uses too.
Startup on a shared 2-core machine: PostgreSQL 2-5 s (initdb, pg_ctl, seeding), MariaDB 5-9 s.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_AS = "sqlmaster-test"
# Debian/Ubuntu install each PostgreSQL major version under its own folder (15 on Debian 12, 14 on Ubuntu 22.04).
_PG_VERSIONS = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
PG_BIN = max(_PG_VERSIONS, key=lambda p: int(p.parent.name), default=Path("/usr/lib/postgresql/15/bin"))
MARIADBD = Path("/usr/sbin/mariadbd")
MARIADB_INSTALL_DB = Path("/usr/bin/mariadb-install-db")
OWNER_PASSWORD = "Owner-pw-7c1e"  # test servers only
READER_PASSWORD = "Reader-pw-4d9b"
SEED_ROWS = {"team": 3, "player": 4}  # tables and row counts every test may rely on (and checks unchanged)


@dataclass(frozen=True)
class Server:
    engine: str  # "postgresql" or "mysql"
    host: str
    port: int
    database: str
    startup_s: float  # from nothing to accepting logins (init + start + seeding)
    files: Path  # a folder the server's user may read and write (MariaDB's secure_file_priv)

    def url(self, user: str = "reader", password: str | None = READER_PASSWORD) -> str:
        secret = f":{password}" if password is not None else ""
        return f"{self.engine}://{user}{secret}@{self.host}:{self.port}/{self.database}"

    @property
    def owner_url(self) -> str:
        return self.url("owner", OWNER_PASSWORD)


def _require(binary: Path, package: str) -> None:
    if not binary.exists():
        pytest.fail(
            f"{binary} is missing: install the server with "
            f"`sudo apt-get update && sudo apt-get install -y {package}` (.ci/run does this)",
            pytrace=False,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        # check=False: another test process may have created it meanwhile; getpwnam below is the check
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RUN_AS], check=False)
        return pwd.getpwnam(RUN_AS)


def _workdir(prefix: str) -> Path:
    """A directory under /tmp the server's user owns (pytest's tmp_path is root-only: 0700 pytest-of-root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        user = _ensure_user()
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o755)
    return path


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}): {done.stderr[-2000:] or done.stdout[-2000:]}", pytrace=False)


def _pg_seed(port: int) -> None:
    import psycopg

    url = f"postgresql://owner:{OWNER_PASSWORD}@127.0.0.1:{port}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
        conn.execute(f"CREATE ROLE reader LOGIN PASSWORD '{READER_PASSWORD}'")
    with psycopg.connect(url.replace("/postgres", "/shop"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE team (id INTEGER PRIMARY KEY, name TEXT NOT NULL, founded DATE, budget NUMERIC(10, 2));"
            "CREATE TABLE player (id INTEGER PRIMARY KEY, team_id INTEGER REFERENCES team(id), age INT, "
            "active BOOLEAN);"
            "CREATE SEQUENCE ticket;"
            "INSERT INTO team VALUES (1, 'Ajax', '1900-03-18', 12.50), (2, 'PSV', '1913-08-31', 9.00), "
            "(3, 'Feyenoord', '1908-07-19', 7.25);"
            "INSERT INTO player VALUES (1, 1, 20, true), (2, 2, 31, false), (3, 1, 25, true), (4, 3, 19, NULL);"
        )
        from sqlmaster.engines.roles import readonly_role_sql

        for statement in readonly_role_sql("postgresql", "reader", "shop", create=False):
            conn.execute(statement)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    with postgresql_server() as server:
        yield server


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Server]:
    with mariadb_server() as server:
        yield server


@contextmanager
def postgresql_server() -> Iterator[Server]:
    """A seeded PostgreSQL of our own for the duration of the ``with`` (tests, bench/bench_engines.py)."""
    _require(PG_BIN / "postgres", "postgresql")
    start = time.monotonic()
    root = _workdir("sqlmaster-pg-")
    data, port = root / "data", _free_port()
    pwfile = root / "pw"
    pwfile.write_text(OWNER_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, RUN_AS)
    _run(
        _as_server_user(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "owner", f"--pwfile={pwfile}", "-E", "UTF8",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"]
        ),
        "initdb",
    )  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
    _run(
        _as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                         "-o", options, "start"]),
        "pg_ctl start",
    )  # fmt: skip
    try:
        _pg_seed(port)
        yield Server("postgresql", "127.0.0.1", port, "shop", time.monotonic() - start, root)
    finally:
        subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _mysql_seed(socket_path: Path) -> None:
    import pymysql

    conn = pymysql.connect(unix_socket=str(socket_path), user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            for statement in [
                "CREATE DATABASE shop",
                f"CREATE USER 'owner'@'%' IDENTIFIED BY '{OWNER_PASSWORD}'",
                "GRANT ALL PRIVILEGES ON *.* TO 'owner'@'%' WITH GRANT OPTION",
                f"CREATE USER 'reader'@'%' IDENTIFIED BY '{READER_PASSWORD}'",
                "CREATE TABLE shop.team (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, founded DATE, "
                "budget DECIMAL(10, 2))",
                "CREATE TABLE shop.player (id INT PRIMARY KEY, team_id INT, age INT, active BOOLEAN, "
                "FOREIGN KEY (team_id) REFERENCES shop.team(id))",
                "INSERT INTO shop.team VALUES (1, 'Ajax', '1900-03-18', 12.50), (2, 'PSV', '1913-08-31', 9.00), "
                "(3, 'Feyenoord', '1908-07-19', 7.25)",
                "INSERT INTO shop.player VALUES (1, 1, 20, true), (2, 2, 31, false), (3, 1, 25, true), "
                "(4, 3, 19, NULL)",
                "ANALYZE TABLE shop.team, shop.player",
            ]:
                cur.execute(statement)
            from sqlmaster.engines.roles import readonly_role_sql

            for statement in readonly_role_sql("mysql", "reader", "shop", create=False):
                cur.execute(statement)
    finally:
        conn.close()


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mariadbd exited ({proc.returncode}): {_tail(log)}", pytrace=False)
        if path.exists():
            return
        time.sleep(0.05)
    pytest.fail(f"mariadbd did not start in {seconds:g}s: {_tail(log)}", pytrace=False)


def _tail(log: Path) -> str:
    texts = [p.read_text(errors="replace")[-2000:] for p in (log, log.with_name("mariadbd.out")) if p.exists()]
    return "\n".join(texts) or "(no log)"


@contextmanager
def mariadb_server() -> Iterator[Server]:
    """A seeded MariaDB of our own for the duration of the ``with``."""
    _require(MARIADBD, "mariadb-server")
    _require(MARIADB_INSTALL_DB, "mariadb-server")
    start = time.monotonic()
    root = _workdir("sqlmaster-my-")
    data, port, sock, log = root / "data", _free_port(), root / "mysqld.sock", root / "error.log"
    user = ["--user=" + (RUN_AS if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name)]
    files = root / "files"  # secure_file_priv: the only place the server may read or write files
    files.mkdir()
    if os.geteuid() == 0:
        shutil.chown(files, RUN_AS)
    _run(
        [str(MARIADB_INSTALL_DB), "--no-defaults", *user, f"--datadir={data}",
         "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"],
        "mariadb-install-db",
    )  # fmt: skip
    out = (root / "mariadbd.out").open("wb")
    proc = subprocess.Popen(
        [str(MARIADBD), "--no-defaults", *user, f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", "--skip-networking=0", "--skip-name-resolve", f"--log-error={log}",
         f"--pid-file={root / 'mysqld.pid'}", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M",
         "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0", f"--secure-file-priv={files}"],
        stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_socket(sock, proc, log)
        _mysql_seed(sock)
        yield Server("mysql", "127.0.0.1", port, "shop", time.monotonic() - start, files)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        shutil.rmtree(root, ignore_errors=True)
