"""Small real media files made with PyAV once per test session (64x48, about 2 s each)."""
from __future__ import annotations

import fractions
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def frame_image(i: int, h: int, w: int) -> np.ndarray:
    """A textured frame that changes with ``i`` (so every frame decodes to something different)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 7 + i * 11) % 256
    img[..., 1] = (y * 9 + i * 5) % 256
    img[..., 2] = ((x + y) * 3 + i * 23) % 256
    img[(i * 3) % h, :, :] = 255  # a moving bright line
    return img


def write_video(path: Path, codec: str, n: int, *, w: int = 64, h: int = 48, fps: int = 25, gop: int = 10,
                options: dict | None = None, durations_ms: list[int] | None = None, painter=frame_image,
                rotation: int = 0) -> Path:
    import av

    c = av.open(str(path), "w")
    s = c.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.codec_context.gop_size = gop
    if durations_ms is not None:
        s.codec_context.time_base = fractions.Fraction(1, 1000)
    if options:
        s.codec_context.options = dict(options)
    if rotation:
        s.set_display_rotation(rotation)
    t = 0
    for i in range(n):
        f = av.VideoFrame.from_ndarray(painter(i, h, w), format="rgb24")
        if durations_ms is not None:
            f.pts, f.time_base = t, fractions.Fraction(1, 1000)
            t += durations_ms[i % len(durations_ms)]
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def write_audio(path: Path) -> Path:
    import av

    c = av.open(str(path), "w")
    s = c.add_stream("aac", rate=16000)
    for i in range(10):
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = 16000, i * 1024
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def halves(i: int, h: int, w: int) -> np.ndarray:
    """Left half red, right half green, a white top row: shows any width/height swap or flip."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 220
    img[:, w // 2:, 1] = 220
    img[:2] = 255
    return img


X264 = {"bf": "3", "preset": "ultrafast", "tune": "zerolatency"}


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> SimpleNamespace:
    from PIL import Image

    d = tmp_path_factory.mktemp("media")
    m = SimpleNamespace(root=d)
    # ultrafast+zerolatency disable B-frames; ask for them explicitly with a medium-speed setting
    m.h264 = write_video(d / "h264.mp4", "libx264", 50, options={"bf": "3", "preset": "veryfast", "b-pyramid": "none"})
    m.vp9 = write_video(d / "vp9.webm", "libvpx-vp9", 40, options={"deadline": "realtime", "cpu-used": "8"})
    m.mpeg4 = write_video(d / "mpeg4.avi", "mpeg4", 40, options={"bf": "2"})
    m.lowfps = write_video(d / "lowfps.mp4", "libx264", 8, fps=2, gop=4, options={"preset": "veryfast"})
    m.vfr = write_video(d / "vfr.mp4", "libx264", 36, durations_ms=[20, 60, 40], options={"preset": "veryfast"})
    m.short = write_video(d / "short.mp4", "libx264", 5, options={"preset": "veryfast"})
    m.rotated = write_video(d / "rotated.mp4", "libx264", 3, rotation=90, options={"preset": "veryfast"})
    m.wide = write_video(d / "wide.mp4", "libx264", 12, w=96, h=32, painter=halves, options={"preset": "veryfast"})
    # broken files
    m.missing = d / "missing.mp4"
    m.empty = d / "empty.mp4"
    m.empty.write_bytes(b"")
    data = m.h264.read_bytes()
    m.truncated = d / "truncated.mp4"
    m.truncated.write_bytes(data[: len(data) // 2])
    m.text = d / "notes.mp4"
    m.text.write_text("this is not a video\n" * 50)
    m.audio = write_audio(d / "audio.m4a")
    bad = bytearray(data)
    start = bad.find(b"mdat") + 8 + 200
    bad[start:start + len(bad) // 3] = np.random.default_rng(0).integers(0, 256, len(bad) // 3, dtype=np.uint8).tobytes()
    m.corrupt = d / "corrupt.mp4"
    m.corrupt.write_bytes(bytes(bad))
    # images and frame folders
    m.image = d / "still.png"
    Image.fromarray(frame_image(3, 48, 64)).save(m.image)
    m.frames = d / "frames" / "clip_a"
    m.frames.mkdir(parents=True)
    for i in range(12):
        Image.fromarray(frame_image(i, 48, 64)).save(m.frames / f"img_{i + 1}.png")
    m.write_video, m.frame_image, m.halves = write_video, frame_image, halves
    m.good = [m.h264, m.vp9, m.mpeg4, m.lowfps, m.vfr]
    m.broken = [m.missing, m.empty, m.truncated, m.text, m.audio, m.corrupt]
    return m
