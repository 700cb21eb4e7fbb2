"""``videojepa decoder train``: a light pixel decoder on a pretraining run's frozen features."""
from __future__ import annotations

import argparse
import sys

from .common import add_run_args

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    d = sub.add_parser("decoder", help="a pixel decoder on frozen features (to look at predictions)",
                       description="Pixel decoders trained on frozen V-JEPA features, so that predictions can be looked "
                                   "at (videojepa show predictions).")
    ds = d.add_subparsers(dest="decoder_command", metavar="<subcommand>")
    t = ds.add_parser(
        "train", help="train a decoder: target-encoder tokens -> tubelet pixels",
        description="Train a small per-token decoder from the frozen target encoder's (layer-normed) tokens to the "
                    "pixels of their tubelets, on unlabeled clips. Resumable; metrics.csv/png, progress bar; the "
                    "export decoder.safetensors + decoder.json goes to --out (default: decoder/ beside the run's "
                    "checkpoints/, decoder-random/ with --init random).",
        epilog="examples:\n  videojepa decoder train --checkpoint runs/cpu_demo\n"
               "  videojepa decoder train --checkpoint runs/cpu_demo --init random      # the baseline's decoder\n"
               "  videojepa decoder train --checkpoint runs/my/checkpoints/step_00003000.pt --data /data/clips.csv "
               "--steps 2000 model.hidden=1024\n"
               "  videojepa decoder train --world runs/world/conv      # then: videojepa world imagine --decoder",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a videojepa pretraining checkpoint, or its run directory (newest)")
    src.add_argument("--world", help="a `videojepa world train` run (or checkpoint): decode its latents to frames, "
                     "so that `videojepa world imagine --decoder` can show imagined rollouts")
    t.add_argument("--data", default="", help="clips to train on: synthetic:SPLIT[:N], a CSV index, a folder or tar "
                   "shards (default: the checkpoint's own pretraining data); with --world: a trajectory folder "
                   "(default: the world run's)")
    t.add_argument("--init", choices=("trained", "random"), default="trained",
                   help="decode the trained model's features, or the same model's at initialisation (the baseline)")
    t.add_argument("--out", default=None, help="run directory (default: RUN/decoder or RUN/decoder-random)")
    t.add_argument("--steps", type=int, default=None, help="training steps (default 400)")
    t.add_argument("--batch-size", type=int, default=None, help="clips per step (default 16)")
    add_run_args(t)
    t.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides: model.hidden, model.depth, optim.lr, optim.loss=l1, train.seed, ...")
    t.set_defaults(func=_run_train)
    d.set_defaults(func=lambda a: (d.print_help(), 2)[1])


def _run_train(a) -> int:
    import yaml

    from ..config import ConfigError
    from ..training.checkpoint import CheckpointError
    from ..training.decoder import DecoderRunConfig, make_trainer
    from ..training.engine import DataFailureError, NonFiniteLossError

    over = [f"source.checkpoint={a.checkpoint}" if a.checkpoint else f"source.world={a.world}", f"source.init={a.init}"]
    if a.world and a.init != "trained":
        print("error: --init random is for pretraining checkpoints (the random-init baseline of predictions)",
              file=sys.stderr)
        return 2
    if a.data:
        over.append(f"data.data={a.data}")
    if a.steps is not None:
        over.append(f"train.steps={a.steps}")
    if a.batch_size is not None:
        over.append(f"data.batch_size={a.batch_size}")
    try:
        cfg = DecoderRunConfig.make(over + list(a.overrides))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    try:
        tr = make_trainer(cfg, a.out, resume=a.resume, progress=not a.no_progress, device=a.device)
        if tr.resumed_from:
            print(f"resuming from {tr.resumed_from} (step {tr.step})", file=sys.stderr)
        s = tr.fit()
    except (FileNotFoundError, CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, DataFailureError, ValueError, NotImplementedError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done: {s['steps']} steps in {s['seconds']:.0f} s; loss {s['loss_first']:.4f} -> {s['loss_last']:.4f}; "
          f"decoder of {s['checkpoint']} ({s['init']} weights)")
    print(f"export: {s['export']} (+ decoder.json); run directory: {tr.out}")
    return 0
