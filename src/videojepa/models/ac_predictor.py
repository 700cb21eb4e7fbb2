"""The V-JEPA 2-AC action-conditioned predictor (a latent world model), its losses and its rollout.

A frozen encoder turns every frame into ``N = H'*W'`` feature tokens (:func:`encode_frames`: each frame
alone, as a clip of ``tubelet_size`` copies of itself, then a layer norm without affine). The predictor
maps them to its width and, per frame ``t``, puts ``K`` conditioning tokens in front of the frame's
tokens: the action ``a_t`` and the state ``s_t`` (and the camera extrinsics ``e_t`` when
``use_extrinsics``), each through its own Linear. The sequence ``[a_0, s_0, z_0, a_1, s_1, z_1, ...]``
runs through ``depth`` pre-norm blocks under a block-causal mask (every token of frame ``t`` sees every
token of frames ``<= t``), the conditioning tokens are dropped, and a LayerNorm + Linear map back to the
encoder width. Output frame ``t`` is the prediction of frame ``t+1``.

Positions: 3-D RoPE as in the encoder (``[T | H | W | rest]`` split of each head). Frame tokens are
rotated by (frame, row, column), with the column scaled by ``H'/W'`` (the reference snaps both spatial
axes to a grid of ``H'``; a no-op for square grids); conditioning tokens are rotated on the temporal
axis only (their frame index), the rest of their head dimensions pass through unrotated, which is
exactly a rotation at row = column = 0.

Losses (:func:`ac_losses`) follow the official DROID trainer: teacher forcing (frames ``0..T-2`` predict
``1..T-1``) plus an auto-regressive rollout of ``auto_steps`` frames started from the ground-truth frame 0
and the teacher-forced prediction of frame 1; predictions are layer-normed again; the loss is
``mean(|pred - target| ** p) / p``.

Parameter names are those of the official ``predictor`` state dict (after removing ``module.``), so the
released ``vjepa2-ac-vitg.pt`` predictor loads strictly. Like the official module, the extrinsics encoder
(width ``extrinsics_dim``, the official ``action_dim - 1``) always exists, used or not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .layers import LN_EPS, Block, rescale_residual_init, trunc_normal_init
from .rope import RopeTables, _axis_table, fuse_rope, rope_axis_dim
from .vit import ROPE_VARIANTS

__all__ = ["ACPredictorConfig", "ACPredictor", "block_causal_mask", "ac_rope_tables", "encode_frames", "ac_losses",
           "rollout"]


@dataclass(frozen=True)
class ACPredictorConfig:
    """Architecture of the action-conditioned predictor. Defaults: the released V-JEPA 2-AC ViT-g predictor."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    action_dim: int = 7
    state_dim: int = 7
    extrinsics_dim: int = 6
    use_extrinsics: bool = False
    frame_causal: bool = True
    use_rope: bool = True
    rope_variant: str = "legacy"
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    layer_norm_eps: float = LN_EPS
    init_std: float = 0.02
    init_rescale: bool = True
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "action_dim", "state_dim", "extrinsics_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ac_predictor.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"ac_predictor.embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.rope_variant not in ROPE_VARIANTS:
            raise ValueError(f"ac_predictor.rope_variant must be one of {ROPE_VARIANTS}, got {self.rope_variant!r}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"ac_predictor.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"ac_predictor.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def cond_tokens(self) -> int:
        """Conditioning tokens per frame: action, state (and extrinsics)."""
        return 3 if self.use_extrinsics else 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ACPredictorConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown ac_predictor config key(s): {', '.join(unknown)}")
        return cls(**d)


def block_causal_mask(num_frames: int, tokens_per_frame: int, device=None) -> torch.Tensor:
    """Bool ``[N, N]`` (``N = num_frames * tokens_per_frame``; True = may attend): every token of frame ``t``
    sees every token of frames ``<= t``."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame[:, None] >= frame[None, :]


def ac_rope_tables(num_frames: int, grid_hw: tuple[int, int], cond_tokens: int, head_dim: int,
                   variant: str = "legacy", device=None) -> RopeTables:
    """RoPE tables for the interleaved sequence ``[c_0..c_{K-1}, patches]`` per frame, shapes ``[N, d]``.

    Patch ``(t, h, w)``: angles of ``t``, ``h`` and ``w * H'/W'``; conditioning token of frame ``t``:
    angles of ``t`` on the temporal axis and of 0 on both spatial axes (cos 1, sin 0: unrotated).
    """
    gh, gw = grid_hw
    per_frame = cond_tokens + gh * gw
    t = torch.arange(num_frames, device=device).repeat_interleave(per_frame).to(torch.float32)
    patch = torch.arange(gh * gw, device=device)
    zeros = torch.zeros(cond_tokens, dtype=torch.float32, device=device)
    h = torch.cat([zeros, (patch // gw).to(torch.float32)])
    w = torch.cat([zeros, (patch % gw).to(torch.float32)])
    if gh != gw:
        w = w * (gh / gw)  # the reference snaps the column to a grid of H' (grid_size = H')
    h, w = h.repeat(num_frames), w.repeat(num_frames)
    d = rope_axis_dim(head_dim)
    return tuple(_axis_table(p, d, variant) for p in (t, h, w))


def _check(name: str, x: torch.Tensor | None, shape: tuple) -> None:
    if x is None:
        raise ValueError(f"{name} is required, expected shape {shape}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)}")


class ACPredictor(nn.Module):
    """``forward(z, actions, states, extrinsics=None) -> same shape as z``.

    ``z``: ``[B, T*N, De]`` (frames in time-major order, ``N = H'*W'``) or ``[B, T, N, De]``;
    ``actions`` ``[B, T, A]``; ``states`` ``[B, T, S]``; ``extrinsics`` ``[B, T, E]`` (read only with
    ``use_extrinsics``, ignored otherwise as the reference does). Output frame ``t`` predicts frame ``t+1``.
    """

    def __init__(self, cfg: ACPredictorConfig, encoder_dim: int, grid_hw: tuple[int, int] = (16, 16)) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder_dim = int(encoder_dim)
        self.grid_hw = (int(grid_hw[0]), int(grid_hw[1]))
        d = cfg.embed_dim
        self.predictor_embed = nn.Linear(encoder_dim, d)
        self.action_encoder = nn.Linear(cfg.action_dim, d)
        self.state_encoder = nn.Linear(cfg.state_dim, d)
        self.extrinsics_encoder = nn.Linear(cfg.extrinsics_dim, d)
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.predictor_blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, dpr[i], 0.0, cfg.layer_norm_eps) for i in range(cfg.depth)
        )
        self.predictor_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.predictor_proj = nn.Linear(d, encoder_dim)
        trunc_normal_init(self, cfg.init_std)
        if cfg.init_rescale:
            rescale_residual_init(self.predictor_blocks)

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    def _frames(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` as ``[B, T, N, De]`` (checked)."""
        n, de = self.tokens_per_frame, self.encoder_dim
        if z.ndim == 4:
            if z.shape[2:] != (n, de):
                raise ValueError(f"z has shape {tuple(z.shape)}, expected [B, T, {n}, {de}] (grid {self.grid_hw})")
            return z
        if z.ndim != 3 or z.shape[-1] != de or z.shape[1] % n or z.shape[1] == 0:
            raise ValueError(f"z has shape {tuple(z.shape)}, expected [B, T*{n}, {de}] or [B, T, {n}, {de}] "
                             f"(grid {self.grid_hw})")
        return z.unflatten(1, (-1, n))

    def forward(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
                extrinsics: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        x4 = self._frames(z)
        b, t, n, _ = x4.shape
        _check("actions", actions, (b, t, cfg.action_dim))
        _check("states", states, (b, t, cfg.state_dim))
        cond = [self.action_encoder(actions), self.state_encoder(states)]
        if cfg.use_extrinsics:
            _check("extrinsics", extrinsics, (b, t, cfg.extrinsics_dim))
            cond.append(self.extrinsics_encoder(extrinsics))
        k = len(cond)
        x = self.predictor_embed(x4)  # [B, T, N, D]
        x = torch.cat([c.unsqueeze(2) for c in cond] + [x], dim=2).flatten(1, 2)  # [B, T*(K+N), D]
        mask = block_causal_mask(t, k + n, device=x.device) if cfg.frame_causal else None
        rope = None
        if cfg.use_rope:
            hd = cfg.embed_dim // cfg.num_heads
            rope = fuse_rope(ac_rope_tables(t, self.grid_hw, k, hd, cfg.rope_variant, x.device), hd)
        ckpt = cfg.activation_checkpointing and self.training and torch.is_grad_enabled()
        for blk in self.predictor_blocks:
            x = checkpoint(blk, x, rope, mask, use_reentrant=False) if ckpt else blk(x, rope, mask)
        x = x.unflatten(1, (t, k + n))[:, :, k:]  # drop the conditioning tokens: [B, T, N, D]
        x = self.predictor_proj(self.predictor_norm(x))
        return x if z.ndim == 4 else x.flatten(1, 2)


# ------------------------------------------------------------------------------------------- frames, losses


def _ln(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],))


