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
