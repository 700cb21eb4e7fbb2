"""Goal-reaching agents and the episode runner (batched over episodes).

An agent proposes a plan ``[E, H, A]`` for ``E`` episodes at once; :func:`run_episodes` executes its first
``replan_every`` actions in the simulator (receding horizon), then asks again, warm-starting from the plan shifted
by the executed steps (``planner.warm_start``) or from zeros. Agents:

- :class:`WorldModelAgent`: CEM / MPPI through a trained :class:`~videojepa.models.world.WorldModel`; it sees only
  the current frame and the goal frame (energy: distance between the imagined latents and the goal's latent, or
  between their temporal-distance embeddings, summed over the horizon or at its last step);
- :class:`OracleAgent`: the same planner on the true dynamics, with the geodesic distance around the walls
  (``geodesic``: an upper bound) or the straight-line distance (``euclid``: shows the wall's local minimum);
- :class:`LearnedEnergyAgent`: the planner on the true dynamics with a world model's *energy* (its encoder and
  distance, read at every position): separates "is the energy right?" from "are the imagined rollouts right?";
- :class:`RandomAgent`: the data-collection random walk; :class:`ZeroAgent`: stands still.

Success is judged after the whole budget (no early stop): final distance below the success radius.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..envs.two_rooms import Episodes, TwoRoomsConfig, geodesic_distance, move, render
from ..rng import numpy_generator, torch_generator
from .planners import PlannerConfig, clip_norm, plan

__all__ = ["WorldModelAgent", "OracleAgent", "LearnedEnergyAgent", "RandomAgent", "ZeroAgent", "run_episodes", "wilson",
           "energy_field", "require_energy"]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a success rate ``k / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


class WorldModelAgent:
    name = "world model"

    def __init__(self, model, cfg: PlannerConfig, device: str | torch.device = "cpu", state_scale: float = 64.0) -> None:
        require_energy(model, cfg.energy)
        self.model = model.eval()
        self.cfg = cfg
        self.device = torch.device(device)
        self.state_scale = state_scale
        self.goal_z = None

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        return self.model.encode(torch.from_numpy(frames).to(self.device))

    def begin(self, episodes: Episodes, env_cfg: TwoRoomsConfig) -> None:
        self.goal_z = self.encode(render(episodes.goal, episodes.layout, env_cfg))

    def energy(self, pred: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """``pred`` ``[E, N, H, D]``, ``goal`` ``[E, D]`` -> ``[E, N]``: the energy of whole rollouts (the planner's
        cost, :meth:`rollout_cost`, takes the same energy step by step)."""
        per_step = self.model.distance(pred, goal[:, None, None], self.cfg.energy)
        return per_step.sum(-1) if self.cfg.reduce == "sum" else per_step[..., -1]

    def rollout_cost(self, z0: torch.Tensor, s0: torch.Tensor):
        """The cost function the planner calls: candidate actions ``[E, N, H, A]`` -> energies ``[E, N]`` of their
        imagined rollouts from ``z0`` ``[E, D]`` (states ``s0`` ``[E, S]`` for the 2-AC predictor)."""
        e, d = z0.shape
        goal = self.goal_z

        def cost(actions: torch.Tensor) -> torch.Tensor:
            _, n, h, a = actions.shape
            z, flat = z0[:, None].expand(e, n, d).reshape(e * n, d), actions.reshape(e * n, h, a)
            if self.model.cfg.predictor == "ac":  # block-causal: the whole history at every step
                steps = self.model.rollout(z, flat, s0[:, None].expand(e, n, -1).reshape(e * n, -1)).unbind(1)
            else:  # one imagined step at a time: no [E, N, H, D] stack of latents
                steps = self.model.rollout_steps(z, flat)
            total = None
            for t, z in enumerate(steps):
                if self.cfg.reduce == "sum" or t == h - 1:
                    et = self.model.distance(z.reshape(e, n, d), goal[:, None], self.cfg.energy)
                    total = et if total is None else total + et
            return total

        return cost

    @torch.no_grad()
    def propose(self, t: int, pos: np.ndarray, frames: np.ndarray, warm: torch.Tensor, gen: torch.Generator) -> dict:
        z0 = self.encode(frames)  # [E, D]
        s0 = torch.as_tensor(pos, dtype=z0.dtype, device=self.device)  # proprioception (read by the 2-AC predictor)
        cost = self.rollout_cost(z0, s0)
        out = plan(cost, warm.to(self.device), self.cfg, gen)
        with torch.no_grad():
            imagined = self.model.rollout(z0, out["mean"], s0)
            out["imagined_states"] = (self.model.read_state(imagined) * self.state_scale).cpu().numpy()
        return out


class OracleAgent:
    """The planner on the true simulator with the geodesic (``geodesic``) or straight-line (``euclid``) cost."""

    def __init__(self, cfg: PlannerConfig, env_cfg: TwoRoomsConfig, cost: str = "geodesic") -> None:
        if cost not in ("geodesic", "euclid"):
            raise ValueError(f"oracle cost must be 'geodesic' or 'euclid', got {cost!r}")
        self.cfg, self.env_cfg, self.cost = cfg, env_cfg, cost
        self.name = f"oracle ({cost})"

    def begin(self, episodes: Episodes, env_cfg: TwoRoomsConfig) -> None:
        self.goal = episodes.goal
        self.layout = episodes.layout
        self.fields = np.stack([geodesic_distance(g, lay, env_cfg) for g, lay in zip(episodes.goal, episodes.layout)]) \
            if self.cost == "geodesic" else None  # [E, size, size]

    def _cost_of(self, e_idx: np.ndarray, p: np.ndarray) -> np.ndarray:
        if self.cost == "euclid":
            return np.linalg.norm(p - self.goal[e_idx], axis=-1)
        s = self.env_cfg.size
        c = np.clip(np.rint(p[:, 0]).astype(int), 0, s - 1)
        r = np.clip(np.rint(p[:, 1]).astype(int), 0, s - 1)
        return self.fields[e_idx, r, c]

    @torch.no_grad()
    def propose(self, t: int, pos: np.ndarray, frames: np.ndarray, warm: torch.Tensor, gen: torch.Generator) -> dict:
        e = pos.shape[0]

        def cost(actions: torch.Tensor) -> torch.Tensor:
            _, n, h, _ = actions.shape
            act = actions.cpu().numpy().astype(np.float64)
            p = np.repeat(pos, n, axis=0)
            lay = np.repeat(self.layout, n, axis=0)
            e_idx = np.repeat(np.arange(e), n)
            total = np.zeros(e * n)
            for k in range(h):
                p = move(p, act[:, :, k].reshape(e * n, -1), lay, self.env_cfg)
                step_cost = self._cost_of(e_idx, p)
                total = step_cost if self.cfg.reduce == "last" else total + step_cost
            return torch.from_numpy(total.reshape(e, n)).to(actions.dtype)

        out = plan(cost, warm, self.cfg, gen)
        p, states = pos.copy(), []
        for k in range(out["mean"].shape[1]):
            p = move(p, out["mean"][:, k].numpy(), self.layout, self.env_cfg)
            states.append(p)
        out["imagined_states"] = np.stack(states, 1)
        return out


def require_energy(model, energy: str) -> None:
    """Refuse the ``metric`` energy for a world model without a temporal-distance head, before any planning."""
    from ..models.world import NO_METRIC_HEAD

    if energy == "metric" and getattr(model, "metric", None) is None:
        raise ValueError(NO_METRIC_HEAD)


@torch.no_grad()
def energy_field(model, goal: np.ndarray, layout: np.ndarray, env_cfg: TwoRoomsConfig, energy: str = "l2",
                 device: str | torch.device = "cpu", stride: int = 1, chunk: int = 1024) -> np.ndarray:
    """``[size, size]`` (rows, cols): the world model's energy of standing at each free pixel of a ``stride``-px
    grid from the border (the frame of the agent there encoded, its distance to the goal frame's latent under
    ``energy``); ``inf`` on walls, outside and between grid points."""
    from ..envs.two_rooms import _wall_masks

    s, b = env_cfg.size, env_cfg.border
    walls = _wall_masks(np.asarray(layout, np.float64)[None], env_cfg)[0]
    on_grid = np.zeros((s, s), bool)
    on_grid[b:s - b:stride, b:s - b:stride] = True
    rows, cols = np.nonzero(on_grid & ~walls)
    pts = np.stack([cols, rows], 1).astype(np.float64)
    zg = model.encode(torch.from_numpy(render(goal, layout, env_cfg)).to(device))
    out = np.full((s, s), np.inf)
    for i in range(0, len(pts), chunk):
        p = pts[i:i + chunk]
        z = model.encode(torch.from_numpy(render(p, np.repeat(np.asarray(layout)[None], len(p), 0), env_cfg)).to(device))
        out[rows[i:i + chunk], cols[i:i + chunk]] = model.distance(z, zg, energy).float().cpu().numpy()
    return out


class LearnedEnergyAgent(OracleAgent):
    """The planner on the true dynamics with a world model's energy field (:func:`energy_field`) as the cost."""

    def __init__(self, model, cfg: PlannerConfig, env_cfg: TwoRoomsConfig, device: str | torch.device = "cpu") -> None:
        require_energy(model, cfg.energy)
        super().__init__(cfg, env_cfg, "geodesic")
        self.model, self.device = model.eval(), device
        self.name = f"true dynamics, world-model energy ({cfg.energy})"

    def begin(self, episodes: Episodes, env_cfg: TwoRoomsConfig) -> None:
        self.goal, self.layout = episodes.goal, episodes.layout
        self.fields = np.stack([energy_field(self.model, g, lay, env_cfg, self.cfg.energy, self.device)
                                for g, lay in zip(episodes.goal, episodes.layout)])


