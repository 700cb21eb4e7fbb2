"""Decoded masked predictions against the copy-nearest-visible baseline (issue 13's target), and picture timings.

    python bench/predictions.py --run runs/cpu_demo            # after `videojepa pretrain`

Trains the light pixel decoder on the run's frozen features (and on the same model at initialisation, the
random-init baseline), each into ``RUN/bench-decoder-<inputs>-<init>/`` (resumable, reused when finished), then
scores, at the hidden positions of the run's own masks (every mask config, one mask per clip and config), the
PSNR of: the decoded predictor outputs, each hidden tubelet copied from the nearest visible one, the random-init
model's decoded predictions, and the decoded target features (the decoder's ceiling, not a prediction). Held-out
clips: ``synthetic:val`` (the pretraining set is ``synthetic`` seed 0; val is seed 2). Last, it times
``show features`` and ``show predictions`` on one clip of the run's size.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def train(run: Path, init: str, inputs: str, steps: int) -> Path:
    from videojepa.training.decoder import DecoderRunConfig, DecoderTrainer

    out = run / f"bench-decoder-{inputs}-{init}"
    cfg = DecoderRunConfig.make([f"source.checkpoint={run}", f"source.init={init}", f"source.inputs={inputs}",
                                 f"train.steps={steps}"])
    t0 = time.perf_counter()
    tr = DecoderTrainer(cfg, out, progress=True)
    if tr.step < steps:
        tr.fit()
        print(f"  decoder {inputs}/{init}: {steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    elif not (out / "decoder.json").is_file():
        tr.export()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/cpu_demo")
    ap.add_argument("--steps", type=int, default=400, help="decoder training steps")
    ap.add_argument("--clips", type=int, default=32, help="held-out clips scored")
    ap.add_argument("--inputs", nargs="+", default=["both", "targets"], help="decoder input variants to train")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    a = ap.parse_args()
    torch.manual_seed(0)
    run = Path(a.run)

    from videojepa.training.decoder import load_decoder, load_jepa
    from videojepa.viz.clips import read_clips
    from videojepa.viz.predictions import evaluate

    jepa, cfg, ckpt = load_jepa(run)
    rjepa, _, _ = load_jepa(run, "random")
    clips = read_clips("synthetic:val", num_frames=cfg.data.num_frames, crop_size=cfg.data.crop_size, max_items=a.clips)
    names = [f"{c.num_blocks} x {c.spatial_scale[0]:g}" if hasattr(c, "num_blocks") else type(c).__name__
             for c in cfg.mask.build()]
    results = {}
    for inputs in a.inputs:
        dec, _ = load_decoder(train(run, "trained", inputs, a.steps))
        rdec, _ = load_decoder(train(run, "random", inputs, a.steps))
        t0 = time.perf_counter()
        results[inputs] = evaluate(jepa, dec, clips, cfg, random_pair=(rjepa, rdec))
        print(f"  scored {len(clips)} clips x {len(names)} mask configs in {time.perf_counter() - t0:.0f} s", flush=True)

    rows = [("copy nearest visible tubelet", "copy_nearest"), ("random-init model, decoded prediction", "random_init"),
            ("V-JEPA, decoded prediction", "prediction"), ("V-JEPA, decoded target (ceiling, saw the pixels)",
                                                           "target_decoded")]
    print(f"\nhidden-position PSNR (dB), {len(clips)} held-out clips, checkpoint {ckpt}")
    print(f"| decoder inputs | panel | " + " | ".join(names) + " | all |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for inputs, res in results.items():
        for label, key in rows:
            r = res[key]
            print(f"| {inputs} | {label} | " + " | ".join(f"{x:.2f}" for x in r["per_config"]) + f" | {r['mean']:.2f} |")

    from videojepa.viz.features import show_features
    from videojepa.viz.predictions import show_predictions

    out = run / "bench-pictures"
    t0 = time.perf_counter()
    show_features("synthetic:val", str(ckpt), out / "features")
    tf = time.perf_counter() - t0
    t0 = time.perf_counter()
    show_predictions("synthetic:val", ckpt, run / f"bench-decoder-{a.inputs[0]}-trained", out / "predictions",
                     random_decoder=run / f"bench-decoder-{a.inputs[0]}-random")
    tp = time.perf_counter() - t0
    print(f"\npictures of one {cfg.data.num_frames}-frame clip (in-process, models loaded by each call): "
          f"show features {tf:.1f} s, show predictions {tp:.1f} s; written under {out}")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "mask_configs": names, "clips": len(clips),
                                            "checkpoint": str(ckpt), "show_features_s": tf, "show_predictions_s": tp},
                                           indent=2))


if __name__ == "__main__":
    main()
