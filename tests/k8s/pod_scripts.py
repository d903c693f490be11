"""What a pod "does" on the fake kubelet: :class:`Script`, the :class:`Rule` that picks it, and helpers.

See :mod:`tests.k8s.fake_kubelet` for how scripts are chosen and played.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCRIPT_ANNOTATION = "fake-kubelet.sqlmaster.io/script"
ARTIFACT_READER_LABELS: Mapping[str, str] = {"sqlmaster.io/role": "artifact-reader"}

Pod = dict[str, Any]
"""A pod as the API returns it (JSON, camelCase keys): ``pod["metadata"]["labels"]``."""
OutputFn = Callable[[Pod, str], Iterable[str | bytes]]


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
    restart_delay: back-off before the first restart; it doubles with each further restart (cap 300 s).
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
    restart_delay: float = 0.2

    @classmethod
    def from_json(cls, text: str) -> Script:
        """Parse the ``fake-kubelet.sqlmaster.io/script`` annotation (unknown keys are an error)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{SCRIPT_ANNOTATION} must hold a JSON object, got {text!r}")
        allowed = {f.name for f in fields(cls)} - {"output"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"{SCRIPT_ANNOTATION}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
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


class ScriptExit(Exception):
    """Raised by an ``output`` callable to end the container early with an exit code and last lines."""

    def __init__(self, code: int, lines: list[str]) -> None:
        super().__init__(code)
        self.code, self.lines = code, lines


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
            raise ScriptExit(2, [f"tar: {directory}: Cannot open: No such file or directory"])
        yield from tar_base64_lines(Path(directory), gzip=gzip)

    return Script(output=output)
