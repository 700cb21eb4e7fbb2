"""Clips per second of the video loader, side by side with a naive decoder.

The script writes its own test files: ``--videos`` H.264 mp4 files (libx264, B-frames) of
``--seconds`` seconds at 640x360, 30 fps, once per keyframe interval in ``--gop`` (default 30, 60
and 250 frames: 1 s as many cameras write, 2 s as streaming services do, and x264's default; the
seek-based loader gains less the rarer the keyframes are). The default content (``--content scene``)
is a camera pan over a textured scene with moving objects and sensor noise, on which x264 makes its
usual mix of frame types; ``--content gradients`` gives a stream of nearly only P-frames, where the
loader cannot leave any picture out and only seeking helps. Both loaders then produce the
same training batches: 16-frame clips with frame step 4 at a random position, random resized crop
to 224x224, flip, normalisation, masks made in the collate function, through
:func:`videojepa.data.loader.build_loader`, with 0, 1 and 2 DataLoader workers.

- **ours**: :class:`videojepa.data.video_dataset.VideoDataset`: seek to the keyframe before the
  clip, decode forward to its last frame, leave out the unwanted pictures that no other picture
  references, convert only the 16 wanted frames.
- **naive**: the same dataset, but each clip decodes every frame from the start of the file up to
  the clip's last frame and converts each one to RGB (what a loop over ``container.decode()`` that
  collects frames does).

Each row is timed after its first batch (worker start-up excluded). Rows run interleaved over
``--repeats`` rounds and the table reports the median.

    python bench/decode.py                       # the default: 10-second videos, GOPs of 30, 60, 250 frames
    python bench/decode.py --seconds 30 --gop 60
    python bench/decode.py --content gradients   # nearly all P-frames: only seeking helps
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videojepa.data.decode import _open, _to_rgb
from videojepa.data.loader import build_loader
from videojepa.data.sampling import ClipSampling
from videojepa.data.sources import Entry
from videojepa.data.video_dataset import ClipReader, VideoDataset
from videojepa.masks.collator import MaskCollator, MaskGenerator
from videojepa.masks.multiblock import DEFAULT_MASKS
from videojepa.masks.ops import grid_size


def _scene_frames(n: int, w: int, h: int, k: int):
    """Camera footage stand-in: a pan across a textured scene larger than the frame, three objects
    crossing it, sensor noise. x264 then picks its frame types as on natural video (about 40% of the
    pictures are non-reference B-frames)."""
    rng = np.random.default_rng(k)
    H, W = h + 200, w + 400
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    scene = np.zeros((H, W, 3), np.float32)
    for _ in range(40):  # smooth colour blobs
        cy, cx, r = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(20, 120)
        wgt = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        scene = scene * (1 - wgt) + rng.uniform(0, 255, 3) * wgt
    scene += rng.normal(0, 12, (H, W, 1))  # fine texture
    for i in range(n):
        ox = int(200 + 180 * np.sin(2 * np.pi * i / n))
        oy = int(100 + 80 * np.sin(2 * np.pi * i / (0.7 * n)))
        img = scene[oy:oy + h, ox:ox + w].copy()
        for j in range(3):
            px, py = int((50 + 7 * i * (j + 1) + 150 * j) % w), 60 + 100 * j
            img[py:py + 40, max(0, px - 20):px + 20] = [255 * (j == 0), 255 * (j == 1), 255 * (j == 2)]
        img += rng.normal(0, 3, img.shape)
        yield np.clip(img, 0, 255).astype(np.uint8)


def _gradient_frames(n: int, w: int, h: int, k: int):
    """Moving colour gradients over a fixed noise texture: x264 codes nearly every picture as a P-frame
    (3% non-reference pictures), the case where leaving out unwanted pictures saves nothing."""
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(k).integers(0, 40, (h, w), dtype=np.uint8)
    for i in range(n):
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = (x + 3 * i + k * 17) % 256
        img[..., 1] = (y * 2 + i) % 256
        img[..., 2] = ((x + y) // 2 + 5 * i) % 256
        img[..., 1] += noise
        yield img


CONTENT = {"scene": _scene_frames, "gradients": _gradient_frames}


def make_videos(folder: Path, n: int, seconds: float, gop: int, fps: int = 30, w: int = 640, h: int = 360,
                content: str = "scene") -> list[Path]:
    """``n`` H.264 files (libx264 veryfast, its own frame-type decisions: up to 3 B-frames, B-pyramid)."""
    import av

    paths = []
    for k in range(n):
        p = folder / f"bench_{k}.mp4"
        c = av.open(str(p), "w")
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        s.codec_context.options = {"preset": "veryfast", "bf": "3", "keyint_min": str(gop), "sc_threshold": "0"}
        for img in CONTENT[content](int(seconds * fps), w, h, k):
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
        c.close()
        paths.append(p)
    return paths


def frame_types(path: Path) -> str:
    """Share of I, P and B pictures and of pictures no other one references (what the loader may skip)."""
    import av

    from videojepa.data.decode import _skipper

    disposable, types = [], []
    with av.open(str(path)) as c:  # one pass: classify each packet, then decode it
        s = c.streams.video[0]
        skip = _skipper(s)
        for p in c.demux(s):
            if p.size:
                disposable.append(skip(bytes(p)))
            types += [int(f.pict_type) for f in p.decode()]
    share = {name: types.count(v) / len(types) for name, v in (("I", 1), ("P", 2), ("B", 3))}
    return (f"I {share['I']:.0%} / P {share['P']:.0%} / B {share['B']:.0%}, "
            f"non-reference {sum(disposable) / len(disposable):.0%}")


@dataclass(frozen=True)
class NaiveReader(ClipReader):
    """Decodes every frame from the start up to the clip's last frame, converting each to RGB."""

    def frames(self, src, kind, name, mode, rng, clip, info_cache=None):
        from videojepa.data.decode import probe

        info = info_cache(name) if info_cache is not None else None
        if info is None:
            info = probe(src, name=name)
            if info_cache is not None:
                info_cache(name, info)
        idx = self._indices(info.num_frames, info.duration, mode, rng, clip)
        last = int(idx.max())
        container = _open(src)
        decoded = []
        try:
            for fr in container.decode(container.streams.video[0]):
                decoded.append(_to_rgb(fr))
                if len(decoded) > last:
                    break
        finally:
            container.close()
        return np.stack([decoded[i] for i in idx.reshape(-1)]), idx


