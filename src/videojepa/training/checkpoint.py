"""Atomic checkpoints: written to a temporary file in the same folder, flushed, then renamed.

A reader sees either the previous file or the complete new one, never half of one; a crash mid-save
leaves a ``*.tmp`` that is ignored (and cleaned up at the next save). Files are
``<run>/checkpoints/step_<8 digits>.pt`` (one consolidated file: single process and DDP) or
``step_<8 digits>.dcp/`` folders (FSDP: sharded, written with ``torch.distributed.checkpoint`` and
complete only once ``meta.json`` is in them); ``find_latest`` returns the newest complete one.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "save_sharded_checkpoint", "load_sharded_checkpoint", "find_latest", "load_checkpoint",
           "list_checkpoints", "CheckpointError"]

_NAME = re.compile(r"^step_(\d{8})\.(pt|dcp)$")
META = "meta.json"  # written last into a sharded checkpoint folder, before the folder is renamed into place


class CheckpointError(RuntimeError):
    pass


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


def save_checkpoint(state: dict, folder: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``state`` as ``step_<step>.pt`` atomically, then keep only the newest ``keep`` files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
    path = folder / f"step_{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
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
        (tmp / META).write_text(json.dumps(meta))
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
        raise CheckpointError(f"{path} is not a complete sharded checkpoint (no {META})")
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process.*")
        dcp.load(template, checkpoint_id=str(path))
    return template, json.loads((path / META).read_text())


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load one of our checkpoints (``weights_only=True``: no arbitrary objects are unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e


def find_latest(folder: str | Path) -> Path | None:
    """The newest ``step_*.pt`` in ``folder`` (``None`` if there is none)."""
    ckpts = list_checkpoints(folder)
    return ckpts[-1][1] if ckpts else None
