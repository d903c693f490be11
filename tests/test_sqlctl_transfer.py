"""Artifact transfer without a cluster: the reader pod's own script (from the chart) run locally,
parsed, verified and extracted; tampering, truncation and path traversal are refused; fsspec copies."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from sqlctl.errors import SqlctlError
from sqlctl.main import app
from sqlctl.render import RenderRequest, render
from sqlctl.transfer import ReaderOutput, extract_verified, parse_manifest, safe_relpath
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def make_run(root: Path) -> dict[str, bytes]:
    """A run folder shaped like docs/design.md's run directory."""
    files = {
        "tiny/run.json": b'{"model": "tiny"}\n',
        "tiny/metrics.json": b'{"train_loss": 1.23}\n',
        "tiny/adapter/adapter_model.safetensors": os.urandom(300_000),
        "tiny/adapter/adapter_config.json": b"{}",
        "tiny/eval/sql-create-context-test/metrics.json": b'{"execution_accuracy": 0.5}',
        "tiny/logs/train.log": b"step 1\nstep 2\n",
        "tiny/name with space.txt": b"ok",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def reader_script() -> str:
    pod = render(
        RenderRequest(
            release="r",
            chart=REPO / "charts" / "sqlmaster-artifacts",
            namespace="n",
            set_strings=["runId=run-1", "claimName=c"],
        )
    )[0]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]


def run_reader(run_dir: Path, tmp: Path) -> list[str]:
    """Run the chart's reader script here (coreutils instead of busybox), as the fake kubelet does."""
    out = subprocess.run(
        ["/bin/sh", "-c", reader_script()],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], "RUN_DIR": str(run_dir), "TMPDIR": str(tmp)},
    )
    return out.stdout.splitlines()


def feed(lines: list[str], tar_file: Path) -> ReaderOutput:
    reader = ReaderOutput(tar_file=tar_file)
    for line in lines:
        if reader.feed(line):
            break
    reader.close()
    return reader


