"""Datasets of real videos (and images, and frame folders) for training and evaluation.

:class:`VideoDataset` reads the samples listed by :mod:`videojepa.data.sources`:

``mode="train"``
    item ``i`` is clip ``i % num_clips`` of video ``i // num_clips`` (a video yields ``num_clips``
    clips per epoch, each from its own part of the video) at a random position, with a random
    resized crop and a horizontal flip; ``{"clip": float32 [3, T, H, W] in [0, 1], "label": int | None,
    "index": i, "frame_indices": int64 [T]}``. Every random draw comes from
    ``numpy_generator(seed, step, i, "video-clip")``: :class:`~videojepa.data.loader.StepDataset`
    passes the step through :meth:`VideoDataset.getitem`, so what a step sees is a pure function of
    ``(seed, step)`` and does not depend on the number of workers or on resuming.
    A sample that cannot be read becomes a :class:`~videojepa.data.errors.SkippedSample` (never a
    random other video): the collate function drops it, the trainer counts it, names the file once
    and stops when too many fail (``data.max_failure_rate``).

``mode="eval"``
    item ``i`` is video ``i``: ``num_clips`` clips at deterministic, evenly spaced positions (the
    segments), each cut into ``eval_views`` spatial views; ``{"clip": float32 [S*V, 3, T, H, W]``
    (segment-major: view ``v`` of segment ``s`` is ``s*V + v``), ``"label"``, ``"index"``,
    ``"frame_indices": int64 [S, T]}``. A file that cannot be read raises
    :class:`~videojepa.data.errors.DataError` naming it, unless ``on_error="report"``: then the item
    is a ``SkippedSample`` and :func:`eval_collate` lists it under ``batch["skipped"]`` so the
    evaluation can report and exclude it.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..rng import numpy_generator
from .decode import (DecodeError, list_frame_files, probe, read_frame_folder, read_frames, read_image)
from .errors import DataError, SkippedSample
from .sampling import ClipSampling, sample_clips
from .sources import Entry
from .transforms import eval_transform, train_transform

__all__ = ["ClipReader", "VideoDataset", "eval_collate", "MODES", "ON_ERROR"]

MODES = ("train", "eval")
ON_ERROR = ("skip", "raise", "report")


@dataclass(frozen=True)
class ClipReader:
    """Turns one file (path or bytes) into a training or evaluation item. Shared by the map-style
    :class:`VideoDataset` and the streamed :class:`~videojepa.data.webdataset.WebDatasetStream`."""

    sampling: ClipSampling
    crop_size: tuple[int, int] = (224, 224)
    random_resize_scale: tuple[float, float] = (0.3, 1.0)
    random_resize_aspect_ratio: tuple[float, float] = (0.75, 1.35)
    flip: bool = True
    eval_views: int = 1
    eval_short_side: int | None = None
    frame_folder_fps: float = 30.0
    decode_threads: int = 1

    def frames(self, src, kind: str, name: str, mode: str, rng, clip: int | None, info_cache=None):
        """(uint8 frames [n*T, H, W, 3], frame indices [n, T]) of the clips of one file."""
        F = self.sampling.num_frames
        if kind == "image":
            img = read_image(src, name=name)
            n = 1 if mode == "train" else self.sampling.num_clips
            return np.broadcast_to(img, (n * F, *img.shape)), np.zeros((n, F), np.int64)
        if kind == "frames":
            files = list_frame_files(src)
            times = np.arange(len(files), dtype=np.float64) / self.frame_folder_fps
            idx = self._indices(times if self.sampling.by_time else len(files), len(files) / self.frame_folder_fps,
                                mode, rng, clip)
            return read_frame_folder(src, idx.reshape(-1), files), idx
        info = info_cache(name) if info_cache is not None else None
        if info is None:
            info = probe(src, name=name)
            if info_cache is not None:
                info_cache(name, info)
        idx = self._indices(info.times if self.sampling.by_time else info.num_frames, info.duration, mode, rng, clip)
        return read_frames(src, idx.reshape(-1), info=info, threads=self.decode_threads), idx

    def _indices(self, times, duration, mode, rng, clip) -> np.ndarray:
        return np.stack(sample_clips(self.sampling, times, duration, mode=mode, rng=rng, clip=clip))

    def item(self, src, kind: str, name: str, *, mode: str, index: int, label, rng=None, clip: int | None = None,
             info_cache=None) -> dict:
        frames, idx = self.frames(src, kind, name, mode, rng, clip, info_cache)
        F = self.sampling.num_frames
        if mode == "train":
            x = train_transform(frames, self.crop_size, rng, self.random_resize_scale, self.random_resize_aspect_ratio,
                                self.flip)
            return {"clip": x, "label": label, "index": index, "frame_indices": torch.from_numpy(idx[0])}
        views = []
        for s in range(idx.shape[0]):
            views += eval_transform(frames[s * F:(s + 1) * F], self.crop_size, self.eval_views, self.eval_short_side)
        return {"clip": torch.stack(views), "label": label, "index": index, "frame_indices": torch.from_numpy(idx)}


class _InfoCache:
    """Small per-process LRU of probe results (a video is probed once per worker, not once per clip)."""

    def __init__(self, size: int) -> None:
        self.size, self.d = size, OrderedDict()

    def __call__(self, key, value=None):
        if value is None:
            v = self.d.get(key)
            if v is not None:
                self.d.move_to_end(key)
            return v
        self.d[key] = value
        if len(self.d) > self.size:
            self.d.popitem(last=False)
        return value


class VideoDataset(Dataset):
    """Clips of the videos, images and frame folders in ``entries`` (see the module docstring).

    Args:
        entries: the samples (:class:`~videojepa.data.sources.Entry`), e.g. ``load_source(spec).entries``.
        reader: how clips are cut, cropped and flipped (:class:`ClipReader`).
        mode: ``"train"`` or ``"eval"``.
        seed: the run's seed (training randomness).
        on_error: ``"skip"`` (training default), ``"raise"`` (evaluation default) or ``"report"``
            (evaluation: return a ``SkippedSample`` so the file is reported and excluded).
        sources: ``[(name, number of entries), ...]`` when entries come from several sources, and
        weights: their sampling weights (the official ``datasets_weights``): each source's share of
            every batch, drawn with replacement by :class:`~videojepa.data.loader.StepBatchSampler`.
        class_names: names of the integer labels, when known.
    """

    def __init__(self, entries: Sequence[Entry], reader: ClipReader, *, mode: str = "train", seed: int = 0,
                 on_error: str | None = None, sources: Sequence[tuple[str, int]] | None = None,
                 weights: Sequence[float] | None = None, class_names: Sequence[str] | None = None,
                 cache_size: int = 1024) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        on_error = on_error or ("skip" if mode == "train" else "raise")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if not entries:
            raise DataError("the dataset lists no samples")
        self.entries = list(entries)
        self.reader, self.mode, self.seed, self.on_error = reader, mode, int(seed), on_error
        self.clips_per_video = reader.sampling.num_clips if mode == "train" else 1
        self.sources = list(sources) if sources else [("data", len(self.entries))]
        if sum(n for _, n in self.sources) != len(self.entries):
            raise ValueError("sources must count every entry once")
        self.weights = None if weights is None else [float(w) for w in weights]
        if self.weights is not None and len(self.weights) != len(self.sources):
            raise ValueError(f"{len(self.weights)} weights for {len(self.sources)} sources")
        self.class_names = list(class_names) if class_names else None
        self._cache = _InfoCache(cache_size)

    def __len__(self) -> int:
        return len(self.entries) * self.clips_per_video

    @property
    def mixture(self) -> tuple[list[int], list[float]] | None:
        """``(items per source, weights)`` for weighted sampling, or None (uniform over all items)."""
        if self.weights is None:
            return None
        return [n * self.clips_per_video for _, n in self.sources], list(self.weights)

    def entry(self, index: int) -> Entry:
        return self.entries[index // self.clips_per_video]

    def __getitem__(self, index: int):
        return self.getitem(index, 0)

    def getitem(self, index: int, step: int = 0):
        """Item ``index`` as seen at training step ``step`` (the step only seeds the random draws)."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        e = self.entry(index)
        kind = e.kind
        if kind == "auto":
            kind = "frames" if os.path.isdir(e.path) else "video"
        rng = numpy_generator(self.seed, int(step), index, "video-clip") if self.mode == "train" else None
        clip = index % self.clips_per_video if self.mode == "train" else None
        try:
            return self.reader.item(e.path, kind, e.path, mode=self.mode, index=index, label=e.label, rng=rng, clip=clip,
                                    info_cache=self._cache)
        except Exception as ex:  # noqa: BLE001 - any failure of one file is that file's failure
            reason = ex.reason if isinstance(ex, DecodeError) else (
                str(ex) if isinstance(ex, DataError) else f"{type(ex).__name__}: {ex}")
            if self.on_error == "raise":
                if isinstance(ex, DataError) and e.path in str(ex):
                    raise
                raise DataError(f"{e.path}: {reason}") from ex
            return SkippedSample(index=index, path=e.path, reason=reason, step=int(step))


def eval_collate(items: Sequence[dict | SkippedSample]) -> dict:
    """Stack evaluation items: ``clips [B, S*V, 3, T, H, W]``, ``labels`` (when all have one),
    ``indices``, ``frame_indices [B, S, T]``, and ``skipped`` (the ``SkippedSample`` items, excluded)."""
    skipped = [it for it in items if isinstance(it, SkippedSample)]
    ok = [it for it in items if not isinstance(it, SkippedSample)]
    out: dict = {"skipped": skipped}
    if not ok:
        out.update(clips=None, indices=None, labels=None, frame_indices=None)
        return out
    out["clips"] = torch.stack([it["clip"] for it in ok])
    out["indices"] = torch.tensor([it["index"] for it in ok], dtype=torch.long)
    out["frame_indices"] = torch.stack([it["frame_indices"] for it in ok])
    out["labels"] = (torch.tensor([it["label"] for it in ok], dtype=torch.long)
                     if all(it["label"] is not None for it in ok) else None)
    return out