class RandomAgent:
    """The data-collection random walk (von Mises heading, truncated-normal steps)."""

    name = "random policy"

    def __init__(self, env_cfg: TwoRoomsConfig, seed: int = 0) -> None:
        self.env_cfg, self.seed = env_cfg, seed

    def begin(self, episodes: Episodes, env_cfg: TwoRoomsConfig) -> None:
        from ..envs.collect import PolicyConfig, _truncnorm

        e, budget = len(episodes), env_cfg.budget
        rng = numpy_generator(self.seed, "random-agent")
        pol = PolicyConfig()
        heading = rng.uniform(-np.pi, np.pi, e)
        acts = []
        for _ in range(budget):
            heading = heading + rng.vonmises(0.0, pol.kappa, e)
            length = _truncnorm(rng, e, pol.step_mean, pol.step_std, pol.step_min, env_cfg.max_step)
            acts.append(np.stack([np.cos(heading), np.sin(heading)], 1) * length[:, None])
        self.actions = np.stack(acts, 1)

    def propose(self, t: int, pos, frames, warm: torch.Tensor, gen) -> dict:
        h = warm.shape[1]
        a = self.actions[:, t:t + h]
        if a.shape[1] < h:
            a = np.concatenate([a, np.zeros((a.shape[0], h - a.shape[1], 2))], 1)
        return {"mean": torch.from_numpy(a).to(warm.dtype)}


