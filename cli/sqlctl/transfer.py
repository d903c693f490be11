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
An existing destination is merged into, never emptied: files the user added stay, files of an earlier pull
(recorded in its .sqlctl-SHA256SUMS and unchanged since) are updated, and a file that differs from the
run's and is not from an earlier pull stops the pull before anything is written. Symbolic links at the
source are not copied (the reader lists regular files only); each skipped link is reported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlctl.errors import SqlctlError
from sqlmaster import exitcodes

MANIFEST_NAME = ".sqlctl-SHA256SUMS"  # written into the pulled folder: what was verified
REMOTE_SUMS = "SHA256SUMS"  # checked at fsspec sources when present
SKIPPED_LINK = "==SKIPPED-LINK=="  # reader output: a symbolic link it did not copy
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
    skipped_links: list[str] = field(default_factory=list)
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
            if line.startswith(SKIPPED_LINK):
                self.skipped_links.append(line.removeprefix(SKIPPED_LINK).strip())
            elif line == "==MANIFEST==":
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


def report_skipped_links(links: list[str]) -> None:
    """Say which symbolic links at the source were not copied."""
    if links:
        shown = ", ".join(links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
        print(f"warning: {len(links)} symbolic link(s) at the source were not copied: {shown}", file=sys.stderr)


def check_destination(dest: Path) -> None:
    """`dest` (DEST/<run-id>) and its parents must be folders or not exist; checked before any transfer."""
    for path in (dest, *dest.parents):
        if path.exists() and not path.is_dir():
            raise SqlctlError(f"{path} exists and is not a folder", "Pass a folder to --dest.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_sums(path: Path) -> dict[str, str]:
    try:
        return parse_manifest(path.read_text().splitlines()) if path.is_file() else {}
    except (SqlctlError, OSError, UnicodeDecodeError):
        return {}  # a damaged record only means no file counts as ours


def _merge_action(dest: Path, name: str, digest: str, ours: dict[str, str]) -> str:
    """new | same | update (an earlier pull's file, unchanged since) | conflict (the user's own)."""
    target = dest / name
    parents = [p for p in target.relative_to(dest).parents if str(p) != "."]
    if any((dest / p).is_symlink() or ((dest / p).exists() and not (dest / p).is_dir()) for p in parents):
        return "conflict"
    if target.is_symlink() or (target.exists() and not target.is_file()):
        return "conflict"
    if not target.exists():
        return "new"
    current = _sha256(target)
    if current == digest:
        return "same"
    return "update" if ours.get(name) == current else "conflict"


def _merge(staging: Path, dest: Path, manifest: dict[str, str]) -> None:
    """Move the verified files into an existing `dest` without deleting or overwriting the user's files."""
    ours = _read_sums(dest / MANIFEST_NAME)
    actions = {name: _merge_action(dest, name, digest, ours) for name, digest in manifest.items()}
    conflicts = sorted(name for name, action in actions.items() if action == "conflict")
    if conflicts:
        raise SqlctlError(
            f"{dest} already holds {len(conflicts)} file(s) that differ from the run's and are not from an "
            f"earlier pull, e.g. {conflicts[0]}; nothing was changed",
            "Move those files away, or pull into another --dest.",
        )
    for name, action in actions.items():
        if action in ("new", "update"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dest / name)
    kept = {**{n: d for n, d in ours.items() if (dest / n).is_file()}, **manifest}
    _write_sums(dest, kept)
    shutil.rmtree(staging, ignore_errors=True)
    others = sum(
        1 for p in dest.rglob("*") if p.is_file() and p.relative_to(dest).as_posix() not in {*kept, MANIFEST_NAME}
    )
    count = {a: list(actions.values()).count(a) for a in ("new", "update", "same")}
    print(
        f"sqlctl: merged into the existing {dest} (nothing deleted): {count['new']} new, {count['update']} updated "
        f"from an earlier pull, {count['same']} unchanged; {others} other file(s) there left as they were",
        file=sys.stderr,
    )


def _write_sums(folder: Path, sums: dict[str, str]) -> None:
    tmp = folder / f"{MANIFEST_NAME}.tmp"
    tmp.write_text("".join(f"{h}  ./{p}\n" for p, h in sorted(sums.items())))
    os.replace(tmp, folder / MANIFEST_NAME)


def _publish(staging: Path, dest: Path, manifest: dict[str, str]) -> None:
    """Record what was verified and move the staging folder into place, or merge into an existing `dest`."""
    if dest.exists():
        _merge(staging, dest, manifest)
        return
    _write_sums(staging, manifest)
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
                        code=exitcodes.FAILURE,
                    )
                sizes[name] = size
        missing = sorted(set(manifest) - set(sizes))
        if missing:
            raise SqlctlError(
                f"{len(missing)} file(s) of the manifest are missing from the archive, e.g. {missing[0]}",
                "The log was cut short (kubelet log rotation caps a container log near 10 MiB by default); "
                "pull again or write runs to an s3://, gs:// or hf:// destination.",
                code=exitcodes.FAILURE,
            )
        _publish(staging, dest, manifest)
    except (tarfile.TarError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SqlctlError(f"the artifact archive is damaged ({exc})", "Pull again.", code=exitcodes.FAILURE) from exc
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
    skipped_links: list[str] = field(default_factory=list)  # symbolic links at the source, not copied


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
    links: list[str] = []
    for path, info in fs.find(root, detail=True).items():
        name = safe_relpath(path[len(root) :].lstrip("/"))
        if info.get("islink"):
            links.append(f"./{name}")
        elif info.get("type", "file") == "file":
            files[name] = int(info.get("size") or 0)
    sums = None
    if REMOTE_SUMS in files:
        with fs.open(f"{root}/{REMOTE_SUMS}", "r") as handle:
            sums = parse_manifest(handle.read().splitlines())
        files.pop(REMOTE_SUMS)
    return FsspecListing(fs=fs, root=root, files=files, sums=sums, skipped_links=sorted(links))


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
                    code=exitcodes.FAILURE,
                )
            got[name] = digest
        _publish(staging, dest, got)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return got
