"""The EMA target encoder: ``target <- m * target + (1 - m) * online``."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["make_target", "ema_update"]


def make_target(online: nn.Module) -> nn.Module:
    """A frozen deep copy of ``online`` (no gradients; its parameters only move through :func:`ema_update`)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place, over all parameters (floating buffers are copied; both models must share the structure)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    tp = list(target.parameters())
    op = list(online.parameters())
    if len(tp) != len(op):
        raise ValueError(f"target has {len(tp)} parameters, online model {len(op)}")
    if momentum < 1.0:
        torch._foreach_lerp_(tp, [p.detach() for p in op], 1.0 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)
