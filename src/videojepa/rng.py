"""Explicit random streams.

Every random draw in videojepa comes from a generator made here from a tuple of integers
``(seed, step, rank, worker, ...)`` plus a stream name, so that any draw can be recomputed
without replaying the steps before it (a resumed run draws exactly what an uninterrupted run
would have drawn). Nothing in the package touches the global torch / numpy / random state.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["derive_seed", "torch_generator", "numpy_generator"]


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed that is a stable function of ``keys`` (ints and strings).

    Stable across processes, platforms and Python versions (it does not use ``hash()``).
    """
    h = hashlib.blake2b(digest_size=8)
    for k in keys:
        if isinstance(k, bool) or not isinstance(k, (int, str, np.integer)):
            raise TypeError(f"seed keys must be int or str, got {type(k).__name__}: {k!r}")
        h.update(b"s" + k.encode() if isinstance(k, str) else b"i" + int(k).to_bytes(16, "little", signed=True))
    return int.from_bytes(h.digest(), "little") & ((1 << 63) - 1)


def torch_generator(*keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded from ``keys`` (see :func:`derive_seed`)."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*keys))
    return g


def numpy_generator(*keys: int | str) -> np.random.Generator:
    """A fresh ``numpy.random.Generator`` seeded from ``keys``."""
    return np.random.default_rng(derive_seed(*keys))
