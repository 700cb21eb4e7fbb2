"""What planning through the conv-map world model costs, timed side by side against what it replaced.

    python bench/world_plan_speed.py          # conv-map's shape: 8x8 grid, 32 channels, 32 hidden, depth 2, metric head

Two changes: the conv predictor runs channels-last on the token-major latent (``[N, h*w*C]`` is NHWC already)
instead of copying it into NCHW and back at every step, and the planner's cost takes the energy one imagined step
at a time instead of stacking the whole rollout (``[E*N, H, D]``: 1 GB at 50 episodes x 100 samples x 24 steps of
2048-d latents). Rows: one predictor step (inference), one training step of the predictor (forward + backward), and
one cost evaluation of a CEM iteration (``--episodes`` x ``--samples`` candidates of ``--horizon`` actions), old
and new in alternating rounds in one process (random weights: the arithmetic is the trained model's), with the
largest difference of their outputs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from videojepa.models.world import ConvPredictor, WorldModel, WorldModelConfig
from videojepa.planning.agent import WorldModelAgent
from videojepa.planning.planners import PlannerConfig


def nchw_forward(p: ConvPredictor, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The earlier forward: the latent copied into NCHW, the action broadcast as NCHW planes, copied back."""
    lead = z.shape[:-1]
    h, w = p.grid
    x = z.reshape(-1, h, w, p.channels).permute(0, 3, 1, 2)
    act = a.reshape(-1, a.shape[-1], 1, 1).expand(-1, -1, h, w)
    dz = p.net(torch.cat([x, act], dim=1).contiguous()).permute(0, 2, 3, 1).reshape(*lead, -1)
    return z + dz


def timed(fn, repeats: int) -> float:
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--horizon", type=int, default=24)
    ap.add_argument("--train-batch", type=int, default=12 * 96, help="latents per training step (12 windows x 96)")
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    p = ConvPredictor((a.grid, a.grid), a.channels, 2, a.hidden, a.depth)
    for m in p.net:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.05)  # the last layer starts at zero: give it weights to time
    d = a.grid * a.grid * a.channels
    batch = a.episodes * a.samples
    z, act = torch.randn(batch, d), torch.randn(batch, 2)
    zt, actt = torch.randn(a.train_batch, d), torch.randn(a.train_batch, 2)
    with torch.no_grad():
        diff = {"step": (p(z, act) - nchw_forward(p, z, act)).abs().max().item()}

    # a conv-map world model of the same shape with a metric head, planned with the metric energy summed
    cfg = WorldModelConfig(encoder="conv_map", predictor="conv", channels=(16, 32, a.channels), hidden=a.hidden,
                           predictor_depth=a.depth, metric_dim=64)
    model = WorldModel(cfg).eval()
    model.predictor.load_state_dict(p.state_dict())
    agent = WorldModelAgent(model, PlannerConfig(energy="metric", horizon=a.horizon, samples=a.samples))
    frames = torch.randint(0, 255, (a.episodes, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        agent.goal_z = model.encode(frames.flip(0))
        z0 = model.encode(frames)
    cands = torch.randn(a.episodes, a.samples, a.horizon, 2)
    new_cost = agent.rollout_cost(z0, torch.zeros(a.episodes, 2))

    def old_cost():  # NCHW predictor, the whole rollout stacked, then the energy
        orig = ConvPredictor.forward
        ConvPredictor.forward = nchw_forward
        try:
            zz = z0[:, None].expand(a.episodes, a.samples, -1).reshape(batch, -1)
            pred = model.rollout(zz, cands.reshape(batch, a.horizon, 2))
            return agent.energy(pred.reshape(a.episodes, a.samples, a.horizon, -1), agent.goal_z)
        finally:
            ConvPredictor.forward = orig

    with torch.no_grad():
        diff["cost"] = (old_cost() - new_cost(cands)).abs().max().item()

    def infer(f):
        with torch.no_grad():
            f(p, z, act)

    def train(f):
        p.zero_grad(set_to_none=True)
        f(p, zt, actt).square().mean().backward()

    def cost(f):
        with torch.no_grad():
            f()

    calls = {"predictor step": (lambda: infer(nchw_forward), lambda: infer(ConvPredictor.forward)),
             "predictor training step": (lambda: train(nchw_forward), lambda: train(ConvPredictor.forward)),
             "CEM iteration's cost": (lambda: cost(old_cost), lambda: cost(lambda: new_cost(cands)))}
    rows = {k: ([], []) for k in calls}
    for old, new in calls.values():  # warm-up
        old()
        new()
    for _ in range(a.rounds):
        for k, (old, new) in calls.items():
            reps = 1 if k.startswith("CEM") else 3
            rows[k][0].append(timed(old, reps))
            rows[k][1].append(timed(new, reps))
    print(f"# torch {torch.__version__}, {a.threads} threads, grid {a.grid}x{a.grid}x{a.channels}, hidden {a.hidden}, "
          f"depth {a.depth}; {a.episodes} episodes x {a.samples} samples = {batch} latents, horizon {a.horizon}, "
          f"metric energy; training batch {a.train_batch}; {a.rounds} alternating rounds, medians")
    print("| call | before (s) | now (s) | speed-up |\n|---|---:|---:|---:|")
    for k, (old, new) in rows.items():
        o, n = statistics.median(old), statistics.median(new)
        print(f"| {k} | {o:.4f} | {n:.4f} | {o / n:.2f}x |")
    print(f"largest difference: predictor output {diff['step']:.2e}, cost {diff['cost']:.2e}")


if __name__ == "__main__":
    main()
