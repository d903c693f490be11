"""A real Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler) for tests.

The binaries come from ``scripts/k8s-build.sh`` (Kubernetes v1.20.2 built from Debian's source package,
plus Debian's etcd) in ``$SQLMASTER_K8S_CACHE/bin`` (default ``~/.cache/sqlmaster/k8s-1.20.2/bin``).
No kubelet runs: pair this with :class:`tests.k8s.fake_kubelet.FakeKubelet` to get Nodes whose pods
"run". Everything listens on 127.0.0.1 only, on free ports, in a private temporary folder.

Authentication is a static token file with two users:

* ``admin`` (group ``system:masters``): :attr:`ControlPlane.kubeconfig`.
* ``restricted`` (no RBAC bindings at all, so every non-discovery request is forbidden):
  :attr:`ControlPlane.restricted_kubeconfig`. Tests that need "RBAC forbids X" grant it only what they
  want through Roles/RoleBindings for user :data:`RESTRICTED_USER`.

Every process is started in its own process group and with ``PR_SET_PDEATHSIG`` so that it dies with the
Python process even when the tests are killed; :meth:`ControlPlane.stop` signals the groups and waits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

K8S_VERSION = "v1.20.2"
ADMIN_USER = "admin"
RESTRICTED_USER = "restricted"
BUILD_HINT = "Run scripts/k8s-build.sh (about 4 minutes, once per machine) to build them"

# The kubelet serving port is not fixed: the fake kubelet advertises its own port in the Node object.
# InternalIP tells the apiserver to dial 127.0.0.1 instead of resolving the node's (fake) hostname.
_SERVICE_CIDR = "10.96.0.0/16"


class ControlPlaneError(RuntimeError):
    """The control plane could not be found, started, or reached."""


def default_cache_dir() -> Path:
    """Where scripts/k8s-build.sh puts the binaries (same default and env variable as the script)."""
    env = os.environ.get("SQLMASTER_K8S_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sqlmaster" / "k8s-1.20.2"


@dataclass(frozen=True)
class Binaries:
    """Paths of the four control-plane executables."""

    etcd: Path
    apiserver: Path
    controller_manager: Path
    scheduler: Path

    @classmethod
    def find(cls, cache_dir: Path | None = None) -> Binaries:
        """Locate the binaries in the build cache; raise :class:`ControlPlaneError` naming the fix."""
        bin_dir = (cache_dir or default_cache_dir()) / "bin"
        found = cls(
            etcd=bin_dir / "etcd",
            apiserver=bin_dir / "kube-apiserver",
            controller_manager=bin_dir / "kube-controller-manager",
            scheduler=bin_dir / "kube-scheduler",
        )
        missing = [str(p) for p in found.all() if not os.access(p, os.X_OK)]
        if missing:
            raise ControlPlaneError(
                f"Kubernetes control-plane binaries are missing: {', '.join(missing)}. {BUILD_HINT}, "
                "or point SQLMASTER_K8S_CACHE at the folder that holds bin/."
            )
        return found

    def all(self) -> tuple[Path, ...]:
        return (self.etcd, self.apiserver, self.controller_manager, self.scheduler)


_WORKDIR_PREFIX = "sqlmaster-k8s-"
_ETCD_PREFIX = "sqlmaster-etcd-"


def reap_stale_dirs() -> list[Path]:
    """Delete work/etcd folders left by killed test runs (named ``<prefix><pid>-``, pid no longer alive).

    A SIGKILLed pytest takes its processes along (PR_SET_PDEATHSIG) but cannot delete its folders; etcd's
    on /dev/shm hold ~120 MB of RAM each (preallocated WAL), so the next run removes them.
    """
    removed: list[Path] = []
    for base, prefix in ((Path(tempfile.gettempdir()), _WORKDIR_PREFIX), (Path("/dev/shm"), _ETCD_PREFIX)):
        with contextlib.suppress(OSError):
            for path in base.glob(f"{prefix}*-*"):
                pid_text = path.name[len(prefix) :].split("-", 1)[0]
                if not pid_text.isdigit() or Path(f"/proc/{pid_text}").exists():
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """preexec_fn: own process group + SIGKILL when the Python process dies (Linux prctl).

    The death signal follows the *thread* that forked: start the control plane from a thread that lives
    as long as it should (pytest's main thread does).
    """
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ControlPlaneError("openssl is not on PATH; install it (apt-get install openssl)")
    result = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_key(directory: Path, name: str) -> Path:
    """An ECDSA P-256 private key (PKCS#8 PEM): 10 ms where RSA-2048 takes 200 ms on a busy machine."""
    key = directory / name
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key.name, cwd=directory)
    key.chmod(0o600)
    return key


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA (key, cert) that signs the apiserver's and the fake kubelet's serving certs."""
    key, cert = make_key(directory, f"{name}.key"), directory / f"{name}.crt"
    _openssl(
        "req", "-x509", "-new", "-key", key.name, "-subj", "/CN=sqlmaster-test-ca", "-days", "30",
        "-out", cert.name, cwd=directory,
    )  # fmt: skip
    return key, cert


def make_serving_cert(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A serving cert for 127.0.0.1/localhost signed by ``ca``; returns (key, cert)."""
    ca_key, ca_cert = ca
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    make_key(directory, key.name)
    _openssl("req", "-new", "-key", key.name, "-subj", f"/CN={name}", "-out", csr.name, cwd=directory)
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "30", "-extfile", ext.name, "-out", cert.name, cwd=directory,
    )  # fmt: skip
    return key, cert


