"""The V-JEPA predictor (V-JEPA 1 and V-JEPA 2 variants).

Given the context tokens from the encoder and the ids of context and target positions, it
projects the context to the predictor width, appends one learned mask token per target position
(zero-initialised; ``mask_tokens[mask_index % K]``), adds positions (sin-cos table or RoPE), runs
``depth`` blocks, and projects the target outputs back to the encoder width.

V-JEPA 2 sorts ``[context | targets]`` by position before the blocks and restores the order after
(``sort_by_position``); with sin-cos or RoPE positions this changes only float rounding, not the
maths, and it is what the released V-JEPA 2 predictor and HF do.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..masks.ops import apply_masks
from .layers import LN_EPS, Block, rescale_residual_init, trunc_normal_init
from .pos_embed import resize_pos_embed, sincos_3d
from .rope import build_rope
from .vit import POS_EMBEDS, ROPE_VARIANTS

__all__ = ["PredictorConfig", "Predictor"]


@dataclass(frozen=True)
class PredictorConfig:
    """Predictor architecture. ``pos_embed`` / ``rope_variant`` = None follow the encoder."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_mask_tokens: int = 2
    zero_init_mask_tokens: bool = True
    pos_embed: str | None = None
    rope_variant: str | None = None
    uniform_power: bool = True
    sort_by_position: bool = True
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    layer_norm_eps: float = LN_EPS
    init_std: float = 0.02
    init_rescale: bool = True
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "num_mask_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"predictor.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"predictor.embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.pos_embed is not None and self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"predictor.pos_embed must be one of {POS_EMBEDS} or null, got {self.pos_embed!r}")
        if self.rope_variant is not None and self.rope_variant not in ROPE_VARIANTS:
            raise ValueError(f"predictor.rope_variant must be one of {ROPE_VARIANTS} or null, got {self.rope_variant!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PredictorConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown predictor config key(s): {', '.join(unknown)}")
        return cls(**d)


class Predictor(nn.Module):
    """``forward(ctx [B,Kc,De], ctx_ids [B,Kc], tgt_ids [B,Kt], mask_index=0, grid=None) -> [B,Kt,De]``.

    ``grid`` is the token grid ``(T', H', W')`` of the clip the ids refer to; it defaults to the
    construction grid (the reference predictor always assumes it; we take the actual one when given).
    """

    def __init__(self, cfg: PredictorConfig, encoder_dim: int, grid: tuple[int, int, int], encoder_pos_embed: str = "rope",
                 encoder_rope_variant: str = "legacy") -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = tuple(grid)
        self.pos_kind = cfg.pos_embed or encoder_pos_embed
        self.rope_variant = cfg.rope_variant or encoder_rope_variant
        d = cfg.embed_dim
        self.predictor_embed = nn.Linear(encoder_dim, d)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, d)) for _ in range(cfg.num_mask_tokens))
        if self.pos_kind == "sincos":
            self.register_buffer("predictor_pos_embed", sincos_3d(d, self.grid, cfg.uniform_power)[None], persistent=True)
        else:
            self.predictor_pos_embed = None
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.predictor_blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, dpr[i], 0.0, cfg.layer_norm_eps) for i in range(cfg.depth)
        )
        self.predictor_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.predictor_proj = nn.Linear(d, encoder_dim)
        trunc_normal_init(self, cfg.init_std)
        if cfg.init_rescale:
            rescale_residual_init(self.predictor_blocks)
        if not cfg.zero_init_mask_tokens:
            for t in self.mask_tokens:
                nn.init.trunc_normal_(t, std=cfg.init_std)

    def forward(
        self,
        ctx: torch.Tensor,
        ctx_ids: torch.Tensor,
        tgt_ids: torch.Tensor,
        mask_index: int = 0,
        grid: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        grid = tuple(grid) if grid is not None else self.grid
        b, kc, _ = ctx.shape
        if ctx_ids.shape != (b, kc):
            raise ValueError(f"context ids have shape {tuple(ctx_ids.shape)}, expected {(b, kc)}")
        if tgt_ids.ndim != 2 or tgt_ids.shape[0] != b:
            raise ValueError(f"target ids have shape {tuple(tgt_ids.shape)}, expected ({b}, K)")
        kt = tgt_ids.shape[1]
        x = self.predictor_embed(ctx)  # [B, Kc, Dp]
        tgt = self.mask_tokens[mask_index % len(self.mask_tokens)].to(x.dtype).expand(b, kt, -1)
        if self.predictor_pos_embed is not None:
            pos = resize_pos_embed(self.predictor_pos_embed, self.grid, grid).to(x.dtype).expand(b, -1, -1)
            x = x + apply_masks(pos, ctx_ids)
            tgt = tgt + apply_masks(pos, tgt_ids)
        x = torch.cat([x, tgt], dim=1)  # [B, Kc+Kt, Dp]
        ids = torch.cat([ctx_ids, tgt_ids], dim=1)
        order = None
        if self.cfg.sort_by_position:
            order = torch.argsort(ids, dim=1)
            ids = torch.gather(ids, 1, order)
            x = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
        rope = None
        if self.pos_kind == "rope":
            rope = build_rope(ids, grid, self.cfg.embed_dim // self.cfg.num_heads, self.rope_variant)
        ckpt = self.cfg.activation_checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.predictor_blocks:
            x = checkpoint(blk, x, rope, use_reentrant=False) if ckpt else blk(x, rope)
        x = self.predictor_norm(x)
        if order is not None:
            x = torch.gather(x, 1, torch.argsort(order, dim=1).unsqueeze(-1).expand_as(x))
        return self.predictor_proj(x[:, kc:])
