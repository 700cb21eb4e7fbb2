"""AdamW with the reference parameter groups: no weight decay on biases and other 1-D parameters."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["param_groups", "build_optimizer", "set_lr_wd"]


def param_groups(*modules: nn.Module) -> list[dict]:
    """Per module: ``{decayed params}`` and ``{biases / 1-D params, weight_decay=0, wd_exclude=True}``.

    Mask tokens (``[1, 1, D]``) are decayed, as in the reference.
    """
    groups = []
    for m in modules:
        decay, no_decay = [], []
        for name, p in m.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
        groups.append({"params": decay})
        groups.append({"params": no_decay, "weight_decay": 0.0, "wd_exclude": True})
    return [g for g in groups if g["params"]]


def build_optimizer(modules: list[nn.Module], opt_cfg, fused: bool | None = None) -> torch.optim.AdamW:
    kw = {}
    if fused is not None:
        kw["fused"] = fused
    return torch.optim.AdamW(param_groups(*modules), lr=opt_cfg.lr, betas=tuple(opt_cfg.betas), eps=opt_cfg.eps,
                             weight_decay=opt_cfg.weight_decay, **kw)


def set_lr_wd(optimizer: torch.optim.Optimizer, lr: float, wd: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
        if not g.get("wd_exclude", False):
            g["weight_decay"] = wd


def encoder_layer_id(name: str, depth: int) -> int:
    """VideoMAE's layer index of an encoder parameter: patch embedding and position tables 0, block ``i`` ->
    ``i + 1``, anything after the blocks (the final norm) ``depth + 1``."""
    if name.startswith(("patch_embed", "pos_embed", "cls_token", "mask_token")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


_NO_DECAY_NAMES = ("pos_embed", "query_tokens", "cls_token", "mask_token")


def layer_decay_param_groups(encoder: nn.Module, head: nn.Module, *, weight_decay: float, layer_decay: float,
                             head_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups with layer-wise lr decay (VideoMAE's ``optim_factory``): encoder parameter of layer ``l``
    (:func:`encoder_layer_id`) -> ``lr_scale = layer_decay ** (L + 1 - l)``, head -> ``head_lr_scale``; one group
    per (layer, decayed or not). No weight decay on biases, 1-D parameters (norms), position tables and the
    probe query. Each group holds ``lr_scale``, ``layer_id``, ``part`` (``encoder``/``head``) and ``names``."""
    depth = len(encoder.blocks)
    groups: dict[tuple, dict] = {}
    for part, module in (("encoder", encoder), ("head", head)):
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            lid = encoder_layer_id(name, depth) if part == "encoder" else depth + 1
            scale = layer_decay ** (depth + 1 - lid) if part == "encoder" else float(head_lr_scale)
            no_decay = p.ndim <= 1 or name.endswith(".bias") or any(n in name for n in _NO_DECAY_NAMES)
            key = (part, lid, no_decay)
            g = groups.setdefault(key, {"params": [], "names": [], "lr_scale": scale, "layer_id": lid, "part": part,
                                        "weight_decay": 0.0 if no_decay else weight_decay, "wd_exclude": no_decay})
            g["params"].append(p)
            g["names"].append(f"{part}.{name}")
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0] != "encoder", k[1], k[2]))]
