"""Attentive probes: a learned query cross-attends to frozen encoder tokens, then a linear head.

``AttentiveClassifier(cfg)(tokens [B, N, D]) -> logits [B, C]`` (``[B, Q, C]`` with ``Q > 1`` queries).

Two official forms exist and both load strictly (REFERENCE §6.1):

- **V-JEPA 1** (``self_attn_position="after"``, ``xattn_proj=True``): one cross-attention block; ``depth - 1``
  self-attention blocks would follow it *on the queries* (every released probe has depth 1). The
  cross-attention defines an output projection ``xattn.proj`` that the reference never applies, so the
  released files carry dead ``xattn.proj`` weights: we hold the parameter (so those files load strictly)
  and, like the reference, never use it.
- **V-JEPA 2** (``self_attn_position="before"``, ``xattn_proj=False``): ``depth - 1`` self-attention blocks
  run over *all input tokens* first, then the cross-attention block (released probes: depth 4, 16 heads).
  HF transformers' ``VJEPA2AttentivePooler`` is this form.

The cross-attention block is ``q <- q + XAttn(q, LN1(x))``, ``q <- q + MLP(LN2(q))``: only the keys and
values are layer-normed, never the query. ``xattn.q`` is ``Linear(D, D)``, ``xattn.kv`` ``Linear(D, 2D)``
(keys are the first D rows, values the last D). Self-attention blocks are :class:`~.layers.Block` (keys
``blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2``, as in the official files).

The reference builds probe LayerNorms with PyTorch's default ``eps=1e-5`` (not the encoder's 1e-6);
``layer_norm_eps`` defaults to that. Probes have no position information: the token order does not matter,
which is why multi-clip and multi-layer features can simply be concatenated along the token axis.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Block, Mlp, trunc_normal_init

__all__ = ["ProbeConfig", "CrossAttention", "CrossAttentionBlock", "AttentivePooler", "AttentiveClassifier",
           "MeanPoolClassifier", "build_classifier", "SELF_ATTN_POSITIONS", "HEAD_KINDS"]

SELF_ATTN_POSITIONS = ("before", "after")
HEAD_KINDS = ("attentive", "meanpool")
PROBE_LN_EPS = 1e-5  # torch.nn.LayerNorm's default, which the official probes use


@dataclass(frozen=True)
class ProbeConfig:
    """A classification head on encoder tokens. Defaults are the V-JEPA 2 attentive probe; :meth:`vjepa1` gives
    the V-JEPA 1 form. ``kind="meanpool"`` is VideoMAE's fine-tuning head (:class:`MeanPoolClassifier`: mean of
    the tokens, LayerNorm, Linear; the attention fields are then unused). ``dropout``: on the pooled feature,
    before the final Linear (training only; it does not change the weights)."""

    embed_dim: int = 1024
    num_heads: int = 16
    depth: int = 4  # 1 cross-attention block + (depth - 1) self-attention blocks
    num_classes: int = 1000
    num_queries: int = 1
    mlp_ratio: float = 4.0
    xattn_proj: bool = False  # hold V-JEPA 1's dead cross-attention output projection (never applied)
    self_attn_position: str = "before"  # "before": over the input tokens (V-JEPA 2); "after": over the queries (V-JEPA 1)
    qkv_bias: bool = True
    layer_norm_eps: float = PROBE_LN_EPS
    init_std: float = 0.02
    kind: str = "attentive"
    dropout: float = 0.0
    init_scale: float = 1.0  # the final Linear's initial weights are multiplied by this (VideoMAE: 1e-3)

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"probe.kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"probe.dropout must be in [0, 1), got {self.dropout}")
        for name in ("embed_dim", "num_heads", "depth", "num_classes", "num_queries"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"probe.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"probe.embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.self_attn_position not in SELF_ATTN_POSITIONS:
            raise ValueError(f"probe.self_attn_position must be one of {SELF_ATTN_POSITIONS}, got {self.self_attn_position!r}")

    @classmethod
    def vjepa1(cls, embed_dim: int, num_heads: int, num_classes: int, **kw) -> "ProbeConfig":
        """The V-JEPA 1 probe: depth 1, heads = encoder heads, dead ``xattn.proj`` held."""
        kw = {"depth": 1, "xattn_proj": True, "self_attn_position": "after", **kw}
        return cls(embed_dim=embed_dim, num_heads=num_heads, num_classes=num_classes, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown probe config key(s): {', '.join(unknown)}")
        return cls(**d)


class CrossAttention(nn.Module):
    """Queries ``[B, Q, D]`` attend to tokens ``[B, N, D]``; no output projection is applied.

    ``proj=True`` only *holds* a ``Linear(D, D)`` named ``proj`` (V-JEPA 1 files carry it; the
    reference defines it and never calls it).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim) if proj else None  # dead on purpose, see the module docstring

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, nq, d = q.shape
        n, h = x.shape[1], self.num_heads
        q = self.q(q).reshape(b, nq, h, d // h).transpose(1, 2)  # [B, h, Q, hd]
        k, v = self.kv(x).reshape(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x [B, h, N, hd]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, Q, hd]
        return out.transpose(1, 2).reshape(b, nq, d)


class CrossAttentionBlock(nn.Module):
    """``q + XAttn(q, LN1(x))``, then ``+ MLP(LN2(q))`` (the query itself is not normed)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj: bool = False, eps: float = PROBE_LN_EPS) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias=qkv_bias, proj=proj)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """``[B, N, D] -> [B, Q, D]``: learned queries, one cross-attention block, optional self-attention blocks."""

    def __init__(self, cfg: ProbeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_queries, d))
        self.cross_attention_block = CrossAttentionBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias,
                                                         proj=cfg.xattn_proj, eps=cfg.layer_norm_eps)
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, eps=cfg.layer_norm_eps) for _ in range(cfg.depth - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.self_attn_position == "before":
            for blk in self.blocks:
                x = blk(x)  # over all N input tokens
        q = self.query_tokens.expand(x.shape[0], -1, -1)
        q = self.cross_attention_block(q, x)
        if self.cfg.self_attn_position == "after":
            for blk in self.blocks:
                q = blk(q)  # over the Q queries
        return q


class AttentiveClassifier(nn.Module):
    """``pooler`` then ``linear``: tokens ``[B, N, D]`` -> logits ``[B, C]`` (``[B, Q, C]`` when ``Q > 1``)."""

    def __init__(self, cfg: ProbeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pooler = AttentivePooler(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.cfg.embed_dim:
            raise ValueError(f"probe expects tokens [B, N, {self.cfg.embed_dim}], got shape {tuple(x.shape)}")
        q = self.pooler(x)
        if q.shape[1] == 1:
            q = q.squeeze(1)
        return self.linear(self.dropout(q))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The reference init: trunc-normal(std) Linear weights and queries, zero biases, LayerNorm (1, 0), then
        residual-output weights divided by ``sqrt(2 l)`` with ``l`` the block's 1-based position in the stack
        (cross-attention block first for V-JEPA 1; self-attention blocks first for V-JEPA 2)."""
        std = self.cfg.init_std
        trunc_normal_init(self, std)
        nn.init.trunc_normal_(self.pooler.query_tokens, std=std, a=-2.0, b=2.0)
        xblock, blocks = self.pooler.cross_attention_block, self.pooler.blocks
        first = 2 if self.cfg.self_attn_position == "after" else 1
        for layer, blk in enumerate(blocks, start=first):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
        xlayer = 1 if self.cfg.self_attn_position == "after" else max(1, len(blocks))
        xblock.mlp.fc2.weight.div_(math.sqrt(2.0 * xlayer))
        if xblock.xattn.proj is not None:
            xblock.xattn.proj.weight.div_(math.sqrt(2.0 * xlayer))
        if self.cfg.init_scale != 1.0:
            self.linear.weight.mul_(self.cfg.init_scale)


class MeanPoolClassifier(nn.Module):
    """VideoMAE's fine-tuning head: tokens ``[B, N, D]`` -> mean over ``N`` -> ``fc_norm`` (LayerNorm) -> dropout
    -> ``linear``; the Linear starts at trunc-normal(``init_std``) x ``init_scale`` (VideoMAE: 0.02 x 1e-3), biases 0.
    Like the attentive probes it has no position information, so the token order does not matter."""

    def __init__(self, cfg: ProbeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.cfg.embed_dim:
            raise ValueError(f"head expects tokens [B, N, {self.cfg.embed_dim}], got shape {tuple(x.shape)}")
        return self.linear(self.dropout(self.fc_norm(x.mean(dim=1))))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.ones_(self.fc_norm.weight)
        nn.init.zeros_(self.fc_norm.bias)
        nn.init.trunc_normal_(self.linear.weight, std=self.cfg.init_std, a=-2.0, b=2.0)
        self.linear.weight.mul_(self.cfg.init_scale)
        nn.init.zeros_(self.linear.bias)


def build_classifier(cfg: ProbeConfig) -> nn.Module:
    """The head ``cfg`` describes: :class:`AttentiveClassifier` or :class:`MeanPoolClassifier`."""
    return MeanPoolClassifier(cfg) if cfg.kind == "meanpool" else AttentiveClassifier(cfg)
