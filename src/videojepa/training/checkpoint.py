"""Atomic checkpoints: written to a temporary file in the same folder, flushed, then renamed.

A reader sees either the previous file or the complete new one, never half of one; a crash mid-save
leaves a ``*.tmp`` that is ignored (and cleaned up at the next save). Files are
``<run>/checkpoints/step_<8 digits>.pt``; ``find_latest`` returns the newest one that loads.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "find_latest", "load_checkpoint", "list_checkpoints", "CheckpointError"]

_NAME = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    pass


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(out)


def save_checkpoint(state: dict, folder: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``state`` as ``step_<step>.pt`` atomically, then keep only the newest ``keep`` files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tmp"):
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
    for _, old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


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
