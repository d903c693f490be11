"""Worker processes with a watchdog: apply a function to many payloads, surviving crashes and hangs.

    with IsolatedPool(fn, workers=2, task_timeout_s=30, failure=make_failure_record) as pool:
        results = pool.map(payloads)              # one result per payload, in order

Why processes with a watchdog (and not a thread pool or plain ``try/except``): a crash inside SQLite's C code, an
allocation that takes the process down, or a single function call that runs for minutes (SQLite's progress
handler cannot fire inside it) can only be stopped by killing the process. Each worker caps its SQLite heap,
address space and per-statement CPU time (:mod:`.sandbox`); the parent watches its pipe, its liveness and a
per-payload wall-clock limit, and when a worker dies or overruns it records that payload as a failure naming the
reason and starts a fresh worker.

**How workers start.** ``fork`` when this process has a single thread (Linux): a worker is ready in milliseconds
with every module the parent imported, instead of a new interpreter importing sqlglot (~0.2 s per worker, a
sixth of scoring Spider dev). Forking a process that has other threads can copy a lock one of them holds into
the child, where nothing will ever release it, so any other thread (a tokenizer's or torch's thread pool, a
progress bar's refresher) means ``spawn``; the choice is made for each worker as it starts. A forked worker
first runs the ``fresh_state`` callback, which drops (without touching) whatever per-process state of the
parent it must not share: SQLite connections must never be used on both sides of a fork.

**A worker that cannot start** (it exits before taking its first payload) charges no payload: its chunks go
back to the queue and a fresh worker takes its place; when ``START_FAILURES`` in a row fail so, :meth:`map` raises
:class:`WorkerStartError` naming the exit code and the usual cause, instead of recording every payload as a crash
one process start at a time. A spawned worker re-imports the parent's main script; one read from standard input
(``python - <<EOF``) has no file to re-import, so its worker imports no main script (what it runs lives in
importable modules anyway).

**Chunks.** Payloads go out ``chunk`` at a time and each worker answers a whole chunk in one message, keeping
``AHEAD`` chunks queued so that it never waits for the parent; the parent sleeps between collections rather
than waking per answer (on a busy core that would switch processes, and refill the CPU caches, per payload).
Payloads for which ``group`` returns the same value go out in one chunk, so that one worker's caches serve them
all; chunks shrink towards the end of the queue so that the workers finish together.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from sqlmaster.errors import TransientError
from sqlmaster.evaluate.sandbox import enable_cpu_guard, limit_address_space, set_process_heap_limit
from sqlmaster.lifetime import die_with_parent

HEAP_LIMIT_BYTES = 1 << 30  # SQLite heap per worker process
ADDRESS_SPACE_BYTES = 6 << 30  # virtual memory a worker may map beyond what it starts with (Python objects too)
CHUNK = 16  # payloads per message to a worker, and answers per message back
AHEAD = 4  # chunks a worker holds: it never waits for the parent between chunks
COLLECT_S = 0.005  # the parent sleeps this long between collections: one wake-up per many answers
_IDLE = -1  # a worker's in-flight marker between chunks
_NOT_STARTED = -2  # ... and before its first payload
START_FAILURES = 3  # workers in a row that exit before their first payload: the pool gives up (WorkerStartError)


class WorkerStartError(TransientError):
    """The pool's worker processes exit as they start, before taking any payload (the command line prints it as
    one line and exits 1; a Job retries it, as the cause may be a node short of memory)."""


Result = TypeVar("Result")  # what the pool's function returns for one payload (the scorer's: a Score)


def threads_in_this_process() -> int | None:
    """Operating-system threads of this process (native ones too), or None where /proc cannot tell."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def start_method() -> str:
    """``fork`` if that is safe here (Linux, a single thread), else ``spawn``; see the module docstring."""
    return "fork" if sys.platform == "linux" and threads_in_this_process() == 1 else "spawn"


