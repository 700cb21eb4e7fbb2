"""Pixel-space baselines that share V-JEPA's encoder, data, masks, schedules and checkpoints.

``videomae``: reconstruct the pixels of the hidden tubelets, each normalised by its own mean and
standard deviation (VideoMAE's ``norm_pix_loss``), with a mean squared error on hidden tokens only.
``maskfeat``: regress the HOG descriptors of the hidden tubelets (MaskFeat), same loss.

Both run the encoder on the visible tokens only and decode with a narrow transformer that gets
mask tokens at the hidden positions: our V-JEPA predictor architecture, followed by a linear
``head`` to the target width. (VideoMAE decodes the same way; MaskFeat's own design feeds mask tokens
through the encoder instead, which we do not do, so that the three objectives differ only in their
targets.) The EMA ``target_encoder`` is kept (same checkpoints and evaluation code); presets set its
momentum to 0 so that it equals the trained encoder.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..masks.ops import apply_masks
from ..models.predictor import PredictorConfig
from ..models.vit import EncoderConfig
from .jepa import JEPA, StepOutput

__all__ = ["ReconstructionObjective", "patchify", "hog_targets", "build_objective"]


def patchify(clips: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """``[B, C, T, H, W] -> [B, N, tubelet*patch*patch*C]`` in token order ``[t][h][w]``."""
    b, c, t, h, w = clips.shape
    x = clips.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # B, T', H', W', tubelet, p, p, C
    return x.reshape(b, (t // tubelet) * (h // patch) * (w // patch), tubelet * patch * patch * c)


def hog_targets(clips: torch.Tensor, tubelet: int, patch: int, bins: int = 9, cell: int = 8) -> torch.Tensor:
    """HOG descriptors per tubelet: ``[B, N, tubelet * (patch/cell)^2 * bins]``.

    Per frame, on the channel-averaged image: central-difference gradients, unsigned orientations
    (0-180 degrees) soft-assigned to ``bins`` bins, magnitude-weighted histograms over
    ``cell x cell`` pixel cells; the cells of one patch and frame are L2-normalised together (MaskFeat
    normalises locally, within the patch, rather than over overlapping blocks).
    """
    b, c, t, h, w = clips.shape
    cell = min(cell, patch)
    if patch % cell:
        raise ValueError(f"loss.hog_cell {cell} must divide the patch size {patch}")
    g = clips.float().mean(1).reshape(b * t, 1, h, w)
    kx = torch.tensor([[[[-1.0, 0.0, 1.0]]]], device=g.device)
    gx = F.conv2d(F.pad(g, (1, 1, 0, 0), mode="replicate"), kx)
    gy = F.conv2d(F.pad(g, (0, 0, 1, 1), mode="replicate"), kx.transpose(2, 3))
    mag = torch.sqrt(gx * gx + gy * gy)
    ang = torch.atan2(gy, gx) % math.pi  # [0, pi)
    pos = ang / math.pi * bins - 0.5  # soft assignment to the two nearest bin centres
    lo = torch.floor(pos)
    frac = pos - lo
    lo_i = lo.long() % bins
    hi_i = (lo_i + 1) % bins
    hist = torch.zeros(b * t, bins, h, w, device=g.device)
    hist.scatter_add_(1, lo_i, mag * (1 - frac))
    hist.scatter_add_(1, hi_i, mag * frac)
    hist = F.avg_pool2d(hist, cell) * cell * cell  # [B*T, bins, H/cell, W/cell] sums per cell
    cpp = patch // cell  # cells per patch side
    hc, wc = h // cell, w // cell
    hist = hist.reshape(b, t, bins, hc // cpp, cpp, wc // cpp, cpp)
    hist = hist.permute(0, 1, 3, 5, 4, 6, 2).reshape(b, t, (hc // cpp) * (wc // cpp), cpp * cpp * bins)
    hist = F.normalize(hist, dim=-1, eps=1e-6)  # per patch and frame
    hist = hist.reshape(b, t // tubelet, tubelet, -1, cpp * cpp * bins).permute(0, 1, 3, 2, 4)
    return hist.reshape(b, -1, tubelet * cpp * cpp * bins)


class ReconstructionObjective(JEPA):
    """VideoMAE / MaskFeat: encoder on visible tokens, decoder with mask tokens, MSE on hidden tokens."""

    def __init__(self, enc_cfg: EncoderConfig, pred_cfg: PredictorConfig, target: str, *, norm_pix: bool = True,
                 hog_bins: int = 9, hog_cell: int = 8) -> None:
        super().__init__(enc_cfg, pred_cfg)
        if target not in ("pixels", "hog"):
            raise ValueError(f"target must be 'pixels' or 'hog', got {target!r}")
        self.target, self.norm_pix, self.hog_bins, self.hog_cell = target, norm_pix, hog_bins, hog_cell
        t, p, c = enc_cfg.tubelet_size, enc_cfg.patch_size, enc_cfg.in_chans
        out = t * p * p * c if target == "pixels" else t * (p // min(hog_cell, p)) ** 2 * hog_bins
        self.head = nn.Linear(enc_cfg.embed_dim, out)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def trainable(self) -> list[nn.Module]:
        return [self.encoder, self.predictor, self.head]

    def targets_of(self, clips: torch.Tensor) -> torch.Tensor:
        cfg = self.encoder.cfg
        if self.target == "hog":
            return hog_targets(clips, cfg.tubelet_size, cfg.patch_size, self.hog_bins, self.hog_cell)
        x = patchify(clips.float(), cfg.tubelet_size, cfg.patch_size)
        if self.norm_pix:
            x = (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=True) + 1e-6).sqrt()
        return x

    def forward(self, clips, masks, *, loss_exp: float = 1.0, reg_coeff: float = 0.0, mask_token_by: str = "config"):
        clips = self.encoder.prepare_input(clips)
        grid = self.encoder.grid_of(clips)
        with torch.no_grad():
            full = self.targets_of(clips)  # [B, N, P]
        preds, targets, losses = [], [], []
        for m, (ctx, tgt) in enumerate(masks):
            z = self.encoder(clips, masks=ctx)
            p = self.head(self.predictor(z, ctx, tgt, mask_index=m if mask_token_by == "config" else 0, grid=grid))
            t = apply_masks(full, tgt)
            losses.append(F.mse_loss(p.float(), t.float()))
            preds.append(p)
            targets.append(t)
        loss = torch.stack(losses).mean()
        return StepOutput(loss, loss, loss.new_zeros(()), preds, targets)


def build_objective(cfg) -> JEPA:
    """The model of ``cfg.loss.objective`` (a :class:`JEPA` or a :class:`ReconstructionObjective`)."""
    enc, pred, loss = cfg.encoder_config(), cfg.predictor_config(), cfg.loss
    if loss.objective == "vjepa":
        return JEPA(enc, pred)
    target = {"videomae": "pixels", "maskfeat": "hog"}[loss.objective]
    return ReconstructionObjective(enc, pred, target, norm_pix=loss.norm_pix, hog_bins=loss.hog_bins, hog_cell=loss.hog_cell)
