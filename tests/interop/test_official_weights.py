"""Official V-JEPA 1 / V-JEPA 2 / V-JEPA 2-AC checkpoint layouts load strictly and reproduce their models."""
import pytest
import torch

import videojepa
from videojepa.interop.official import DROPPED_ON_PURPOSE, read_pretrain
from videojepa.interop.weights import WeightsError, read_weights
from videojepa.models.predictor import Predictor, PredictorConfig
from videojepa.models.vit import EncoderConfig, VisionTransformer
from videojepa.models.pos_embed import sincos_3d

X = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))  # 32 tokens of a (2, 4, 4) grid


def test_vjepa1_pth_tar_loads_strictly_and_matches(tmp_path, layouts):
    ec, enc, tgt, pred = layouts.vjepa1_models()
    path = tmp_path / "tiny.pth.tar"
    torch.save(layouts.vjepa1_file(enc, tgt, pred), path)
    cfg = {"encoder": {"num_heads": 4}}  # heads are not in the tensors (and 64 x 2 is no released size)
    w = read_weights(path, config=cfg)
    assert w.format == "vjepa1" and w.parts == ["encoder", "target_encoder", "predictor"]
    assert w.encoder.pos_embed == "sincos" and w.encoder.uniform_power and w.encoder.num_frames == 4
    assert w.encoder.img_size == (16, 16) and w.predictor.num_heads == 4 and not w.predictor.sort_by_position
    assert w.dropped == {}

    loaded_tgt = videojepa.load(path, config=cfg)  # default part: the target encoder
    loaded_enc = videojepa.load(path, part="encoder", config=cfg)
    loaded_pred = videojepa.load(path, part="predictor", config=cfg)
    ctx, tgt_ids = layouts.masks(32, 2, 12, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded_tgt(X), tgt(X))
        assert torch.equal(loaded_enc(X, masks=ctx), enc(X, masks=ctx))
        z = enc(X, masks=ctx)
        assert torch.equal(loaded_pred(z, ctx, tgt_ids, mask_index=1), pred(z, ctx, tgt_ids, mask_index=1))
    assert loaded_tgt.pretrained_cfg["format"] == "vjepa1"
    assert loaded_tgt.pretrained_cfg["preprocessing"]["crop_size"] == 16


def test_vjepa2_pt_drops_unused_pos_embed_on_purpose_and_matches(tmp_path, layouts):
    ec, enc, tgt, pred = layouts.vjepa2_models()
    path = tmp_path / "tiny.pt"
    torch.save(layouts.vjepa2_file(enc, tgt, pred, n_tokens=32, d_pred=96), path)
    cfg = {"encoder": {"num_heads": 4, "img_size": 16, "num_frames": 4}}
    w = read_weights(path, config=cfg)
    assert w.format == "vjepa2"
    assert (w.encoder.pos_embed, w.encoder.rope_variant) == ("rope", "legacy")
    assert w.predictor.num_heads == 12 and w.predictor.num_mask_tokens == 10 and w.predictor.sort_by_position
    assert w.dropped == {"encoder": ["module.backbone.pos_embed"], "target_encoder": ["module.backbone.pos_embed"],
                         "predictor": ["module.backbone.predictor_pos_embed"]}
    assert set(DROPPED_ON_PURPOSE) == {"pos_embed", "predictor_pos_embed"}

    ctx, tgt_ids = layouts.masks(32, 2, 9, seed=2)
    with torch.no_grad():
        assert torch.equal(videojepa.load(path, config=cfg)(X), tgt(X))
        assert torch.equal(videojepa.load(path, part="encoder", config=cfg)(X, masks=ctx), enc(X, masks=ctx))
        z = enc(X, masks=ctx)
        p = videojepa.load(path, part="predictor", config=cfg)
        for k in (0, 1, 9):  # every released mask token slot is loaded
            assert torch.equal(p(z, ctx, tgt_ids, mask_index=k), pred(z, ctx, tgt_ids, mask_index=k))


def test_vjepa2_without_pos_embed_and_default_size(tmp_path, layouts):
    _, enc, tgt, pred = layouts.vjepa2_models()
    path = tmp_path / "tiny.pt"
    torch.save(layouts.vjepa2_file(enc, tgt, pred, 32, 96, with_pos_embed=False), path)
    w = read_weights(path, config={"encoder": {"num_heads": 4}})
    assert w.dropped == {} and w.format == "vjepa2"
    assert (w.encoder.img_size, w.encoder.num_frames) == ((256, 256), 64)  # the hub's; RoPE does not store it
    assert any("construction size" in n for n in w.notes)
    with torch.no_grad():  # the encoder does not care about the construction size
        assert torch.equal(w.build("target_encoder")(X), tgt(X))


