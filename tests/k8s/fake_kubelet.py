"""A fake kubelet: GPU Nodes for the real scheduler, scripted pods, and the kubelet log endpoint.

No container ever runs. :class:`FakeKubelet` talks to the apiserver as the admin user and

* registers ``nodes`` Node objects that look like 8x A100 machines: label
  ``nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB``, taint ``nvidia.com/gpu=present:NoSchedule``,
  ``nvidia.com/gpu: 8`` in capacity/allocatable (plus cpu, memory, pods), address InternalIP 127.0.0.1,
  ``status.daemonEndpoints.kubeletEndpoint.Port`` = this kubelet's HTTPS port, condition Ready=True;
* renews one Lease per node in ``kube-node-lease`` (so the node lifecycle controller keeps them Ready);
* watches pods bound to its nodes and plays a :class:`Script` for each: Pending -> Running -> Succeeded
  (exit code 0) or Failed (any other exit code), writing the container log as it goes. With
  ``restartPolicy: OnFailure``/``Always`` a terminated container is restarted in the same pod
  (``restartCount`` + 1, the old log becomes the ``previous=true`` log) running ``script.then`` or the same
  script again — as a real kubelet would. Job retries with ``restartPolicy: Never`` are new pods (the Job
  controller creates them), which is the main case.
* finishes pod deletion (a pod with ``deletionTimestamp`` is stopped and deleted with grace period 0), so
  Job/namespace deletion works;
* serves ``GET /containerLogs/{namespace}/{pod}/{container}`` over HTTPS (cert from the control plane's
  CA) with ``follow``, ``tailLines``, ``sinceSeconds``, ``sinceTime``, ``timestamps``, ``limitBytes`` and
  ``previous``. The apiserver proxies ``read_namespaced_pod_log`` / ``kubectl logs`` here.
  Exec/attach/port-forward answer 501: they would need SPDY/websocket streams.

Which script a pod gets (first match wins)
------------------------------------------
1. The pod annotation ``fake-kubelet.sqlmaster.io/script`` holding JSON, e.g.
   ``{"lines": ["step 1", "step 2"], "interval": 0.1, "exit_code": 1, "hold": false}``
   (keys are :class:`Script` field names except the callables).
2. Rules added with :meth:`FakeKubelet.add_rule` (newest first), matching by namespace, labels,
   name prefix and/or a predicate on the pod.
3. ``FakeKubelet.default_script`` (exit 0 at once, empty log).

The content hook (``Script.output``) and artifacts
---------------------------------------------------
``Script.output`` is a callable ``output(pod, container_name) -> Iterable[str | bytes]`` that produces a
container's log from the pod object (``pod`` is the pod's JSON as the API returns it, a ``dict`` with
camelCase keys: ``pod["metadata"]["labels"]``, ``pod["spec"]["containers"][0]["command"]``...). ``str``
items are log lines (a newline is added when missing); ``bytes`` items are written as they are. It is
called when the container starts and may be a generator (each item is written, then ``interval`` waits).

This is how artifact downloads are tested without exec: sqlctl starts a short-lived reader pod that
mounts the run's PVC, is labelled ``sqlmaster.io/role=artifact-reader`` (:data:`ARTIFACT_READER_LABELS`)
and prints ``tar -czf - -C <dir> . | base64`` to its log; sqlctl reads that log and unpacks it. In a test,
:meth:`FakeKubelet.serve_artifacts` registers a rule for such pods whose ``output`` is
:func:`tar_base64_lines` of a local directory chosen by ``resolve(pod)`` (e.g. ``tmp_path / "pvc" /
"runs" / run_id`` after parsing the pod's command), so the bytes sqlctl decodes are exactly a gzip'd tar
of that directory, with ``./``-relative names as GNU tar ``-C dir .`` writes them. ``resolve`` returning
``None`` makes the pod print a tar-like error and exit 2.

Holding and releasing
---------------------
``Script(hold=True)`` keeps the container Running after its last line until :meth:`FakeKubelet.release`
(optionally with another exit code) or pod deletion; :meth:`FakeKubelet.append_log` adds lines meanwhile.
``Script(waiting=("ImagePullBackOff", "Back-off pulling image"))`` keeps the pod Pending with that
container waiting reason until released.

Every container of a pod follows the same script in lock-step (the charts use one container).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import ssl
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client import CoordinationV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
A100 = "NVIDIA-A100-SXM4-80GB"
SCRIPT_ANNOTATION = "fake-kubelet.sqlmaster.io/script"
ARTIFACT_READER_LABELS: Mapping[str, str] = {"sqlmaster.io/role": "artifact-reader"}
NODE_LEASE_NAMESPACE = "kube-node-lease"

Pod = dict[str, Any]
OutputFn = Callable[[Pod, str], Iterable[str | bytes]]


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(t: datetime) -> str:
    """metav1.MicroTime wire format (Leases need exactly six fractional digits)."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _nano(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int((t % 1) * 1e9):09d}Z"


