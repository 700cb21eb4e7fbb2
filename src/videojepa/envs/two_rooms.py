"""Two Rooms: a point agent in two rooms joined by a door, rendered to 64x64 RGB (numpy only).

Coordinates are pixels: ``(x, y)`` = (column, row) of a pixel centre, ``0 .. size-1``. The arena has
a ``border``-pixel wall on every side, so the agent lives in ``[border, size-1-border]`` on both axes.
A vertical wall ``wall_width`` pixels wide is centred on column ``wall_x``; a door of half-height
``door_half`` is centred on row ``door_y``. A layout is the vector ``(wall_x, door_y, door_half)``.

**Dynamics** (:func:`move`, the one rule used by data collection, evaluation and the oracle): an action
is a 2-D displacement; its norm is clipped to ``max_step``. A move that would leave the arena, or whose
straight path crosses the wall's band at a row outside the door, is stopped: the agent stays where it
was. Everything is batched: positions ``[B, 2]``, actions ``[B, 2]``, layouts ``[B, 3]``.

**Rendering** (:func:`render`): walls in slate blue, the agent as a red Gaussian blob
(``sigma`` pixels), uint8 ``[B, size, size, 3]``. A goal is shown to the planner as the rendering of
the agent standing at the goal.

**Evaluation episodes** (:func:`eval_episodes`): start and goal in opposite rooms (each at least
``2*sigma`` from the walls), layouts fixed or drawn per episode, all from fixed seeds, so every
evaluation of every model sees the same episodes. Success: distance to the goal below
``success_radius`` after the last step of the budget (episodes do not stop early).

:class:`TwoRoomsEnv` wraps it in the gymnasium calling convention (``reset(seed=...)`` returns
``(obs, info)``, ``step(a)`` returns ``(obs, reward, terminated, truncated, info)``) so that a planner
written against it runs on any simulator with the same interface.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..rng import numpy_generator

__all__ = ["TwoRoomsConfig", "move", "render", "room_of", "sample_layouts", "sample_in_room", "eval_episode", "eval_episodes",
           "Episodes", "TwoRoomsEnv", "geodesic_distance", "WALL_RGB", "AGENT_RGB"]

WALL_RGB = np.array([70, 90, 170], np.float32)
AGENT_RGB = np.array([255, 70, 40], np.float32)
BACKGROUND_RGB = np.array([12, 12, 16], np.float32)


@dataclass(frozen=True)
class TwoRoomsConfig:
    size: int = 64
    border: int = 4
    wall_width: int = 3
    max_step: float = 2.0
    sigma: float = 1.5
    layout: str = "fixed"  # "fixed" | "random"
    fixed_wall_x: int = 32
    fixed_door_y: int = 20
    door_half: int = 5
    wall_x_range: tuple[int, int] = (24, 40)
    door_y_range: tuple[int, int] = (14, 50)
    budget: int = 100
    success_radius: float = 4.5

    def __post_init__(self) -> None:
        if self.layout not in ("fixed", "random"):
            raise ValueError(f"env.layout must be 'fixed' or 'random', got {self.layout!r}")
        if self.max_step <= 0:
            raise ValueError(f"env.max_step must be > 0, got {self.max_step}")
        lo, hi = self.border + 2, self.size - 1 - self.border - 2
        for name, (a, b) in (("wall_x_range", self.wall_x_range), ("door_y_range", self.door_y_range)):
            if not lo <= a <= b <= hi:
                raise ValueError(f"env.{name} {a, b} must lie within [{lo}, {hi}]")
        if not lo <= self.fixed_wall_x <= hi or not lo <= self.fixed_door_y <= hi:
            raise ValueError(f"env.fixed_wall_x / fixed_door_y must lie within [{lo}, {hi}]")

    @property
    def lo(self) -> float:
        return float(self.border)

    @property
    def hi(self) -> float:
        return float(self.size - 1 - self.border)

    @property
    def half_width(self) -> float:
        return self.wall_width / 2.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["wall_x_range"], d["door_y_range"] = list(self.wall_x_range), list(self.door_y_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TwoRoomsConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown env config key(s): {', '.join(unknown)}")
        d = dict(d)
        for k in ("wall_x_range", "door_y_range"):
            if k in d:
                d[k] = tuple(int(v) for v in d[k])
        return cls(**d)

    def with_layout(self, layout: str) -> "TwoRoomsConfig":
        return replace(self, layout=layout)


def _as_batch(x, n: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if n is not None and x.shape[0] == 1 and n > 1:
        x = np.repeat(x, n, axis=0)
    return x


def clip_actions(actions: np.ndarray, max_step: float) -> np.ndarray:
    """Scale actions ``[..., 2]`` whose norm exceeds ``max_step`` back onto the ball."""
    a = np.asarray(actions, dtype=np.float64)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a * np.minimum(1.0, max_step / np.maximum(norm, 1e-12))


def blocked(pos: np.ndarray, new: np.ndarray, layout: np.ndarray, cfg: TwoRoomsConfig) -> np.ndarray:
    """Which moves ``pos -> new`` (``[B, 2]``) leave the arena or cross the wall outside the door."""
    out = (new < cfg.lo).any(-1) | (new > cfg.hi).any(-1)
    return out | crosses_wall(pos, new, layout, cfg)


def crosses_wall(pos: np.ndarray, new: np.ndarray, layout: np.ndarray, cfg: TwoRoomsConfig) -> np.ndarray:
    """Which moves ``pos -> new`` (``[B, 2]``) touch the wall between the rooms outside the door (the part of
    :func:`blocked` that is not the arena's border)."""
    wx, dy, dh = layout[:, 0], layout[:, 1], layout[:, 2]
    a, b = wx - cfg.half_width, wx + cfg.half_width
    x0, y0 = pos[:, 0], pos[:, 1]
    dx, dyy = new[:, 0] - x0, new[:, 1] - y0
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (a - x0) / dx, (b - x0) / dx
    moving = np.abs(dx) > 1e-12
    t0 = np.where(moving, np.minimum(ta, tb), 0.0)
    t1 = np.where(moving, np.maximum(ta, tb), 1.0)
    inside_band_static = (x0 >= a) & (x0 <= b)
    t0, t1 = np.maximum(t0, 0.0), np.minimum(t1, 1.0)
    touches = np.where(moving, t0 <= t1, inside_band_static)
    ya, yb = y0 + t0 * dyy, y0 + t1 * dyy
    door_lo, door_hi = dy - dh, dy + dh
    outside_door = (np.minimum(ya, yb) < door_lo) | (np.maximum(ya, yb) > door_hi)
    return touches & outside_door


def move(pos, actions, layout, cfg: TwoRoomsConfig) -> np.ndarray:
    """One step of the dynamics for a batch (see the module docstring). Returns new positions ``[B, 2]``."""
    pos = _as_batch(pos)
    act = clip_actions(_as_batch(actions, pos.shape[0]), cfg.max_step)
    lay = _as_batch(layout, pos.shape[0])
    new = pos + act
    stop = blocked(pos, new, lay, cfg)
    return np.where(stop[:, None], pos, new)


def room_of(pos, layout) -> np.ndarray:
    """0 for the left room (x below the wall's centre), 1 for the right one."""
    pos, lay = _as_batch(pos), _as_batch(layout)
    return (pos[:, 0] > lay[:, 0]).astype(np.int64)


def _wall_masks(layout: np.ndarray, cfg: TwoRoomsConfig) -> np.ndarray:
    s = cfg.size
    idx = np.arange(s, dtype=np.float64)
    col, row = idx[None, None, :], idx[None, :, None]
    border = (col < cfg.border) | (col > s - 1 - cfg.border) | (row < cfg.border) | (row > s - 1 - cfg.border)
    wx, dy, dh = (layout[:, i, None, None] for i in range(3))
    band = np.abs(col - wx) <= cfg.half_width
    door = np.abs(row - dy) <= dh
    return border | (band & ~door)


def render(pos, layout, cfg: TwoRoomsConfig) -> np.ndarray:
    """uint8 RGB frames ``[B, size, size, 3]`` of agents at ``pos`` ``[B, 2]`` in ``layout`` ``[B, 3]``."""
    pos = _as_batch(pos)
    lay = _as_batch(layout, pos.shape[0])
    s = cfg.size
    idx = np.arange(s, dtype=np.float32)
    gx = np.exp(-((idx[None, :] - pos[:, 0:1].astype(np.float32)) ** 2) / (2 * cfg.sigma**2))  # [B, W]
    gy = np.exp(-((idx[None, :] - pos[:, 1:2].astype(np.float32)) ** 2) / (2 * cfg.sigma**2))  # [B, H]
    blob = gy[:, :, None] * gx[:, None, :]  # [B, H, W]
    walls = _wall_masks(lay, cfg)[..., None]
    img = np.where(walls, WALL_RGB, BACKGROUND_RGB)
    img = img * (1 - blob[..., None]) + AGENT_RGB * blob[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def sample_layouts(n: int, cfg: TwoRoomsConfig, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` layouts: the fixed one, or wall x and door y uniform over their integer ranges."""
    if cfg.layout == "fixed":
        return np.tile(np.array([cfg.fixed_wall_x, cfg.fixed_door_y, cfg.door_half], np.float64), (n, 1))
    wx = rng.integers(cfg.wall_x_range[0], cfg.wall_x_range[1] + 1, size=n)
    dy = rng.integers(cfg.door_y_range[0], cfg.door_y_range[1] + 1, size=n)
    return np.stack([wx, dy, np.full(n, cfg.door_half)], axis=1).astype(np.float64)


def sample_in_room(rooms: np.ndarray, layout: np.ndarray, cfg: TwoRoomsConfig, rng: np.random.Generator,
                   margin: float | None = None) -> np.ndarray:
    """Uniform positions ``[n, 2]`` in the given rooms, ``margin`` (default ``2*sigma``) away from every wall."""
    m = 2 * cfg.sigma if margin is None else margin
    rooms = np.asarray(rooms)
    wx = layout[:, 0]
    x_lo = np.where(rooms == 0, cfg.lo + m, wx + cfg.half_width + m)
    x_hi = np.where(rooms == 0, wx - cfg.half_width - m, cfg.hi - m)
    x = x_lo + rng.random(len(rooms)) * (x_hi - x_lo)
    y = cfg.lo + m + rng.random(len(rooms)) * (cfg.hi - cfg.lo - 2 * m)
    return np.stack([x, y], axis=1)


@dataclass
class Episodes:
    """Evaluation episodes: ``start`` ``[n, 2]``, ``goal`` ``[n, 2]``, ``layout`` ``[n, 3]``, their seeds."""

    start: np.ndarray
    goal: np.ndarray
    layout: np.ndarray
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


TASKS = ("opposite", "same")


def eval_episode(i: int, cfg: TwoRoomsConfig, seed: int = 0, task: str = "opposite") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(start, goal, layout)`` of evaluation episode ``i``, drawn from the stream
    ``(seed, "two-rooms-eval", layout kind, i)`` alone. ``task``: start and goal in ``opposite`` rooms (the task:
    the straight line is blocked, a planner must find the door) or in the ``same`` room (a diagnostic that greedy
    descent of the distance solves)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    rng = numpy_generator(int(seed), "two-rooms-eval", cfg.layout, int(i))
    lay = sample_layouts(1, cfg, rng)
    first = int(rng.integers(0, 2))
    start = sample_in_room(np.array([first]), lay, cfg, rng)
    goal = sample_in_room(np.array([1 - first if task == "opposite" else first]), lay, cfg, rng)
    return start[0], goal[0], lay[0]


def eval_episodes(n: int, cfg: TwoRoomsConfig, seed: int = 0, task: str = "opposite") -> Episodes:
    """Episodes ``0 .. n-1`` of :func:`eval_episode`: the first 20 of 50 are the 20 of a 20-episode evaluation."""
    eps = [eval_episode(i, cfg, seed, task) for i in range(n)]
    return Episodes(*(np.stack([e[k] for e in eps]) for k in range(3)), np.arange(n))


def geodesic_distance(goal, layout, cfg: TwoRoomsConfig) -> np.ndarray:
    """Shortest-path distance ``[size, size]`` (rows, cols) from every free pixel to ``goal`` around the
    walls (8-connected Dijkstra on the pixel grid; inf on walls). The oracle's cost."""
    import heapq

    lay = _as_batch(layout)
    walls = _wall_masks(lay, cfg)[0]
    s = cfg.size
    dist = np.full((s, s), np.inf)
    gx, gy = (int(round(float(v))) for v in np.asarray(goal, dtype=np.float64).reshape(2))
    gx, gy = min(max(gx, cfg.border), s - 1 - cfg.border), min(max(gy, cfg.border), s - 1 - cfg.border)
    dist[gy, gx] = 0.0
    heap = [(0.0, gy, gx)]
    steps = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
             (-1, -1, 2**0.5), (-1, 1, 2**0.5), (1, -1, 2**0.5), (1, 1, 2**0.5)]
    while heap:
        d, r, c = heapq.heappop(heap)
        if d > dist[r, c]:
            continue
        for dr, dc, w in steps:
            rr, cc = r + dr, c + dc
            if 0 <= rr < s and 0 <= cc < s and not walls[rr, cc] and d + w < dist[rr, cc]:
                if dr and dc and (walls[r, cc] or walls[rr, c]):
                    continue  # no corner cutting
                dist[rr, cc] = d + w
                heapq.heappush(heap, (d + w, rr, cc))
    return dist


class TwoRoomsEnv:
    """The gymnasium calling convention over the batched functions (one agent).

    ``reset(seed=i)`` starts evaluation episode ``i`` of :func:`eval_episodes` (so ``reset(seed=i)`` is the
    same start, goal and layout everywhere); ``options={"start":..., "goal":..., "layout":...}`` overrides them.
    ``obs`` is the uint8 frame; ``info`` carries ``pos``, ``goal``, ``layout``, ``goal_frame``, ``distance``.
    Reward is minus the distance to the goal; ``terminated`` stays False (success is judged at the end of
    the budget), ``truncated`` becomes True when the budget is spent.
    """

    def __init__(self, cfg: TwoRoomsConfig | None = None, eval_seed: int = 0) -> None:
        self.cfg = cfg or TwoRoomsConfig()
        self.eval_seed = int(eval_seed)
        self.pos = self.goal = self.layout = None
        self.t = 0

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.pos, self.goal, self.layout = eval_episode(0 if seed is None else int(seed), self.cfg, self.eval_seed)
        for k in ("start", "goal", "layout"):
            if options and k in options:
                v = np.asarray(options[k], dtype=np.float64).reshape(-1)
                setattr(self, "pos" if k == "start" else k, v)
        self.t = 0
        return self._obs(), self._info()

    def step(self, action):
        if self.pos is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        self.pos = move(self.pos, a, self.layout, self.cfg)[0]
        self.t += 1
        info = self._info()
        return self._obs(), -info["distance"], False, self.t >= self.cfg.budget, info

    def _obs(self) -> np.ndarray:
        return render(self.pos, self.layout, self.cfg)[0]

    def _info(self) -> dict:
        d = float(np.linalg.norm(self.pos - self.goal))
        return {"pos": self.pos.copy(), "goal": self.goal.copy(), "layout": self.layout.copy(), "distance": d,
                "success": d < self.cfg.success_radius, "goal_frame": render(self.goal, self.layout, self.cfg)[0]}