def _kubeconfig_yaml(server: str, ca_file: Path, users: Sequence[tuple[str, str]], current: str) -> str:
    """A kubeconfig with one cluster and one context per (user, token); ``current`` picks the context."""
    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: sqlmaster-test",
        "  cluster:",
        f"    server: {server}",
        f"    certificate-authority: {ca_file}",
        "users:",
    ]
    for user, token in users:
        lines += [f"- name: {user}", "  user:", f"    token: {token}"]
    lines.append("contexts:")
    for user, _ in users:
        lines += [
            f"- name: sqlmaster-test-{user}",
            "  context:",
            "    cluster: sqlmaster-test",
            f"    user: {user}",
            "    namespace: default",
        ]
    lines.append(f"current-context: sqlmaster-test-{current}")
    return "\n".join(lines) + "\n"


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


class ControlPlane:
    """Start/stop a private control plane; use as a context manager or call start()/stop().

    Attributes after :meth:`start`: ``server`` (https URL), ``ca_file``, ``admin_token``,
    ``kubeconfig`` (admin, also holds the restricted context), ``restricted_kubeconfig``, ``workdir``.
    """

    def __init__(
        self,
        binaries: Binaries | None = None,
        workdir: Path | None = None,
        ready_timeout: float | None = None,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self.binaries = binaries or Binaries.find()
        self._own_workdir = workdir is None
        if workdir is None:
            reap_stale_dirs()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-"))
        # 180 s by default: on a 2-core machine shared with other jobs the apiserver took 43-60+ s to be ready
        # (5 s when idle); $SQLMASTER_K8S_READY_TIMEOUT overrides.
        self.ready_timeout = ready_timeout or float(os.environ.get("SQLMASTER_K8S_READY_TIMEOUT", "180"))
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.procs: list[_Proc] = []
        self.server = ""
        self.ca_file = self.workdir / "pki" / "ca.crt"
        self.ca_key = self.workdir / "pki" / "ca.key"
        self.admin_token = secrets.token_hex(16)
        self.restricted_token = secrets.token_hex(16)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.restricted_kubeconfig = self.workdir / "kubeconfig-restricted"
        self._etcd_dir: Path | None = None
        self.startup_seconds = 0.0
        # Seconds from start() until each component answered its health check (startup budgeting).
        self.timings: dict[str, float] = {}
        self._t0 = 0.0

    # ------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def etcd_dir(self) -> Path | None:
        """etcd's data folder (on /dev/shm when writable); removed by :meth:`stop`."""
        return self._etcd_dir

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs]

    def start(self) -> Self:
        """Start etcd, apiserver, controller-manager and scheduler; return when all are healthy."""
        started = self._t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _start(self) -> None:
        # etcd starts while the keys are made; controller-manager and scheduler start together once the
        # apiserver is ready. The apiserver is the long pole (about 6 CPU-seconds to /readyz).
        etcd_port, peer_port = free_port(), free_port()
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        # etcd fsyncs on every write; tmpfs makes that free (3.4 has no --unsafe-no-fsync).
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.workdir
        self._etcd_dir = Path(tempfile.mkdtemp(prefix=f"{_ETCD_PREFIX}{os.getpid()}-", dir=base))
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self._etcd_dir / 'data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--quota-backend-bytes=268435456",
                "--snapshot-count=5000",
                "--log-level=warn",
                "--logger=zap",
            ],
        )

        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca = make_ca(pki)
        serving_key, serving_cert = make_serving_cert(pki, "apiserver", ca)
        sa_key = make_key(pki, "sa.key")  # 1.20 signs service-account tokens with ES256 as well as RS256
        _openssl("pkey", "-in", sa_key.name, "-pubout", "-out", "sa.pub", cwd=pki)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            f'{self.admin_token},{ADMIN_USER},uid-admin,"system:masters"\n'
            f"{self.restricted_token},{RESTRICTED_USER},uid-restricted\n"
        )
        tokens.chmod(0o600)
        self._wait("etcd", lambda: self._http_ok(f"{etcd_url}/health"))

        api_port = free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                "--kubelet-preferred-address-types=InternalIP",
                # No real kubelet: the fake one serves a cert from our CA; apiserver → kubelet uses it.
                f"--kubelet-certificate-authority={self.ca_file}",
                # The `kubernetes` Service endpoint would be 127.0.0.1, which Endpoints validation rejects.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
                "--event-ttl=10m",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--v=1",
                *self.extra_apiserver_args,
            ],
        )

        users = [(ADMIN_USER, self.admin_token), (RESTRICTED_USER, self.restricted_token)]
        self.kubeconfig.write_text(_kubeconfig_yaml(self.server, self.ca_file, users, ADMIN_USER))
        self.restricted_kubeconfig.write_text(_kubeconfig_yaml(self.server, self.ca_file, users[1:], RESTRICTED_USER))
        for path in (self.kubeconfig, self.restricted_kubeconfig):
            path.chmod(0o600)

        # controller-manager and scheduler give up when the apiserver does not answer within 10 s of their
        # start (auth ConfigMap lookup, /healthz wait), which happens on a busy machine: start them after it.
        self._wait("kube-apiserver", lambda: self._http_ok(f"{self.server}/readyz", token=self.admin_token))
        cm_port, sched_port = free_port(), free_port()
        kc = str(self.kubeconfig)
        common = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.controller_manager),
                *common,
                f"--secure-port={cm_port}",
                "--port=0",
                f"--cert-dir={self.workdir / 'cm-certs'}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                # nodeipam needs a cluster CIDR; no CNI here. The rest (job, namespace, serviceaccount,
                # garbage collector, node lifecycle, ...) run as in a real cluster.
                "--controllers=*,-nodeipam",
                "--concurrent-gc-syncs=5",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.scheduler),
                *common,
                f"--secure-port={sched_port}",
                "--port=0",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            ],
        )
        self._wait("kube-controller-manager", lambda: self._http_ok(f"https://127.0.0.1:{cm_port}/healthz"))
        self._wait("kube-scheduler", lambda: self._http_ok(f"https://127.0.0.1:{sched_port}/healthz"))

    # ------------------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                # preexec_fn runs before exec; the control plane starts before any test thread exists.
                preexec_fn=_die_with_parent,
                env=self._env(),
            )
        self.procs.append(_Proc(name, popen, log))

    @staticmethod
    def _env() -> dict[str, str]:
        env = dict(os.environ)
        # Go's GC target; lower trades CPU for memory (50 cost the apiserver ~20% more CPU at startup).
        if "SQLMASTER_K8S_GOGC" in os.environ:
            env["GOGC"] = os.environ["SQLMASTER_K8S_GOGC"]
        return env

    def _wait(self, name: str, probe: Callable[[], bool]) -> None:
        proc = next(p for p in self.procs if p.name == name)
        start = time.monotonic()
        deadline = start + self.ready_timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.popen.returncode} during startup; "
                    f"its log ({proc.log}) ends with:\n{self.log_tail(name)}"
                )
            if probe():
                self.timings[name] = time.monotonic() - self._t0
                return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{name} was not ready after {self.ready_timeout:.0f} s; its log ({proc.log}) ends with:\n"
            f"{self.log_tail(name)}"
        )

    def _http_ok(self, url: str, token: str | None = None) -> bool:
        ctx = ssl.create_default_context()
        if url.startswith(self.server) and self.server:
            ctx.load_verify_locations(self.ca_file)
        else:  # controller-manager/scheduler serve self-signed certs made at startup
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(url)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, name: str, lines: int = 30) -> str:
        proc = next((p for p in self.procs if p.name == name), None)
        if proc is None or not proc.log.exists():
            return "(no log)"
        return "\n".join(proc.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise if any control-plane process has exited (a test can call this after a failure)."""
        for p in self.procs:
            if p.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{p.name} exited with code {p.popen.returncode}; log ends with:\n{self.log_tail(p.name)}"
                )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process this object started (reverse order), then delete the temporary data."""
        for p in reversed(self.procs):
            if p.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in reversed(self.procs):
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait(timeout=5)
        if self._etcd_dir is not None:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
            self._etcd_dir = None
        if self._own_workdir and os.environ.get("SQLMASTER_K8S_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------
    def api(self, restricted: bool = False) -> ApiClient:
        """A new ``kubernetes.client.ApiClient`` for the admin (default) or the restricted user."""
        from kubernetes import config

        path = self.restricted_kubeconfig if restricted else self.kubeconfig
        return config.new_client_from_config(config_file=str(path))

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each process in MiB (from /proc), for budgeting."""
        out: dict[str, float] = {}
        for p in self.procs:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{p.popen.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[p.name] = int(line.split()[1]) / 1024
        return out
