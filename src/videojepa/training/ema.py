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
    """In place, over all parameters (floating buffers are copied; both models must share the structure).

    Under FSDP2 both models must be in their sharded state (``reshard()``); the update then runs on
    the local shards, which hold the same slices of the same parameters on every rank.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    tp = [_local(p) for p in target.parameters()]
    op = [_local(p) for p in online.parameters()]
    if len(tp) != len(op):
        raise ValueError(f"target has {len(tp)} parameters, online model {len(op)}")
    if momentum < 1.0:
        torch._foreach_lerp_(tp, [p.detach() for p in op], 1.0 - momentum)
    for tb, ob in zip(target.buffers(), online.buffers()):
        tb.copy_(ob)


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (FSDP2: target and online are sharded alike), else the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t