def workers_for(workers: int, payloads: int, chunk: int = CHUNK) -> int:
    """No more workers than there are chunks of payloads (a worker costs a process start)."""
    return max(1, min(workers, -(-payloads // chunk)))


def _mapped_bytes() -> int:
    """This process's virtual memory size (a forked worker starts with its parent's)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker_main(
    conn: Connection,
    fn: Callable[[Any], Result],
    failure: Callable[[str], Result],
    fresh_state: Callable[[], None] | None,
    in_flight: Any,
) -> None:
    """Apply ``fn`` to chunks of (index, payload) and answer each chunk with one message of (index, result) pairs.

    Before each payload its index goes into ``in_flight`` (shared memory, no system call): if the process dies
    or hangs, the parent knows which payload did it without a message per payload.
    """
    # Ctrl-C reaches the whole process group: the parent stops the workers; a worker that raised
    # KeyboardInterrupt itself would only print a traceback. SIGTERM ends a worker (no handler of the parent's).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(signal.SIGKILL)  # a forked worker holds its own pipe's other end: no EOF if the parent dies
    if fresh_state is not None:
        fresh_state()
    set_process_heap_limit(HEAP_LIMIT_BYTES)
    limit_address_space(_mapped_bytes() + ADDRESS_SPACE_BYTES)
    enable_cpu_guard()
    while True:
        try:
            item = conn.recv()
        except EOFError:
            item = None
        if item is None:
            # Straight out: an interpreter's orderly shutdown (freeing every object and cached database) took
            # ~80 ms per spawned worker, and the parent waits for it. Nothing is buffered: workers print nothing.
            os._exit(0)
        answers = []
        for index, payload in item:
            in_flight.value = index
            try:
                out = fn(payload)
            except Exception as exc:  # a bug in handling one payload must not stop the run
                out = failure(f"{type(exc).__name__}: {exc}")
            answers.append((index, out))
        in_flight.value = _IDLE
        conn.send(answers)


def crash_reason(exitcode: int | None) -> str:
    if exitcode == -signal.SIGXCPU:
        return "CPU-time limit: a statement ran past its CPU budget (e.g. one long function call)"
    if exitcode == -signal.SIGKILL:
        return "worker process killed (out of memory?)"
    return f"worker process crashed (exit code {exitcode})"


_MAIN_LOCK = threading.Lock()


@contextmanager
def _main_script_importable(method: str) -> Iterator[None]:
    """While a worker is spawned: a main script that is not a file (``python -`` reads it from standard input,
    and its ``__file__`` is ``<stdin>``) is hidden from multiprocessing, which would otherwise make the worker
    re-import it from that path and exit with FileNotFoundError before its first payload."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if method != "spawn" or main is None or path is None or os.path.isfile(path):
        yield
        return
    with _MAIN_LOCK:
        del main.__file__
        try:
            yield
        finally:
            main.__file__ = path


class _Worker:
    def __init__(self, method: str, target_args: tuple[Any, ...]) -> None:
        ctx: Any = mp.get_context(method)  # typeshed: a plain BaseContext has no Process
        self.method = method
        self.conn, child = ctx.Pipe()
        self.in_flight = ctx.RawValue("q", _NOT_STARTED)
        self.proc = ctx.Process(target=_worker_main, args=(child, *target_args, self.in_flight), daemon=True)
        with _main_script_importable(method):
            self.proc.start()
        child.close()
        self.pending: deque[tuple[int, Any]] = deque()  # payloads sent and not answered, in order
        self.seen = _NOT_STARTED  # the in-flight index the parent saw last
        self.started = 0.0  # when that payload started (as far as the parent can tell)

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def give(self, chunk: list[tuple[int, Any]]) -> None:
        if not self.pending:
            self.started = time.monotonic()
        self.pending.extend(chunk)
        # A worker that has died (BrokenPipeError) is replaced at the next collection, which re-queues the chunk.
        with suppress(OSError):
            self.conn.send(chunk)

    def watch(self) -> None:
        """Restart the watchdog's clock when the worker has moved on to another payload."""
        current = self.in_flight.value
        if current != self.seen:
            self.seen = current
            self.started = time.monotonic()

    def never_started(self) -> bool:
        """It died before taking up its first payload: a start-up failure, not a payload's fault."""
        return self.in_flight.value == _NOT_STARTED

    def culprit(self) -> int:
        """Position in ``pending`` of the payload that was running when the worker died or hung."""
        current = self.in_flight.value
        for position, (index, _) in enumerate(self.pending):
            if index == current:
                return position
        return 0  # between chunks or not started: the first unanswered payload

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                self.proc.kill()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class IsolatedPool(Generic[Result]):
    """``workers`` sandboxed processes applying ``fn`` (picklable: a module-level function, a
    ``functools.partial`` of one, or an instance of a module-level class); see the module docstring.

    ``failure(reason)`` builds the result recorded for a payload whose worker crashed or overran, or for which
    ``fn`` raised. ``fresh_state()`` runs first in every worker. ``method`` forces ``fork`` or ``spawn`` (tests);
    by default :func:`start_method` decides as each worker starts. Start the pool before any thread of your own
    (a progress bar) so that its workers can be forked.
    """

    def __init__(
        self,
        fn: Callable[[Any], Result],
        workers: int,
        task_timeout_s: float,
        failure: Callable[[str], Result],
        fresh_state: Callable[[], None] | None = None,
        method: str | None = None,
    ) -> None:
        self.task_timeout_s = task_timeout_s
        self.failure = failure
        self.method = method
        self._target_args = (fn, failure, fresh_state)
        self._start_failures = 0  # workers in a row that exited before their first payload
        self.workers: list[_Worker] = []
        try:
            for _ in range(max(1, workers)):
                self.workers.append(self._start())
        except BaseException:
            self.close()
            raise

    def _start(self) -> _Worker:
        return _Worker(self.method or start_method(), self._target_args)

    def __enter__(self) -> IsolatedPool[Result]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            w.stop(kill=w.busy)
        self.workers = []

    def map(
        self,
        payloads: Iterable[Any],
        on_result: Callable[[int, Result], None] | None = None,
        chunk: int = CHUNK,
        group: Callable[[Any], Any] | None = None,
    ) -> list[Result]:
        """``fn`` of every payload, in order; ``on_result(index, result)`` as each arrives.

        A worker that crashes or runs past ``task_timeout_s`` on a payload is killed and replaced; that
        payload's result is ``failure(reason)``, and the other unanswered payloads it held (those of its chunk it
        had finished, and those queued behind) are handled again elsewhere.
        """
        items = list(enumerate(payloads))
        results: list[Result | None] = [None] * len(items)
        queue = deque(items)
        pool = self.workers

        def done(index: int, out: Result) -> None:
            results[index] = out
            if on_result is not None:
                on_result(index, out)

        def next_chunk() -> list[tuple[int, Any]]:
            size = max(1, min(chunk, len(queue) // (2 * len(pool))))
            out = [queue.popleft() for _ in range(min(size, len(queue)))]
            if group is not None:
                last = group(out[-1][1])
                while queue and len(out) < 4 * chunk and group(queue[0][1]) == last:
                    out.append(queue.popleft())
            return out

        while queue or any(w.busy for w in pool):
            hungry = True
            while queue and hungry:  # one chunk per worker per round: small queues are shared too
                hungry = False
                for w in pool:
                    if queue and len(w.pending) < AHEAD * chunk:
                        w.give(next_chunk())
                        hungry = True
            busy = [w for w in pool if w.busy]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=0.5)
            for slot, w in enumerate(pool):
                failure = self._collect(w, ready, done)
                if failure is not None:
                    self._replace(slot, failure, queue, done)
            if any(w.busy for w in pool):
                time.sleep(COLLECT_S)
        return [r if r is not None else self.failure("no result") for r in results]

    def _collect(self, w: _Worker, ready: list[Any], done: Callable[[int, Result], None]) -> str | None:
        """Take every answer ``w`` has sent; returns why it must be replaced (crashed, overran), if it must."""
        failure: str | None = None
        try:
            while w.busy and (w.conn in ready or w.conn.poll()):
                for index, out in w.conn.recv():
                    w.pending.popleft()
                    done(index, out)
                w.started = time.monotonic()
                self._start_failures = 0
                ready = []  # poll() decides for the next message
            w.watch()
        except (EOFError, OSError):
            w.proc.join(timeout=2)  # the pipe closes a moment before the exit status is known
            failure = crash_reason(w.proc.exitcode)
        if not w.busy:
            return None
        if failure is None and not w.proc.is_alive():
            w.proc.join(timeout=1)
            failure = crash_reason(w.proc.exitcode)
        elif failure is None and time.monotonic() - w.started > self.task_timeout_s:
            failure = f"watchdog: example took longer than {self.task_timeout_s:g}s"
        return failure

    def _replace(
        self, slot: int, reason: str, queue: deque[tuple[int, Any]], done: Callable[[int, Result], None]
    ) -> None:
        """Kill the worker in ``slot``: the payload it was on fails with ``reason``, the others it held go back
        to the front of the queue (in order), and a fresh worker takes the slot. A worker that died before its
        first payload fails none of them; ``START_FAILURES`` such in a row raise :class:`WorkerStartError`."""
        w = self.workers[slot]
        if w.never_started():
            self._start_failures += 1
            if self._start_failures >= START_FAILURES:
                raise WorkerStartError(
                    f"{self._start_failures} worker processes in a row exited as they started ({reason}, start "
                    f"method {w.method}), before taking any example; their output above says why. A common "
                    "cause under spawn (the parent has other threads): the main script has no "
                    "`if __name__ == '__main__':` guard, so each worker re-runs it. Put the script's work under "
                    "that guard, or run it where the parent has one thread (the pool then forks)"
                )
        else:
            w.pending.rotate(-w.culprit())
            index, _ = w.pending.popleft()
            done(index, self.failure(reason))
        queue.extendleft(reversed(sorted(w.pending, key=lambda task: task[0])))
        w.pending = deque()
        w.stop(kill=True)
        self.workers[slot] = self._start()


def run_isolated(
    fn: Callable[[Any], Result],
    payloads: Iterable[Any],
    workers: int,
    task_timeout_s: float,
    failure: Callable[[str], Result],
    on_result: Callable[[int, Result], None] | None = None,
    chunk: int = CHUNK,
    group: Callable[[Any], Any] | None = None,
    method: str | None = None,
) -> list[Result]:
    """:meth:`IsolatedPool.map` in a pool of at most ``workers`` processes (no more than there are chunks)."""
    items = list(payloads)
    with IsolatedPool(fn, workers_for(workers, len(items), chunk), task_timeout_s, failure, method=method) as pool:
        return pool.map(items, on_result, chunk, group)
