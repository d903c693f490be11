"""The log follower's reconnect path, driven by a scripted API: the first stream drops mid-way
(urllib3 ProtocolError), the follower reconnects with sinceTime and prints each line exactly once."""

from __future__ import annotations

from typing import Any

import urllib3
from sqlctl.logstream import FollowOptions, RunFollower, parse_timestamp


class DroppingResponse:
    """A urllib3-like streaming response that yields `lines` and then fails or ends."""

    chunked = False

    def __init__(self, lines: list[str], drop: bool) -> None:
        self.chunks = [(line + "\n").encode() for line in lines]
        self.drop = drop

    def read1(self, _amt: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.drop:
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        return b""

    def release_conn(self) -> None:
        pass


class ScriptedKube:
    """Answers the two calls stream_pod makes: the log stream and the pod's phase."""

    def __init__(self, streams: list[tuple[list[str], bool]], phases: list[str]) -> None:
        self.streams = streams
        self.phases = phases
        self.queries: list[list[tuple[str, str]]] = []

    def stream(self, path: str, query: list[tuple[str, str]], timeout: Any = None) -> DroppingResponse:
        self.queries.append(query)
        lines, drop = self.streams.pop(0)
        return DroppingResponse(lines, drop)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"phase": self.phases.pop(0)}}


def test_dropped_stream_resumes_with_since_time_and_no_duplicates() -> None:
    ts = [
        "2024-03-15T14:25:01.100000000Z",
        "2024-03-15T14:25:01.200000000Z",
        "2024-03-15T14:25:02.000000000Z",
        "2024-03-15T14:25:03.000000000Z",
    ]
    first = [f"{ts[0]} step 1", f"{ts[1]} step 2"]  # then the connection breaks
    # the server resends from 14:25:01 (second precision): step 1 and 2 again, then new lines
    second = [f"{ts[0]} step 1", f"{ts[1]} step 2", f"{ts[2]} step 3", f"{ts[3]} step 4"]
    kube = ScriptedKube([(first, True), (second, False)], phases=["Running", "Succeeded"])
    printed: list[tuple[str, str]] = []
    follower = RunFollower(
        kube,
        "ns",
        "run-1",
        lambda p, line: printed.append((p, line)),  # type: ignore[arg-type]
        FollowOptions(follow=True, poll=0.01),
    )
    follower.stream_pod({"metadata": {"name": "run-1-abcde"}})
    assert printed == [("run-1-abcde", f"step {i}") for i in range(1, 5)]
    assert ("sinceTime", "2024-03-15T14:25:01Z") in kube.queries[1]
    assert all(("timestamps", "true") in q and ("follow", "true") in q for q in kube.queries)
    assert parse_timestamp(ts[1]) is not None


def test_clean_end_while_running_reconnects_until_the_pod_ends() -> None:
    kube = ScriptedKube(
        [(["2024-03-15T14:25:01Z a"], False), (["2024-03-15T14:25:01Z a", "2024-03-15T14:25:05Z b"], False)],
        phases=["Running", "Succeeded"],
    )
    printed: list[str] = []
    follower = RunFollower(
        kube,
        "ns",
        "r",
        lambda _p, line: printed.append(line),  # type: ignore[arg-type]
        FollowOptions(follow=True, poll=0.01, prefix="none"),
    )
    follower.stream_pod({"metadata": {"name": "r-1"}})
    assert printed == ["a", "b"]
