"""Video ViT encoder with tubelet tokens (V-JEPA 1 and V-JEPA 2).

Input ``[B, C, T, H, W]`` (or an image ``[B, C, H, W]``, treated as a one-frame clip). A
``Conv3d(C, D, kernel=stride=(tubelet, patch, patch))`` cuts it into ``N = T'*H'*W'`` tokens in
time-major raster order ``[t][h][w]`` (``T' = T/tubelet``, ``H' = H/patch``, ``W' = W/patch``).
Positions are either a fixed 3D sin-cos table added after the patch embedding, or 3D RoPE inside
every attention layer. Given masks (indices of tokens to keep), the tokens are gathered *before*
the blocks, so hidden tokens cost nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..masks.ops import apply_masks
from .layers import LN_EPS, Block, rescale_residual_init, trunc_normal_init
from .pos_embed import resize_pos_embed, sincos_3d
from .rope import build_rope

__all__ = ["EncoderConfig", "VisionTransformer", "POS_EMBEDS", "ROPE_VARIANTS"]

POS_EMBEDS = ("rope", "sincos")
ROPE_VARIANTS = ("legacy", "interleaved")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"img_size must be an int or [height, width], got {v}")
    return v  # type: ignore[return-value]


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a video ViT encoder. ``img_size`` is ``(height, width)`` (an int means square)."""

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 16
    img_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    pos_embed: str = "rope"
    rope_variant: str = "legacy"
    uniform_power: bool = True
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    attn_drop: float = 0.0
    layer_norm_eps: float = LN_EPS
    init_std: float = 0.02
    init_rescale: bool = True
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", _pair(self.img_size))
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "tubelet_size", "num_frames", "in_chans"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"encoder.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"encoder.embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"encoder.pos_embed must be one of {POS_EMBEDS}, got {self.pos_embed!r}")
        if self.rope_variant not in ROPE_VARIANTS:
            raise ValueError(f"encoder.rope_variant must be one of {ROPE_VARIANTS}, got {self.rope_variant!r}")
        if self.num_frames % self.tubelet_size and self.num_frames > 1:
            raise ValueError(f"encoder.num_frames {self.num_frames} is not divisible by tubelet_size {self.tubelet_size}")
        for i, s in enumerate(self.img_size):
            if s % self.patch_size:
                raise ValueError(f"encoder.img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"encoder.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid ``(T', H', W')`` at the construction size."""
        t = max(1, self.num_frames // self.tubelet_size)
        return (t, self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown encoder config key(s): {', '.join(unknown)}")
        return cls(**d)


class PatchEmbed3D(nn.Module):
    """``[B, C, T, H, W] -> [B, N, D]`` with a tubelet Conv3d (token order ``[t][h][w]``)."""

    def __init__(self, in_chans: int, dim: int, patch: int, tubelet: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """The V-JEPA encoder. ``forward(x, masks=None, out_layers=None) -> [B', K, D]``.

    ``masks``: ``LongTensor[B, K]`` of token ids to keep, or a list of them (results concatenated
    along the batch, ``B' = B * len(masks)``, as the reference does). ``out_layers``: indices of
    blocks whose (final-normed) outputs to return as a list instead of the last output.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed3D(cfg.in_chans, d, cfg.patch_size, cfg.tubelet_size)
        if cfg.pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_3d(d, cfg.grid, cfg.uniform_power)[None], persistent=True)
        else:
            self.pos_embed = None
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, dpr[i], cfg.attn_drop, cfg.layer_norm_eps)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        trunc_normal_init(self, cfg.init_std)
        if cfg.init_rescale:
            rescale_residual_init(self.blocks)

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def embed(self, clips: torch.Tensor, pool="mean", layers=None, **kw):
        """Frozen features: tokens (``pool="none"``) or pooled (``"mean"``), from the last or chosen layers,
        optionally over sliding windows, under ``torch.inference_mode``. See :func:`videojepa.evaluation.embed`."""
        from ..evaluation.features import embed

        return embed(self, clips, pool=pool, layers=layers, **kw)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Accept ``[B, C, H, W]`` images and clips shorter than a tubelet (frames are repeated)."""
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.ndim != 5:
            raise ValueError(f"expected a clip [B, C, T, H, W] or an image [B, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.cfg.in_chans:
            raise ValueError(f"expected {self.cfg.in_chans} channels, got shape {tuple(x.shape)} (layout is B, C, T, H, W)")
        if x.shape[2] < self.cfg.tubelet_size:
            x = x.repeat_interleave(self.cfg.tubelet_size, dim=2)[:, :, : self.cfg.tubelet_size]
        return x

    def grid_of(self, x: torch.Tensor) -> tuple[int, int, int]:
        """Token grid of an input (after :meth:`prepare_input`); errors name the offending size."""
        _, _, t, h, w = x.shape
        p, tb = self.cfg.patch_size, self.cfg.tubelet_size
        if t % tb or h % p or w % p:
            raise ValueError(
                f"clip of {t} frames x {h}x{w} px is not divisible into tubelets of {tb} frames x {p}x{p} px"
            )
        return (t // tb, h // p, w // p)

    def forward(
        self,
        x: torch.Tensor,
        masks: torch.Tensor | list[torch.Tensor] | None = None,
        out_layers: list[int] | tuple[int, ...] | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        x = self.prepare_input(x)
        grid = self.grid_of(x)
        tokens = self.patch_embed(x)  # [B, N, D]
        if self.pos_embed is not None:
            tokens = tokens + resize_pos_embed(self.pos_embed, self.cfg.grid, grid).to(tokens.dtype)
        ids = None
        if masks is not None:
            masks = list(masks) if isinstance(masks, (list, tuple)) else [masks]
            tokens = apply_masks(tokens, masks)
            ids = torch.cat(masks, dim=0)
        rope = None
        if self.cfg.pos_embed == "rope":
            if ids is None:
                ids = torch.arange(tokens.shape[1], device=tokens.device)
            rope = build_rope(ids, grid, self.cfg.head_dim, self.cfg.rope_variant)
        outs = []
        ckpt = self.cfg.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, blk in enumerate(self.blocks):
            tokens = checkpoint(blk, tokens, rope, use_reentrant=False) if ckpt else blk(tokens, rope)
            if out_layers is not None and i in out_layers:
                outs.append(self.norm(tokens))
        if out_layers is not None:
            missing = sorted(set(out_layers) - set(range(len(self.blocks))))
            if missing:
                raise ValueError(f"out_layers {missing} out of range for depth {len(self.blocks)}")
            return outs
        return self.norm(tokens)
