"""LeRobot dataset folders (v2.1 and v3.0 layouts) read as trajectories: tiny folders built here with PyAV and pyarrow.

Every video frame is a flat gray whose level encodes its index in the sequence of all frames of the dataset
(``g = episode start + t``), so a test can tell which frame was decoded despite the compression; the wrist
camera shows the inverted level.
"""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from videojepa.data.errors import DataError  # noqa: E402
from videojepa.data.lerobot import LeRobotDataset, iter_valid  # noqa: E402

FPS, H, W = 10, 32, 32
TOP, WRIST = "observation.images.top", "observation.images.wrist"
LENGTHS = (6, 5, 7)


def level(g: int) -> int:
    return 12 + 12 * g


def painted(g: int, cam: str) -> np.ndarray:
    v = level(g) if cam != WRIST else 255 - level(g)
    return np.full((H, W, 3), v, np.uint8)


def decoded(frames: np.ndarray, cam: str = TOP) -> list[int]:
    m = frames.astype(np.float64).mean(axis=(1, 2, 3))
    if cam == WRIST:
        m = 255 - m
    return [int(round((x - 12) / 12)) for x in m]


def write_mp4(path: Path, gs, cam: str) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.gop_size = 3  # several keyframes: reading an episode in a shared file seeks
        s.codec_context.options = {"preset": "ultrafast"}
        for i, g in enumerate(gs):
            f = av.VideoFrame.from_ndarray(painted(g, cam), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def actions_of(ep: int, t: int) -> np.ndarray:
    return np.stack([ep * 100.0 + np.arange(t), -np.arange(t, dtype=np.float64)], 1).astype(np.float32)


def states_of(ep: int, t: int) -> np.ndarray:
    return np.stack([np.full(t, ep), np.arange(t), 0.5 * np.arange(t)], 1).astype(np.float32)


def png(img: np.ndarray) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(img).save(b, format="PNG")
    return b.getvalue()


def rows_table(ep: int, t: int, start: int, *, state=True, image_cam=None, nan_at=None, drop=()) -> pa.Table:
    """The rows of one episode, written in a scrambled order (the reader sorts them by frame_index)."""
    order = np.roll(np.arange(t)[::-1], 2) if t > 1 else np.arange(t)
    act = actions_of(ep, t)
    if nan_at is not None:
        act[nan_at, 0] = np.nan
    cols = {
        "action": pa.array([act[i].tolist() for i in order], pa.list_(pa.float32())),
        "timestamp": pa.array([i / FPS for i in order], pa.float32()),
        "frame_index": pa.array(order, pa.int64()),
        "episode_index": pa.array([ep] * t, pa.int64()),
        "index": pa.array(start + order, pa.int64()),
        "task_index": pa.array([0] * t, pa.int64()),
    }
    if state:
        cols["observation.state"] = pa.array([states_of(ep, t)[i].tolist() for i in order], pa.list_(pa.float32()))
    if image_cam:
        cols[image_cam] = pa.array([{"bytes": png(painted(start + i, TOP)), "path": f"frame_{i}.png"} for i in order],
                                   pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    for k in drop:
        cols.pop(k)
    return pa.table(cols)


def info_json(version: str, n: int, *, state=True, cams=(TOP, WRIST), image_cam=None) -> dict:
    feats = {"action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]}}
    if state:
        feats["observation.state"] = {"dtype": "float32", "shape": [3], "names": None}
    for cam in cams:
        feats[cam] = {"dtype": "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    if image_cam:
        feats[image_cam] = {"dtype": "image", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    for k in ("timestamp",):
        feats[k] = {"dtype": "float32", "shape": [1], "names": None}
    for k in ("frame_index", "episode_index", "index", "task_index"):
        feats[k] = {"dtype": "int64", "shape": [1], "names": None}
    info = {"codebase_version": version, "robot_type": "test", "fps": FPS, "total_episodes": n, "chunks_size": 1000,
            "features": feats}
    if version == "v3.0":
        info["data_path"] = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        info["video_path"] = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    else:
        info["data_path"] = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4" if cams else None
    return info


def starts_of(lengths) -> list[int]:
    return [int(s) for s in np.cumsum([0, *lengths])[:-1]]


def build_v21(root: Path, lengths=LENGTHS, *, state=True, cams=(TOP, WRIST), image_cam=None) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info_json("v2.1", len(lengths), state=state, cams=cams,
                                                                  image_cam=image_cam)))
    with open(root / "meta" / "episodes.jsonl", "w") as f:
        for ep, t in enumerate(lengths):
            f.write(json.dumps({"episode_index": ep, "tasks": ["push"], "length": t}) + "\n")
    for ep, (t, start) in enumerate(zip(lengths, starts_of(lengths))):
        p = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows_table(ep, t, start, state=state, image_cam=image_cam), p)
        for cam in cams:
            write_mp4(root / f"videos/chunk-000/{cam}/episode_{ep:06d}.mp4", range(start, start + t), cam)
    return root


# v3.0: episodes 0, 1 in data file-000 and episode 2 in file-001; the top camera's episodes all in one mp4,
# the wrist camera's episode 0 in file-000 and episodes 1, 2 in file-001
V3_DATA_FILE = (0, 0, 1)
V3_VIDEO_FILE = {TOP: (0, 0, 0), WRIST: (0, 1, 1)}


def build_v30(root: Path, lengths=LENGTHS, *, video_lengths=None, nan=None) -> Path:
    """``video_lengths``: frames each episode has in the videos (default: its rows); ``nan``: (episode, row)."""
    video_lengths = list(video_lengths or lengths)
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info_json("v3.0", len(lengths))))
    starts, vstarts = starts_of(lengths), starts_of(video_lengths)
    meta = {k: [] for k in ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                            "dataset_from_index", "dataset_to_index", "meta/episodes/chunk_index",
                            "meta/episodes/file_index")}
    for ep, t in enumerate(lengths):
        for k, v in (("episode_index", ep), ("tasks", ["push"]), ("length", t), ("data/chunk_index", 0),
                     ("data/file_index", V3_DATA_FILE[ep]), ("dataset_from_index", starts[ep]),
                     ("dataset_to_index", starts[ep] + t), ("meta/episodes/chunk_index", 0),
                     ("meta/episodes/file_index", 0)):
            meta[k].append(v)
    for f in sorted(set(V3_DATA_FILE)):
        tabs = [rows_table(ep, t, starts[ep], nan_at=nan[1] if nan and nan[0] == ep else None)
                for ep, t in enumerate(lengths) if V3_DATA_FILE[ep] == f]
        p = root / f"data/chunk-000/file-{f:03d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tabs), p)
    for cam, files in V3_VIDEO_FILE.items():
        for k in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            meta[f"videos/{cam}/{k}"] = []
        for f in sorted(set(files)):
            eps = [ep for ep in range(len(lengths)) if files[ep] == f]
            gs, t0 = [], 0.0
            for ep in eps:  # the episodes' videos concatenated, as LeRobot writes them
                gs += list(range(vstarts[ep], vstarts[ep] + video_lengths[ep]))
                for k, v in (("chunk_index", 0), ("file_index", f), ("from_timestamp", t0),
                             ("to_timestamp", t0 + video_lengths[ep] / FPS)):
                    meta[f"videos/{cam}/{k}"].append((ep, v))
                t0 += video_lengths[ep] / FPS
            write_mp4(root / f"videos/{cam}/chunk-000/file-{f:03d}.mp4", gs, cam)
        for k in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            meta[f"videos/{cam}/{k}"] = [v for _, v in sorted(meta[f"videos/{cam}/{k}"])]
    p = root / "meta/episodes/chunk-000/file-000.parquet"
    p.parent.mkdir(parents=True)
    pq.write_table(pa.table(meta), p)
    return root


