"""Data-parallel scaling of a full V-JEPA training step: 1 vs N processes, DDP vs FSDP2.

The script re-launches itself under ``torchrun`` for each configuration and prints one table:
global clips/s, clips/s per rank, the speed-up against one process, and peak memory per rank
(CUDA: ``max_memory_allocated``; CPU: the peak resident set of rank 0, Python and libraries
included). Each rank steps on its own batch of random clips with real multi-block masks, so decoding
is not measured. On a CPU box, N processes share the same cores: the table then shows the cost of
gloo communication and core sharing, not a speed-up.

    python bench/scaling.py                          # CPU, gloo: 1 and 2 processes, DDP and FSDP
    python bench/scaling.py --device cuda --nproc 1,8  # one GPU node: ViT-L/16 at 16x224^2, bf16
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CPU_MODEL = ["model.name=vit_nano_cpu"]
GPU_MODEL = ["model.name=vit_large", "model.patch_size=16", "data.crop_size=224", "data.num_frames=16",
             "predictor.embed_dim=384", "predictor.depth=12", "predictor.num_heads=12",
             "model.activation_checkpointing=true", "predictor.activation_checkpointing=true"]


def worker(a) -> None:
    import torch
    from train_step import _rss_mib  # same folder: peak RSS from VmHWM

    from videojepa.config import load_config
    from videojepa.masks.ops import grid_size
    from videojepa.training.distributed import all_reduce, init_distributed, shutdown
    from videojepa.training.trainer import Pretrainer

    env = init_distributed(a.device)
    over = (GPU_MODEL if env.device.type == "cuda" else CPU_MODEL) + [f"data.batch_size={a.batch}"]
    cfg, _ = load_config("cpu_demo", over + (["train.dtype=bfloat16"] if env.device.type == "cuda" else []))
    with tempfile.TemporaryDirectory() as d:
        tr = Pretrainer(cfg, d, resume="none", progress=False, env=env, parallel=a.parallel)
    e = cfg.encoder_config()
    grid = grid_size(cfg.data.num_frames, *cfg.data.crop_size, e.tubelet_size, e.patch_size)
    clips = torch.randn(a.batch, 3, cfg.data.num_frames, *cfg.data.crop_size, device=env.device)

    def step(i):
        masks = [(c.to(env.device), t.to(env.device)) for c, t in tr.masks.sample(i, a.batch, env.rank, env.world_size)]
        with tr._autocast():
            out = tr.train_model(clips, masks)
        out.loss.backward()
        tr.optimizer.step()
        tr.optimizer.zero_grad(set_to_none=True)
        if tr.fsdp:
            tr.model.encoder.reshard()
            tr.model.target_encoder.reshard()
        tr.model.update_target(0.999)

    for i in range(a.warmup):
        step(i)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    all_reduce(torch.zeros(1), env)  # start together
    t = time.perf_counter()
    for i in range(a.steps):
        step(a.warmup + i)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    dt = all_reduce(torch.tensor([time.perf_counter() - t]), env, "max").item()
    mem = (torch.cuda.max_memory_allocated() / 2**20 if env.device.type == "cuda"
           else _rss_mib())
    if env.is_main:
        print("RESULT " + json.dumps({"world": env.world_size, "clips_s": a.steps * a.batch * env.world_size / dt,
                                      "mem_mib": mem, "device": str(env.device)}), flush=True)
    shutdown(env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", default="1,2", help="comma-separated process counts")
    ap.add_argument("--parallel", default="ddp,fsdp", help="comma-separated: ddp, fsdp")
    ap.add_argument("--batch", type=int, default=None, help="clips per rank (default 8 on CPU, 16 on CUDA)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.batch = a.batch or (8 if a.device == "cpu" else 16)
    if a.worker:
        a.parallel = a.parallel.split(",")[0]
        return worker(a)
    threads = max(1, (os.cpu_count() or 1) // max(int(n) for n in a.nproc.split(",")))
    print(f"# device {a.device}, batch {a.batch} per rank, {a.steps} timed steps after {a.warmup} warm-up, "
          f"OMP_NUM_THREADS={threads} per process")
    print("| strategy | processes | clips/s (global) | clips/s per rank | vs 1 process | peak memory per rank (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for par in a.parallel.split(","):
        base = None
        for n in (int(x) for x in a.nproc.split(",")):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", __file__,
                   "--worker", "--device", a.device, "--parallel", par, "--batch", str(a.batch), "--steps", str(a.steps),
                   "--warmup", str(a.warmup)]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
            if r.returncode or not lines:
                print(f"| {par} | {n} | failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:80]} | | | |")
                continue
            res = json.loads(lines[-1][7:])
            base = base or res["clips_s"]
            print(f"| {par} | {n} | {res['clips_s']:.1f} | {res['clips_s'] / n:.1f} | {res['clips_s'] / base:.2f} | "
                  f"{res['mem_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
