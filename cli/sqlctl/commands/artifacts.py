"""`sqlctl artifacts pull RUN`: bring a run's folder here, every file verified by sha256.

From the cluster: a short-lived reader pod (charts/sqlmaster-artifacts; no GPU, the run's PVC mounted
read-only) prints a sha256 manifest and a base64 tar of /data/runs/<run-id>/ to its log; sqlctl
follows that log, decodes it, checks every checksum, extracts without path traversal, and deletes
the pod. From object storage: `--source s3://bucket/runs` (or gs://, hf://, file://; or the Job's
`sqlmaster.io/artifacts-uri` annotation) copies `<source>/<run-id>/` with fsspec.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from sqlctl.app import app as root
from sqlctl.errors import SqlctlError
from sqlctl.options import (
    ChartDirOpt,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    RunIdArg,
    cli_errors,
    kube_settings,
)
from sqlmaster import exitcodes

app = typer.Typer(no_args_is_help=True)
root.add_typer(app, name="artifacts", help="Bring a run's outputs to this machine.")

ARTIFACTS_URI_ANNOTATION = "sqlmaster.io/artifacts-uri"
# A DNS-1123 subdomain, as Kubernetes requires of object names (a claim name also becomes a chart value).
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _progress(total: int | None, label: str) -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=False,
        console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True),
    )
    task = progress.add_task(label, total=total or None)
    return progress, task


def _pull_source(source: str, run_id: str, dest: Path) -> dict[str, str]:
    from sqlctl.transfer import list_fsspec, pull_fsspec, report_skipped_links

    url = source.rstrip("/") + "/" + run_id
    listing = list_fsspec(url)
    report_skipped_links(listing.skipped_links)
    progress, task = _progress(sum(listing.files.values()), f"pulling {run_id}")
    with progress:
        got = pull_fsspec(listing, dest, lambda n: progress.advance(task, n))
    how = (
        "sha256 verified against SHA256SUMS" if listing.sums is not None else "sizes verified (no SHA256SUMS at source)"
    )
    if listing.sums is None:
        print(f"warning: {url} has no SHA256SUMS: {how}; local sums written to {dest}", file=sys.stderr)
    print(f"{len(got)} files from {url} -> {dest} ({how})", file=sys.stderr)
    return got


def _reader_manifests(kube: Any, chart_dir: Path | None, run_id: str, claim: str, name: str) -> list[dict]:
    from sqlctl.paths import ARTIFACTS_CHART, resolve_paths
    from sqlctl.render import RenderRequest, render

    paths = resolve_paths(chart_dir, None, need_jobs=False)
    manifests = render(
        RenderRequest(
            release=name,
            chart=paths.chart(ARTIFACTS_CHART),
            namespace=kube.namespace,
            set_strings=[f"runId={run_id}", f"claimName={claim}", f"name={name}"],
            kube_version=kube.server_version or None,
        )
    )
    for manifest in manifests:
        manifest.setdefault("metadata", {})["namespace"] = kube.namespace
    return manifests


def _wait_started(kube: Any, name: str, timeout: float) -> None:
    from sqlctl.runs import pod_phase, scheduling_reason

    deadline = time.monotonic() + timeout
    told = ""
    while True:
        pod = kube.get("v1", "Pod", name)
        if pod_phase(pod) != "Pending":
            return
        reason = scheduling_reason(kube, pod)
        if reason and reason != told:
            print(f"sqlctl: reader pod {name} is Pending ({reason})", file=sys.stderr)
            told = reason
        if time.monotonic() > deadline:
            raise SqlctlError(
                f"the reader pod {name} did not start in {timeout:.0f} s ({told or 'Pending'})",
                "Check that the run's PVC can be mounted here (ReadWriteOnce claims need the node that holds "
                "them) and that the busybox image can be pulled.",
                code=exitcodes.FAILURE,
            )
        time.sleep(0.5)


def _read_reader_log(kube: Any, name: str, tar_file: Path) -> Any:
    from sqlctl.logstream import _iter_lines
    from sqlctl.transfer import ReaderOutput

    progress, task = _progress(None, "reading")
    reader = ReaderOutput(tar_file=tar_file, on_bytes=lambda n: progress.advance(task, n))
    path = f"/api/v1/namespaces/{kube.namespace}/pods/{name}/log"
    tail: list[str] = []
    with progress:
        response = kube.stream(path, [("container", "reader"), ("follow", "true")], timeout=(10, 300))
        try:
            for line in _iter_lines(response):
                if reader.state == "between" and line.startswith("==TAR=="):
                    reader.feed(line)
                    progress.update(task, total=reader.total or None, description="pulling")
                    continue
                if reader.feed(line):
                    break
                if reader.state != "tar":
                    tail = ([*tail, line])[-5:]
        finally:
            reader.close()
            response.release_conn()
    if reader.state == "error":
        raise SqlctlError(f"the reader pod reports: {reader.error}", "Check the run id and that the run wrote output.")
    if reader.state != "done":
        raise SqlctlError(
            "the reader pod's log ended before the archive was complete",
            "Pull again; for very large runs write to an s3://, gs:// or hf:// destination instead.",
            code=exitcodes.FAILURE,
            detail="\n".join(tail),
        )
    return reader


@dataclass(frozen=True)
class _ReaderOptions:
    claim: str | None  # --claim, else the claim the run's Job mounts
    timeout: float  # seconds for the reader pod to start
    keep: bool  # --keep-reader
    chart_dir: Path | None


def _pull_with_reader(kube: Any, jobs: list[dict], run_id: str, target: Path, opts: _ReaderOptions) -> dict[str, int]:
    """Start a reader pod on the run's claim, verify and extract what it prints, delete the pod."""
    import secrets

    from sqlctl import preflight
    from sqlctl.apply import create_objects
    from sqlctl.manifests import claim_names, pod_spec
    from sqlctl.transfer import extract_verified, parse_manifest, report_skipped_links

    claims = [c for j in jobs for c in claim_names(pod_spec(j) or {})]
    claim = opts.claim or (claims[0] if claims else None)
    if not claim:
        raise SqlctlError(f"run {run_id} mounts no PersistentVolumeClaim", "Pass --claim NAME or --source URL.")
    name = f"{run_id}-r{secrets.token_hex(2)}"
    manifests = _reader_manifests(kube, opts.chart_dir, run_id, claim, name)
    preflight.check_rbac(kube, kube.namespace, manifests)
    create_objects(kube, manifests, run_id, kube.namespace)
    try:
        _wait_started(kube, name, opts.timeout)
        with tempfile.TemporaryDirectory(prefix="sqlctl-pull-") as tmp:
            reader = _read_reader_log(kube, name, Path(tmp) / "run.tar")
            manifest = parse_manifest(reader.manifest_lines)
            report_skipped_links(reader.skipped_links)
            return extract_verified(reader.tar_file, manifest, target)
    finally:
        if not opts.keep:
            kube.delete("v1", "Pod", name, grace_period=0)


