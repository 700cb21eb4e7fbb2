"""videojepa.viz.features / clips / attention: token grids, deterministic PCA colours, probe attention."""
import numpy as np
import pytest
import torch

import videojepa
from videojepa.viz import features as vf


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _export(model, dst):
    from videojepa.interop.weights import Weights, write_videojepa

    w = Weights(source="test", format="videojepa", encoder=model.cfg,
                states={"encoder": {k: v.detach() for k, v in model.state_dict().items()}})
    return str(write_videojepa(w, dst, parts=["encoder"]))


def test_token_grid_matches_the_encoder(enc):
    clip = torch.randn(3, 4, 16, 16)
    g = vf.token_grid(enc, clip)
    assert g.shape == (2, 4, 4, 32)
    with torch.no_grad():
        ref = enc(clip[None])[0]
    assert torch.allclose(g.reshape(-1, 32), ref, atol=1e-6)
    assert g[1, 2, 3].allclose(ref[1 * 16 + 2 * 4 + 3], atol=1e-6)  # time-major [t][h][w]
    assert vf.token_grid(enc, torch.randn(2, 3, 4, 16, 16)).shape == (2, 2, 4, 4, 32)
    enc.train()
    vf.token_grid(enc, clip)
    assert enc.training  # mode restored


def test_pca_is_deterministic_and_sign_invariant():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g) @ torch.randn(16, 16, generator=g) + 3.0
    a = vf.pca_rgb(x, vf.fit_pca(x))
    b = vf.pca_rgb(x.clone(), vf.fit_pca(x.clone()))
    assert a.dtype == np.uint8 and a.shape == (200, 3)
    assert a.tobytes() == b.tobytes()
    # a global sign flip of the features flips every projection: the sign rule undoes it
    c = vf.pca_rgb(-x, vf.fit_pca(-x))
    assert c.tobytes() == a.tobytes()
    # the sign rule: the token with the largest |projection| on each component projects positively
    p = vf.fit_pca(x)
    s = p.project(x)
    assert (s[np.abs(s).argmax(axis=0), range(3)] > 0).all()
    # percentile scaling: about 1% of the tokens clip at each end of every channel
    assert ((a == 0).mean(axis=0) <= 0.03).all() and ((a == 255).mean(axis=0) <= 0.03).all()
    assert (a.min(axis=0) == 0).all() and (a.max(axis=0) == 255).all()
    assert np.allclose(p.components @ p.components.T, np.eye(3), atol=1e-9)
    assert p.explained[0] >= p.explained[1] >= p.explained[2] > 0


def test_pca_of_degenerate_tokens():
    x = torch.ones(5, 8)
    p = vf.fit_pca(x)  # no variation at all: zero components, every channel 0
    assert (vf.pca_rgb(x, p) == 0).all()
    one = vf.fit_pca(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), k=3)
    assert one.components.shape == (3, 2) and not one.components[1:].any()
    with pytest.raises(ValueError, match="width"):
        vf.pca_rgb(torch.zeros(2, 3), p)


def test_feature_frames_and_reference_pca(enc):
    from videojepa.viz.clips import read_clip, read_clips

    clip, frames = read_clip("synthetic:val:3", num_frames=4, crop_size=16)
    assert clip.shape == (3, 4, 16, 16) and frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    out = vf.feature_frames(enc, clip, frames)
    assert out.shape == (4, 16, 2 * 16 + 2, 3)
    assert np.array_equal(out[:, :, :16], frames) and (out[:, :, 16:18] == 255).all()
    maps = out[:, :, 18:]
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[2], maps[3])  # a tubelet colours both frames
    assert not np.array_equal(maps[0], maps[2])
    assert np.array_equal(maps[0, :4, :4], np.broadcast_to(maps[0, 0, 0], (4, 4, 3)))  # one token, one patch
    # a PCA fitted on a reference set colours every clip the same way
    ref = read_clips("synthetic:train:3", num_frames=4, crop_size=16)
    pca = vf.fit_pca(torch.cat([vf.token_grid(enc, c).reshape(-1, 32) for c in ref]))
    a = vf.feature_frames(enc, clip, frames, pca=pca)
    assert np.array_equal(a, vf.feature_frames(enc, clip, frames, pca=pca)) and not np.array_equal(a, out)


