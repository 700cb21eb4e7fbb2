"""Schedules as pure functions of the step.

``step`` is the 0-based index of the optimiser step about to be taken. The reference steps its
schedulers once *before* each iteration with a counter that starts at 1, so its value at
iteration ``step`` is ``f(step + 1)``; the LR / WD functions below take that into account, so the
values match the reference iteration by iteration. EMA momentum at iteration ``step`` is
``start + step * (end - start) / total`` as in the reference generator.
"""
from __future__ import annotations

import math

__all__ = ["warmup_cosine", "warmup_stable_decay", "linear_decay", "cosine_wd", "ema_momentum", "lr_at", "wd_at", "ema_at"]


def warmup_cosine(step: int, *, warmup: int, total: int, start: float, peak: float, final: float) -> float:
    """Linear warmup ``start -> peak`` over ``warmup`` steps, then cosine ``peak -> final`` at ``total``."""
    s = step + 1
    if s < warmup:
        return start + (s / warmup) * (peak - start)
    progress = (s - warmup) / max(1, total - warmup)
    return max(final, final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress))) if peak >= final else \
        min(final, final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_stable_decay(step: int, *, warmup: int, total: int, cooldown: int, start: float, peak: float, final: float) -> float:
    """Linear warmup, constant ``peak``, then a linear decay to ``final`` over the last ``cooldown`` steps of ``total``."""
    s = step + 1
    if s < warmup:
        return start + (s / warmup) * (peak - start)
    decay_start = total - cooldown
    if cooldown <= 0 or s <= decay_start:
        return peak
    progress = min(1.0, (s - decay_start) / cooldown)
    return peak + progress * (final - peak)


def linear_decay(step: int, *, total: int, peak: float, final: float) -> float:
    """V-JEPA 2 cooldown: ``peak + (s / total) * (final - peak)``, no warmup."""
    s = step + 1
    return peak + min(1.0, s / max(1, total)) * (final - peak)


def cosine_wd(step: int, *, total: int, start: float, final: float) -> float:
    """Cosine weight decay ``start -> final`` at ``total`` (clamped towards ``final``)."""
    s = step + 1
    wd = final + (start - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / max(1, total))))
    return max(final, wd) if final <= start else min(final, wd)


def ema_momentum(step: int, *, total: int, start: float, end: float) -> float:
    """Linear EMA momentum ``start -> end`` over ``total`` steps."""
    return start + min(step, total) * (end - start) / max(1, total)


# -- dispatch from an OptimSection ---------------------------------------------------------------

def _total(opt, max_steps: int) -> int:
    return opt.schedule_steps if opt.schedule_steps is not None else max_steps


def lr_at(step: int, opt, max_steps: int) -> float:
    total = _total(opt, max_steps)
    if opt.lr_schedule == "cosine":
        return warmup_cosine(step, warmup=opt.warmup_steps, total=total, start=opt.start_lr, peak=opt.lr, final=opt.final_lr)
    if opt.lr_schedule == "wsd":
        return warmup_stable_decay(step, warmup=opt.warmup_steps, total=total, cooldown=opt.cooldown_steps,
                                   start=opt.start_lr, peak=opt.lr, final=opt.final_lr)
    if opt.lr_schedule == "linear":
        return linear_decay(step, total=total, peak=opt.lr, final=opt.final_lr)
    raise ValueError(f"unknown lr_schedule {opt.lr_schedule!r}")


def wd_at(step: int, opt, max_steps: int) -> float:
    return cosine_wd(step, total=_total(opt, max_steps), start=opt.weight_decay, final=opt.final_weight_decay)


def ema_at(step: int, opt, max_steps: int) -> float:
    return ema_momentum(step, total=_total(opt, max_steps), start=opt.ema[0], end=opt.ema[1])
