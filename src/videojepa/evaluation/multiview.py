"""The multi-view test protocol: segments x spatial views, softmax averaged (REFERENCE §6.2).

"F x S x V" (e.g. 16 x 2 x 3 for SSv2) means clips of F frames, S temporal segments per video and V
spatial views per segment. Evaluation datasets of real videos already give items of ``S*V`` clips
(:class:`~videojepa.data.video_dataset.VideoDataset` with ``mode="eval"``, segment-major). :class:`ClipViews`
gives the same layout for any dataset whose items are single long clips ``[C, T, H, W]`` (the synthetic
dataset, decoded tensors): it cuts ``S`` evenly spaced segments and ``V`` evenly spaced square crops after
resizing the short side to the crop, as the reference's ``EvalVideoTransform`` does.

Aggregation (:func:`evaluate_views`, :meth:`~videojepa.evaluation.features.FeatureSet.by_view`): with
``aggregate="concat"`` (V-JEPA 2, and V-JEPA 1's ``attend_across_segments``) the tokens of the S segments of
one view are concatenated and go through the probe together, giving one prediction per spatial view; with
``"average"`` every clip is its own probe pass. The prediction is the argmax of the mean softmax.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.sampling import clip_starts
from ..data.transforms import spatial_crop_boxes
from .features import FeatureSet
from .metrics import summarize
from .probe import predict_probs

__all__ = ["ClipViews", "average_view_probs", "evaluate_views", "expand_views"]


def average_view_probs(logits: torch.Tensor) -> torch.Tensor:
    """``[N, M, C]`` logits of ``M`` views -> ``[N, C]`` mean of their softmax probabilities."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def expand_views(clip: torch.Tensor, num_frames: int, segments: int = 1, views: int = 1, crop_size=None,
                 frame_step: int = 1) -> torch.Tensor:
    """Cut one clip ``[C, T, H, W]`` into ``[S*V, C, F, h, w]`` evaluation views (segment-major).

    Segments: ``S`` clips of ``F = num_frames`` frames, ``frame_step`` apart, starting at evenly spaced
    positions from the first to the last possible one (one segment: the centre); a clip shorter than a
    segment repeats its last frame. Views: the frame is resized (bilinear) so its short side is the crop
    (default: the short side, no resize), then ``V`` crops are spread evenly along the long side (one view:
    the centre)."""
    if clip.ndim != 4:
        raise ValueError(f"expected a clip [C, T, H, W], got shape {tuple(clip.shape)}")
    C, T, H, W = clip.shape
    span = (num_frames - 1) * frame_step + 1
    if T < span:
        starts = [0] * segments
    else:
        starts = [int(s) for s in clip_starts(T, span, segments, "eval", integer=True)]
    offsets = torch.arange(num_frames) * frame_step
    crop = (min(H, W),) * 2 if crop_size is None else ((crop_size,) * 2 if isinstance(crop_size, int) else tuple(crop_size))
    s = max(crop[0] / H, crop[1] / W)
    rh, rw = max(crop[0], int(round(H * s))), max(crop[1], int(round(W * s)))
    x = clip
    if (rh, rw) != (H, W):
        x = F.interpolate(clip.transpose(0, 1), size=(rh, rw), mode="bilinear", align_corners=False).transpose(0, 1)
    boxes = spatial_crop_boxes(rh, rw, crop, views)
    out = []
    for st in starts:
        idx = (st + offsets).clamp(max=T - 1)
        seg = x[:, idx]
        out += [seg[:, :, t:t + h, l:l + w] for t, l, h, w in boxes]
    return torch.stack(out).contiguous()


class ClipViews(Dataset):
    """Items of ``base`` (``{"clip": [C, T, H, W], ...}``) with their clip cut into ``segments x views``
    evaluation clips ``[S*V, C, F, h, w]`` (see :func:`expand_views`); other keys are passed through."""

    def __init__(self, base: Dataset, num_frames: int, segments: int = 1, views: int = 1, crop_size=None,
                 frame_step: int = 1) -> None:
        if segments < 1 or views < 1:
            raise ValueError(f"segments and views must be >= 1, got {segments} and {views}")
        self.base, self.num_frames, self.segments, self.views = base, int(num_frames), int(segments), int(views)
        self.crop_size, self.frame_step = crop_size, int(frame_step)
        self.class_names = getattr(base, "class_names", None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        if not isinstance(item, dict):
            return item  # a SkippedSample passes through
        item = dict(item)
        item["clip"] = expand_views(item["clip"], self.num_frames, self.segments, self.views, self.crop_size,
                                    self.frame_step)
        return item


def evaluate_views(probe: nn.Module, features: FeatureSet | torch.Tensor, labels: torch.Tensor | None = None, *,
                   segments: int | None = None, views: int | None = None, aggregate: str = "concat",
                   batch_size: int = 128, device="cpu") -> dict:
    """Run ``probe`` on every view of every item and average the softmax over views.

    ``features``: a :class:`FeatureSet` (its ``segments`` / ``views`` and labels are used), or a tensor
    ``[N, S*V, K, D]`` / ``[N, S*V, D]`` of raw per-clip features (segment-major) with ``segments`` and
    ``views`` given. Returns ``probs [N, C]``, ``preds`` and, when labels are known, ``top1``, ``top5``,
    ``per_class`` and ``mean_per_class``.
    """
    if isinstance(features, FeatureSet):
        fs = features
        labels = fs.labels if labels is None else labels
    else:
        if segments is None and views is None:
            raise ValueError("give segments and views for a raw feature tensor")
        M = features.shape[1]
        S = segments or M // views
        V = views or M // S
        if S * V != M:
            raise ValueError(f"{M} clips per item is not {S} segments x {V} views")
        n = features.shape[0]
        fs = FeatureSet(features=features, labels=torch.full((n,), -1, dtype=torch.long),
                        indices=torch.arange(n), pooled=features.ndim == 3, segments=S, views=V)
    probs = predict_probs(probe, fs, aggregate=aggregate, batch_size=batch_size, device=device)
    out = {"probs": probs, "preds": probs.argmax(dim=-1)}
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        known = labels >= 0
        if bool(known.any()):
            out.update(summarize(probs[known], labels[known]))
    return out
