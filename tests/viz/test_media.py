"""videojepa.viz.media: GIF / MP4 writers read back, grids, side-by-side videos, heat-map overlays."""
import numpy as np
import pytest
import torch

from videojepa.viz import media


def _frames(T=5, H=15, W=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def test_upscale_is_nearest():
    f = _frames(2, 3, 4)
    u = media.upscale(f, 3)
    assert u.shape == (2, 9, 12, 3)
    assert np.array_equal(u[:, ::3, ::3], f) and np.array_equal(u[:, 2::3, 1::3], f)
    assert media.upscale(f, 1) is f
    with pytest.raises(ValueError):
        media.upscale(f, 0)


def test_mp4_reads_back_with_the_same_frame_count(tmp_path):
    import av

    f = _frames(7, 15, 17)  # odd sizes: padded to even
    p = media.write_mp4(f, tmp_path / "a.mp4", fps=5)
    assert p.is_file() and not list(tmp_path.glob("*.tmp*"))
    with av.open(str(p)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (18, 16)
        got = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
        assert float(s.average_rate) == pytest.approx(5)
    assert len(got) == 7
    # lossy, but recognisably the same picture (a flat frame survives almost exactly)
    flat = np.full((3, 16, 16, 3), (200, 40, 90), np.uint8)
    with av.open(str(media.write_mp4(flat, tmp_path / "flat.mp4"))) as c:
        back = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
    assert len(back) == 3 and np.abs(back[1].astype(int) - flat[1]).max() <= 6


def test_gif_frame_count_duration_and_loop(tmp_path):
    from PIL import Image

    p = media.write_gif(_frames(6), tmp_path / "a.gif", fps=4)
    with Image.open(p) as im:
        assert im.n_frames == 6 and im.info["duration"] == 250 and im.info["loop"] == 0
        im.seek(3)
        assert im.convert("RGB").size == (17, 15)


def test_write_video_both_formats(tmp_path):
    out = media.write_video(_frames(4, 8, 8), tmp_path / "sub" / "clip", fps=2)
    assert set(out) == {"gif", "mp4"}
    assert out["gif"].name == "clip.gif" and out["mp4"].name == "clip.mp4" and out["mp4"].is_file()
    with pytest.raises(ValueError, match="format"):
        media.write_video(_frames(2), tmp_path / "x", formats=("avi",))
    with pytest.raises(ValueError, match="uint8"):
        media.write_gif(_frames(2).astype(np.float32), tmp_path / "f.gif")


def test_grid_layout_and_labels(tmp_path):
    a = np.zeros((10, 12, 3), np.uint8)
    b = np.full((6, 8, 3), 100, np.uint8)
    plain = media.grid([[a, b], [b]], pad=2)
    assert plain.shape == (2 + 10 + 2 + 6 + 2, 2 + 12 + 2 + 8 + 2, 3)
    assert np.array_equal(plain[2:12, 2:14], a) and np.array_equal(plain[2:8, 16:24], b)
    assert np.array_equal(plain[14:20, 2:10], b) and (plain[20:22] == 255).all()
    lab = media.grid([[a, b], [b, a]], row_labels=["first", "second"], col_labels=["x", "y"])
    assert lab.shape[0] > plain.shape[0] + 4 and lab.shape[1] > plain.shape[1] + 10
    top = lab[: lab.shape[0] - plain.shape[0] - 2]
    assert (top < 128).any()  # the column labels are drawn in the top margin
    with pytest.raises(ValueError, match="labels"):
        media.grid([[a]], row_labels=["a", "b"])
    p = media.write_png(lab, tmp_path / "g.png")
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(p).convert("RGB")), lab)


def test_side_by_side_places_every_frame():
    a, b = _frames(3, 8, 10, 1), _frames(3, 12, 6, 2)
    v = media.side_by_side([a, b], pad=2)
    assert v.shape == (3, 2 + 12 + 2, 2 + 10 + 2 + 6 + 2, 3)
    for t in range(3):
        assert np.array_equal(v[t, 2:10, 2:12], a[t]) and np.array_equal(v[t, 2:14, 14:20], b[t])
    lab = media.side_by_side([a, b], labels=["in", "out"])
    assert lab.shape[0] == 3 and lab.shape[1] > v.shape[1]
    off = lab.shape[1] - 2 - 12
    assert np.array_equal(lab[2, off:off + 8, 2:12], a[2]) and np.array_equal(lab[2, off:off + 12, 14:20], b[2])
    with pytest.raises(ValueError, match="same number"):
        media.side_by_side([a, b[:2]])


def test_overlay_heatmap_normalises_and_spreads():
    import matplotlib

    f = np.full((4, 8, 8, 3), 50, np.uint8)
    heat = np.zeros((2, 2, 2))
    heat[1, 0, 1] = 5.0  # second tubelet (frames 2, 3), top-right cell
    o = media.overlay_heatmap(f, heat, alpha=0.5)
    assert o.shape == f.shape and o.dtype == np.uint8
    hot = np.rint(0.5 * 50 + 0.5 * np.asarray(matplotlib.colormaps["inferno"](1.0)[:3]) * 255)
    cold = np.rint(0.5 * 50 + 0.5 * np.asarray(matplotlib.colormaps["inferno"](0.0)[:3]) * 255)
    for t in (2, 3):
        assert np.array_equal(o[t, :4, 4:], np.broadcast_to(hot, (4, 4, 3)))
        assert np.array_equal(o[t, 4:, :4], np.broadcast_to(cold, (4, 4, 3)))
    assert np.array_equal(o[0], np.broadcast_to(cold, (8, 8, 3)))
    # normalised over the whole clip: scaling the heat changes nothing
    assert np.array_equal(media.overlay_heatmap(f, heat * 1e-3 + 7), o)
    b = media.overlay_heatmap(f, heat, mode="bilinear")
    assert b.shape == f.shape
    with pytest.raises(ValueError, match="divide"):
        media.overlay_heatmap(f, np.zeros((3, 2, 2)))


def test_denormalize_inverts_normalize():
    from videojepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, to_clip

    f = _frames(3, 5, 6)
    x = normalize(to_clip(f), IMAGENET_MEAN, IMAGENET_STD)
    assert np.array_equal(media.denormalize(x, IMAGENET_MEAN, IMAGENET_STD), f)
    with pytest.raises(ValueError):
        media.denormalize(torch.zeros(3, 4, 4), IMAGENET_MEAN, IMAGENET_STD)
