"""Small picture and video writers: GIF (Pillow), MP4 (PyAV), PNG grids, heat-map overlays.

Frames are ``uint8`` arrays ``[T, H, W, 3]`` (RGB); single pictures ``[H, W, 3]``. Nothing here knows about
models: :mod:`videojepa.viz.features` and the ``videojepa show`` commands build on these.
"""
from __future__ import annotations

import fractions
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["upscale", "write_gif", "write_mp4", "write_video", "grid", "write_png", "side_by_side",
           "overlay_heatmap", "denormalize", "auto_scale", "VIDEO_FORMATS"]

VIDEO_FORMATS = ("gif", "mp4")


def _as_frames(frames, what: str = "frames") -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{what} must be [T, H, W, 3], got shape {a.shape}")
    if a.shape[0] < 1:
        raise ValueError(f"{what}: no frame to write")
    if a.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {a.dtype}")
    return np.ascontiguousarray(a)


def upscale(frames: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscale of ``[..., H, W, C]`` by an integer factor ``k`` (``k = 1``: unchanged)."""
    k = int(k)
    if k < 1:
        raise ValueError(f"upscale factor must be >= 1, got {k}")
    a = np.asarray(frames)
    if a.ndim < 3:
        raise ValueError(f"expected [..., H, W, C], got shape {a.shape}")
    if k == 1:
        return a
    return np.repeat(np.repeat(a, k, axis=-3), k, axis=-2)


def auto_scale(height: int, width: int, target: int = 160) -> int:
    """An integer factor that brings a small picture's long side near ``target`` pixels (1 for large ones)."""
    return max(1, int(target) // max(1, int(height), int(width)))


def write_gif(frames: np.ndarray, path, fps: float = 4) -> Path:
    """Write ``frames [T, H, W, 3]`` as an endlessly looping GIF at ``fps`` frames per second.

    GIF stores frame durations in 10 ms steps; Pillow stores consecutive identical frames once with their
    durations summed, so the total duration is kept but a reader may count fewer frames for a still clip."""
    from PIL import Image

    a = _as_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [Image.fromarray(f) for f in a]
    duration = max(10, int(round(1000.0 / fps / 10.0)) * 10)
    tmp = path.with_name(path.name + ".tmp")
    ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=duration, loop=0)
    tmp.replace(path)
    return path


def _codec() -> str:
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure means the encoder is not built in
        return "mpeg4"


def write_mp4(frames: np.ndarray, path, fps: float = 4) -> Path:
    """Write ``frames [T, H, W, 3]`` as an MP4 (H.264 / yuv420p when PyAV has libx264, else MPEG-4 Part 2).

    Odd heights and widths are padded by one edge-replicated row / column (yuv420p needs even sizes)."""
    import av

    a = _as_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    T, H, W, _ = a.shape
    if H % 2 or W % 2:
        a = np.pad(a, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
        H, W = a.shape[1:3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    rate = fractions.Fraction(fps).limit_denominator(1001)
    codec = _codec()
    with av.open(str(tmp), "w", format="mp4") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            s.codec_context.options = {"crf": "18", "preset": "medium"}
        else:
            s.codec_context.bit_rate = max(400_000, H * W * 8)
        for i, f in enumerate(a):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            vf.time_base = 1 / rate
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tmp.replace(path)
    return path


def write_video(frames: np.ndarray, stem, formats: Sequence[str] = VIDEO_FORMATS, fps: float = 4) -> dict[str, Path]:
    """Write ``stem.gif`` and / or ``stem.mp4``; returns ``{format: path}``."""
    stem = Path(stem)
    out: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "gif":
            out["gif"] = write_gif(frames, stem.with_name(stem.name + ".gif"), fps)
        elif fmt == "mp4":
            out["mp4"] = write_mp4(frames, stem.with_name(stem.name + ".mp4"), fps)
        else:
            raise ValueError(f"unknown video format {fmt!r}; use {' or '.join(VIDEO_FORMATS)}")
    return out


# ------------------------------------------------------------------------------------------------ pictures
def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _text_size(text: str) -> tuple[int, int]:
    from PIL import Image, ImageDraw

    if not text:
        return 0, 0
    d = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = d.textbbox((0, 0), text, font=_font())
    return int(right - min(left, 0)), int(bottom - min(top, 0))


def _ink(bg: int) -> tuple[int, int, int]:
    return (0, 0, 0) if bg >= 128 else (255, 255, 255)


def grid(rows: list[list[np.ndarray]], *, row_labels=None, col_labels=None, pad: int = 2, bg: int = 255) -> np.ndarray:
    """Compose pictures ``[H, W, 3]`` (uint8) into one: ``rows[i][j]`` in row ``i``, column ``j``.

    Cells may differ in size (each row is as tall as its tallest cell, each column as wide as its widest;
    cells are top-left aligned; rows may be shorter than others). ``row_labels`` are written in a left margin,
    ``col_labels`` in a top margin (Pillow's default font); ``pad`` pixels of ``bg`` separate everything."""
    from PIL import Image, ImageDraw

    if not rows or not any(rows):
        raise ValueError("grid: no picture")
    cells = [[np.asarray(c) for c in r] for r in rows]
    for r in cells:
        for c in r:
            if c.ndim != 3 or c.shape[-1] != 3 or c.dtype != np.uint8:
                raise ValueError(f"grid cells must be uint8 [H, W, 3], got {c.dtype} {c.shape}")
    ncol = max(len(r) for r in cells)
    if row_labels is not None and len(row_labels) != len(cells):
        raise ValueError(f"{len(row_labels)} row labels for {len(cells)} rows")
    if col_labels is not None and len(col_labels) != ncol:
        raise ValueError(f"{len(col_labels)} column labels for {ncol} columns")
    heights = [max((c.shape[0] for c in r), default=0) for r in cells]
    widths = [max((r[j].shape[1] for r in cells if j < len(r)), default=0) for j in range(ncol)]
    rl = [str(s) for s in row_labels] if row_labels is not None else None
    cl = [str(s) for s in col_labels] if col_labels is not None else None
    left = (max(_text_size(s)[0] for s in rl) + 2 * pad + 2) if rl and any(rl) else 0
    top = (max(_text_size(s)[1] for s in cl) + 2 * pad + 2) if cl and any(cl) else 0
    H = top + pad + sum(h + pad for h in heights)
    W = left + pad + sum(w + pad for w in widths)
    canvas = np.full((H, W, 3), int(bg), np.uint8)
    xs = np.cumsum([left + pad] + [w + pad for w in widths])[:-1]
    ys = np.cumsum([top + pad] + [h + pad for h in heights])[:-1]
    for i, r in enumerate(cells):
        for j, c in enumerate(r):
            canvas[ys[i]:ys[i] + c.shape[0], xs[j]:xs[j] + c.shape[1]] = c
    if left or top:
        im = Image.fromarray(canvas)
        d = ImageDraw.Draw(im)
        ink, font = _ink(int(bg)), _font()
        if left:
            for i, s in enumerate(rl):
                th = _text_size(s)[1]
                d.text((pad, ys[i] + max(0, (heights[i] - th) // 2)), s, fill=ink, font=font)
        if top:
            for j, s in enumerate(cl):
                tw = _text_size(s)[0]
                d.text((xs[j] + max(0, (widths[j] - tw) // 2), pad), s, fill=ink, font=font)
        canvas = np.asarray(im)
    return canvas


def write_png(img: np.ndarray, path) -> Path:
    """Write a picture ``[H, W, 3]`` (uint8) as PNG."""
    from PIL import Image

    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 picture [H, W, 3], got {a.dtype} {a.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(np.ascontiguousarray(a)).save(tmp, format="PNG")
    tmp.replace(path)
    return path


def side_by_side(panels: list[np.ndarray], labels=None, pad: int = 2) -> np.ndarray:
    """Videos ``[T, H_i, W_i, 3]`` (same ``T``) next to each other, with optional labels above:
    ``[T, H', W', 3]`` on a white background."""
    vids = [_as_frames(p, f"panel {i}") for i, p in enumerate(panels)]
    if not vids:
        raise ValueError("side_by_side: no panel")
    T = vids[0].shape[0]
    if any(v.shape[0] != T for v in vids):
        raise ValueError(f"panels must have the same number of frames, got {[v.shape[0] for v in vids]}")
    if labels is not None and len(labels) != len(vids):
        raise ValueError(f"{len(labels)} labels for {len(vids)} panels")
    first = grid([[v[0] for v in vids]], col_labels=labels, pad=pad)
    out = np.empty((T, *first.shape), np.uint8)
    out[0] = first
    # the layout is the same for every frame: paste the panels into copies of the first frame
    top = first.shape[0] - pad - max(v.shape[1] for v in vids)
    x = pad
    xs = []
    for v in vids:
        xs.append(x)
        x += v.shape[2] + pad
    for t in range(1, T):
        out[t] = first
        for v, x0 in zip(vids, xs):
            out[t, top:top + v.shape[1], x0:x0 + v.shape[2]] = v[t]
    return out


# ------------------------------------------------------------------------------------------------ overlays
def _resize_nearest(a: np.ndarray, H: int, W: int) -> np.ndarray:
    """``[T, h, w] -> [T, H, W]`` by nearest neighbour (each output pixel takes the cell it falls in)."""
    h, w = a.shape[1:3]
    rows = np.minimum((np.arange(H) * h) // H, h - 1)
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    return a[:, rows][:, :, cols]


def _resize_bilinear(a: np.ndarray, H: int, W: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]
    return F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)[:, 0].numpy()


def overlay_heatmap(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "inferno",
                    mode: str = "nearest") -> np.ndarray:
    """Colour ``frames [T, H, W, 3]`` (uint8) with a heat map ``heat [T_h, h, w]`` (float).

    The heat is normalised to [0, 1] over the whole clip (min to max; a constant map is 0), upsampled to
    ``H x W`` (``mode``: ``"nearest"``, which shows token cells, or ``"bilinear"``), mapped through the
    matplotlib colormap ``cmap`` and blended: ``(1 - alpha) * frame + alpha * colour``. ``T_h`` may divide
    ``T`` (e.g. one map per tubelet of 2 frames): each map then covers ``T / T_h`` consecutive frames."""
    import matplotlib

    f = _as_frames(frames)
    h = np.asarray(heat, dtype=np.float64)
    if h.ndim == 2:
        h = h[None]
    if h.ndim != 3:
        raise ValueError(f"heat must be [T, h, w], got shape {h.shape}")
    T, H, W, _ = f.shape
    if T % h.shape[0]:
        raise ValueError(f"{h.shape[0]} heat maps do not divide {T} frames")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h = np.nan_to_num(h)
    lo, hi = float(h.min()), float(h.max())
    h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    h = np.repeat(h, T // h.shape[0], axis=0)
    if mode == "nearest":
        h = _resize_nearest(h, H, W)
    elif mode == "bilinear":
        h = np.clip(_resize_bilinear(h, H, W), 0.0, 1.0)
    else:
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    colours = matplotlib.colormaps[cmap](h)[..., :3] * 255.0  # [T, H, W, 3]
    out = (1.0 - alpha) * f.astype(np.float64) + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def denormalize(clip, mean, std) -> np.ndarray:
    """A normalised clip ``[C, T, H, W]`` (tensor) -> frames ``[T, H, W, 3]`` uint8 (``clip * std + mean``)."""
    import torch

    x = torch.as_tensor(clip).detach().to("cpu", torch.float32)
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"expected a clip [3, T, H, W], got shape {tuple(x.shape)}")
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    x = (x * s + m).clamp_(0.0, 1.0).mul_(255.0).round_()
    return x.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
