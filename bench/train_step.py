"""Throughput and peak memory of one full V-JEPA training step, and of one fine-tuning step.

A step is: EMA target encoder on the full clip, the context encoder once per mask config on its
visible tokens, the predictor, the L1 loss, backward, AdamW, and the EMA update: exactly what
``videojepa pretrain`` runs (``Pretrainer``'s model and optimiser, fed random clips and real
multi-block masks so that data generation is not timed).

The fine-tuning rows time what ``videojepa finetune`` runs per step: the same encoder with the V-JEPA 1
attentive head on all tokens, cross-entropy, backward, AdamW with layer-decay groups (end to end), and the
head-only first stage (encoder forward without gradients, ``optim.freeze_steps``).

Every variant is timed in this one process, interleaved round-robin over ``--repeats`` rounds so
that machine drift hits all rows alike; the table reports the median clips/s and the ratio to the
first (baseline) variant of the same preset. Peak memory: on CUDA ``max_memory_allocated``; on CPU
the growth of the peak resident set over three steps (activations, gradients and the AdamW state),
measured in a fresh subprocess per row after the model and the batch were built.

FLOPs: one step of each row is run under ``torch.utils.flop_counter.FlopCounterMode`` (matrix products,
convolutions and attention, forward and backward, the target encoder's forward included: every FLOP the step
performs, not the 6N rule of thumb); ``TFLOP/s`` is that count times the measured steps per second. On CUDA the
table adds MFU, the achieved TFLOP/s over the card's dense bf16 peak (``PEAK_BF16_TFLOPS``, matched on the
name ``torch.cuda.get_device_name()`` reports, printed in the header; ``--peak-tflops`` for another card).

    python bench/train_step.py                      # CPU presets, float32 vs bf16, checkpointing
    python bench/train_step.py --device cuda        # adds ViT-L/16 at 16x224^2 (bf16)
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

import torch

from videojepa.config import load_config
from videojepa.masks.collator import MaskGenerator
from videojepa.masks.ops import grid_size
from videojepa.training.jepa import JEPA
from videojepa.training.optim import build_optimizer

CPU_PRESETS = {
    "cpu_demo (vit_nano_cpu, 16x64^2)": ["model.name=vit_nano_cpu"],
    "vit_pico_cpu, 16x64^2": ["model.name=vit_pico_cpu"],
    "vit_micro_cpu, 16x64^2": ["model.name=vit_micro_cpu"],
}
GPU_PRESETS = {
    "ViT-L/16, 16x224^2": ["model.name=vit_large", "model.patch_size=16", "data.crop_size=224", "data.num_frames=16",
                           "predictor.embed_dim=384", "predictor.depth=12", "predictor.num_heads=12",
                           "model.activation_checkpointing=true", "predictor.activation_checkpointing=true"],
}


# dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; first match on the device name
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.0), ("H100", 989.0), ("GH200", 989.0),
                    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0)]


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


def _cpu_sdpa_formulas() -> dict:
    """FlopCounterMode counts the CUDA attention kernels; on CPU, SDPA runs ``..._flash_attention_for_cpu``,
    which it does not know: count it with the same formulas (2 products forward, 5 backward)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def fwd(q, k, v, *args, **kwargs):
        return sdpa_flop_count(q, k, v)

    def bwd(grad_out, q, k, v, *args, **kwargs):
        return sdpa_backward_flop_count(grad_out, q, k, v)

    ops = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        ops[aten._scaled_dot_product_flash_attention_for_cpu] = fwd
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        ops[aten._scaled_dot_product_flash_attention_for_cpu_backward] = bwd
    return ops


