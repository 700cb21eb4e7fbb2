"""``videojepa show``: pictures of what a model sees and predicts.

Each picture kind is one sub-command: a function ``_add_<kind>(sub)`` that adds its parser (with
``set_defaults(func=_wrap(_run_<kind>))``), listed in :data:`_SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_parsers"]

_FMT = argparse.RawDescriptionHelpFormatter
_ALL_FORMATS = ("gif", "mp4", "png")


def _wrap(run):
    """Run a sub-command; bad input (a missing or unreadable file, an unusable model) is one ``error:`` line
    naming it, exit status 2."""
    def inner(a) -> int:
        from ..data.errors import DataError
        from ..viz.clips import VizError
        from .evaluate import CliError

        try:
            return run(a)
        except (CliError, VizError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return inner


def _clip_args(p, video_help: str, checkpoint_help: str) -> None:
    """What every picture takes: VIDEO, --checkpoint, --out, --item, --fps, --format."""
    p.add_argument("video", metavar="VIDEO", help=video_help)
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help=checkpoint_help)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--item", type=int, default=0, help="item of an INDEX (default 0)")
    p.add_argument("--fps", type=float, default=4, help="frames per second of the GIF / MP4 (default 4)")
    p.add_argument("--format", nargs="+", choices=_ALL_FORMATS, default=list(_ALL_FORMATS), metavar="FMT",
                   help="files to write: gif, mp4, png (default: all three)")


def _formats(a) -> list[str]:
    """The checked --fps, and --format without repeats."""
    from ..viz.clips import VizError

    if a.fps <= 0:
        raise VizError(f"--fps must be > 0, got {a.fps}")
    return list(dict.fromkeys(a.format))


# ----------------------------------------------------------------------------------------------- features
def _add_features(sub) -> None:
    p = sub.add_parser(
        "features", help="the encoder's token features as colours (PCA), beside the frames", formatter_class=_FMT,
        description="Run the encoder over one clip and colour its tokens by their three main directions of "
                    "variation (PCA to RGB): tokens the encoder represents alike get alike colours. Writes "
                    "features.gif / features.mp4 (each frame beside its colour map) and features.png (rows: "
                    "input / PCA map, columns: frames) into --out. The PCA is fitted on this clip, or with "
                    "--reference on a few clips of another dataset so that several videos share one colouring.",
        epilog="VIDEO: a video or image file, a frame folder, an INDEX (CSV or folder; --item picks one) or "
               "synthetic:SPLIT[:N] (the embedded dataset, no file needed).\n\n"
               "examples:\n"
               "  videojepa show features synthetic:val --checkpoint runs/cpu_demo/checkpoints/step_00000360.pt "
               "--out pics\n"
               "  videojepa show features clip.mp4 --checkpoint vjepa2-vitl --out pics --format mp4 png\n"
               "  videojepa show features a.mp4 --checkpoint vitl.pt --out pics/a --reference /data/val.csv")
    _clip_args(p, "the clip to show (see below)",
               "encoder weights: a run checkpoint (runs/.../checkpoints/step_*.pt) or its run directory, an export, "
               "an official V-JEPA file, a HuggingFace folder or a published name")
    p.add_argument("--part", choices=("encoder", "target_encoder"), default=None,
                   help="which encoder of the checkpoint (default: the one its probes use, target_encoder when "
                        "present)")
    p.add_argument("--reference", default=None, metavar="SPEC",
                   help="fit the PCA on the first --reference-items clips of SPEC instead of this clip")
    p.add_argument("--reference-items", type=int, default=8, help="clips of --reference (default 8)")
    p.set_defaults(func=_wrap(_run_features))


def _run_features(a) -> int:
    from ..viz.clips import VizError
    from ..viz.features import show_features

    fmts = _formats(a)
    if a.reference_items < 1:
        raise VizError(f"--reference-items must be >= 1, got {a.reference_items}")
    r = show_features(a.video, a.checkpoint, a.out, part=a.part, item=a.item, fps=a.fps, reference=a.reference,
                      formats=[f for f in fmts if f != "png"], png="png" in fmts,
                      reference_items=a.reference_items)
    T, (t, h, w) = r["frames"], r["grid"]
    ev = ", ".join(f"{v * 100:.0f}%" for v in r["explained"])
    print(f"{a.video}: {T} frames, {t}x{h}x{w} tokens; PCA fitted on {r['pca']} (variance {ev})")
    for f in fmts:
        print(f"  {r[f]}")
    print(f"done in {r['seconds']:.1f} s")
    return 0


# ----------------------------------------------------------------------------------------------- predictions
def _add_predictions(sub) -> None:
    p = sub.add_parser(
        "predictions", help="what the predictor believes is behind the mask, decoded to pixels", formatter_class=_FMT,
        description="Draw a multi-block mask from the run's own mask configs, run the context encoder on the visible "
                    "tubelets and the predictor at the hidden ones, and decode the predictions with a pixel decoder "
                    "(videojepa decoder train). Panels: input, visible context, decoded target features, decoded "
                    "predictions (visible part dimmed), the copy-nearest-visible baseline (and the random-init "
                    "model's decoded predictions with --random-decoder). Writes predictions.gif / .mp4 (panels side "
                    "by side over time), predictions.png (panels x tubelets) and predictions.json (PSNR at the "
                    "hidden positions of each panel), and prints the PSNR table.",
        epilog="examples:\n"
               "  videojepa decoder train --checkpoint runs/cpu_demo\n"
               "  videojepa decoder train --checkpoint runs/cpu_demo --init random\n"
               "  videojepa show predictions synthetic:val --checkpoint runs/cpu_demo --decoder runs/cpu_demo/decoder "
               "--random-decoder runs/cpu_demo/decoder-random --out pics")
    _clip_args(p, "the clip (a file, an INDEX with --item, or synthetic:SPLIT[:N])",
               "a videojepa pretraining checkpoint, or its run directory (newest checkpoint)")
    p.add_argument("--decoder", default=None, metavar="DIR",
                   help="the decoder (default: decoder/ in the checkpoint's run directory)")
    p.add_argument("--random-decoder", default=None, metavar="DIR",
                   help="a decoder trained with --init random: adds the random-init model's decoded predictions")
    p.add_argument("--mask-config", type=int, default=None,
                   help="which of the run's mask configs (default: the last, the long-range blocks in V-JEPA's recipe)")
    p.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
    p.set_defaults(func=_wrap(_run_predictions))


def _run_predictions(a) -> int:
    from ..training.checkpoint import CheckpointError
    from ..training.decoder import decoder_out_dir
    from ..viz.clips import VizError
    from ..viz.predictions import show_predictions

    fmts = _formats(a)
    try:
        dec = a.decoder or decoder_out_dir(a.checkpoint)
        r = show_predictions(a.video, a.checkpoint, dec, a.out, item=a.item, mask_config=a.mask_config, seed=a.seed,
                             random_decoder=a.random_decoder, fps=a.fps, formats=[f for f in fmts if f != "png"],
                             png="png" in fmts)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        raise VizError(str(e)) from None
    names = {"prediction": "decoded prediction", "copy_nearest": "copy nearest visible",
             "random_init": "random-init prediction", "target_decoded": "decoded target (ceiling: saw the pixels)"}
    print(f"{a.video}: PSNR at the hidden positions (dB)")
    for k, v in r["psnr"].items():
        print(f"  {names.get(k, k):<42} {v:6.2f}")
    gap = r["psnr"]["prediction"] - r["psnr"]["copy_nearest"]
    print(f"  the decoded prediction {'beats' if gap > 0 else 'does not beat'} copying the nearest visible tubelet "
          f"({gap:+.2f} dB)")
    for f in fmts:
        print(f"  {r[f]}")
    print(f"  {r['json']}")
    print(f"done in {r['seconds']:.1f} s")
    return 0


# ----------------------------------------------------------------------------------------------- parsers
_SUBCOMMANDS = [_add_features, _add_predictions]  # add a sub-command: one more _add_<kind>(sub) here


def add_parsers(sub) -> None:
    s = sub.add_parser(
        "show", help="pictures of what a model sees (see 'videojepa show <what> --help')", formatter_class=_FMT,
        description="Pictures and videos of what a model sees.",
        epilog="examples:\n  videojepa show features synthetic:val --checkpoint runs/cpu_demo/checkpoints/"
               "step_00000360.pt --out pics")
    what = s.add_subparsers(dest="show_what", metavar="<what>")
    for add in _SUBCOMMANDS:
        add(what)

    def usage(a) -> int:
        s.print_help(sys.stderr)
        return 2

    s.set_defaults(func=usage)
