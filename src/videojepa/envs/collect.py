"""Exploratory trajectories from Two Rooms, written as a trajectory folder (:mod:`videojepa.data.trajectories`).

The policy is eb_jepa's random walk, batched: the heading drifts by a von Mises step (concentration
``kappa``), the step length is a normal (``step_mean``, ``step_std``) truncated to ``[step_min, max_step]``.
A share ``door_share`` of the episodes is steered through the door (towards a point in front of it, then one
past it on the other side, then free), so that crossings are not left to chance. A blocked move leaves
the agent in place (the environment's one rule) and turns the heading to a fresh random direction.

A share ``wall_share`` of the episodes (0 by default) is steered at the wall instead: towards a point on the
wall's face away from the door, then ``push_steps`` moves into the wall (heading at the wall with von Mises noise,
so nearly all of them are stopped), then to another point of the same face, and so on to the episode's end. The free walk turns away after one stopped move, so repeated pushes,
which a planner that believes it can walk through the wall makes, are rare in its data (1.6% of the moves are
stopped by that wall on random layouts); this share makes the collision a visible part of the data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.trajectories import Episode, TrajectoryWriter
from ..rng import numpy_generator
from .two_rooms import TwoRoomsConfig, blocked, clip_actions, crosses_wall, render, room_of, sample_in_room, sample_layouts

__all__ = ["PolicyConfig", "explore", "collect"]


@dataclass(frozen=True)
class PolicyConfig:
    kappa: float = 5.0
    step_mean: float = 1.0
    step_std: float = 0.5
    step_min: float = 0.1
    door_share: float = 0.35
    wall_share: float = 0.0
    push_steps: int = 6

    def __post_init__(self) -> None:
        for name in ("door_share", "wall_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"policy {name} must lie in [0, 1], got {v}")
        if self.door_share + self.wall_share > 1.0:
            raise ValueError(f"policy door_share + wall_share must be <= 1, got {self.door_share} + {self.wall_share}")
        if self.push_steps < 1:
            raise ValueError(f"policy push_steps must be >= 1, got {self.push_steps}")


def _truncnorm(rng: np.random.Generator, n: int, mean: float, std: float, lo: float, hi: float) -> np.ndarray:
    out = rng.normal(mean, std, n)
    bad = (out < lo) | (out > hi)
    while bad.any():
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < lo) | (out > hi)
    return out


def explore(n: int, length: int, cfg: TwoRoomsConfig, rng: np.random.Generator,
            policy: PolicyConfig = PolicyConfig()) -> dict:
    """``n`` episodes of ``length`` frames: positions ``[n, length, 2]``, actions ``[n, length-1, 2]``,
    layouts ``[n, 3]``, and which episodes were steered through the door."""
    lay = sample_layouts(n, cfg, rng)
    rooms = rng.integers(0, 2, size=n)
    pos = sample_in_room(rooms, lay, cfg, rng, margin=1.0)
    heading = rng.uniform(-np.pi, np.pi, n)
    u = rng.random(n)
    steer = u < policy.door_share
    push = (u >= policy.door_share) & (u < policy.door_share + policy.wall_share)
    side = np.where(rooms == 0, -1.0, 1.0)  # which side of the wall the agent starts on
    way = np.stack([np.stack([lay[:, 0] + side * (cfg.half_width + 3), lay[:, 1]], 1),
                    np.stack([lay[:, 0] - side * (cfg.half_width + 6), lay[:, 1]], 1)], 1)  # [n, 2 waypoints, 2]
    # stages: 0, 1 = the door's two waypoints; 2 = free; 3 = towards the wall; 4 = pushing into it
    stage = np.where(steer, 0, 2)
    pushes = np.zeros(n, dtype=np.int64)
    if push.any():  # drawn only when asked for, so that collections without pushes keep their streams
        stage = np.where(push, 3, stage)
        y = _wall_rows(lay, cfg, rng)
        way[push, 0] = np.stack([lay[push, 0] + side[push] * (cfg.half_width + 1), y[push]], 1)
    into = np.where(side < 0, 0.0, np.pi)  # heading straight at the wall from the agent's room
    positions, actions = [pos], []
    for _ in range(length - 1):
        target = way[np.arange(n), np.where(stage == 1, 1, 0)]
        to = target - pos
        want = np.arctan2(to[:, 1], to[:, 0])
        drift = rng.vonmises(0.0, policy.kappa, n)
        steady = rng.vonmises(0.0, 4 * policy.kappa, n)
        heading = np.where(stage == 2, heading + drift, np.where(stage == 4, into + drift, want + steady))
        length_ = _truncnorm(rng, n, policy.step_mean, policy.step_std, policy.step_min, cfg.max_step)
        a = clip_actions(np.stack([np.cos(heading), np.sin(heading)], 1) * length_[:, None], cfg.max_step)
        new = pos + a
        stop = blocked(pos, new, lay, cfg)
        pos = np.where(stop[:, None], pos, new)
        heading = np.where(stop & (stage == 2), rng.uniform(-np.pi, np.pi, n), heading)
        reached = np.linalg.norm(target - pos, axis=1) < 1.5
        stage = np.where((stage < 2) & reached, stage + 1, stage)
        stage = np.where((stage == 3) & (reached | stop), 4, stage)
        pushes = pushes + (stage == 4)
        done = (stage == 4) & (pushes > policy.push_steps)
        if done.any():  # the next point on the same face: walk along the wall, push again
            y = _wall_rows(lay, cfg, rng)
            way[done, 0, 1] = y[done]
            stage = np.where(done, 3, stage)
            pushes = np.where(done, 0, pushes)
        positions.append(pos)
        actions.append(a)
    return {"positions": np.stack(positions, 1), "actions": np.stack(actions, 1), "layouts": lay, "steered": steer,
            "pushed": push}


def _wall_rows(lay: np.ndarray, cfg: TwoRoomsConfig, rng: np.random.Generator) -> np.ndarray:
    """A row on each layout's wall at least 3 px from the door's edge (the wall is taller than the door)."""
    lo, hi = cfg.lo + 1.0, cfg.hi - 1.0
    below = np.maximum(lay[:, 1] - lay[:, 2] - 3.0 - lo, 0.0)  # usable rows under the door
    above = np.maximum(hi - (lay[:, 1] + lay[:, 2] + 3.0), 0.0)  # ... and over it
    r = rng.random(len(lay)) * (below + above)
    return np.where(r < below, lo + r, lay[:, 1] + lay[:, 2] + 3.0 + (r - below))


def collect(out: str, episodes: int, length: int, cfg: TwoRoomsConfig, *, seed: int = 0, shard_size: int = 250,
            policy: PolicyConfig = PolicyConfig(), progress: bool = True) -> dict:
    """Write ``episodes`` exploratory episodes to the trajectory folder ``out`` (resumes a stopped collection:
    shard ``k`` is always drawn from the stream ``(seed, "collect", k)``). Returns summary statistics."""
    meta = {"env": "two_rooms", "env_config": cfg.to_dict(), "policy": policy.__dict__, "episodes": int(episodes),
            "length": int(length), "seed": int(seed), "shard_size": int(shard_size),
            "states": "agent position (x, y) in pixels", "actions": "displacement (dx, dy) in pixels"}
    w = TrajectoryWriter(out, meta)
    shards = (episodes + shard_size - 1) // shard_size
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, initial=min(w.done * shard_size, episodes), desc="collect", unit="ep")
    crossed = steps = blocked_moves = wall_blocked = written = 0
    first = w.done
    for k in range(first, shards):
        n = min(shard_size, episodes - k * shard_size)
        rng = numpy_generator(int(seed), "collect", k)
        tr = explore(n, length, cfg, rng, policy)
        p, a, lay = tr["positions"], tr["actions"], tr["layouts"]
        frames = render(p.reshape(-1, 2), np.repeat(lay, length, axis=0), cfg).reshape(n, length, cfg.size, cfg.size, 3)
        r = np.stack([room_of(p[:, t], lay) for t in range(length)], 1)
        crossed += int((r != r[:, :1]).any(1).sum())
        stopped = np.linalg.norm(np.diff(p, axis=1), axis=-1) < 1e-9
        blocked_moves += int(stopped.sum())
        into_wall = crosses_wall(p[:, :-1].reshape(-1, 2), (p[:, :-1] + a).reshape(-1, 2), np.repeat(lay, length - 1, 0),
                                 cfg).reshape(n, length - 1)
        wall_blocked += int((stopped & into_wall).sum())
        steps += n * (length - 1)
        written += n
        w.add([Episode(frames[i], a[i].astype(np.float32), p[i].astype(np.float32), lay[i].astype(np.float32),
                       f"two_rooms#{k * shard_size + i}") for i in range(n)])
        if bar:
            bar.update(n)
    if bar:
        bar.close()
    return {"out": str(out), "episodes": episodes, "shards": shards, "written_shards": shards - first,
            "written_episodes": written, "crossing_share": crossed / max(1, written),
            "blocked_share": blocked_moves / max(1, steps), "wall_blocked_share": wall_blocked / max(1, steps)}