@dataclass(frozen=True)
class Script:
    """What one container instance does. Defaults: empty log, exit 0 at once.

    lines/output: the log (``output`` wins when set; see the module docstring for its signature).
    interval: seconds to wait after each log item (paces ``follow=true`` streams).
    exit_code: 0 -> Succeeded, anything else -> Failed (or a restart, per restartPolicy).
    hold: stay Running after the log until :meth:`FakeKubelet.release` or deletion.
    start_delay: seconds the pod stays Pending (container waiting, ``ContainerCreating``) before running.
    waiting: (reason, message): stay Pending with this waiting reason until released (then run).
    termination_message: goes to ``state.terminated.message`` (what ``terminationMessagePath`` holds).
    then: the script of the next container instance when restartPolicy restarts it (default: this one).
    """

    lines: tuple[str, ...] = ()
    interval: float = 0.0
    exit_code: int = 0
    hold: bool = False
    start_delay: float = 0.0
    waiting: tuple[str, str] | None = None
    termination_message: str | None = None
    output: OutputFn | None = field(default=None, compare=False)
    then: Script | None = None

    @classmethod
    def from_json(cls, text: str) -> Script:
        """Parse the ``fake-kubelet.sqlmaster.io/script`` annotation (unknown keys are an error)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{SCRIPT_ANNOTATION} must hold a JSON object, got {text!r}")
        allowed = {f.name for f in fields(cls)} - {"output"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(
                f"{SCRIPT_ANNOTATION}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "lines" in data:
            data["lines"] = tuple(str(x) for x in data["lines"])
        if data.get("waiting") is not None:
            data["waiting"] = tuple(data["waiting"])
        if data.get("then") is not None:
            data["then"] = cls.from_json(json.dumps(data["then"]))
        return cls(**data)

    def items(self, pod: Pod, container: str) -> Iterable[str | bytes]:
        return self.output(pod, container) if self.output is not None else self.lines


@dataclass
class Rule:
    """Selects pods for a script: every given criterion must match."""

    script: Script
    namespace: str | None = None
    labels: Mapping[str, str] | None = None
    name_prefix: str | None = None
    match: Callable[[Pod], bool] | None = None

    def matches(self, pod: Pod) -> bool:
        meta = pod.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.labels:
            have = meta.get("labels") or {}
            if any(have.get(k) != v for k, v in self.labels.items()):
                return False
        if self.name_prefix is not None and not str(meta.get("name", "")).startswith(self.name_prefix):
            return False
        return self.match is None or bool(self.match(pod))


def tar_base64_lines(directory: Path, *, gzip: bool = True, width: int = 76) -> list[str]:
    """``tar -c[z]f - -C directory . | base64`` as log lines (coreutils wraps at 76 columns)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(str(directory), arcname=".")
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    return [encoded[i : i + width] for i in range(0, len(encoded), width)] or [""]


