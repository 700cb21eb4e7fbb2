"""What the evaluation commands read: ``INDEX`` specs, clip settings from the encoder, whole videos.

``INDEX`` is any source spec of :mod:`videojepa.data.sources` (a CSV index, a folder of videos / frame
folders / images, with an optional ``csv:`` / ``videos:`` / ``frames:`` / ``images:`` prefix), a single
video or image file, or ``synthetic:SPLIT[:N]``: the embedded synthetic dataset, ``N`` clips (default
1000 for ``train``, 500 for ``val`` and ``test``) drawn with the split's own seed (``train`` 1, ``val`` 2,
``test`` 3; pretraining uses seed 0), so the splits never share a clip. Synthetic clips have the
encoder's frame count and size; with ``S`` segments they are rendered ``S`` times longer and with
``V > 1`` views 4/3 times wider, then cut by :class:`~videojepa.evaluation.multiview.ClipViews`.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.errors import DataError, SkippedSample
from .multiview import ClipViews

__all__ = ["ClipSpec", "clip_spec_for", "parse_synthetic", "open_dataset", "WholeVideos", "SYNTHETIC_SPLITS"]

SYNTHETIC_SPLITS = {"train": (1, 1000), "val": (2, 500), "test": (3, 500)}
_SYN = re.compile(r"^synthetic(?::(?P<split>[a-z]+))?(?::(?P<n>\d+))?$")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut for an encoder: ``F`` frames ``frame_step`` apart (or at ``fps``), ``crop`` pixels,
    ``segments`` x ``views`` per video (the evaluation protocol)."""

    num_frames: int
    crop_size: tuple[int, int]
    frame_step: int | None = 4
    fps: float | None = None
    segments: int = 1
    views: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_size"] = list(self.crop_size)
        return d


def clip_spec_for(encoder, *, num_frames: int | None = None, crop_size=None, frame_step: int | None = None,
                  fps: float | None = None, segments: int = 1, views: int = 1) -> ClipSpec:
    """Clip settings for ``encoder``: given values, else its published preprocessing, else its config."""
    pre = (getattr(encoder, "pretrained_cfg", None) or {}).get("preprocessing") or {}
    cfg = encoder.cfg
    F = int(num_frames or pre.get("num_frames") or cfg.num_frames)
    crop = crop_size or pre.get("crop_size") or cfg.img_size
    crop = (int(crop), int(crop)) if isinstance(crop, (int, np.integer)) else tuple(int(c) for c in crop)
    if fps is None and frame_step is None:
        fps = pre.get("fps")
        frame_step = pre.get("frame_step") or (None if fps else 4)
    if segments < 1 or views < 1:
        raise ValueError(f"segments and views must be >= 1, got {segments} and {views}")
    return ClipSpec(F, crop, None if fps else int(frame_step), float(fps) if fps else None, int(segments), int(views))


def parse_synthetic(spec: str) -> tuple[str, int] | None:
    """``"synthetic:val:200"`` -> ``("val", 200)``; ``None`` when ``spec`` is not a synthetic spec."""
    s = os.fspath(spec)
    if not s.startswith("synthetic"):
        return None
    m = _SYN.match(s)
    if not m:
        if s == "synthetic" or s.startswith("synthetic:"):
            raise ValueError(f"{spec!r}: expected synthetic:SPLIT[:N] with SPLIT one of {', '.join(SYNTHETIC_SPLITS)}")
        return None
    split = m.group("split") or "train"
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"{spec!r}: unknown synthetic split {split!r}; use one of {', '.join(SYNTHETIC_SPLITS)}")
    n = int(m.group("n")) if m.group("n") else SYNTHETIC_SPLITS[split][1]
    if n < 1:
        raise ValueError(f"{spec!r}: the number of clips must be >= 1")
    return split, n


def _synthetic(split: str, n: int, clip: ClipSpec, video_frames: int | None, options: dict | None):
    from ..data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset

    S, V = clip.segments, clip.views
    T = video_frames or clip.num_frames * S
    h, w = clip.crop_size
    if V > 1:
        w = int(round(w * 4 / 3))
    kw = dict(options or {})
    kw.update(num_frames=max(2, T), height=h, width=w, num_samples=n, seed=SYNTHETIC_SPLITS[split][0])
    ds = SyntheticVideoDataset(SyntheticVideoConfig(**kw))
    if video_frames is None and (S > 1 or V > 1):
        return ClipViews(ds, clip.num_frames, S, V, clip.crop_size, frame_step=1)
    return ds


