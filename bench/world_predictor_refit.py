"""Is the predictor the bottleneck? Refit a trained world model's predictor alone on its frozen encoder.

    python bench/world_predictor_refit.py --world runs/planning_bench/world-conv-map --out runs/metric/conv-map-refit

The joint training asks the predictor for four things at once (teacher forcing, the rollout, the metric head's
reading along rollouts, standing still on a zero action) while the encoder moves under it. This script freezes
everything but the predictor and trains it on teacher forcing + an ``--rollout``-step rollout only (stopped moves
weighted ``1 + --blocked``), on short windows of the run's own trajectory data, then prints the one-step latent
error on held-out episodes before and after, against predicting "nothing moves" (free moves, and the moves the data
shows stopped by a wall, where "nothing moves" is exact). ``--hidden`` / ``--depth`` train a fresh predictor of
another size instead (is it capacity?). ``--data`` refits on another trajectory folder (e.g. one collected with
``world collect --wall-share``: more pushes into the wall); the held-out rows are then printed for both folders.
The refitted model is written as a run folder (the
encoder and every head unchanged) that ``videojepa plan`` and ``bench/world_wall_check.py`` read.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from videojepa.data.trajectories import load_trajectories
from videojepa.training.checkpoint import find_latest, load_checkpoint, run_checkpoint, save_checkpoint
from videojepa.models.world import WorldModel
from videojepa.training.world import _dist, blocked_moves, load_world


@torch.no_grad()
def one_step_errors(m, ds, eps: np.ndarray, window: int = 33, seed: int = 0) -> dict:
    """Mean squared one-step error per latent dimension: predictor vs "nothing moves", free and stopped moves."""
    rng = np.random.default_rng(seed)
    b = ds.windows(*ds.draw(len(eps), window, rng, eps), window)
    z = m.encode(torch.from_numpy(b["frames"]))
    a, s = torch.from_numpy(b["actions"]).float(), torch.from_numpy(b["states"]).float()
    pred = (m.step(z[:, :-1], a) - z[:, 1:]).pow(2).mean(-1)
    ident = (z[:, :-1] - z[:, 1:]).pow(2).mean(-1)
    stop = blocked_moves(a, s)
    return {"free_pred": pred[~stop].mean().item(), "free_identity": ident[~stop].mean().item(),
            "stopped_pred": pred[stop].mean().item(), "stopped_n": int(stop.sum())}


LAGS = (1, 2, 4, 8, 16, 32)


@torch.no_grad()
def lag_distances(m, ds, eps: np.ndarray, window: int = 33, seed: int = 1) -> dict:
    """How fast the latent changes along a trajectory: mean squared distance per dimension between frames ``k``
    steps apart (``LAGS``), against frames of two different episodes (``random``). A smooth code grows with the lag
    up to the random level over the arena's tens of steps; a code that reaches it in a few steps is one whose every
    step is a large, nonlinear change (a narrow energy well, and a hard step for the predictor)."""
    rng = np.random.default_rng(seed)
    b = ds.windows(*ds.draw(len(eps), window, rng, eps), window)
    z = m.encode(torch.from_numpy(b["frames"]))
    out = {f"lag{k}": (z[:, k:] - z[:, :-k]).pow(2).mean().item() for k in LAGS if k < window}
    out["random"] = (z[:, 0] - z[:, 0].roll(1, 0)).pow(2).mean().item()
    return out


@torch.no_grad()
def least_squares_steps(m, ds, train_eps: np.ndarray, val_eps: np.ndarray, n: int = 2000, window: int = 17,
                        seed: int = 2) -> dict:
    """Which form of predictor can say what one free move does to this latent? Closed-form ridge fits of the step
    ``z_{t+1} - z_t`` on free moves of ``n`` training windows, held-out mean squared error per dimension: ``linear``
    in ``[z, a]`` (what an MLP on the concatenation starts from) and ``bilinear`` in ``[z, a, a_1 z, a_2 z, ...]`` (a
    translation rotating periodic features by angles proportional to the move is of this form)."""
    rng = np.random.default_rng(seed)

    def moves(eps, k):
        b = ds.windows(*ds.draw(k, window, rng, eps), window)
        z = m.encode(torch.from_numpy(b["frames"])).double()  # in chunks: no gradient here
        a = torch.from_numpy(b["actions"]).double() / float(m.action_scale)
        free = ~blocked_moves(a, torch.from_numpy(b["states"]).double())
        return z[:, :-1][free], z[:, 1:][free], a[free]

    def feats(z, a, bilinear):
        parts = [z, a, torch.ones_like(a[:, :1])] + ([a[:, i:i + 1] * z for i in range(a.shape[1])] if bilinear else [])
        return torch.cat(parts, 1)

    (z0, z1, a), (v0, v1, va) = moves(train_eps, n), moves(val_eps, max(1, n // 10))
    out = {"nothing moves": (v1 - v0).pow(2).mean().item()}
    for name, bil in (("linear", False), ("bilinear", True)):
        x = feats(z0, a, bil)
        w = torch.linalg.solve(x.T @ x + 1e-3 * torch.eye(x.shape[1], dtype=x.dtype), x.T @ (z1 - z0))
        out[name] = (v0 + feats(v0, va, bil) @ w - v1).pow(2).mean().item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True, help="a world-model run folder or checkpoint")
    ap.add_argument("--out", required=True, help="run folder to write the refitted model to")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--window", type=int, default=17)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--rollout", type=int, default=8)
    ap.add_argument("--blocked", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--episodes", type=int, default=1000, help="training episodes (the first ones of the data)")
    ap.add_argument("--val", type=int, default=64, help="held-out episodes (the next ones; the last ones of a folder "
                    "that holds fewer than --episodes + --val)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="trajectory folder to refit on (default: the run's own data); its "
                    "--episodes first episodes train, the next --val are held out")
    ap.add_argument("--hidden", type=int, default=None, help="a fresh predictor of this width (default: refit the "
                    "trained one)")
    ap.add_argument("--depth", type=int, default=None, help="... and this many hidden layers")
    ap.add_argument("--no-renormalize", action="store_true", help="the fresh predictor's output is not layer-normed "
                    "again (model.renormalize=false)")
    a = ap.parse_args()
    m, cfg, meta = load_world(a.world)
    own = load_trajectories(cfg.data.path, limit=a.episodes + a.val, progress=False)
    ds = own if a.data is None else load_trajectories(a.data, limit=a.episodes + a.val, progress=False)
    n = min(len(own), len(ds))  # a folder with fewer episodes than asked: its last --val ones are held out
    if n <= a.val:
        raise SystemExit(f"{a.data or cfg.data.path}: {n} episodes, not more than --val {a.val}")
    train_eps, val_eps = np.arange(min(a.episodes, n - a.val)), np.arange(n - a.val, n)
    sets = {"the run's data": own} if a.data is None else {"the run's data": own, a.data: ds}
    before = {k: one_step_errors(m, d, val_eps) for k, d in sets.items()}
    lags = lag_distances(m, own, val_eps)
    print("| latent distance (mean squared per dim) | " + " | ".join(f"{k} steps" for k in LAGS if f"lag{k}" in lags)
          + " | two episodes |\n|---|" + "---:|" * (len(lags)) + "\n| the run's data, held out | "
          + " | ".join(f"{v:.4f}" for v in lags.values()) + " |", flush=True)
    ls = least_squares_steps(m, own, train_eps, val_eps)
    print("| least-squares one-step fits on free moves, held out (mean squared per dim) | 'nothing moves' | linear in "
          "[z, a] | bilinear in [z, a, a_k z] |\n|---|---:|---:|---:|\n| the run's data | "
          + " | ".join(f"{ls[k]:.4f}" for k in ("nothing moves", "linear", "bilinear")) + " |", flush=True)
    model_cfg = cfg.model
    if a.hidden is not None or a.depth is not None or a.no_renormalize:  # a fresh predictor on the same latent
        model_cfg = dataclasses.replace(cfg.model, hidden=a.hidden or cfg.model.hidden,
                                        predictor_depth=a.depth or cfg.model.predictor_depth,
                                        renormalize=cfg.model.renormalize and not a.no_renormalize)
        torch.manual_seed(a.seed)
        m.predictor = WorldModel(model_cfg).predictor if cfg.model.encoder != "vit" else None
        if m.predictor is None:
            raise SystemExit("--hidden / --depth: not for frozen-ViT world models")
        m.cfg = model_cfg
    m.requires_grad_(False)
    m.predictor.requires_grad_(True)
    m.eval()
    opt = torch.optim.AdamW(m.predictor.parameters(), lr=a.lr, weight_decay=1e-5)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    log = []
    for step in range(a.steps):
        lr = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps)) * min(1.0, (step + 1) / (0.05 * a.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        b = ds.windows(*ds.draw(a.batch, a.window, rng, train_eps), a.window)
        with torch.no_grad():
            z = m.encode(torch.from_numpy(b["frames"]))
        act, st = torch.from_numpy(b["actions"]).float(), torch.from_numpy(b["states"]).float()
        w = 1.0 + a.blocked * blocked_moves(act, st).float()
        tf = _dist(m.step(z[:, :-1], act), z[:, 1:], "mse", w)
        r = min(a.rollout, a.window - 1)
        ro = _dist(m.rollout(z[:, 0], act[:, :r]), z[:, 1:r + 1], "mse", w[:, :r])
        loss = tf + ro
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.predictor.parameters(), 2.0)
        opt.step()
        log.append((tf.item(), ro.item()))
        if (step + 1) % max(1, a.steps // 10) == 0:
            k = max(1, a.steps // 10)
            tfm, rom = np.mean(log[-k:], 0)
            print(f"step {step + 1}: teacher forcing {tfm:.4f}, rollout {rom:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    after = {k: one_step_errors(m, d, val_eps) for k, d in sets.items()}
    print(f"\n# {a.world}: predictor refitted alone for {a.steps} steps on {a.data or cfg.data.path} ({a.batch} "
          f"windows of {a.window} frames, {a.rollout}-step rollout, stopped moves x{1 + a.blocked:g}), "
          f"{time.perf_counter() - t0:.0f} s")
    print("| held-out one-step error (mean squared per dim) | free moves: predictor | free moves: 'nothing moves' "
          "| stopped moves: predictor ('nothing moves' = 0) | stopped moves held out |\n|---|---:|---:|---:|---:|")
    for k in sets:
        for label, e in (("before", before[k]), ("after the refit", after[k])):
            print(f"| {k}, {label} | {e['free_pred']:.4f} | {e['free_identity']:.4f} | {e['stopped_pred']:.4f} "
                  f"| {e['stopped_n']} |")
    src = run_checkpoint(a.world)
    src = find_latest(src) if src.is_dir() else src
    sd = load_checkpoint(src, map_location="cpu")
    sd["predictor"] = {k: v.detach().clone() for k, v in m.predictor.state_dict().items()}
    sd.pop("optimizer", None)  # a derived model, not a run to resume
    sd["refit"] = {"from": str(src), "steps": a.steps, "window": a.window, "batch": a.batch, "rollout": a.rollout,
                   "blocked": a.blocked, "lr": a.lr, "episodes": a.episodes, "data": a.data or cfg.data.path}
    sd["config"]["model"] = model_cfg.to_dict()
    out = Path(a.out)
    sd["step"] = int(sd["step"]) + a.steps  # the file's name and its step agree (a later rewrite keeps the file)
    save_checkpoint(sd, out / "checkpoints", sd["step"])
    (out / "config.yaml").write_text(yaml.safe_dump(sd["config"], sort_keys=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
