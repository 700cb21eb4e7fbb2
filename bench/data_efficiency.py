"""The data-efficiency table: frozen features of each objective, probed with 1%, 10% and 100% of the labels.

For each method -- V-JEPA, VideoMAE (pixels), MaskFeat (HOG), and a random-init encoder -- the
script pretrains the same encoder on the embedded synthetic videos for the same wall-clock budget
(the step count is calibrated per method from a few timed steps, so every method gets its budget;
clips seen are printed), extracts frozen features of a labeled pool and of a validation set (other
seeds of the same generator: no clip is shared with pretraining), and trains the attentive-probe
grid on stratified subsets of the pool, over several seeds. It prints a table shaped like the
paper's (method x label fraction, mean +- std of top-1) and saves a plot and a JSON of all numbers.

    python bench/data_efficiency.py --budget-minutes 30            # the issue's CPU budget per method
    python bench/data_efficiency.py --budget-minutes 120 --device cuda
    python bench/data_efficiency.py --set model.pos_embed=sincos    # V-JEPA 1's positions: the probe sees them
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from videojepa.config import load_config
from videojepa.data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset
from videojepa.evaluation.features import extract_features
from videojepa.evaluation.fewshot import stratified_subset
from videojepa.evaluation.probe import ProbeGridConfig, train_probe_grid
from videojepa.training.trainer import Pretrainer

METHODS = {
    "V-JEPA": [],
    "VideoMAE": ["loss.objective=videomae", "optim.ema=[0.0, 0.0]",
                 "mask.configs=[{type: tube, ratio: 0.9}]"],
    "MaskFeat": ["loss.objective=maskfeat", "optim.ema=[0.0, 0.0]",
                 "mask.configs=[{type: multiblock, num_blocks: 8, spatial_scale: [0.15, 0.15]}, "
                 "{type: multiblock, num_blocks: 2, spatial_scale: [0.7, 0.7]}]"],
}


def pretrain(name: str, overrides: list[str], args, out: Path) -> tuple[torch.nn.Module, dict]:
    base = [f"train.device={args.device}", "train.checkpoint_every=100000", "train.diag_every=50", "train.log_every=10"]
    cfg, _ = load_config(args.config, base + args.set + overrides + ["train.max_steps=1000000"])
    # calibrate: seconds per step of this method (model build and first step excluded)
    probe = Pretrainer(cfg, out / f"{name}-calib", progress=False, resume="none")
    probe.fit(until=2)  # warm-up (first steps are slow)
    t1 = time.perf_counter()
    probe.fit(until=10)  # one checkpoint write in 8 steps, as in training every checkpoint_every steps
    per_step = (time.perf_counter() - t1) / 8
    steps = max(10, int(args.budget_minutes * 60 / per_step))
    cfg, _ = load_config(args.config, base + args.set + overrides + [f"train.max_steps={steps}"])
    tr = Pretrainer(cfg, out / name, progress=True, resume="none")
    t = time.perf_counter()
    summary = tr.fit()
    summary["wall_s"] = time.perf_counter() - t
    summary["clips_seen"] = steps * cfg.data.batch_size * cfg.optim.grad_accum
    return tr.model.target_encoder.eval(), summary


def labeled_sets(cfg, pool_size: int, val_size: int):
    """The labeled pool and the validation set: other generator seeds than pretraining (1001, 2002)."""
    geo = dict(num_frames=cfg.data.num_frames, height=cfg.data.crop_size[0], width=cfg.data.crop_size[1])
    return (SyntheticVideoDataset(SyntheticVideoConfig(**geo, num_samples=pool_size, seed=1001)),
            SyntheticVideoDataset(SyntheticVideoConfig(**geo, num_samples=val_size, seed=2002)))


def probe_fractions(enc, pool, val, fractions, seeds: int, device: str = "cpu", epochs: int | None = None,
                    layers=None):
    """Top-1 (%) of the best probe of the grid per label fraction and seed: ``{fraction: [acc per seed]}``,
    with the validation features (to report their statistics)."""
    ftr = extract_features(enc, pool, batch_size=32, device=device, layers=layers)
    fva = extract_features(enc, val, batch_size=32, device=device, layers=layers)
    kw = {"device": device, **({"epochs": epochs} if epochs else {})}
    out = {}
    for frac in fractions:
        out[frac] = []
        for seed in range(seeds):
            idx = stratified_subset(ftr.labels, frac, seed)
            res = train_probe_grid(ftr.subset(idx), fva, pool.num_classes, ProbeGridConfig(seed=seed, **kw),
                                   progress=False)
            out[frac].append(100.0 * res.best["top1"])
    return out, fva


def random_encoder(config: str, overrides: list[str], device: str = "cpu") -> torch.nn.Module:
    """The random-init baseline: the target encoder of the preset as the trainer builds it (same seed),
    before any step. The other bench scripts compare with this one."""
    cfg, _ = load_config(config, [f"train.device={device}"] + overrides)
    return Pretrainer(cfg, tempfile.mkdtemp(), progress=False, resume="none").model.target_encoder.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu_demo", help="pretraining preset or YAML (model, clip size, schedules)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every method, the random encoder included (e.g. model.pos_embed=sincos)")
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="pretraining wall clock per method")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default="V-JEPA,VideoMAE,MaskFeat,random")
    ap.add_argument("--fractions", default="0.01,0.1,1.0")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pool", type=int, default=2800, help="labeled pool size (200 per class for 14 classes)")
    ap.add_argument("--val", type=int, default=1400)
    ap.add_argument("--probe-epochs", type=int, default=None)
    ap.add_argument("--out", default="runs/data_efficiency")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, _ = load_config(args.config, args.set)
    pool, val = labeled_sets(cfg, args.pool, args.val)
    fractions = [float(f) for f in args.fractions.split(",")]
    results: dict = {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        if method == "random":
            enc, info = random_encoder(args.config, args.set, args.device), {"wall_s": 0.0, "clips_seen": 0}
        else:
            enc, info = pretrain(method, METHODS[method], args, out)
        top1, _ = probe_fractions(enc, pool, val, fractions, args.seeds, args.device, args.probe_epochs)
        rows = {}
        for frac, accs in top1.items():
            rows[frac] = {"mean": statistics.mean(accs), "std": statistics.pstdev(accs), "runs": accs}
            print(f"{method}: {frac:.0%} labels -> {rows[frac]['mean']:.1f} +- {rows[frac]['std']:.1f}", flush=True)
        results[method] = {"top1": rows, "pretrain": {k: info.get(k) for k in ("wall_s", "clips_seen", "loss_first",
                                                                                "loss_last", "diagnostics")},
                           "total_s": time.perf_counter() - t0}
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\n# synthetic temporal benchmark, {pool.num_classes} classes, pool {args.pool}, val {args.val}, "
          f"{args.seeds} seeds, budget {args.budget_minutes} min/method on {args.device}, preset {args.config}"
          + (f" with {' '.join(args.set)}" if args.set else ""))
    print("| method | pretrain (s) | clips seen | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " |")
    print("|---|---:|---:|" + "---:|" * len(fractions))
    for m, r in results.items():
        cells = " | ".join(f"{r['top1'][f]['mean']:.1f} +- {r['top1'][f]['std']:.1f}" for f in fractions)
        print(f"| {m} | {r['pretrain']['wall_s']:.0f} | {r['pretrain']['clips_seen']} | {cells} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, r in results.items():
        ys = [r["top1"][f]["mean"] for f in fractions]
        es = [r["top1"][f]["std"] for f in fractions]
        ax.errorbar([f * 100 for f in fractions], ys, yerr=es, marker="o", capsize=3, label=m)
    ax.axhline(100.0 / pool.num_classes, color="gray", ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("labels used (%)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("frozen features, attentive probe")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "data_efficiency.png", dpi=120)
    print(f"plot: {out / 'data_efficiency.png'}; numbers: {out / 'results.json'}")


if __name__ == "__main__":
    main()
