"""``videojepa weights list | path | download | info`` and ``videojepa convert``."""
from __future__ import annotations

import argparse
import json
import sys


def add_parsers(sub) -> None:
    w = sub.add_parser("weights", help="published weights: list, locate, download, inspect",
                       description="The registry of published V-JEPA / V-JEPA 2 weights and the local cache "
                                   "($VIDEOJEPA_CACHE or ~/.cache/videojepa).")
    ws = w.add_subparsers(dest="weights_command", metavar="<action>")
    ls = ws.add_parser("list", help="list the published models")
    ls.add_argument("--kind", choices=("pretrained", "probe"), help="only this kind")
    ls.add_argument("--json", action="store_true", help="print the registry as JSON")
    ls.set_defaults(func=_run_list)
    p = ws.add_parser("path", help="where a published model lives in the cache")
    p.add_argument("name")
    p.set_defaults(func=_run_path)
    d = ws.add_parser("download", help="download a published model into the cache and verify it")
    d.add_argument("name")
    d.set_defaults(func=_run_download)
    i = ws.add_parser("info", help="detected format, parts, configs and notes of a file, folder or name")
    i.add_argument("source")
    i.add_argument("--config", help="architecture facts the file cannot tell (JSON string or JSON/YAML path)")
    i.set_defaults(func=_run_info)
    w.set_defaults(func=lambda a: (w.print_help(), 2)[1])

    c = sub.add_parser(
        "convert", help="convert weights between formats",
        description="Convert official V-JEPA / V-JEPA 2 files, HuggingFace V-JEPA 2 folders, our checkpoints or a "
                    "published name into our format (model.safetensors + config.json) or a HuggingFace folder "
                    "that transformers.AutoModel.from_pretrained loads.",
        epilog="examples:\n  videojepa convert vitl.pt vjepa2-vitl/\n  videojepa convert vitl.pt hf-vitl/ --to hf\n"
               "  videojepa convert ssv2-vitl-16x2x3.pt hf-ssv2/ --to hf --base vitl.pt\n"
               "  videojepa convert hf-folder/ ours/ --to videojepa",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("src", help="file, folder or published name")
    c.add_argument("dst", help="output folder")
    c.add_argument("--to", choices=("videojepa", "hf"), default="videojepa", help="output format (default: videojepa)")
    c.add_argument("--parts", help="comma-separated parts to keep (videojepa output; default: all)")
    c.add_argument("--encoder", choices=("target_encoder", "encoder"), default=None,
                   help="which encoder goes into an HF folder (default: the one the source was evaluated with, "
                        "target_encoder for official files; HF's own hub conversion used 'encoder')")
    c.add_argument("--base", help="pretrained weights to put under a probe (HF classification output)")
    c.add_argument("--config", help="architecture facts the source cannot tell (JSON string or JSON/YAML path)")
    c.set_defaults(func=_run_convert)


def _config_arg(s: str | None):
    if not s:
        return None
    s = s.strip()
    return json.loads(s) if s.startswith("{") else s


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _run_list(a) -> int:
    from ..interop.published import cached_path, list_entries

    entries = list_entries(kind=a.kind)
    if a.json:
        from dataclasses import asdict

        print(json.dumps([dict(asdict(e), filename=e.filename) for e in entries], indent=2))
        return 0
    rows = [("name", "kind", "arch", "input", "norm", "size", "sha256", "cached", "source")]
    for e in entries:
        p = e.preprocessing
        norm = "imagenet" if p.get("mean") == [0.485, 0.456, 0.406] and p.get("std") == [0.229, 0.224, 0.225] else "custom"
        arch = e.arch or (f"on {e.base}" if e.base else "-")
        rows.append((e.name + ("" if e.loadable else " (not loadable yet)"), e.kind, arch, e.input_size, norm,
                     _human(e.size_bytes), (e.sha256 or "-")[:12], "yes" if cached_path(e).is_file() else "no", e.url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths)) + "  " + r[-1])
    print("\nsize / sha256 are shown only where known for sure. Cache: $VIDEOJEPA_CACHE or ~/.cache/videojepa. "
          "`videojepa weights info NAME` shows a model's preprocessing.")
    return 0