def test_reader_output_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "pvc" / "runs" / "run-1"
    files = make_run(run_dir)
    lines = run_reader(run_dir, tmp_path)
    reader = feed(lines, tmp_path / "a.tar")
    assert reader.state == "done"
    assert reader.total == sum(len(v) for v in files.values())
    manifest = parse_manifest(reader.manifest_lines)
    assert set(manifest) == set(files)
    dest = tmp_path / "pulled" / "run-1"
    sizes = extract_verified(reader.tar_file, manifest, dest)
    assert sizes == {k: len(v) for k, v in files.items()}
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
    assert (dest / ".sqlctl-SHA256SUMS").read_text().count("\n") == len(files)
    # pulling again merges into the folder: nothing doubled, no staging left behind
    extract_verified(reader.tar_file, manifest, dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["run-1"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pull_into_an_existing_folder_keeps_the_users_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "pvc" / "run-1"
    files = make_run(run_dir)
    reader = feed(run_reader(run_dir, tmp_path), tmp_path / "a.tar")
    manifest = parse_manifest(reader.manifest_lines)
    dest = tmp_path / "pulled" / "run-1"
    extract_verified(reader.tar_file, manifest, dest)
    (dest / "my-notes.txt").write_text("mine")  # the user's own file
    (dest / "tiny" / "analysis").mkdir()
    (dest / "tiny" / "analysis" / "plot.png").write_bytes(b"png")

    # the run moved on: metrics changed, a new file appeared; pulling again updates our files only
    (run_dir / "tiny" / "metrics.json").write_bytes(b'{"train_loss": 0.5}\n')
    (run_dir / "tiny" / "eval" / "report.md").write_text("# report")
    reader = feed(run_reader(run_dir, tmp_path), tmp_path / "b.tar")
    extract_verified(reader.tar_file, parse_manifest(reader.manifest_lines), dest)
    assert (dest / "my-notes.txt").read_text() == "mine"
    assert (dest / "tiny" / "analysis" / "plot.png").read_bytes() == b"png"
    assert (dest / "tiny" / "metrics.json").read_bytes() == b'{"train_loss": 0.5}\n'
    assert (dest / "tiny" / "eval" / "report.md").read_text() == "# report"
    err = capsys.readouterr().err
    assert "merged into the existing" in err and "1 new, 1 updated" in err and "2 other file(s)" in err

    # a file the user changed since the pull is never overwritten: the pull stops and changes nothing
    (dest / "tiny" / "run.json").write_text("edited by hand")
    (run_dir / "tiny" / "run.json").write_text('{"model": "tiny", "status": "completed"}')
    before = snapshot(dest.parent)
    reader = feed(run_reader(run_dir, tmp_path), tmp_path / "c.tar")
    with pytest.raises(SqlctlError, match=r"1 file\(s\) that differ .* e\.g\. tiny/run\.json; nothing was changed"):
        extract_verified(reader.tar_file, parse_manifest(reader.manifest_lines), dest)
    assert snapshot(dest.parent) == before
    assert len(files) == 7


def test_source_symlinks_are_reported_not_copied(tmp_path: Path) -> None:
    run_dir = tmp_path / "pvc" / "run-1"
    make_run(run_dir)
    (run_dir / "tiny" / "latest").symlink_to("adapter")
    (run_dir / "tiny" / "secret").symlink_to("/etc/hostname")
    reader = feed(run_reader(run_dir, tmp_path), tmp_path / "a.tar")
    assert reader.skipped_links == ["./tiny/latest", "./tiny/secret"]
    assert not any("latest" in line or "secret" in line for line in reader.manifest_lines)
    bucket = tmp_path / "pvc"
    result = CliRunner().invoke(
        app, ["artifacts", "pull", "run-1", "--source", str(bucket), "--dest", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "warning: 2 symbolic link(s) at the source were not copied: ./tiny/latest, ./tiny/secret" in result.output
    assert not (tmp_path / "out" / "run-1" / "tiny" / "secret").exists()


def test_dest_that_is_a_file_is_refused(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    make_run(bucket / "run-1")
    blocker = tmp_path / "afile"
    blocker.write_text("keep")
    result = CliRunner().invoke(app, ["artifacts", "pull", "run-1", "--source", str(bucket), "--dest", str(blocker)])
    assert result.exit_code == 2 and result.output.startswith(f"error: {blocker} exists and is not a folder.")
    assert blocker.read_text() == "keep"


def test_missing_run_folder_is_reported(tmp_path: Path) -> None:
    reader = feed(run_reader(tmp_path / "nope", tmp_path), tmp_path / "a.tar")
    assert reader.state == "error" and "no folder" in reader.error


def test_tampered_file_fails_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    reader = feed(run_reader(run_dir, tmp_path), tmp_path / "a.tar")
    manifest = parse_manifest(reader.manifest_lines)
    manifest["tiny/metrics.json"] = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(SqlctlError, match=r"checksum mismatch for tiny/metrics\.json"):
        extract_verified(reader.tar_file, manifest, tmp_path / "out" / "run")
    assert not (tmp_path / "out" / "run").exists()
    assert list((tmp_path / "out").iterdir()) == []  # staging removed too


def test_truncated_stream_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    lines = run_reader(run_dir, tmp_path)
    cut = lines[: len(lines) // 2]  # the log ended early (e.g. rotation)
    reader = feed(cut, tmp_path / "a.tar")
    assert reader.state == "tar"  # never reached ==END-TAR==
    with pytest.raises(SqlctlError):
        extract_verified(reader.tar_file, parse_manifest(reader.manifest_lines), tmp_path / "out")


def _tar_with(member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        archive.addfile(member, io.BytesIO(data) if member.isreg() else None)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"evil-{os.getpid()}-{member.name.replace('/', '_')}.tar"
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "a/../../evil"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    member = tarfile.TarInfo(name)
    member.size = 1
    tar = _tar_with(member)
    try:
        with pytest.raises(SqlctlError, match="unsafe path"):
            extract_verified(tar, {"evil": hashlib.sha256(b"x").hexdigest()}, tmp_path / "out")
    finally:
        tar.unlink()
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_links_are_refused(tmp_path: Path) -> None:
    member = tarfile.TarInfo("link")
    member.type = tarfile.SYMTYPE
    member.linkname = "/etc/passwd"
    tar = _tar_with(member)
    try:
        with pytest.raises(SqlctlError, match="not a regular file"):
            extract_verified(tar, {"link": "0" * 64}, tmp_path / "out")
    finally:
        tar.unlink()


def test_manifest_parsing_rejects_garbage() -> None:
    with pytest.raises(SqlctlError, match="bad manifest line"):
        parse_manifest(["not a manifest line"])
    with pytest.raises(SqlctlError, match="unsafe path"):
        parse_manifest([f"{'a' * 64}  ../../x"])
    assert safe_relpath("./a/./b") == "a/b"


def test_corrupt_base64_is_refused(tmp_path: Path) -> None:
    reader = ReaderOutput(tar_file=tmp_path / "a.tar")
    for line in ["==MANIFEST==", "==END-MANIFEST==", "==TAR== 3"]:
        reader.feed(line)
    with pytest.raises(SqlctlError, match="not valid base64"):
        reader.feed("!!!!")
    reader.close()
    assert base64  # (module used above through the reader)


# --- fsspec sources (file:// stands in for s3://, gs://, hf://) ----------------------------------------


def _sums(root: Path) -> str:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  ./{path.relative_to(root).as_posix()}\n")
    return "".join(lines)


def test_pull_from_fsspec_source_verifies_sha256(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket" / "runs"
    files = make_run(bucket / "run-1")
    (bucket / "run-1" / "SHA256SUMS").write_text(_sums(bucket / "run-1"))
    dest = tmp_path / "pulled"
    result = CliRunner().invoke(
        app, ["artifacts", "pull", "run-1", "--source", f"file://{bucket}", "--dest", str(dest)]
    )
    assert result.exit_code == 0, result.output
    assert "sha256 verified against SHA256SUMS" in result.output
    for name, data in files.items():
        assert (dest / "run-1" / name).read_bytes() == data


def test_fsspec_source_tampering_is_detected(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    make_run(bucket / "run-1")
    (bucket / "run-1" / "SHA256SUMS").write_text(_sums(bucket / "run-1"))
    (bucket / "run-1" / "tiny" / "metrics.json").write_bytes(b'{"train_loss": 0.01}\n')  # changed after upload
    result = CliRunner().invoke(
        app, ["artifacts", "pull", "run-1", "--source", f"file://{bucket}", "--dest", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "checksum mismatch for tiny/metrics.json" in result.output
    assert not (tmp_path / "out" / "run-1").exists()


def test_fsspec_source_without_sums_warns(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    make_run(bucket / "run-1")
    result = CliRunner().invoke(
        app, ["artifacts", "pull", "run-1", "--source", str(bucket), "--dest", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "no SHA256SUMS" in result.output
    missing = CliRunner().invoke(app, ["artifacts", "pull", "run-2", "--source", str(bucket)])
    assert missing.exit_code == 2 and "does not exist" in missing.output