def encode_frames(encoder: nn.Module, frames: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, T, N, D]``: every frame encoded alone, as a clip of ``tubelet_size`` copies
    of itself, then (``normalize``) layer-normed over D without affine, as the official DROID trainer does.

    Gradients flow if enabled: wrap the call in ``torch.no_grad()`` for a frozen encoder.
    """
    if frames.ndim != 5:
        raise ValueError(f"frames has shape {tuple(frames.shape)}, expected [B, C, T, H, W]")
    b, c, t, hh, ww = frames.shape
    tub = encoder.cfg.tubelet_size
    clips = frames.transpose(1, 2).reshape(b * t, c, 1, hh, ww).expand(-1, -1, tub, -1, -1)
    h = encoder(clips)  # [B*T, N, D]
    h = h.reshape(b, t, h.shape[-2], h.shape[-1])
    return _ln(h) if normalize else h


def _as_frames(z: torch.Tensor, n: int, name: str = "z") -> torch.Tensor:
    if z.ndim == 4:
        return z
    if z.ndim != 3 or z.shape[1] % n or z.shape[1] == 0:
        raise ValueError(f"{name} has shape {tuple(z.shape)}, expected [B, T, N, D] or [B, T*{n}, D]")
    return z.unflatten(1, (-1, n))


def _step(predictor, z, actions, states, extrinsics, normalize: bool) -> torch.Tensor:
    out = predictor(z, actions, states, extrinsics)
    return _ln(out) if normalize else out


def ac_losses(predictor: nn.Module, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
              auto_steps: int = 2, loss_exp: float = 1.0, extrinsics: torch.Tensor | None = None,
              normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(teacher_forcing_loss, rollout_loss)`` of the official DROID trainer; its loss is their sum.

    ``z``: encoded frames ``[B, T, N, D]`` (or ``[B, T*N, D]``), targets ``z[:, 1:]``; ``actions``
    ``[B, T-1, A]`` (``a_t`` moves frame ``t`` to ``t+1``); ``states`` ``[B, T, S]`` (the last is unused);
    ``extrinsics`` ``[B, T, E]`` when the predictor uses them. ``z`` is detached (the targets and context
    come from the frozen encoder, under ``no_grad`` in the reference): gradients reach only the predictor
    (and ``actions`` / ``states`` if they require them).

    Teacher forcing: frames ``0..T-2`` with ``a_0..a_{T-2}``, ``s_0..s_{T-2}`` predict ``1..T-1``.
    Rollout: the inputs start as ``[z_0, zhat_1]`` with ``zhat_1`` the teacher-forced prediction of frame 1
    (output position 0); each of the ``auto_steps - 1`` further steps reruns the predictor on all frames so
    far with ``a_0..a_n``, ``s_0..s_n`` (ground-truth states) and appends its last frame. The rollout loss
    compares ``[zhat_1 .. zhat_auto_steps]`` with frames ``1..auto_steps``. ``normalize``: layer-norm every
    prediction (``normalize_reps``). Loss: ``mean(|pred - target| ** loss_exp) / loss_exp``.
    """
    n = getattr(predictor, "tokens_per_frame", None)
    if z.ndim != 4 and n is None:
        raise ValueError("pass z as [B, T, N, D] (this predictor does not say its tokens_per_frame)")
    z = _as_frames(z, n).detach()
    b, t = z.shape[:2]
    if t < 2:
        raise ValueError(f"z has {t} frame(s); the losses need at least 2")
    if not 1 <= auto_steps <= t - 1:
        raise ValueError(f"auto_steps must be in [1, {t - 1}] for {t} frames, got {auto_steps}")
    if actions.ndim != 3 or actions.shape[:2] != (b, t - 1):
        raise ValueError(f"actions has shape {tuple(actions.shape)}, expected [{b}, {t - 1}, A] for {t} frames")
    if states.ndim != 3 or states.shape[:2] != (b, t):
        raise ValueError(f"states has shape {tuple(states.shape)}, expected [{b}, {t}, S] for {t} frames")
    if extrinsics is not None and (extrinsics.ndim != 3 or extrinsics.shape[:2] != (b, t)):
        raise ValueError(f"extrinsics has shape {tuple(extrinsics.shape)}, expected [{b}, {t}, E] for {t} frames")
    ext = (lambda m: None) if extrinsics is None else (lambda m: extrinsics[:, :m])

    def loss(pred: torch.Tensor) -> torch.Tensor:
        target = z[:, 1 : 1 + pred.shape[1]]
        return torch.mean(torch.abs(pred - target) ** loss_exp) / loss_exp

    z_tf = _step(predictor, z[:, :-1], actions, states[:, :-1], ext(t - 1), normalize)  # [B, T-1, N, D]
    seq = torch.cat([z[:, :1], z_tf[:, :1]], dim=1)  # ground-truth frame 0, predicted frame 1
    for m in range(1, auto_steps):
        nxt = _step(predictor, seq, actions[:, : m + 1], states[:, : m + 1], ext(m + 1), normalize)[:, -1:]
        seq = torch.cat([seq, nxt], dim=1)
    return loss(z_tf), loss(seq[:, 1:])


