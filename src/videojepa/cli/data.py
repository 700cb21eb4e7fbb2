"""``videojepa data check``: scan an index, a folder or tar shards and say what can be used."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter

__all__ = ["add_parsers", "check_entry"]

_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=")


class _Parser(argparse.ArgumentParser):
    """Accepts INDEX and key=value items anywhere, also after options (``check a.csv --rows 5 data.fps=4``)."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        if hasattr(ns, "sources"):
            keep = [x for x in extras if x.startswith("-")]
            ns.sources = list(ns.sources or []) + [x for x in extras if not x.startswith("-")]
            extras = keep
        return ns, extras


def add_parsers(sub) -> None:
    p = sub.add_parser("data", help="inspect video data sources", description="Inspect video data sources.")
    dsub = p.add_subparsers(dest="data_command", metavar="<subcommand>", parser_class=_Parser)
    c = dsub.add_parser(
        "check", help="scan an index, folder or shards: readable / unreadable files, durations, fps, sizes, codecs",
        description="Open every file of an index (CSV), folder or set of tar shards, decode a few frames of each, "
                    "and print what can be used: readable and unreadable files (with the reason), durations, "
                    "frame rates, resolutions, codecs, and how many clips each video yields under the config's "
                    "clip settings (data.num_frames, data.frame_step / data.fps / data.clip_duration). "
                    "Exits with status 1 when a file is unreadable.",
        epilog="examples:\n  videojepa data check /data/train.csv\n"
               "  videojepa data check frames:/data/ssv2_frames data.fps=4 data.num_frames=16\n"
               "  videojepa data check --config my_run.yaml          (the config's data.datasets)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("sources", nargs="*", metavar="INDEX",
                   help="CSV index, folder, .tar shards (optionally prefixed csv:, videos:, frames:, images:, "
                        "webdataset:); default: the config's data.datasets; key=value items are config overrides")
    c.add_argument("--config", default=None, help="preset name or YAML path for the clip settings (default: cpu_demo)")
    c.add_argument("--full", action="store_true", help="decode every frame (slow; finds corruption anywhere)")
    c.add_argument("--limit", type=int, default=None, help="check only the first N files")
    c.add_argument("--workers", type=int, default=0, help="processes to check files in parallel (default: 0, this one)")
    c.add_argument("--rows", type=int, default=40, help="readable files listed one per row (default 40; unreadable "
                   "files are always all listed)")
    c.add_argument("--json", default=None, metavar="PATH", help="also write one JSON record per file to PATH")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_run_check)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


