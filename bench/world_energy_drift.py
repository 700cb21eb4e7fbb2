"""Does a world model's energy survive imagination? Real frames vs imagined latents along the same moves.

    python bench/world_energy_drift.py --world runs/planning_bench/world-conv-metric [--energy metric]

On 50 same-room evaluation episodes (random layouts): (1) the energy between the start's latent and the latents the
predictor imagines when standing still (a faithful model keeps it near 0); (2) the energy to the goal along a
straight walk towards it (1.5 px per step), read from the real frames and from the imagined latents; (3) the energy
between imagined and real latents at each step. Prints a table; figures in bench/RESULTS_planning.md.
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
    ap.add_argument("--episodes", type=int, default=50)
    a = ap.parse_args()
    m, _, _ = load_world(a.world)
    env = TwoRoomsConfig(layout="random")
    eps = eval_episodes(a.episodes, env, task="same")
    n, steps, ks = a.episodes, 24, (1, 4, 8, 16, 24)
    with torch.no_grad():
        z0 = m.encode(torch.from_numpy(render(eps.start, eps.layout, env)))
        still = m.distance(m.rollout(z0, torch.zeros(n, steps, 2)), z0[:, None], a.energy)
        step = eps.goal - eps.start
        step = step / np.linalg.norm(step, axis=1, keepdims=True) * 1.5
        acts = np.repeat(step[:, None], steps, 1)
        p, real = eps.start.copy(), []
        for k in range(steps):
            p = move(p, acts[:, k], eps.layout, env)
            real.append(p.copy())
        frames = render(np.concatenate(real), np.repeat(eps.layout, steps, 0), env)
        zr = m.encode(torch.from_numpy(frames)).reshape(steps, n, -1).transpose(0, 1)
        zi = m.rollout(z0, torch.from_numpy(acts).float())
        zg = m.encode(torch.from_numpy(render(eps.goal, eps.layout, env)))
        to_goal_real = m.distance(zr, zg[:, None], a.energy)
        to_goal_imag = m.distance(zi, zg[:, None], a.energy)
        gap = m.distance(zi, zr, a.energy)
    print(f"# {a.world}, energy {a.energy}, {n} same-room episodes; mean over episodes")
    print("| steps ahead | " + " | ".join(str(k) for k in ks) + " |")
    print("|---|" + "---:|" * len(ks))
    for label, v in (("standing still: energy(imagined, start)", still),
                     ("walking to the goal: energy to the goal, real frames", to_goal_real),
                     ("walking to the goal: energy to the goal, imagined", to_goal_imag),
                     ("energy(imagined, real)", gap)):
        print(f"| {label} | " + " | ".join(f"{v[:, k - 1].mean().item():.2f}" for k in ks) + " |")


if __name__ == "__main__":
    main()
