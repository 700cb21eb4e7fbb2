"""videojepa show features and videojepa classify --explain, end to end on tiny encoders and probes."""
import json

import numpy as np
import pytest
import torch

import videojepa
from videojepa.cli import main


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _export(model, dst) -> str:
    from videojepa.interop.weights import Weights, write_videojepa

    w = Weights(source="test", format="videojepa", encoder=model.cfg,
                states={"encoder": {k: v.detach() for k, v in model.state_dict().items()}})
    return str(write_videojepa(w, dst, parts=["encoder"]))


@pytest.fixture(scope="module")
def enc16(tmp_path_factory):
    """A tiny encoder for 16-frame 64 x 64 clips (8 x 8 x 8 tokens), exported."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = videojepa.create_model("vit_test", num_frames=16, img_size=(64, 64), patch_size=8)
    return _export(m, tmp_path_factory.mktemp("enc16"))


@pytest.fixture(scope="module")
def enc4(tmp_path_factory):
    """vit_test (4 frames, 16 x 16, 2 x 4 x 4 tokens of width 32), exported."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = videojepa.create_model("vit_test")
    return _export(m, tmp_path_factory.mktemp("enc4"))


def _gif_frames(path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return im.n_frames


def _mp4_frames(path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# ----------------------------------------------------------------------------------------------- show features
def test_show_features_16_frames_in_16_out(enc16, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["show", "features", "synthetic:val:3", "--item", "2", "--checkpoint", enc16, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "16 frames, 8x8x8 tokens" in text and "PCA fitted on clip" in text
    for f in ("features.gif", "features.mp4", "features.png"):
        assert str(out / f) in text and (out / f).is_file()
    assert _gif_frames(out / "features.gif") == 16
    assert _mp4_frames(out / "features.mp4") == 16
    from PIL import Image

    w, h = Image.open(out / "features.png").size
    assert w > 16 * 64 and h > 2 * 64  # 16 columns of frames, input and PCA rows (upscaled)


def test_show_features_formats_and_reference(enc16, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["show", "features", "synthetic:val:2", "--checkpoint", enc16, "--out", str(out), "--format", "png",
                 "--reference", "synthetic:train:3", "--part", "encoder"]) == 0
    assert "PCA fitted on synthetic:train:3 (3 clips)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["features.png"]


def test_show_errors(enc16, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["show"]) == 2
    assert "features" in capsys.readouterr().err
    assert main(["show", "features", "synthetic:val", "--checkpoint", str(tmp_path / "missing.pt"), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing.pt" in err
    assert main(["show", "features", str(tmp_path / "nope.mp4"), "--checkpoint", enc16, "--out", out]) == 2
    assert "nope.mp4" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 10)
    assert main(["show", "features", str(bad), "--checkpoint", enc16, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.mp4" in err
    assert main(["show", "features", "synthetic:val:2", "--item", "7", "--checkpoint", enc16, "--out", out]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["show", "features", "synthetic:val:2", "--checkpoint", enc16, "--out", out, "--fps", "0"]) == 2
    assert "--fps" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- classify --explain
_CLIP = {"num_frames": 4, "crop_size": [16, 16], "frame_step": 4, "fps": None, "segments": 1, "views": 1}


def _tokens(ckpt: str, spec: str, item: int) -> torch.Tensor:
    """The tokens ``videojepa classify`` gives the probe for this item: ``[N, D]``."""
    from torch.utils.data import Subset

    from videojepa.evaluation.datasets import ClipSpec, open_dataset
    from videojepa.evaluation.features import extract_features

    clip = ClipSpec(num_frames=4, crop_size=(16, 16))
    fs = extract_features(videojepa.load(ckpt), Subset(open_dataset(spec, clip), [item]), pool="none", progress=False)
    return fs.features[0]


def _save(probe, dst, ckpt, layers=None):
    from videojepa.evaluation.probe import save_probe

    ev = {"checkpoint": ckpt, "encoder": None, "layers": layers, "pool": "none", "clip": _CLIP}
    return str(save_probe(probe, dst, class_names=["a", "b", "c"], evaluation=ev))


def _probe(**kw):
    from videojepa.models.pooler import ProbeConfig, build_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        cfg = dict(embed_dim=32, num_heads=1, depth=1, num_classes=3, self_attn_position="after")
        cfg.update(kw)
        return build_classifier(ProbeConfig(**cfg)).eval()


def _aimed_probe(tokens: torch.Tensor, j: int, strength: float = 50.0):
    """A one-head probe whose query equals (a multiple of) token j's key: it attends to token j."""
    p = _probe()
    blk = p.pooler.cross_attention_block
    with torch.no_grad():
        D = 32
        blk.xattn.q.weight.copy_(torch.eye(D))
        blk.xattn.q.bias.zero_()
        blk.xattn.kv.weight[:D].copy_(torch.eye(D))
        blk.xattn.kv.bias.zero_()
        keys = blk.norm1(tokens)  # [N, D]
        p.pooler.query_tokens.copy_(strength * keys[j][None, None])
    return p


def test_classify_explain_points_at_the_attended_token(enc4, tmp_path, capsys):
    spec, item, j = "synthetic:val:4", 1, 22  # token 22 = tubelet 1, row 1, column 2 of the 2 x 4 x 4 grid
    tok = _tokens(enc4, spec, item)
    assert tok.shape == (32, 32)
    out = tmp_path / "ex"
    # an untrained probe looks almost everywhere; the aimed one at token j
    plain = _save(_probe(), tmp_path / "plain", enc4)
    assert main(["classify", spec, "--item", str(item), "--probe", plain, "--explain", "--explain-out", str(out),
                 "--json", "--no-progress"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert float(np.load(rec["explain"]["weights"]).max()) < 0.2
    aimed = _save(_aimed_probe(tok, j), tmp_path / "aimed", enc4)
    assert main(["classify", spec, "--item", str(item), "--probe", aimed, "--explain", "--explain-out", str(out),
                 "--json", "--no-progress"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ex = rec["explain"]
    assert ex["gif"] == str(out / "explain_synthetic_val_4_item1.gif") and ex["note"] is None
    w = np.load(ex["weights"])
    assert w.shape == (2, 4, 4)
    assert w.sum() == pytest.approx(1.0, abs=1e-5)  # the weights as the probe uses them, before normalisation
    assert int(w.argmax()) == j and w.max() > 0.5 and ex["peak"] == [1, 1, 2]
    assert _gif_frames(ex["gif"]) == 4 and (out / "explain_synthetic_val_4_item1.png").is_file()
    # text output prints the paths
    assert main(["classify", spec, "--item", str(item), "--probe", aimed, "--explain", "--explain-out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "probe attention:" in text and str(out / "explain_synthetic_val_4_item1.gif") in text


def test_classify_explain_overlay_peak_in_the_picture(enc4, tmp_path, capsys):
    """The PNG's attention row is brightest in the cell of the attended token."""
    from PIL import Image

    spec, item, j = "synthetic:val:4", 0, 6  # tubelet 0, row 1, column 2
    tok = _tokens(enc4, spec, item)
    probe = _save(_aimed_probe(tok, j), tmp_path / "p", enc4)
    out = tmp_path / "ex"
    assert main(["classify", spec, "--probe", probe, "--explain", "--explain-out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    from videojepa.viz.media import overlay_heatmap

    w = np.load(out / "explain_synthetic_val_4_item0.npy")
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    o = overlay_heatmap(frames, w).astype(int).sum(-1)  # on black frames: the colour map alone
    assert np.unravel_index(int(o[0].argmax()), (16, 16)) == (4, 8)  # top-left pixel of token (row 1, column 2)
    assert o[0, 4:8, 8:12].min() > o[2].max()  # the other tubelet is cold
    assert Image.open(out / "explain_synthetic_val_4_item0.png").size[0] > 4 * 16


def test_classify_explain_vjepa2_probe_says_transformed_tokens(enc4, tmp_path, capsys):
    probe = _save(_probe(depth=2, num_heads=2, self_attn_position="before"), tmp_path / "p", enc4)
    assert main(["classify", "synthetic:val:2", "--probe", probe, "--explain", "--explain-out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    assert "transformed tokens" in capsys.readouterr().out


def test_classify_explain_refuses_what_it_cannot_show(enc4, tmp_path, capsys):
    mean = _save(_probe(kind="meanpool"), tmp_path / "mean", enc4)
    assert main(["classify", "synthetic:val:2", "--probe", mean, "--explain", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "MeanPoolClassifier" in err and "no attention" in err
    assert main(["classify", "synthetic:val:2", "--probe", mean, "--no-progress"]) == 0  # without --explain: fine
    capsys.readouterr()
    two = _save(_probe(), tmp_path / "two", enc4, layers=[0, 1])  # tokens of two layers concatenated
    assert main(["classify", "synthetic:val:2", "--probe", two, "--explain", "--explain-out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert "not one per tubelet" in capsys.readouterr().err
    assert main(["classify", "synthetic:val:2", "--probe", two, "--explain", "--segments", "2",
                 "--no-progress"]) == 2
    assert "one clip per video" in capsys.readouterr().err
