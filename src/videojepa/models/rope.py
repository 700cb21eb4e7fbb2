"""3D rotary position embedding (V-JEPA 2).

The head dimension ``hd`` is split as ``[T | H | W | rest]`` with ``d = 2*floor(floor(hd/3)/2)``
dimensions per axis; ``rest`` passes through unrotated. Positions are integer tubelet / patch indices
decomposed from the token ids (``t = id // (H'W')``, ``h = (id % H'W') // W'``, ``w = id % W'``).

Two variants of the rotation:

``legacy`` (every released V-JEPA 2 checkpoint): the angle vector of width ``d`` is *tiled*,
``[th_0..th_{d/2-1}, th_0..th_{d/2-1}]``, while the partner vector pairs *adjacent* elements,
``r(x) = (-x1, x0, -x3, x2, ...)``. Element ``2i`` thus uses ``th_{2i mod d/2}`` and ``2i+1`` uses
``th_{(2i+1) mod d/2}``: not a true rotation, but what the weights were trained with.

``interleaved``: both members of each adjacent pair share ``th_i`` (a proper 2x2 rotation).
Needs retraining; use it for new models if you like.

Angles are computed in float32 whatever the autocast dtype (the reference computes them in the
dtype of q, which under bf16 makes them coarse); identical to the reference in float32.

The rotation is applied in one pass over the whole head (:class:`FusedRope`): the per-axis tables are
concatenated once per forward into full-width ``cos`` and a ``sin`` with the partner's signs folded in
(1 and 0 on the unrotated rest), and ``x * cos + swap_pairs(x) * sin`` rotates q and k together in every
layer. Each element is the same product and sum as the per-axis form, so results are bit-identical.
"""
from __future__ import annotations

import torch

from typing import NamedTuple

__all__ = ["rope_axis_dim", "RopeTables", "FusedRope", "fuse_rope", "build_rope", "apply_rope", "token_coords"]

RopeTables = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per axis (cos, sin), each [..., N, d]


class FusedRope(NamedTuple):
    """Full-head tables ``[..., N, head_dim]``: ``cos`` (1 on the unrotated rest) and ``sin`` with the partner
    vector's signs folded in (``-sin`` on even, ``+sin`` on odd elements; 0 on the rest)."""

    cos: torch.Tensor
    sin: torch.Tensor


def rope_axis_dim(head_dim: int) -> int:
    return int(2 * ((head_dim // 3) // 2))


def token_coords(ids: torch.Tensor, grid: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decompose token ids (any shape) into ``(t, h, w)`` for a ``(T', H', W')`` grid."""
    _, h_n, w_n = grid
    per_frame = h_n * w_n
    t = ids // per_frame
    rem = ids - per_frame * t
    h = rem // w_n
    w = rem - w_n * h
    return t, h, w


def _axis_table(pos: torch.Tensor, d: int, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    omega = torch.arange(d // 2, dtype=torch.float32, device=pos.device)
    omega /= d / 2.0
    omega = 1.0 / 10000**omega
    freq = pos.to(torch.float32).unsqueeze(-1) * omega  # [..., N, d/2]
    if variant == "legacy":
        freq = freq.repeat(*([1] * (freq.ndim - 1)), 2)
    elif variant == "interleaved":
        freq = freq.repeat_interleave(2, dim=-1)
    else:
        raise ValueError(f"unknown rope variant {variant!r} (expected 'legacy' or 'interleaved')")
    return freq.cos(), freq.sin()


def fuse_rope(tables: RopeTables, head_dim: int) -> FusedRope:
    """Per-axis tables (each ``[..., N, d]``) -> one :class:`FusedRope` for heads of ``head_dim``."""
    cos = torch.cat([c for c, _ in tables], dim=-1)
    sin = torch.cat([s for _, s in tables], dim=-1)
    sign = torch.tensor([-1.0, 1.0], dtype=sin.dtype, device=sin.device).repeat(sin.shape[-1] // 2)
    sin = sin * sign
    rest = head_dim - cos.shape[-1]
    if rest > 0:
        shape = (*cos.shape[:-1], rest)
        cos = torch.cat([cos, cos.new_ones(shape)], dim=-1)
        sin = torch.cat([sin, sin.new_zeros(shape)], dim=-1)
    return FusedRope(cos, sin)


def build_rope(ids: torch.Tensor, grid: tuple[int, int, int], head_dim: int, variant: str = "legacy") -> FusedRope:
    """Fused cos/sin tables for token ids ``[N]`` or ``[B, N]``; shapes broadcast against ``[..., B, heads, N,
    head_dim]`` (q and k stacked in front rotate in one call)."""
    d = rope_axis_dim(head_dim)
    if ids.ndim == 2:
        ids = ids[:, None, :]  # [B, 1, N] broadcasts over heads
    return fuse_rope(tuple(_axis_table(p, d, variant) for p in token_coords(ids, grid)), head_dim)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    partner = torch.stack((-x2, x1), dim=-1).flatten(-2)
    return x * cos + partner * sin


def apply_rope(x: torch.Tensor, tables: FusedRope | RopeTables) -> torch.Tensor:
    """Rotate ``x`` ``[..., N, hd]`` (q, k, or both stacked) with tables from :func:`build_rope` (or per-axis
    tables, rotated axis by axis: the reference form the fused one is tested against)."""
    if isinstance(tables, FusedRope):
        xf = x.float()
        swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0, x3, x2, ...): a new tensor
        swapped.mul_(tables.sin)  # in place on fresh buffers: the per-axis form's products and sum, fewer passes
        return (xf * tables.cos).add_(swapped).to(x.dtype)
    dtype = x.dtype
    xf = x.float()
    d = tables[0][0].shape[-1]
    parts = [_rotate(xf[..., i * d : (i + 1) * d], c, s) for i, (c, s) in enumerate(tables)]
    if 3 * d < x.shape[-1]:
        parts.append(xf[..., 3 * d :])
    return torch.cat(parts, dim=-1).to(dtype)
