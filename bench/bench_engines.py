"""Queries per second through the engine layer, per engine, for a simple SELECT mix with 2 workers.

    OMP_NUM_THREADS=1 python bench/bench_engines.py                  # all four engines, 5 s each, ~40 s with startup
    python bench/bench_engines.py --engines sqlite,postgresql --seconds 10 --workers 2

The same data on every engine: tests/_servers.py's ``shop`` (team, player) plus ``orders`` (20,000 rows). SQLite and
DuckDB are files; PostgreSQL 15 and MariaDB run as servers of our own on loopback (started here, as in the tests),
read as the SELECT-only role. Each worker is a process with its own read-only session (``open_database``), running
the mix below round-robin for ``--seconds``; the figure is all workers' statements over the wall time. Every
statement pays the engine's whole guard: the statement check, a read-only transaction, the time limit, capped
fetching and value normalisation. The last line is one JSON object: ``{"workers", "seconds", "<engine>_qps", ...}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ORDERS = 20_000
MIX = [
    "SELECT name FROM team WHERE id = 2",
    "SELECT COUNT(*) FROM orders WHERE amount > 500",
    "SELECT team_id, COUNT(*), AVG(age) FROM player GROUP BY team_id ORDER BY team_id",
    "SELECT t.name, SUM(o.amount) FROM orders o JOIN team t ON t.id = o.team_id GROUP BY t.name ORDER BY t.name",
    "SELECT id, amount FROM orders WHERE id BETWEEN 100 AND 150 ORDER BY id",
]
SHOP = [
    "CREATE TABLE team (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL)",
    "CREATE TABLE player (id INTEGER PRIMARY KEY, team_id INTEGER, age INTEGER)",
    "INSERT INTO team VALUES (1, 'Ajax'), (2, 'PSV'), (3, 'Feyenoord')",
    "INSERT INTO player VALUES (1, 1, 20), (2, 2, 31), (3, 1, 25), (4, 3, 19)",
]
ORDERS_DDL = "CREATE TABLE orders (id INTEGER PRIMARY KEY, team_id INTEGER, amount INTEGER)"


def _order_rows() -> list[tuple[int, int, int]]:
    return [(i, i % 3 + 1, (i * 7919) % 1000) for i in range(1, ORDERS + 1)]


def _sqlite(folder: Path) -> str:
    path = folder / "shop.sqlite"
    conn = sqlite3.connect(path)
    for sql in [*SHOP, ORDERS_DDL]:
        conn.execute(sql)
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", _order_rows())
    conn.commit()
    conn.close()
    return str(path)


def _duckdb(folder: Path) -> str:
    import duckdb

    path = folder / "shop.duckdb"
    conn = duckdb.connect(str(path))
    for sql in [*SHOP, ORDERS_DDL]:
        conn.execute(sql)
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", _order_rows())
    conn.close()
    return str(path)


def _server(stack: ExitStack, engine: str) -> str:
    from tests import _servers

    server = stack.enter_context(_servers.postgresql_server() if engine == "postgresql" else _servers.mariadb_server())
    print(f"{engine}: server up in {server.startup_s:.1f}s", flush=True)
    if engine == "postgresql":
        import psycopg

        with psycopg.connect(server.owner_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(ORDERS_DDL)
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)", _order_rows())
            cur.execute("ANALYZE orders")
    else:
        import pymysql

        conn = pymysql.connect(host=server.host, port=server.port, user="owner", password=_servers.OWNER_PASSWORD,
                               database="shop", autocommit=True)  # fmt: skip
        with conn.cursor() as cur:
            cur.execute(ORDERS_DDL)
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)", _order_rows())
        conn.close()
    return server.url()


def _worker(source: str, seconds: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from sqlmaster.engines import open_database

    done = 0
    with open_database(source) as session:
        session.run(MIX[0])  # warm
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            session.run(MIX[done % len(MIX)])
            done += 1
    queue.put(done)


def measure(source: str, workers: int, seconds: float) -> float:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_worker, args=(source, seconds, queue)) for _ in range(workers)]
    start = time.monotonic()
    for proc in procs:
        proc.start()
    total = sum(queue.get(timeout=seconds + 120) for _ in procs)
    for proc in procs:
        proc.join()
    return total / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,duckdb,postgresql,mysql")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    figures: dict[str, float | int] = {"workers": args.workers, "seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for engine in args.engines.split(","):
            if engine == "sqlite":
                source = _sqlite(Path(tmp))
            elif engine == "duckdb":
                source = _duckdb(Path(tmp))
            else:
                source = _server(stack, engine)
            qps = measure(source, args.workers, args.seconds)
            print(f"{engine}: {qps:,.0f} queries/s ({args.workers} workers, {args.seconds:g} s)", flush=True)
            figures[f"{engine}_qps"] = round(qps, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
