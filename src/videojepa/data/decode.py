"""Exact, seek-based video decoding with PyAV, plus image and frame-folder readers.

Frame ``i`` of a video is the ``i``-th frame, in presentation order, of a full sequential decode of
its first video stream. :func:`probe` lists the presentation timestamps of every frame by reading
the packets (no decoding) and notes where the keyframes are; :func:`read_frames` then seeks to the
keyframe at or before the first wanted frame, decodes forward only as far as the last wanted frame
(leaving out of the decoder the unwanted frames that no other frame references: H.264
non-reference pictures, MPEG-4 part 2 B-frames) and converts only the wanted frames to RGB. It checks that it met every wanted timestamp; if the
demuxer or the decoder did anything unexpected after the seek (open GOPs, odd timestamps) it
decodes the file again from the start, counting frames, so the result is exact either way.

Every failure is a :class:`DecodeError` whose message names the file and says what went wrong
("no video stream (audio only)", "file is empty (0 bytes)", "not a readable media file", "2 of the
16 wanted frames (frames 40, 44) could not be decoded" ...). Decoders use one thread each (``threads=1``): parallelism comes from DataLoader
workers, and frame threading would only add latency after every seek.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = [
    "VIDEO_EXTS", "IMAGE_EXTS", "DecodeError", "VideoInfo", "probe", "read_frames", "read_all_frames",
    "read_image", "list_frame_files", "frame_folder_info", "read_frame_folder", "natural_key",
]

VIDEO_EXTS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
                        ".flv", ".wmv", ".3gp", ".ogv", ".gif", ".vob", ".mxf", ".y4m"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class DecodeError(DataError):
    """A file that cannot give the frames asked of it; ``str(e)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


Source = "str | os.PathLike | bytes"