def artifact_reader_script(resolve: Callable[[Pod], Path | None], *, gzip: bool = True) -> Script:
    """A script whose log is the base64 tar of ``resolve(pod)`` (exit 2 when it returns None/missing)."""

    def output(pod: Pod, container: str) -> Iterator[str]:
        directory = resolve(pod)
        if directory is None or not Path(directory).is_dir():
            raise _ScriptExit(2, [f"tar: {directory}: Cannot open: No such file or directory"])
        yield from tar_base64_lines(Path(directory), gzip=gzip)

    return Script(output=output)


class _ScriptExit(Exception):
    """Raised by an ``output`` callable to end the container early with an exit code and last lines."""

    def __init__(self, code: int, lines: list[str]) -> None:
        super().__init__(code)
        self.code, self.lines = code, lines


ScriptExit = _ScriptExit


# ----------------------------------------------------------------------------------------------------
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


@dataclass
class _PodRun:
    """Runtime state of one pod on a fake node."""

    pod: Pod
    script: Script
    ip: str
    logs: dict[str, ContainerLog] = field(default_factory=dict)
    previous: dict[str, ContainerLog] = field(default_factory=dict)
    restart_count: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    deleting: threading.Event = field(default_factory=threading.Event)
    release_exit_code: int | None = None
    thread: threading.Thread | None = None
    phase: str = "Pending"

    @property
    def key(self) -> tuple[str, str]:
        return self.pod["metadata"]["namespace"], self.pod["metadata"]["name"]

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod["spec"].get("containers", []))


class _Gone(Exception):
    """The pod was deleted or the kubelet is stopping: end its lifecycle quietly."""


