"""Fixed 3D sin-cos position embeddings (V-JEPA 1; V-JEPA 2 models built without RoPE).

Layout of one embedding row, for a token at grid position ``(t, h, w)``::

    [ sin(t*w_0..) cos(t*w_0..) | sin(h*w_0..) cos(h*w_0..) | sin(w*w_0..) cos(w*w_0..) ][:dim]

Each axis block holds all sines, then all cosines (not interleaved), with frequencies
``w_k = 10000 ** (-k / (d/2))``. The axis widths are ``(dim/2, dim/4, dim/4)`` by default, or
``2*ceil(dim/6)`` each with ``uniform_power`` (every released V-JEPA 1 model); the concatenation is
truncated to ``dim`` (the tail of the ``w`` block is dropped).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["sincos_1d", "sincos_3d", "resize_pos_embed"]


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``[len(positions), dim]`` float64 table: all sines then all cosines."""
    if dim % 2:
        raise ValueError(f"sin-cos axis width must be even, got {dim}")
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(dim: int, grid: tuple[int, int, int], uniform_power: bool = False) -> torch.Tensor:
    """Float32 tensor ``[T'*H'*W', dim]`` in token order ``[t][h][w]``."""
    t_n, h_n, w_n = grid
    if uniform_power:
        d_t = d_h = d_w = int(2 * math.ceil(dim / 6))
    else:
        d_t, d_h, d_w = dim // 2, dim // 4, dim // 4
    tt, hh, ww = np.meshgrid(np.arange(t_n), np.arange(h_n), np.arange(w_n), indexing="ij")
    emb = np.concatenate([sincos_1d(d_t, tt), sincos_1d(d_h, hh), sincos_1d(d_w, ww)], axis=1)
    if emb.shape[1] < dim:
        raise ValueError(f"sin-cos widths {d_t}+{d_h}+{d_w} do not cover dim {dim}")
    return torch.from_numpy(emb[:, :dim]).float()


def resize_pos_embed(pos_embed: torch.Tensor, src_grid: tuple[int, int, int], dst_grid: tuple[int, int, int]) -> torch.Tensor:
    """Adapt a ``[1, N, D]`` table built for ``src_grid`` to ``dst_grid`` as the official encoder does.

    Same grid: unchanged. Same H', W' and fewer time steps: the first rows (earliest times).
    Otherwise trilinear interpolation with scale factors ``dst/src`` per axis (default
    ``align_corners``), exactly as the reference implementation.
    """
    if tuple(dst_grid) == tuple(src_grid):
        return pos_embed
    (st, sh, sw), (dt, dh, dw) = src_grid, dst_grid
    d = pos_embed.shape[-1]
    if (sh, sw) == (dh, dw) and dt < st:
        return pos_embed[:, : dt * dh * dw]
    x = pos_embed.reshape(1, st, sh, sw, d).permute(0, 4, 1, 2, 3)
    x = F.interpolate(x, scale_factor=(dt / st, dh / sh, dw / sw), mode="trilinear")
    if tuple(x.shape[2:]) != (dt, dh, dw):  # float rounding of the scale factors: fall back to explicit size
        x = F.interpolate(pos_embed.reshape(1, st, sh, sw, d).permute(0, 4, 1, 2, 3), size=(dt, dh, dw), mode="trilinear")
    return x.permute(0, 2, 3, 4, 1).reshape(1, -1, d)
