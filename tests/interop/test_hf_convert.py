"""`videojepa convert` between HuggingFace transformers folders, our format and the official files."""
import json

import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

import videojepa
from videojepa.cli import main
from videojepa.masks.ops import apply_masks

TOL = 1e-5
X = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(0))  # B C T H W; 64 tokens


def _hf_config(**kw):
    return transformers.VJEPA2Config(
        patch_size=4, crop_size=16, frames_per_clip=8, tubelet_size=2, hidden_size=64, num_attention_heads=4,
        num_hidden_layers=2, mlp_ratio=4.0, pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=2,
        pred_num_mask_tokens=10, **kw)


def _randomize(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def _hf_outputs(model, ctx, tgt):
    with torch.no_grad():
        out = model(pixel_values_videos=X.permute(0, 2, 1, 3, 4), context_mask=[ctx], target_mask=[tgt])
    return out.last_hidden_state, out.predictor_output.last_hidden_state


def _masks():
    g = torch.Generator().manual_seed(3)
    perm = torch.stack([torch.randperm(64, generator=g) for _ in range(2)])
    return perm[:, :20].sort(1).values, perm[:, 20:].sort(1).values


def test_hf_round_trip_through_our_format(tmp_path):
    hf = _randomize(transformers.VJEPA2Model(_hf_config()))
    hf.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf"]) == 0

    # ours == HF, encoder and predictor
    ctx, tgt = _masks()
    ref_enc, ref_pred = _hf_outputs(hf, ctx, tgt)
    enc = videojepa.load(tmp_path / "ours")  # one encoder in an HF source: it is the default part
    pred = videojepa.load(tmp_path / "ours", part="predictor")
    with torch.no_grad():
        full = enc(X)
        assert (full - ref_enc).abs().max().item() <= TOL
        assert (pred(apply_masks(full, ctx), ctx, tgt, mask_index=1) - ref_pred).abs().max().item() <= TOL
    assert enc.pretrained_cfg["format"] == "videojepa"

    # back in HF: identical weights, loads with AutoModel without missing or unexpected keys
    a, b = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    back, info = transformers.AutoModel.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert type(back).__name__ == "VJEPA2Model"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    out_enc, out_pred = _hf_outputs(back.eval(), ctx, tgt)
    assert (out_enc - ref_enc).abs().max().item() <= TOL and (out_pred - ref_pred).abs().max().item() <= TOL


def test_hf_video_classifier_head_both_ways(tmp_path):
    cfg = _hf_config(num_labels=5, id2label={i: f"class {i}" for i in range(5)},
                     label2id={f"class {i}": i for i in range(5)}, num_pooler_layers=2)
    hf = _randomize(transformers.VJEPA2ForVideoClassification(cfg))
    hf.save_pretrained(tmp_path / "hf")
    with torch.no_grad():
        ref = hf(pixel_values_videos=X.permute(0, 2, 1, 3, 4)).logits
        enc = videojepa.load(tmp_path / "hf", part="encoder")
        probe = videojepa.load(tmp_path / "hf", part="probe")
        assert (probe(enc(X)) - ref).abs().max().item() <= TOL
    assert probe.cfg.depth == 3 and probe.cfg.self_attn_position == "before" and probe.cfg.num_heads == 4
    assert probe.pretrained_cfg["labels"] == [f"class {i}" for i in range(5)]

    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf"]) == 0
    a, b = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    back = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "back").eval()
    assert back.config.id2label[3] == "class 3"
    with torch.no_grad():
        assert (back(pixel_values_videos=X.permute(0, 2, 1, 3, 4)).logits - ref).abs().max().item() <= TOL


def test_official_vjepa2_file_to_hf(tmp_path, layouts):
    _, enc, tgt, pred = layouts.vjepa2_models()
    path = tmp_path / "tiny.pt"
    torch.save(layouts.vjepa2_file(enc, tgt, pred, 32, 96), path)
    cfg = json.dumps({"encoder": {"num_heads": 4, "img_size": 16, "num_frames": 4}})
    assert main(["convert", str(path), str(tmp_path / "hf"), "--to", "hf", "--config", cfg]) == 0
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    x = X[:, :, :4]
    with torch.no_grad():
        ref = tgt(x)  # the default encoder is the one the probes were trained on: target_encoder
        out = hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
    assert (out - ref).abs().max().item() <= TOL
    assert main(["convert", str(path), str(tmp_path / "hf2"), "--to", "hf", "--encoder", "encoder", "--config", cfg]) == 0
    hf2 = transformers.AutoModel.from_pretrained(tmp_path / "hf2").eval()
    with torch.no_grad():
        out = hf2(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
        assert (out - enc(x)).abs().max().item() <= TOL


def test_official_probe_with_base_to_hf_classifier(tmp_path, layouts, capsys):
    _, enc, tgt, pred = layouts.vjepa2_models()
    base = tmp_path / "tiny.pt"
    torch.save(layouts.vjepa2_file(enc, tgt, pred, 32, 96), base)
    probe = layouts.vjepa2_probe(depth=4)
    ppath = tmp_path / "probe.pt"
    torch.save({"classifiers": [layouts.prefixed(probe.state_dict(), "module.")]}, ppath)
    cfg = json.dumps({"encoder": {"num_heads": 4, "img_size": 16, "num_frames": 4}, "probe": {"num_heads": 4}})
    assert main(["convert", str(ppath), str(tmp_path / "hf"), "--to", "hf", "--base", str(base), "--config", cfg]) == 0
    # official probes use LayerNorm eps 1e-5; HF's pooler uses the encoder's (1e-6): the converter says so
    assert "eps" in capsys.readouterr().err
    hf = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    x = X[:, :, :4]
    with torch.no_grad():
        ref = probe(tgt(x))
        out = hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4)).logits
    assert (out - ref).abs().max().item() <= 1e-4


def test_vjepa1_cannot_become_hf(tmp_path, layouts, capsys):
    _, enc, tgt, pred = layouts.vjepa1_models()
    path = tmp_path / "tiny.pth.tar"
    torch.save(layouts.vjepa1_file(enc, tgt, pred), path)
    assert main(["convert", str(path), str(tmp_path / "hf"), "--to", "hf", "--config", '{"num_heads": 4}']) == 1
    assert "sin-cos" in capsys.readouterr().err
    assert main(["convert", str(path), str(tmp_path / "ours"), "--config", '{"num_heads": 4}',
                 "--parts", "target_encoder"]) == 0
    m = videojepa.load(tmp_path / "ours")
    assert m.pretrained_cfg["parts"] == ["target_encoder"]
    with torch.no_grad():
        assert torch.equal(m(X[:, :, :4]), tgt(X[:, :, :4]))
