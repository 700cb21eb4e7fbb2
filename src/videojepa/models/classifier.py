"""A video classifier: an encoder and a head on its tokens, trained end to end (``videojepa finetune``).

``VideoClassifier(encoder, head)(clips [B, C, T, H, W]) -> logits [B, C]``. The head is one of the probe
heads of :mod:`~videojepa.models.pooler` (the V-JEPA 1 / V-JEPA 2 attentive probes or VideoMAE's mean-pool
head), the same class ``videojepa probe`` trains on frozen features.

:meth:`VideoClassifier.forward_views` is the multi-view test protocol (REFERENCE §6.2) on raw clips:
``[B, S*V, C, T, H, W]`` (segment-major) -> the tokens of the ``S`` segments of each spatial view are
concatenated and go through the head together -> ``V`` logits per video, whose softmaxes are averaged
by the caller (:func:`~videojepa.evaluation.multiview.average_view_probs`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["VideoClassifier"]


class VideoClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def num_classes(self) -> int:
        return int(self.head.cfg.num_classes)

    def forward(self, clips: torch.Tensor, frozen_encoder: bool = False) -> torch.Tensor:
        """``frozen_encoder``: run the encoder without gradients (a head-only training stage)."""
        if frozen_encoder:
            with torch.no_grad():
                tokens = self.encoder(clips)
            return self.head(tokens)
        return self.head(self.encoder(clips))

    def forward_views(self, clips: torch.Tensor, segments: int = 1, views: int = 1) -> torch.Tensor:
        """``[B, S*V, C, T, H, W]`` -> per-view logits ``[B, V, num_classes]`` (segments concatenated)."""
        if clips.ndim != 6:
            raise ValueError(f"expected clips [B, S*V, C, T, H, W], got shape {tuple(clips.shape)}")
        B, M = clips.shape[:2]
        if M != segments * views:
            raise ValueError(f"{M} clips per video is not {segments} segments x {views} views")
        tokens = self.encoder(clips.flatten(0, 1))  # [B*S*V, N, D]
        N, D = tokens.shape[1:]
        tokens = tokens.reshape(B, segments, views, N, D).transpose(1, 2).reshape(B * views, segments * N, D)
        return self.head(tokens).reshape(B, views, -1)
