"""Search for a small-scale V-JEPA recipe: short pretraining runs of config variants, each probed the same way.

Each variant is a list of config overrides on a preset; it is pretrained for a fixed number of
steps (not wall clock, so that runs stay comparable when the machine is shared), then its frozen
target encoder is probed with the attentive-probe grid of ``bench/data_efficiency.py`` on a labeled
pool and a validation set of the synthetic benchmark. A random-init encoder of the same preset is the
reference. One line per variant goes to ``OUT/results.jsonl`` (appended, so the search can be
resumed and extended); the script prints a table of all lines so far.

    python bench/recipe_search.py --steps 300 --variant base= \\
        --variant "clipnorm=loss.target_norm=clip"
    python bench/recipe_search.py --steps 300 --variant "clipnorm_ema99=loss.target_norm=clip;optim.ema=[0.99,1.0]"
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from videojepa.config import load_config
from videojepa.training.losses import feature_stats
from videojepa.training.trainer import Pretrainer

from data_efficiency import labeled_sets, probe_fractions  # same folder: the same pool, validation and probe grid


def probe(enc, pool, val, fractions, seeds, device, layers=None) -> dict:
    top1, fva = probe_fractions(enc, pool, val, fractions, seeds, device, layers=layers)
    tokens = fva.features[:64] if fva.features.dim() == 3 else None
    stats = feature_stats(tokens.float()) if tokens is not None else {}
    return {"top1": {f"{f:g}": accs for f, accs in top1.items()}, "val_token_stats": stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu_demo")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=override;override;... (empty overrides: the preset as is; a NAME starting with 'random': random init)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--pool", type=int, default=1400)
    ap.add_argument("--val", type=int, default=700)
    ap.add_argument("--fractions", default="1.0")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="runs/recipe_search")
    ap.add_argument("--layers", default=None,
                    help="probe these blocks' outputs (0-based, comma-separated; through the final norm) instead of the last")
    ap.add_argument("--probe-context", action="store_true",
                    help="also probe the context encoder (the trained one; the target is its EMA)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fractions = [float(f) for f in args.fractions.split(",")]
    layers = [int(v) for v in args.layers.split(",")] if args.layers else None
    for spec in args.variant:
        name, _, ov = spec.partition("=")
        overrides = [o.strip() for o in ov.split(";") if o.strip()]
        base = [f"train.device={args.device}", "train.checkpoint_every=100000", "train.diag_every=50",
                "train.log_every=10", f"train.max_steps={args.steps}"]
        cfg, _ = load_config(args.config, base + overrides)
        pool, val = labeled_sets(cfg, args.pool, args.val)
        t0 = time.perf_counter()
        tr = Pretrainer(cfg, out / name, progress=True, resume="none")
        is_random = name.startswith("random")
        summary = {} if is_random else tr.fit()
        wall = time.perf_counter() - t0
        res = probe(tr.model.target_encoder.eval(), pool, val, fractions, args.seeds, args.device, layers)
        if args.probe_context and not is_random:
            ctx = probe(tr.model.encoder.eval(), pool, val, fractions, args.seeds, args.device, layers)
            res["context_top1"], res["context_token_stats"] = ctx["top1"], ctx["val_token_stats"]
        row = {"name": name, "overrides": overrides, "layers": layers, "config": args.config, "steps": 0 if is_random else args.steps,
               "pretrain_s": round(wall, 1), "pool": args.pool, "val": args.val, **res,
               "diagnostics": summary.get("diagnostics")}
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(json.dumps(row, default=str), flush=True)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()] if (out / "results.jsonl").exists() else []
    print("| variant | steps | " + " | ".join(f"{f:g} labels" for f in fractions)
          + " | val token std | context encoder | overrides |")
    print("|---|---:|" + "---:|" * len(fractions) + "---:|---:|---|")
    for r in rows:
        cells = []
        for f in fractions:
            a = r["top1"].get(f"{f:g}")
            cells.append("-" if a is None else f"{sum(a) / len(a):.1f}")
        ts = r.get("val_token_stats", {}).get("token_std")
        ctx = r.get("context_top1")
        ctx = "-" if not ctx else " / ".join(f"{sum(a) / len(a):.1f}" for a in ctx.values())
        print(f"| {r['name']} | {r['steps']} | " + " | ".join(cells) + f" | {ts if ts is None else round(ts, 3)} | {ctx} | "
              + "; ".join(r["overrides"]) + " |")


if __name__ == "__main__":
    main()
