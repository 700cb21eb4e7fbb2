"""Atomic, verifiable checkpoints.

Files are written to a temporary file in the same folder, flushed, then renamed: a reader sees either the
previous file or the complete new one, never half of one; a crash mid-save leaves a ``*.tmp`` that is ignored
(and cleaned up at the next save). Files are ``<run>/checkpoints/step_<8 digits>.pt`` (one consolidated file:
single process and DDP) or ``step_<8 digits>.dcp/`` folders (FSDP: sharded, written with
``torch.distributed.checkpoint`` and complete only once ``meta.json`` is in them).

Every file carries a SHA-256 of its content in a sidecar ``<file>.sha256`` (``sha256sum`` format, so
``sha256sum -c`` checks it too), computed while the file is written (in a second thread) and put in place
*before* the file is renamed into place; a sharded folder holds ``checksums.sha256`` for all its files.
Loading verifies it: a mismatch is a :class:`CheckpointCorruptError` naming the file and both digests; a
file without a checksum (older runs) loads with a note that it could not be verified. After a save the new
file is read back and verified before older checkpoints are pruned, so the last verified checkpoint is never
deleted first. :func:`usable_checkpoints` yields the checkpoints of a folder newest first, for a resume that
steps past damaged ones (renamed aside as ``*.corrupt``, never deleted).
"""
from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "save_sharded_checkpoint", "load_sharded_checkpoint", "find_latest", "load_checkpoint",
           "list_checkpoints", "CheckpointError", "CheckpointCorruptError", "verify_file", "write_digest",
           "file_digest", "check_digest", "verify_folder", "HashingWriter", "set_aside", "DIGEST_SUFFIX", "UnverifiedWarning",
           "run_checkpoint"]

_NAME = re.compile(r"^step_(\d{8})\.(pt|dcp)$")
META = "meta.json"  # written last into a sharded checkpoint folder, before the folder is renamed into place
DIGEST_SUFFIX = ".sha256"
FOLDER_DIGESTS = "checksums.sha256"
_CHUNK = 8 << 20


class CheckpointError(RuntimeError):
    pass


class CheckpointCorruptError(CheckpointError, ValueError):
    """A file that cannot be used as it is: unreadable, truncated, of the wrong format, or whose content does not
    match its checksum."""


class UnverifiedWarning(UserWarning):
    """A file was loaded without a checksum to verify it against (written by an older version, or not by us)."""


# ----------------------------------------------------------------------------------------------- checksums
class HashingWriter:
    """A binary file wrapper that hashes what is written through it. Writes go to the file at once; the bytes
    are gathered into blocks of a few MiB and hashed in a second thread (``hashlib`` releases the GIL), so that
    hashing overlaps serialisation and I/O without a thread hand-off per small write. ``hexdigest()`` after
    the last write."""

    BLOCK = 4 << 20

    def __init__(self, f) -> None:
        self.f, self.h = f, hashlib.sha256()
        self.buf = bytearray()
        self.q: queue.Queue = queue.Queue(maxsize=8)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while (b := self.q.get()) is not None:
            self.h.update(b)

    def write(self, b) -> int:
        n = self.f.write(b)
        self.buf += b
        if len(self.buf) >= self.BLOCK:
            self.q.put(bytes(self.buf))
            self.buf.clear()
        return n

    def flush(self) -> None:
        self.f.flush()

    def hexdigest(self) -> str:
        if self.buf:
            self.q.put(bytes(self.buf))
            self.buf.clear()
        self.q.put(None)
        self.t.join()
        return self.h.hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(_CHUNK):
            h.update(b)
    return h.hexdigest()


def check_digest(path: str | Path, expected: str) -> None:
    """Raise :class:`CheckpointCorruptError` naming ``path`` and both digests unless its SHA-256 is ``expected``."""
    found = file_digest(path)
    if found != expected:
        raise CheckpointCorruptError(f"{path}: checksum mismatch: expected sha256 {expected}, found {found} "
                                     f"({Path(path).stat().st_size} bytes): the file was damaged after it was written")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_digest(path: str | Path, digest: str | None = None, *, name: str | None = None) -> str:
    """Write ``<path>.sha256`` (atomically) for the content of ``path`` (or the given ``digest``), naming the file
    as ``name`` (default: its own name; give the final name when ``path`` is a temporary file)."""
    path = Path(path)
    digest = digest or file_digest(path)
    target = path.with_name((name or path.name) + DIGEST_SUFFIX)
    _atomic_text(target, f"{digest}  {name or path.name}\n")
    return digest


def _read_digest(side: Path) -> str:
    try:
        return side.read_text().split()[0].lower()
    except (OSError, IndexError) as e:
        raise CheckpointCorruptError(f"{side}: unreadable checksum file ({e})") from e


def verify_file(path: str | Path, *, required: bool = False) -> bool:
    """Check ``path`` against its ``.sha256`` sidecar: True when verified, False when there is none (a
    :class:`UnverifiedWarning` is issued, or :class:`CheckpointCorruptError` when ``required``); a mismatch raises
    :class:`CheckpointCorruptError` naming the file and both digests."""
    path = Path(path)
    side = path.with_name(path.name + DIGEST_SUFFIX)
    if not side.is_file():
        if required:
            raise CheckpointCorruptError(f"{path}: no checksum file {side.name}")
        warnings.warn(f"{path}: no checksum ({side.name}), so it could not be verified (written by an older "
                      "version, or not by videojepa)", UnverifiedWarning, stacklevel=2)
        return False
    expected = _read_digest(side)
    if not path.is_file():
        raise CheckpointCorruptError(f"{path}: missing (its checksum file is there)")
    check_digest(path, expected)
    return True


