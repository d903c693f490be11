"""A thin, thread-safe REST layer over the official `kubernetes` client.

We use the client for what it does well — reading kubeconfig (contexts, exec/OIDC plugins, certs,
tokens) and holding an authenticated urllib3 pool — and send plain JSON to the API paths ourselves.
Rendered manifests are dicts from helm; posting them as JSON avoids round-tripping through the
generated model classes (which would drop fields they do not know, e.g. newer Job fields) and
keeps one code path for every kind. `kubernetes` is imported inside `connect()` only.

A server (or a proxy in front of it) is not trusted for pace, size or shape: each call has a total deadline
from connect to last byte (urllib3's read timeout restarts with every byte, so a server dripping one byte every
4 s held `sqlctl status` for ever), its answer is capped in size, and anything but a JSON object is one error
line. A kubeconfig credential plugin (`users[].user.exec`) gets a deadline too, and its failure is named as
such rather than as an unreachable server.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlctl.errors import SqlctlError
from sqlmaster import exitcodes

if TYPE_CHECKING:
    from urllib3 import HTTPResponse

Obj = dict[str, Any]

TOTAL_SECONDS = 60.0  # one API call, connect to last byte (a List of a busy namespace takes ~1 s)
MAX_ANSWER_BYTES = 64 << 20  # the largest answer read whole: a List of thousands of Jobs is a few MB
PLUGIN_SECONDS = 60.0  # a kubeconfig credential plugin (it may open a browser for a login)

# (apiVersion, kind) -> (API path prefix, plural, namespaced). The kinds our charts render.
KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims", True),
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "Event"): ("/api/v1", "events", True),
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "Node"): ("/api/v1", "nodes", False),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs", True),
}


@dataclass(frozen=True)
class KubeSettings:
    """Where to connect: the global `--kubeconfig/--context/-n` flags (None = kubeconfig defaults)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


