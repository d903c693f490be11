"""Follow a run's logs across pod retries and dropped connections.

One follower per stream key (Job, rank). It waits for the newest pod of that key to leave Pending
(saying why it waits), streams `follow=true&timestamps=true`, and when the stream ends:
- the pod still runs -> the connection dropped: reconnect with `sinceTime=<last timestamp>` and skip
  lines already printed (same timestamp, counted), so nothing is duplicated or lost;
- the pod ended and the Job is not finished -> the Job controller will make a new pod: follow it;
- the Job finished -> stop, and report Succeeded or Failed.
Timestamps are stripped before printing; lines are prefixed with the pod name or rank.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPException
from typing import Any

import urllib3

from sqlctl.kube import ApiError, Kube
from sqlctl.manifests import CONTAINER, Obj, labels, name_of, rank_of
from sqlctl.runs import job_finished, pod_phase, run_pods, scheduling_reason

Printer = Callable[[str, str], None]  # (prefix, line)


def parse_timestamp(text: str) -> int | None:
    """RFC3339(Nano) -> integer nanoseconds since the epoch; None if `text` is not a timestamp."""
    if not text or not text[0].isdigit() or "T" not in text:
        return None
    body = text.rstrip("Z")
    offset = ""
    if text.endswith("Z"):
        offset = "+00:00"
    elif len(body) > 6 and body[-6] in "+-":
        body, offset = body[:-6], body[-6:]
    main, _, frac = body.partition(".")
    try:
        seconds = datetime.fromisoformat(main + (offset or "+00:00")).timestamp()
    except ValueError:
        return None
    nanos = int((frac + "000000000")[:9]) if frac.isdigit() or frac == "" else None
    if nanos is None:
        return None
    return int(seconds) * 1_000_000_000 + nanos


def split_timestamp(line: str) -> tuple[int | None, str]:
    head, sep, rest = line.partition(" ")
    ts = parse_timestamp(head) if sep else None
    return (ts, rest) if ts is not None else (None, line)


def rfc3339(nanos: int) -> str:
    return datetime.fromtimestamp(nanos // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iter_lines(response: Any) -> Iterator[str]:
    """Yield decoded lines as they arrive from a urllib3 streaming response."""
    buffer = b""
    read_chunked = getattr(response, "chunked", False)
    chunks = response.read_chunked(decode_content=True) if read_chunked else iter(lambda: response.read1(65536), b"")
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


@dataclass
class StreamCursor:
    """Where a stream got to: the last timestamp printed and how many printed lines carried it."""

    last_ns: int | None = None
    at_last: int = 0

    def record(self, ts: int | None) -> None:
        if ts is None:
            return
        if self.last_ns is None or ts > self.last_ns:
            self.last_ns, self.at_last = ts, 1
        elif ts == self.last_ns:
            self.at_last += 1

    def skipper(self) -> Callable[[int | None], bool]:
        """After reconnecting with sinceTime <= last_ns: keep only lines not printed before."""
        last, remaining = self.last_ns, self.at_last

        def keep(ts: int | None) -> bool:
            nonlocal remaining
            if last is None or ts is None or ts > last:
                return True
            if ts < last:
                return False
            if remaining > 0:  # same timestamp as the last printed line: skip as many as we printed
                remaining -= 1
                return False
            return True

        return keep


@dataclass
class FollowOptions:
    follow: bool = True
    tail: int | None = None
    since_seconds: int | None = None
    previous: bool = False
    prefix: str = "pod"  # pod | rank | none
    poll: float = 1.0
    read_timeout: float = 300.0  # quiet streams are re-opened after this; dedup makes it harmless
    max_reconnects: int = 1000
    from_first_pod: bool = False  # right after submit: every pod is news, start with the oldest


@dataclass
class FollowResult:
    outcomes: dict[str, str] = field(default_factory=dict)  # job -> Succeeded | Failed | Running


class RunFollower:
    """Streams one run's logs; `run()` returns when every followed Job finished (or at once without -f)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        run_id: str,
        printer: Printer,
        options: FollowOptions,
        ranks: list[int] | None = None,  # None = every rank
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.run_id = run_id
        self.printer = printer
        self.options = options
        self.ranks = ranks
        self.notice = notice or (lambda _msg: None)
        self.result = FollowResult()
        self._lock = threading.Lock()

    # -- cluster reads ------------------------------------------------------------------------------
    def _job(self, name: str) -> Obj | None:
        try:
            return self.kube.get("batch/v1", "Job", name, self.namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _pods(self, job: str, rank: int) -> list[Obj]:
        return [
            p
            for p in run_pods(self.kube, self.run_id, self.namespace)
            if labels(p).get("job-name") == job and rank_of(p) == rank
        ]

    def _pod(self, name: str) -> Obj | None:
        try:
            return self.kube.get("v1", "Pod", name, self.namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # -- one stream ------------------------------------------------------------------------------------
    def _prefix(self, pod: Obj) -> str:
        if self.options.prefix == "none":
            return ""
        if self.options.prefix == "rank":
            return f"rank {rank_of(pod)}"
        return name_of(pod)

    def _query(self, since_ns: int | None, follow: bool) -> list[tuple[str, str]]:
        query = [("container", CONTAINER), ("timestamps", "true")]
        if follow:
            query.append(("follow", "true"))
        if self.options.previous:
            query.append(("previous", "true"))
        if since_ns is not None:
            query.append(("sinceTime", rfc3339(since_ns)))
        else:
            if self.options.tail is not None:
                query.append(("tailLines", str(self.options.tail)))
            if self.options.since_seconds is not None:
                query.append(("sinceSeconds", str(self.options.since_seconds)))
        return query

    def stream_pod(self, pod: Obj) -> None:
        """Print one pod's log; with follow, until the pod ends (reconnecting when the stream drops)."""
        name = name_of(pod)
        path = f"/api/v1/namespaces/{self.namespace}/pods/{name}/log"
        cursor = StreamCursor()
        prefix = self._prefix(pod)
        follow = self.options.follow and not self.options.previous
        for attempt in range(self.options.max_reconnects + 1):
            keep = cursor.skipper() if attempt else None
            dropped = False
            try:
                response = self.kube.stream(
                    path, self._query(cursor.last_ns, follow), timeout=(10, self.options.read_timeout)
                )
                try:
                    for raw in _iter_lines(response):
                        ts, text = split_timestamp(raw)
                        if keep is not None and not keep(ts):
                            continue
                        cursor.record(ts)
                        with self._lock:
                            self.printer(prefix, text)
                finally:
                    response.release_conn()
            except ApiError as exc:
                if exc.status == 404:
                    return  # pod deleted
                if exc.status != 400 or not follow:
                    raise
                # 400 "container ... is waiting to start": wait unless the pod already ended
                current = self._pod(name)
                if current is None or pod_phase(current) in ("Succeeded", "Failed"):
                    return
                time.sleep(self.options.poll)
                continue
            except (OSError, HTTPException, urllib3.exceptions.HTTPError):
                dropped = True  # connection dropped or read timeout: reconnect below
            if not follow:
                return
            current = self._pod(name)
            if current is None or (pod_phase(current) in ("Succeeded", "Failed") and not dropped):
                return
            time.sleep(min(self.options.poll, 0.5))
        self.notice(f"giving up on {name} after {self.options.max_reconnects} reconnects")

    # -- one (job, rank) across retries ------------------------------------------------------------------
    def follow_key(self, job: str, rank: int) -> None:
        """Follow one (Job, rank): the current pod first, then each pod the Job controller makes after it."""
        seen: set[str] = set()
        told_pending: set[str] = set()
        target: str | None = None  # the pod we committed to (we wait for it even while it is Pending)
        streamed = 0
        while True:
            current = self._job(job)
            finished = job_finished(current) if current else "Failed"
            pods = self._pods(job, rank)
            if target is None:
                # Not by position: creationTimestamp has one-second resolution, so a fast retry can sort
                # before the pod it replaced. Pods we streamed or chose to skip are remembered by name.
                candidates = [p for p in pods if name_of(p) not in seen]
                if not candidates:
                    if finished or not self.options.follow:
                        self.result.outcomes[job] = finished or "Running"
                        return
                    time.sleep(self.options.poll)
                    continue
                if not seen and not self.options.from_first_pod:
                    # `logs -f` on a running run: start with the current attempt, like kubectl logs,
                    # and skip the attempts before it.
                    seen.update(name_of(p) for p in candidates[:-1])
                    candidates = candidates[-1:]
                # After submit (from_first_pod) every pod is news, oldest first; the first pod may already
                # have failed and been replaced before we looked.
                target = name_of(candidates[0])
            pod = next((p for p in pods if name_of(p) == target), None)
            if pod is None:  # deleted before it ran
                seen.add(target)
                target = None
                continue
            if pod_phase(pod) == "Pending":
                if not self.options.follow:
                    self.notice(f"{target} is Pending: no logs yet")
                    self.result.outcomes[job] = "Running"
                    return
                if target not in told_pending:
                    reason = scheduling_reason(self.kube, pod)
                    self.notice(f"{target} is Pending" + (f" ({reason})" if reason else ""))
                    told_pending.add(target)
                if finished:
                    self.result.outcomes[job] = finished
                    return
                time.sleep(self.options.poll)
                continue
            if self.options.follow and streamed:
                self.notice(f"following retry pod {target}")
            self.stream_pod(pod)
            streamed += 1
            seen.add(target)
            target = None
            if not self.options.follow:
                self.result.outcomes[job] = finished or "Running"
                return

    def run(self, jobs: list[Obj]) -> FollowResult:
        """Follow every (job, rank) in parallel; ranks from `self.ranks` or from the Jobs' parallelism."""
        keys: list[tuple[str, int]] = []
        for job in jobs:
            completions = int((job.get("spec") or {}).get("completions") or 1)
            ranks = self.ranks if self.ranks is not None else list(range(completions))
            keys += [(name_of(job), r) for r in ranks]
        if len(keys) == 1:
            self.follow_key(*keys[0])
            return self.result
        threads = [threading.Thread(target=self.follow_key, args=key, daemon=True) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
        return self.result
