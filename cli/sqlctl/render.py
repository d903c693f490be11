"""Render a chart with `helm template`: the charts are the only source of manifests.

sqlctl never builds a Job in Python; it asks helm to render the chart with the run's values and then
sends the resulting objects to the API server. Schema failures from `values.schema.json` surface
here with helm's own message.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sqlctl.errors import SqlctlError

Manifest = dict[str, Any]

# helm prints this when values.schema.json rejects the values (helm 3.x wording).
_SCHEMA_MARKERS = ("values don't meet the specifications of the schema", "jsonschema")


@dataclass
class RenderRequest:
    """Everything `helm template` needs for one release."""

    release: str
    chart: Path
    namespace: str
    # Values files in helm's order; at most one mapping, which helm reads from stdin (`-f -`) at its place.
    value_files: list[Path | dict[str, Any]] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)  # user --set, applied after value files (helm order)
    set_json: list[str] = field(default_factory=list)  # --recipe-set, typed as the recipe expects
    set_strings: list[str] = field(default_factory=list)  # sqlctl's own (runId), never typed by helm
    kube_version: str | None = None

    def argv(self, helm: Path) -> list[str]:
        args = [str(helm), "template", self.release, str(self.chart), "--namespace", self.namespace]
        for layer in self.value_files:
            args += ["-f", "-" if isinstance(layer, dict) else str(layer)]
        for flag, assignments in (("--set", self.sets), ("--set-json", self.set_json)):
            for assignment in assignments:
                args += [flag, assignment]
        for assignment in self.set_strings:
            args += ["--set-string", assignment]
        if self.kube_version:
            args += ["--kube-version", self.kube_version]
        return args

    def stdin(self) -> str | None:
        """The one mapping among the values files, as YAML for `-f -`; None when there is none."""
        mappings = [layer for layer in self.value_files if isinstance(layer, dict)]
        if len(mappings) > 1:
            raise ValueError("helm reads at most one values file from stdin")
        return yaml.safe_dump(mappings[0]) if mappings else None


def helm_binary() -> Path:
    """The helm binary (from `sqlctl.tools.find_helm`, which explains how to install it when missing)."""
    from sqlctl.tools import find_helm  # owned by the charts part; raises a clear error itself

    try:
        return find_helm()
    except SqlctlError:
        raise
    except Exception as exc:  # find_helm's own error type: keep its message, add our exit code
        raise SqlctlError(str(exc), "Run scripts/tools.sh to install helm into .tools/bin.") from exc


def render(request: RenderRequest, helm: Path | None = None) -> list[Manifest]:
    """Run `helm template` and return the rendered objects (empty documents dropped)."""
    argv = request.argv(helm or helm_binary())
    try:
        proc = subprocess.run(argv, input=request.stdin(), capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SqlctlError("helm template did not finish in 120 s", "Check the chart for loops.") from exc
    if proc.returncode != 0:
        message = proc.stderr.strip() or proc.stdout.strip()
        if any(marker in message for marker in _SCHEMA_MARKERS):
            raise SqlctlError(
                f"the chart {request.chart.name} refused these values (values.schema.json)",
                "Fix the value named below in your --values file or --set.",
                detail=message,
            )
        raise SqlctlError(
            f"helm template failed for chart {request.chart.name}",
            "Read helm's message below and fix the named value.",
            detail=message,
        )
    return parse_manifests(proc.stdout)


def parse_manifests(text: str) -> list[Manifest]:
    """Split helm's multi-document YAML into objects, skipping empty documents."""
    from sqlmaster.boundedyaml import YamlTooBig, load_all

    try:
        docs = [doc for doc in load_all(text, "helm's rendered manifests") if doc]
    except YamlTooBig as exc:  # the user's values reach the manifests (a recipe ConfigMap) as given
        raise SqlctlError(str(exc).rpartition(". ")[0], "Check the values and --set given to helm.") from exc
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise SqlctlError("helm rendered something that is not a Kubernetes object", "Fix the chart.")
    return docs


def dump_manifests(manifests: list[Manifest], fmt: str) -> str:
    """Manifests as a YAML stream (`---` separated) or a JSON List."""
    if fmt == "json":
        import json

        return json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2)
    return "".join("---\n" + yaml.safe_dump(m, sort_keys=False) for m in manifests)