@pytest.fixture(scope="module")
def v21(tmp_path_factory) -> Path:
    return build_v21(tmp_path_factory.mktemp("lerobot") / "v21")


@pytest.fixture(scope="module")
def v30(tmp_path_factory) -> Path:
    return build_v30(tmp_path_factory.mktemp("lerobot") / "v30")


@pytest.fixture
def copy(tmp_path):
    return lambda src: Path(shutil.copytree(src, tmp_path / src.name))


# ------------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("layout", ["v21", "v30"])
@pytest.mark.parametrize("cam", [None, WRIST])
def test_episodes_frames_actions_states(request, layout, cam):
    root = request.getfixturevalue(layout)
    ds = LeRobotDataset(root, camera=cam)
    assert len(ds) == 3 and ds.episodes == [0, 1, 2] and ds.fps == FPS
    assert ds.camera == (cam or TOP) and ds.cameras == [TOP, WRIST]
    for i, (t, start) in enumerate(zip(LENGTHS, starts_of(LENGTHS))):
        ep = ds.episode(i)
        assert ep.name == f"lerobot:episode_{i:06d}" and ep.problem() is None
        assert ep.frames.shape == (t, H, W, 3) and ep.frames.dtype == np.uint8
        # rows were written out of order: the reader sorts by frame_index and picks frame round(timestamp * fps)
        # (plus the episode's from_timestamp in a shared v3 mp4)
        assert decoded(ep.frames, ds.camera) == list(range(start, start + t)), (layout, cam, i)
        assert ep.actions.dtype == np.float32 and ep.states.dtype == np.float32
        np.testing.assert_array_equal(ep.actions, actions_of(i, t)[:-1])  # T-1 actions: the last one dropped
        np.testing.assert_array_equal(ep.states, states_of(i, t))
        assert ep.layout is None
    assert [len(e) for e in ds] == list(LENGTHS)


