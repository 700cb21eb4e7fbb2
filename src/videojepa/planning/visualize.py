"""Pictures of planning: episode GIFs, energy landscapes, and counterfactual rollouts ("what if I had moved left?")."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..envs.two_rooms import Episodes, TwoRoomsConfig, move, render

__all__ = ["episodes_gif", "energy_grids", "energy_landscape", "energy_diagnostics", "descent_reaches", "imagine",
           "plot_imagination"]

SCALE = 4


def _upscale(frame: np.ndarray, k: int = SCALE) -> np.ndarray:
    return frame.repeat(k, 0).repeat(k, 1)


def _draw(img, pts: np.ndarray, color, width: int = 2, dot: bool = False):
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    xy = [(float(x) * SCALE + SCALE / 2, float(y) * SCALE + SCALE / 2) for x, y in pts]
    if dot:
        x, y = xy[0]
        d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=color, width=2)
    elif len(xy) > 1:
        d.line(xy, fill=color, width=width)


def episodes_gif(result: dict, episodes: Episodes, env_cfg: TwoRoomsConfig, path: str | Path, n: int = 4,
                 every: int = 2) -> Path:
    """Tile ``n`` recorded episodes side by side: the frame, the goal (green ring), the path so far (white) and the
    current plan as the model imagines it (yellow: the state probe read off the imagined latents; for the oracle,
    the simulated plan). Needs ``run_episodes(..., record=True)``."""
    from PIL import Image

    traj = result["trajectories"][:n]
    plans = result["plans"]
    ok = result["per_episode_success"][:n]
    frames = []
    t_max = traj.shape[1]
    for t in range(0, t_max, every):
        tiles = []
        plan = max((p for p in plans if p["t"] <= t), key=lambda p: p["t"], default=None)
        for i in range(len(traj)):
            img = Image.fromarray(_upscale(render(traj[i, t], episodes.layout[i], env_cfg)[0]))
            _draw(img, [episodes.goal[i]], (60, 220, 90), dot=True)
            _draw(img, traj[i, : t + 1], (235, 235, 235), width=1)
            if plan is not None and plan.get("states") is not None:
                _draw(img, np.concatenate([traj[i, t:t + 1], plan["states"][i]]), (250, 210, 40), width=1)
            tiles.append(np.asarray(img))
        frame = np.concatenate(tiles, 1)
        frames.append(Image.fromarray(frame))
    label = ", ".join("success" if s else "fail" for s in ok)
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0, comment=label.encode())
    return path


def _energy_grid(model, goal: np.ndarray, layout: np.ndarray, env_cfg: TwoRoomsConfig, energy: str, device,
                 stride: int) -> dict:
    """:func:`~videojepa.planning.agent.energy_field` on a ``stride``-px grid and the true geodesic distance there."""
    from .agent import energy_field

    return grid_from_field(energy_field(model, goal, layout, env_cfg, energy, device, stride=stride), goal, layout,
                           env_cfg, stride)


def grid_from_field(field: np.ndarray, goal: np.ndarray, layout: np.ndarray, env_cfg: TwoRoomsConfig,
                    stride: int = 2) -> dict:
    """Any energy ``field`` ``[size, size]`` (inf where the agent cannot stand) as the grid that
    :func:`energy_diagnostics` and :func:`energy_landscape` read, with the true geodesic distance beside it."""
    from ..envs.two_rooms import geodesic_distance

    s, b = env_cfg.size, env_cfg.border
    field = field[b:s - b:stride, b:s - b:stride]
    geo_field = geodesic_distance(goal, layout, env_cfg)
    geo = geo_field[b:s - b:stride, b:s - b:stride]
    xs, ys = np.meshgrid(np.arange(b, s - b, stride), np.arange(b, s - b, stride))
    return {"xs": xs, "ys": ys, "free": (np.isfinite(field) & np.isfinite(geo)).ravel(), "energy": field.ravel(),
            "geodesic": geo.ravel(), "geo_field": geo_field}


def energy_grids(model, episodes: Episodes, env_cfg: TwoRoomsConfig, n: int, energy: str = "l2", device="cpu",
                 stride: int = 2) -> list[dict]:
    """The energy and the true distance on a ``stride``-px grid for the first ``n`` episodes (each grid encodes one
    frame per free position): computed once and handed to :func:`energy_diagnostics` and :func:`energy_landscape`."""
    return [_energy_grid(model, episodes.goal[i], episodes.layout[i], env_cfg, energy, device, stride)
            for i in range(min(n, len(episodes)))]


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def descent_reaches(energy: np.ndarray, geodesic: np.ndarray, radius: float) -> np.ndarray:
    """Steepest descent of an energy on a grid: ``energy`` and ``geodesic`` ``[H, W]`` (``inf`` where the agent cannot
    stand). From every free cell, step to the lowest of its 8 free neighbours while that is lower than the cell, until
    a local minimum; returns ``[H, W]`` bool, True where that minimum lies within ``radius`` of the goal (its geodesic
    distance). The share of True cells is the share of places from which a greedy planner with a long enough
    horizon and perfect dynamics ends at the goal: 1 for the geodesic itself, lower for any energy with a minimum
    against the wall. Grid neighbours must not straddle a wall (a grid of stride <= 3 px on a 3-px wall)."""
    h, w = energy.shape
    free = np.isfinite(energy) & np.isfinite(geodesic)
    e = np.where(free, energy, np.inf)
    idx = np.arange(h * w).reshape(h, w)
    best_e, best_i = e.copy(), idx.copy()
    pad_e = np.pad(e, 1, constant_values=np.inf)
    pad_i = np.pad(idx, 1, constant_values=-1)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            ne = pad_e[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            ni = pad_i[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            lower = ne < best_e
            best_e = np.where(lower, ne, best_e)
            best_i = np.where(lower, ni, best_i)
    nxt = best_i.ravel()
    for _ in range(int(np.ceil(np.log2(h * w))) + 1):  # pointer jumping: every chain reaches its minimum
        nxt = nxt[nxt]
    return (geodesic.ravel()[nxt] <= radius).reshape(h, w) & free


def energy_diagnostics(model, episodes: Episodes, env_cfg: TwoRoomsConfig, n: int = 5, energy: str = "l2",
                       device="cpu", stride: int = 2, grids: list[dict] | None = None) -> dict:
    """How well the energy would guide a planner, over the first ``n`` episodes (every free position of a
    ``stride``-px grid): ``spearman``, the rank correlation of the energy with the true geodesic distance to the
    goal (1: places ordered by how far they really are, around the wall; ~0: an energy flat away from the goal);
    ``descent_opposite`` / ``descent_same``, the share of positions in the other room / the goal's room from which
    steepest descent of the energy ends within the success radius of the goal (:func:`descent_reaches`).
    ``grids``: from :func:`energy_grids` (its first ``n`` are used), so as not to encode the positions again."""
    grids = (grids or energy_grids(model, episodes, env_cfg, n, energy, device, stride))[:n]
    rs, opp, same = [], [], []
    for i, g in enumerate(grids):
        f = g["free"]
        a, b = _rank(g["energy"][f]), _rank(g["geodesic"][f])
        rs.append(float(np.corrcoef(a, b)[0, 1]))
        shape = g["xs"].shape
        ok = descent_reaches(g["energy"].reshape(shape), g["geodesic"].reshape(shape), env_cfg.success_radius).ravel()
        other = (g["xs"].ravel() > episodes.layout[i][0]) != (episodes.goal[i][0] > episodes.layout[i][0])
        opp.append(ok[f & other].mean() if (f & other).any() else np.nan)
        same.append(ok[f & ~other].mean() if (f & ~other).any() else np.nan)
    return {"spearman": float(np.mean(rs)), "descent_opposite": float(np.nanmean(opp)),
            "descent_same": float(np.nanmean(same))}


@torch.no_grad()
def energy_landscape(model, episodes: Episodes, env_cfg: TwoRoomsConfig, path: str | Path, n: int = 3,
                     energy: str = "l2", device="cpu", stride: int = 2, grids: list[dict] | None = None) -> Path:
    """For ``n`` episodes: the energy of standing at each free position (its frame encoded, distance to the goal's
    latent), next to the true geodesic distance, and where steepest descent of the energy ends at the goal
    (:func:`descent_reaches`: yellow, it does; dark, a false minimum captures it). A good world-model energy
    decreases towards the goal *through the door*; one that follows the straight line has a minimum against the
    wall. ``grids``: from :func:`energy_grids` (its first ``n`` are drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = (grids or energy_grids(model, episodes, env_cfg, n, energy, device, stride))[:n]
    n = len(grids)
    fig, ax = plt.subplots(n, 4, figsize=(13, 3.3 * n), squeeze=False)
    for i, g in enumerate(grids):
        lay = episodes.layout[i]
        xs, ys = g["xs"], g["ys"]
        grid = np.where(g["free"], g["energy"], np.nan).reshape(xs.shape)
        geo = g["geo_field"]
        ax[i, 0].imshow(render(episodes.start[i], lay, env_cfg)[0])
        ax[i, 0].plot(*episodes.goal[i], "o", mfc="none", mec="lime", ms=10)
        ax[i, 0].set_title(f"episode {i}: start, goal (green)")
        im = ax[i, 1].imshow(grid, extent=(xs.min() - 1, xs.max() + 1, ys.max() + 1, ys.min() - 1), cmap="viridis")
        ax[i, 1].plot(*episodes.goal[i], "o", mfc="none", mec="red", ms=10)
        ax[i, 1].set_title(f"world-model energy ({energy})")
        fig.colorbar(im, ax=ax[i, 1], fraction=0.046)
        im2 = ax[i, 2].imshow(np.where(np.isfinite(geo), geo, np.nan), cmap="viridis")
        ax[i, 2].set_title("true distance around the wall")
        fig.colorbar(im2, ax=ax[i, 2], fraction=0.046)
        reach = descent_reaches(g["energy"].reshape(xs.shape), g["geodesic"].reshape(xs.shape), env_cfg.success_radius)
        ax[i, 3].imshow(np.where(g["free"].reshape(xs.shape), reach.astype(float), np.nan), vmin=0, vmax=1,
                        extent=(xs.min() - 1, xs.max() + 1, ys.max() + 1, ys.min() - 1), cmap="viridis")
        ax[i, 3].plot(*episodes.goal[i], "o", mfc="none", mec="red", ms=10)
        ax[i, 3].set_title(f"descent ends at the goal: {reach[g['free'].reshape(xs.shape)].mean():.0%}")
        for a in ax[i]:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}


