"""A light pixel decoder for frozen V-JEPA features: one token in, the pixels of its tubelet out.

V-JEPA predicts in a latent space, so nothing it predicts can be looked at. The paper's answer is a decoder
trained afterwards on frozen features; this is a small, per-token version of it. Its input is what the
predictor is trained to output, the layer-normed (affine-free) tokens of the target encoder, so the same
decoder turns the *target* features and the *predictor's outputs* at hidden positions into pictures.

Each token is decoded on its own (with its grid position, as a fixed sin-cos code): a decoded hidden
tubelet shows only what the predicted token at that position carries, never pixels borrowed from the
visible context.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .pos_embed import sincos_3d

__all__ = ["DecoderConfig", "PixelDecoder", "unpatchify", "FrameDecoderConfig", "FrameDecoder"]


@dataclass(frozen=True)
class DecoderConfig:
    """``embed_dim``: the encoder's width; ``grid``: its token grid ``(T', H', W')``; ``hidden``/``depth``: the
    MLP's width and number of hidden layers; ``in_chans``/``tubelet_size``/``patch_size``: what one token covers."""

    embed_dim: int
    grid: tuple[int, int, int]
    tubelet_size: int = 2
    patch_size: int = 16
    in_chans: int = 3
    hidden: int = 512
    depth: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise ValueError(f"decoder grid must be three positive sizes (T', H', W'), got {self.grid}")
        for k in ("embed_dim", "tubelet_size", "patch_size", "in_chans", "hidden", "depth"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"decoder {k} must be >= 1, got {getattr(self, k)}")

    @property
    def pixels_per_token(self) -> int:
        return self.tubelet_size * self.patch_size * self.patch_size * self.in_chans

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"] = list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DecoderConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown decoder config key(s): {', '.join(unknown)}")
        return cls(**d)


class PixelDecoder(nn.Module):
    """``tokens [B, K, D]`` at grid positions ``ids [B, K]`` (all ``N`` positions in order when None) ->
    ``[B, K, tubelet * patch * patch * C]`` pixels in the clip's normalised space, in :func:`~videojepa.training.
    objectives.patchify`'s order."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.embed = nn.Linear(cfg.embed_dim, h)
        self.register_buffer("pos", sincos_3d(h, cfg.grid).float(), persistent=False)  # [N, h], fixed
        layers: list[nn.Module] = []
        for _ in range(cfg.depth):
            layers += [nn.LayerNorm(h), nn.Linear(h, h), nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(h)
        self.out = nn.Linear(h, cfg.pixels_per_token)

    def forward(self, tokens: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.cfg.embed_dim:
            raise ValueError(f"decoder expects tokens [B, K, {self.cfg.embed_dim}], got {tuple(tokens.shape)}")
        n = self.pos.shape[0]
        if ids is None:
            if tokens.shape[1] != n:
                raise ValueError(f"decoder: {tokens.shape[1]} tokens without ids, but the grid {self.cfg.grid} has {n}")
            pos = self.pos.unsqueeze(0)
        else:
            pos = self.pos[ids]
        x = self.embed(tokens) + pos.to(tokens.dtype)
        x = x + self.mlp(x)
        return self.out(self.norm(x))


def unpatchify(pixels: torch.Tensor, grid: tuple[int, int, int], tubelet: int, patch: int, chans: int = 3) -> torch.Tensor:
    """Inverse of :func:`~videojepa.training.objectives.patchify`: ``[B, N, tubelet*patch*patch*C] -> [B, C, T, H, W]``."""
    b, n, _ = pixels.shape
    t, h, w = grid
    if n != t * h * w:
        raise ValueError(f"unpatchify: {n} tokens for a grid {grid}")
    x = pixels.reshape(b, t, h, w, tubelet, patch, patch, chans)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # B, C, T', tubelet, H', p, W', p
    return x.reshape(b, chans, t * tubelet, h * patch, w * patch)


@dataclass(frozen=True)
class FrameDecoderConfig:
    """A world model's latent of one frame ``[dim]`` -> the frame ``[3, img_size, img_size]``: a linear map onto a
    ``start x start`` feature map of ``channels[0]`` channels, then transposed convolutions doubling the size."""

    dim: int
    img_size: int = 64
    channels: tuple[int, ...] = (128, 64, 32)
    kind: str = "frame"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.dim < 1 or not self.channels:
            raise ValueError(f"frame decoder: dim >= 1 and at least one channel count, got {self.dim}, {self.channels}")
        if self.img_size % (2 ** len(self.channels)):
            raise ValueError(f"frame decoder: img_size {self.img_size} is not divisible by 2^{len(self.channels)}")

    @property
    def start(self) -> int:
        return self.img_size // 2 ** len(self.channels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FrameDecoderConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown frame decoder config key(s): {', '.join(unknown)}")
        return cls(**d)


class FrameDecoder(nn.Module):
    """``z [..., dim] -> frames [..., 3, H, W]`` in the world model's pixel space (``[-0.5, 0.5]``)."""

    def __init__(self, cfg: FrameDecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.fc = nn.Linear(cfg.dim, c[0] * cfg.start * cfg.start)
        layers: list[nn.Module] = []
        for i in range(len(c)):
            out = c[i + 1] if i + 1 < len(c) else 32
            layers += [nn.GELU(), nn.ConvTranspose2d(c[i], out, 4, stride=2, padding=1)]
        layers += [nn.GELU(), nn.Conv2d(32, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        c, s = self.cfg.channels[0], self.cfg.start
        x = self.fc(z.reshape(-1, z.shape[-1])).view(-1, c, s, s)
        return self.net(x).reshape(*lead, 3, self.cfg.img_size, self.cfg.img_size)
