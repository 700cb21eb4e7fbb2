"""Frozen feature extraction: our encoder against HuggingFace transformers' VJEPA2Model on the same weights.

    python bench/embed_vs_hf.py

For each size: a ``VJEPA2Model`` with its own random initialisation, converted to ours with
``videojepa.interop.hf.hf_to_videojepa``; outputs compared (max |diff| of the last hidden state) and both timed
side by side in one process, alternating rounds, under ``torch.inference_mode``: ours as ``encoder(x)`` and as
``encoder.embed(x, pool="none")`` (what ``videojepa embed`` runs), transformers as ``model(pixel_values_videos=x,
skip_predictor=True)`` with its default attention implementation. Prints a table of clips/s and ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {
    # name: (hidden, heads, layers, patch, crop, frames, batch)
    "nano 64² x 16 (512 tokens)": (128, 4, 6, 8, 64, 16, 8),
    "ViT-S/16 224² x 16 (1568 tokens)": (384, 6, 12, 16, 224, 16, 2),
}


def build(hidden, heads, layers, patch, crop, frames):
    import transformers

    from videojepa.interop.hf import configs_from_hf, hf_to_videojepa
    from videojepa.models.vit import VisionTransformer

    cfg = transformers.VJEPA2Config(patch_size=patch, crop_size=crop, frames_per_clip=frames, tubelet_size=2,
                                    hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
                                    pred_hidden_size=64, pred_num_attention_heads=2, pred_num_hidden_layers=1)
    torch.manual_seed(0)
    hf = transformers.VJEPA2Model(cfg).eval()
    enc_cfg, _ = configs_from_hf(cfg)
    ours = VisionTransformer(enc_cfg).eval()
    esd, _ = hf_to_videojepa(hf.state_dict())
    ours.load_state_dict(esd, strict=True)
    return hf, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="timed calls per round and side")
    ap.add_argument("--sizes", default=None, help="comma-separated substrings of the size names")
    a = ap.parse_args()
    rows = []
    for name, (hidden, heads, layers, patch, crop, frames, batch) in SIZES.items():
        if a.sizes and not any(s in name for s in a.sizes.split(",")):
            continue
        hf, ours = build(hidden, heads, layers, patch, crop, frames)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(batch, 3, frames, crop, crop, generator=g)
        sides = {
            "transformers VJEPA2Model": lambda: hf(pixel_values_videos=x.permute(0, 2, 1, 3, 4),
                                                   skip_predictor=True).last_hidden_state,
            "ours encoder(x)": lambda: ours(x),
            "ours embed(pool=none)": lambda: ours.embed(x, pool="none"),
        }
        with torch.inference_mode():
            ref = sides["transformers VJEPA2Model"]()
            diffs = {k: (f() - ref).abs().max().item() for k, f in sides.items() if k.startswith("ours")}
            times: dict[str, list[float]] = {k: [] for k in sides}
            for k, f in sides.items():  # warm-up
                f()
            for r in range(a.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for k in order:
                    t0 = time.perf_counter()
                    for _ in range(a.steps):
                        sides[k]()
                    times[k].append((time.perf_counter() - t0) / a.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["transformers VJEPA2Model"]
        for k in sides:
            rows.append((name, k, batch / med[k], base / med[k], diffs.get(k)))
    print(f"\nfrozen features, {torch.get_num_threads()} threads, float32, inference_mode, median of {a.rounds} "
          f"alternating rounds x {a.steps} calls")
    print("| size | implementation | clips/s | speed vs transformers | max abs diff vs transformers |")
    print("|---|---|---|---|---|")
    for name, k, cps, ratio, d in rows:
        print(f"| {name} | {k} | {cps:.2f} | {ratio:.2f}x | {'' if d is None else f'{d:.1e}'} |")


if __name__ == "__main__":
    main()
