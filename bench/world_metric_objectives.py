"""Which distance objective gives a planner's energy without false minima, with perception taken out of the way.

The world models' temporal-distance head (``loss.metric``) plans to 60-68% across rooms even on the *true*
dynamics (bench/RESULTS_planning.md): its descent ends at false minima in the far field. This script asks whether
the objective or the pixels cap it: the same objectives are fitted on *perfect perception* (an MLP on the agent's
position and the layout, read from the trajectory data's states and layouts) instead of an encoder on frames, and
each learned distance is then used as the planner's energy on the true dynamics:

    python bench/world_metric_objectives.py --data runs/metric/data-wall4k --objectives expectile qrl

Objectives (``phi``: the head's embedding; distances Euclidean in it):

- ``expectile``: :func:`videojepa.training.world.metric_loss` on whole episodes (the world models' term: every pair
  ``i < j`` of the window regressed onto ``j - i`` steps with a low expectile); with ``--frames K``, on ``K`` frames
  drawn over each episode (``data.metric_frames``), so that long episodes give pairs as far apart as they are long;
- ``qrl``: quasimetric-RL style: consecutive frames held within one step (``d(s_t, s_t+1) <= 1``, a squared hinge
  with a Lagrange multiplier), every other pair of frames of one episode pushed apart with a saturating reward; the
  longest distances the local constraints allow are the shortest paths;
- ``td``: Bellman targets for the same pairs (``d(s_i, s_j) -> 1 + d(s_i+1, s_j)``, a slow copy's distances, low
  expectile): distances chained past the window;
- ``expectile+qrl``, ``expectile+td``: both terms.

Printed per objective: training seconds, Spearman of the energy with the true distance around the wall, the share of
places from which steepest descent reaches the goal (other room / goal's room), and CEM on the true dynamics with
this energy (the planner defaults of ``videojepa plan``), with the straight-line and geodesic costs as references.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from videojepa.envs.two_rooms import TwoRoomsConfig, _wall_masks, eval_episodes, geodesic_distance
from videojepa.planning.agent import OracleAgent, run_episodes
from videojepa.planning.planners import PlannerConfig
from videojepa.planning.visualize import energy_diagnostics, grid_from_field
from videojepa.rng import numpy_generator
from videojepa.training.world import metric_loss


def load_states(root: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """States ``[E, T, 2]`` and layouts ``[E, 3]`` of a trajectory folder. Only these two arrays of each shard are
    read (``load_trajectories`` would decompress every frame: 4.7 GB for 1000 episodes of 385 frames)."""
    index = json.loads((root / "index.json").read_text())
    states, layouts = [], []
    for sh in index["shards"]:
        with np.load(root / sh["file"]) as z:
            off = z["frame_offsets"]
            s = z["states"]
            states += [s[off[e]:off[e + 1]] for e in range(len(off) - 1)]
            layouts.append(z["layouts"])
        if limit and len(states) >= limit:
            break
    lengths = {len(s) for s in states}
    if len(lengths) != 1:
        raise SystemExit(f"{root}: episodes of several lengths {sorted(lengths)}; this script needs one")
    return np.stack(states)[:limit], np.concatenate(layouts)[:limit]


def features(pos: torch.Tensor, layout: torch.Tensor, size: float) -> torch.Tensor:
    """Perfect perception: the agent's position, the wall and the door, and which side of the wall the agent is on
    (what a convolution reads locally), scaled to about [-1, 1]."""
    x, y = pos[..., 0], pos[..., 1]
    wx, dy = layout[..., 0], layout[..., 1]
    c = size / 2
    return torch.stack([(x - c) / c, (y - c) / c, (wx - c) / c, (dy - c) / c, (x - wx) / c, (y - dy) / c,
                        torch.tanh(2.0 * (x - wx))], -1)


class Head(nn.Module):
    def __init__(self, dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(7, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


def qrl_terms(phi: torch.Tensor, scale: float = 15.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi`` ``[B, T, M]``: (the violation of ``d(s_t, s_t+1) <= 1``, squared hinge; minus the mean saturating
    reward ``scale * (1 - exp(-d / scale))`` of every pair of frames of one window, to be minimised)."""
    step = (phi[:, 1:] - phi[:, :-1]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    viol = torch.relu(step - 1.0).pow(2).mean()
    t = phi.shape[1]
    i, j = torch.triu_indices(t, t, 1, device=phi.device)
    d = (phi[:, i] - phi[:, j]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return viol, -(scale * (1 - torch.exp(-d / scale))).mean()


def td_loss(phi: torch.Tensor, target: torch.Tensor, expectile: float) -> torch.Tensor:
    """Shortest-path Bellman targets on every pair ``i < j`` of a window: ``d(s_i, s_j)`` regressed onto
    ``1 + d'(s_i+1, s_j)`` and ``1 + d'(s_i, s_j-1)`` (``d'`` from ``target`` ``[B, T, M]``, the slow copy's
    embedding) with a low expectile, so a place's distance becomes one step more than the nearest of the places the
    data moves to from it: distances chain past the window and across the data's detours."""
    t = phi.shape[1]
    i, j = torch.triu_indices(t, t, 1, device=phi.device)
    d = (phi[:, i] - phi[:, j]).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    with torch.no_grad():
        def dist(a, c):
            return (target[:, a] - target[:, c]).pow(2).sum(-1).clamp_min(1e-12).sqrt() * (a != c)

        y = 1.0 + torch.minimum(dist(i + 1, j), dist(i, j - 1))
    u = (y - d) / (t - 1)
    w = torch.where(u < 0, 1.0 - expectile, expectile)
    return (w * u.pow(2)).mean()


def train(objective: str, states: np.ndarray, layouts: np.ndarray, size: int, steps: int, batch: int, seed: int,
          expectile: float, frames: int | None = None) -> tuple[Head, float]:
    torch.manual_seed(seed)
    head = Head()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    rng = numpy_generator(seed, "metric-objectives")
    s_all, l_all = torch.from_numpy(states).float(), torch.from_numpy(layouts).float()
    lam = torch.tensor(1.0)
    slow = None
    t0 = time.perf_counter()
    for step in range(steps):
        ep = torch.from_numpy(rng.integers(0, len(states), batch))
        t_len = states.shape[1]
        if frames and frames < t_len:  # a sorted random subset of each episode's frames: pairs over the whole episode
            times = torch.from_numpy(np.sort(np.stack([rng.choice(t_len, frames, replace=False) for _ in range(batch)]), 1))
            pos = torch.gather(s_all[ep], 1, times[:, :, None].expand(-1, -1, 2))
        else:
            times, pos = None, s_all[ep]
        f = features(pos, l_all[ep][:, None].expand(-1, pos.shape[1], -1), size)
        phi = head(f)
        loss = phi.new_zeros(())
        if "expectile" in objective:
            loss = loss + 10.0 * metric_loss(phi, expectile, times)
        if "td" in objective:
            if slow is None:
                slow = copy.deepcopy(head).requires_grad_(False)
            with torch.no_grad():
                for p_s, p in zip(slow.parameters(), head.parameters()):
                    p_s.lerp_(p, 0.02)
                tgt = slow(f)
            loss = loss + 10.0 * td_loss(phi, tgt, expectile)
        if "qrl" in objective:
            viol, push = qrl_terms(phi)
            loss = loss + lam * viol + 0.1 * push
            lam = (lam + 1.0 * viol.detach()).clamp(max=1e3)  # dual ascent on the local constraint
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(f"  {objective} step {step}: loss {float(loss.detach()):.4f}" + (f" lambda {float(lam):.2f}" if "qrl" in objective else ""),
                  flush=True)
    return head.eval(), time.perf_counter() - t0


@torch.no_grad()
def energy_fields(head: Head, episodes, cfg: TwoRoomsConfig) -> np.ndarray:
    """``[E, size, size]``: the head's distance to each episode's goal at every free pixel (inf on walls)."""
    s = cfg.size
    ys, xs = np.mgrid[0:s, 0:s]
    pts = torch.from_numpy(np.stack([xs.ravel(), ys.ravel()], 1)).float()
    out = []
    for g, lay in zip(episodes.goal, episodes.layout):
        lt = torch.from_numpy(np.asarray(lay)).float()
        phi = head(features(pts, lt.expand(len(pts), -1), s))
        pg = head(features(torch.from_numpy(np.asarray(g)).float()[None], lt[None], s))
        e = (phi - pg).norm(dim=-1).reshape(s, s).numpy().astype(np.float64)
        e[_wall_masks(np.asarray(lay, np.float64)[None], cfg)[0]] = np.inf
        b = cfg.border
        inside = np.zeros((s, s), bool)
        inside[b:s - b, b:s - b] = True
        out.append(np.where(inside, e, np.inf))
    return np.stack(out)


def diagnostics(fields: np.ndarray, episodes, cfg: TwoRoomsConfig, n: int) -> dict:
    """Spearman with the geodesic and the descent shares of ``planning.visualize.energy_diagnostics``."""
    grids = [grid_from_field(f, g, lay, cfg) for f, g, lay in zip(fields[:n], episodes.goal, episodes.layout)]
    return energy_diagnostics(None, episodes, cfg, n=len(grids), grids=grids)


class FieldAgent(OracleAgent):
    """CEM on the true dynamics with a precomputed energy field per episode as the cost."""

    def __init__(self, fields: np.ndarray, name: str, cfg: PlannerConfig, env_cfg: TwoRoomsConfig) -> None:
        super().__init__(cfg, env_cfg, "geodesic")
        self._given, self.name = fields, name

    def begin(self, episodes, env_cfg) -> None:
        self.goal, self.layout, self.fields = episodes.goal, episodes.layout, self._given


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a trajectory folder of `videojepa world collect` (states, layouts)")
    ap.add_argument("--objectives", nargs="+", default=["expectile", "qrl", "expectile+td"],
                    choices=("expectile", "qrl", "td", "expectile+qrl", "expectile+td"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32, help="episodes per step (whole episodes)")
    ap.add_argument("--limit", type=int, default=None, help="episodes read (default: all)")
    ap.add_argument("--expectile", type=float, default=0.1)
    ap.add_argument("--frames", type=int, default=None,
                    help="frames drawn per episode for the expectile term (default: every frame, consecutive)")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--diag-episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write results.json here")
    a = ap.parse_args()
    if a.frames and any("qrl" in o or "td" in o for o in a.objectives):
        ap.error("--frames draws non-consecutive frames: only the expectile objective reads them")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(a.data)
    meta = json.loads((root / "index.json").read_text())["meta"]
    cfg = TwoRoomsConfig.from_dict(meta["env_config"])
    states, layouts = load_states(root, a.limit)
    print(f"{len(states)} episodes of {states.shape[1]} frames from {root}", flush=True)
    eps = eval_episodes(a.episodes, cfg)
    pcfg = PlannerConfig()
    rows = {}
    geo = np.stack([geodesic_distance(g, lay, cfg) for g, lay in zip(eps.goal, eps.layout)])
    ys, xs = np.mgrid[0:cfg.size, 0:cfg.size]
    euclid = np.stack([np.where(np.isfinite(f), np.hypot(xs - g[0], ys - g[1]), np.inf) for f, g in zip(geo, eps.goal)])
    for (name, cost), fields in ((("geodesic (oracle)", "geodesic"), geo), (("straight line", "euclid"), euclid)):
        d = diagnostics(fields, eps, cfg, a.diag_episodes)
        r = run_episodes(OracleAgent(pcfg, cfg, cost), eps, cfg, pcfg, seed=a.seed)  # `videojepa plan`'s oracles
        rows[name] = {**d, "success": r["success"], "ci": r["success_ci95"], "final": r["final_distance"], "train_s": 0.0}
    for obj in a.objectives:
        head, secs = train(obj, states, layouts, cfg.size, a.steps, a.batch, a.seed, a.expectile, a.frames)
        fields = energy_fields(head, eps, cfg)
        d = diagnostics(fields, eps, cfg, a.diag_episodes)
        r = run_episodes(FieldAgent(fields, obj, pcfg, cfg), eps, cfg, pcfg, seed=a.seed)
        rows[obj] = {**d, "success": r["success"], "ci": r["success_ci95"], "final": r["final_distance"], "train_s": secs}
        print(f"  {obj}: {rows[obj]}", flush=True)
    print(f"\n# perfect perception, {len(states)} episodes x {states.shape[1]} frames, {a.steps} steps x {a.batch} episodes; "
          f"CEM defaults on the true dynamics, {a.episodes} opposite-room episodes; descent over {a.diag_episodes}")
    print("| energy | training (s) | Spearman | descent reaches goal: other room / goal's room | success (95% CI) | final dist. (px) |")
    print("|---|---:|---:|---:|---|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v['train_s']:.0f} | {v['spearman']:.2f} | {100 * v['descent_opposite']:.0f}% / "
              f"{100 * v['descent_same']:.0f}% | {100 * v['success']:.0f}% ({100 * v['ci'][0]:.0f}-{100 * v['ci'][1]:.0f}) "
              f"| {v['final']:.1f} |")
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "results.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