def _write_folder_digests(folder: Path) -> None:
    lines = [f"{file_digest(p)}  {p.relative_to(folder).as_posix()}" for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name not in (FOLDER_DIGESTS, META)]
    _atomic_text(folder / FOLDER_DIGESTS, "\n".join(lines) + "\n")


def verify_folder(folder: Path) -> bool:
    listing = folder / FOLDER_DIGESTS
    if not listing.is_file():
        warnings.warn(f"{folder}: no {FOLDER_DIGESTS}, so it could not be verified (written by an older version)",
                      UnverifiedWarning, stacklevel=2)
        return False
    bad = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        expected, name = line.split(None, 1)
        p = folder / name
        if not p.is_file():
            bad.append(f"{name}: missing")
        elif (found := file_digest(p)) != expected:
            bad.append(f"{name}: expected sha256 {expected}, found {found}")
    if bad:
        raise CheckpointCorruptError(f"{folder}: checksum mismatch: " + "; ".join(bad))
    return True


def set_aside(path: str | Path) -> Path:
    """Rename a damaged checkpoint (and its checksum) to ``*.corrupt`` (``.corrupt.N`` if taken); never deletes."""
    path = Path(path)
    dst = path.with_name(path.name + ".corrupt")
    n = 1
    while dst.exists():
        dst = path.with_name(f"{path.name}.corrupt.{n}")
        n += 1
    os.replace(path, dst)
    side = path.with_name(path.name + DIGEST_SUFFIX)
    if side.exists():
        os.replace(side, dst.with_name(dst.name + DIGEST_SUFFIX))
    return dst


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in folder.iterdir()
           if (m := _NAME.match(p.name)) and (p.is_file() or (p / META).is_file())]
    return sorted(out)


def _prune(folder: Path, keep: int) -> None:
    for _, old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
            old.with_name(old.name + DIGEST_SUFFIX).unlink(missing_ok=True)


def save_checkpoint(state: dict, folder: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``state`` as ``step_<step>.pt`` atomically with its checksum, verify it from disk, then keep only the
    newest ``keep`` files. A failed write (e.g. no space left) raises :class:`CheckpointError` and leaves every
    earlier checkpoint as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
    path = folder / f"step_{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            w = HashingWriter(f)
            try:
                torch.save(state, w)
            finally:
                digest = w.hexdigest()
            f.flush()
            os.fsync(f.fileno())
        write_digest(tmp, digest, name=path.name)  # the checksum is in place before the file is
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, Exception):
            cause = e
            while cause is not None and not isinstance(cause, OSError):  # torch wraps I/O errors when it closes
                cause = cause.__context__
            cause = cause or e
            kept = ", ".join(p.name for _, p in list_checkpoints(folder)) or "none"
            raise CheckpointError(f"could not write checkpoint {path}: {type(cause).__name__}: {cause}; the "
                                  f"earlier checkpoints are untouched ({kept})") from e
        raise
    try:  # make the rename durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    verify_file(path, required=True)  # read back before anything older is pruned
    _prune(folder, keep)
    return path


def save_sharded_checkpoint(state: dict, meta: dict, folder: str | Path, step: int, keep: int, env) -> Path:
    """FSDP: every rank writes its shards with ``torch.distributed.checkpoint`` into ``step_<step>.dcp.tmp``;
    rank 0 then adds ``meta.json`` and renames the folder to ``step_<step>.dcp``. Readers (and resume)
    only accept folders holding ``meta.json``, so a crash leaves nothing that looks complete. DCP
    reshards on load: the checkpoint resumes on any world size, or in one process.
    """
    import json

    import torch.distributed.checkpoint as dcp

    from .distributed import barrier

    folder = Path(folder)
    final = folder / f"step_{step:08d}.dcp"
    tmp = folder / f"step_{step:08d}.dcp.tmp"
    if env.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    barrier(env)
    dcp.save(state, checkpoint_id=str(tmp))
    barrier(env)
    if env.is_main:
        _write_folder_digests(tmp)
        (tmp / META).write_text(json.dumps(meta))
        verify_folder(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _prune(folder, keep)
    barrier(env)
    return final


def load_sharded_checkpoint(path: str | Path, template: dict) -> tuple[dict, dict]:
    """Fill ``template`` (a state dict of this run's, possibly sharded, model/optimizer) from a DCP folder."""
    import json

    import torch.distributed.checkpoint as dcp

    path = Path(path)
    if not (path / META).is_file():
        raise CheckpointCorruptError(f"{path} is not a complete sharded checkpoint (no {META})")
    verify_folder(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process.*")
        dcp.load(template, checkpoint_id=str(path))
    return template, json.loads((path / META).read_text())


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load one of our checkpoints after verifying its checksum (``weights_only=True``: no arbitrary objects are
    unpickled). Damage is a :class:`CheckpointCorruptError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    verify_file(path)
    try:
        sd = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise CheckpointCorruptError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(sd, dict):
        raise CheckpointCorruptError(f"{path}: not a videojepa checkpoint (it holds a {type(sd).__name__})")
    return sd


def find_latest(folder: str | Path) -> Path | None:
    """The newest ``step_*.pt`` in ``folder`` (``None`` if there is none)."""
    ckpts = list_checkpoints(folder)
    return ckpts[-1][1] if ckpts else None


def run_checkpoint(path: str | Path) -> Path:
    """``path`` as it is, unless it is a run directory (a folder with ``checkpoints/``): then its newest checkpoint
    (:class:`FileNotFoundError` when it has none yet). What every command that takes "a checkpoint or its run"
    resolves through."""
    p = Path(path)
    if p.is_dir() and (p / "checkpoints").is_dir():
        last = find_latest(p / "checkpoints")
        if last is None:
            raise FileNotFoundError(f"{p}: a run directory without a checkpoint yet (nothing in {p / 'checkpoints'})")
        return last
    return p
