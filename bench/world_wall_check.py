"""Does a world model's imagination respect the wall? Pushing into it, imagined against real.

    python bench/world_wall_check.py --world runs/planning_bench/world-conv-metric-4k [--energy metric]

On opposite-room evaluation episodes (random layouts) whose start is level with the wall and not with the door, the
agent pushes straight at the wall (1.5 px per step, 24 steps): the true dynamics stop it at the wall. Read off the
world model: the position its state probe gives the imagined latents (against the true one, and the share of
episodes the imagination puts on the far side of the wall), and the energy to the goal, real frames against
imagined latents. A model that walks through walls in imagination shows its planner a straight road to a goal in
the other room, and the agent ends against the wall. One-step predictions from the real frame before each step tell
whether the predictor knows the rule (a push into the wall moves nothing) or loses it as its rollout drifts.

Then what the latent holds: MLP probes (two hidden layers of 256, 1500 Adam steps, on 75% of ~3,600 random frames:
random layouts, agent anywhere off the wall; error on the other 25%) read the agent's position, the wall's x and the
door's y from the latents. A model that does not hold the door cannot know where the wall stops it. Prints two
tables; figures in bench/RESULTS_planning.md.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from videojepa.envs.two_rooms import TwoRoomsConfig, eval_episodes, move, render
from videojepa.training.world import load_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--energy", default="metric", choices=("l2", "l1", "metric"))
    ap.add_argument("--episodes", type=int, default=100, help="evaluation episodes to draw from (default 100)")
    ap.add_argument("--no-layout", action="store_true", help="skip the probes of what the latent holds")
    ap.add_argument("--refit-probe", action="store_true",
                    help="read positions with an MLP probe fitted here (as the layout probes) instead of the run's own "
                         "state probe, which trains online beside the model and can lag it")
    a = ap.parse_args()
    m, _, _ = load_world(a.world)
    env = TwoRoomsConfig(layout="random")
    scale = float(m.state_scale)
    if a.refit_probe:
        net, mu, sd, err = fit_probe(m, env, targets=2)
        print(f"refitted state probe: held-out error x {err[0]:.2f} px, y {err[1]:.2f} px")
        read = lambda z: (net(z.float()) * sd + mu).detach()  # noqa: E731
    else:
        read = lambda z: m.read_state(z) * scale  # noqa: E731
    eps = eval_episodes(a.episodes, env, task="opposite")
    lay = eps.layout
    keep = np.abs(eps.start[:, 1] - lay[:, 1]) > lay[:, 2] + 3  # level with the wall, not with the door
    start, goal, lay = eps.start[keep], eps.goal[keep], lay[keep]
    n, steps, ks = len(start), 24, (1, 4, 8, 16, 24)
    side = np.sign(lay[:, 0] - start[:, 0])  # +1: the wall is to the right
    acts = np.zeros((n, steps, 2))
    acts[:, :, 0] = 1.5 * side[:, None]
    p, real = start.copy(), []
    for k in range(steps):
        p = move(p, acts[:, k], lay, env)
        real.append(p.copy())
    real = np.stack(real, 1)  # [n, steps, 2]
    with torch.no_grad():
        z0 = m.encode(torch.from_numpy(render(start, lay, env)))
        zi = m.rollout(z0, torch.from_numpy(acts).float())
        frames = render(real.reshape(-1, 2), np.repeat(lay, steps, 0), env)
        zr = m.encode(torch.from_numpy(frames)).reshape(n, steps, -1)
        zg = m.encode(torch.from_numpy(render(goal, lay, env)))
        xi = read(zi).numpy()
        xr = read(zr).numpy()
        e_real = m.distance(zr, zg[:, None], a.energy).numpy()
        e_imag = m.distance(zi, zg[:, None], a.energy).numpy()
        e0 = m.distance(z0, zg, a.energy).numpy()
        # one step from the *real* frame before: does the predictor know the rule, or does it lose it by drifting?
        zprev = torch.cat([z0[:, None], zr[:, :-1]], 1)
        z1 = m.step(zprev, torch.from_numpy(acts).float())
        x1 = read(z1).numpy()
        mse_pred = (z1 - zr).pow(2).mean(-1).numpy()  # the one-step error in the latent, against standing still
        mse_id = (zprev - zr).pow(2).mean(-1).numpy()
    prev = np.concatenate([start[:, None], real[:, :-1]], 1)
    xprev = np.concatenate([read(z0[:, None]).detach().numpy(), xr[:, :-1]], 1)
    through = (np.sign(lay[:, None, 0] - xi[..., 0]) != side[:, None])  # imagined on the far side of the wall
    print(f"# {a.world}, energy {a.energy}: {n} of {a.episodes} opposite-room episodes start level with the wall; "
          f"the agent pushes at it, 1.5 px per step; mean over episodes (energy at the start {e0.mean():.2f})")
    print("| steps | " + " | ".join(str(k) for k in ks) + " |")
    print("|---|" + "---:|" * len(ks))
    rows = (("true x distance moved (px)", np.abs(real[..., 0] - start[:, None, 0])),
            ("imagined x distance moved, state probe (px)", np.abs(xi[..., 0] - start[:, None, 0])),
            ("probe on the real frames, x moved (px)", np.abs(xr[..., 0] - start[:, None, 0])),
            ("imagined position error, probe vs truth (px)", np.linalg.norm(xi - real, axis=-1)),
            ("share imagined past the wall (%)", 100.0 * through),
            ("this step alone, true x move (px)", np.abs(real[..., 0] - prev[..., 0])),
            ("this step alone from the real frame before, predicted x move, probe (px)",
             np.abs(x1[..., 0] - xprev[..., 0])),
            ("energy to the goal, real frames", e_real),
            ("energy to the goal, imagined", e_imag))
    for label, v in rows:
        print(f"| {label} | " + " | ".join(f"{v[:, k - 1].mean():.2f}" for k in ks) + " |")
    at = np.abs(real[..., 0] - prev[..., 0]) < 1e-6  # steps the wall stopped: true move 0
    free = np.abs(real[..., 0] - prev[..., 0]) > 1.4
    one = np.abs(x1[..., 0] - xprev[..., 0])
    print(f"\none step from a real frame, probe-read x move: pushing into the wall (true 0 px) {one[at].mean():.2f} px "
          f"over {int(at.sum())} steps; free moves (true 1.50 px) {one[free].mean():.2f} px over {int(free.sum())} steps")
    print(f"one-step latent error (mean squared, per dimension): free moves predictor {mse_pred[free].mean():.4f} vs "
          f"'nothing moves' {mse_id[free].mean():.4f}; pushes the wall stopped: predictor {mse_pred[at].mean():.4f} "
          f"('nothing moves' is exact there). A predictor whose error exceeds a whole step's change cannot show a "
          f"collision, which is one step's change")
    if a.no_layout:
        return
    _, _, sd, err = fit_probe(m, env)
    spread = sd.tolist()
    print("\n| MLP probe error (px), held-out frames | agent x | agent y | wall x | door y |\n|---|---:|---:|---:|---:|")
    print("| this world model's latents | " + " | ".join(f"{e:.2f}" for e in err) + " |")
    print("| predicting the mean (the targets' std) | " + " | ".join(f"{e:.1f}" for e in spread) + " |")


def fit_probe(m, env: TwoRoomsConfig, n: int = 4000, seed: int = 0, targets: int = 4):
    """An MLP probe from the latents to (agent x, agent y, wall x, door y)[:targets], fitted on 75% of random frames:
    ``(net, mean, std, held-out mean absolute error per target)``; ``net(z) * std + mean`` reads the targets."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    lo, hi = env.lo, env.hi
    wx = rng.integers(env.wall_x_range[0], env.wall_x_range[1] + 1, n).astype(float)
    dy = rng.integers(env.door_y_range[0], env.door_y_range[1] + 1, n).astype(float)
    lay = np.stack([wx, dy, np.full(n, float(env.door_half))], 1)
    pos = rng.uniform(lo, hi, (n, 2))
    ok = np.abs(pos[:, 0] - wx) > env.half_width + 1.5
    lay, pos = lay[ok], pos[ok]
    with torch.no_grad():
        z = torch.cat([m.encode(torch.from_numpy(render(pos[i:i + 500], lay[i:i + 500], env)))
                       for i in range(0, len(pos), 500)]).float()
    y = torch.from_numpy(np.c_[pos, lay[:, :2]][:, :targets]).float()
    mu, sd = y.mean(0), y.std(0)
    k = int(0.75 * len(z))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, targets))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(1500):
        idx = torch.randint(0, k, (256,), generator=g)
        loss = (net(z[idx]) - (y[idx] - mu) / sd).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        err = ((net(z[k:]) * sd + mu) - y[k:]).abs().mean(0)
    return net.eval(), mu, sd, err.tolist()


if __name__ == "__main__":
    main()
