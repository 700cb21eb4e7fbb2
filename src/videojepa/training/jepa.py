"""The V-JEPA pretraining objective as a module: context encoder, predictor and EMA target encoder."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..masks.ops import apply_masks
from ..models.predictor import Predictor, PredictorConfig
from ..models.vit import EncoderConfig, VisionTransformer
from .ema import ema_update, make_target
from .losses import jepa_loss, normalize_targets, sigreg, standardize_per_clip, token_spread_penalty, variance_reg

__all__ = ["JEPA", "StepOutput"]


@dataclass
class StepOutput:
    loss: torch.Tensor
    loss_jepa: torch.Tensor
    loss_reg: torch.Tensor
    preds: list[torch.Tensor]
    targets: list[torch.Tensor]


class JEPA(nn.Module):
    """``encoder`` (trained), ``predictor`` (trained), ``target_encoder`` (EMA of the encoder, frozen)."""

    def __init__(self, enc_cfg: EncoderConfig, pred_cfg: PredictorConfig) -> None:
        super().__init__()
        self.encoder = VisionTransformer(enc_cfg)
        self.predictor = Predictor(pred_cfg, enc_cfg.embed_dim, enc_cfg.grid, enc_cfg.pos_embed, enc_cfg.rope_variant)
        self.target_encoder = make_target(self.encoder)

    def trainable(self) -> list[nn.Module]:
        return [self.encoder, self.predictor]

    def forward(self, clips: torch.Tensor, masks: list[tuple[torch.Tensor, torch.Tensor]], *, loss_exp: float = 1.0,
                reg_coeff: float = 0.0, mask_token_by: str = "config", token_var_coeff: float = 0.0,
                token_var_target: float = 0.5, target_norm: str = "layer", sigreg_coeff: float = 0.0,
                sigreg_directions: torch.Tensor | None = None) -> StepOutput:
        """One V-JEPA forward: clips ``[B, C, T, H, W]``, one ``(ctx [B,Kc], tgt [B,Kt])`` pair per mask config.

        Target: layer-normed (no affine) EMA-encoder tokens of the full clip, gathered at each target
        mask. Context: the encoder on the visible tokens, once per mask config. Loss: the mean over mask
        configs of ``mean(|pred - target|^p) / p``. ``mask_token_by``: ``config`` gives mask config ``m``
        its own mask token (V-JEPA 1); ``first`` always uses token 0 (what V-JEPA 2 training does).
        ``target_norm="clip"`` also standardises each target feature over the tokens of its clip.
        ``sigreg_coeff``: weight of :func:`sigreg` on the context encoder's tokens along ``sigreg_directions``.
        """
        clips = self.encoder.prepare_input(clips)
        grid = self.encoder.grid_of(clips)
        with torch.no_grad():
            self.target_encoder.eval()
            h = normalize_targets(self.target_encoder(clips))  # [B, N, D]
            if target_norm == "clip":
                h = standardize_per_clip(h)
        preds, targets, losses, token_regs = [], [], [], []  # token_regs: weighted terms on context tokens
        for m, (ctx, tgt) in enumerate(masks):
            z = self.encoder(clips, masks=ctx)  # [B, Kc, D]
            if token_var_coeff > 0:
                token_regs.append(token_var_coeff * token_spread_penalty(z, token_var_target))
            if sigreg_coeff > 0:
                token_regs.append(sigreg_coeff * sigreg(z, sigreg_directions))
            p = self.predictor(z, ctx, tgt, mask_index=m if mask_token_by == "config" else 0, grid=grid)  # [B, Kt, D]
            t = apply_masks(h, tgt)
            losses.append(jepa_loss(p.float(), t.float(), loss_exp))
            preds.append(p)
            targets.append(t)
        loss_jepa = torch.stack(losses).mean()
        loss_reg = variance_reg(preds) if reg_coeff > 0 else loss_jepa.new_zeros(())
        loss = loss_jepa + reg_coeff * loss_reg
        if token_regs:  # each term averaged over the mask configs, as the prediction loss is
            loss_tokens = torch.stack(token_regs).sum() / len(masks)
            loss = loss + loss_tokens
            loss_reg = loss_reg + loss_tokens
        return StepOutput(loss, loss_jepa, loss_reg, preds, targets)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        ema_update(self.target_encoder, self.encoder, momentum)
