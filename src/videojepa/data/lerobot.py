"""A local LeRobot dataset folder read as world-model trajectories (:class:`~videojepa.data.trajectories.Episode`).

Layouts (``meta/info.json`` → ``codebase_version``):

- **v2.0 / v2.1**: one parquet per episode, ``data_path`` (default
  ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``) and one mp4 per camera and episode,
  ``video_path`` (default ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``), with
  ``episode_chunk = episode_index // chunks_size``; the episodes are listed in ``meta/episodes.jsonl`` (else
  ``range(total_episodes)``).
- **v3.0**: parquet and mp4 files that hold several episodes (``data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet``,
  ``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``, the episodes' videos concatenated);
  one row per episode in ``meta/episodes/chunk-*/file-*.parquet`` says where: ``data/chunk_index``,
  ``data/file_index``, ``videos/<camera>/chunk_index``, ``videos/<camera>/file_index``,
  ``videos/<camera>/from_timestamp`` (where the episode starts in that mp4), ``length``.

An episode's rows are sorted by ``frame_index``; row ``t`` shows the video frame nearest to its ``timestamp``
(plus ``from_timestamp`` in v3), which must lie within a quarter of a frame period (for a constant-rate video
at the dataset's ``fps`` this is frame ``round(timestamp * fps)``). Cameras stored as images in the parquet
(``dtype: image``) are read too.

LeRobot logs one action per frame, the action taken at that frame; an :class:`Episode` has ``T - 1`` actions
(``actions[t]`` leads from frame ``t`` to ``t + 1``), so the last logged action is dropped: ``actions[:-1]``.

Parquet files are read with ``pyarrow``, an optional dependency: ``pip install "videojepa[lerobot]"``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .decode import DecodeError, probe, read_frames, read_image
from .errors import DataError
from .trajectories import Episode

__all__ = ["LeRobotDataset", "iter_valid", "VERSIONS"]

VERSIONS = ("v2.0", "v2.1", "v3.0")
INFO = "meta/info.json"
DEFAULT_STATE_KEY = "observation.state"
_V2_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
_V2_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
_V3_DATA = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
_V3_VIDEO = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
_TOLERANCE = 0.25  # of a frame period: how far a video frame may sit from the row's timestamp


def _pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or an ImportError that says how to install them."""
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError('reading LeRobot datasets needs pyarrow: pip install "videojepa[lerobot]" '
                          f'(or pip install "pyarrow>=14") ({e})') from None
    return pyarrow, pq


def _read_parquet(path: Path, columns: list[str] | None, what: str):
    pa, pq = _pyarrow()
    if not path.is_file():
        raise DataError(f"{path}: {what} is missing")
    try:
        names = pq.read_schema(path).names
        cols = None if columns is None else [c for c in columns if c in names]
        return pq.read_table(path, columns=cols)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise DataError(f"{path}: {what} is not a readable parquet file ({e})") from None


