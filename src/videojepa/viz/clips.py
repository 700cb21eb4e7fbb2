"""One clip for pictures: read through the evaluation datasets, normalised for the model and as frames.

``spec`` is anything the evaluation commands read (see :mod:`videojepa.evaluation.datasets`): a video or
image file, a frame folder, a CSV index or folder of videos (``item`` picks one), or
``synthetic:SPLIT[:N]``, the embedded synthetic dataset (no file needed).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["VizError", "read_clip", "read_clips", "clip_defaults", "encoder_of", "frames_of"]


class VizError(ValueError):
    """Bad input for a picture (a file that cannot be read, an item out of range, a model that does not fit):
    the message names the file; the ``videojepa show`` commands print it as ``error: ...``."""


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


def frames_of(clip01: torch.Tensor) -> np.ndarray:
    """A clip ``[C, T, H, W]`` with values in ``[0, 1]`` (as the datasets give it) -> uint8 frames ``[T, H, W, C]``."""
    return clip01.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


def _open(spec: str, *, num_frames: int, crop_size, frame_step, fps):
    from ..data.errors import DataError
    from ..evaluation.datasets import ClipSpec, open_dataset

    if num_frames < 1:
        raise VizError(f"num_frames must be >= 1, got {num_frames}")
    clip = ClipSpec(num_frames=int(num_frames), crop_size=_pair(crop_size),
                    frame_step=None if fps else int(frame_step or 4), fps=float(fps) if fps else None)
    try:
        return open_dataset(str(spec), clip)
    except (DataError, ValueError, OSError) as e:
        raise VizError(f"cannot open {spec}: {e}") from e


def _item(ds, spec: str, i: int, mean, std) -> tuple[torch.Tensor, np.ndarray, int | None]:
    from ..data.errors import DataError, SkippedSample
    from ..data.transforms import normalize

    if not 0 <= i < len(ds):
        raise VizError(f"{spec}: item {i} is out of range ({len(ds)} items)")
    try:
        it = ds[i]
    except (DataError, ValueError, OSError) as e:
        msg = str(e)
        raise VizError(msg if str(spec) in msg else f"cannot read {spec}: {msg}") from e
    if isinstance(it, SkippedSample):
        raise VizError(f"cannot read {it.path}: {it.reason}")
    x = it["clip"].float()
    if x.ndim != 4:
        raise VizError(f"{spec}: expected one clip [C, T, H, W], got shape {tuple(x.shape)}")
    frames = frames_of(x)
    label = it.get("label")
    return normalize(x, mean, std), frames, (None if label is None else int(label))


def read_clip(spec: str, *, num_frames: int, crop_size, frame_step: int | None = None, item: int = 0,
              mean=IMAGENET_MEAN, std=IMAGENET_STD, fps: float | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """``(clip, frames)`` of item ``item`` of ``spec``: ``clip [C, T, H, W]`` float32 normalised with
    ``mean`` / ``std`` (what the encoder takes), ``frames [T, H, W, 3]`` uint8 (the same pixels, to look at).

    The clip is cut as the evaluation does: ``num_frames`` frames ``frame_step`` apart (default 4; or at
    ``fps``), the short side resized and centre-cropped to ``crop_size`` (int or ``(h, w)``). Raises
    :class:`VizError` naming the file when it cannot be read."""
    ds = _open(spec, num_frames=num_frames, crop_size=crop_size, frame_step=frame_step, fps=fps)
    clip, frames, _ = _item(ds, spec, int(item), mean, std)
    return clip, frames


def read_clips(spec: str, *, num_frames: int, crop_size, frame_step: int | None = None, max_items: int = 8,
               mean=IMAGENET_MEAN, std=IMAGENET_STD, fps: float | None = None) -> list[torch.Tensor]:
    """The normalised clips of the first ``max_items`` items of ``spec`` (e.g. a reference set for a PCA)."""
    ds = _open(spec, num_frames=num_frames, crop_size=crop_size, frame_step=frame_step, fps=fps)
    n = min(len(ds), int(max_items))
    if n < 1:
        raise VizError(f"{spec}: no item")
    return [_item(ds, spec, i, mean, std)[0] for i in range(n)]


def encoder_of(model):
    """The video encoder of a loaded model: the model itself, or the ``encoder`` of a fine-tuned classifier;
    ``None`` when there is none (a predictor, a probe)."""
    if hasattr(model, "blocks") and hasattr(model, "patch_embed"):
        return model
    enc = getattr(model, "encoder", None)
    if enc is not None and hasattr(enc, "blocks") and hasattr(enc, "patch_embed"):
        return enc
    return None


def clip_defaults(model) -> dict:
    """Keyword arguments of :func:`read_clip` for ``model`` (as :func:`videojepa.load` returns it):
    ``num_frames``, ``crop_size``, ``frame_step``, ``fps``, ``mean``, ``std`` from its ``pretrained_cfg``
    preprocessing when known, else its config, else 16 frames, 224 px, every 4th frame and ImageNet statistics."""
    pre = (getattr(model, "pretrained_cfg", None) or {}).get("preprocessing") or {}
    enc = encoder_of(model)
    cfg = getattr(enc, "cfg", None)
    num_frames = pre.get("num_frames") or (cfg.num_frames if cfg is not None else None) or 16
    crop = pre.get("crop_size")
    if cfg is not None and (crop is None or pre.get("source") == "default"):
        crop = tuple(cfg.img_size)  # the default preprocessing only records the height
    crop = _pair(crop if crop is not None else 224)
    fps = pre.get("fps") or None
    frame_step = None if fps else (pre.get("frame_step") or 4)
    return {"num_frames": int(num_frames), "crop_size": crop, "frame_step": frame_step,
            "fps": float(fps) if fps else None, "mean": tuple(pre.get("mean") or IMAGENET_MEAN),
            "std": tuple(pre.get("std") or IMAGENET_STD)}
