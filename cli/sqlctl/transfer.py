"""Artifact transfer: parse the reader pod's output, verify every checksum, extract safely; or copy
from an fsspec URL (s3://, gs://, hf://, file://).

Reader protocol (printed by charts/sqlmaster-artifacts/templates/reader-pod.yaml):
    ==SQLMASTER-ARTIFACTS v1==
    ==MANIFEST==
    <sha256>  ./relative/path          (one line per file, sorted)
    ==END-MANIFEST==
    ==TAR== <total bytes of the files>
    <base64 of a tar holding exactly the listed files, wrapped at any width>
    ==END-TAR==
Nothing is written to the destination until every file has been checked: files are extracted into a
hidden staging folder next to it, hashed while written, and the folder is moved into place at the end.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlctl.errors import EXIT_FAILURE, SqlctlError

MANIFEST_NAME = ".sqlctl-SHA256SUMS"  # written into the pulled folder: what was verified
REMOTE_SUMS = "SHA256SUMS"  # checked at fsspec sources when present
Progress = Callable[[int], None]


def safe_relpath(name: str) -> str:
    """Normalise an archive/manifest path; reject absolute paths and any `..` (path traversal)."""
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in (".", "")]
    if path.is_absolute() or not parts or any(p == ".." for p in parts) or "\\" in name:
        raise SqlctlError(f"refusing unsafe path {name!r} in the artifacts", "The run folder holds a bad file name.")
    return "/".join(parts)


def parse_manifest(lines: Iterable[str]) -> dict[str, str]:
    """`<sha256>  <path>` lines (sha256sum format) -> {relative path: sha256}."""
    manifest: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise SqlctlError(f"bad manifest line {line[:80]!r}", "The reader output is corrupted; pull again.")
        manifest[safe_relpath(name.lstrip("*"))] = digest.lower()
    return manifest


@dataclass
class ReaderOutput:
    """Incremental parser of the reader's log; feed lines, then `finish()`."""

    tar_file: Path
    on_bytes: Progress | None = None
    manifest_lines: list[str] = field(default_factory=list)
    total: int = 0
    state: str = "start"
    error: str = ""
    _carry: str = ""
    _out: object = None

    def feed(self, line: str) -> bool:
        """Consume one line; True once the archive is complete."""
        line = line.rstrip("\r")
        if line.startswith("==SQLMASTER-ERROR=="):
            self.error = line.removeprefix("==SQLMASTER-ERROR==").strip()
            self.state = "error"
            return True
        if self.state == "start":
            if line == "==MANIFEST==":
                self.state = "manifest"
        elif self.state == "manifest":
            if line == "==END-MANIFEST==":
                self.state = "between"
            else:
                self.manifest_lines.append(line)
        elif self.state == "between":
            if line.startswith("==TAR=="):
                self.total = int(line.split()[1]) if len(line.split()) > 1 else 0
                self.state = "tar"
                self._out = open(self.tar_file, "wb")  # noqa: SIM115 - closed on END-TAR or in close()
        elif self.state == "tar":
            if line == "==END-TAR==":
                self._decode(final=True)
                self.close()
                self.state = "done"
                return True
            self._carry += line.strip()
            self._decode(final=False)
        return False

    def _decode(self, final: bool) -> None:
        usable = len(self._carry) if final else len(self._carry) - len(self._carry) % 4
        chunk, self._carry = self._carry[:usable], self._carry[usable:]
        if not chunk:
            return
        try:
            data = base64.b64decode(chunk, validate=True)
        except binascii.Error as exc:
            raise SqlctlError("the artifact stream is not valid base64", "Pull again.") from exc
        self._out.write(data)  # type: ignore[attr-defined]
        if self.on_bytes:
            self.on_bytes(len(data))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()  # type: ignore[attr-defined]
            self._out = None


def _copy_hashing(src: object, dest: Path, on_bytes: Progress | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        while chunk := src.read(1 << 20):  # type: ignore[attr-defined]
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest(), size


def _staging(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))


def _publish(staging: Path, dest: Path, manifest: dict[str, str]) -> None:
    """Record what was verified, then move the staging folder into place (replacing an older pull)."""
    (staging / MANIFEST_NAME).write_text("".join(f"{h}  ./{p}\n" for p, h in sorted(manifest.items())))
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
        staging.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(dest)


