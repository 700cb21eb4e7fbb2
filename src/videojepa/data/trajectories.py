"""Trajectory data for world models: episodes of frames, actions and proprioceptive states.

One **episode** is what a robot or a simulator logged (DROID-like):

- ``frames``  uint8 ``[T, H, W, 3]`` (RGB), the observation after ``t`` actions;
- ``actions`` float32 ``[T-1, A]``: ``actions[t]`` is applied between frame ``t`` and frame ``t+1``;
- ``states``  float32 ``[T, S]``: the proprioceptive state seen with frame ``t`` (for the embedded
  Two Rooms environment: the agent's ``(x, y)`` in pixels);
- ``layout``  float32 ``[L]`` or None: whatever describes the scene (Two Rooms: wall x, door y, door
  half-height), kept for evaluation and diagnostics, never fed to the model;
- ``name``: where it came from (``file.npz#3``, ``lerobot:episode_000012``), used in every error.

On disk, a **trajectory folder** holds shards written by :func:`write_shard` and an ``index.json``
(format ``videojepa-trajectories/1``) that lists them with their SHA-256. A shard is a NumPy ``.npz``
(compressed) with ragged arrays concatenated over its episodes:

===================  =========  ================================================================
key                  dtype      shape
===================  =========  ================================================================
``frames``           uint8      ``[sum T_e, H, W, 3]``
``actions``          float32    ``[sum (T_e - 1), A]``
``states``           float32    ``[sum T_e, S]``
``frame_offsets``    int64      ``[E + 1]``: episode ``e`` has frames ``frame_offsets[e]:[e+1]``
``action_offsets``   int64      ``[E + 1]``: and actions ``action_offsets[e]:[e+1]``
``layouts``          float32    ``[E, L]`` (optional)
===================  =========  ================================================================

Users write their own logs with :func:`write_trajectories` (a list of :class:`Episode`), and a local
LeRobot dataset folder is read directly (:mod:`videojepa.data.lerobot`).
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["Episode", "write_shard", "read_shard", "write_trajectories", "TrajectoryWriter", "TrajectoryDataset",
           "load_trajectories", "export_videos", "FORMAT"]

FORMAT = "videojepa-trajectories/1"
INDEX = "index.json"


@dataclass
class Episode:
    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray
    layout: np.ndarray | None = None
    name: str = "episode"

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def problem(self) -> str | None:
        """Why this episode cannot be used (None if it can): shapes that do not line up, non-finite values."""
        f, a, s = self.frames, self.actions, self.states
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            return f"frames must be uint8 [T, H, W, 3], got {f.dtype} {tuple(f.shape)}"
        t = f.shape[0]
        if t < 2:
            return f"{t} frame(s); an episode needs at least 2"
        if a.ndim != 2 or a.shape[0] != t - 1:
            return f"{a.shape[0] if a.ndim else '?'} actions for {t} frames (expected {t - 1}, shape [T-1, A])"
        if s.ndim != 2 or s.shape[0] != t:
            return f"{s.shape[0] if s.ndim else '?'} states for {t} frames (expected {t}, shape [T, S])"
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            return f"non-finite action at step {int(bad[0])} (dim {int(bad[1])})"
        if not np.isfinite(s).all():
            bad = np.argwhere(~np.isfinite(s))[0]
            return f"non-finite state at step {int(bad[0])} (dim {int(bad[1])})"
        return None


# ---------------------------------------------------------------------------------------------- shards
def write_shard(path: str | Path, episodes: list[Episode]) -> str:
    """Write ``episodes`` as one compressed ``.npz`` shard (atomically); returns its SHA-256."""
    from ..training.checkpoint import file_digest

    path = Path(path)
    if not episodes:
        raise ValueError(f"{path}: no episodes to write")
    for ep in episodes:
        why = ep.problem()
        if why:
            raise DataError(f"{ep.name}: {why}")
    dims = {(ep.frames.shape[1:], ep.actions.shape[1], ep.states.shape[1]) for ep in episodes}
    if len(dims) > 1:
        raise DataError(f"{path}: episodes disagree on frame shape / action dim / state dim: {sorted(map(str, dims))}")
    lays = [ep.layout for ep in episodes]
    arrays = {
        "frames": np.concatenate([ep.frames for ep in episodes]),
        "actions": np.concatenate([ep.actions for ep in episodes]).astype(np.float32),
        "states": np.concatenate([ep.states for ep in episodes]).astype(np.float32),
        "frame_offsets": np.cumsum([0] + [len(ep) for ep in episodes]).astype(np.int64),
        "action_offsets": np.cumsum([0] + [len(ep) - 1 for ep in episodes]).astype(np.int64),
    }
    if all(lay is not None for lay in lays):
        arrays["layouts"] = np.stack([np.asarray(lay, np.float32) for lay in lays])
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return file_digest(path)


def read_shard(path: str | Path, sha256: str | None = None) -> tuple[list[Episode], list[tuple[str, str]]]:
    """Episodes of one shard, and ``(name, reason)`` for each episode that cannot be used (skipped, not
    repaired). A shard whose checksum or structure is wrong raises :class:`DataError` naming it."""
    from ..training.checkpoint import CheckpointCorruptError, check_digest

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: trajectory shard is missing")
    if sha256:
        try:
            check_digest(path, sha256)
        except CheckpointCorruptError as e:
            raise DataError(str(e)) from None
    try:
        with np.load(path, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz trajectory shard ({e})") from None
    need = ("frames", "actions", "states", "frame_offsets", "action_offsets")
    missing = [k for k in need if k not in arr]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)} (a shard has {', '.join(need)}, optional layouts)")
    fo, ao = arr["frame_offsets"], arr["action_offsets"]
    n = len(fo) - 1
    if n < 1 or len(ao) != n + 1 or fo[-1] != len(arr["frames"]) or ao[-1] != len(arr["actions"]) \
            or fo[-1] != len(arr["states"]) or np.any(np.diff(fo) < 0) or np.any(np.diff(ao) < 0):
        raise DataError(f"{path}: offsets do not match the arrays ({n} episodes, {len(arr['frames'])} frames, "
                        f"{len(arr['actions'])} actions, {len(arr['states'])} states)")
    lays = arr.get("layouts")
    eps, bad = [], []
    for e in range(n):
        ep = Episode(arr["frames"][fo[e]:fo[e + 1]], arr["actions"][ao[e]:ao[e + 1]], arr["states"][fo[e]:fo[e + 1]],
                     None if lays is None else lays[e], f"{path.name}#{e}")
        why = ep.problem()
        if why:
            bad.append((str(path) + f"#{e}", why))
        else:
            eps.append(ep)
    return eps, bad


class TrajectoryWriter:
    """Writes a trajectory folder shard by shard (``shard-00000.npz`` ...) and keeps ``index.json`` current,
    so a collection that was stopped resumes at the first missing shard."""

    def __init__(self, root: str | Path, meta: dict | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        idx = self.root / INDEX
        if idx.exists():
            self.index = _read_index(self.root)
            if meta is not None and self.index.get("meta") != meta:
                raise DataError(f"{idx}: this folder was collected with different settings "
                                f"({self.index.get('meta')} vs {meta}); use another --out")
        else:
            self.index = {"format": FORMAT, "meta": meta or {}, "shards": []}

    @property
    def done(self) -> int:
        return len(self.index["shards"])

    def add(self, episodes: list[Episode]) -> None:
        name = f"shard-{self.done:05d}.npz"
        digest = write_shard(self.root / name, episodes)
        self.index["shards"].append({"file": name, "episodes": len(episodes), "frames": int(sum(len(e) for e in episodes)),
                                     "sha256": digest})
        tmp = self.root / (INDEX + ".tmp")
        tmp.write_text(json.dumps(self.index, indent=1))
        os.replace(tmp, self.root / INDEX)


def write_trajectories(root: str | Path, episodes: list[Episode], shard_size: int = 256, meta: dict | None = None) -> Path:
    """Write your own logs (a list of :class:`Episode`) as a trajectory folder that ``videojepa world train`` reads."""
    w = TrajectoryWriter(root, meta)
    for i in range(0, len(episodes), shard_size):
        w.add(episodes[i:i + shard_size])
    return Path(root)


def _read_index(root: Path) -> dict:
    idx = root / INDEX
    try:
        d = json.loads(idx.read_text())
    except FileNotFoundError:
        raise DataError(f"{root}: no {INDEX}: not a trajectory folder (write one with videojepa world collect or "
                        f"videojepa.data.trajectories.write_trajectories)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{idx}: not valid JSON ({e})") from None
    if d.get("format") != FORMAT:
        raise DataError(f"{idx}: format {d.get('format')!r}, expected {FORMAT!r}")
    return d


# ---------------------------------------------------------------------------------------------- loading
class TrajectoryDataset:
    """Episodes in memory, with the unusable ones named in :attr:`skipped`, and window sampling.

    ``sample(batch, window, rng)`` draws ``batch`` episodes (uniformly) and a random start in each, returning
    ``frames`` uint8 ``[B, W, H, W, 3]``, ``actions`` float32 ``[B, W-1, A]``, ``states`` float32 ``[B, W, S]``
    and ``layouts`` ``[B, L]`` (when every episode has one). Episodes shorter than ``window`` are never drawn.
    """

    def __init__(self, episodes: list[Episode], skipped: list[tuple[str, str]] | None = None, meta: dict | None = None,
                 source: str = "") -> None:
        self.skipped = list(skipped or [])
        self.meta = dict(meta or {})
        self.source = source
        dims = {(ep.frames.shape[1:], ep.actions.shape[1], ep.states.shape[1]) for ep in episodes}
        if len(dims) > 1:
            raise DataError(f"{source}: episodes disagree on frame shape / action dim / state dim: {sorted(map(str, dims))}")
        self.episodes = episodes
        self._frames = self._actions = self._states = None
        self._pack()

    def _pack(self) -> None:
        eps = self.episodes
        if not eps:
            return
        self.lengths = np.array([len(e) for e in eps])
        self.frame_start = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.action_start = self.frame_start - np.arange(len(eps))
        self._frames = np.concatenate([e.frames for e in eps])
        self._actions = np.concatenate([e.actions for e in eps]).astype(np.float32)
        self._states = np.concatenate([e.states for e in eps]).astype(np.float32)
        lays = [e.layout for e in eps]
        self._layouts = np.stack([np.asarray(x, np.float32) for x in lays]) if all(x is not None for x in lays) else None

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.episodes[0].frames.shape[1:])

    @property
    def action_dim(self) -> int:
        return int(self.episodes[0].actions.shape[1])

    @property
    def state_dim(self) -> int:
        return int(self.episodes[0].states.shape[1])

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum()) if self.episodes else 0

    def eligible(self, window: int) -> np.ndarray:
        ok = np.flatnonzero(self.lengths >= window) if self.episodes else np.array([], np.int64)
        if not len(ok):
            longest = int(self.lengths.max()) if self.episodes else 0
            raise DataError(f"{self.source}: no episode has {window} frames (longest: {longest}); lower the window")
        return ok

    def frame_index(self, eps: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
        """Rows of :meth:`all_frames` (and of anything computed per frame) of each window, ``[B, window]``."""
        return (self.frame_start[eps] + starts)[:, None] + np.arange(window)

    def windows(self, eps: np.ndarray, starts: np.ndarray, window: int, frames: bool = True) -> dict:
        fi = self.frame_index(eps, starts, window)
        ai = (self.action_start[eps] + starts)[:, None] + np.arange(window - 1)
        out = {"actions": self._actions[ai], "states": self._states[fi], "episode": eps, "start": starts}
        if frames:  # a trainer with cached features of a frozen encoder never reads the pixels
            out["frames"] = self._frames[fi]
        if self._layouts is not None:
            out["layouts"] = self._layouts[eps]
        return out

    def draw(self, n: int, window: int, rng: np.random.Generator, pool: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(episodes, starts)`` of ``n`` windows: episodes uniform over ``pool`` (default all) among those with at
        least ``window`` frames, starts uniform within each."""
        ok = self.eligible(window)
        if pool is not None:
            ok = np.intersect1d(ok, pool)
            if not len(ok):
                raise DataError(f"{self.source}: none of the {len(pool)} episodes drawn from has {window} frames")
        eps = ok[rng.integers(0, len(ok), size=n)]
        starts = (rng.random(n) * (self.lengths[eps] - window + 1)).astype(np.int64)
        return eps, starts

    def spread(self, eps: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``k`` distinct frames of each episode of ``eps``, uniformly at random over the whole episode and sorted:
        ``(steps [B, k]`` within each episode, ``rows [B, k]`` of :meth:`all_frames`)."""
        short = eps[self.lengths[eps] < k]
        if len(short):
            raise DataError(f"{self.source}: episode {self.episodes[short[0]].name} has {self.lengths[short[0]]} "
                            f"frames, fewer than the {k} to draw from it")
        steps = np.stack([np.sort(rng.choice(int(self.lengths[e]), k, replace=False)) for e in eps]).astype(np.int64)
        return steps, self.frame_start[eps][:, None] + steps

    def sample(self, batch: int, window: int, rng: np.random.Generator) -> dict:
        return self.windows(*self.draw(batch, window, rng), window)

    def all_frames(self) -> np.ndarray:
        """Every frame, ``[sum T, H, W, 3]`` (episodes concatenated; offsets in :attr:`frame_start`)."""
        return self._frames


def load_trajectories(root: str | Path, *, limit: int | None = None, progress: bool = False) -> TrajectoryDataset:
    """A trajectory folder (``index.json`` + shards) or a LeRobot dataset folder (``meta/info.json``).

    Unreadable shards and unusable episodes are named in ``dataset.skipped`` (and a warning), never repaired;
    the load fails only when nothing usable is left."""
    root = Path(root)
    if (root / "meta" / "info.json").is_file() and not (root / INDEX).is_file():
        from .lerobot import LeRobotDataset, iter_valid

        eps, skipped = iter_valid(LeRobotDataset(root))
        eps = list(eps)
        if limit is not None:
            eps = eps[:limit]
        meta = {"source": "lerobot"}
    else:
        index = _read_index(root)
        meta = index.get("meta", {})
        eps, skipped = [], []
        shards = index["shards"]
        it = shards
        if progress:
            from tqdm import tqdm

            it = tqdm(shards, desc="load", unit="shard", leave=False)
        for rec in it:
            if limit is not None and len(eps) >= limit:
                break
            try:
                got, bad = read_shard(root / rec["file"], rec.get("sha256"))
            except DataError as e:
                skipped.append((str(root / rec["file"]), str(e)))
                continue
            eps.extend(got)
            skipped.extend(bad)
        if limit is not None:
            eps = eps[:limit]
    for name, why in skipped:
        print(f"warning: skipped {name}: {why}", file=sys.stderr)
    if not eps:
        raise DataError(f"{root}: no usable episode ({len(skipped)} skipped)")
    return TrajectoryDataset(eps, skipped, meta, source=str(root))


def export_videos(ds: TrajectoryDataset, out: str | Path, *, fps: int = 10, crf: int = 12, progress: bool = False) -> list[Path]:
    """Write each episode's frames as ``out/episode_NNNNNN.mp4`` (H.264, yuv420p, near-lossless ``crf``), a folder
    that ``videojepa pretrain`` reads as a file dataset (``data.source=files data.datasets=[out]``): V-JEPA
    pretraining on the trajectories' own videos."""
    import av

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    it = range(len(ds))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="export", unit="video", leave=False)
    for i in it:
        ep = ds.episodes[i]
        path = out / f"episode_{i:06d}.mp4"
        tmp = path.with_name(path.stem + ".tmp.mp4")
        h, w = ep.frames.shape[1:3]
        with av.open(str(tmp), "w") as c:
            s = c.add_stream("libx264", rate=fps)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.codec_context.options = {"crf": str(crf)}
            for fr in ep.frames:
                for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
        os.replace(tmp, path)
        paths.append(path)
    return paths
