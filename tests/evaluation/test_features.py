"""embed() and extract_features(): shapes for pooling, layers, images, sliding windows; frozen semantics."""
import pytest
import torch

from videojepa.data.transforms import normalize
from videojepa.evaluation import ClipViews, FeatureSet, embed, extract_features, window_starts

from .conftest import tiny_synthetic


def _clips(b=2, t=4, s=16, seed=0):
    return torch.randn(b, 3, t, s, s, generator=torch.Generator().manual_seed(seed))


def test_embed_shapes_pool_layers_images(enc):
    x = _clips()
    K, D = 2 * 4 * 4, 32  # 2 tubelets x 4 x 4 patches
    assert enc.embed(x, pool="none").shape == (2, K, D)
    assert enc.embed(x, pool="mean").shape == (2, D)
    assert enc.embed(x, pool="none", layers=[0, -1]).shape == (2, 2 * K, D)  # token axis
    assert enc.embed(x, pool="mean", layers=[0, 1]).shape == (2, 2 * D)  # feature axis
    assert enc.embed(x, pool="mean", layers=-1).shape == (2, D)
    img = torch.randn(3, 3, 16, 16)
    assert enc.embed(img, pool="none").shape == (3, 16, D)  # T=1: one tubelet of the repeated frame
    assert enc.embed(img[:, :, None], pool="mean").shape == (3, D)
    assert enc.embed(_clips(t=8), pool="none").shape == (2, 2 * K, D)  # any length the model accepts
    assert enc.embed(_clips(s=24), pool="none").shape == (2, 2 * 36, D)  # and any size
    with pytest.raises(ValueError, match="out of range"):
        enc.embed(x, layers=[5])
    with pytest.raises(ValueError, match="pool"):
        enc.embed(x, pool="max")


def test_embed_is_frozen_and_matches_forward(enc):
    x = _clips()
    enc.train()
    out = enc.embed(x, pool="none")
    assert enc.training  # mode restored
    assert out.is_inference() and not out.requires_grad and out.dtype == torch.float32
    enc.eval()
    with torch.no_grad():
        ref = enc(x)
        ref_layers = enc(x, out_layers=[0, 1])
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(enc.embed(x, pool="mean"), ref.mean(1), atol=1e-6)
    assert torch.allclose(enc.embed(x, pool="none", layers=[1, 0]), torch.cat(ref_layers, 1), atol=1e-6)
    u = torch.rand(2, 3, 4, 16, 16)
    assert torch.allclose(enc.embed(u, normalize=True), enc.embed(normalize(u)), atol=1e-6)
    assert torch.allclose(enc.embed(x, batch_size=1), enc.embed(x), atol=1e-5)


def test_window_starts_cover_the_video():
    assert window_starts(8, 4, 2) == [0, 2, 4]
    assert window_starts(9, 4, 4) == [0, 4, 5]  # the last window ends at the last frame
    assert window_starts(3, 4, 2) == [0]
    with pytest.raises(ValueError):
        window_starts(8, 0, 1)


def test_embed_sliding_windows(enc):
    x = _clips(t=8)
    r = enc.embed(x, pool="mean", window=4, stride=2)
    assert r.windows.shape == (2, 3, 32) and r.video.shape == (2, 32) and r.starts.tolist() == [0, 2, 4]
    assert torch.allclose(r.windows[:, 1], enc.embed(x[:, :, 2:6]), atol=1e-5)
    assert torch.allclose(r.video, r.windows.mean(1), atol=1e-6)
    t = enc.embed(x, pool="none", window=4, stride=4)
    assert t.windows.shape == (2, 2, 32, 32) and t.video.shape == (2, 64, 32)
    short = enc.embed(_clips(t=2), pool="mean", window=4)  # padded with its last frame
    assert short.windows.shape == (2, 1, 32)


def test_extract_features_normalises_and_keeps_labels(enc):
    ds = tiny_synthetic(6)
    fs = extract_features(enc, ds, batch_size=4, progress=False)
    assert isinstance(fs, FeatureSet) and fs.features.shape == (6, 32, 32) and not fs.multiview
    assert torch.equal(fs.labels, ds.labels(6)) and fs.indices.tolist() == list(range(6))
    assert fs.class_names == list(ds.class_names)
    clip = ds[3]["clip"][None]
    assert torch.allclose(fs.features[3], enc.embed(normalize(clip), pool="none")[0], atol=1e-5)
    pooled = extract_features(enc, ds, pool="mean", layers=[0, 1], progress=False)
    assert pooled.features.shape == (6, 64) and pooled.pooled


def test_extract_features_multiview(enc):
    ds = ClipViews(tiny_synthetic(3, frames=8, width=20), num_frames=4, segments=2, views=3, crop_size=16)
    fs = extract_features(enc, ds, batch_size=2, progress=False)
    assert fs.features.shape == (3, 6, 32, 32) and (fs.segments, fs.views) == (2, 3)
    assert fs.by_view().shape == (3, 3, 64, 32)  # per view: the two segments' tokens concatenated
    assert fs.by_view("average").shape == (3, 6, 32, 32)
    x, y = fs.for_training()
    assert x.shape == (9, 64, 32) and y.tolist() == fs.labels.repeat_interleave(3).tolist()
    p = extract_features(enc, ds, batch_size=2, pool="mean", progress=False)
    assert p.features.shape == (3, 6, 32) and p.by_view().shape == (3, 3, 32)
