"""What the frozen tokens of an encoder hold, read linearly.

For each encoder, the tokens of ``--clips`` synthetic validation clips are regressed (ridge, features
standardised with the training statistics) onto what each token's tubelet holds: its time index, its
row, its pixels and its frame difference (second frame minus first: the motion inside the tubelet).
The fit uses the tokens of the first 3/4 of the clips; the table gives R^2 on the rest. It also gives the
spread of the tokens (mean std over features, within a clip and over all tokens). A probe that scores
an encoder lower than another although the same things are linearly readable from both is limited by
the geometry of the features (how they are scaled and mixed), not by what they keep.

    python bench/token_content.py --random cpu_frozen_eval --run runs/recipe_search/sincos_lr3e-4
    python bench/token_content.py --random "cpu_demo:model.pos_embed=sincos" --run RUN_DIR --run RUN_DIR2

``--run DIR`` takes a pretraining run folder (its newest checkpoint) and reads both its target (EMA) and
its context encoder; ``--random PRESET[:KEY=VALUE;...]`` builds the random-init encoder that
``bench/recipe_search.py`` compares with (same preset, same seed).
"""
from __future__ import annotations

import argparse

import torch

import videojepa
from videojepa.data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset
from videojepa.training.checkpoint import find_latest

from data_efficiency import random_encoder  # same folder: the random baseline the other scripts probe


def tubelets(clips: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """``[N, C, T, H, W]`` -> ``[N, K, C, tubelet, patch, patch]`` in the encoder's token order (t, h, w)."""
    N, C, T, H, W = clips.shape
    x = clips.reshape(N, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(N, -1, C, tubelet, patch, patch)


def ridge_r2(feats: torch.Tensor, targets: dict[str, torch.Tensor], n_fit: int, lam: float = 1.0) -> dict[str, float]:
    """R^2 on clips ``n_fit:`` of one ridge fit on clips ``:n_fit`` (all targets at once: one solve), per
    target; ``feats [N, K, D]``, each target ``[N, K, P]``. The baseline of R^2 is the fitted clips' mean."""
    names, widths = list(targets), [t.shape[-1] for t in targets.values()]
    X, Y = feats.double(), torch.cat([t.double() for t in targets.values()], -1)
    Xf, Xt = X[:n_fit].flatten(0, 1), X[n_fit:].flatten(0, 1)
    Yf, Yt = Y[:n_fit].flatten(0, 1), Y[n_fit:].flatten(0, 1)
    mu, sd = Xf.mean(0), Xf.std(0) + 1e-6
    one = lambda z: torch.cat([(z - mu) / sd, torch.ones(len(z), 1, dtype=z.dtype)], 1)  # noqa: E731
    A, B = one(Xf), one(Xt)
    W = torch.linalg.solve(A.T @ A + lam * torch.eye(A.shape[1], dtype=A.dtype), A.T @ Yf)
    err, var = ((B @ W - Yt) ** 2).sum(0), ((Yt - Yf.mean(0)) ** 2).sum(0)
    return {n: float(1.0 - e.sum() / v.sum()) for n, e, v in zip(names, err.split(widths), var.split(widths))}


def encoders(args):
    for spec in args.random:
        preset, _, ov = spec.partition(":")
        yield f"random ({spec})", random_encoder(preset, [o for o in ov.split(";") if o.strip()])
    for run in args.run:
        ckpt = find_latest(f"{run}/checkpoints")
        if ckpt is None:
            raise SystemExit(f"{run}: no checkpoint under {run}/checkpoints")
        for part in ("target_encoder", "encoder"):
            yield f"{run} [{part}]", videojepa.load(ckpt, part=part)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random", action="append", default=[], metavar="PRESET[:OVERRIDES]")
    ap.add_argument("--run", action="append", default=[], metavar="RUN_DIR")
    ap.add_argument("--clips", type=int, default=400)
    args = ap.parse_args()
    if not args.random and not args.run:
        ap.error("give at least one --random or --run")
    print("| encoder | time index R² | row R² | pixels R² | frame difference R² | token std within clip | token std overall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    data = {}
    for name, enc in encoders(args):
        enc = enc.eval()
        T, (H, W) = enc.cfg.num_frames, enc.cfg.img_size
        key = (T, H, W, enc.cfg.tubelet_size, enc.cfg.patch_size)
        if key not in data:
            ds = SyntheticVideoDataset(SyntheticVideoConfig(num_frames=T, height=H, width=W, num_samples=args.clips, seed=2002))
            clips = torch.stack([torch.as_tensor(ds[i]["clip"]) for i in range(len(ds))])
            tub = tubelets(clips, enc.cfg.tubelet_size, enc.cfg.patch_size)
            grid = (T // enc.cfg.tubelet_size, H // enc.cfg.patch_size, W // enc.cfg.patch_size)
            t_idx = torch.arange(grid[0]).repeat_interleave(grid[1] * grid[2]).float()
            h_idx = torch.arange(grid[1]).repeat_interleave(grid[2]).repeat(grid[0]).float()
            N = len(clips)
            data[key] = (clips, {"time": t_idx.expand(N, -1)[..., None], "row": h_idx.expand(N, -1)[..., None],
                                 "pixels": tub.flatten(2), "diff": (tub[:, :, :, -1] - tub[:, :, :, 0]).flatten(2)})
        clips, targets = data[key]
        with torch.inference_mode():
            feats = torch.cat([enc(clips[i:i + 50]) for i in range(0, len(clips), 50)]).float()
        n_fit = 3 * len(clips) // 4
        r2 = ridge_r2(feats, targets, n_fit)
        within, overall = feats.std(1).mean().item(), feats.flatten(0, 1).std(0).mean().item()
        print(f"| {name} | {r2['time']:.3f} | {r2['row']:.3f} | {r2['pixels']:.3f} | {r2['diff']:.3f} | "
              f"{within:.3f} | {overall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