def _name(src) -> str:
    return "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _open(src):
    import av

    name = _name(src)
    if not isinstance(src, (bytes, bytearray, memoryview)):
        p = Path(src)
        if not p.exists():
            raise DecodeError(name, "file not found")
        if p.is_dir():
            raise DecodeError(name, "is a directory, not a video file")
        if p.stat().st_size == 0:
            raise DecodeError(name, "file is empty (0 bytes)")
        target = str(p)
    else:
        if len(src) == 0:
            raise DecodeError(name, "file is empty (0 bytes)")
        target = io.BytesIO(bytes(src))
    try:
        container = av.open(target, mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise DecodeError(name, f"not a readable media file ({_ffmpeg_msg(e)})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DecodeError(name, f"cannot open ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = "audio only" if kinds == ["audio"] else (f"streams: {', '.join(kinds)}" if kinds else "no streams")
        raise DecodeError(name, f"no video stream ({what})")
    return container


def _ffmpeg_msg(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return re.sub(r"\s*:\s*'[^']*'$", "", str(msg)).strip()  # drop the file name PyAV appends


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video without decoding it.

    ``times[i]``: presentation time of frame ``i`` in seconds from the first frame (so variable frame
    rates are exact); ``duration``: from the first frame to the end of the last one; ``fps``: the
    average rate ``num_frames / duration``; ``width``/``height``: as coded (frames are returned as displayed:
    a rotation stored in the file is applied, ``rotation`` says which, when known).
    ``pts`` and ``keyframes`` (frame indices) drive :func:`read_frames`.
    """

    path: str
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    times: np.ndarray = field(repr=False)
    pts: np.ndarray | None = field(repr=False, default=None)  # stream pts of frame i (sorted), None if unknown
    keyframes: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))  # frame indices
    rotation: int = 0

    def summary(self) -> dict:
        return {"frames": self.num_frames, "fps": round(self.fps, 3), "duration_s": round(self.duration, 3),
                "width": self.width, "height": self.height, "codec": self.codec}


def probe(src, *, name: str | None = None) -> VideoInfo:
    """Frame count, timestamps, keyframes, size and codec of ``src`` (a path or the file's bytes)."""
    import av

    name = name or _name(src)
    container = _open(src)
    try:
        stream = container.streams.video[0]
        pts, dts, keys, durs = [], [], [], []
        try:
            for pkt in container.demux(stream):
                if pkt.size == 0:
                    continue
                pts.append(pkt.pts if pkt.pts is not None else pkt.dts)
                dts.append(pkt.dts if pkt.dts is not None else pkt.pts)
                keys.append(bool(pkt.is_keyframe))
                durs.append(pkt.duration or 0)
        except av.FFmpegError as e:
            if not pts:
                raise DecodeError(name, f"cannot read video packets ({_ffmpeg_msg(e)})") from None
            # a truncated tail: keep the packets read so far (read_frames reports frames it cannot decode)
        if not pts:
            raise DecodeError(name, "the video stream has no frames")
        tb = float(stream.time_base) if stream.time_base else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0) or 0.0
        cc = stream.codec_context
        codec = cc.name if cc is not None else "?"
        width, height = int(cc.width or 0), int(cc.height or 0)
    finally:
        container.close()
    n = len(pts)
    have_ts = tb > 0 and all(p is not None for p in pts)
    if have_ts:
        p = np.asarray(pts, dtype=np.int64)
        order = np.argsort(p, kind="stable")
        sorted_pts = p[order]
        if n > 1 and np.any(np.diff(sorted_pts) == 0):
            have_ts = False  # duplicate timestamps: fall back to counting frames
    if have_ts:
        times = (sorted_pts - sorted_pts[0]).astype(np.float64) * tb
        frame_of_packet = np.empty(n, dtype=np.int64)
        frame_of_packet[order] = np.arange(n)
        kidx = np.flatnonzero(np.asarray(keys))
        keyframes = frame_of_packet[kidx]
        keyframes = np.sort(keyframes)
        diffs = np.diff(times)
        last = durs[order[-1]] * tb if durs[order[-1]] else (float(np.median(diffs)) if n > 1 else (1 / rate if rate else 0.0))
        duration = float(times[-1] + last)
        pts_arr = sorted_pts
    else:  # no usable timestamps: assume a constant rate, decode sequentially
        fps0 = rate if rate > 0 else 25.0
        times = np.arange(n, dtype=np.float64) / fps0
        duration, pts_arr = n / fps0, None
        keyframes = np.zeros(0, np.int64)
    fps = n / duration if duration > 0 else (rate or 0.0)
    return VideoInfo(name, n, fps, duration, width, height, codec, times, pts_arr, keyframes)


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def _to_rgb(frame) -> np.ndarray:
    img = frame.to_ndarray(format="rgb24")
    rot = getattr(frame, "rotation", 0) or 0
    return _rotate(img, rot) if rot else img


def read_frames(src, indices, *, info: VideoInfo | None = None, threads: int = 1) -> np.ndarray:
    """Frames ``indices`` (any order, repeats allowed) of ``src`` as ``uint8 [len(indices), H, W, 3]``.

    Seeks to the keyframe at or before the first wanted frame and decodes forward only as far as the
    last one. ``info`` (from :func:`probe`) saves the probe when the caller caches it.
    """
    name = info.path if info is not None else _name(src)
    if info is None:
        info = probe(src)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("read_frames: no frame indices")
    if idx.min() < 0 or idx.max() >= info.num_frames:
        raise DecodeError(name, f"frame indices {idx.min()}..{idx.max()} outside the video's {info.num_frames} frames")
    wanted = np.unique(idx)
    got: dict[int, np.ndarray] = {}
    err = None
    if info.pts is not None and len(info.keyframes):
        got, err = _read_by_seek(src, info, wanted, threads)
    missing = [int(i) for i in wanted if int(i) not in got]
    if missing:
        got2, err2 = _read_sequential(src, set(int(i) for i in wanted), threads, name)
        got.update(got2)
        err = err2 or err
        missing = [int(i) for i in wanted if int(i) not in got]
    if missing:
        which = ", ".join(map(str, missing)) if len(missing) <= 4 else f"{missing[0]}, ..., {missing[-1]}"
        why = f": {err}" if err else " (the stream ends early: truncated file?)"
        raise DecodeError(name, f"{len(missing)} of the {len(wanted)} wanted frames (frame{'s' if len(missing) > 1 else ''} "
                                f"{which}) could not be decoded{why}")
    return np.stack([got[int(i)] for i in idx])


def _decoder(container, threads: int):
    stream = container.streams.video[0]
    cc = stream.codec_context
    cc.thread_count = max(1, int(threads))
    if threads > 1:
        cc.thread_type = "AUTO"
    return stream


LAST_READ: dict = {}  # where the last seek-based read started and how many frames it decoded (tests, benchmarks)


def _read_by_seek(src, info: VideoInfo, wanted: np.ndarray, threads: int) -> tuple[dict, str | None]:
    """Seek to the keyframe at or before the first wanted frame (its pts: the demuxers' seek tables
    are searched by presentation time; mp4's would pick the previous keyframe for its dts), decode to
    the last wanted frame. If the seek landed after the first wanted frame, retry from the keyframe
    before; a result with missing frames makes :func:`read_frames` decode sequentially."""
    first = int(wanted[0])
    k = int(np.searchsorted(info.keyframes, first, side="right")) - 1
    for _ in range(2):
        start = None if k < 0 or info.keyframes[k] == 0 else int(info.pts[info.keyframes[k]])  # None: no seek
        got, err, late = _decode_from(src, info, wanted, threads, start)
        if not late or start is None:
            return got, err
        k -= 1
    return {}, None


def _nal_units(data: bytes, length_size: int | None):
    """H.264 NAL unit header bytes of one packet (length-prefixed ``avcC`` or Annex B start codes)."""
    if length_size:
        i, n = 0, len(data)
        while i + length_size < n:
            size = int.from_bytes(data[i:i + length_size], "big")
            if size <= 0:
                return
            yield data[i + length_size]
            i += length_size + size
        return
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        yield data[i + 3]
        i = data.find(b"\x00\x00\x01", i + 3)


def _disposable(codec: str, data: bytes, length_size: int | None) -> bool:
    """True when the packet holds only pictures that no other picture references (H.264 slices with
    ``nal_ref_idc == 0``, MPEG-4 part 2 B-VOPs): such a packet can be left out of the decoder when its
    frame is not wanted (what FFmpeg's ``skip_frame=nonref`` does, but only for unwanted frames)."""
    if codec == "h264":
        slices = [b for b in _nal_units(data, length_size) if (b & 0x1F) in (1, 5)]
        return bool(slices) and all((b >> 5) & 3 == 0 for b in slices)
    if codec == "mpeg4":
        types, i = [], data.find(b"\x00\x00\x01\xb6")
        while 0 <= i < len(data) - 4:
            types.append(data[i + 4] >> 6)
            i = data.find(b"\x00\x00\x01\xb6", i + 4)
        return bool(types) and all(t == 2 for t in types)
    return False


def _skipper(stream):
    """A predicate telling which packets may be left undecoded, or None for codecs we do not parse."""
    cc = stream.codec_context
    codec = cc.name if cc is not None else ""
    if codec == "mpeg4":
        return lambda data: _disposable("mpeg4", data, None)
    if codec == "h264":
        extra = bytes(cc.extradata or b"")
        length_size = (extra[4] & 3) + 1 if len(extra) > 4 and extra[0] == 1 else None  # avcC, else Annex B
        return lambda data: _disposable("h264", data, length_size)
    return None


def _decode_from(src, info: VideoInfo, wanted: np.ndarray, threads: int, seek_pts: int | None):
    import av

    pts = info.pts
    want_pts = {int(pts[i]): int(i) for i in wanted}
    first_pts, stop_pts = int(pts[int(wanted[0])]), int(pts[int(wanted[-1])])
    got: dict[int, np.ndarray] = {}
    err = None
    container = _open(src)
    try:
        stream = _decoder(container, threads)
        if seek_pts is not None:
            container.seek(seek_pts, backward=True, any_frame=False, stream=stream)
        first_seen = None
        skippable = _skipper(stream)
        LAST_READ.update(seek_pts=seek_pts, decoded=0, skipped=0)
        for pkt in container.demux(stream):
            if (skippable is not None and pkt.size and pkt.pts is not None and int(pkt.pts) not in want_pts
                    and int(pkt.pts) < stop_pts and skippable(bytes(pkt))):
                LAST_READ["skipped"] += 1
                continue
            try:
                frames = pkt.decode()
            except av.FFmpegError as e:
                err = _ffmpeg_msg(e)
                continue
            for fr in frames:
                LAST_READ["decoded"] += 1
                p = fr.pts
                if p is None:
                    return {}, None, False
                if first_seen is None:
                    first_seen = p
                    if p > first_pts:
                        return {}, None, True  # landed after the first wanted frame
                i = want_pts.get(int(p))
                if i is not None:
                    got[i] = _to_rgb(fr)
                if p >= stop_pts:
                    return got, err, False
    except av.FFmpegError as e:
        err = _ffmpeg_msg(e)
    finally:
        container.close()
    return got, err, False


def _read_sequential(src, wanted: set[int], threads: int, name: str) -> tuple[dict, str | None]:
    import av

    got: dict[int, np.ndarray] = {}
    last = max(wanted)
    err = None
    container = _open(src)
    try:
        stream = _decoder(container, threads)
        i = 0
        for pkt in container.demux(stream):
            try:
                frames = pkt.decode()
            except av.FFmpegError as e:
                err = _ffmpeg_msg(e)
                continue
            for fr in frames:
                if i in wanted:
                    got[i] = _to_rgb(fr)
                i += 1
            if i > last:
                break
    except av.FFmpegError as e:
        err = _ffmpeg_msg(e)
    finally:
        container.close()
    return got, err


def read_all_frames(src, *, threads: int = 1) -> np.ndarray:
    """Every frame of ``src``, decoded sequentially from the start (the reference for exactness tests)."""
    container = _open(src)
    try:
        stream = _decoder(container, threads)
        frames = [_to_rgb(f) for f in container.decode(stream)]
    finally:
        container.close()
    if not frames:
        raise DecodeError(_name(src), "no frame could be decoded")
    return np.stack(frames)


# ----------------------------------------------------------------------------- images and frame folders
def natural_key(name: str) -> tuple:
    """Sort key that orders ``frame_2`` before ``frame_10``."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def read_image(src, *, name: str | None = None) -> np.ndarray:
    """An image file (or its bytes) as ``uint8 [H, W, 3]`` RGB, EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name or _name(src)
    if not isinstance(src, (bytes, bytearray, memoryview)):
        p = Path(src)
        if not p.exists():
            raise DecodeError(name, "file not found")
        if p.stat().st_size == 0:
            raise DecodeError(name, "file is empty (0 bytes)")
        fh = p
    else:
        if len(src) == 0:
            raise DecodeError(name, "file is empty (0 bytes)")
        fh = io.BytesIO(bytes(src))
    try:
        with Image.open(fh) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise DecodeError(name, "not a readable image") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DecodeError(name, f"cannot decode image ({e})") from None


def list_frame_files(folder) -> list[Path]:
    """The image files of a frame folder, in natural order (``img_2.jpg`` before ``img_10.jpg``)."""
    p = Path(folder)
    if not p.is_dir():
        raise DecodeError(str(folder), "frame folder not found" if not p.exists() else "not a folder")
    files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file()),
                   key=lambda f: natural_key(f.name))
    if not files:
        raise DecodeError(str(folder), "frame folder holds no image files")
    return files


def frame_folder_info(folder, fps: float, files: list[Path] | None = None) -> VideoInfo:
    files = files if files is not None else list_frame_files(folder)
    n = len(files)
    first = read_image(files[0])
    h, w = first.shape[:2]
    return VideoInfo(str(folder), n, float(fps), n / fps, w, h, "frames:" + files[0].suffix.lower().lstrip("."),
                     np.arange(n, dtype=np.float64) / fps)


def read_frame_folder(folder, indices, files: list[Path] | None = None) -> np.ndarray:
    files = files if files is not None else list_frame_files(folder)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.min() < 0 or idx.max() >= len(files):
        raise DecodeError(str(folder), f"frame indices {idx.min()}..{idx.max()} outside the folder's {len(files)} frames")
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in idx.tolist():
        if i not in cache:
            cache[i] = read_image(files[i])
        out.append(cache[i])
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DecodeError(str(folder), f"frames of different sizes {sorted(shapes)}")
    return np.stack(out)
