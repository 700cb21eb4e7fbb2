"""Step-indexed data loading: what a step sees is a pure function of (seed, step, rank).

:class:`StepBatchSampler` yields, for every step from ``start_step`` on, the list of
``(step, index)`` pairs of that step's batch. Indices come from a seeded permutation of the dataset
per epoch, sharded by rank, so a resumed run continues with exactly the clips an uninterrupted run
would have seen (nothing repeated, nothing skipped) without replaying the loader. A dataset with a
``mixture`` attribute (``(items per source, weights)``, the official ``datasets_weights``) is sampled
with replacement instead: each of a step's items picks a source with probability proportional to
its weight, then an item of that source uniformly, from ``numpy_generator(seed, step, rank, ...)``.
:class:`StepDataset` wraps a dataset whose items are dicts and adds the ``step`` key that the mask
collator needs to seed the masks; a base dataset with a ``getitem(index, step)`` method receives the
step too, so its augmentation randomness can be a pure function of ``(seed, step, index)``.
A streamed (``IterableDataset``) source goes through :func:`videojepa.data.webdataset.build_stream_loader`.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..rng import numpy_generator
from .errors import SkippedSample
from .transforms import normalize

__all__ = ["StepBatchSampler", "StepDataset", "batch_indices", "weighted_batch_indices", "build_loader"]


def batch_indices(step: int, *, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Dataset indices of ``rank``'s batch at ``step``: epoch permutations, global batch split by rank."""
    global_bs = batch_size * world_size
    if global_bs > num_samples:
        raise ValueError(f"global batch {global_bs} is larger than the dataset ({num_samples} samples)")
    steps_per_epoch = num_samples // global_bs  # drop_last
    epoch, within = divmod(step, steps_per_epoch)
    perm = numpy_generator(seed, epoch, "epoch-permutation").permutation(num_samples)
    start = within * global_bs + rank * batch_size
    return perm[start : start + batch_size].tolist()


def weighted_batch_indices(step: int, *, sizes: list[int], weights: list[float], batch_size: int, seed: int,
                           rank: int = 0, world_size: int = 1) -> list[int]:
    """Indices of ``rank``'s batch at ``step`` when sources are mixed by weight (drawn with replacement).

    The global batch is drawn from ``numpy_generator(seed, step, "weighted-batch")`` and split by
    rank, like :func:`batch_indices`, so the data do not depend on how the batch is spread over ranks.
    """
    w = np.asarray(weights, dtype=np.float64)
    sizes_a = np.asarray(sizes, dtype=np.int64)
    w = np.where(sizes_a > 0, w, 0.0)
    if not w.sum() > 0:
        raise ValueError("weighted sampling: no source with items has a positive weight")
    offsets = np.concatenate([[0], np.cumsum(sizes_a)[:-1]])
    g = numpy_generator(seed, step, "weighted-batch")
    n = batch_size * world_size
    src = g.choice(len(w), size=n, p=w / w.sum())
    within = np.floor(g.random(n) * sizes_a[src]).astype(np.int64)
    idx = offsets[src] + np.minimum(within, sizes_a[src] - 1)
    return idx[rank * batch_size:(rank + 1) * batch_size].tolist()


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    def __init__(self, num_samples: int, batch_size: int, seed: int, start_step: int = 0, max_steps: int | None = None,
                 rank: int = 0, world_size: int = 1, mixture: tuple[list[int], list[float]] | None = None) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start_step, self.max_steps, self.rank, self.world_size = start_step, max_steps, rank, world_size
        self.mixture = mixture
        if mixture is not None and sum(mixture[0]) != num_samples:
            raise ValueError(f"mixture sizes {mixture[0]} do not add up to {num_samples} samples")

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            if self.mixture is not None:
                idx = weighted_batch_indices(step, sizes=self.mixture[0], weights=self.mixture[1],
                                             batch_size=self.batch_size, seed=self.seed, rank=self.rank,
                                             world_size=self.world_size)
                yield [(step, i) for i in idx]
                step += 1
                continue
            idx = batch_indices(step, num_samples=self.num_samples, batch_size=self.batch_size, seed=self.seed,
                                rank=self.rank, world_size=self.world_size)
            yield [(step, i) for i in idx]
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            raise TypeError("an unbounded StepBatchSampler has no length")
        return max(0, self.max_steps - self.start_step)


class StepDataset(Dataset):
    """``ds[(step, index)] -> ds.base[index] | {"step": step}`` with the clip normalised (ImageNet statistics).

    ``ds.base.getitem(index, step)`` is called instead of ``ds.base[index]`` when the base has it."""

    def __init__(self, base: Dataset, normalize_clips: bool = True) -> None:
        self.base = base
        self.normalize_clips = normalize_clips

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        step, index = key
        getitem = getattr(self.base, "getitem", None)
        item = getitem(index, step) if callable(getitem) else self.base[index]
        if isinstance(item, SkippedSample):
            return replace(item, step=int(step))
        item = dict(item)
        if self.normalize_clips:
            item["clip"] = normalize(item["clip"])
        item["step"] = int(step)
        return item


def build_loader(dataset: Dataset, collate_fn, *, batch_size: int, seed: int, start_step: int, max_steps: int,
                 num_workers: int = 0, pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """The training loader: batches of ``(step, index)`` from :class:`StepBatchSampler`, items from
    :class:`StepDataset`, masks made by ``collate_fn`` inside the workers, persistent workers."""
    from torch.utils.data import IterableDataset

    if isinstance(dataset, IterableDataset):
        from .webdataset import build_stream_loader

        return build_stream_loader(dataset, collate_fn, batch_size=batch_size, seed=seed, start_step=start_step,
                                   max_steps=max_steps, num_workers=num_workers, pin_memory=pin_memory, rank=rank,
                                   world_size=world_size)
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, max_steps, rank, world_size,
                               mixture=getattr(dataset, "mixture", None))
    return DataLoader(StepDataset(dataset), batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      prefetch_factor=2 if num_workers > 0 else None)
