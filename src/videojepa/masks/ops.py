"""Token-level mask operations shared by the encoder, the predictor and the loss.

Token order everywhere in videojepa is ``[t][h][w]``: the token at tubelet step ``t``, patch row ``h``
and patch column ``w`` of a ``(T', H', W')`` grid has id ``t * H' * W' + h * W' + w``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["Grid", "apply_masks", "grid_size", "num_tokens"]

Grid = tuple[int, int, int]
"""A token grid ``(T', H', W')``: tubelet steps, patch rows, patch columns."""


def apply_masks(x: Tensor, masks: Tensor | Sequence[Tensor]) -> Tensor:
    """Keep the tokens of ``x`` at the given indices.

    Args:
        x: tokens ``[B, N, D]`` (any trailing dims after ``N`` are carried along).
        masks: token ids ``LongTensor[B, K]`` into dim 1 of ``x``, or a list of M such tensors
            (each may have its own ``K``).

    Returns:
        ``[B, K, D]`` for a single mask. For a list, the per-mask results are concatenated along the
        *batch* dim (official semantics), giving ``[M*B, K, D]``; all masks in the list must then
        share the same ``K``. The masks are moved to ``x.device``.
    """
    if isinstance(masks, Tensor):
        return _gather_tokens(x, masks)
    masks = list(masks)
    if not masks:
        raise ValueError("apply_masks: got an empty list of masks")
    return torch.cat([_gather_tokens(x, m) for m in masks], dim=0)


def _gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    if x.dim() < 2:
        raise ValueError(f"apply_masks: x must be [B, N, ...], got shape {tuple(x.shape)}")
    if ids.dim() != 2 or ids.shape[0] != x.shape[0]:
        raise ValueError(
            f"apply_masks: mask must be [B, K] with B={x.shape[0]}, got shape {tuple(ids.shape)}"
        )
    if ids.dtype != torch.long:
        ids = ids.long()
    ids = ids.to(x.device)
    # ids [B, K] -> [B, K, *rest] so gather picks whole token vectors along dim 1.
    index = ids.reshape(*ids.shape, *([1] * (x.dim() - 2))).expand(*ids.shape, *x.shape[2:])
    return torch.gather(x, 1, index)


def grid_size(num_frames: int, height: int, width: int, tubelet: int, patch: int) -> Grid:
    """The token grid ``(T', H', W') = (num_frames/tubelet, height/patch, width/patch)`` of a clip.

    Raises:
        ValueError: if a size is not positive or not divisible by its tubelet / patch size.
    """
    for name, value in (("num_frames", num_frames), ("height", height), ("width", width),
                        ("tubelet", tubelet), ("patch", patch)):
        if int(value) != value or value < 1:
            raise ValueError(f"grid_size: {name} must be a positive integer, got {value!r}")
    if num_frames % tubelet:
        raise ValueError(f"grid_size: num_frames={num_frames} is not divisible by tubelet={tubelet}")
    if height % patch:
        raise ValueError(f"grid_size: height={height} is not divisible by patch={patch}")
    if width % patch:
        raise ValueError(f"grid_size: width={width} is not divisible by patch={patch}")
    return num_frames // tubelet, height // patch, width // patch


def num_tokens(grid: Grid) -> int:
    """``N = T' * H' * W'``."""
    t, h, w = grid
    return t * h * w