@torch.no_grad()
def imagine(model, start: np.ndarray, layout: np.ndarray, env_cfg: TwoRoomsConfig, sequences: dict[str, np.ndarray],
            state_scale: float = 64.0, device="cpu") -> dict:
    """Roll each named action sequence ``[H, 2]`` out from one start, in imagination (the predictor, positions read
    by the state probe) and for real (the simulator). Returns ``{name: {"imagined": [H+1, 2], "true": [H+1, 2]}}``."""
    z0 = model.encode(torch.from_numpy(render(start, layout, env_cfg)).to(device))  # [1, D]
    out = {}
    for name, seq in sequences.items():
        a = torch.as_tensor(np.asarray(seq, np.float32))[None].to(device)
        pred = model.rollout(z0, a, torch.as_tensor(np.asarray(start, np.float32))[None].to(device))[0]
        pos = model.read_state(torch.cat([z0, pred])).cpu().numpy() * state_scale
        true = [np.asarray(start, np.float64)]
        for act in np.asarray(seq, np.float64):
            true.append(move(true[-1], act, layout, env_cfg)[0])
        out[name] = {"imagined": pos, "true": np.stack(true)}
    return out


def plot_imagination(start: np.ndarray, layout: np.ndarray, env_cfg: TwoRoomsConfig, rolled: dict,
                     path: str | Path, title: str = "") -> Path:
    """The start frame with each counterfactual: imagined path (solid) vs what the simulator does (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 7.2))
    ax.imshow(render(start, layout, env_cfg)[0])
    for i, (name, r) in enumerate(rolled.items()):
        c = f"C{i % 10}"
        ax.plot(r["imagined"][:, 0], r["imagined"][:, 1], "-o", color=c, ms=2, label=f"{name}: imagined")
        ax.plot(r["true"][:, 0], r["true"][:, 1], ":", color=c, lw=2, label=f"{name}: true")
    ax.set_xlim(-0.5, env_cfg.size - 0.5)
    ax.set_ylim(env_cfg.size - 0.5, -0.5)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, frameon=False)
    ax.set_title(title or "what if? imagined rollouts (solid) vs the simulator (dotted)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


@torch.no_grad()
def decoded_rollout(model, decoder, start: np.ndarray, layout: np.ndarray, env_cfg: TwoRoomsConfig,
                    actions: np.ndarray, device="cpu") -> dict:
    """One action sequence ``[H, 2]`` from ``start``, for real (simulator frames) and in imagination (the world
    model's rollout from the first frame's latent), both decoded to frames by ``decoder`` (a frame decoder,
    ``videojepa decoder train --world``). Returns uint8 ``real``, ``reconstructed`` (the decoded latents of the real
    frames) and ``imagined`` ``[H+1, size, size, 3]``, and ``psnr_imagined`` / ``psnr_reconstructed`` ``[H+1]`` (dB
    against the real frames)."""
    pos = [np.asarray(start, np.float64)]
    for act in np.asarray(actions, np.float64):
        pos.append(move(pos[-1], act, layout, env_cfg)[0])
    real = render(np.stack(pos), np.tile(np.asarray(layout), (len(pos), 1)), env_cfg)  # [H+1, s, s, 3]
    z_real = model.encode(torch.from_numpy(real).to(device))  # [H+1, D]
    a = torch.as_tensor(np.asarray(actions, np.float32))[None].to(device)
    z_img = torch.cat([z_real[:1], model.rollout(z_real[:1], a, torch.as_tensor(np.asarray(start, np.float32))[None]
                                                 .to(device))[0]])

    def to_uint8(z):
        x = decoder(z).clamp(-0.5, 0.5) + 0.5  # [N, 3, H, W] in [0, 1]
        return (x.movedim(1, -1).cpu().numpy() * 255).round().astype(np.uint8)

    rec, img = to_uint8(z_real), to_uint8(z_img)
    ref = real.astype(np.float64) / 255

    def psnr(x):
        from ..training.decoder import psnr_db

        return psnr_db(((x.astype(np.float64) / 255 - ref) ** 2).reshape(len(x), -1).mean(1))

    return {"real": real, "reconstructed": rec, "imagined": img, "psnr_imagined": psnr(img),
            "psnr_reconstructed": psnr(rec)}


def write_decoded_rollout(r: dict, stem: str | Path, fps: float = 4) -> dict:
    """``stem.gif`` (real | decoded latent | decoded imagination, over time) and ``stem.png`` (the three rows at
    every other step)."""
    from ..viz.media import auto_scale, grid, side_by_side, upscale, write_png, write_video

    k = auto_scale(*r["real"].shape[1:3])
    names = ["real", "decoded latent", "imagined (decoded)"]
    panels = [upscale(r[key], k) for key in ("real", "reconstructed", "imagined")]
    paths = write_video(side_by_side(panels, labels=names), stem, formats=("gif",), fps=fps)
    cols = list(range(0, len(r["real"]), max(1, len(r["real"]) // 8)))
    png = write_png(grid([[p[t] for t in cols] for p in panels], row_labels=names, col_labels=[f"t={t}" for t in cols]),
                    Path(f"{stem}.png"))
    return {"gif": paths["gif"], "png": png}
