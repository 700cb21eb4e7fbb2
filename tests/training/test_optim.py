import torch

from videojepa.models.predictor import Predictor, PredictorConfig
from videojepa.models.registry import create_model
from videojepa.training.optim import param_groups, set_lr_wd


def test_no_decay_on_biases_norms_decay_on_mask_tokens():
    enc = create_model("vit_test")
    pred = Predictor(PredictorConfig(embed_dim=16, depth=1, num_heads=2), 32, (2, 4, 4))
    groups = param_groups(enc, pred)
    names = {id(p): n for m in (enc, pred) for n, p in m.named_parameters()}
    decayed = {names[id(p)] for g in groups if not g.get("wd_exclude") for p in g["params"]}
    excluded = {names[id(p)] for g in groups if g.get("wd_exclude") for p in g["params"]}
    assert "blocks.0.attn.qkv.weight" in decayed and "mask_tokens.0" in decayed
    assert "blocks.0.attn.qkv.bias" in excluded and "norm.weight" in excluded and "blocks.0.norm1.weight" in excluded
    assert not decayed & excluded
    opt = torch.optim.AdamW(groups)
    set_lr_wd(opt, 0.5, 0.3)
    assert all(g["lr"] == 0.5 for g in opt.param_groups)
    assert all(g["weight_decay"] == (0.0 if g.get("wd_exclude") else 0.3) for g in opt.param_groups)
