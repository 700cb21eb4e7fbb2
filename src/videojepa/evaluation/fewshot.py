"""Few-label subsets for data-efficiency curves."""
from __future__ import annotations

import numpy as np
import torch

from ..rng import numpy_generator

__all__ = ["stratified_subset"]


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int, min_per_class: int = 1) -> torch.Tensor:
    """Indices (sorted ``LongTensor``) of a class-stratified ``fraction`` of ``labels``.

    Each class ``c`` with ``n_c`` items keeps ``max(min_per_class, round(fraction * n_c))`` of them (all of
    them when it has fewer), chosen by a per-class permutation drawn from ``(seed, "stratified-subset")``.
    So the subset is a pure function of ``(labels, fraction, seed)``, and for one seed a smaller fraction
    is a subset of a larger one. Items with a negative label (unknown) are never chosen.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if min_per_class < 0:
        raise ValueError(f"min_per_class must be >= 0, got {min_per_class}")
    y = torch.as_tensor(labels).reshape(-1).cpu().numpy().astype(np.int64)
    rng = numpy_generator(int(seed), "stratified-subset")
    classes = np.unique(y[y >= 0])
    # one random key per item, drawn in a fixed order: per-class ranks do not depend on other classes
    keys = rng.random(len(y))
    chosen = []
    for c in classes:
        members = np.flatnonzero(y == c)
        k = min(len(members), max(int(min_per_class), int(round(float(fraction) * len(members)))))
        chosen.append(members[np.argsort(keys[members], kind="stable")[:k]])
    out = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(out.astype(np.int64))