class ApiError(Exception):
    """A non-2xx answer from the API server, with the server's Status reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """API path of a collection (name None) or of one object."""
    try:
        prefix, plural, namespaced = KINDS[(api_version, kind)]
    except KeyError as exc:
        raise SqlctlError(
            f"sqlctl does not know how to create {kind} ({api_version})",
            "Add the kind to sqlctl.kube.KINDS or remove it from the chart.",
        ) from exc
    path = prefix
    if namespaced:
        path += f"/namespaces/{quote(namespace or 'default')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    return path


class Kube:
    """An authenticated connection plus the namespace commands act on."""

    def __init__(self, api_client: Any, namespace: str, context: str | None, server: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.context = context
        self.server = server
        self.server_version = ""  # filled by connect(ping=True)

    # -- raw requests -------------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        timeout: float | tuple[float, float] | None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        request = self.api_client.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(*request, _request_timeout=timeout)
        except Exception as exc:  # urllib3 connection errors, TLS errors
            if type(exc).__name__ == "ApiException":
                raise ApiError(getattr(exc, "status", 0) or 0, str(getattr(exc, "reason", "")), str(exc)) from exc
            raise SqlctlError(
                f"cannot reach the Kubernetes API server at {self.server} ({type(exc).__name__})",
                "Check that the cluster is up and that --kubeconfig/--context point at it.",
                code=exitcodes.FAILURE,
            ) from exc
        return response

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        timeout: float | tuple[float, float] | None = 30,
        content_type: str | None = None,
    ) -> Obj:
        """Send one request and return the decoded JSON answer; raise ApiError on non-2xx.

        The whole exchange ends within TOTAL_SECONDS (or ``timeout``'s sum, if smaller) and reads at most
        MAX_ANSWER_BYTES; past either it is one error line (exit 1).
        """
        total = min(TOTAL_SECONDS, sum(timeout) if isinstance(timeout, tuple) else (timeout or TOTAL_SECONDS))
        call = f"{method} {path}"
        status, reason, raw = _within(
            total,
            lambda: self._exchange(method, path, query, body, timeout, content_type),
            lambda: SqlctlError(
                f"the API server at {self.server} did not finish answering {call} within {total:.0f} s",
                "Check the cluster (or the proxy in front of it) and retry.",
                code=exitcodes.FAILURE,
            ),
        )
        if not 200 <= status <= 299:
            raise _api_error(status, reason, raw)
        return _json_object(raw, self.server, call)

    def _exchange(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        timeout: float | tuple[float, float] | None,
        content_type: str | None,
    ) -> tuple[int, str, bytes]:
        """Send, then read the answer in chunks up to MAX_ANSWER_BYTES (never the whole of an endless body)."""
        response = self._send(method, path, query, body, timeout, content_type)
        raw = response.response  # urllib3's, not yet read (the client does not preload)
        chunks, size = [], 0
        try:
            for chunk in raw.stream(1 << 16, decode_content=True):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise SqlctlError(
                        f"the API server at {self.server} answered {method} {path} with more than "
                        f"{MAX_ANSWER_BYTES >> 20} MB",
                        "Check that --kubeconfig points at a Kubernetes API server (not a proxy or a file server).",
                        code=exitcodes.FAILURE,
                    )
                chunks.append(chunk)
        except SqlctlError:
            raise
        except Exception as exc:  # the connection broke or timed out mid-answer
            raise SqlctlError(
                f"the API server at {self.server} broke off its answer to {method} {path} ({type(exc).__name__})",
                "Check the cluster and retry.",
                code=exitcodes.FAILURE,
            ) from exc
        finally:
            raw.release_conn()
        return response.status, str(response.reason or ""), b"".join(chunks)

    def stream(
        self, path: str, query: list[tuple[str, str]], timeout: float | tuple[float, float] | None = None
    ) -> HTTPResponse:
        """Open a streaming GET (pod logs); the caller reads and closes the urllib3 response."""
        response = self._send("GET", path, query, None, timeout)
        if not 200 <= response.status <= 299:
            raise _api_error(response.status, response.reason, response.read())
        return response.response

    # -- typed conveniences ----------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        return self.request("GET", resource_path(api_version, kind, namespace or self.namespace, name))

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        all_namespaces: bool = False,
    ) -> list[Obj]:
        prefix, plural, namespaced = KINDS[(api_version, kind)]
        path = (
            f"{prefix}/{plural}"
            if all_namespaces or not namespaced
            else resource_path(api_version, kind, namespace or self.namespace)
        )
        query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        items = self.request("GET", path, query).get("items") or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise SqlctlError(
                f"the API server at {self.server} answered GET {path} with items that are not a list of objects",
                "Check that --kubeconfig and --context point at a Kubernetes API server.",
                code=exitcodes.FAILURE,
            )
        return items

    def create(self, obj: Obj, namespace: str | None = None) -> Obj:
        ns = obj.get("metadata", {}).get("namespace") or namespace or self.namespace
        return self.request(
            "POST",
            resource_path(obj["apiVersion"], obj["kind"], ns),
            query=[("fieldManager", "sqlctl")],
            body=obj,
        )

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation: str = "Background",
        grace_period: int | None = None,
    ) -> None:
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        try:
            self.request("DELETE", resource_path(api_version, kind, namespace or self.namespace, name), body=body)
        except ApiError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise


def _within(seconds: float, work: Callable[[], Any], late: Callable[[], Exception]) -> Any:
    """``work()``'s result if it ends within ``seconds``, else ``late()`` is raised. The work runs in a daemon
    thread: a socket read cannot be given a deadline from outside, only abandoned (sqlctl then exits)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="sqlctl-api-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise late()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _json_object(raw: bytes, server: str, call: str) -> Obj:
    """A JSON object, or one error line saying what came instead (an HTML login page, a list, garbage)."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        start = " ".join(raw[:60].decode("utf-8", "replace").split())
        raise SqlctlError(
            f"the API server at {server} answered {call} with something that is not JSON (it starts {start!r})",
            "Check that --kubeconfig and --context point at a Kubernetes API server, not a proxy or login page.",
            code=exitcodes.FAILURE,
        ) from None
    if not isinstance(decoded, dict):
        raise SqlctlError(
            f"the API server at {server} answered {call} with a JSON {type(decoded).__name__}, not an object",
            "Check that --kubeconfig and --context point at a Kubernetes API server.",
            code=exitcodes.FAILURE,
        )
    return decoded


def _api_error(status: int, reason: str, raw: bytes) -> ApiError:
    message = raw.decode("utf-8", "replace") if raw else ""
    try:
        decoded = json.loads(message)
        message = decoded.get("message", message)
        reason = decoded.get("reason", reason) or reason
    except (ValueError, AttributeError):
        pass
    return ApiError(status, str(reason), message)


def _kubeconfig_files(settings: KubeSettings) -> str | None:
    """The kubeconfig to load, or None for in-cluster; clear error when there is none."""
    if settings.kubeconfig:
        given = Path(settings.kubeconfig).expanduser()
        if not given.is_file():
            what = "is not a regular file" if given.exists() else "does not exist"
            raise SqlctlError(
                f"kubeconfig {settings.kubeconfig} {what}",
                "Pass --kubeconfig with the path of your cluster's kubeconfig.",
            )
        return str(Path(settings.kubeconfig).expanduser())
    env = os.environ.get("KUBECONFIG")
    if env:
        existing = [p for p in env.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        if not existing:
            raise SqlctlError(
                f"KUBECONFIG={env} names no existing file",
                "Point KUBECONFIG (or --kubeconfig) at your cluster's kubeconfig.",
            )
        return os.pathsep.join(existing)
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return str(default)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None  # running inside a pod: use its service account
    raise SqlctlError(
        "no kubeconfig found (no --kubeconfig, no KUBECONFIG, no ~/.kube/config)",
        "Get a kubeconfig for your cluster and pass it with --kubeconfig or KUBECONFIG.",
    )


def _check_bounded(file: str) -> None:
    """The client reads a kubeconfig with plain `yaml.safe_load`: refuse one whose aliases expand without end
    (or that is a device, or huge) before it does, as for every other YAML a user gives (sqlmaster.boundedyaml)."""
    if not file:
        return
    from sqlmaster.boundedyaml import YamlTooBig, load, read_text

    try:
        load(read_text(Path(file), "kubeconfig"), f"kubeconfig {file}")
    except YamlTooBig as exc:
        what, _, fix = str(exc).rpartition(". ")
        raise SqlctlError(what, fix + ".") from None
    except Exception:  # not YAML, not UTF-8, unreadable: the client's own error says it (below)
        return


_plugin_failures: list[tuple[str, int]] = []  # (message, exit code) of each credential plugin that failed


def _bound_credential_plugins() -> None:
    """Give the client's credential plugins (kubeconfig `exec`) a deadline and remember their failures.

    The client runs a plugin with `communicate()` and no timeout (a plugin waiting for a login hung sqlctl
    silently), and logs a failing plugin's error, then carries on without credentials (which surfaced as
    "cannot reach"). Its module is patched once, in this process only.
    """
    from types import SimpleNamespace

    from kubernetes.config import exec_provider, kube_config

    if getattr(kube_config.ExecProvider, "bounded_by_sqlctl", False):
        return

    class BoundedPopen(subprocess.Popen):  # type: ignore[type-arg]  # the client's call, with a deadline
        def communicate(self, input: Any = None, timeout: float | None = None) -> Any:
            try:
                return super().communicate(input, timeout=PLUGIN_SECONDS if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
                raise TimeoutError(f"it did not answer within {PLUGIN_SECONDS:.0f} s") from None

    class BoundedExecProvider(exec_provider.ExecProvider):  # type: ignore[misc]
        bounded_by_sqlctl = True

        def run(self, previous_response: Any = None) -> Any:
            try:
                return super().run(previous_response)
            except Exception as exc:
                code = exitcodes.FAILURE if isinstance(exc, TimeoutError) else exitcodes.CONFIG
                _plugin_failures.append((f"`{' '.join(self.args)[:120]}`: {' '.join(str(exc).split())[:300]}", code))
                raise

    exec_provider.subprocess = SimpleNamespace(Popen=BoundedPopen, PIPE=subprocess.PIPE)  # type: ignore[assignment]
    kube_config.ExecProvider = BoundedExecProvider  # type: ignore[misc]


def _check_plugins() -> None:
    if _plugin_failures:
        message, code = _plugin_failures[-1]
        raise SqlctlError(
            f"the kubeconfig's credential plugin failed, so sqlctl has no credentials: {message}",
            "Run that command yourself to see why (often: log in again), or choose another --context.",
            code=code,
        )


def connect(settings: KubeSettings, ping: bool = True) -> Kube:
    """Load kubeconfig, pick the context and namespace, and (by default) check the server answers."""
    from kubernetes import config as kconfig  # lazy: ~1 s of imports
    from kubernetes.client import ApiClient, Configuration

    path = _kubeconfig_files(settings)
    for file in (path or "").split(os.pathsep):
        _check_bounded(file)
    _bound_credential_plugins()
    _plugin_failures.clear()
    configuration = Configuration()
    namespace = settings.namespace
    context_name = settings.context
    try:
        if path is None:
            kconfig.load_incluster_config(client_configuration=configuration)
            ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            namespace = namespace or (ns_file.read_text().strip() if ns_file.is_file() else None)
        else:
            kconfig.load_kube_config(
                config_file=path,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
            contexts, active = kconfig.list_kube_config_contexts(config_file=path)
            chosen = next((c for c in contexts if c["name"] == settings.context), active)
            if chosen:
                context_name = chosen["name"]
                namespace = namespace or chosen.get("context", {}).get("namespace")
    except kconfig.ConfigException as exc:
        _check_plugins()
        raise SqlctlError(
            f"cannot use kubeconfig {path or 'in-cluster'}: {exc}",
            "Fix the kubeconfig or choose an existing context with --context (kubectl config get-contexts).",
        ) from exc
    except Exception as exc:  # yaml errors, missing keys, bad certificates: all mean "not usable"
        raise SqlctlError(
            f"kubeconfig {path} is not a valid kubeconfig ({type(exc).__name__}: {exc})",
            "Pass --kubeconfig with a valid kubeconfig file.",
        ) from exc
    _check_plugins()
    configuration.retries = 0  # fail fast: we report unreachable clusters instead of retrying for minutes
    configuration.connection_pool_maxsize = 64  # parallel submissions and log streams share one pool
    kube = Kube(ApiClient(configuration), namespace or "default", context_name, configuration.host)
    if ping:
        kube.server_version = server_version(kube)
    return kube


def server_version(kube: Kube) -> str:
    """`/version` gitVersion; raises a clear error when the cluster is unreachable or refuses us."""
    try:
        info = kube.request("GET", "/version", timeout=(5, 10))
    except ApiError as exc:
        if exc.status in (401, 403):
            raise SqlctlError(
                f"the API server at {kube.server} refused our credentials ({exc.status} {exc.reason})",
                "Refresh your kubeconfig credentials (or pick another --context).",
            ) from exc
        raise SqlctlError(f"the API server at {kube.server} answered {exc}", "Check the cluster.") from exc
    return str(info.get("gitVersion", ""))
