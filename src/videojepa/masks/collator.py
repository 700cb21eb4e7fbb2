"""Mask generation per training step, and the DataLoader collate function that attaches the masks.

Masks are a pure function of ``(seed, step, rank, mask config index)``: a resumed run draws exactly the
masks an uninterrupted run would have drawn, without replaying earlier steps and without any state
shared between DataLoader workers (unlike the official collator's cross-process counter).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from videojepa.masks.multiblock import (
    EQUALIZE_MODES,
    MultiBlockMaskConfig,
    TubeMaskConfig,
    check_grid,
    sample_multiblock,
    sample_tube,
)
from videojepa.data.errors import SkippedSample
from videojepa.masks.ops import Grid
from videojepa.rng import torch_generator

__all__ = ["MaskConfig", "MaskPair", "MaskGenerator", "MaskCollator"]

MaskConfig = MultiBlockMaskConfig | TubeMaskConfig
MaskPair = tuple[Tensor, Tensor]
"""``(context ids LongTensor[B, K_ctx], target ids LongTensor[B, K_tgt])``."""


class MaskGenerator:
    """Draws one ``(context, target)`` pair per mask config for a given training step.

    ``sample(step, B, rank, world_size)`` is a pure function: config ``i`` draws from
    ``torch_generator(seed, step, i, "mask")`` and nothing else, for the global batch, of which each
    rank takes its rows. Masks do not depend on the DataLoader worker id (the step identifies the
    batch), nor on the world size: the same for any number of workers, ranks, and after a resume.

    Args:
        configs: the mask configs, e.g. :data:`videojepa.masks.DEFAULT_MASKS`.
        grid: token grid ``(T', H', W')``, see :func:`videojepa.masks.grid_size`.
        seed: the run's seed.
        equalize: how multi-block masks are cut to equal lengths across the batch,
            ``"random"`` (default) or ``"prefix"`` (official); see :func:`sample_multiblock`.
    """

    def __init__(self, configs: Sequence[MaskConfig], grid: Grid, seed: int, equalize: str = "random") -> None:
        self.configs: tuple[MaskConfig, ...] = tuple(configs)
        self.grid: Grid = check_grid(grid)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"MaskGenerator: seed must be an int, got {seed!r}")
        self.seed = seed
        if equalize not in EQUALIZE_MODES:
            raise ValueError(f"MaskGenerator: equalize must be one of {EQUALIZE_MODES}, got {equalize!r}")
        self.equalize = equalize
        if not self.configs:
            raise ValueError("MaskGenerator: needs at least one mask config")
        t, h, w = self.grid
        for i, cfg in enumerate(self.configs):
            if isinstance(cfg, MultiBlockMaskConfig):
                if t * h * w < 2:
                    raise ValueError(
                        f"MaskGenerator: configs[{i}] (multi-block) needs >= 2 tokens, grid is {self.grid}"
                    )
            elif isinstance(cfg, TubeMaskConfig):
                if h * w < 2:
                    raise ValueError(
                        f"MaskGenerator: configs[{i}] (tube) needs >= 2 spatial positions, grid is {self.grid}"
                    )
            else:
                raise TypeError(f"MaskGenerator: configs[{i}] must be a MultiBlockMaskConfig or TubeMaskConfig, "
                                f"got {type(cfg).__name__}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(configs={list(self.configs)}, grid={self.grid}, "
                f"seed={self.seed}, equalize={self.equalize!r})")

    def sample(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[MaskPair]:
        """Masks of ``rank``'s share of the batch of ``step``: one ``(context [B, K_ctx], target [B, K_tgt])`` per config.

        The masks are drawn for the whole global batch (``batch_size * world_size`` samples, lengths
        equalised over all of it) from ``torch_generator(seed, step, i, "mask")``, and rank ``r`` takes
        rows ``[r*B, (r+1)*B)``. So a run on 2 ranks of batch B sees exactly the masks of a run on one
        process of batch 2B, and a checkpoint resumes on another world size with the same masks.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"MaskGenerator.sample: rank {rank} is not in [0, world_size={world_size})")
        total = batch_size * world_size
        rows = slice(rank * batch_size, (rank + 1) * batch_size)
        out: list[MaskPair] = []
        for i, cfg in enumerate(self.configs):
            g = torch_generator(self.seed, step, i, "mask")
            if isinstance(cfg, MultiBlockMaskConfig):
                ctx, tgt = sample_multiblock(cfg, self.grid, total, g, equalize=self.equalize)
            else:
                ctx, tgt = sample_tube(cfg, self.grid, total, g)
            out.append((ctx[rows].contiguous(), tgt[rows].contiguous()))
        return out


class MaskCollator:
    """``collate_fn`` that stacks clips and attaches the masks of the batch's step.

    Each item is a dict with ``"clip"`` (float ``[C, T, H, W]``), ``"index"`` (int), ``"step"`` (int, the
    same for every item of a batch) and optionally ``"label"`` (int).

    Returns a dict::

        clips    FloatTensor[B, C, T, H, W]
        labels   LongTensor[B]            (only if every item has a label)
        indices  LongTensor[B]
        step     int
        masks    list of (context LongTensor[B, K_ctx], target LongTensor[B, K_tgt]), one per mask config
        skipped  list of :class:`~videojepa.data.errors.SkippedSample` dropped from the batch (B counts
                 only the readable items; if none is readable, clips/indices are None and masks empty)

    Args:
        mask_generator: draws the masks, see :class:`MaskGenerator`.
        rank: this process's distributed rank (ranks see different masks at the same step).
    """

    def __init__(self, mask_generator: MaskGenerator, rank: int = 0, world_size: int = 1) -> None:
        self.mask_generator = mask_generator
        self.rank = rank
        self.world_size = world_size

    def __call__(self, items: Sequence[Mapping[str, Any] | SkippedSample]) -> dict[str, Any]:
        if len(items) == 0:
            raise ValueError("MaskCollator: got an empty batch")
        nominal = len(items)  # masks are drawn for the full batch, then the rows of unreadable items dropped
        readable = [i for i, it in enumerate(items) if not isinstance(it, SkippedSample)]
        skipped = [it for it in items if isinstance(it, SkippedSample)]
        items = [items[i] for i in readable]
        if not items:  # nothing readable in this batch: the trainer counts it and decides
            return {"clips": None, "indices": None, "step": skipped[0].step, "masks": [], "skipped": skipped}
        for key in ("clip", "index", "step"):
            missing = [i for i, item in enumerate(items) if key not in item]
            if missing:
                raise ValueError(f"MaskCollator: items {missing} have no {key!r} key")
        steps = sorted({int(item["step"]) for item in items})
        if len(steps) > 1:
            raise ValueError(f"MaskCollator: items of one batch must share one 'step', got steps {steps}")
        shapes = sorted({tuple(item["clip"].shape) for item in items})
        if len(shapes) > 1:
            raise ValueError(f"MaskCollator: clips of one batch must have one shape, got {shapes}")

        step = steps[0]
        batch: dict[str, Any] = {
            "clips": torch.stack([item["clip"] for item in items]),  # [B, C, T, H, W]
            "indices": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
            "step": step,
        }
        if all(item.get("label") is not None for item in items):
            batch["labels"] = torch.tensor([int(item["label"]) for item in items], dtype=torch.long)
        masks = self.mask_generator.sample(step, nominal, self.rank, self.world_size)
        if skipped:
            keep = torch.tensor(readable, dtype=torch.long)
            masks = [(c[keep], t[keep]) for c, t in masks]
        batch["masks"] = masks
        batch["skipped"] = skipped
        return batch
