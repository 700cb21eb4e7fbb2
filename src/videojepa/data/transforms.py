"""Tensor transforms (no torchvision). Clips are ``[C, T, H, W]`` float tensors in [0, 1]."""
from __future__ import annotations

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(clip: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """``(clip - mean) / std`` per channel, for ``[C, T, H, W]`` or ``[B, C, T, H, W]``."""
    shape = (-1, 1, 1, 1)
    m = torch.as_tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    s = torch.as_tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    return (clip - m) / s
