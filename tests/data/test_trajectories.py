"""Trajectory folders: the documented shard format, checks that name bad episodes, window sampling."""
import json

import numpy as np
import pytest

from videojepa.data.errors import DataError
from videojepa.data.trajectories import (Episode, TrajectoryDataset, export_videos, load_trajectories, read_shard,
                                         write_shard, write_trajectories)


def episode(t=6, name="ep", seed=0, a_dim=2, s_dim=3):
    rng = np.random.default_rng(seed)
    return Episode(rng.integers(0, 255, (t, 8, 8, 3), dtype=np.uint8), rng.normal(size=(t - 1, a_dim)).astype(np.float32),
                   rng.normal(size=(t, s_dim)).astype(np.float32), np.array([1.0, 2.0, 3.0], np.float32), name)


def test_roundtrip(tmp_path):
    eps = [episode(t, f"e{t}", t) for t in (4, 6, 9)]
    write_trajectories(tmp_path / "d", eps, shard_size=2, meta={"robot": "test"})
    idx = json.loads((tmp_path / "d" / "index.json").read_text())
    assert idx["format"] == "videojepa-trajectories/1" and [s["episodes"] for s in idx["shards"]] == [2, 1]
    ds = load_trajectories(tmp_path / "d")
    assert len(ds) == 3 and ds.meta == {"robot": "test"} and not ds.skipped
    for a, b in zip(eps, ds.episodes):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.states, b.states) and np.array_equal(a.layout, b.layout)


def test_windows_line_up(tmp_path):
    eps = [episode(t, seed=t) for t in (4, 6, 9)]
    ds = TrajectoryDataset(eps)
    rng = np.random.default_rng(0)
    b = ds.sample(32, 5, rng)
    assert b["frames"].shape == (32, 5, 8, 8, 3) and b["actions"].shape == (32, 4, 2) and b["states"].shape == (32, 5, 3)
    assert set(b["episode"].tolist()) <= {1, 2}  # the 4-frame episode is too short for a 5-frame window
    for i in range(32):
        e, s = eps[b["episode"][i]], b["start"][i]
        assert np.array_equal(b["frames"][i], e.frames[s:s + 5]) and np.array_equal(b["actions"][i], e.actions[s:s + 4])
    with pytest.raises(DataError, match="no episode has 10 frames"):
        ds.sample(2, 10, rng)


def test_bad_episodes_are_named_and_skipped(tmp_path, capsys):
    good = episode(5, seed=1)
    write_shard(tmp_path / "good.npz", [good])
    nan = episode(5, seed=2)
    nan.actions[2, 1] = np.nan
    with pytest.raises(DataError, match="non-finite action at step 2"):
        write_shard(tmp_path / "x.npz", [nan])
    # a shard written by someone else's tool, with one inconsistent and one NaN episode
    f = np.concatenate([good.frames, good.frames, nan.frames])
    np.savez(tmp_path / "bad.npz", frames=f, actions=np.concatenate([good.actions, good.actions[:3], nan.actions, np.zeros((1, 2), np.float32)]),
             states=np.concatenate([good.states] * 3), frame_offsets=np.array([0, 5, 10, 15]),
             action_offsets=np.array([0, 4, 7, 12]))
    eps, bad = read_shard(tmp_path / "bad.npz")
    assert len(eps) == 1
    assert bad[0][0].endswith("bad.npz#1") and "3 actions for 5 frames" in bad[0][1]
    assert bad[1][0].endswith("bad.npz#2") and "5 actions for 5 frames" in bad[1][1]


def test_damaged_shard_is_skipped_with_its_name(tmp_path, capsys):
    write_trajectories(tmp_path / "d", [episode(5, seed=i) for i in range(4)], shard_size=2)
    p = tmp_path / "d" / "shard-00001.npz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    ds = load_trajectories(tmp_path / "d")
    assert len(ds) == 2 and "shard-00001.npz" in ds.skipped[0][0] and "checksum mismatch" in ds.skipped[0][1]
    assert "shard-00001.npz" in capsys.readouterr().err
    (tmp_path / "d" / "shard-00000.npz").unlink()
    with pytest.raises(DataError, match="no usable episode"):
        load_trajectories(tmp_path / "d")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not a trajectory folder"):
        load_trajectories(tmp_path)
    with pytest.raises(DataError, match="disagree"):
        TrajectoryDataset([episode(5), episode(5, a_dim=3)])
    assert "uint8" in Episode(np.zeros((3, 4, 4, 3), np.float32), np.zeros((2, 2)), np.zeros((3, 1))).problem()
    assert "at least 2" in Episode(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((0, 2)), np.zeros((1, 1))).problem()


def test_export_videos_reads_back(tmp_path):
    from videojepa.data.decode import probe, read_frames

    ep = episode(6, seed=3)
    ep.frames[:] = 0
    for t in range(6):
        ep.frames[t, :, :, 0] = 40 * t
    paths = export_videos(TrajectoryDataset([ep]), tmp_path / "v")
    info = probe(paths[0])
    assert info.num_frames == 6
    fr = read_frames(paths[0], np.arange(6), info=info)
    assert np.abs(fr[:, :, :, 0].mean((1, 2)) - 40 * np.arange(6)).max() < 8
