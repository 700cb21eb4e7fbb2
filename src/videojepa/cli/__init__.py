"""The ``videojepa`` command line: ``videojepa <command> --help``."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from .common import add_run_args


def _add_pretrain(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="self-supervised V-JEPA pretraining",
        description="Pretrain a V-JEPA encoder. With no arguments: the CPU demo preset on the embedded synthetic "
                    "video dataset (about 10 minutes on 2 CPU cores).",
        epilog="examples:\n  videojepa pretrain\n  videojepa pretrain --config cpu_demo --max-steps 50 optim.lr=3e-4\n"
               "  videojepa pretrain --config path/to/official/pretrain-256px-16f.yaml --print-config",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="preset name (see --list-configs) or path to a YAML file; "
                   "official V-JEPA / V-JEPA 2 pretrain YAMLs are accepted (default: cpu_demo)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    add_run_args(p, "train.device")
    p.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp",
                   help="under torchrun: DDP (replicated model) or FSDP2 (sharded, bf16 on CUDA; sharded checkpoints)")
    p.add_argument("--list-configs", action="store_true", help="list the shipped presets and exit")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides with dotted keys, e.g. data.batch_size=8")
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(a) -> int:
    from pathlib import Path

    import yaml

    from ..config import ConfigError, list_presets, load_config

    if a.list_configs:
        for name in list_presets():
            print(name)
        return 0
    overrides = list(a.overrides)
    if a.max_steps is not None:
        overrides.append(f"train.max_steps={a.max_steps}")
    try:
        cfg, notes = load_config(a.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if a.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    from ..training.distributed import shutdown
    from ..training.trainer import DataFailureError, NonFiniteLossError, Pretrainer

    out = Path(a.out) if a.out else Path("runs") / Path(a.config or "cpu_demo").stem
    try:
        trainer = Pretrainer(cfg, out, resume=a.resume, progress=not a.no_progress, device=a.device, parallel=a.parallel)
        if trainer.resumed_from and trainer.env.is_main:
            print(f"resuming from {trainer.resumed_from} (step {trainer.step})", file=sys.stderr)
        if trainer.env.is_main:
            print(f"compute: {trainer.dtype_note}", file=sys.stderr)
        s = trainer.fit()
        shutdown(trainer.env)
        if not trainer.env.is_main:
            return 0
    except (NonFiniteLossError, DataFailureError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, NotImplementedError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    d = s.get("diagnostics", {})
    print(f"done: {s['steps']} steps in {s['seconds']:.0f} s on {s['device']} ({s['dtype']}); "
          f"loss {s['loss_first']:.4f} -> {s['loss_last']:.4f}; {s['clips_per_s']:.1f} clips/s")
    if d:
        print(f"collapse check: target std {d['target_std']:.3f}, token std {d['target_token_std']:.3f}, "
              f"effective rank {d['target_erank']:.1f}")
    dd = s.get("data", {})
    if dd.get("samples_skipped"):
        print(f"data: {dd['samples_ok']} samples read, {dd['samples_skipped']} skipped "
              f"({len(dd['skipped_files'])} files, listed in summary.json)")
    print(f"run directory: {out}  (config.yaml, metrics.csv, metrics.png, summary.json, checkpoints/)")
    return 0


def _run_models(a) -> int:
    from ..models.registry import PRESETS

    print(f"{'name':<16} {'width':>6} {'depth':>6} {'heads':>6} {'mlp':>6}  description")
    for n, p in sorted(PRESETS.items(), key=lambda kv: (kv[1].embed_dim * kv[1].depth, kv[0])):
        print(f"{n:<16} {p.embed_dim:>6} {p.depth:>6} {p.num_heads:>6} {p.mlp_ratio:>6.3g}  {p.description}")
    return 0


_COMMAND_MODULES = ("data", "weights", "evaluate", "finetune", "world", "decoder", "show", "report")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="videojepa", description="V-JEPA / V-JEPA 2 video pretraining and evaluation.")
    ap.add_argument("--version", action="version", version=f"videojepa {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="<command>")
    _add_pretrain(sub)
    m = sub.add_parser("models", help="list the encoder presets", description="List the registered encoder presets.")
    m.set_defaults(func=_run_models)
    import importlib

    for mod in _COMMAND_MODULES:  # each module adds its sub-command(s) with add_parsers(sub)
        try:
            module = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{mod}":
                raise
            continue
        module.add_parsers(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "func", None):
        ap.print_help()
        return 2
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
