"""A thin, thread-safe REST layer over the official `kubernetes` client.

We use the client for what it does well — reading kubeconfig (contexts, exec/OIDC plugins, certs,
tokens) and holding an authenticated urllib3 pool — and send plain JSON to the API paths ourselves.
Rendered manifests are dicts from helm; posting them as JSON avoids round-tripping through the
generated model classes (which would drop fields they do not know, e.g. newer Job fields) and
keeps one code path for every kind. `kubernetes` is imported inside `connect()` only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlctl.errors import SqlctlError
from sqlmaster import exitcodes

if TYPE_CHECKING:
    from urllib3 import HTTPResponse

Obj = dict[str, Any]

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
        """Send one request and return the decoded JSON answer; raise ApiError on non-2xx."""
        response = self._send(method, path, query, body, timeout, content_type)
        raw = response.read()
        if not 200 <= response.status <= 299:
            raise _api_error(response.status, response.reason, raw)
        return json.loads(raw) if raw else {}

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
        return list(self.request("GET", path, query).get("items") or [])

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
        if not Path(settings.kubeconfig).expanduser().is_file():
            raise SqlctlError(
                f"kubeconfig {settings.kubeconfig} does not exist",
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


def connect(settings: KubeSettings, ping: bool = True) -> Kube:
    """Load kubeconfig, pick the context and namespace, and (by default) check the server answers."""
    from kubernetes import config as kconfig  # lazy: ~1 s of imports
    from kubernetes.client import ApiClient, Configuration

    path = _kubeconfig_files(settings)
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
        raise SqlctlError(
            f"cannot use kubeconfig {path or 'in-cluster'}: {exc}",
            "Fix the kubeconfig or choose an existing context with --context (kubectl config get-contexts).",
        ) from exc
    except Exception as exc:  # yaml errors, missing keys, bad certificates: all mean "not usable"
        raise SqlctlError(
            f"kubeconfig {path} is not a valid kubeconfig ({type(exc).__name__}: {exc})",
            "Pass --kubeconfig with a valid kubeconfig file.",
        ) from exc
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
