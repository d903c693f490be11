"""The kubelet's log side: per-container log buffers and the HTTPS ``/containerLogs`` endpoint.

The apiserver proxies ``GET /api/v1/namespaces/{ns}/pods/{pod}/log`` to
``https://<node InternalIP>:<daemonEndpoints port>/containerLogs/{ns}/{pod}/{container}`` with the same
query (``follow``, ``tailLines``, ``sinceSeconds``, ``sinceTime``, ``timestamps``, ``limitBytes``,
``previous``). :class:`LogServer` answers those from :class:`ContainerLog` buffers; responses are
close-delimited, and a ``follow`` stream ends when the container's log is closed (it terminated).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Lookup = Callable[[str, str, str, bool], "ContainerLog | str"]
"""(namespace, pod, container, previous) -> the log, or an error message for a 4xx answer."""


def _nano(t: float) -> str:
    """RFC 3339 with nanoseconds, as the kubelet prefixes lines with ``timestamps=true``."""
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((t % 1) * 1e9):09d}Z"


class ContainerLog:
    """The log of one container instance: timestamped lines, with a condition for followers."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, bytes]] = []
        self.closed = False
        self.cond = threading.Condition()

    def write(self, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if isinstance(data, str) and not raw.endswith(b"\n"):
            raw += b"\n"
        now = time.time()
        with self.cond:
            self.lines.extend((now, line) for line in raw.splitlines(keepends=True))
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def text(self) -> str:
        with self.cond:
            return b"".join(line for _, line in self.lines).decode(errors="replace")


class _Handler(BaseHTTPRequestHandler):
    """Kubelet API subset: ``/containerLogs`` and ``/healthz``; everything else 404/501."""

    lookup: Lookup
    stopping: threading.Event
    server_version = "fake-kubelet/0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read logs, not access lines
        log.debug("fake kubelet http: " + format, *args)

    def _reply(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts == ["healthz"]:
            self._reply(200, "ok")
            return
        if parts[0] in ("exec", "attach", "portForward", "run"):
            self._reply(501, f"fake kubelet: {parts[0]} is not implemented (needs SPDY/websocket streams)")
            return
        if parts[0] != "containerLogs" or len(parts) != 4:
            self._reply(404, f"fake kubelet: no handler for {url.path}")
            return
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        # The client (apiserver) going away is the normal end of a follow stream.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self._serve_log(parts[1], parts[2], parts[3], q)

    def _serve_log(self, namespace: str, pod: str, container: str, q: dict[str, str]) -> None:
        flag = lambda k: q.get(k, "false").lower() in ("1", "true")  # noqa: E731
        found = self.lookup(namespace, pod, container, flag("previous"))
        if isinstance(found, str):
            self._reply(404 if "not known" in found else 400, found)
            return
        try:
            tail = int(q["tailLines"]) if "tailLines" in q else None
            limit = int(q["limitBytes"]) if "limitBytes" in q else None
            since = time.time() - int(q["sinceSeconds"]) if "sinceSeconds" in q else None
            if "sinceTime" in q:
                since = datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00")).timestamp()
        except ValueError as e:
            self._reply(400, f"bad log query {q}: {e}")
            return
        follow, stamps = flag("follow"), flag("timestamps")

        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        with found.cond:
            selected = [i for i, (ts, _) in enumerate(found.lines) if since is None or ts >= since]
            if tail is not None:
                selected = selected[-tail:] if tail > 0 else []
            pending = [found.lines[i] for i in selected]
            cursor = len(found.lines)
        while True:
            for ts, line in pending:
                data = (_nano(ts).encode() + b" " + line) if stamps else line
                if limit is not None:
                    data = data[: max(0, limit - sent)]
                self.wfile.write(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    self.wfile.flush()
                    return
            self.wfile.flush()
            if not follow:
                return
            with found.cond:
                while cursor >= len(found.lines) and not found.closed and not self.stopping.is_set():
                    found.cond.wait(0.5)
                pending = found.lines[cursor:]
                cursor = len(found.lines)
                if not pending and (found.closed or self.stopping.is_set()):
                    return


class LogServer:
    """A threaded HTTPS server on 127.0.0.1 (free port) serving :class:`ContainerLog` buffers."""

    def __init__(self, cert_file: Path, key_file: Path, lookup: Lookup) -> None:
        self.stopping = threading.Event()
        handler = type("Handler", (_Handler,), {"lookup": staticmethod(lookup), "stopping": self.stopping})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_file), str(key_file))
        # The handshake happens in the handler thread, so one slow client cannot block accept().
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubelet-logs", daemon=True)

    def start(self) -> LogServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End follow streams (they poll ``stopping``), stop accepting and close the socket."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
