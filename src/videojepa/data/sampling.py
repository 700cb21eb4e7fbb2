"""Where clips sit in a video: pure functions from (video length, config, random stream) to frame indices.

Two ways to space the frames of a clip:

- **frame step** (``frame_step=s``, V-JEPA 1's ``sampling_rate``): frames ``start, start+s, ...,
  start+(F-1)s`` of the decoded stream. A clip spans ``(F-1)s + 1`` frames. (The reference spreads
  ``F`` indices over ``F*s`` frames with ``linspace``, so its stride is slightly more than ``s``;
  ours is exactly ``s``.)
- **target fps** (``fps=r``, V-JEPA 2's 4 fps; ``clip_duration=d`` means ``r = F/d``): the frame
  *on screen* at times ``start, start+1/r, ...`` read from the frames' timestamps, so variable
  frame rates are exact and a video slower than ``r`` simply repeats frames (the reference's
  integer ``fps // r`` is 0 there and fails). A clip spans ``(F-1)/r`` seconds.

Positions: ``num_clips`` clips per video, the video cut into that many equal parts. In training
each clip starts at a uniformly random position inside its part (anywhere in the video when the
parts are shorter than a clip); in evaluation the starts are deterministic and evenly spaced from
the beginning to the end of the video (one clip: the centre). A video shorter than one clip is
``"loop"``-ed (positions wrap around), ``"pad"``-ded (the last frame repeats, as the reference
does) or ``"skip"``-ped (:class:`ShortVideoError`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = ["SHORT_VIDEO_POLICIES", "ClipSampling", "ShortVideoError", "clip_starts", "sample_clips", "clips_that_fit"]

SHORT_VIDEO_POLICIES = ("loop", "pad", "skip")
_EPS = 1e-6  # seconds: a target time this close to a frame's timestamp shows that frame


class ShortVideoError(DataError):
    """The video is shorter than one clip and the policy is ``skip``."""


@dataclass(frozen=True)
class ClipSampling:
    """How clips are cut from a video; exactly one of ``frame_step`` and ``fps`` is set."""

    num_frames: int
    frame_step: int | None = None
    fps: float | None = None
    num_clips: int = 1
    short_video: str = "pad"

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, (int, np.integer)) or self.num_frames < 1:
            raise ValueError(f"num_frames must be an integer >= 1, got {self.num_frames!r}")
        if (self.frame_step is None) == (self.fps is None):
            raise ValueError(f"set exactly one of frame_step and fps (got frame_step={self.frame_step!r}, fps={self.fps!r})")
        if self.frame_step is not None and (isinstance(self.frame_step, bool) or int(self.frame_step) != self.frame_step
                                            or self.frame_step < 1):
            raise ValueError(f"frame_step must be an integer >= 1, got {self.frame_step!r}")
        if self.fps is not None and not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a number > 0, got {self.fps!r}")
        if isinstance(self.num_clips, bool) or not isinstance(self.num_clips, (int, np.integer)) or self.num_clips < 1:
            raise ValueError(f"num_clips must be an integer >= 1, got {self.num_clips!r}")
        if self.short_video not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_video must be one of {SHORT_VIDEO_POLICIES}, got {self.short_video!r}")

    @property
    def by_time(self) -> bool:
        return self.fps is not None

    @property
    def span(self) -> float:
        """Extent of one clip: frames (frame-step mode) or seconds (fps mode), first to last sample."""
        if self.by_time:
            return (self.num_frames - 1) / self.fps
        return (self.num_frames - 1) * self.frame_step + 1

    def describe(self) -> str:
        how = f"frame_step={self.frame_step}" if not self.by_time else f"fps={self.fps:g}"
        return f"{self.num_frames} frames at {how}"


def clip_starts(extent: float, span: float, num_clips: int, mode: str, rng: np.random.Generator | None = None,
                clip: int | None = None, integer: bool = False) -> list[float]:
    """Start positions of ``num_clips`` clips of extent ``span`` in a video of extent ``extent >= span``.

    ``mode="eval"``: evenly spaced from ``0`` to ``extent - span`` (one clip: the centre).
    ``mode="train"``: uniform inside each of ``num_clips`` equal parts of the video when a clip fits in
    a part, else uniform over the whole video. ``clip=j`` gives only clip ``j``'s start. ``integer``:
    extents count frames and starts are whole frames (``0 .. extent - span`` inclusive).
    """
    if span > extent + (0 if integer else _EPS):
        raise ValueError(f"a clip of extent {span} does not fit in {extent}")
    avail = max(0.0, extent - span)
    S = num_clips
    which = list(range(S)) if clip is None else [int(clip)]
    if any(not 0 <= j < S for j in which):
        raise ValueError(f"clip must be in [0, {S}), got {clip}")
    if mode == "eval":
        out = [avail / 2] if S == 1 else [avail * j / (S - 1) for j in which]
        return [float(math.floor(x + 0.5)) for x in out] if integer else out
    if mode != "train":
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    if rng is None:
        raise ValueError("training clip positions need a random generator")
    out = []
    for j in which:
        if integer:
            lo, hi = math.floor(j * extent / S), math.floor((j + 1) * extent / S)
            if hi - lo >= span:
                out.append(float(lo + rng.integers(0, hi - lo - span + 1)))
            else:
                out.append(float(rng.integers(0, int(avail) + 1)))
        else:
            part = extent / S
            if part >= span:
                out.append(j * part + float(rng.uniform(0.0, part - span)))
            else:
                out.append(float(rng.uniform(0.0, avail)))
    return out


def sample_clips(spec: ClipSampling, times: np.ndarray | int, duration: float | None = None, *, mode: str = "train",
                 rng: np.random.Generator | None = None, clip: int | None = None) -> list[np.ndarray]:
    """Frame indices (``int64 [num_frames]``) of each clip of a video.

    ``times``: the frames' presentation times in seconds (from :func:`~videojepa.data.decode.probe`),
    or just the frame count in frame-step mode. ``duration``: end of the last frame (default: last
    time plus the median frame interval). Returns ``num_clips`` arrays, or one (clip ``clip``).
    Raises :class:`ShortVideoError` for a video shorter than a clip under ``short_video="skip"``.
    """
    if isinstance(times, (int, np.integer)):
        if spec.by_time:
            raise ValueError("fps-based sampling needs the frames' timestamps")
        n = int(times)
        t = None
    else:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        n = len(t)
    if n < 1:
        raise ShortVideoError("the video has no frames")
    F = spec.num_frames
    count = spec.num_clips if clip is None else 1
    if not spec.by_time:
        s, span = int(spec.frame_step), int(spec.span)
        offsets = np.arange(F, dtype=np.int64) * s
        if n < span:
            return [_short(spec, offsets, n, f"{n} frames, a clip of {spec.describe()} needs {span}")] * count
        starts = clip_starts(n, span, spec.num_clips, mode, rng, clip, integer=True)
        return [int(a) + offsets for a in starts]
    if duration is None:
        duration = float(t[-1] + (np.median(np.diff(t)) if n > 1 else 1.0 / spec.fps))
    span = spec.span
    offsets = np.arange(F, dtype=np.float64) / spec.fps
    if duration + _EPS < span:
        sec = lambda x: f"{x:.3g} s"  # noqa: E731
        return [_short(spec, offsets, n, f"{sec(duration)} long, a clip of {spec.describe()} needs {sec(span)}",
                       t=t, duration=duration)] * count
    starts = clip_starts(duration, span, spec.num_clips, mode, rng, clip)
    return [_at_times(t, a + offsets) for a in starts]


def _at_times(t: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each target time (the last frame that started by then)."""
    idx = np.searchsorted(t, targets + _EPS, side="right") - 1
    return np.clip(idx, 0, len(t) - 1).astype(np.int64)


def _short(spec: ClipSampling, offsets: np.ndarray, n: int, why: str, t=None, duration=None) -> np.ndarray:
    if spec.short_video == "skip":
        raise ShortVideoError(f"video too short: {why} (data.short_video=skip)")
    if t is None:  # frame positions
        return offsets % n if spec.short_video == "loop" else np.minimum(offsets, n - 1)
    if spec.short_video == "loop":
        return _at_times(t, np.mod(offsets, duration))
    return _at_times(t, offsets)


def clips_that_fit(spec: ClipSampling, num_frames: int, duration: float) -> int:
    """How many non-overlapping clips fit one after the other in a video (0: shorter than a clip)."""
    if spec.by_time:
        span, stride, extent = spec.span, spec.num_frames / spec.fps, duration
        return 0 if extent + _EPS < span else int((extent - span + _EPS) // stride) + 1
    span, stride = spec.span, spec.num_frames * spec.frame_step
    return 0 if num_frames < span else (num_frames - span) // stride + 1
