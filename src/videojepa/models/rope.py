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
concatenated once per forward into full-width ``cos`` and ``sin`` tables (1 and 0 on the unrotated rest), and
``y = x * cos + turn(x) * sin`` rotates q and k together in every layer, where ``turn`` maps each adjacent pair
``(x0, x1)`` to ``(-x1, x0)``: a multiplication by ``i`` of the pair read as one complex number (exact, one pass,
no copy to swap the pair). For q and k (:func:`rope_qkv`) it runs as one autograd function over the attention's
``qkv`` tensor: three passes forward, three backward, the gradient written straight into ``qkv``'s own layout
(no zero-filled slices summed, nothing but the two tables saved). The product and the sum are one fused
multiply-add, so results equal the per-axis form's to one rounding, not bit for bit.
"""
from __future__ import annotations

import torch

from typing import NamedTuple

__all__ = ["rope_axis_dim", "RopeTables", "FusedRope", "fuse_rope", "build_rope", "apply_rope", "rope_qkv",
           "token_coords"]

RopeTables = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per axis (cos, sin), each [..., N, d]


class FusedRope(NamedTuple):
    """Full-head tables ``[..., N, head_dim]``: ``cos`` (1 on the unrotated rest) and ``sin`` (0 on the rest);
    the partner vector's signs come from :func:`_turn`."""

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


def _turn(x: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    """``(x0, x1) -> (-x1, x0)`` for every adjacent pair of the last dim (``sign=-1``: ``(x1, -x0)``, its
    transpose), as ``x * i`` on the pairs read as complex numbers: exact, a fresh tensor, one pass. An odd last
    element (only ever on the unrotated rest, where ``sin`` is 0) turns to 0."""
    if x.shape[-1] % 2:
        return torch.cat([_turn(x[..., :-1], sign), torch.zeros_like(x[..., -1:])], dim=-1)
    if not _pairs_viewable(x):
        x = x.contiguous()
    return torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * complex(0.0, sign)).flatten(-2)


def _pairs_viewable(x: torch.Tensor) -> bool:
    return x.stride(-1) == 1 and x.storage_offset() % 2 == 0 and all(s % 2 == 0 for s in x.stride()[:-1])


def _dense_strides(x: torch.Tensor) -> tuple[int, ...] | None:
    """``x``'s strides when it covers its memory without gaps in some dim order (a permuted contiguous tensor),
    else None."""
    order = sorted(range(x.ndim), key=lambda d: -x.stride(d))
    return x.stride() if x.permute(order).is_contiguous() else None


class _FusedRotation(torch.autograd.Function):
    """Rotate the first ``k`` slices of ``x`` (along dim 0) with full-head ``cos`` / ``sin``; return every slice,
    the rotated ones as new float tensors in ``x``'s dtype, the others as views of ``x``. Computed in float32."""

    @staticmethod
    def forward(ctx, x, cos, sin, k):
        r = x[:k].float()
        y = torch.mul(r, cos)
        y.addcmul_(_turn(r), sin)
        ctx.save_for_backward(cos, sin)
        ctx.k, ctx.layout = k, (x.shape, _dense_strides(x), x.dtype)
        return (*y.to(x.dtype).unbind(0), *x[k:].unbind(0))

    @staticmethod
    def backward(ctx, *grads):
        cos, sin = ctx.saved_tensors
        shape, strides, dtype = ctx.layout
        if strides is None:
            g = torch.empty(shape, dtype=dtype, device=cos.device)
        else:
            g = torch.empty_strided(shape, strides, dtype=dtype, device=cos.device)
        for i, gi in enumerate(grads):
            if i < ctx.k:  # the transpose: g * cos + turn^T(g * sin)
                gf = gi.float()
                torch.addcmul(_turn(gf * sin, -1.0), gf, cos, out=g[i])
            else:
                g[i].copy_(gi)
        return g, None, None, None


def rope_qkv(qkv: torch.Tensor, tables: FusedRope | RopeTables) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q, k, v)`` from an attention's ``qkv`` ``[3, B, heads, N, hd]`` (any strides, e.g. the permuted view of
    the fused projection), q and k rotated in one pass and v untouched."""
    if isinstance(tables, FusedRope):
        return _FusedRotation.apply(qkv, tables.cos, tables.sin, 2)
    q, k = apply_rope(qkv[:2], tables)
    return q, k, qkv[2]


def apply_rope(x: torch.Tensor, tables: FusedRope | RopeTables) -> torch.Tensor:
    """Rotate ``x`` ``[..., N, hd]`` (q, k, or both stacked) with tables from :func:`build_rope` (or per-axis
    tables, rotated axis by axis: the reference form the fused one is tested against)."""
    if isinstance(tables, FusedRope):
        return _FusedRotation.apply(x.unsqueeze(0), tables.cos, tables.sin, 1)[0]
    dtype = x.dtype
    xf = x.float()
    d = tables[0][0].shape[-1]
    parts = [_rotate(xf[..., i * d : (i + 1) * d], c, s) for i, (c, s) in enumerate(tables)]
    if 3 * d < x.shape[-1]:
        parts.append(xf[..., 3 * d :])
    return torch.cat(parts, dim=-1).to(dtype)