# ----------------------------------------------------------------------------- checking one sample
def check_entry(task) -> dict:
    """Check one sample. ``task = (name, kind, src, (sampling kwargs, frame folder fps), full)``; ``src``
    is a path or the file's bytes. Returns a JSON-able record (``ok``, ``reason`` or the file's properties)."""
    from ..data.decode import (DecodeError, list_frame_files, probe, read_all_frames, read_frames, read_image)
    from ..data.sampling import ClipSampling, clips_that_fit

    name, kind, src, (spec_d, folder_fps), full = task
    spec = ClipSampling(**spec_d)
    rec = {"path": name, "kind": kind, "ok": False}
    try:
        if kind == "auto":
            import os

            kind = "frames" if isinstance(src, str) and os.path.isdir(src) else "video"
            rec["kind"] = kind
        if kind == "image":
            img = read_image(src, name=name)
            rec.update(ok=True, frames=1, fps=None, duration_s=None, width=img.shape[1], height=img.shape[0],
                       codec="image", clips=spec.num_clips)
            return rec
        if kind == "frames":
            files = list_frame_files(src)
            a, b = read_image(files[0]), read_image(files[-1])
            if a.shape != b.shape:
                raise DecodeError(name, f"frames of different sizes {a.shape[:2]} and {b.shape[:2]}")
            n = len(files)
            rec.update(frames=n, fps=folder_fps, duration_s=round(n / folder_fps, 3), width=a.shape[1],
                       height=a.shape[0], codec="frames")
            fits = clips_that_fit(spec, n, n / folder_fps)
        else:
            info = probe(src, name=name)
            if full:
                got = len(read_all_frames(src))
                if got != info.num_frames:
                    raise DecodeError(name, f"{got} frames decode out of the {info.num_frames} the file lists")
                first = read_frames(src, [0], info=info)
            else:
                n = info.num_frames
                first = read_frames(src, sorted({0, n // 2, n - 1}), info=info)
            rec.update(frames=info.num_frames, fps=round(info.fps, 3), duration_s=round(info.duration, 3),
                       width=int(first.shape[2]), height=int(first.shape[1]), codec=info.codec)
            fits = clips_that_fit(spec, info.num_frames, info.duration)
        rec["fits"] = fits
        short = fits == 0
        rec["short"] = bool(short)
        rec["clips"] = 0 if short and spec.short_video == "skip" else spec.num_clips
        rec["ok"] = True
    except DecodeError as e:
        rec["reason"] = e.reason
    except Exception as e:  # noqa: BLE001 - report whatever went wrong with this file
        rec["reason"] = f"{type(e).__name__}: {e}"
    return rec


def _tasks(sources, spec_d, full, limit):
    from ..data.sources import ListSource
    from ..data.webdataset import _media, iter_samples

    n = 0
    for s in sources:
        if isinstance(s, ListSource):
            for e in s.entries:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield (e.path, e.kind, e.path, spec_d, full)
        else:
            for shard in s.shards:
                for sample in iter_samples(shard):
                    if limit is not None and n >= limit:
                        return
                    n += 1
                    name = f"{shard}:{sample['__key__']}"
                    if "__error__" in sample:
                        yield (shard, "shard-error", sample["__error__"], spec_d, full)
                        continue
                    try:
                        kind, ext, data = _media(sample)
                    except Exception as e:  # noqa: BLE001
                        yield (name, "shard-error", str(e), spec_d, full)
                        continue
                    yield (f"{name}.{ext}", kind, data, spec_d, full)


def _check_task(task) -> dict:
    if task[1] == "shard-error":
        return {"path": task[0], "kind": "sample", "ok": False, "reason": task[2]}
    return check_entry(task)


# ----------------------------------------------------------------------------- the command
def _run_check(a) -> int:
    from ..config import ConfigError, load_config
    from ..data.errors import DataError
    from ..data.sources import ListSource, load_source

    specs = [s for s in a.sources if not _OVERRIDE.match(s)]
    overrides = [s for s in a.sources if _OVERRIDE.match(s)]
    try:
        cfg, _ = load_config(a.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = cfg.data
    specs = specs or list(d.datasets)
    if not specs:
        print("error: give an index, folder or shards to check (or a config whose data.datasets lists them)",
              file=sys.stderr)
        return 2
    try:
        sources = [load_source(s) for s in specs]
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sampling = d.clip_sampling()
    spec_d = (dict(num_frames=sampling.num_frames, frame_step=sampling.frame_step, fps=sampling.fps,
                   num_clips=sampling.num_clips, short_video=sampling.short_video), d.frame_folder_fps)
    total = sum(len(s) for s in sources if isinstance(s, ListSource)) if all(
        isinstance(s, ListSource) for s in sources) else None
    if total is not None and a.limit is not None:
        total = min(total, a.limit)
    tasks = _tasks(sources, spec_d, a.full, a.limit)
    t0 = time.perf_counter()
    bar = None
    if not a.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="data check", unit="file", dynamic_ncols=True, file=sys.stderr)
    records = []
    if a.workers and a.workers > 0:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(a.workers) as pool:
            for rec in pool.imap(_check_task, tasks, chunksize=4):
                records.append(rec)
                if bar is not None:
                    bar.update(1)
    else:
        for task in tasks:
            records.append(_check_task(task))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    _report(records, sampling, d, seconds, a.rows)
    if a.json:
        with open(a.json, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return 0 if all(r["ok"] for r in records) else 1


def _fmt(v, nd=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _stats(values) -> str:
    import numpy as np

    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return "-"
    return f"min {v.min():.4g}, median {np.median(v):.4g}, max {v.max():.4g}"


def _report(records: list[dict], sampling, d, seconds: float, rows: int) -> None:
    ok = [r for r in records if r["ok"]]
    bad = [r for r in records if not r["ok"]]
    print(f"checked {len(records)} files in {seconds:.1f} s: {len(ok)} readable, {len(bad)} unreadable")
    if ok:
        w = min(60, max(len("path"), *(len(r["path"]) for r in ok[:rows])))
        print()
        print(f"{'path':<{w}}  {'kind':<6} {'frames':>7} {'fps':>7} {'seconds':>8} {'size':>10}  {'codec':<8} {'clips':>5}")
        for r in ok[:rows]:
            path = r["path"] if len(r["path"]) <= w else "..." + r["path"][-(w - 3):]
            size = f"{r['width']}x{r['height']}"
            clips = f"{r['clips']}{'*' if r.get('short') else ''}"
            print(f"{path:<{w}}  {r['kind']:<6} {_fmt(r['frames']):>7} {_fmt(r['fps']):>7} {_fmt(r['duration_s']):>8} "
                  f"{size:>10}  {r['codec']:<8} {clips:>5}")
        if len(ok) > rows:
            print(f"... and {len(ok) - rows} more readable files (--rows N to list more, --json PATH for all)")
    if bad:
        print()
        print(f"unreadable files ({len(bad)}):")
        for r in bad:
            print(f"  {r['path']}: {r['reason']}")
        reasons = Counter(_reason_kind(r["reason"]) for r in bad)
        print("  by reason: " + ", ".join(f"{k} ({v})" for k, v in reasons.most_common()))
    if ok:
        vids = [r for r in ok if r["kind"] == "video"]
        print()
        print("summary of readable files:")
        print(f"  kinds:       " + ", ".join(f"{k} ({v})" for k, v in Counter(r["kind"] for r in ok).most_common()))
        if vids:
            print(f"  duration s:  {_stats(r['duration_s'] for r in vids)}")
            print(f"  fps:         {_stats(r['fps'] for r in vids)}")
            print(f"  frames:      {_stats(r['frames'] for r in vids)}")
        res = Counter(f"{r['width']}x{r['height']}" for r in ok)
        print("  resolutions: " + ", ".join(f"{k} ({v})" for k, v in res.most_common(8))
              + (f", ... {len(res) - 8} more" if len(res) > 8 else ""))
        print("  codecs:      " + ", ".join(f"{k} ({v})" for k, v in Counter(r["codec"] for r in ok).most_common()))
        short = [r for r in ok if r.get("short")]
        per = f"{sampling.num_clips} clip{'s' if sampling.num_clips > 1 else ''} per video per epoch"
        print(f"  clips:       {sampling.describe()}, {per}: {sum(r['clips'] for r in ok)} clips per epoch; "
              f"non-overlapping clips that fit: {sum((r.get('fits') or 0) for r in ok)}")
        if short:
            what = {"pad": "padded with their last frame", "loop": "looped",
                    "skip": "skipped"}[sampling.short_video]
            print(f"  short:       {len(short)} files are shorter than one clip (* above) and will be {what} "
                  f"(data.short_video={sampling.short_video})")
        if sampling.by_time and vids:
            slow = [r for r in vids if r["fps"] and r["fps"] < sampling.fps]
            if slow:
                print(f"  low fps:     {len(slow)} videos are below the target {sampling.fps:g} fps: frames repeat")


def _reason_kind(reason: str) -> str:
    r = reason.lower()
    for key, label in (("not found", "missing"), ("empty", "empty"), ("no video stream", "no video stream"),
                       ("not a readable", "not a media file"), ("could not be decoded", "undecodable frames"),
                       ("cannot read", "unreadable"), ("image", "bad image")):
        if key in r:
            return label
    return "other"
