"""Sampling-based planners over action sequences: CEM and MPPI, batched over episodes.

Both optimise ``E`` independent problems at once. ``cost_fn(actions [E, N, H, A]) -> costs [E, N]`` scores ``N``
candidate sequences of ``H`` actions per problem (for a world model: roll the predictor out from the current
latent and compare with the goal's latent). Candidates are drawn around a Gaussian ``(mean, std)`` per problem,
each action scaled back onto the ball of radius ``max_norm`` (the environment's bound), and:

- **CEM** refits ``mean`` / ``std`` to the ``elites`` best candidates (optionally mixed with the old values by
  ``momentum``, as V-JEPA 2-AC's planner does);
- **MPPI** refits them to the elites weighted by ``exp(-(c - c_min) / (temperature * spread))`` where ``spread``
  is the elites' cost range, so that ``temperature`` is free of the energy's scale.

Both return the final mean (the plan) and the best sequence ever sampled with its cost; a receding-horizon agent
(:mod:`videojepa.planning.agent`) executes the first actions and replans, warm-starting from the shifted plan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import torch

__all__ = ["PlannerConfig", "plan", "cem", "mppi", "clip_norm"]


@dataclass(frozen=True)
class PlannerConfig:
    method: str = "cem"
    horizon: int = 24
    samples: int = 100
    elites: int = 10
    iterations: int = 4
    init_std: float = 1.5
    min_std: float = 0.05
    max_norm: float = 2.0
    momentum: float = 0.0
    temperature: float = 0.5
    energy: str = "l2"  # l2 | l1 (on the latents) | metric (the world model's temporal-distance head)
    reduce: str = "sum"  # sum over the horizon | last step
    replan_every: int = 4
    warm_start: bool = True
    repeat: int = 1  # each sampled action held `repeat` steps: horizon / repeat free actions per plan (a warm start
    # shifted by a replan_every that is not a multiple of it is resampled every `repeat` steps)

    def __post_init__(self) -> None:
        if self.method not in ("cem", "mppi"):
            raise ValueError(f"planner.method must be 'cem' or 'mppi', got {self.method!r}")
        if self.energy not in ("l1", "l2", "metric"):
            raise ValueError(f"planner.energy must be 'l1', 'l2' or 'metric', got {self.energy!r}")
        if self.reduce not in ("sum", "last"):
            raise ValueError(f"planner.reduce must be 'sum' or 'last', got {self.reduce!r}")
        for k in ("horizon", "samples", "elites", "iterations", "replan_every", "repeat"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"planner.{k} must be >= 1, got {getattr(self, k)}")
        if self.elites > self.samples:
            raise ValueError(f"planner.elites {self.elites} > planner.samples {self.samples}")
        if self.horizon % self.repeat:
            raise ValueError(f"planner.horizon {self.horizon} is not a multiple of planner.repeat {self.repeat}")
        if self.replan_every > self.horizon:
            raise ValueError(f"planner.replan_every {self.replan_every} > planner.horizon {self.horizon}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"planner.momentum must be in [0, 1), got {self.momentum}")
        if self.temperature <= 0 or self.init_std <= 0 or self.max_norm <= 0:
            raise ValueError("planner.temperature, init_std and max_norm must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PlannerConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown planner key(s): {', '.join(unknown)}")
        return cls(**d)


def clip_norm(a: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each action (last dim) whose L2 norm exceeds ``max_norm`` back onto the ball."""
    n = a.norm(dim=-1, keepdim=True)
    return a * torch.clamp(max_norm / n.clamp_min(1e-12), max=1.0)


CostFn = Callable[[torch.Tensor], torch.Tensor]


def _sample(mean: torch.Tensor, std: torch.Tensor, n: int, max_norm: float, gen: torch.Generator,
            keep_mean: bool = True) -> torch.Tensor:
    e, h, a = mean.shape
    noise = torch.randn((e, n, h, a), generator=gen, device=mean.device, dtype=mean.dtype)
    cand = mean[:, None] + std[:, None] * noise
    if keep_mean:
        cand[:, 0] = mean  # the current plan always competes
    return clip_norm(cand, max_norm)


def _refit(cand: torch.Tensor, costs: torch.Tensor, cfg: PlannerConfig, mean, std, weighted: bool):
    k = cfg.elites
    c, idx = torch.topk(costs, k, dim=1, largest=False)  # [E, k]
    el = torch.gather(cand, 1, idx[:, :, None, None].expand(-1, -1, *cand.shape[2:]))  # [E, k, H, A]
    if weighted:
        spread = (c[:, -1:] - c[:, :1]).clamp_min(1e-12)
        w = torch.softmax(-(c - c[:, :1]) / (cfg.temperature * spread), dim=1)[:, :, None, None]
    else:
        w = torch.full_like(c, 1.0 / k)[:, :, None, None]
    new_mean = (w * el).sum(1)
    new_std = torch.sqrt((w * (el - new_mean[:, None]) ** 2).sum(1)).clamp_min(cfg.min_std)
    m = cfg.momentum
    return m * mean + (1 - m) * new_mean, m * std + (1 - m) * new_std, el[:, 0], c[:, 0]


@torch.no_grad()
def plan(cost_fn: CostFn, mean: torch.Tensor, cfg: PlannerConfig, gen: torch.Generator,
         std: torch.Tensor | None = None) -> dict:
    """Optimise the sequences of ``mean`` ``[E, H, A]`` (the warm start; zeros for none) with ``cfg.method``.

    Returns ``mean`` (the plan), ``best`` / ``best_cost`` (the lowest-cost sequence sampled) and ``costs`` (the
    mean elite cost per iteration, ``[iterations, E]``)."""
    r = cfg.repeat
    if r > 1:  # search over horizon / r actions, each held r steps
        full_cost, mean = cost_fn, mean[:, ::r]
        std = None if std is None else std[:, ::r]

        def cost_fn(actions: torch.Tensor) -> torch.Tensor:
            return full_cost(actions.repeat_interleave(r, dim=2))

    std = torch.full_like(mean, cfg.init_std) if std is None else std
    mean = clip_norm(mean, cfg.max_norm)
    best = mean.clone()
    best_cost = torch.full(mean.shape[:1], float("inf"), device=mean.device)
    history = []
    for _ in range(cfg.iterations):
        cand = _sample(mean, std, cfg.samples, cfg.max_norm, gen)
        costs = cost_fn(cand)
        if costs.shape != cand.shape[:2]:
            raise ValueError(f"cost_fn returned {tuple(costs.shape)}, expected {tuple(cand.shape[:2])}")
        mean, std, top, top_c = _refit(cand, costs, cfg, mean, std, weighted=cfg.method == "mppi")
        mean = clip_norm(mean, cfg.max_norm)
        better = top_c < best_cost
        best[better], best_cost[better] = top[better], top_c[better]
        history.append(torch.topk(costs, cfg.elites, dim=1, largest=False)[0].mean(1))
    if r > 1:
        mean, std, best = (x.repeat_interleave(r, dim=1) for x in (mean, std, best))
    return {"mean": mean, "std": std, "best": best, "best_cost": best_cost, "costs": torch.stack(history)}


def cem(cost_fn: CostFn, mean: torch.Tensor, cfg: PlannerConfig, gen: torch.Generator, std=None) -> dict:
    return plan(cost_fn, mean, replace(cfg, method="cem"), gen, std)


def mppi(cost_fn: CostFn, mean: torch.Tensor, cfg: PlannerConfig, gen: torch.Generator, std=None) -> dict:
    return plan(cost_fn, mean, replace(cfg, method="mppi"), gen, std)
