"""Transformer building blocks shared by the encoder, the predictors and the probes.

Shapes: tokens are ``[B, N, D]``; attention heads ``[B, heads, N, hd]``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rope import FusedRope, RopeTables, rope_qkv

__all__ = ["DropPath", "Mlp", "Attention", "Block", "trunc_normal_init", "LN_EPS"]

LN_EPS = 1e-6


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample (identity in eval or at rate 0)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """``fc1 -> exact GELU -> fc2``, biases on both."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (q, k, v in that order) and SDPA.

    ``rope`` tables (from :func:`videojepa.models.rope.build_rope`) rotate q and k when given.
    ``attn_drop`` is the attention-probability dropout, applied only in training (the reference
    ties it to the projection dropout and applies it in eval too; every released config uses 0).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop

    def forward(self, x: torch.Tensor, rope: FusedRope | RopeTables | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0) if rope is None else rope_qkv(qkv, rope)  # q and k rotated together
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attn_drop: float = 0.0,
        eps: float = LN_EPS,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rope: FusedRope | RopeTables | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """Reference init: Linear/Conv weights trunc-normal(std) with absolute bounds +-2, zero biases; LN = (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_residual_init(blocks: nn.ModuleList) -> None:
    """Depth-scaled init: divide ``attn.proj`` and ``mlp.fc2`` weights of block ``l`` (1-based) by ``sqrt(2l)``."""
    with torch.no_grad():
        for i, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_((2.0 * i) ** 0.5)
            blk.mlp.fc2.weight.div_((2.0 * i) ** 0.5)
