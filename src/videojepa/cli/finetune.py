"""``videojepa finetune``: end-to-end fine-tuning on labelled videos, with few-label splits over seeds."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_run_args

__all__ = ["add_parsers"]

EPILOG = """examples:
  videojepa finetune --train data/train --val data/val --test data/test --init runs/cpu_demo/checkpoints/step_00000300.pt
  videojepa finetune --train synthetic:train --val synthetic:val --test synthetic:test --init random --steps 300
  videojepa finetune --train train.csv --val val.csv --init vjepa2-vitl --label-fraction 0.01 0.1 1 --seeds 3
  videojepa classify new.mp4 --probe runs/finetune/export

The run folder holds config.yaml, metrics.csv/png (train loss, lr, val top-1), checkpoints/ (resumed
automatically), split.json (the training subset), results.json (val, and test with segments x views),
confusion.png and export/ (the classifier: videojepa.load, classify, convert --to hf). With several label
fractions or seeds, each run has its own folder and results.json holds mean +- std per fraction."""


def add_parsers(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune an encoder and a head on labelled videos",
                       description="Fine-tune a pretrained (or random-init) encoder end to end with a classification "
                                   "head; few-label subsets, multi-view test, an exported classifier.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--train", default=None, metavar="INDEX",
                   help="labelled training videos: CSV index, folder of class sub-folders, frames:DIR, images:DIR, tar "
                        "shards, or synthetic:SPLIT[:N] (the embedded dataset)")
    g.add_argument("--val", default=None, metavar="INDEX", help="validation set (logged during training; selection)")
    g.add_argument("--test", default=None, metavar="INDEX", help="test set (evaluated once, at the end)")
    g.add_argument("--label-fraction", type=float, nargs="+", default=None, metavar="F",
                   help="fractions of the training labels to keep per class (stratified, as `videojepa probe`)")
    g.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="repeat each fraction with seeds 0..N-1 (subset and training); report mean +- std")
    g.add_argument("--frames", type=int, default=None, help="frames per clip (default: the encoder's)")
    g.add_argument("--crop", type=int, default=None, help="crop size (default: the encoder's)")
    g.add_argument("--frame-step", type=int, default=None, help="keep every N-th frame (default 4)")
    g.add_argument("--fps", type=float, default=None, help="sample frames at this rate instead")
    g.add_argument("--segments", type=int, default=None, help="test: temporal segments per video (default 1)")
    g.add_argument("--views", type=int, default=None, help="test: spatial views per segment (default 1)")
    g.add_argument("--batch-size", type=int, default=None, help="clips per step and process (default 16)")
    g.add_argument("--on-error", choices=("raise", "report"), default=None,
                   help="an unreadable val/test file: stop naming it (default) or list and exclude it")
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--init", default=None,
                   help="a run checkpoint, weights file/folder, published name (videojepa weights list), encoder "
                        "preset (videojepa models) or 'random' (default)")
    m.add_argument("--part", choices=("target_encoder", "encoder"), default=None,
                   help="which encoder of a checkpoint (default: target_encoder)")
    m.add_argument("--head", choices=("attentive", "meanpool"), default=None,
                   help="attentive probe (default) or VideoMAE's mean-pool head")
    m.add_argument("--head-depth", type=int, default=None, help="attentive head: 1 = V-JEPA 1 (default), 4 = V-JEPA 2")
    m.add_argument("--steps", type=int, default=None, help="optimizer steps (default 600)")
    m.add_argument("--lr", type=float, default=None, help="peak lr of the head; block i of L gets lr x layer_decay^(L-i) (default 5e-4)")
    m.add_argument("--layer-decay", type=float, default=None, help="layer-wise lr decay (default 0.75)")
    m.add_argument("--freeze-steps", type=int, default=None,
                   help="train the head alone for K steps first, then everything with a fresh warmup")
    m.add_argument("--select", choices=("last", "best"), default=None,
                   help="weights to export and test: the last step (default) or the best on --val")
    r = p.add_argument_group("run")
    r.add_argument("--config", default=None, help="a YAML of finetune settings (sections model, head, data, optim, "
                                                  "aug, train; `base:` works)")
    r.add_argument("--out", default="runs/finetune", help="run folder (default runs/finetune)")
    add_run_args(r, "cuda when available")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides with dotted keys, e.g. optim.warmup_steps=20 aug.mixup=0.8 head.dropout=0.5")
    p.set_defaults(func=_run)


_FLAGS = {"train": "data.train", "val": "data.val", "test": "data.test", "frames": "data.num_frames",
          "crop": "data.crop_size", "frame_step": "data.frame_step", "fps": "data.fps", "segments": "data.segments",
          "views": "data.views", "batch_size": "data.batch_size", "on_error": "data.on_error", "init": "model.init",
          "part": "model.part", "head": "head.kind", "head_depth": "head.depth", "steps": "train.steps",
          "lr": "optim.lr", "layer_decay": "optim.layer_decay", "freeze_steps": "optim.freeze_steps",
          "select": "train.select", "device": "train.device"}


def _run(a) -> int:
    import yaml

    from ..config import ConfigError
    from ..training.finetune_config import load_finetune_config

    overrides = [f"{key}={json.dumps(getattr(a, flag))}" for flag, key in _FLAGS.items() if getattr(a, flag) is not None]
    overrides += list(a.overrides)
    try:
        cfg = load_finetune_config(a.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    fractions = a.label_fraction or [cfg.data.label_fraction]
    seeds = list(range(a.seeds)) if a.seeds else [cfg.train.seed]
    runs = [(f, s) for f in fractions for s in seeds]
    out = Path(a.out)
    results = []
    from dataclasses import replace

    from ..data.errors import DataError
    from ..training.distributed import shutdown
    from ..training.engine import DataFailureError, NonFiniteLossError
    from ..training.finetune import Finetuner

    env = None
    for frac, seed in runs:
        try:
            c = replace(cfg, data=replace(cfg.data, label_fraction=frac, split_seed=seed if a.seeds else cfg.data.split_seed),
                        train=replace(cfg.train, seed=seed))
        except (ConfigError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        run_dir = out if len(runs) == 1 else out / f"frac{frac:g}_seed{seed}"
        try:
            ft = Finetuner(c, run_dir, resume=a.resume, progress=not a.no_progress, env=env)
            env = ft.env
            if ft.env.is_main:
                if ft.resumed_from:
                    print(f"resuming from {ft.resumed_from} (step {ft.step})", file=sys.stderr)
                print(f"fine-tuning {ft.init_desc}: {ft.split.get('num_items', 'streamed')} training videos "
                      f"({frac:g} of {c.data.train}), {len(ft.labels)} classes, {c.train.steps} steps -> {run_dir}; "
                      f"compute {ft.dtype_note}", file=sys.stderr)
            s = ft.fit()
            res = ft.finish()
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except (NonFiniteLossError, DataFailureError, ValueError, RuntimeError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if not ft.env.is_main:
            continue
        results.append({"fraction": frac, "seed": seed, "run": str(run_dir), **{k: res.get(k) for k in ("val", "test")},
                        "best_val": res.get("best_val"), "steps": s.get("steps"), "seconds": s.get("seconds")})
        _print_run(res, run_dir)
    if env is not None:
        shutdown(env)
        if not env.is_main:
            return 0
    if len(runs) > 1:
        table = _aggregate(results, fractions)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"runs": results, "by_fraction": table}, indent=2) + "\n")
        print(f"\n{'labels':>8} {'runs':>5} {'val top-1 (%)':>16} {'test top-1 (%)':>16}")
        for row in table:
            print(f"{row['fraction']:>8g} {row['n']:>5} {_ms(row.get('val_top1')):>16} {_ms(row.get('test_top1')):>16}")
        print(f"results: {out / 'results.json'}")
    return 0


def _print_run(res: dict, run_dir: Path) -> None:
    parts = []
    if res.get("val"):
        parts.append(f"val top-1 {100 * res['val']['top1']:.1f}%")
    if res.get("test"):
        t = res["test"]
        parts.append(f"test top-1 {100 * t['top1']:.1f}% / top-5 {100 * t['top5']:.1f}% ({t['segments']}x{t['views']} views)")
    print(f"done: {', '.join(parts) or 'no evaluation set given'}; weights: {res['selected']}; classifier: {res['export']}")


def _aggregate(results: list[dict], fractions) -> list[dict]:
    from ..evaluation.metrics import mean_std

    table = []
    for f in fractions:
        rs = [r for r in results if r["fraction"] == f]
        row = {"fraction": f, "n": len(rs)}
        for split in ("val", "test"):
            vals = [100 * r[split]["top1"] for r in rs if r.get(split)]
            if vals:
                row[f"{split}_top1"] = mean_std(vals)
        table.append(row)
    return table


def _ms(d) -> str:
    return "-" if not d else f"{d['mean']:.1f} +- {d['std']:.1f}"