def test_read_clip_errors(tmp_path):
    from videojepa.viz.clips import VizError, read_clip

    with pytest.raises(VizError, match="missing.mp4"):
        read_clip(str(tmp_path / "missing.mp4"), num_frames=4, crop_size=16)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VizError, match="bad.mp4"):
        read_clip(str(bad), num_frames=4, crop_size=16)
    with pytest.raises(VizError, match="out of range"):
        read_clip("synthetic:val:2", num_frames=4, crop_size=16, item=5)


def test_clip_defaults(enc, tmp_path):
    from videojepa.viz.clips import clip_defaults

    d = clip_defaults(enc)  # no pretrained_cfg: the config, ImageNet statistics
    assert d["num_frames"] == 4 and d["crop_size"] == (16, 16) and d["frame_step"] == 4
    assert d["mean"] == pytest.approx((0.485, 0.456, 0.406))
    loaded = videojepa.load(_export(enc, tmp_path / "e"))
    assert clip_defaults(loaded)["num_frames"] == 4 and clip_defaults(loaded)["crop_size"] == (16, 16)
    loaded.pretrained_cfg["preprocessing"] = {"num_frames": 8, "crop_size": 32, "fps": 4.0, "mean": [0.5] * 3,
                                              "std": [0.5] * 3}
    d = clip_defaults(loaded)
    assert (d["num_frames"], d["crop_size"], d["fps"], d["frame_step"], d["std"]) == (8, (32, 32), 4.0, None, (0.5,) * 3)


def test_show_features_nano_16_frames(tmp_path):
    """The default demo size: the nano encoder on a 16-frame 64 x 64 synthetic clip, well under a minute."""
    from PIL import Image

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        nano = videojepa.create_model("vit_nano_cpu")
    ckpt = _export(nano, tmp_path / "nano")
    r = vf.show_features("synthetic:val", ckpt, tmp_path / "out", formats=("gif",))
    assert r["frames"] == 16 and r["grid"] == [8, 8, 8] and r["seconds"] < 30
    with Image.open(r["gif"]) as im:
        assert im.n_frames == 16
    assert r["png"].is_file() and "mp4" not in r


# ----------------------------------------------------------------------------------------------- attention
def _probe(D=32, heads=2, depth=1, position="after", kind="attentive"):
    from videojepa.models.pooler import ProbeConfig, build_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return build_classifier(ProbeConfig(embed_dim=D, num_heads=heads, depth=depth, num_classes=3,
                                            self_attn_position=position, kind=kind)).eval()


@pytest.mark.parametrize("position,depth", [("after", 1), ("after", 2), ("before", 3)])
def test_probe_attention_reproduces_the_pooler(position, depth):
    """The recomputed weights, applied to the values, give exactly what the probe's cross-attention returns."""
    from videojepa.viz.attention import probe_attention

    probe = _probe(heads=4, depth=depth, position=position)
    with torch.no_grad():
        probe.pooler.query_tokens.normal_()  # make the attention far from uniform
    x = torch.randn(2, 10, 32)
    att = probe_attention(probe, x)
    assert att.weights.shape == (2, 10) and att.per_head.shape == (2, 4, 1, 10)
    assert torch.allclose(att.weights.sum(-1), torch.ones(2), atol=1e-6)
    pooler = probe.pooler
    xs = x
    if position == "before":
        for blk in pooler.blocks:
            xs = blk(xs)
    blk = pooler.cross_attention_block
    kx = blk.norm1(xs)
    v = pooler.cross_attention_block.xattn.kv(kx).reshape(2, 10, 2, 4, 8)[:, :, 1].transpose(1, 2)
    mine = (att.per_head @ v).transpose(1, 2).reshape(2, 1, 32)
    with torch.no_grad():
        ref = blk.xattn(pooler.query_tokens.expand(2, -1, -1), kx)
    assert torch.allclose(mine, ref, atol=1e-5)
    assert att.over_transformed == (position == "before") and (att.note is not None) == (position == "before")


def test_attention_errors():
    from videojepa.viz.attention import NoAttentionError, attention_grid, probe_attention

    with pytest.raises(NoAttentionError, match="MeanPoolClassifier"):
        probe_attention(_probe(kind="meanpool"), torch.randn(1, 4, 32))
    assert attention_grid(torch.arange(24.0), (2, 3, 4))[1, 2, 3] == 23
    with pytest.raises(ValueError, match="not one per tubelet"):
        attention_grid(torch.ones(48), (2, 3, 4))
