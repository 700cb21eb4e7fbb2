"""Tiny models written in the exact key layouts of the official files (REFERENCE §4.5, §6.4, §8).

Tests get these helpers through the ``layouts`` fixture.
"""
from __future__ import annotations

import sys

import pytest
import torch

from videojepa.models.ac_predictor import ACPredictor, ACPredictorConfig
from videojepa.models.pooler import AttentiveClassifier, ProbeConfig
from videojepa.models.predictor import Predictor, PredictorConfig
from videojepa.models.vit import EncoderConfig, VisionTransformer

TRAINING_STATE = {"opt": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}, "scaler": None,
                  "epoch": 300, "loss": 0.47, "batch_size": 24, "world_size": 128, "lr": 6.25e-4}


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values everywhere (norms and mask tokens too), so nothing matches by being zero or one."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def prefixed(sd: dict, prefix: str = "module.backbone.") -> dict:
    return {prefix + k: v.clone() for k, v in sd.items()}


def vjepa1_models(seed: int = 0):
    """V-JEPA 1 form: sin-cos positions (uniform_power), predictor heads = encoder heads, 2 mask tokens."""
    ec = EncoderConfig(embed_dim=64, depth=2, num_heads=4, patch_size=4, tubelet_size=2, num_frames=4, img_size=16,
                       pos_embed="sincos", uniform_power=True)
    pc = PredictorConfig(embed_dim=32, depth=2, num_heads=4, num_mask_tokens=2, pos_embed="sincos",
                         sort_by_position=False)
    enc, tgt = randomize(VisionTransformer(ec), seed), randomize(VisionTransformer(ec), seed + 1)
    pred = randomize(Predictor(pc, ec.embed_dim, ec.grid, "sincos"), seed + 2)
    return ec, enc, tgt, pred


def vjepa2_models(seed: int = 0):
    """V-JEPA 2 form: RoPE (legacy tiling), predictor 12 heads, 10 mask tokens, sorted by position."""
    ec = EncoderConfig(embed_dim=64, depth=2, num_heads=4, patch_size=4, tubelet_size=2, num_frames=4, img_size=16,
                       pos_embed="rope", rope_variant="legacy")
    pc = PredictorConfig(embed_dim=96, depth=2, num_heads=12, num_mask_tokens=10, pos_embed="rope",
                         rope_variant="legacy", sort_by_position=True)
    enc, tgt = randomize(VisionTransformer(ec), seed), randomize(VisionTransformer(ec), seed + 1)
    pred = randomize(Predictor(pc, ec.embed_dim, ec.grid, "rope", "legacy"), seed + 2)
    return ec, enc, tgt, pred


def vjepa2_ac_models(seed: int = 0):
    """V-JEPA 2-AC form: the V-JEPA 2 encoders and an action-conditioned predictor (16 heads, 7-d actions/states)."""
    ec, enc, tgt, _ = vjepa2_models(seed)
    ac = ACPredictorConfig(embed_dim=32, depth=2, num_heads=16)
    pred = randomize(ACPredictor(ac, ec.embed_dim, ec.grid[1:]), seed + 3)
    return ec, enc, tgt, pred


def vjepa2_ac_file(enc, tgt, pred) -> dict:
    """As released: encoders under ``module.backbone.``, the predictor under ``module.`` only."""
    return {"encoder": prefixed(enc.state_dict()), "predictor": prefixed(pred.state_dict(), "module."),
            "target_encoder": prefixed(tgt.state_dict()), **TRAINING_STATE}


def vjepa1_file(enc, tgt, pred) -> dict:
    return {"encoder": prefixed(enc.state_dict()), "predictor": prefixed(pred.state_dict()),
            "target_encoder": prefixed(tgt.state_dict()), **TRAINING_STATE}


def vjepa2_file(enc, tgt, pred, n_tokens: int, d_pred: int, with_pos_embed: bool = True) -> dict:
    """As released: the RoPE state dicts still carry (unused) pos_embed / predictor_pos_embed tables."""
    e, t, p = (prefixed(m.state_dict()) for m in (enc, tgt, pred))
    if with_pos_embed:
        d = enc.cfg.embed_dim
        for sd in (e, t):
            sd["module.backbone.pos_embed"] = torch.zeros(1, n_tokens, d)
        p["module.backbone.predictor_pos_embed"] = torch.zeros(1, n_tokens, d_pred)
    return {"encoder": e, "predictor": p, "target_encoder": t, **TRAINING_STATE}


def vjepa1_probe(depth: int = 1, seed: int = 5) -> AttentiveClassifier:
    return randomize(AttentiveClassifier(ProbeConfig.vjepa1(64, 4, 7, depth=depth)), seed)


def vjepa2_probe(depth: int = 4, seed: int = 6) -> AttentiveClassifier:
    return randomize(AttentiveClassifier(ProbeConfig(embed_dim=64, num_heads=4, depth=depth, num_classes=7)), seed)


def masks(n: int, b: int, k_ctx: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    return perm[:, :k_ctx].sort(1).values, perm[:, k_ctx:].sort(1).values


@pytest.fixture
def layouts():
    return sys.modules[__name__]