def test_v30_episodes_in_shared_files_use_their_offsets(v30):
    ds = LeRobotDataset(v30)
    meta = pq.read_table(v30 / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert meta[f"videos/{TOP}/from_timestamp"] == pytest.approx([0.0, 0.6, 1.1])  # one mp4 for all three
    assert meta[f"videos/{WRIST}/from_timestamp"] == pytest.approx([0.0, 0.0, 0.5])  # episodes 1, 2 share file-001
    assert decoded(ds.episode(2).frames) == list(range(11, 18))  # episode 2 alone in data file-001
    # read out of order: the per-file caches must not mix up episodes
    w = LeRobotDataset(v30, camera=WRIST)
    assert [decoded(w.episode(i).frames, WRIST)[0] for i in (2, 0, 1, 2)] == [11, 0, 6, 11]


@pytest.mark.parametrize("layout", ["v21", "v30"])
def test_resize(request, layout):
    ds = LeRobotDataset(request.getfixturevalue(layout), size=(16, 24))
    ep = ds.episode(1)
    assert ep.frames.shape == (5, 16, 24, 3) and ep.frames.dtype == np.uint8
    assert decoded(ep.frames) == [6, 7, 8, 9, 10]


def test_unknown_camera_lists_the_cameras(v21):
    with pytest.raises(DataError, match=rf"'observation.images.side'.*{TOP}, {WRIST}"):
        LeRobotDataset(v21, camera="observation.images.side")


def test_no_state_gives_zero_width_states_and_image_cameras_are_read(tmp_path):
    root = build_v21(tmp_path / "d", lengths=(4, 3), state=False, cams=(), image_cam="observation.image")
    ds = LeRobotDataset(root)
    assert ds.camera == "observation.image"
    ep = ds.episode(1)
    assert ep.states.shape == (3, 0) and ep.actions.shape == (2, 2) and ep.problem() is None
    assert decoded(ep.frames) == [4, 5, 6]  # PNG: exact
    with pytest.raises(DataError, match="observation.joints"):
        LeRobotDataset(root, state_key="observation.joints")


# --------------------------------------------------------------------------------------------- bad input
def test_missing_pyarrow_says_how_to_install(v21, monkeypatch):
    for m in ("pyarrow", "pyarrow.parquet", "pyarrow.compute"):
        monkeypatch.setitem(sys.modules, m, None)
    with pytest.raises(ImportError, match=r'pip install "videojepa\[lerobot\]"'):
        LeRobotDataset(v21)


def test_missing_info_and_unknown_version(tmp_path, v21, copy):
    with pytest.raises(DataError, match=r"meta[/\\]info.json: missing"):
        LeRobotDataset(tmp_path)
    root = copy(v21)
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v1.6"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"info.json: codebase_version 'v1.6' is not supported \(supported: v2.0, v2.1, v3.0\)"):
        LeRobotDataset(root)


def test_v21_bad_files_are_named_and_skipped(v21, copy):
    root = copy(v21)
    (root / f"videos/chunk-000/{TOP}/episode_000001.mp4").unlink()
    (root / "data/chunk-000/episode_000002.parquet").write_bytes(b"PAR1 this is not parquet")
    ds = LeRobotDataset(root)
    with pytest.raises(DataError, match=r"episode_000001.mp4: video of lerobot:episode_000001 .* is missing"):
        ds.episode(1)
    eps, skipped = iter_valid(ds)
    assert [e.name for e in eps] == ["lerobot:episode_000000"]
    assert [n for n, _ in skipped] == ["lerobot:episode_000001", "lerobot:episode_000002"]
    assert "episode_000001.mp4" in skipped[0][1] and "missing" in skipped[0][1]
    assert "episode_000002.parquet" in skipped[1][1] and "not a readable parquet" in skipped[1][1]
    # the wrist camera of episode 1 is still there
    eps, skipped = iter_valid(LeRobotDataset(root, camera=WRIST))
    assert [e.name for e in eps] == ["lerobot:episode_000000", "lerobot:episode_000001"] and len(skipped) == 1


def test_v21_missing_parquet_corrupt_mp4_and_missing_action_column(v21, copy):
    root = copy(v21)
    (root / "data/chunk-000/episode_000000.parquet").unlink()
    (root / f"videos/chunk-000/{TOP}/episode_000001.mp4").write_bytes(b"\x00" * 100)
    p = root / "data/chunk-000/episode_000002.parquet"
    pq.write_table(rows_table(2, 7, 11, drop=("action",)), p)
    ds = LeRobotDataset(root)
    with pytest.raises(DataError, match=r"episode_000000.parquet: data file of lerobot:episode_000000 is missing"):
        ds.episode(0)
    with pytest.raises(DataError, match=r"lerobot:episode_000001 .*episode_000001.mp4: not a readable media file"):
        ds.episode(1)
    with pytest.raises(DataError, match=r"episode_000002.parquet: lerobot:episode_000002: no column 'action'"):
        ds.episode(2)
    eps, skipped = iter_valid(ds)
    assert list(eps) == [] and len(skipped) == 3


def test_v21_video_and_table_lengths_differ(v21, copy):
    root = copy(v21)
    write_mp4(root / f"videos/chunk-000/{TOP}/episode_000000.mp4", range(5), TOP)  # the table has 6 rows
    with pytest.raises(DataError, match=r"episode_000000.mp4: lerobot:episode_000000: the video has 5 frames "
                                        r"but episode_000000.parquet has 6 rows"):
        LeRobotDataset(root).episode(0)


def test_v30_nan_action_is_named_and_only_that_episode_skipped(tmp_path):
    root = build_v30(tmp_path / "d", nan=(1, 2))
    ds = LeRobotDataset(root)
    with pytest.raises(DataError, match=r"file-000.parquet: lerobot:episode_000001: non-finite 'action' at frame 2"):
        ds.episode(1)
    eps, skipped = iter_valid(ds)
    assert [e.name for e in eps] == ["lerobot:episode_000000", "lerobot:episode_000002"]  # same data file as ep 0
    assert skipped[0][0] == "lerobot:episode_000001" and "'action'" in skipped[0][1]


def test_v30_table_longer_than_its_video_segment(tmp_path):
    # episode 0 has 7 rows but 6 frames in the shared mp4: its 7th row would show episode 1's first frame
    root = build_v30(tmp_path / "d", lengths=(7, 5, 7), video_lengths=(6, 5, 7))
    ds = LeRobotDataset(root)
    with pytest.raises(DataError, match=r"file-000.mp4: lerobot:episode_000000: no video frame for row 6 .*"
                                        r"next episode starts at 0.6000 s.*differ in length"):
        ds.episode(0)
    eps, skipped = iter_valid(ds)
    assert [e.name for e in eps] == ["lerobot:episode_000001", "lerobot:episode_000002"]
    assert decoded(ds.episode(2).frames) == list(range(11, 18))
    # the last episode of a file: past the end of the video
    root = build_v30(tmp_path / "e", lengths=(6, 5, 8), video_lengths=(6, 5, 7))
    with pytest.raises(DataError, match=r"lerobot:episode_000002: no video frame for row 7 .*last frame is at 1.7000 s"):
        LeRobotDataset(root).episode(2)


def test_v30_metadata_length_disagrees_with_table(v30, copy):
    root = copy(v30)
    p = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(p).to_pydict()
    t["length"][1] = 9
    pq.write_table(pa.table(t), p)
    with pytest.raises(DataError, match=r"file-000.parquet: lerobot:episode_000001: 5 rows but the episode "
                                        r"metadata says length 9"):
        LeRobotDataset(root).episode(1)


def test_episode_problem_is_checked_by_iter_valid(tmp_path):
    root = build_v21(tmp_path / "d", lengths=(4, 1), cams=(TOP,))
    eps, skipped = iter_valid(LeRobotDataset(root))
    assert [e.name for e in eps] == ["lerobot:episode_000000"]
    assert skipped == [("lerobot:episode_000001", "1 frame(s); an episode needs at least 2")]


def test_world_model_trains_on_a_lerobot_folder(v21, tmp_path):
    """``videojepa world train --data <LeRobot folder>``: the same trainer, reading the robot log directly."""
    from videojepa.training.world import WorldTrainer, load_world_config

    cfg = load_world_config(None, [f"data.path={v21}", "data.window=4", "data.batch_size=4", "data.val_episodes=0",
                                   "train.steps=2", "train.diag_every=1", "model.img_size=32", "model.dim=16",
                                   f"model.action_dim={actions_of(0, 1).shape[1]}",
                                   f"model.state_dim={states_of(0, 1).shape[1]}", "loss.rollout=2"])
    s = WorldTrainer(cfg, tmp_path / "run", progress=False).fit()
    assert s["steps"] == 2 and s["episodes"] == len(LENGTHS) and np.isfinite(s["loss_last"])
