"""Our encoder and predictor against HuggingFace transformers' VJEPA2Model, same weights."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from videojepa.interop.hf import configs_from_hf, hf_config_kwargs, hf_to_videojepa, videojepa_to_hf
from videojepa.masks.ops import apply_masks
from videojepa.models.predictor import Predictor
from videojepa.models.vit import VisionTransformer

TOL = 1e-5


def _tiny_hf(**kw):
    cfg = transformers.VJEPA2Config(
        patch_size=4, crop_size=16, frames_per_clip=8, tubelet_size=2, hidden_size=64, num_attention_heads=4,
        num_hidden_layers=3, mlp_ratio=4.0, pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=2,
        pred_num_mask_tokens=10, **kw,
    )
    torch.manual_seed(0)
    model = transformers.VJEPA2Model(cfg).eval()
    with torch.no_grad():  # random everything, mask tokens and norms included, so nothing passes by being zero
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return cfg, model


def _ours(cfg, model):
    enc_cfg, pred_cfg = configs_from_hf(cfg)
    enc = VisionTransformer(enc_cfg).eval()
    pred = Predictor(pred_cfg, enc_cfg.embed_dim, enc_cfg.grid).eval()
    esd, psd = hf_to_videojepa(model.state_dict())
    enc.load_state_dict(esd, strict=True)
    pred.load_state_dict(psd, strict=True)
    return enc, pred


def _random_masks(n, b, k_ctx, g):
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    ctx, tgt = perm[:, :k_ctx].sort(1).values, perm[:, k_ctx:].sort(1).values
    return ctx, tgt


def test_encoder_matches_hf_full_input():
    cfg, hf = _tiny_hf()
    enc, _ = _ours(cfg, hf)
    x = torch.randn(2, 3, 8, 16, 16)
    with torch.no_grad():
        ref = hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True).last_hidden_state
        out = enc(x)
    assert out.shape == ref.shape == (2, 4 * 4 * 4, 64)
    assert (out - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("k_ctx", [5, 24, 50])
def test_predictor_matches_hf_partial_masks(k_ctx):
    cfg, hf = _tiny_hf()
    enc, pred = _ours(cfg, hf)
    x = torch.randn(3, 3, 8, 16, 16)
    ctx, tgt = _random_masks(64, 3, k_ctx, torch.Generator().manual_seed(k_ctx))
    with torch.no_grad():
        ref = hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4), context_mask=[ctx], target_mask=[tgt])
        ref_pred = ref.predictor_output.last_hidden_state
        full = enc(x)
        out = pred(apply_masks(full, ctx), ctx, tgt, mask_index=1)  # HF always uses mask token 1
    assert out.shape == ref_pred.shape == (3, 64 - k_ctx, 64)
    assert (out - ref_pred).abs().max().item() <= TOL
    # the mask token matters: another index gives another answer
    with torch.no_grad():
        other = pred(apply_masks(full, ctx), ctx, tgt, mask_index=2)
    assert (other - ref_pred).abs().max().item() > 1e-3


def test_masked_encoder_differs_from_gathered_full_encoder():
    """Training runs the encoder on visible tokens only; that is not the same as gathering the full output."""
    cfg, hf = _tiny_hf()
    enc, _ = _ours(cfg, hf)
    x = torch.randn(2, 3, 8, 16, 16)
    ctx, _ = _random_masks(64, 2, 20, torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = enc(x, masks=ctx)
        b = apply_masks(enc(x), ctx)
    assert a.shape == b.shape
    assert (a - b).abs().max() > 1e-3


def test_round_trip_keys_and_values():
    cfg, hf = _tiny_hf()
    sd = hf.state_dict()
    enc, pred = hf_to_videojepa(sd)
    back = videojepa_to_hf(enc, pred)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    assert hf_config_kwargs(*configs_from_hf(cfg))["pred_num_mask_tokens"] == 10


def test_strict_errors_name_keys():
    cfg, hf = _tiny_hf()
    sd = dict(hf.state_dict())
    del sd["encoder.layer.1.mlp.fc2.bias"]
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.mlp\.fc2\.bias"):
        hf_to_videojepa(sd)
    sd = dict(hf.state_dict())
    sd["encoder.layer.0.attention.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.attention\.extra\.weight"):
        hf_to_videojepa(sd)