def rollout(predictor: nn.Module, z0: torch.Tensor, actions: torch.Tensor, states: torch.Tensor,
            extrinsics: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """Auto-regressive prediction for planning: ``K = actions.shape[1] - T0 + 1`` new frames.

    ``z0``: the ``T0`` context frames, ``[B, T0, N, D]`` or ``[B, T0*N, D]``; ``actions`` and ``states``
    ``[B, T0+K-1, *]``: one per input frame (the states of predicted frames are the caller's, e.g.
    integrated from the actions as the official planner does). Step ``k`` runs the predictor on the
    ``T0+k`` frames so far, keeps its last frame and (``normalize``) layer-norms it, as the official
    world-model wrapper does. Returns the predicted frames in ``z0``'s layout (``[B, K, N, D]`` or
    ``[B, K*N, D]``).
    """
    n = getattr(predictor, "tokens_per_frame", None)
    if z0.ndim != 4 and n is None:
        raise ValueError("pass z0 as [B, T0, N, D] (this predictor does not say its tokens_per_frame)")
    frames = _as_frames(z0, n, "z0")
    b, t0 = frames.shape[:2]
    if actions.ndim != 3 or actions.shape[0] != b or actions.shape[1] < t0:
        raise ValueError(f"actions has shape {tuple(actions.shape)}, expected [{b}, T0+K-1, A] with T0 = {t0}, K >= 1")
    steps = actions.shape[1] - t0 + 1
    if states.ndim != 3 or states.shape[:2] != actions.shape[:2]:
        raise ValueError(f"states has shape {tuple(states.shape)}, expected [{b}, {actions.shape[1]}, S] "
                         "(one per input frame, like actions)")
    if extrinsics is not None and (extrinsics.ndim != 3 or extrinsics.shape[:2] != actions.shape[:2]):
        raise ValueError(f"extrinsics has shape {tuple(extrinsics.shape)}, expected [{b}, {actions.shape[1]}, E]")
    preds = []
    for k in range(steps):
        m = t0 + k
        e = None if extrinsics is None else extrinsics[:, :m]
        nxt = _step(predictor, frames, actions[:, :m], states[:, :m], e, normalize)[:, -1:]
        preds.append(nxt)
        frames = torch.cat([frames, nxt], dim=1)
    out = torch.cat(preds, dim=1)
    return out if z0.ndim == 4 else out.flatten(1, 2)