# ----------------------------------------------------------------------------------------------------
class FakeKubelet:
    """See the module docstring. ``start()`` registers the nodes; ``stop()`` ends every thread."""

    def __init__(
        self,
        api_factory: Callable[[], ApiClient],
        cert_file: Path,
        key_file: Path,
        nodes: int = 2,
        node_prefix: str = "a100-node",
        gpus_per_node: int = 8,
        cpu: str = "96",
        memory: str = "1000Gi",
        lease_interval: float = 10.0,
        default_script: Script | None = None,
    ) -> None:
        self._api_factory = api_factory
        self.cert_file, self.key_file = cert_file, key_file
        self.node_names = [f"{node_prefix}-{i}" for i in range(nodes)]
        self.gpus_per_node, self.cpu, self.memory = gpus_per_node, cpu, memory
        self.lease_interval = lease_interval
        self.default_script = default_script or Script()
        self.port = 0
        self.errors: list[str] = []
        self._rules: list[Rule] = []
        self._runs: dict[tuple[str, str], _PodRun] = {}
        self._finalizing: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._watch_resp: Any = None
        self._ip_counter = 0
        self._api: ApiClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeKubelet:
        self._api = self._api_factory()
        self._start_server()
        for name in self.node_names:
            self._register_node(name)
        self._spawn(self._lease_loop, "fake-kubelet-leases")
        ready = threading.Event()
        self._spawn(lambda: self._watch_loop(ready), "fake-kubelet-watch")
        if not ready.wait(30):
            raise RuntimeError("fake kubelet: the pod watch did not start within 30 s")
        return self

    def stop(self, delete_nodes: bool = False) -> None:
        self._stop.set()
        resp = self._watch_resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.released.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        if delete_nodes and self._api is not None:
            core = CoreV1Api(self._api)
            for name in self.node_names:
                with contextlib.suppress(ApiException):
                    core.delete_node(name)
        if self._api is not None:
            self._api.close()

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test API ----------------------------------------------------------------------------------
    def add_rule(
        self,
        script: Script,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        name_prefix: str | None = None,
        match: Callable[[Pod], bool] | None = None,
    ) -> Rule:
        """Give matching pods ``script`` (newest rule first). Returns the rule for :meth:`remove_rule`."""
        rule = Rule(script, namespace, dict(labels) if labels else None, name_prefix, match)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove_rule(self, rule: Rule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear_rules(self, namespace: str | None = None) -> None:
        """Drop the rules of one namespace (the ``namespace`` fixture does this), or all of them."""
        with self._lock:
            self._rules = [r for r in self._rules if namespace is not None and r.namespace != namespace]

    def serve_artifacts(
        self, resolve: Callable[[Pod], Path | None], *, namespace: str | None = None, gzip: bool = True
    ) -> Rule:
        """Make artifact-reader pods (:data:`ARTIFACT_READER_LABELS`) print a base64 tar of resolve(pod)."""
        return self.add_rule(
            artifact_reader_script(resolve, gzip=gzip), namespace=namespace, labels=ARTIFACT_READER_LABELS
        )

    def release(
        self,
        namespace: str,
        name: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        exit_code: int | None = None,
    ) -> int:
        """End the hold/waiting of matching pods (optionally overriding the exit code); returns how many."""
        count = 0
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            ns, pod_name = run.key
            if ns != namespace or (name is not None and pod_name != name):
                continue
            have = run.pod["metadata"].get("labels") or {}
            if labels and any(have.get(k) != v for k, v in labels.items()):
                continue
            run.release_exit_code = exit_code
            run.released.set()
            count += 1
        return count

    def append_log(self, namespace: str, pod: str, text: str | bytes, container: str | None = None) -> None:
        """Write to the current log of a pod's container (default: its first container)."""
        run = self._run(namespace, pod)
        name = container or run.containers[0]["name"]
        if name not in run.logs:
            raise KeyError(f"container {name!r} of pod {namespace}/{pod} has not started")
        run.logs[name].write(text)

    def log_text(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        """What the kubelet holds as the log (for assertions without the API)."""
        run = self._run(namespace, pod)
        name = container or run.containers[0]["name"]
        return (run.previous if previous else run.logs)[name].text()

    def pods(self, namespace: str | None = None) -> list[str]:
        """Names of pods this kubelet has seen (``ns/name``), in start order."""
        with self._lock:
            return [f"{ns}/{n}" for ns, n in self._runs if namespace is None or ns == namespace]

    def wait_for_phase(self, namespace: str, pod: str, phase: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                run = self._runs.get((namespace, pod))
            if run is not None and run.phase == phase:
                return
            time.sleep(0.05)
        raise TimeoutError(f"pod {namespace}/{pod} did not reach phase {phase} within {timeout} s")

    def _run(self, namespace: str, pod: str) -> _PodRun:
        with self._lock:
            run = self._runs.get((namespace, pod))
        if run is None:
            raise KeyError(f"the fake kubelet has no pod {namespace}/{pod}")
        return run

    # -- nodes and leases --------------------------------------------------------------------------
    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _node_status(self) -> dict[str, Any]:
        now = _rfc3339(_now())
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": "110",
            "ephemeral-storage": "1Ti",
            GPU_RESOURCE: str(self.gpus_per_node),
        }

        def cond(kind: str, status: str, reason: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": "fake kubelet",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
                cond("Ready", "True", "KubeletReady"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": "fake",
                "systemUUID": "fake",
                "bootID": "fake",
                "kernelVersion": "fake",
                "osImage": "fake kubelet (sqlmaster tests)",
                "containerRuntimeVersion": "fake://0",
                "kubeletVersion": "v1.20.2",
                "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _register_node(self, name: str) -> None:
        assert self._api is not None
        core = CoreV1Api(self._api)
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    GPU_PRODUCT_LABEL: A100,
                    "nvidia.com/gpu.count": str(self.gpus_per_node),
                },
            },
            "spec": {"taints": [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]},
        }
        try:
            core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        core.patch_node_status(name, {"status": self._node_status()})

    def _lease_loop(self) -> None:
        assert self._api is not None
        coord = CoordinationV1Api(self._api)
        while not self._stop.is_set():
            for name in self.node_names:
                try:
                    self._renew_lease(coord, name)
                except Exception as e:  # keep renewing the others; report for debugging
                    if not self._stop.is_set():
                        self._error(f"lease {name}: {e}")
            self._stop.wait(self.lease_interval)

    def _renew_lease(self, coord: CoordinationV1Api, name: str) -> None:
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _micro(_now())}
        try:
            coord.patch_namespaced_lease(name, NODE_LEASE_NAMESPACE, {"spec": spec})
        except ApiException as e:
            if e.status != 404:
                raise
            body = {"metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE}, "spec": spec}
            try:
                coord.create_namespaced_lease(NODE_LEASE_NAMESPACE, body)
            except ApiException as e2:  # the apiserver creates kube-node-lease shortly after start
                if e2.status not in (404, 409):
                    raise

    def _error(self, message: str) -> None:
        log.error("fake kubelet: %s", message)
        self.errors.append(message)

    # -- the pod watch -----------------------------------------------------------------------------
    def _watch_loop(self, ready: threading.Event) -> None:
        assert self._api is not None
        core = CoreV1Api(self._api_factory())
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    raw = core.list_pod_for_all_namespaces(
                        field_selector="spec.nodeName!=", _preload_content=False
                    )
                    listing = json.loads(raw.data)
                    rv = listing["metadata"]["resourceVersion"]
                    for pod in listing.get("items", []):
                        self._on_pod("ADDED", pod)
                resp = core.list_pod_for_all_namespaces(
                    field_selector="spec.nodeName!=",
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    _preload_content=False,
                )
                self._watch_resp = resp
                ready.set()
                for line in resp:
                    if self._stop.is_set():
                        break
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        rv = None if obj.get("code") == 410 else rv
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._on_pod(event["type"], obj)
                resp.release_conn()
            except Exception as e:
                if self._stop.is_set():
                    return
                self._error(f"pod watch: {e!r}; restarting it")
                rv = None
                self._stop.wait(0.5)

    def _on_pod(self, kind: str, pod: Pod) -> None:
        node = pod.get("spec", {}).get("nodeName")
        if node not in self.node_names:
            return
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            run = self._runs.get(key)
            if run is not None and run.uid != meta["uid"]:  # a new pod under an old name
                run.deleting.set()
                run.released.set()
                run = None
            if kind == "DELETED":
                if run is not None:
                    run.deleting.set()
                    run.released.set()
                    del self._runs[key]
                return
            if run is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    if meta.get("deletionTimestamp"):
                        self._finalize_later(pod)
                    return  # finished before this kubelet started (not ours to replay)
                run = _PodRun(pod=pod, script=self._script_for(pod), ip=self._next_ip())
                self._runs[key] = run
                run.thread = threading.Thread(
                    target=self._lifecycle, args=(run,), name=f"pod-{key[0]}-{key[1]}", daemon=True
                )
                run.thread.start()
            else:
                run.pod = pod
            if meta.get("deletionTimestamp"):
                run.deleting.set()
                run.released.set()

    def _script_for(self, pod: Pod) -> Script:
        annotation = (pod["metadata"].get("annotations") or {}).get(SCRIPT_ANNOTATION)
        if annotation:
            try:
                return Script.from_json(annotation)
            except (ValueError, TypeError) as e:
                self._error(f"pod {pod['metadata']['name']}: bad {SCRIPT_ANNOTATION}: {e}")
                return Script(lines=(f"fake kubelet: bad {SCRIPT_ANNOTATION}: {e}",), exit_code=2)
        with self._lock:
            for rule in reversed(self._rules):
                if rule.matches(pod):
                    return rule.script
        return self.default_script

    def _next_ip(self) -> str:
        self._ip_counter += 1
        n = self._ip_counter
        return f"10.244.{(n // 250) % 250}.{n % 250 + 1}"

    # -- one pod's life ----------------------------------------------------------------------------
    def _lifecycle(self, run: _PodRun) -> None:
        assert self._api is not None
        core = CoreV1Api(self._api)
        try:
            self._play(core, run)
        except _Gone:
            pass
        except Exception as e:
            if not self._stop.is_set():
                self._error(f"pod {run.key}: {e!r}")
        finally:
            for lg in run.logs.values():
                lg.close()
        if run.deleting.is_set() and not self._stop.is_set():
            self._finalize(core, run.pod)

    def _sleep(self, run: _PodRun, seconds: float) -> None:
        if seconds > 0 and (run.deleting.wait(seconds) or self._stop.is_set()):
            raise _Gone
        if run.deleting.is_set() or self._stop.is_set():
            raise _Gone

    def _play(self, core: CoreV1Api, run: _PodRun) -> None:
        started = _now()
        script = run.script
        if script.start_delay > 0 or script.waiting is not None:
            reason, message = script.waiting or ("ContainerCreating", "")
            self._patch(core, run, self._pending_status(run, started, reason, message))
            self._sleep(run, script.start_delay)
            if script.waiting is not None:
                run.released.wait()
                run.released.clear()
                self._sleep(run, 0)
        restart_policy = run.pod["spec"].get("restartPolicy", "Always")
        last_state: dict[str, Any] = {}
        while True:
            instance_started = _now()
            for c in run.containers:
                if c["name"] in run.logs:
                    run.previous[c["name"]] = run.logs[c["name"]]
                run.logs[c["name"]] = ContainerLog()
            running = {"running": {"startedAt": _rfc3339(instance_started)}}
            run.phase = "Running"
            self._patch(core, run, self._status(run, started, "Running", running, last_state, ready=True))
            exit_code, extra = self._emit(run, script)
            if script.hold:
                run.released.wait()
                self._sleep(run, 0)
            if run.release_exit_code is not None:
                exit_code = run.release_exit_code
            for lg in run.logs.values():
                lg.close()
            terminated = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": _rfc3339(instance_started),
                    "finishedAt": _rfc3339(_now()),
                    "containerID": self._container_id(run),
                    **({"message": script.termination_message} if script.termination_message else {}),
                    **({"message": extra} if extra else {}),
                }
            }
            restart = restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)
            if not restart:
                run.phase = "Succeeded" if exit_code == 0 else "Failed"
                self._patch(core, run, self._status(run, started, run.phase, terminated, last_state))
                return
            # Restart in place, like a kubelet: the old instance becomes lastState / the previous log.
            run.restart_count += 1
            last_state = terminated
            waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
            self._patch(core, run, self._status(run, started, "Running", waiting, last_state))
            self._sleep(run, 0.2)
            script = script.then or script
            run.released.clear()
            run.release_exit_code = None

    def _emit(self, run: _PodRun, script: Script) -> tuple[int, str]:
        """Write the script's log to every container; returns (exit code, extra termination message)."""
        for c in run.containers:
            items = script.items(run.pod, c["name"])
            try:
                for item in items:
                    run.logs[c["name"]].write(item)
                    self._sleep(run, script.interval)
            except _ScriptExit as stop:
                for line in stop.lines:
                    run.logs[c["name"]].write(line)
                return stop.code, ""
            except _Gone:
                raise
            except Exception as e:  # a broken output hook is a test bug: make it loud
                self._error(f"pod {run.key}: output hook failed: {e!r}")
                run.logs[c["name"]].write(f"fake kubelet: output hook failed: {e!r}")
                return 3, f"output hook failed: {e!r}"
        return script.exit_code, ""

    def _container_id(self, run: _PodRun) -> str:
        return f"fake://{run.uid}-{run.restart_count}"

    def _pending_status(self, run: _PodRun, started: datetime, reason: str, message: str) -> dict[str, Any]:
        waiting = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status = self._status(run, started, "Pending", waiting, {})
        status["conditions"] = [
            self._cond("PodScheduled", "True"),
            self._cond("Initialized", "True"),
            self._cond("ContainersReady", "False", "ContainersNotReady"),
            self._cond("Ready", "False", "ContainersNotReady"),
        ]
        return status

    @staticmethod
    def _cond(kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None}
        out["lastTransitionTime"] = _rfc3339(_now())
        if reason:
            out["reason"] = reason
        return out

    def _status(
        self,
        run: _PodRun,
        started: datetime,
        phase: str,
        state: dict[str, Any],
        last_state: dict[str, Any],
        ready: bool = False,
    ) -> dict[str, Any]:
        statuses = []
        for c in run.containers:
            statuses.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": f"fake://{c.get('image', '')}",
                    "containerID": self._container_id(run),
                    "ready": ready,
                    "started": "running" in state,
                    "restartCount": run.restart_count,
                    "state": state,
                    "lastState": last_state,
                }
            )
        init_statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": f"fake://{c.get('image', '')}",
                "ready": True,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }
            for c in run.pod["spec"].get("initContainers", [])
        ]
        done_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": _rfc3339(started),
            "conditions": [
                self._cond("PodScheduled", "True"),
                self._cond("Initialized", "True", "PodCompleted" if phase != "Running" else None),
                self._cond("ContainersReady", "True" if ready else "False", None if ready else done_reason),
                self._cond("Ready", "True" if ready else "False", None if ready else done_reason),
            ],
            "containerStatuses": statuses,
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    def _patch(self, core: CoreV1Api, run: _PodRun, status: dict[str, Any]) -> None:
        ns, name = run.key
        try:
            core.patch_namespaced_pod_status(name, ns, {"status": status})
        except ApiException as e:
            if e.status in (404, 409) or run.deleting.is_set():
                raise _Gone from e
            raise

    def _finalize_later(self, pod: Pod) -> None:
        assert self._api is not None
        core = CoreV1Api(self._api)
        threading.Thread(target=self._finalize, args=(core, pod), daemon=True).start()

    def _finalize(self, core: CoreV1Api, pod: Pod) -> None:
        """Complete a graceful deletion the way a kubelet does once containers are gone."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self._finalizing:
                return
            self._finalizing.add(uid)
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            core.delete_namespaced_pod(
                pod["metadata"]["name"], pod["metadata"]["namespace"], body=body, grace_period_seconds=0
            )
        except ApiException as e:
            if e.status not in (404, 409):
                self._error(f"finalizing pod {pod['metadata']['name']}: {e.reason}")

    # -- the HTTPS log endpoint ----------------------------------------------------------------------
    def _start_server(self) -> None:
        kubelet = self

        class Handler(_LogHandler):
            fake = kubelet

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        # The handshake happens in the handler thread, so one slow client cannot block accept().
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.port = int(server.server_address[1])
        self._spawn(server.serve_forever, "fake-kubelet-https")

    def _logs_for(self, namespace: str, pod: str, container: str, previous: bool) -> ContainerLog | str:
        with self._lock:
            run = self._runs.get((namespace, pod))
        if run is None:
            return f'pod "{pod}" in namespace "{namespace}" is not known to this kubelet'
        source = run.previous if previous else run.logs
        if container not in source:
            if previous:
                return f'previous terminated container "{container}" in pod "{pod}" not found'
            return f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
        return source[container]


class _LogHandler(BaseHTTPRequestHandler):
    """Kubelet API subset: ``/containerLogs`` and ``/healthz``; everything else 404/501."""

    fake: FakeKubelet
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
            self._serve_log(*parts[1:], q)

    def _serve_log(self, namespace: str, pod: str, container: str, q: dict[str, str]) -> None:
        flag = lambda k: q.get(k, "false").lower() in ("1", "true")  # noqa: E731
        found = self.fake._logs_for(namespace, pod, container, flag("previous"))
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
                while cursor >= len(found.lines) and not found.closed and not self.fake._stop.is_set():
                    found.cond.wait(0.5)
                pending = found.lines[cursor:]
                cursor = len(found.lines)
                if not pending and (found.closed or self.fake._stop.is_set()):
                    return
