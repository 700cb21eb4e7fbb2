"""What checksums cost: saving and loading a checkpoint with and without SHA-256, side by side.

Rows: the default demo's real training state (``cpu_demo``: encoder, predictor, EMA target, AdamW state) and
a ViT-L-sized state simulated on the CPU (the parameter count of a V-JEPA ViT-L/16 run: 304M encoder + 304M
EMA target + a 22M predictor, with AdamW's two moments for the trained ones, float32; about 5 GB). Variants,
interleaved over ``--repeats`` rounds in this one process, median seconds:

- ``save, plain``: what ``save_checkpoint`` did before checksums (``torch.save`` to a temporary file, fsync,
  rename);
- ``save, checksum``: ``save_checkpoint`` now (hashing in a second thread while writing, the sidecar written
  before the rename, then the new file read back and verified before pruning);
- ``load, plain`` / ``load, checksum``: ``torch.load`` alone / ``load_checkpoint`` (verify, then load).

    python bench/checkpoint_io.py                 # both rows
    python bench/checkpoint_io.py --rows demo
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from videojepa.config import load_config
from videojepa.training.checkpoint import load_checkpoint, save_checkpoint


def demo_state() -> dict:
    from videojepa.training.trainer import Pretrainer

    cfg, _ = load_config("cpu_demo", ["train.max_steps=1"])
    tr = Pretrainer(cfg, tempfile.mkdtemp(), progress=False, resume="none")
    tr.fit()  # one step, so the AdamW state exists
    return tr.state_dict()


def vitl_state() -> dict:
    """Tensors of a ViT-L/16 V-JEPA run's sizes (values do not matter for I/O): 24 blocks of width 1024."""
    def block(d=1024, h=4096):
        return {"qkv.w": torch.randn(3 * d, d), "proj.w": torch.randn(d, d), "fc1.w": torch.randn(h, d),
                "fc2.w": torch.randn(d, h), "small": torch.randn(6 * d + h)}

    enc = {f"blocks.{i}.{k}": v for i in range(24) for k, v in block().items()}
    pred = {f"blocks.{i}.{k}": v for i in range(12) for k, v in block(384, 1536).items()}
    tgt = {k: v.clone() for k, v in enc.items()}
    opt = {f"{n}.{m}": torch.zeros_like(v) for n, v in {**{f"e.{k}": v for k, v in enc.items()},
                                                        **{f"p.{k}": v for k, v in pred.items()}}.items()
           for m in ("exp_avg", "exp_avg_sq")}
    return {"encoder": enc, "predictor": pred, "target_encoder": tgt, "optimizer": opt, "step": 1}


def plain_save(state: dict, folder: Path, step: int) -> Path:
    path = folder / f"plain_{step:08d}.pt"
    tmp = folder / (path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="demo,vitl")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    a = ap.parse_args()
    root = Path(a.dir or tempfile.mkdtemp(prefix="ckpt-io-"))
    print(f"# torch {torch.__version__}, {a.repeats} rounds, median seconds; files in {root}")
    print("| state | size (MB) | save plain | save + checksum | ratio | load plain | load + verify | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in a.rows.split(","):
        state = demo_state() if row == "demo" else vitl_state()
        folder = root / row
        folder.mkdir(parents=True, exist_ok=True)
        t = {k: [] for k in ("save_plain", "save_sum", "load_plain", "load_sum")}
        for r in range(a.repeats):
            s = time.perf_counter()
            p1 = plain_save(state, folder, r)
            t["save_plain"].append(time.perf_counter() - s)
            s = time.perf_counter()
            p2 = save_checkpoint(state, folder / "ckpt", r, keep=1)
            t["save_sum"].append(time.perf_counter() - s)
            s = time.perf_counter()
            torch.load(p1, weights_only=True)
            t["load_plain"].append(time.perf_counter() - s)
            s = time.perf_counter()
            load_checkpoint(p2)
            t["load_sum"].append(time.perf_counter() - s)
            p1.unlink()
        mb = p2.stat().st_size / 1e6
        m = {k: statistics.median(v) for k, v in t.items()}
        print(f"| {row} | {mb:.0f} | {m['save_plain']:.2f} | {m['save_sum']:.2f} | {m['save_sum'] / m['save_plain']:.2f} | "
              f"{m['load_plain']:.2f} | {m['load_sum']:.2f} | {m['load_sum'] / m['load_plain']:.2f} |", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        del state


if __name__ == "__main__":
    main()
