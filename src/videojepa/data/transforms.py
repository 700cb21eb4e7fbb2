"""Clip transforms as tensor operations (no torchvision).

Decoded frames come in as ``uint8 [T, H, W, 3]`` arrays; every transform keeps ``H`` (rows) and
``W`` (columns) in that order and returns ``float32 [C, T, H', W']`` clips in [0, 1]. Crops are cut
from the uint8 frames before conversion, so only the pixels that are used get converted and resized.

Training (the reference's pretraining augmentation, REFERENCE §5.3): one random resized crop box for
all frames (area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``, 10 tries,
then a centre crop with the ratio clamped), bilinear resize (``align_corners=False``), horizontal
flip with probability 1/2. Normalisation with the ImageNet mean/std is applied afterwards by
:class:`~videojepa.data.loader.StepDataset` (:func:`normalize`).

Evaluation (REFERENCE §6.2): resize so the short side matches the crop (one view: the crop times
256/224, as the reference's single-view preprocessing), then one centre crop or ``n`` crops spaced
evenly along the long side (three views: left, centre, right, or top, middle, bottom).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize", "to_clip", "random_resized_crop_box", "resized_crop", "hflip",
    "train_transform", "eval_resize_scale", "spatial_crop_boxes", "eval_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(clip: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """``(clip - mean) / std`` per channel, for ``[C, T, H, W]`` or ``[B, C, T, H, W]``."""
    shape = (-1, 1, 1, 1)
    m = torch.as_tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    s = torch.as_tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    return (clip - m) / s


Box = tuple[int, int, int, int]  # (top, left, height, width)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def to_clip(frames: np.ndarray) -> torch.Tensor:
    """``uint8 [T, H, W, 3]`` -> ``float32 [3, T, H, W]`` in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape [T, H, W, 3], got {tuple(x.shape)}")
    return x.permute(3, 0, 1, 2).float().div_(255.0)


def random_resized_crop_box(height: int, width: int, scale=(0.3, 1.0), ratio=(0.75, 1.35),
                            rng: np.random.Generator | None = None) -> Box:
    """A box covering a fraction ``U(scale)`` of the frame with aspect ratio (width/height) log-uniform in ``ratio``."""
    if rng is None:
        raise ValueError("random_resized_crop_box needs a random generator")
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(*log_r))
        w = int(round(math.sqrt(target * r)))
        h = int(round(math.sqrt(target / r)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    r_in = width / height  # fallback: the largest centred box with the ratio clamped to the range
    if r_in < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif r_in > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    h, w = max(1, min(h, height)), max(1, min(w, width))
    return (height - h) // 2, (width - w) // 2, h, w


def _resize(clip: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """``[C, T, h, w]`` -> ``[C, T, size[0], size[1]]``, bilinear, ``align_corners=False``."""
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    x = clip.permute(1, 0, 2, 3)  # [T, C, h, w]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return x.permute(1, 0, 2, 3).contiguous()


def resized_crop(frames: np.ndarray, box: Box, size, antialias: bool = False) -> torch.Tensor:
    """Cut ``box`` (top, left, height, width) from every frame of ``uint8 [T, H, W, 3]`` and resize it to ``size`` (h, w)."""
    top, left, h, w = box
    return _resize(to_clip(frames[:, top:top + h, left:left + w]), _pair(size), antialias)


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror the width axis (the last one) of a ``[..., H, W]`` clip."""
    return clip.flip(-1)


def train_transform(frames: np.ndarray, size, rng: np.random.Generator, scale=(0.3, 1.0), ratio=(0.75, 1.35),
                    flip: bool = True, antialias: bool = False) -> torch.Tensor:
    """Random resized crop (one box for all frames) + horizontal flip (p=1/2): ``[3, T, h, w]`` in [0, 1]."""
    _, H, W, _ = frames.shape
    box = random_resized_crop_box(H, W, scale, ratio, rng)
    clip = resized_crop(frames, box, size, antialias)
    if flip and rng.uniform() < 0.5:
        clip = hflip(clip)
    return clip


def eval_resize_scale(height: int, width: int, size, num_views: int, short_side: int | None = None) -> float:
    """Scale factor of the evaluation resize: the crop must fit; one view adds the reference's 256/224 margin."""
    h, w = _pair(size)
    cover = max(h / height, w / width)
    if short_side is not None:
        return max(short_side / min(height, width), cover)
    return cover * (256 / 224) if num_views == 1 else cover


def spatial_crop_boxes(height: int, width: int, size, num_views: int) -> list[Box]:
    """``num_views`` boxes of ``size`` spread evenly along the long side (one view: the centre)."""
    h, w = _pair(size)
    if h > height or w > width:
        raise ValueError(f"crop {h}x{w} is larger than the frame {height}x{width}")
    if num_views == 1:
        return [((height - h) // 2, (width - w) // 2, h, w)]
    if width - w >= height - h:  # landscape: left ... right
        return [((height - h) // 2, int(round(x)), h, w) for x in np.linspace(0, width - w, num_views)]
    return [(int(round(y)), (width - w) // 2, h, w) for y in np.linspace(0, height - h, num_views)]


def eval_transform(frames: np.ndarray, size, num_views: int = 1, short_side: int | None = None,
                   antialias: bool = False) -> list[torch.Tensor]:
    """Deterministic evaluation views: resize (aspect kept), then ``num_views`` crops; each ``[3, T, h, w]``."""
    _, H, W, _ = frames.shape
    s = eval_resize_scale(H, W, size, num_views, short_side)
    h, w = _pair(size)
    rh, rw = max(h, int(round(H * s))), max(w, int(round(W * s)))
    clip = _resize(to_clip(frames), (rh, rw), antialias)
    return [clip[:, :, t:t + bh, l:l + bw].contiguous() for t, l, bh, bw in spatial_crop_boxes(rh, rw, size, num_views)]
