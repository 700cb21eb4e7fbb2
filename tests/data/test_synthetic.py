"""Tests of the embedded procedural video dataset (videojepa.data.synthetic)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videojepa.data.synthetic import (
    DEFAULT_CLASSES, SyntheticVideoConfig, SyntheticVideoDataset, render_scene, reversed_partner,
    save_preview,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Clips are small: intra-op threads only add overhead (and stall on a busy shared runner)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(**kw) -> SyntheticVideoDataset:
    return SyntheticVideoDataset(SyntheticVideoConfig(**{"height": 32, "width": 32, **kw}))


# ----------------------------------------------------------------------------- basics
def test_deterministic_per_seed_and_index():
    a, b = small(), small()
    torch.testing.assert_close(a[5]["clip"], b[5]["clip"], rtol=0, atol=0)
    assert a[5]["label"] == b[5]["label"] and a[5]["index"] == 5
    assert not torch.equal(a[5]["clip"], a[6]["clip"])
    assert not torch.equal(a[5]["clip"], small(seed=1)[5]["clip"])


def test_same_items_in_dataloader_workers():
    ds = small(num_frames=4, num_samples=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    got = torch.cat([batch["clip"] for batch in loader])
    torch.testing.assert_close(got, torch.stack([ds[i]["clip"] for i in range(8)]), rtol=0, atol=0)


@pytest.mark.parametrize("kw", [{}, {"height": 48, "width": 80}, {"num_frames": 8, "height": 32}])
def test_shape_dtype_range(kw):
    ds = SyntheticVideoDataset(SyntheticVideoConfig(**kw))
    cfg = ds.cfg
    for i in (0, 1, 2):
        item = ds[i]
        clip = item["clip"]
        assert clip.shape == (3, cfg.num_frames, cfg.height, cfg.width) and clip.dtype == torch.float32
        assert 0.0 <= clip.min() and clip.max() <= 1.0 and clip.std() > 0.05
        assert 0 <= item["label"] < ds.num_classes == len(ds.class_names) == 14
        assert item["index"] == i


def test_index_range():
    ds = small(num_samples=10)
    assert len(ds) == 10
    assert ds[-1]["index"] == 9
    torch.testing.assert_close(ds[-1]["clip"], ds[9]["clip"], rtol=0, atol=0)
    for bad in (10, -11, 10**9):
        with pytest.raises(IndexError):
            ds[bad]


@pytest.mark.parametrize("field,value", [
    ("num_frames", 1), ("height", 4), ("width", 0), ("num_samples", 0), ("seed", 1.5),
    ("classes", ("move_left",)), ("classes", ("move_left", "nope")),
    ("classes", ("grow", "grow")), ("classes", "grow"), ("num_distractors", -1),
    ("noise", -0.1), ("noise", math.nan), ("num_frames", True),
])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticVideoConfig(**{field: value})


def test_noise_is_additive_with_the_configured_std():
    clean, noisy = small(noise=0.0)[3]["clip"], small(noise=0.03)[3]["clip"]
    inside = (clean > 0.1) & (clean < 0.9)  # away from the clamp
    assert 0.027 < (noisy - clean)[inside].std() < 0.033


# ----------------------------------------------------------------------------- labels
def test_labels_match_items_and_are_balanced():
    ds = small(num_frames=4, noise=0.0)
    labels = ds.labels(25)
    assert labels.dtype == torch.int64 and labels.shape == (25,)
    assert labels.tolist() == [ds[i]["label"] for i in range(25)] == [ds.label(i) for i in range(25)]
    many = ds.labels(2000)
    assert torch.equal(many[:25], labels)
    counts = torch.bincount(many, minlength=ds.num_classes).float()
    assert counts.min() >= 0.5 * counts.mean() and counts.max() <= 1.5 * counts.mean()
    assert not torch.equal(many, torch.arange(2000) % ds.num_classes)
    assert len(ds.labels()) == len(ds) and len(ds.labels(0)) == 0
    with pytest.raises(ValueError):
        ds.labels(len(ds) + 1)


def test_classes_come_in_reversed_pairs():
    for name in DEFAULT_CLASSES:
        assert reversed_partner(name) in DEFAULT_CLASSES
        assert reversed_partner(reversed_partner(name)) == name != reversed_partner(name)


def test_subset_of_classes():
    ds = small(classes=("fade_out", "move_up", "grow"), num_frames=4)
    assert ds.class_names == ("fade_out", "move_up", "grow") and ds.num_classes == 3
    assert set(ds.labels(200).tolist()) == {0, 1, 2}
    assert ds.scene(0).class_name == ds.class_names[ds[0]["label"]]


def test_motion_is_as_labelled():
    ds = small()
    labels = ds.labels(300).tolist()
    for c, name in enumerate(ds.class_names):
        scene = ds.scene(labels.index(c))
        main = scene.objects[-scene.num_main:]
        o = main[0]
        heading = np.unwrap(np.arctan2(np.gradient(o.cy), np.gradient(o.cx)))  # orbits: it turns
        gap = np.hypot(main[0].cx - main[-1].cx, main[0].cy - main[-1].cy)
        track = {"move_right": o.cx, "move_left": -o.cx, "move_down": o.cy, "move_up": -o.cy,
                 "rotate_cw": o.angle, "rotate_ccw": -o.angle, "grow": o.radius, "shrink": -o.radius,
                 "fade_in": o.opacity, "fade_out": -o.opacity, "approach": -gap, "separate": gap,
                 "orbit_cw": heading, "orbit_ccw": -heading}[name]
        assert np.all(np.diff(track) > 0), name  # y points down: increasing angle = clockwise


def test_reversed_scene_renders_the_reversed_clip():
    ds = small(noise=0.0)
    scene = ds.scene(7)
    forward = render_scene(scene, 32, 32)
    backward = render_scene(scene.reversed(), 32, 32)
    torch.testing.assert_close(backward, forward.flip(1), rtol=0, atol=0)


# ----------------------------------------------------------------------------- time matters
def motion_features(clips: torch.Tensor) -> torch.Tensor:
    """Order-aware features of (N, 3, T, H, W) clips from temporal differences: global
    brightness-constancy translation (x, y), divergence about the motion centroid, and the trend
    of the edge energy over time."""
    It = clips[:, :, 1:] - clips[:, :, :-1]
    mid = 0.5 * (clips[:, :, 1:] + clips[:, :, :-1])
    Ix = (mid[..., 1:-1, 2:] - mid[..., 1:-1, :-2]) / 2
    Iy = (mid[..., 2:, 1:-1] - mid[..., :-2, 1:-1]) / 2
    It = It[..., 1:-1, 1:-1]
    n, _, t1, h, w = It.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    e = It.abs().sum((1, 2))
    cx = ((e * xs).sum((1, 2)) / e.sum((1, 2))).view(n, 1, 1, 1, 1)
    cy = ((e * ys).sum((1, 2)) / e.sum((1, 2))).view(n, 1, 1, 1, 1)

    def flow(basis):  # least-squares speed along a flow basis: It = -speed * (basis . grad I)
        return -(It * basis).sum((1, 2, 3, 4)) / ((basis * basis).sum((1, 2, 3, 4)) + 1e-6)

    energy = (Ix * Ix + Iy * Iy).sum((1, 3, 4))
    trend = (energy / energy.mean(1, keepdim=True) * torch.linspace(-1, 1, t1)).mean(1)
    return torch.stack([flow(Ix), flow(Iy), flow((xs - cx) * Ix + (ys - cy) * Iy), trend], 1)


def ridge_accuracy(features: torch.Tensor, y: torch.Tensor, n_train: int, lam: float) -> float:
    """Held-out accuracy of a (dual-form) ridge classifier on standardised features."""
    f = features.double()
    mu, sd = f[:n_train].mean(0), f[:n_train].std(0) + 1e-8
    f = (f - mu) / sd
    k = f @ f[:n_train].T  # (N, n_train) linear kernel
    target = y[:n_train].double() * 2 - 1
    coef = torch.linalg.solve(k[:n_train] + lam * n_train * torch.eye(n_train, dtype=f.dtype),
                              target - target.mean())
    pred = (k[n_train:] @ coef + target.mean()) > 0
    return (pred.long() == y[n_train:]).double().mean().item()


@pytest.mark.parametrize("pair", [("move_right", "move_left"), ("grow", "shrink")])
def test_time_is_needed_to_separate_a_reversed_pair(pair):
    n, n_train, T = 240, 160, 16
    ds = SyntheticVideoDataset(SyntheticVideoConfig(num_frames=T, height=32, width=32, classes=pair))
    items = [ds[i] for i in range(n)]
    clips = torch.stack([it["clip"] for it in items])
    y = torch.tensor([it["label"] for it in items])
    assert 0.35 < y.float().mean() < 0.65
    g = torch.Generator().manual_seed(0)
    order = torch.stack([torch.randperm(T, generator=g) for _ in range(n)]).view(n, 1, T, 1, 1)
    shuffled = torch.gather(clips, 2, order.expand_as(clips))  # same frames, order destroyed

    aware = ridge_accuracy(motion_features(clips), y, n_train, lam=1e-3)
    frames_shuffled = ridge_accuracy(motion_features(shuffled), y, n_train, lam=1e-3)
    time_averaged = ridge_accuracy(clips.mean(2).flatten(1), y, n_train, lam=1e-1)
    print(f"{pair}: order-aware {aware:.2f}, shuffled frames {frames_shuffled:.2f}, "
          f"time-averaged pixels {time_averaged:.2f}")
    assert aware >= 0.85
    assert frames_shuffled <= 0.7 and time_averaged <= 0.7
    assert aware - max(frames_shuffled, time_averaged) >= 0.25


# ----------------------------------------------------------------------------- preview
def test_save_preview(tmp_path):
    ds = small(num_frames=8)
    path = save_preview(ds, tmp_path / "preview.png", n=3, num_frames=4)
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