def extract_verified(tar_path: Path, manifest: dict[str, str], dest: Path) -> dict[str, int]:
    """Extract regular files listed in `manifest`, verifying each sha256; returns {path: size}."""
    staging = _staging(dest)
    sizes: dict[str, int] = {}
    try:
        with tarfile.open(tar_path, mode="r:") as archive:
            for member in archive:
                if member.isdir():
                    continue
                name = safe_relpath(member.name)
                if not member.isreg():
                    raise SqlctlError(f"refusing {name!r}: not a regular file (link or device)", "Pull again.")
                if name not in manifest:
                    raise SqlctlError(f"{name!r} is in the archive but not in the manifest", "Pull again.")
                source = archive.extractfile(member)
                digest, size = _copy_hashing(source, staging / name, None)
                if digest != manifest[name]:
                    raise SqlctlError(
                        f"checksum mismatch for {name} (expected {manifest[name][:12]}…, got {digest[:12]}…)",
                        "The file changed while it was read or the transfer was corrupted; pull again "
                        "once the run has finished.",
                        code=EXIT_FAILURE,
                    )
                sizes[name] = size
        missing = sorted(set(manifest) - set(sizes))
        if missing:
            raise SqlctlError(
                f"{len(missing)} file(s) of the manifest are missing from the archive, e.g. {missing[0]}",
                "The log was cut short (kubelet log rotation caps a container log near 10 MiB by default); "
                "pull again or write runs to an s3://, gs:// or hf:// destination.",
                code=EXIT_FAILURE,
            )
        _publish(staging, dest, manifest)
    except (tarfile.TarError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SqlctlError(f"the artifact archive is damaged ({exc})", "Pull again.", code=EXIT_FAILURE) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sizes


@dataclass
class FsspecListing:
    fs: object
    root: str
    files: dict[str, int]  # relative path -> size
    sums: dict[str, str] | None  # from SHA256SUMS at the source, when present


def list_fsspec(url: str) -> FsspecListing:
    """List a run folder at an fsspec URL; read its SHA256SUMS if it has one."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise SqlctlError(
            f"cannot open {url} ({exc})",
            "Install the filesystem for that scheme (s3fs for s3://, gcsfs for gs://, huggingface_hub for hf://).",
        ) from exc
    root = root.rstrip("/")
    if not fs.exists(root):
        raise SqlctlError(f"{url} does not exist", "Check --source and the run id.")
    files: dict[str, int] = {}
    for path, info in fs.find(root, detail=True).items():
        if info.get("type", "file") == "file":
            files[safe_relpath(path[len(root) :].lstrip("/"))] = int(info.get("size") or 0)
    sums = None
    if REMOTE_SUMS in files:
        with fs.open(f"{root}/{REMOTE_SUMS}", "r") as handle:
            sums = parse_manifest(handle.read().splitlines())
        files.pop(REMOTE_SUMS)
    return FsspecListing(fs=fs, root=root, files=files, sums=sums)


def pull_fsspec(listing: FsspecListing, dest: Path, on_bytes: Progress | None = None) -> dict[str, str]:
    """Copy every file, hashing as it goes; verify sizes always and sha256 against SHA256SUMS."""
    staging = _staging(dest)
    got: dict[str, str] = {}
    try:
        if listing.sums is not None:
            missing = sorted(set(listing.sums) - set(listing.files))
            if missing:
                raise SqlctlError(
                    f"{missing[0]} is listed in SHA256SUMS but missing at the source",
                    "Check the run's upload.",
                )
        for name, size in sorted(listing.files.items()):
            with listing.fs.open(f"{listing.root}/{name}", "rb") as src:  # type: ignore[attr-defined]
                digest, copied = _copy_hashing(src, staging / name, on_bytes)
            if copied != size:
                raise SqlctlError(
                    f"size mismatch for {name} ({copied} bytes copied, {size} listed)", "Pull again.", code=1
                )
            if listing.sums is not None and listing.sums.get(name) != digest:
                raise SqlctlError(
                    f"checksum mismatch for {name} against the source's SHA256SUMS",
                    "The source changed or is corrupted; pull again.",
                    code=EXIT_FAILURE,
                )
            got[name] = digest
        _publish(staging, dest, got)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return got
