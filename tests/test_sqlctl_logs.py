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


class FinishedRunKube:
    """A run whose first pod failed and whose retry already succeeded, both created in the same second,
    with the retry's random name sorting first: the order must come from the phases, not the names."""

    def __init__(self) -> None:
        same_second = "2024-03-15T14:25:01Z"

        def pod(name: str, phase: str) -> dict[str, Any]:
            labels = {"sqlmaster.io/run-id": "r", "job-name": "r-train-tiny"}
            return {
                "metadata": {
                    "name": name,
                    "labels": labels,
                    "namespace": "ns",
                    "creationTimestamp": same_second,
                },
                "status": {"phase": phase},
            }

        self.pods = [pod("r-train-tiny-aaaaa", "Succeeded"), pod("r-train-tiny-zzzzz", "Failed")]
        self.logs = {
            "r-train-tiny-zzzzz": ["2024-03-15T14:25:01Z attempt 1"],
            "r-train-tiny-aaaaa": ["2024-03-15T14:25:02Z attempt 2"],
        }

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        return list(self.pods)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if kind == "Job":
            return {
                "metadata": {"name": name},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]},
            }
        return next(p for p in self.pods if p["metadata"]["name"] == name)

    def stream(self, path: str, query: list[tuple[str, str]], timeout: Any = None) -> DroppingResponse:
        return DroppingResponse(self.logs[path.split("/")[-2]], drop=False)


def test_after_submit_every_attempt_is_shown_in_order() -> None:
    printed: list[tuple[str, str]] = []
    options = FollowOptions(follow=True, poll=0.01, from_first_pod=True)
    follower = RunFollower(
        FinishedRunKube(),
        "ns",
        "r",
        lambda p, line: printed.append((p, line)),  # type: ignore[arg-type]
        options,
    )
    follower.follow_key("r-train-tiny", 0)
    assert printed == [("r-train-tiny-zzzzz", "attempt 1"), ("r-train-tiny-aaaaa", "attempt 2")]
    assert follower.result.outcomes == {"r-train-tiny": "Succeeded"}


def test_logs_follow_on_an_existing_run_starts_with_the_current_attempt() -> None:
    printed: list[str] = []
    follower = RunFollower(
        FinishedRunKube(),
        "ns",
        "r",
        lambda _p, line: printed.append(line),  # type: ignore[arg-type]
        FollowOptions(follow=True, poll=0.01),
    )
    follower.follow_key("r-train-tiny", 0)
    assert printed == ["attempt 2"]
