import csv

import pytest
import torch

from videojepa.config import load_config
from videojepa.masks.collator import MaskGenerator
from videojepa.training.jepa import JEPA
from videojepa.training.losses import feature_stats, jepa_loss, variance_reg


def _model():
    cfg, _ = load_config("cpu_test")
    torch.manual_seed(0)
    return cfg, JEPA(cfg.encoder_config(), cfg.predictor_config())


def test_loss_is_mean_l1_over_masks_and_targets_get_no_gradient():
    cfg, m = _model()
    x = torch.randn(2, 3, 4, 16, 16)
    masks = MaskGenerator(cfg.mask.build(), (2, 4, 4), 0).sample(0, 2)
    out = m(x, masks)
    manual = torch.stack([(p - t).abs().mean() for p, t in zip(out.preds, out.targets)]).mean()
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert m.encoder.blocks[0].attn.qkv.weight.grad is not None
    assert m.predictor.mask_tokens[0].grad is not None and m.predictor.mask_tokens[1].grad is not None


def test_targets_are_layer_normed_without_affine():
    cfg, m = _model()
    x = torch.randn(2, 3, 4, 16, 16)
    masks = MaskGenerator(cfg.mask.build(), (2, 4, 4), 0).sample(0, 2)
    t = m(x, masks).targets[0]
    torch.testing.assert_close(t.mean(-1), torch.zeros(t.shape[:2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.var(-1, unbiased=False), torch.ones(t.shape[:2]), atol=1e-3, rtol=0)


def test_bf16_autocast_on_cpu_runs():
    cfg, m = _model()
    x = torch.randn(2, 3, 4, 16, 16)
    masks = MaskGenerator(cfg.mask.build(), (2, 4, 4), 0).sample(0, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, masks)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_loss_exp_and_reg():
    p, t = torch.full((1, 2, 3), 2.0), torch.zeros(1, 2, 3)
    assert jepa_loss(p, t, 1.0).item() == 2.0
    assert jepa_loss(p, t, 2.0).item() == 2.0  # 4 / 2
    assert variance_reg([torch.zeros(2, 5, 3)]).item() > 0.98  # constant predictions are penalised


def test_feature_stats_detect_collapse():
    g = torch.Generator().manual_seed(0)
    healthy = feature_stats(torch.randn(4, 16, 8, generator=g))
    collapsed = feature_stats(torch.ones(4, 16, 8))
    assert healthy["std"] > 0.8 and healthy["erank"] > 6
    assert collapsed["std"] < 1e-6 and collapsed["token_std"] < 1e-6


def test_token_spread_penalty():
    from videojepa.training.losses import token_spread_penalty

    g = torch.Generator().manual_seed(0)
    assert token_spread_penalty(torch.randn(2, 16, 8, generator=g), 0.5).item() == 0.0  # spread ~1 > 0.5
    same = torch.randn(2, 1, 8, generator=g).expand(2, 16, 8)  # every token of a clip identical
    assert token_spread_penalty(same, 0.5).item() > 0.45
    cfg, m = _model()
    x = torch.randn(2, 3, 4, 16, 16)
    masks = MaskGenerator(cfg.mask.build(), (2, 4, 4), 0).sample(0, 2)
    out = m(x, masks, token_var_coeff=1.0, token_var_target=5.0)  # unreachable target: the term is active
    assert out.loss.item() > out.loss_jepa.item()


def test_clip_target_norm_removes_what_the_clip_shares():
    from videojepa.config import ConfigError
    from videojepa.masks.ops import apply_masks
    from videojepa.training.losses import normalize_targets, standardize_per_clip

    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 10, 6, generator=g) + 5 * torch.randn(3, 1, 6, generator=g)  # a strong clip-global part
    z = standardize_per_clip(h)
    torch.testing.assert_close(z.mean(1), torch.zeros(3, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(1, unbiased=False), torch.ones(3, 6), atol=1e-3, rtol=0)
    torch.testing.assert_close(standardize_per_clip(h + 7.0), z, atol=1e-4, rtol=0)  # blind to clip offsets
    cfg, m = _model()
    x = torch.randn(2, 3, 4, 16, 16)
    masks = MaskGenerator(cfg.mask.build(), (2, 4, 4), 0).sample(0, 2)
    t = m(x, masks, target_norm="clip").targets[0]
    with torch.no_grad():
        full = standardize_per_clip(normalize_targets(m.target_encoder(x)))
    torch.testing.assert_close(t, apply_masks(full, masks[0][1]))  # standardised over the whole clip, then gathered
    with pytest.raises(ConfigError, match=r"loss\.target_norm .*'batch'"):
        load_config("cpu_test", ["loss.target_norm=batch"])


def test_sigreg_scores_gaussian_low_and_collapse_high():
    from videojepa.training.losses import random_directions, sigreg

    g = torch.Generator().manual_seed(0)
    d = random_directions(16, 32, g)
    torch.testing.assert_close(d.norm(dim=0), torch.ones(32))
    gauss = sigreg(torch.randn(2000, 16, generator=g), d).item()
    assert gauss < 0.01
    assert sigreg(torch.zeros(2000, 16), d).item() > 0.3  # every sample the same point
    assert sigreg(5 * torch.randn(2000, 16, generator=g), d).item() > 0.3  # far from unit scale
    cfg, m = _model()
    x = torch.randn(2, 3, 4, 16, 16)
    masks = MaskGenerator(cfg.mask.build(), (2, 4, 4), 0).sample(0, 2)
    out = m(x, masks, sigreg_coeff=1.0, sigreg_directions=random_directions(cfg.encoder_config().embed_dim, 8, g))
    assert out.loss.item() > out.loss_jepa.item() and out.loss_reg.item() > 0
    out.loss.backward()
    assert m.encoder.blocks[0].attn.qkv.weight.grad is not None


def test_trainer_runs_with_sigreg_and_clip_targets(tmp_path):
    from videojepa.training.trainer import Pretrainer

    cfg, _ = load_config("cpu_test", ["train.max_steps=2", "loss.sigreg_coeff=0.5", "loss.sigreg_slices=4",
                                      "loss.target_norm=clip"])
    summary = Pretrainer(cfg, tmp_path, progress=False, resume="none").fit()
    assert summary["steps"] == 2 and summary["loss_last"] == summary["loss_last"]  # finite, not NaN
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert rows and all(float(r["loss_reg"]) > 0 for r in rows)  # the regulariser reached the loss


def test_sigreg_is_computed_in_float32_under_bf16_autocast():
    from videojepa.training.losses import random_directions, sigreg

    g = torch.Generator().manual_seed(0)
    z, d = torch.randn(500, 16, generator=g), random_directions(16, 8, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = sigreg(z, d)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, sigreg(z, d))