class WholeVideos(Dataset):
    """Every ``frame_step``-th frame (or frames at ``fps``) of whole videos, resized and centre-cropped:
    items ``{"clip": [3, T, h, w] in [0, 1], "label", "index", "frame_indices": [T]}`` for sliding windows.
    An unreadable file is a :class:`~videojepa.data.errors.DataError` naming it, or (``on_error="report"``)
    a ``SkippedSample``."""

    def __init__(self, entries, clip: ClipSpec, *, on_error: str = "raise", class_names=None,
                 max_frames: int | None = None) -> None:
        self.entries, self.clip, self.on_error = list(entries), clip, on_error
        self.class_names = class_names
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        from ..data.decode import list_frame_files, probe, read_frame_folder, read_frames, read_image
        from ..data.transforms import eval_transform

        e = self.entries[i]
        try:
            kind = e.kind if e.kind != "auto" else ("frames" if os.path.isdir(e.path) else "video")
            if kind == "image":
                frames = read_image(e.path, name=e.path)[None]
                idx = np.zeros(1, np.int64)
            elif kind == "frames":
                files = list_frame_files(e.path)
                idx = self._indices(len(files), np.arange(len(files)) / 30.0)
                frames = read_frame_folder(e.path, idx, files)
            else:
                info = probe(e.path, name=e.path)
                idx = self._indices(info.num_frames, info.times)
                frames = read_frames(e.path, idx, info=info)
            clip = eval_transform(frames, self.clip.crop_size, 1)[0]
        except Exception as ex:  # noqa: BLE001 - any failure of one file is that file's failure
            if self.on_error == "report":
                return SkippedSample(index=i, path=e.path, reason=f"{type(ex).__name__}: {ex}")
            if isinstance(ex, DataError) and e.path in str(ex):
                raise
            raise DataError(f"{e.path}: {type(ex).__name__}: {ex}") from ex
        return {"clip": clip, "label": e.label, "index": i, "frame_indices": torch.from_numpy(idx)}

    def _indices(self, n: int, times) -> np.ndarray:
        if self.clip.fps:
            t = np.asarray(times, dtype=np.float64)
            targets = np.arange(0.0, float(t[-1]) + 1e-6, 1.0 / self.clip.fps)
            idx = np.clip(np.searchsorted(t, targets + 1e-6, side="right") - 1, 0, n - 1)
        else:
            idx = np.arange(0, n, self.clip.frame_step)
        if self.max_frames:
            idx = idx[: self.max_frames]
        return idx.astype(np.int64)


def _entries(spec: str):
    """(entries, class names) of a file spec: an index or folder, or a single video / image file."""
    from ..data.decode import IMAGE_EXTS, VIDEO_EXTS
    from ..data.sources import Entry, ListSource, kind_of, load_source, parse_spec

    layout, path = parse_spec(spec)
    p = Path(path)
    if layout is None and p.is_file() and p.suffix.lower() in (VIDEO_EXTS | IMAGE_EXTS):
        return [Entry(str(p), None, kind_of(str(p)))], None
    if not p.exists() and layout is None and not re.search(r"\{\d+\.\.\d+\}", path):
        raise DataError(f"{spec}: no such file or folder (expected an index, a folder, a video, or "
                        "synthetic:SPLIT[:N])")
    src = load_source(spec)
    if not isinstance(src, ListSource):
        raise DataError(f"{spec}: tar shards are streamed for training only; evaluate from an index or a folder")
    return src.entries, src.class_names


def open_dataset(spec: str, clip: ClipSpec, *, on_error: str = "raise", whole_videos: bool = False,
                 video_frames: int | None = None, synthetic_options: dict | None = None) -> Dataset:
    """The evaluation dataset of ``spec`` (see the module docstring). Items hold ``S*V`` clips
    ``[S*V, C, F, h, w]`` when ``segments * views > 1``, else one clip ``[C, F, h, w]``.

    ``whole_videos``: items are whole videos at the clip's frame spacing (:class:`WholeVideos`; synthetic:
    ``video_frames`` frames long) for sliding windows."""
    syn = parse_synthetic(spec)
    if syn is not None:
        if whole_videos and video_frames is None:
            video_frames = 2 * clip.num_frames
        return _synthetic(syn[0], syn[1], clip, video_frames if whole_videos else None, synthetic_options)
    entries, names = _entries(spec)
    if whole_videos:
        return WholeVideos(entries, clip, on_error=on_error, class_names=names)
    from ..data.sampling import ClipSampling
    from ..data.video_dataset import ClipReader, VideoDataset

    reader = ClipReader(sampling=ClipSampling(clip.num_frames, frame_step=clip.frame_step, fps=clip.fps,
                                              num_clips=clip.segments),
                        crop_size=clip.crop_size, eval_views=clip.views)
    ds = VideoDataset(entries, reader, mode="eval", on_error=on_error, class_names=names)
    return _SingleClip(ds) if clip.segments * clip.views == 1 else ds


class _SingleClip(Dataset):
    """A one-segment, one-view evaluation dataset with its items' clip axis dropped (``[C, F, h, w]``)."""

    def __init__(self, base) -> None:
        self.base = base
        self.class_names = base.class_names

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        if isinstance(item, dict):
            item = dict(item)
            item["clip"] = item["clip"][0]
        return item