def test_vjepa2_ac_loads_its_encoders_and_its_action_conditioned_predictor(tmp_path, layouts):
    _, enc, tgt, pred = layouts.vjepa2_ac_models()
    path = tmp_path / "ac.pt"
    torch.save(layouts.vjepa2_ac_file(enc, tgt, pred), path)
    # width 32 is no released size; img_size sets the predictor's grid (16 / 4 = 4 x 4 tokens per frame)
    cfg = {"encoder": {"num_heads": 4, "img_size": 16}, "predictor": {"num_heads": 16}}
    w = read_weights(path, config=cfg)
    assert w.format == "vjepa2-ac" and w.parts == ["encoder", "target_encoder", "predictor"] and w.dropped == {}
    assert w.predictor == pred.cfg
    with torch.no_grad():
        assert torch.equal(videojepa.load(path, part="encoder", config=cfg)(X), enc(X))
        p = videojepa.load(path, part="predictor", config=cfg)
        z, a, s = torch.randn(2, 2 * 16, 64), torch.randn(2, 2, 7), torch.randn(2, 2, 7)
        assert type(p).__name__ == "ACPredictor" and torch.equal(p(z, a, s), pred(z, a, s))
    ck = layouts.vjepa2_ac_file(enc, tgt, pred)
    del ck["predictor"]["module.predictor_blocks.1.mlp.fc2.bias"]
    torch.save(ck, path)
    with pytest.raises(WeightsError, match=r"missing \(1\): module\.predictor_blocks\.1\.mlp\.fc2\.bias"):
        videojepa.load(path, part="predictor", config=cfg)
    with torch.no_grad():  # the encoders of the same file still load
        assert torch.equal(videojepa.load(path, part="encoder", config=cfg)(X), enc(X))


def test_missing_extra_and_misshaped_keys_are_all_named(tmp_path, layouts):
    _, enc, tgt, pred = layouts.vjepa1_models()
    ck = layouts.vjepa1_file(enc, tgt, pred)
    t = ck["target_encoder"]
    del t["module.backbone.blocks.1.norm2.weight"]
    t["module.backbone.blocks.0.attn.q_bias"] = torch.zeros(64)
    t["module.backbone.blocks.1.attn.proj.bias"] = torch.zeros(65)
    path = tmp_path / "broken.pth.tar"
    torch.save(ck, path)
    with pytest.raises(WeightsError) as e:
        videojepa.load(path, config={"num_heads": 4})
    msg = str(e.value)
    assert "missing (1): module.backbone.blocks.1.norm2.weight" in msg
    assert "unexpected (1): module.backbone.blocks.0.attn.q_bias" in msg
    assert "wrong shape (1): module.backbone.blocks.1.attn.proj.bias (65,) (model: (64,))" in msg
    # the untouched parts of the same file still load
    with torch.no_grad():
        assert torch.equal(videojepa.load(path, part="encoder", config={"num_heads": 4})(X), enc(X))


def test_config_is_checked_against_the_tensors(tmp_path, layouts):
    _, enc, tgt, pred = layouts.vjepa1_models()
    path = tmp_path / "tiny.pth.tar"
    torch.save(layouts.vjepa1_file(enc, tgt, pred), path)
    with pytest.raises(WeightsError, match=r"encoder\.depth: config 3, weights 2.*encoder\.num_frames: config 8"):
        read_weights(path, config={"num_heads": 4, "depth": 3, "num_frames": 8})
    with pytest.raises(WeightsError, match="num_heads"):  # not stored, not a released size: must be given
        read_weights(path)
    with pytest.raises(ValueError, match="unknown encoder config key"):
        read_weights(path, config={"num_heads": 4, "num_haeds": 4})


def test_architecture_of_released_sizes_is_read_from_shapes():
    """ViT-g/16 (V-JEPA 2, 22 heads, MLP 48/11) and ViT-L/16 at 224 (V-JEPA 1), on the meta device."""
    g = EncoderConfig(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11, img_size=256, num_frames=64)
    with torch.device("meta"):
        enc = VisionTransformer(g)
        pred = Predictor(PredictorConfig(embed_dim=384, depth=12, num_heads=12, num_mask_tokens=10), 1408, g.grid)
    sd = {"module.backbone." + k: v for k, v in enc.state_dict().items()}
    psd = {"module.backbone." + k: v for k, v in pred.state_dict().items()}
    w = read_pretrain({"encoder": sd, "target_encoder": sd, "predictor": psd}, "vitg.pt", {}, {})
    assert w.format == "vjepa2"
    e = w.encoder
    assert (e.embed_dim, e.depth, e.num_heads, e.patch_size, e.tubelet_size) == (1408, 40, 22, 16, 2)
    assert e.mlp_ratio == 48 / 11 and int(1408 * e.mlp_ratio) == 6144 and e.pos_embed == "rope"
    assert (w.predictor.num_heads, w.predictor.depth, w.predictor.num_mask_tokens) == (12, 12, 10)
    w.check("target_encoder")
    w.check("predictor")

    l = EncoderConfig(embed_dim=1024, depth=24, num_heads=16, img_size=224, num_frames=16, pos_embed="sincos")
    with torch.device("meta"):
        enc = VisionTransformer(l)
    sd = {"module.backbone." + k: v for k, v in enc.state_dict().items()}
    sd["module.backbone.pos_embed"] = sincos_3d(1024, (8, 14, 14), uniform_power=True)[None]
    w = read_pretrain({"encoder": sd, "target_encoder": sd}, "vitl16.pth.tar", {}, {})
    e = w.encoder
    assert w.format == "vjepa1" and e.num_heads == 16 and e.pos_embed == "sincos" and e.uniform_power
    assert (e.num_frames, e.img_size) == (16, (224, 224))


def test_unknown_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    torch.save({"model": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"top-level keys: model"):
        videojepa.load(path)
    with pytest.raises(WeightsError, match="not a published model name"):
        videojepa.load(tmp_path / "nope.pt")
