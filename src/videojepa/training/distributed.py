"""Everything that knows about ranks: process-group set-up, model wrapping, collectives.

Launch with ``torchrun`` (``torchrun --nproc-per-node N -m videojepa pretrain ...``); the
environment it sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) is read
here. Without it, nothing distributed happens: no process group is created or needed. Backends:
NCCL on CUDA, gloo on CPU. ``VIDEOJEPA_DIST_TIMEOUT`` (seconds) bounds every collective, so that a
rank that never arrives stops the others with an error instead of a silent wait (PyTorch's default
on gloo: 30 min). Models stay free of any of this; the trainer asks this module to wrap
them (DDP) and to reduce metrics.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["DistEnv", "collective_timeout", "init_distributed", "wrap_ddp", "wrap_fsdp", "is_fsdp", "all_reduce", "barrier",
           "shutdown"]


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _device(pref: str, local_rank: int) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(pref)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {pref!r} requested but CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def collective_timeout() -> timedelta | None:
    """``VIDEOJEPA_DIST_TIMEOUT`` as a timedelta, or None (PyTorch's default) when it is unset."""
    raw = os.environ.get("VIDEOJEPA_DIST_TIMEOUT", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")  # refused below, with the same message as a number <= 0
    if not seconds > 0:
        raise ValueError(f"VIDEOJEPA_DIST_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return timedelta(seconds=seconds)


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group that ``torchrun`` describes, or return a single-process environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = _device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        extra = {"device_id": dev} if dev.type == "cuda" else {}
        timeout = collective_timeout()
        if timeout is not None:
            extra["timeout"] = timeout
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **extra)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def wrap_ddp(model: nn.Module, env: DistEnv, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel`` over the trainable parameters (frozen ones, e.g. the EMA target, are ignored)."""
    if not env.distributed:
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters,
                                               broadcast_buffers=False)


def all_reduce(values: torch.Tensor, env: DistEnv, op: str = "sum") -> torch.Tensor:
    """In-place collective on a small tensor (a no-op in one process). ``op``: sum, min, max, mean."""
    if not env.distributed:
        return values
    t = values.to(env.device) if env.device.type == "cuda" else values
    red = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op]
    dist.all_reduce(t, op=red)
    if op == "mean":
        t = t / env.world_size
    return t.to(values.device)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_fsdp(model: nn.Module, env: DistEnv, param_dtype: torch.dtype | None = None) -> nn.Module:
    """Shard a :class:`~videojepa.training.jepa.JEPA` with FSDP2 (``fully_shard``), block by block.

    Encoder, predictor and the EMA target encoder are sharded alike (so the EMA update runs on local
    shards). With ``param_dtype=torch.bfloat16`` parameters are gathered in bf16 for compute while
    gradients are reduced and kept in float32. Build the optimizer *after* this call.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else MixedPrecisionPolicy()
    for mod in (model.encoder, model.predictor, model.target_encoder):
        blocks = mod.blocks if hasattr(mod, "blocks") else mod.predictor_blocks
        for blk in blocks:
            fully_shard(blk, mesh=mesh, mp_policy=mp)
        fully_shard(mod, mesh=mesh, mp_policy=mp)
    if isinstance(getattr(model, "head", None), nn.Module):  # reconstruction baselines' output layer
        fully_shard(model.head, mesh=mesh, mp_policy=mp)
    return model


def is_fsdp(module: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - old torch
        return False
    return isinstance(module, FSDPModule)
