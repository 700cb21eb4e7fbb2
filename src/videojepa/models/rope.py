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
"""
from __future__ import annotations

import torch

__all__ = ["rope_axis_dim", "RopeTables", "build_rope", "apply_rope", "token_coords"]

RopeTables = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per axis (cos, sin), each [..., N, d]


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


def build_rope(ids: torch.Tensor, grid: tuple[int, int, int], head_dim: int, variant: str = "legacy") -> RopeTables:
    """Cos/sin tables for token ids ``[N]`` or ``[B, N]``; shapes broadcast against ``[B, heads, N, d]``."""
    d = rope_axis_dim(head_dim)
    if ids.ndim == 2:
        ids = ids[:, None, :]  # [B, 1, N] broadcasts over heads
    return tuple(_axis_table(p, d, variant) for p in token_coords(ids, grid))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    partner = torch.stack((-x2, x1), dim=-1).flatten(-2)
    return x * cos + partner * sin


def apply_rope(x: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate ``x`` ``[B, heads, N, hd]`` (q or k) with tables from :func:`build_rope`."""
    dtype = x.dtype
    xf = x.float()
    d = tables[0][0].shape[-1]
    parts = [_rotate(xf[..., i * d : (i + 1) * d], c, s) for i, (c, s) in enumerate(tables)]
    if 3 * d < x.shape[-1]:
        parts.append(xf[..., 3 * d :])
    return torch.cat(parts, dim=-1).to(dtype)