def _column(table, key: str, path: Path, name: str) -> np.ndarray:
    """A numeric column (scalars or fixed-length lists) as float32 ``[rows, D]``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(key).combine_chunks()
    n = len(col)
    if col.null_count:
        raise DataError(f"{path}: {name}: '{key}' has {col.null_count} empty (null) value(s)")
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lens = np.unique(pc.list_value_length(col).to_numpy(zero_copy_only=False)) if n else np.array([0])
        if len(lens) > 1:
            raise DataError(f"{path}: {name}: '{key}' rows have different lengths {lens.tolist()}")
        flat = col.flatten()
        if flat.null_count:
            raise DataError(f"{path}: {name}: '{key}' has {flat.null_count} empty (null) value(s)")
        if not (pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type) or pa.types.is_boolean(flat.type)):
            raise DataError(f"{path}: {name}: '{key}' holds {flat.type}, not numbers")
        return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, int(lens[0]))
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return col.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, 1)
    raise DataError(f"{path}: {name}: '{key}' holds {t}, not numbers")


def _finite(a: np.ndarray, key: str, path: Path, name: str) -> None:
    if not np.isfinite(a).all():
        r, d = np.argwhere(~np.isfinite(a))[0]
        raise DataError(f"{path}: {name}: non-finite '{key}' at frame {int(r)} (dim {int(d)})")


def _resize(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(frames.shape[1:3]) == tuple(size):
        return frames
    from PIL import Image

    h, w = size
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


class LeRobotDataset:
    """Episodes of a local LeRobot dataset folder (``meta/info.json``, ``data/``, ``videos/``).

    ``camera``: the video (or image) feature to read, default the first ``dtype: video`` feature (else the first
    image feature); ``.cameras`` lists them. ``action_key`` / ``state_key``: the parquet columns for actions and
    states; when the dataset has no ``observation.state`` (the default ``state_key``) the states are a
    zero-width ``[T, 0]`` array (another ``state_key`` that is absent is an error; ``state_key=None`` asks for
    zero-width states). ``size=(H, W)`` resizes every frame (bilinear).

    ``len(ds)`` episodes; ``ds.episodes[i]`` is the LeRobot ``episode_index`` of the ``i``-th one and
    ``ds.episode(i)`` reads it (positional, like a list). Iterating yields every episode and raises
    :class:`DataError` on the first bad one; :func:`iter_valid` skips bad ones instead.
    ``Episode.actions`` is the logged ``action`` column without its last row (see the module docstring).
    """

    def __init__(self, root: str | Path, camera: str | None = None, action_key: str = "action",
                 state_key: str | None = DEFAULT_STATE_KEY, size: tuple[int, int] | None = None) -> None:
        self.root = Path(root)
        self.action_key, self.state_key = action_key, state_key
        self.size = None if size is None else (int(size[0]), int(size[1]))
        _pyarrow()  # fail early, with the install hint
        path = self.root / INFO
        if not path.is_file():
            raise DataError(f"{path}: missing (not a LeRobot dataset folder: it needs meta/info.json)")
        try:
            self.info = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not readable JSON ({e})") from None
        if not isinstance(self.info, dict):
            raise DataError(f"{path}: expected a JSON object")
        self.version = str(self.info.get("codebase_version"))
        if self.version not in VERSIONS:
            raise DataError(f"{path}: codebase_version {self.info.get('codebase_version')!r} is not supported "
                            f"(supported: {', '.join(VERSIONS)})")
        try:
            self.fps = float(self.info["fps"])
            feats = self.info["features"]
            if self.fps <= 0 or not isinstance(feats, dict):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: needs a positive 'fps' and a 'features' object") from None
        self.features: dict = feats
        self.cameras = [k for k, f in feats.items() if isinstance(f, dict) and f.get("dtype") in ("video", "image")]
        videos = [k for k in self.cameras if feats[k]["dtype"] == "video"]
        if camera is None:
            if not self.cameras:
                raise DataError(f"{path}: no camera (no feature with dtype 'video' or 'image')")
            camera = (videos or self.cameras)[0]
        elif camera not in self.cameras:
            raise DataError(f"{path}: no camera {camera!r}; cameras: {', '.join(self.cameras) or '(none)'}")
        self.camera = camera
        self.is_video = feats[camera]["dtype"] == "video"
        if action_key not in feats:
            raise DataError(f"{path}: no feature {action_key!r} (features: {', '.join(feats)})")
        if state_key is not None and state_key not in feats and state_key != DEFAULT_STATE_KEY:
            raise DataError(f"{path}: no feature {state_key!r} (features: {', '.join(feats)})")
        self.chunks_size = int(self.info.get("chunks_size") or 1000)
        v3 = self.version == "v3.0"
        self.data_path = self.info.get("data_path") or (_V3_DATA if v3 else _V2_DATA)
        self.video_path = self.info.get("video_path") or (_V3_VIDEO if v3 else _V2_VIDEO)
        self._meta: dict[int, dict] = {}
        self._table_cache: tuple[Path, object] | None = None
        self._probe_cache: tuple[Path, object] | None = None
        if v3:
            self._load_v3_episodes()
        else:
            self._load_v2_episodes()
        self.episodes: list[int] = sorted(self._meta)

    # ------------------------------------------------------------------------------------------ listing
    def _load_v2_episodes(self) -> None:
        path = self.root / "meta" / "episodes.jsonl"
        if path.is_file():
            for k, line in enumerate(path.read_text().splitlines()):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self._meta[int(rec["episode_index"])] = {"length": rec.get("length")}
                except (ValueError, KeyError, TypeError) as e:
                    raise DataError(f"{path}: line {k + 1} is not an episode record ({e})") from None
        else:
            try:
                n = int(self.info["total_episodes"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{self.root / INFO}: no 'total_episodes' and no meta/episodes.jsonl") from None
            self._meta = {e: {"length": None} for e in range(n)}

    def _load_v3_episodes(self) -> None:
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataError(f"{self.root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet (v3.0 episode metadata)")
        need = ["episode_index", "data/chunk_index", "data/file_index"]
        if self.is_video:
            v = f"videos/{self.camera}/"
            need += [v + "chunk_index", v + "file_index", v + "from_timestamp"]
        for f in files:
            t = _read_parquet(f, need + ["length"], "episode metadata")
            missing = [c for c in need if c not in t.column_names]
            if missing:
                raise DataError(f"{f}: episode metadata lacks column(s) {', '.join(missing)}")
            cols = {c: t.column(c).to_pylist() for c in t.column_names}
            for r in range(t.num_rows):
                rec = {c: cols[c][r] for c in cols}
                self._meta[int(rec["episode_index"])] = rec
        if self.is_video:  # where the next episode starts in the same mp4: frames of this one must come before
            v = f"videos/{self.camera}/"
            by_file: dict[tuple, list[float]] = {}
            for rec in self._meta.values():
                by_file.setdefault((rec[v + "chunk_index"], rec[v + "file_index"]), []).append(float(rec[v + "from_timestamp"]))
            for rec in self._meta.values():
                starts = by_file[(rec[v + "chunk_index"], rec[v + "file_index"])]
                later = [s for s in starts if s > float(rec[v + "from_timestamp"])]
                rec["_until"] = min(later) if later else None

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self.episode(i)

    def __repr__(self) -> str:
        return (f"LeRobotDataset({str(self.root)!r}, {self.version}, {len(self)} episodes, camera={self.camera!r}, "
                f"fps={self.fps:g})")

    def name(self, i: int) -> str:
        return f"lerobot:episode_{self.episodes[i]:06d}"

    # ------------------------------------------------------------------------------------------ reading
    def _paths(self, ep: int) -> tuple[Path, Path | None, float]:
        """The episode's parquet, its mp4 (None for an image camera) and where it starts in that mp4."""
        rec = self._meta[ep]
        if self.version == "v3.0":
            data = self.data_path.format(chunk_index=int(rec["data/chunk_index"]), file_index=int(rec["data/file_index"]))
            if not self.is_video:
                return self.root / data, None, 0.0
            v = f"videos/{self.camera}/"
            video = self.video_path.format(video_key=self.camera, chunk_index=int(rec[v + "chunk_index"]),
                                           file_index=int(rec[v + "file_index"]))
            return self.root / data, self.root / video, float(rec[v + "from_timestamp"])
        chunk = ep // self.chunks_size
        keys = dict(episode_chunk=chunk, episode_index=ep, chunk_index=chunk)
        data = self.data_path.format(**keys)
        video = self.video_path.format(video_key=self.camera, **keys) if self.is_video else None
        return self.root / data, (self.root / video if video else None), 0.0

    def _table(self, path: Path, name: str):
        if self._table_cache is not None and self._table_cache[0] == path:
            return self._table_cache[1]
        cols = [self.action_key, "timestamp", "frame_index", "episode_index"]
        if self.state_key:
            cols.append(self.state_key)
        if not self.is_video:
            cols.append(self.camera)
        t = _read_parquet(path, cols, f"data file of {name}")
        self._table_cache = (path, t)
        return t

    def _probe(self, path: Path):
        if self._probe_cache is not None and self._probe_cache[0] == path:
            return self._probe_cache[1]
        info = probe(path)
        self._probe_cache = (path, info)
        return info

    def episode(self, i: int) -> Episode:
        """The ``i``-th episode (LeRobot ``episode_index`` ``self.episodes[i]``); :class:`DataError` naming the
        file, the key and the episode when it cannot be read."""
        if not 0 <= i < len(self):
            raise IndexError(f"episode {i} out of range ({len(self)} episodes)")
        ep, name = self.episodes[i], self.name(i)
        data_path, video_path, offset = self._paths(ep)
        table = self._table(data_path, name)
        cols = table.column_names
        if self.version == "v3.0":  # a data file holds several episodes: keep this one's rows
            if "episode_index" not in cols:
                raise DataError(f"{data_path}: {name}: no column 'episode_index' (needed in a v3.0 data file)")
            rows = np.flatnonzero(table.column("episode_index").to_numpy(zero_copy_only=False) == ep)
            table = table.take(rows)
        if table.num_rows == 0:
            raise DataError(f"{data_path}: {name}: no rows")
        if self.action_key not in cols:
            raise DataError(f"{data_path}: {name}: no column {self.action_key!r} (columns: {', '.join(cols)})")
        t = table.num_rows
        length = self._meta[ep].get("length")
        if length is not None and int(length) != t:
            raise DataError(f"{data_path}: {name}: {t} rows but the episode metadata says length {int(length)}")
        if "frame_index" in cols:
            fidx = table.column("frame_index").to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            fidx = np.arange(t)
        if len(np.unique(fidx)) != t:
            raise DataError(f"{data_path}: {name}: repeated frame_index values")
        order = np.argsort(fidx, kind="stable")
        if "timestamp" in cols:
            ts = table.column("timestamp").to_numpy(zero_copy_only=False).astype(np.float64)[order]
        else:
            ts = fidx[order] / self.fps
        actions = _column(table, self.action_key, data_path, name)[order]
        _finite(actions, self.action_key, data_path, name)
        if self.state_key and self.state_key in cols:
            states = _column(table, self.state_key, data_path, name)[order]
            _finite(states, self.state_key, data_path, name)
        elif self.state_key and self.state_key != DEFAULT_STATE_KEY:
            raise DataError(f"{data_path}: {name}: no column {self.state_key!r}")
        else:
            states = np.zeros((t, 0), np.float32)
        if video_path is None:
            frames = self._image_frames(table, order, data_path, name)
        else:
            frames = self._video_frames(video_path, ts + offset, ep, name, data_path)
        frames = _resize(frames, self.size)
        return Episode(frames=frames, actions=np.ascontiguousarray(actions[:-1]),
                       states=np.ascontiguousarray(states), layout=None, name=name)

    def _video_frames(self, path: Path, times: np.ndarray, ep: int, name: str, data_path: Path) -> np.ndarray:
        if not path.is_file():
            raise DataError(f"{path}: video of {name} (camera {self.camera}) is missing")
        try:
            info = self._probe(path)
        except DecodeError as e:
            raise DataError(f"{name} (camera {self.camera}): {e}") from e
        t = len(times)
        if self.version != "v3.0" and info.num_frames != t:
            raise DataError(f"{path}: {name}: the video has {info.num_frames} frames but {data_path.name} has {t} rows "
                            f"(camera {self.camera})")
        vt, n = info.times, info.num_frames
        hi = np.clip(np.searchsorted(vt, times), 0, n - 1)
        lo = np.clip(hi - 1, 0, n - 1)
        idx = np.where(np.abs(vt[lo] - times) <= np.abs(vt[hi] - times), lo, hi)
        tol = _TOLERANCE / self.fps
        bad = np.abs(vt[idx] - times) > tol
        until = self._meta[ep].get("_until")
        if until is not None:  # v3: the frame must not belong to the next episode in the same mp4
            bad |= vt[idx] >= until - tol
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            where = (f"the next episode starts at {until:.4f} s" if until is not None
                     else f"its last frame is at {vt[-1]:.4f} s")
            raise DataError(f"{path}: {name}: no video frame for row {r} at t={times[r]:.4f} s ({where}): "
                            f"{data_path.name} ({t} rows) and the video differ in length (camera {self.camera})")
        try:
            return read_frames(path, idx, info=info)
        except DecodeError as e:
            raise DataError(f"{name} (camera {self.camera}): {e}") from e

    def _image_frames(self, table, order: np.ndarray, data_path: Path, name: str) -> np.ndarray:
        if self.camera not in table.column_names:
            raise DataError(f"{data_path}: {name}: no column {self.camera!r}")
        out = []
        for r, v in enumerate(table.column(self.camera).take(order).to_pylist()):
            src = v.get("bytes") if isinstance(v, dict) else v
            if not src and isinstance(v, dict) and v.get("path"):
                src = Path(v["path"]) if Path(v["path"]).is_absolute() else self.root / v["path"]
            if not src:
                raise DataError(f"{data_path}: {name}: '{self.camera}' row {r} holds no image")
            try:
                out.append(read_image(src, name=f"{data_path}[{self.camera}, row {r}]"))
            except DecodeError as e:
                raise DataError(f"{name}: {e}") from e
        if len({a.shape for a in out}) > 1:
            raise DataError(f"{data_path}: {name}: '{self.camera}' images differ in size")
        return np.stack(out)


def iter_valid(dataset: LeRobotDataset) -> tuple[Iterator[Episode], list[tuple[str, str]]]:
    """``(episodes, skipped)``: a generator of the usable episodes, and a list that receives ``(name, reason)``
    for every episode it skips while it runs (an unreadable or missing file, a missing key, NaN, lengths that
    differ, or what :meth:`Episode.problem` finds). Consume the generator before reading ``skipped``."""
    skipped: list[tuple[str, str]] = []

    def gen() -> Iterator[Episode]:
        for i in range(len(dataset)):
            try:
                ep = dataset.episode(i)
            except DataError as e:
                skipped.append((dataset.name(i), str(e)))
                continue
            why = ep.problem()
            if why:
                skipped.append((ep.name, why))
                continue
            yield ep

    return gen(), skipped