def step_flops(step) -> float:
    """FLOPs of one call of ``step`` (forward, backward; optimiser and EMA are element-wise and not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_formulas()) as fc:
        step()
    return float(fc.get_total_flops())


def variants(device: str):
    dt = "float32" if device == "cpu" else "bfloat16"
    v = {"float32": ("float32", []), "bf16 autocast": ("bfloat16", []),
         "float32 + act. ckpt": ("float32", ["model.activation_checkpointing=true",
                                             "predictor.activation_checkpointing=true"])} if device == "cpu" else {
        "bf16 autocast": ("bfloat16", [])}
    v[f"fine-tune, end to end ({dt})"] = (dt, ["finetune"])
    v[f"fine-tune, head only ({dt})"] = (dt, ["finetune-frozen"])
    return v


class FinetuneStep:
    """One ``videojepa finetune`` step on random clips: encoder + V-JEPA 1 attentive head, label-smoothed CE."""

    def __init__(self, overrides: list[str], dtype: str, device: str, batch: int, frozen: bool):
        from videojepa.models.classifier import VideoClassifier
        from videojepa.models.pooler import ProbeConfig, build_classifier
        from videojepa.models.vit import VisionTransformer
        from videojepa.training.optim import layer_decay_param_groups

        cfg, _ = load_config("cpu_demo", overrides + [f"data.batch_size={batch}"])
        self.device = torch.device(device)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        torch.manual_seed(0)
        ec = cfg.encoder_config()
        enc = VisionTransformer(ec)
        head = build_classifier(ProbeConfig.vjepa1(ec.embed_dim, ec.num_heads, 14))
        head.pooler.cross_attention_block.xattn.proj.requires_grad_(False)
        self.model = VideoClassifier(enc, head).to(self.device)
        self.opt = torch.optim.AdamW(layer_decay_param_groups(enc, head, weight_decay=0.05, layer_decay=0.75), lr=1e-4)
        d = cfg.data
        self.clips = torch.randn(batch, 3, d.num_frames, *d.crop_size, device=self.device)
        self.labels = torch.randint(14, (batch,), device=self.device)
        self.frozen = frozen

    def __call__(self):
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32 else torch.autocast(
            self.device.type, enabled=False)
        with ctx:
            if self.frozen:
                with torch.no_grad():
                    tokens = self.model.encoder(self.clips)
                logits = self.model.head(tokens)
            else:
                logits = self.model(self.clips)
        torch.nn.functional.cross_entropy(logits.float(), self.labels, label_smoothing=0.1).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def make_step(overrides: list[str], dtype: str, device: str, batch: int):
    kind = [o for o in overrides if o.startswith("finetune")]
    rest = [o for o in overrides if not o.startswith("finetune")]
    if kind:
        return FinetuneStep(rest, dtype, device, batch, frozen=kind[0] == "finetune-frozen")
    return Step(rest, dtype, device, batch)


class Step:
    def __init__(self, overrides: list[str], dtype: str, device: str, batch: int):
        cfg, _ = load_config("cpu_demo", overrides + [f"data.batch_size={batch}"])
        self.cfg, self.device = cfg, torch.device(device)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        torch.manual_seed(0)
        self.model = JEPA(cfg.encoder_config(), cfg.predictor_config()).to(self.device)
        self.opt = build_optimizer(self.model.trainable(), cfg.optim)
        d = cfg.data
        self.grid = grid_size(d.num_frames, *d.crop_size, cfg.encoder_config().tubelet_size, cfg.encoder_config().patch_size)
        self.masks = MaskGenerator(cfg.mask.build(), self.grid, 0)
        self.clips = torch.randn(batch, 3, d.num_frames, *d.crop_size, device=self.device)
        self.batch, self.i = batch, 0

    def __call__(self):
        masks = [(a.to(self.device), b.to(self.device)) for a, b in self.masks.sample(self.i, self.batch)]
        self.i += 1
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32 else torch.autocast(
            self.device.type, enabled=False)
        with ctx:
            out = self.model(self.clips, masks)
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.model.update_target(0.999)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def _rss_mib() -> float:
    """Peak resident set of this process (MiB). Linux: VmHWM, which starts afresh at exec; ``ru_maxrss``
    would carry over the parent's peak into a child started with subprocess."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_memory_subprocess(overrides, dtype, device, batch) -> float:
    code = ("import json,sys,resource; sys.path.insert(0, %r); from train_step import make_step, _rss_mib;"
            "s=make_step(%r,%r,%r,%r); base=_rss_mib(); s(); s(); s();"
            "print(json.dumps(_rss_mib()-base))") % (sys.path[0], overrides, dtype, device, batch)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if r.returncode:
        return float("nan")
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="clips per step (default: 16 on CPU, 24 on CUDA)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds of timing (median reported)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and row")
    ap.add_argument("--no-memory", action="store_true", help="skip the CPU memory subprocesses")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: looked up "
                                                                   "from the device name)")
    ap.add_argument("--presets", default=None, help="comma-separated subset of preset labels (substring match)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of variants (substring match), e.g. "
                                                    "'float32,fine-tune'")
    a = ap.parse_args()
    presets = dict(CPU_PRESETS) if a.device == "cpu" else dict(GPU_PRESETS)
    if a.presets:
        presets = {k: v for k, v in presets.items() if any(s in k for s in a.presets.split(","))}
    batch = a.batch or (16 if a.device == "cpu" else 24)
    card = torch.cuda.get_device_name() if a.device.startswith("cuda") else None
    peak = a.peak_tflops or (peak_tflops(card) if card else None)
    print(f"# torch {torch.__version__}, device {a.device}" + (f" ({card}, dense bf16 peak "
          f"{'unknown' if peak is None else f'{peak:.0f} TFLOP/s'})" if card else "") +
          f", threads {torch.get_num_threads()}, batch {batch}, {a.repeats} rounds x {a.steps} steps, median")
    print("| preset | variant | clips/s | ratio | TFLOP/s | MFU | peak memory (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, over in presets.items():
        chosen = {n: v for n, v in variants(a.device).items()
                  if not a.variants or any(x == n or (x != "float32" and x in n) for x in a.variants.split(","))}
        rows = {name: make_step(over + extra, dt, a.device, batch) for name, (dt, extra) in chosen.items()}
        for s in rows.values():  # warm-up
            s()
        times = {n: [] for n in rows}
        for _ in range(a.repeats):
            for n, s in rows.items():
                t = time.perf_counter()
                for _ in range(a.steps):
                    s()
                times[n].append(a.steps * batch / (time.perf_counter() - t))
        base = None
        for n, s in rows.items():
            cps = statistics.median(times[n])
            base = base or cps
            tflops = step_flops(s) * cps / batch / 1e12
            mfu = f"{100 * tflops / peak:.1f}%" if peak else "-"
            if a.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
                s()
                mem = torch.cuda.max_memory_allocated() / 2**20
            elif a.no_memory:
                mem = float("nan")
            else:
                dt, extra = chosen[n]
                mem = measure_memory_subprocess(over + extra, dt, a.device, batch)
            print(f"| {label} | {n} | {cps:.1f} | {cps / base:.2f} | {tflops:.3g} | {mfu} | {mem:.0f} |", flush=True)
        del rows


if __name__ == "__main__":
    main()