class ZeroAgent:
    name = "zero action"

    def begin(self, episodes: Episodes, env_cfg: TwoRoomsConfig) -> None:
        pass

    def propose(self, t: int, pos, frames, warm: torch.Tensor, gen) -> dict:
        return {"mean": torch.zeros_like(warm)}


def run_episodes(agent, episodes: Episodes, env_cfg: TwoRoomsConfig, cfg: PlannerConfig, *, seed: int = 0,
                 progress: bool = False, record: bool = False) -> dict:
    """Run every episode to the end of the budget; returns the success rate (Wilson 95% interval), mean final
    distance, the share that ever came within the radius, seconds per episode (wall time of the batched run
    divided by the number of episodes) and per replan, and with ``record`` the trajectories and plans."""
    e = len(episodes)
    pos = episodes.start.copy()
    agent.begin(episodes, env_cfg)
    warm = torch.zeros(e, cfg.horizon, 2)
    traj, plans = [pos.copy()], []
    ever = np.linalg.norm(pos - episodes.goal, axis=1) < env_cfg.success_radius
    replans, t0 = 0, time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=env_cfg.budget, desc=f"plan ({getattr(agent, 'name', 'agent')})", unit="step", leave=False)
    current = None
    for t in range(env_cfg.budget):
        k = t % cfg.replan_every
        if k == 0:
            gen = torch_generator(seed, "plan", t)
            frames = render(pos, episodes.layout, env_cfg)
            out = agent.propose(t, pos, frames, warm, gen)
            current = out["mean"].detach().cpu()
            if cfg.warm_start:
                warm = torch.cat([current[:, cfg.replan_every:], torch.zeros(e, cfg.replan_every, 2)], 1)
            replans += 1
            if record:
                plans.append({"t": t, "states": out.get("imagined_states")})
        a = clip_norm(current[:, k], env_cfg.max_step).numpy().astype(np.float64)
        pos = move(pos, a, episodes.layout, env_cfg)
        traj.append(pos.copy())
        ever |= np.linalg.norm(pos - episodes.goal, axis=1) < env_cfg.success_radius
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    final = np.linalg.norm(pos - episodes.goal, axis=1)
    ok = final < env_cfg.success_radius
    lo, hi = wilson(int(ok.sum()), e)
    res = {"agent": getattr(agent, "name", type(agent).__name__), "episodes": e, "success": float(ok.mean()),
           "success_ci95": [lo, hi], "ever_reached": float(ever.mean()), "final_distance": float(final.mean()),
           "seconds_per_episode": seconds / e, "seconds_per_replan": seconds / max(1, replans),
           "seconds": seconds, "per_episode_success": ok.tolist()}
    if record:
        res["trajectories"] = np.stack(traj, 1)
        res["plans"] = plans
    return res