def run(reader_cls, paths, workers: int, batches: int, batch_size: int) -> float:
    reader = reader_cls(ClipSampling(16, frame_step=4), crop_size=(224, 224))
    ds = VideoDataset([Entry(str(p), 0, "video") for p in paths] * 64, reader, seed=0)  # many clips per file
    coll = MaskCollator(MaskGenerator(DEFAULT_MASKS, grid_size(16, 224, 224, 2, 16), seed=0))
    loader = build_loader(ds, coll, batch_size=batch_size, seed=0, start_step=0, max_steps=batches + 1,
                          num_workers=workers)
    it = iter(loader)
    first = next(it)  # worker start-up, probe caches
    assert first["clips"] is not None and not first["skipped"], first["skipped"]
    t0 = time.perf_counter()
    n = 0
    for b in it:
        assert not b["skipped"], b["skipped"]
        n += b["clips"].shape[0]
    dt = time.perf_counter() - t0
    del it, loader
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--gop", default="30,60,250", help="frames between keyframes, one set of files each")
    ap.add_argument("--batches", type=int, default=5, help="timed batches per row (after one warm-up batch)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--content", default="scene", choices=sorted(CONTENT),
                    help="scene: camera pan over a textured scene (natural frame types); gradients: nearly all P-frames")
    a = ap.parse_args()
    torch.set_num_threads(1)  # one core per loader process, as in DataLoader workers
    workers = [int(w) for w in a.workers.split(",")]
    import av

    gops = [int(g) for g in a.gop.split(",")]
    results: dict = {}
    sizes = {}
    ftypes = {}
    for gop in gops:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            paths = make_videos(Path(tmp), a.videos, a.seconds, gop, content=a.content)
            ftypes[gop] = frame_types(paths[0])
            sizes[gop] = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
            print(f"made {a.videos} H.264 files, 640x360, 30 fps, {a.seconds:g} s, keyframe every {gop} frames, "
                  f"{sizes[gop]:.1f} MB each ({ftypes[gop]}), in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            rows = [(name, cls, w) for w in workers for name, cls in (("ours", ClipReader), ("naive", NaiveReader))]
            for r in range(a.repeats):
                for name, cls, w in rows:
                    cps = run(cls, paths, w, a.batches, a.batch_size)
                    results.setdefault((gop, name, w), []).append(cps)
                    print(f"  gop {gop} round {r + 1}: {name:<5} workers={w}: {cps:6.2f} clips/s", file=sys.stderr)
    cmd = "python bench/decode.py " + " ".join(sys.argv[1:])
    print(f"command: `{cmd.strip()}`  ")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}, PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.ffmpeg_version_info[:3])) if isinstance(av.ffmpeg_version_info, tuple) else av.ffmpeg_version_info})  ")
    print(f"clips: 16 frames, frame step 4, random position, random resized crop to 224x224, flip, masks; videos: "
          f"640x360 H.264 (libx264 veryfast, up to 3 B-frames), content `{a.content}`, {a.seconds:g} s at 30 fps; "
          f"batch {a.batch_size}; "
          f"median of {a.repeats} rounds of {a.batches} timed batches")
    print()
    for gop in gops:
        print(f"frame types, keyframe every {gop}: {ftypes[gop]}  ")
    print()
    print("| keyframe every | workers | ours (clips/s) | naive (clips/s) | ours / naive |")
    print("|---:|---:|---:|---:|---:|")
    for gop in gops:
        for w in workers:
            o, n = statistics.median(results[(gop, "ours", w)]), statistics.median(results[(gop, "naive", w)])
            print(f"| {gop} frames ({gop / 30:.3g} s) | {w} | {o:.2f} | {n:.2f} | {o / n:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
