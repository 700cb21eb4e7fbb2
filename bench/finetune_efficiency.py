"""The data-efficiency table in its fine-tuned form: pretrained inits vs training from scratch, few labels.

For each objective -- V-JEPA, VideoMAE (pixels), MaskFeat (HOG) -- the script pretrains the same encoder on
the embedded synthetic videos (the unlabelled stream, seed 0) for the same wall-clock budget, as a step count
from each objective's seconds per step measured back to back at the start (cached in ``OUT/pretrain``: a
finished run is reused), then fine-tunes each init, and a random-init encoder
of the same architecture (from scratch), end to end with ``videojepa finetune``'s :class:`Finetuner` on 1% /
10% / 100% of a fixed labelled pool (``synthetic:train:POOL``, the same stratified subsets ``videojepa
probe`` draws), for the same number of steps for every row, over several seeds, and reports validation
top-1 (``synthetic:val:VAL``). Beside it, the frozen attentive-probe figure of each encoder on the same subset:
the recipe starts the head from the best probe of ``videojepa probe``'s grid on the frozen features
(``head.init=probe``), whose validation top-1 is that figure. Every run is cached (its ``results.json``), so a second call
with more seeds or fractions only runs what is missing.

    python bench/finetune_efficiency.py                                    # the defaults below
    python bench/finetune_efficiency.py --seeds 3 --pretrain-minutes 30    # the issue's full budget
    python bench/finetune_efficiency.py --set optim.freeze_steps=0         # a recipe variant (its own folder)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from data_efficiency import METHODS  # noqa: E402

from videojepa.config import load_config  # noqa: E402
from videojepa.training.checkpoint import find_latest  # noqa: E402
from videojepa.training.finetune import Finetuner  # noqa: E402
from videojepa.training.finetune_config import load_finetune_config  # noqa: E402
from videojepa.training.trainer import Pretrainer  # noqa: E402

# the fine-tuning recipe every row gets (see bench/RESULTS_finetune.md for how it was chosen): linear-probe-then-
# fine-tune -- the head starts from the best probe of `videojepa probe`'s grid on the frozen features of the same
# labelled subset (whose validation top-1 is the frozen-probe column), then everything trains end to end
RECIPE = ["head.init=probe", "head.kind=attentive", "head.depth=1", "optim.freeze_steps=0", "optim.lr=2e-4",
          "optim.layer_decay=0.75", "optim.warmup_steps=20", "model.drop_path=0.1", "aug.label_smoothing=0.1",
          "train.log_every=10"]


def calibrate(methods: list[str], config: str, out: Path, device: str = "cpu") -> dict:
    """Seconds per pretraining step of each objective, from 8 timed steps after 2 warm-up steps, all measured
    back to back before any long job (so that every objective is timed on the same, idle machine); cached in
    ``out/calibration.json``."""
    path = out / "calibration.json"
    cal = json.loads(path.read_text()) if path.is_file() else {}
    for name in methods:
        if name in cal:
            continue
        cfg, _ = load_config(config, [f"train.device={device}", "train.checkpoint_every=100000",
                                      "train.max_steps=1000000"] + METHODS[name])
        probe = Pretrainer(cfg, out / f"{name}-calib", progress=False, resume="none")
        probe.fit(until=2)
        t1 = time.perf_counter()
        probe.fit(until=10)
        cal[name] = (time.perf_counter() - t1) / 8
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cal, indent=2))
    return cal


def pretrain_cached(name: str, config: str, minutes: float, per_step: float, out: Path, device: str = "cpu") -> Path:
    """The newest checkpoint of ``out/name`` once pretrained for ``minutes`` at ``per_step`` seconds per step
    (the calibrated rate: equal wall clock on an idle machine, whatever else runs meanwhile); reused when its
    summary says it finished."""
    run = out / name
    done = run / "summary.json"
    if done.is_file() and json.loads(done.read_text()).get("finished"):
        return find_latest(run / "checkpoints")
    steps = max(10, int(minutes * 60 / per_step))
    base = [f"train.device={device}", "train.checkpoint_every=100", "train.diag_every=50", "train.log_every=10"]
    cfg, _ = load_config(config, base + METHODS[name] + [f"train.max_steps={steps}"])
    tr = Pretrainer(cfg, run, progress=True, resume="auto")
    t = time.perf_counter()
    s = tr.fit()
    s.update(finished=True, wall_s=time.perf_counter() - t, budget_minutes=minutes, calibrated_s_per_step=per_step,
             clips_seen=steps * cfg.data.batch_size * cfg.optim.grad_accum)
    done.write_text(json.dumps(s, indent=2))
    return find_latest(run / "checkpoints")


def finetune_run(init: str, frac: float, seed: int, args, out: Path) -> dict:
    res_path = out / "results.json"
    if res_path.is_file():
        return json.loads(res_path.read_text())
    over = RECIPE + args.set + [f"model.init={init}", f"data.train=synthetic:train:{args.pool}",
                                f"data.val=synthetic:val:{args.val}", f"data.label_fraction={frac}",
                                f"data.split_seed={seed}", f"train.seed={seed}", f"train.steps={args.steps}",
                                f"train.eval_every={args.eval_every}", f"train.checkpoint_every={args.steps}",
                                f"train.device={args.device}", "model.overrides={patch_size: 8, tubelet_size: 2, "
                                f"pos_embed: {args.pos_embed}}}"]
    cfg = load_finetune_config(None, over)
    t = time.perf_counter()
    ft = Finetuner(cfg, out, progress=False, resume="auto")
    s = ft.fit()
    r = ft.finish(progress=False)
    r["wall_s"] = time.perf_counter() - t
    r["loss_first"], r["loss_last"] = s.get("loss_first"), s.get("loss_last")
    res_path.write_text(json.dumps(r, indent=2) + "\n")
    return r


def _ms(vals) -> str:
    if not vals:
        return "-"
    return f"{statistics.mean(vals):.1f} +- {statistics.pstdev(vals):.1f}" if len(vals) > 1 else f"{vals[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu_frozen_eval", help="pretraining preset (encoder, clip size, schedules)")
    ap.add_argument("--pos-embed", default="sincos", help="the from-scratch encoder's positions (as --config's)")
    ap.add_argument("--pretrain-minutes", type=float, default=10.0, help="calibrated pretraining budget per objective")
    ap.add_argument("--methods", default="V-JEPA,VideoMAE,MaskFeat,random")
    ap.add_argument("--fractions", default="0.01,0.1,1.0")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--pool", type=int, default=1400, help="labelled pool (100 per class)")
    ap.add_argument("--val", type=int, default=350)
    ap.add_argument("--steps", type=int, default=200, help="fine-tuning steps, the same for every row")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fine-tuning override for every row")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--report-only", action="store_true", help="run nothing: the table and plot of the finished runs")
    ap.add_argument("--out", default="runs/finetune_efficiency")
    args = ap.parse_args()
    out = Path(args.out)
    recipe_key = hashlib.sha1(json.dumps([RECIPE, args.set, args.steps, args.pool, args.val]).encode()).hexdigest()[:8]
    ft_root = out / f"finetune-{recipe_key}"
    ft_root.mkdir(parents=True, exist_ok=True)
    (ft_root / "recipe.json").write_text(json.dumps({"recipe": RECIPE + args.set, "steps": args.steps,
                                                     "pool": args.pool, "val": args.val}, indent=2))
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = list(range(args.seeds))
    table: dict = {}
    methods = args.methods.split(",")
    cal = {} if args.report_only else calibrate([m for m in methods if m != "random"], args.config, out / "pretrain",
                                                  args.device)
    for method in methods:
        if method == "random":
            init, info = "random", {}
        else:
            summ = out / "pretrain" / method / "summary.json"
            if args.report_only:
                init = ""
            else:
                init = str(pretrain_cached(method, args.config, args.pretrain_minutes, cal[method], out / "pretrain",
                                           args.device))
            info = json.loads(summ.read_text()) if summ.is_file() else {}
        row = {"pretrain": {k: info.get(k) for k in ("steps", "wall_s", "clips_seen", "budget_minutes", "loss_first",
                                                     "loss_last", "calibrated_s_per_step")}, "finetune": {}, "frozen": {}}
        for frac in fractions:
            accs = []
            for seed in seeds:
                run_dir = ft_root / method / f"frac{frac:g}_seed{seed}"
                if args.report_only and not (run_dir / "results.json").is_file():
                    continue
                r = finetune_run(init, frac, seed, args, run_dir)
                accs.append(100 * r["val"]["top1"])
                row["frozen"].setdefault(str(frac), []).append(100 * r["probe_init"]["val_top1"])
                print(f"{method}: {frac:.0%} labels, seed {seed}: fine-tuned val top-1 {accs[-1]:.1f} "
                      f"(loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, {r['wall_s']:.0f} s)", flush=True)
            row["finetune"][str(frac)] = accs
        for frac in fractions:
            print(f"{method}: {frac:.0%} labels: frozen probe {_ms(row['frozen'].get(str(frac), []))}", flush=True)
        table[method] = row
        (ft_root / "table.json").write_text(json.dumps(table, indent=2))
    print(f"\n# synthetic benchmark, 14 classes: pool synthetic:train:{args.pool}, val synthetic:val:{args.val}; "
          f"{args.steps} fine-tuning steps per run, {len(seeds)} seed(s); pretraining {args.pretrain_minutes} min "
          f"(calibrated) per objective, preset {args.config}")
    print("| init | pretrain steps | " + " | ".join(f"fine-tuned {f:.0%}" for f in fractions) + " | "
          + " | ".join(f"frozen probe {f:.0%}" for f in fractions) + " |")
    print("|---|---:|" + "---:|" * (2 * len(fractions)))
    for m, r in table.items():
        ft = " | ".join(_ms(r["finetune"].get(str(f), [])) for f in fractions)
        fr = " | ".join(_ms(r["frozen"].get(str(f), [])) for f in fractions)
        print(f"| {m} | {r['pretrain'].get('steps') or 0} | {ft} | {fr} |")
    if any(v for r in table.values() for v in r["finetune"].values()):
        _plot(table, fractions, ft_root / "finetune_efficiency.png")
    print(f"plot: {ft_root / 'finetune_efficiency.png'}; numbers: {ft_root / 'table.json'}")


def _plot(table: dict, fractions, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (m, r) in enumerate(table.items()):
        fs = [f for f in fractions if r["finetune"].get(str(f))]
        xs = [f * 100 for f in fs]
        ys = [statistics.mean(r["finetune"][str(f)]) for f in fs]
        es = [statistics.pstdev(r["finetune"][str(f)]) if len(r["finetune"][str(f)]) > 1 else 0 for f in fs]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=f"C{i}", label=f"{m} fine-tuned")
        if r["frozen"]:
            ys = [statistics.mean(r["frozen"][str(f)]) for f in fs]
            ax.plot(xs, ys, ls="--", marker="x", color=f"C{i}", alpha=0.7, label=f"{m} frozen probe")
    ax.axhline(100 / 14, color="gray", ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("labels used (%)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("fine-tuned (solid) vs frozen probe (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