@app.command("pull")
@cli_errors
def pull(
    ctx: typer.Context,
    run_id: RunIdArg,
    dest: Annotated[Path, typer.Option("--dest", help="Folder to pull into; the run lands in DEST/<run-id>/.")] = Path(
        "pulled"
    ),
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="fsspec URL holding runs (s3://, gs://, hf://, file://): pulls SOURCE/<run-id>/."
        ),
    ] = None,
    claim: Annotated[
        str | None, typer.Option("--claim", help="PVC name (default: the one the run's Job mounts).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the reader pod to start.")] = 300.0,
    keep_reader: Annotated[bool, typer.Option("--keep-reader", help="Leave the reader pod (for debugging).")] = False,
    chart_dir: ChartDirOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Pull a run's adapter, metrics, evaluation report and logs into DEST/<run-id>/, sha256-verified.

    An existing DEST/<run-id>/ is merged into, never emptied: your own files there are left alone."""
    from sqlctl.transfer import check_destination

    target = dest / run_id
    check_destination(target)
    if claim is not None and not _CLAIM.match(claim):
        raise SqlctlError(f"--claim {claim[:80]!r} is not a valid claim name", "Use the PVC's name (kubectl get pvc).")
    if source:
        _pull_source(source, run_id, target)
        return

    from sqlctl.kube import connect
    from sqlctl.runs import run_jobs

    kube = connect(kube_settings(ctx, kubeconfig, context, namespace))
    jobs = run_jobs(kube, run_id, kube.namespace)
    uri = next((u for j in jobs if (u := (j["metadata"].get("annotations") or {}).get(ARTIFACTS_URI_ANNOTATION))), None)
    if uri:
        _pull_source(uri.rstrip("/").removesuffix("/" + run_id), run_id, target)
        return
    sizes = _pull_with_reader(kube, jobs, run_id, target, _ReaderOptions(claim, timeout, keep_reader, chart_dir))
    total = sum(sizes.values())
    print(f"{len(sizes)} files, {total} bytes, every sha256 verified -> {target}", file=sys.stderr)
