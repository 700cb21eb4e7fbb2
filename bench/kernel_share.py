"""How much faster can we be? The share of a step spent in the kernels both implementations run.

    python bench/kernel_share.py --jepa PATH/TO/jepa --vjepa2 PATH/TO/vjepa2 [--hf]

Ours and the reference do the same float32 arithmetic at the same shapes: the same matrix products (one fused
qkv projection each), the same scaled-dot-product attention kernel (flash attention for CPU) and the same patch
convolution. Whatever either side does around them (element-wise passes, copies, reshapes, the optimiser, EMA,
Python) is what an implementation can win back. So with ``K`` our time per step inside those kernels and
``T_ref`` the reference's whole step, ``T_ref / K`` bounds the speed-up any rewrite of the same arithmetic can
reach: at best everything outside the kernels costs nothing (a generous bound: GELU and LayerNorm, the same
arithmetic on both sides too, are counted as winnable). The kernel times come from ``torch.profiler``
(self CPU time of the kernel ops, per step); the whole-step times from timing without the profiler (median of
alternating rounds), as in ``bench/vs_official.py`` and ``bench/embed_vs_hf.py``, whose set-ups this script
reuses. Prints, per comparison: both steps' times, the kernels' share of each, our ceiling and the measured
ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# the heavy kernels both sides run on the same shapes (self time of these ops)
KERNELS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                    "aten::slow_conv3d_forward"),
}


def kernel_seconds(fn, steps: int) -> tuple[dict[str, float], float]:
    """Seconds per call inside each kernel family, and the profiled total, over ``steps`` calls."""
    fn()  # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    out = {k: 0.0 for k in KERNELS}
    total = 0.0
    for ev in prof.key_averages():
        total += ev.self_cpu_time_total
        for fam, names in KERNELS.items():
            if ev.key in names:
                out[fam] += ev.self_cpu_time_total
    return {k: v / 1e6 / steps for k, v in out.items()}, total / 1e6 / steps


def wall_seconds(fns: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per call of each function, rounds alternating in order."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            t0 = time.perf_counter()
            for _ in range(steps):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def compare(name: str, ours, ref, rounds: int, steps: int) -> dict:
    wall = wall_seconds({"ours": ours, "ref": ref}, rounds, steps)
    k_ours, _ = kernel_seconds(ours, steps)
    k_ref, _ = kernel_seconds(ref, steps)
    ko, kr = sum(k_ours.values()), sum(k_ref.values())
    return dict(name=name, ours_s=wall["ours"], ref_s=wall["ref"], measured=wall["ref"] / wall["ours"],
                k_ours=k_ours, k_ref=k_ref, share_ours=ko / wall["ours"], share_ref=kr / wall["ref"],
                ceiling=wall["ref"] / ko)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jepa", help="facebookresearch/jepa checkout (training step, sin-cos)")
    ap.add_argument("--vjepa2", help="facebookresearch/vjepa2 checkout (training step, RoPE)")
    ap.add_argument("--hf", action="store_true", help="frozen features against transformers' VJEPA2Model")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    if a.jepa or a.vjepa2:
        import vs_official as vo

        clips, masks = vo.batch(0)
        torch.manual_seed(0)
        for path, version, pos, label in ((a.jepa, 1, "sincos", "training step, sin-cos: ours vs facebookresearch/jepa"),
                                          (a.vjepa2, 2, "rope", "training step, RoPE: ours vs facebookresearch/vjepa2")):
            if not path:
                continue
            ours = vo.Ours(pos, len(masks))
            ref = vo.Reference(vo.import_reference(vo.materialize(path)), version, len(masks))
            rows.append(compare(label, lambda o=ours: o.step(clips, masks), lambda r=ref: r.step(clips, masks),
                                a.rounds, a.steps))
    if a.hf:
        import embed_vs_hf as ev

        for size, (hidden, heads, layers, patch, crop, frames, batch) in ev.SIZES.items():
            hf, ours = ev.build(hidden, heads, layers, patch, crop, frames)
            x = torch.randn(batch, 3, frames, crop, crop, generator=torch.Generator().manual_seed(1))
            xt = x.permute(0, 2, 1, 3, 4)
            with torch.inference_mode():
                rows.append(compare(f"frozen features {size}: ours embed(pool=none) vs transformers",
                                    lambda: ours.embed(x, pool="none"),
                                    lambda: hf(pixel_values_videos=xt, skip_predictor=True).last_hidden_state,
                                    a.rounds, a.steps))
    if not rows:
        ap.error("nothing to compare: give --jepa, --vjepa2 and/or --hf")
    print(f"\n{torch.get_num_threads()} threads, float32; wall: median of {a.rounds} alternating rounds x {a.steps} "
          f"calls; kernels: torch.profiler self time per call over {a.steps} calls")
    print("| comparison | ours s | reference s | measured speed-up | kernels in ours (matmul / attention / conv) "
          "| kernels' share: ours / reference | ceiling (reference s / our kernel s) |")
    print("|---|---:|---:|---:|---|---|---:|")
    for r in rows:
        k = r["k_ours"]
        print(f"| {r['name']} | {r['ours_s']:.3f} | {r['ref_s']:.3f} | {r['measured']:.2f}x | "
              f"{k['matmul']:.3f} / {k['attention']:.3f} / {k['convolution']:.3f} s | "
              f"{100 * r['share_ours']:.0f}% / {100 * r['share_ref']:.0f}% | {r['ceiling']:.2f}x |")


if __name__ == "__main__":
    main()