def _run_path(a) -> int:
    from ..interop.published import cached_path, get_entry
    from ..interop.weights import WeightsError

    try:
        e = get_entry(a.name)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    p = cached_path(e)
    print(p)
    if not p.is_file():
        print(f"(not there yet: `videojepa weights download {e.name}`, or save {e.url} at that path)", file=sys.stderr)
        return 1
    return 0


def _run_download(a) -> int:
    from ..interop.published import fetch, get_entry, sha256_of
    from ..interop.weights import WeightsError

    try:
        e = get_entry(a.name)
        p = fetch(e)  # honours VIDEOJEPA_OFFLINE / HF_HUB_OFFLINE
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{p}  ({p.stat().st_size} bytes, sha256 {sha256_of(p)})")
    return 0


def _run_info(a) -> int:
    from pathlib import Path

    from ..interop.published import cached_path, get_entry
    from ..interop.weights import WeightsError, read_weights

    entry = None if Path(a.source).exists() else get_entry(a.source, missing_ok=True)
    if entry is not None and not cached_path(entry).is_file():
        print(f"name:     {entry.name} ({entry.kind}, {entry.family}; not downloaded: {cached_path(entry)})")
        print(f"source:   {entry.url}" + (f"  (HF: {entry.hf_id})" if entry.hf_id else ""))
        for k in ("arch", "base", "evaluated_with", "description"):
            if getattr(entry, k):
                print(f"{k}: {getattr(entry, k)}")
        print(f"preprocessing: {json.dumps(entry.preprocessing)}")
        if entry.eval:
            print(f"eval: {json.dumps(entry.eval)}")
        return 0
    try:
        w = read_weights(a.source, config=_config_arg(a.config))
        for part in w.parts:
            w.check(part)
    except (WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    info = w.info()
    print(f"source:   {w.source}")
    print(f"format:   {w.format}")
    print(f"parts:    {', '.join(w.parts)} (all match their models; default part: {w.default_part()})")
    for name in ("encoder", "predictor", "probe"):
        cfg = getattr(w, name)
        if cfg is not None:
            print(f"{name + ':':<9} " + ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    for part, keys in w.dropped.items():
        print(f"dropped:  {part}: {len(keys)} key(s) on purpose: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}")
    if info.get("preprocessing"):
        print(f"preprocessing: {json.dumps(info['preprocessing'])}")
    for k in ("evaluated_with", "name", "hf_id", "eval"):
        if info.get(k):
            print(f"{k}: {info[k]}")
    for n in w.notes:
        print(f"note:     {n}")
    return 0


def _run_convert(a) -> int:
    from ..interop.hf import write_hf_folder
    from ..interop.weights import WeightsError, read_weights, write_videojepa

    try:
        cfg = _config_arg(a.config)
        if a.base:  # the probe section of --config describes SRC, the rest describes the base
            from ..interop.weights import _split_config

            cfg = _split_config(cfg)
            base = read_weights(a.base, config={k: v for k, v in cfg.items() if k != "probe"})
            cfg = {k: v for k, v in cfg.items() if k == "probe"}
        w = read_weights(a.src, config=cfg)
        if a.base:
            if "probe" not in w.states:
                raise WeightsError(f"--base is for probes; {a.src} holds {', '.join(w.parts)}")
            for part in ("encoder", "target_encoder", "predictor"):
                if part in base.states:
                    w.states[part] = base.states[part]
                    w.file_keys[part] = base.file_keys.get(part, {})
            w.encoder, w.predictor = base.encoder, base.predictor
            w.meta = {**base.meta, **w.meta}
            w.notes += base.notes
        if a.to == "hf":
            out, notes = write_hf_folder(w, a.dst, encoder_part=a.encoder)
        else:
            parts = [p.strip() for p in a.parts.split(",")] if a.parts else None
            for p in parts or []:
                w._require(p)
            out, notes = write_videojepa(w, a.dst, parts), []
    except (WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for n in w.notes + notes:
        print(f"note: {n}", file=sys.stderr)
    for part, keys in w.dropped.items():
        print(f"note: {part}: dropped on purpose: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}", file=sys.stderr)
    print(f"wrote {out} ({a.to}; from {w.format})")
    return 0
