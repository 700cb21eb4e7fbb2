"""``videojepa embed``, ``videojepa probe`` and ``videojepa classify``: frozen evaluation from the command line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["add_parsers"]

_FMT = argparse.RawDescriptionHelpFormatter


class CliError(Exception):
    """A user-facing error: printed as ``error: ...`` with exit status 2."""


# ----------------------------------------------------------------------------------------------- arguments
def _add_encoder_args(p, *, checkpoint_required: bool = True) -> None:
    g = p.add_argument_group("encoder and clips")
    g.add_argument("--checkpoint", required=checkpoint_required, metavar="CKPT",
                   help="encoder weights: a run checkpoint (runs/.../checkpoints/step_*.pt), videojepa or HF weights, "
                        "an official V-JEPA / V-JEPA 2 file, or a published name (videojepa weights list)")
    g.add_argument("--encoder", default=None, choices=("target_encoder", "encoder"),
                   help="which encoder of the checkpoint (default: target_encoder when present, as the official "
                        "evaluations use)")
    g.add_argument("--layers", type=int, nargs="+", default=None, metavar="L",
                   help="blocks to take features from (0-based, negative from the end; default: the last); several "
                        "layers are concatenated along the token axis (tokens) or the feature axis (mean)")
    g.add_argument("--frames", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    g.add_argument("--crop", type=int, default=None, help="crop size in pixels (default: the checkpoint's)")
    g.add_argument("--frame-step", type=int, default=None, help="video files: keep every N-th frame (default 4)")
    g.add_argument("--fps", type=float, default=None, help="video files: sample frames at this rate instead")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    g.add_argument("--batch-size", type=int, default=16, help="clips per encoder forward pass (default 16)")
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding clips (default 0)")
    g.add_argument("--skip-bad", action="store_true",
                   help="list and exclude unreadable files instead of stopping at the first one")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available on this machine")
    return name


def _load_encoder(ckpt: str, part: str | None):
    import videojepa

    try:
        enc = videojepa.load(ckpt, part=part)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, OSError) as e:
        raise CliError(f"cannot load the encoder from {ckpt}: {e}") from e
    if not hasattr(enc, "blocks"):
        raise CliError(f"{ckpt}: part {part or 'default'} is a {type(enc).__name__}, not an encoder "
                       "(use --encoder target_encoder or encoder)")
    return enc


def _clip_spec(enc, a, *, segments: int = 1, views: int = 1):
    from ..evaluation.datasets import clip_spec_for

    try:
        return clip_spec_for(enc, num_frames=a.frames, crop_size=a.crop, frame_step=a.frame_step, fps=a.fps,
                             segments=segments, views=views)
    except ValueError as e:
        raise CliError(str(e)) from e


def _open(spec: str, clip, a, **kw):
    from ..data.errors import DataError
    from ..evaluation.datasets import open_dataset

    try:
        return open_dataset(spec, clip, on_error="report" if a.skip_bad else "raise", **kw)
    except (DataError, ValueError, OSError) as e:
        raise CliError(f"cannot open {spec}: {e}") from e


def _check_layers(enc, layers):
    from ..evaluation.features import resolve_layers

    try:
        return resolve_layers(layers, len(enc.blocks))
    except ValueError as e:
        raise CliError(f"--layers: {e}") from e


def _report_skipped(skipped, what: str) -> None:
    if skipped:
        print(f"warning: {len(skipped)} unreadable file(s) in {what} excluded:", file=sys.stderr)
        for s in skipped[:20]:
            path, reason = (s.path, s.reason) if hasattr(s, "path") else (s["path"], s["reason"])
            print(f"  {path}: {reason}", file=sys.stderr)
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more", file=sys.stderr)


def _wrap(run):
    """Run a command, turning expected failures into one ``error:`` line that names the file."""
    def inner(a) -> int:
        from ..data.errors import DataError

        try:
            return run(a)
        except CliError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    return inner


# ----------------------------------------------------------------------------------------------- parsers
def add_parsers(sub) -> None:
    e = sub.add_parser(
        "embed", help="extract frozen features of a dataset into shards (resumable)", formatter_class=_FMT,
        description="Run a frozen encoder over every item of INDEX and write the features as safetensors or .npy "
                    "shards plus index.json in --out. Shards are written atomically and recorded one by one: "
                    "run the same command again after an interruption and it continues from the first missing "
                    "shard (other settings in the same folder are refused). With --window, each video is cut "
                    "into sliding windows and both per-window and per-video (mean) features are kept.",
        epilog="INDEX: a CSV index ('path label' per line), a folder of videos / frame folders / images, a video "
               "file, or synthetic:SPLIT[:N] (the embedded dataset; SPLIT train, val or test).\n\n"
               "examples:\n"
               "  videojepa embed synthetic:val --checkpoint runs/cpu_demo/checkpoints/step_00000360.pt --out feats/val\n"
               "  videojepa embed /data/k400/val.csv --checkpoint vjepa2-vitl --out feats/k400 --pool none --layers -4 -3 -2 -1\n"
               "  videojepa embed videos/ --checkpoint vitl.pt --out feats/long --window 16 --stride 8 --format npy")
    e.add_argument("index", metavar="INDEX", help="dataset to embed (see below)")
    e.add_argument("--out", required=True, metavar="DIR", help="output folder (index.json + shards)")
    _add_encoder_args(e)
    e.add_argument("--pool", choices=("mean", "none"), default="mean",
                   help="mean: one vector per clip (default); none: all tokens [K, D]")
    e.add_argument("--segments", type=int, default=1, help="clips per video, evenly spaced (default 1)")
    e.add_argument("--views", type=int, default=1, help="spatial crops per clip (default 1)")
    e.add_argument("--window", type=int, default=None, metavar="FRAMES",
                   help="sliding windows of FRAMES frames over whole videos (features per window and per video)")
    e.add_argument("--stride", type=int, default=None, metavar="FRAMES", help="window stride (default: --window)")
    e.add_argument("--video-frames", type=int, default=None,
                   help="synthetic INDEX with --window: frames per rendered video (default: 2 x --window)")
    e.add_argument("--shard-size", type=int, default=1024, help="items per shard (default 1024)")
    e.add_argument("--format", choices=("safetensors", "npy"), default="safetensors", help="shard file format")
    e.add_argument("--max-shards", type=int, default=None,
                   help="stop after writing this many shards in this run (the next run continues)")
    e.add_argument("--overwrite", action="store_true", help="delete an existing feature folder first")
    e.set_defaults(func=_wrap(_run_embed))

    p = sub.add_parser(
        "probe", help="train attentive / linear probes (or k-NN) on frozen features", formatter_class=_FMT,
        description="Extract frozen features of --train and --val once, then train a grid of probes "
                    "(learning rate x weight decay) together in one pass per batch and keep the best on --val. "
                    "With --label-fraction and --seeds, each seed draws its own class-stratified subset of the "
                    "training set and the results are reported as mean +- std over seeds. Writes --out/"
                    "results.json, the best probe (--out/probe: model.safetensors + config.json, loadable with "
                    "videojepa.load and used by 'videojepa classify') and a confusion-matrix PNG.",
        epilog="examples:\n"
               "  videojepa probe --train synthetic:train --val synthetic:val --checkpoint runs/cpu_demo/checkpoints/step_00000360.pt\n"
               "  videojepa probe --train synthetic:train:2000 --val synthetic:val --checkpoint CKPT --label-fraction 0.05 0.2 1 --seeds 3\n"
               "  videojepa probe --train ssv2/train.csv --val ssv2/val.csv --checkpoint vjepa2-vitl --probe-depth 4 \\\n"
               "      --frames 16 --segments 2 --views 3 --lrs 5e-3 3e-3 1e-3 3e-4 1e-4 --wds 0.01 0.1 0.4 0.8\n"
               "  videojepa probe --train synthetic:train --val synthetic:val --checkpoint CKPT --kind knn")
    p.add_argument("--train", required=True, metavar="INDEX", help="training set (INDEX as for embed, or an embed folder)")
    p.add_argument("--val", required=True, metavar="INDEX", help="validation set: picks the best probe of the grid")
    p.add_argument("--test", default=None, metavar="INDEX", help="optional test set, scored once by the best probe")
    p.add_argument("--out", default="runs/probe", metavar="DIR", help="run folder (default runs/probe)")
    _add_encoder_args(p)
    g = p.add_argument_group("probe")
    g.add_argument("--kind", choices=("attentive", "linear", "knn"), default="attentive",
                   help="attentive probe on tokens (default), linear probe on mean-pooled features, or weighted k-NN")
    g.add_argument("--probe-depth", type=int, default=1,
                   help="1: V-JEPA 1 form (one cross-attention block; default); 4: V-JEPA 2 form (3 self-attention "
                        "blocks over the tokens, then cross-attention; costly on a CPU)")
    g.add_argument("--num-heads", type=int, default=None,
                   help="probe heads (default: the encoder's for depth 1, 16 for V-JEPA 2 form when the width allows)")
    g.add_argument("--lrs", type=float, nargs="+", default=None, help="learning rates of the grid")
    g.add_argument("--wds", type=float, nargs="+", default=None, help="weight decays of the grid")
    g.add_argument("--epochs", type=int, default=None, help="training epochs over the features")
    g.add_argument("--probe-batch-size", type=int, default=None, help="probe training batch size")
    g.add_argument("--warmup-epochs", type=float, default=None, help="linear learning-rate warmup, in epochs")
    g.add_argument("--knn-k", type=int, default=20, help="neighbours for --kind knn (default 20)")
    g.add_argument("--label-fraction", type=float, nargs="+", default=[1.0], metavar="F",
                   help="fraction(s) of the training labels to use, class-stratified (default 1)")
    g.add_argument("--seeds", type=int, default=1, help="seeds per label fraction: subsets and probe inits (default 1)")
    g.add_argument("--segments", type=int, default=1, help="clips per video, their tokens concatenated (default 1)")
    g.add_argument("--views", type=int, default=1,
                   help="spatial views per clip at validation / test, softmax averaged (default 1; training uses 1)")
    p.set_defaults(func=_wrap(_run_probe))

    c = sub.add_parser(
        "classify", help="print the top classes of videos with a saved probe", formatter_class=_FMT,
        description="Classify videos with a probe saved by 'videojepa probe' (its folder records the encoder "
                    "checkpoint and the clip settings, which --checkpoint and the clip options override).",
        epilog="examples:\n  videojepa classify clip.mp4 --probe runs/probe/probe\n"
               "  videojepa classify synthetic:val --item 3 --probe runs/probe/probe --top 3\n"
               "  videojepa classify a.mp4 b.mp4 --probe runs/ssv2/probe --checkpoint vjepa2-vitl --device cuda\n"
               "  videojepa classify synthetic:val --item 3 --probe runs/probe/probe --explain --explain-out pics")
    c.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video / image files or frame folders, or an INDEX with --item (e.g. synthetic:val)")
    c.add_argument("--probe", required=True, metavar="DIR", help="probe folder (model.safetensors + config.json)")
    c.add_argument("--item", type=int, nargs="+", default=None, help="item(s) of an INDEX to classify (default 0)")
    c.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    c.add_argument("--json", action="store_true", help="print one JSON record per video instead")
    _add_encoder_args(c, checkpoint_required=False)
    c.add_argument("--segments", type=int, default=None, help="override the probe's segments")
    c.add_argument("--views", type=int, default=None, help="override the probe's views")
    c.add_argument("--explain", action="store_true",
                   help="also show where an attentive probe looks: its cross-attention weights over the tokens "
                        "as a heat map on the frames (explain_<name>.gif / .png, and the weights as .npy)")
    c.add_argument("--explain-out", default=None, metavar="DIR",
                   help="folder for the --explain pictures (default: the current folder)")
    c.set_defaults(func=_wrap(_run_classify))


# ----------------------------------------------------------------------------------------------- embed
def _run_embed(a) -> int:
    import shutil

    from torch.utils.data import Subset

    from ..evaluation.store import FeatureStore

    dev = _device(a.device)
    if a.window is not None and (a.segments > 1 or a.views > 1):
        raise CliError("--window works on whole videos: it cannot be combined with --segments / --views")
    if a.stride is not None and a.window is None:
        raise CliError("--stride needs --window")
    enc = _load_encoder(a.checkpoint, a.encoder)
    layers = _check_layers(enc, a.layers)
    clip = _clip_spec(enc, a, segments=a.segments, views=a.views)
    ds = _open(a.index, clip, a, whole_videos=a.window is not None, video_frames=a.video_frames)
    out = Path(a.out)
    if a.overwrite and out.exists():
        if not (out / "index.json").is_file():
            raise CliError(f"--overwrite: {out} is not a feature folder (no index.json); not deleting it")
        shutil.rmtree(out)
    settings = {"index": a.index, "checkpoint": str(a.checkpoint), "encoder": a.encoder, "pool": a.pool,
                "layers": layers, "clip": clip.to_dict(), "window": a.window,
                "stride": (a.stride or a.window) if a.window else None, "video_frames": a.video_frames}
    extra = {"class_names": list(ds.class_names) if getattr(ds, "class_names", None) is not None else None,
             "segments": clip.segments if clip.segments * clip.views > 1 else None,
             "views": clip.views if clip.segments * clip.views > 1 else None,
             "encoder_config": enc.cfg.to_dict()}
    from ..training.distributed import barrier, init_distributed

    env = init_distributed(str(dev))  # under torchrun: each rank embeds its share of the shards
    store = None
    for turn in ("main", "others"):  # rank 0 creates the folder and index first
        if (turn == "main") == env.is_main:
            try:
                store = FeatureStore(out, settings, num_items=len(ds), shard_size=a.shard_size, file_format=a.format,
                                     extra=extra)
            except ValueError as e:
                raise CliError(str(e)) from e
        barrier(env)
    todo = [s for s in range(store.num_shards) if not store.done(s)]
    done_items = store.done_items()
    if not todo:
        print(f"{out}: all {store.num_shards} shard(s) already written ({len(ds)} items); nothing to do")
        return 0
    if done_items:
        print(f"resuming: {done_items} of {len(ds)} items already in {out}", file=sys.stderr)
    bar = None
    if not a.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ds), initial=done_items, desc="embed", unit="clip", dynamic_ncols=True,
                   disable=not env.is_main)
    if a.max_shards is not None:
        todo = todo[:a.max_shards]  # in all, whatever the number of ranks
    skipped_all, t0 = [], time.perf_counter()
    rounds = -(-len(todo) // env.world_size)
    try:
        for r in range(rounds):  # in each round every rank writes (at most) one shard; rank 0 records them
            s = r * env.world_size + env.rank
            rec = None
            if s < len(todo):
                sub = Subset(ds, list(store.shard_range(todo[s])))
                if a.window is None:
                    arrays, skipped = _embed_clips(enc, sub, a, layers, dev, bar)
                else:
                    arrays, skipped = _embed_windows(enc, sub, a, layers, dev, bar)
                rec = (todo[s], store.write(todo[s], arrays, skipped, record=not env.distributed))
                skipped_all += skipped
            if env.distributed:
                import torch.distributed as dist

                recs: list = [None] * env.world_size
                dist.all_gather_object(recs, rec)
                if env.is_main:
                    store.add_records(dict(x for x in recs if x is not None))
                barrier(env)
    finally:
        if bar is not None:
            bar.close()
    if env.distributed:
        import torch.distributed as dist

        gathered: list = [None] * env.world_size
        dist.all_gather_object(gathered, skipped_all)
        skipped_all = [x for part in gathered for x in part]
        store = FeatureStore(out, settings, num_items=len(ds), shard_size=a.shard_size, file_format=a.format,
                             extra=extra)  # re-read the index rank 0 wrote
        dist.destroy_process_group()
        if not env.is_main:
            return 0
    _report_skipped(skipped_all, a.index)
    left = store.num_shards - sum(store.done(s) for s in range(store.num_shards))
    dt = time.perf_counter() - t0
    if left:
        print(f"stopped after {len(todo)} shard(s) in {dt:.1f} s; {left} left: run the same command again to continue")
    else:
        print(f"done: {len(ds)} items in {store.num_shards} shard(s) -> {out} ({dt:.1f} s this run)")
    return 0


def _embed_clips(enc, sub, a, layers, dev, bar):
    import torch

    from ..evaluation.features import iter_features

    feats, labels, indices, skipped = [], [], [], []
    pool = a.pool
    for f, y, i, sk in iter_features(enc, sub, batch_size=a.batch_size, layers=layers, pool=pool, device=dev,
                                     num_workers=a.num_workers):
        skipped += sk
        if f is not None:
            feats.append(f), labels.append(y), indices.append(i)
        if bar is not None:
            bar.update((0 if y is None else len(y)) + len(sk))
    if not feats:
        raise CliError(f"no item of shard could be read ({len(skipped)} unreadable)")
    return {"features": torch.cat(feats), "labels": torch.cat(labels), "indices": torch.cat(indices)}, skipped


def _embed_windows(enc, sub, a, layers, dev, bar):
    import torch
    from torch.utils.data import DataLoader

    from ..data.errors import SkippedSample
    from ..data.transforms import normalize
    from ..evaluation.features import _norm_stats, embed

    enc.to(dev)
    mean, std = _norm_stats(enc)
    stride = a.stride or a.window
    per_video, labels, indices, wf, wi, ws, skipped = [], [], [], [], [], [], []
    loader = DataLoader(sub, batch_size=None, num_workers=a.num_workers)
    for item in loader:
        if isinstance(item, SkippedSample):
            skipped.append(item)
        else:
            x = normalize(item["clip"].float(), mean, std)[None]
            r = embed(enc, x, pool=a.pool, layers=layers, window=a.window, stride=stride, batch_size=a.batch_size)
            row = len(labels)
            if a.pool == "mean":
                per_video.append(r.video[0].cpu())
            wf.append(r.windows[0].cpu())
            wi.append(torch.full((len(r.starts),), row, dtype=torch.long))
            fi = item.get("frame_indices")
            starts = fi[r.starts.clamp(max=len(fi) - 1)] if fi is not None else r.starts
            ws.append(starts.long())
            labels.append(-1 if item.get("label") is None else int(item["label"]))
            indices.append(int(item["index"]))
        if bar is not None:
            bar.update(1)
    if not labels:
        raise CliError(f"no item of shard could be read ({len(skipped)} unreadable)")
    arrays = {"labels": torch.tensor(labels, dtype=torch.long), "indices": torch.tensor(indices, dtype=torch.long),
              "window_features": torch.cat(wf), "window_item": torch.cat(wi), "window_start": torch.cat(ws)}
    if per_video:
        arrays["features"] = torch.stack(per_video)
    return arrays, skipped


# ----------------------------------------------------------------------------------------------- probe
def _features(spec: str, enc, clip, a, layers, pool, dev, what: str):
    from ..evaluation.features import extract_features
    from ..evaluation.store import is_feature_dir, load_features

    if is_feature_dir(spec):
        fs = load_features(spec)
        st = fs.meta["settings"]
        if st.get("pool") != pool:
            raise CliError(f"{spec}: features were made with --pool {st.get('pool')}; this probe needs {pool}")
        return fs
    ds = _open(spec, clip, a)
    fs = extract_features(enc, ds, batch_size=a.batch_size, layers=layers, pool=pool, device=dev,
                          num_workers=a.num_workers, progress=not a.no_progress, desc=f"features ({what})")
    _report_skipped(fs.skipped, spec)
    return fs


def _grid_config(a, enc, seed: int, dev: str):
    from ..evaluation.probe import ProbeGridConfig

    kw = {"kind": a.kind, "probe_depth": a.probe_depth, "seed": seed, "device": dev}
    for k, v in (("lrs", a.lrs), ("weight_decays", a.wds), ("epochs", a.epochs), ("batch_size", a.probe_batch_size),
                 ("warmup_epochs", a.warmup_epochs)):
        if v is not None:
            kw[k] = v
    D = enc.cfg.embed_dim
    heads = a.num_heads
    if heads is None and a.kind == "attentive":
        heads = enc.cfg.num_heads if a.probe_depth == 1 else (16 if D % 16 == 0 and D >= 256 else None)
    if heads is not None and D % heads:
        raise CliError(f"--num-heads {heads} does not divide the feature width {D}")
    kw["num_heads"] = heads
    try:
        return ProbeGridConfig(**kw)
    except ValueError as e:
        raise CliError(str(e)) from e


def _run_probe(a) -> int:
    import torch

    from ..evaluation.fewshot import stratified_subset
    from ..evaluation.metrics import confusion_matrix, mean_std, plot_confusion, summarize
    from ..evaluation.probe import knn_accuracy, predict_probs, save_probe, train_probe_grid

    t_start = time.perf_counter()
    dev = _device(a.device)
    for f in a.label_fraction:
        if not 0 < f <= 1:
            raise CliError(f"--label-fraction must be in (0, 1], got {f}")
    if a.seeds < 1:
        raise CliError(f"--seeds must be >= 1, got {a.seeds}")
    enc = _load_encoder(a.checkpoint, a.encoder)
    layers = _check_layers(enc, a.layers)
    pool = "none" if a.kind == "attentive" else "mean"
    train_clip = _clip_spec(enc, a, segments=a.segments, views=1)
    eval_clip = _clip_spec(enc, a, segments=a.segments, views=a.views)
    if a.kind != "knn":
        _grid_config(a, enc, 0, dev)  # validate the probe options before spending time on features
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train = _features(a.train, enc, train_clip, a, layers, pool, dev, "train")
    val = _features(a.val, enc, eval_clip, a, layers, pool, dev, "val")
    test = _features(a.test, enc, eval_clip, a, layers, pool, dev, "test") if a.test else None
    names = train.class_names or val.class_names
    known = [int(s.labels.max()) for s in (train, val, test) if s is not None and len(s) and int(s.labels.max()) >= 0]
    if not known or int(train.labels.max()) < 0:
        raise CliError(f"{a.train}: no labelled item (a probe needs labels)")
    if not bool((val.labels >= 0).any()):
        raise CliError(f"{a.val}: no labelled item (the validation set picks the best probe)")
    C = max(len(names) if names else 0, max(known) + 1)
    if names is None or len(names) < C:
        names = list(names or []) + [f"class_{i}" for i in range(len(names or []), C)]
    labelled = torch.nonzero(train.labels >= 0).flatten()
    fractions = []
    best_overall = None  # (fraction, top1, seed, result)
    for frac in sorted(set(a.label_fraction)):
        runs = []
        for seed in range(a.seeds):
            sub_idx = labelled[stratified_subset(train.labels[labelled], frac, seed)]
            tr = train.subset(sub_idx)
            if a.kind == "knn":
                r = knn_accuracy(tr, val, k=a.knn_k, num_classes=C, device=dev)
                runs.append({"seed": seed, "n_train": len(tr), "top1": r["top1"], "top5": r["top5"],
                             "mean_per_class": r["mean_per_class"], "k": r["k"]})
                cand = (frac, r["top1"], seed, r)
            else:
                cfg = _grid_config(a, enc, seed, dev)
                r = train_probe_grid(tr, val, C, cfg, progress=not a.no_progress)
                b = r.best
                runs.append({"seed": seed, "n_train": len(tr), "top1": b["top1"], "top5": b["top5"],
                             "mean_per_class": b["mean_per_class"], "lr": b["lr"], "weight_decay": b["weight_decay"],
                             "seconds": round(r.seconds, 2), "grid": r.grid})
                cand = (frac, b["top1"], seed, r)
            if best_overall is None or (cand[0], cand[1]) > (best_overall[0], best_overall[1]):
                best_overall = cand
            print(f"label fraction {frac:g}, seed {seed}: {len(tr)} clips, val top-1 {runs[-1]['top1'] * 100:.1f}%"
                  + (f" (lr {runs[-1]['lr']:g}, wd {runs[-1]['weight_decay']:g})" if a.kind != "knn" else ""))
        entry = {"label_fraction": frac, "seeds": list(range(a.seeds)), "n_train": [r["n_train"] for r in runs],
                 "top1": mean_std([r["top1"] for r in runs]), "top5": mean_std([r["top5"] for r in runs]),
                 "mean_per_class": mean_std([r["mean_per_class"] for r in runs]), "runs": runs}
        if a.kind != "knn":
            pairs = [(r["lr"], r["weight_decay"]) for r in runs]
            lr, wd = max(set(pairs), key=lambda p: (pairs.count(p), -pairs.index(p)))
            entry["best_hparams"] = {"lr": lr, "weight_decay": wd, "chosen_by_seeds": pairs.count((lr, wd))}
        fractions.append(entry)
    frac, _, seed, r = best_overall
    results = {
        "checkpoint": str(a.checkpoint), "encoder": a.encoder or "default", "kind": a.kind,
        "train": a.train, "val": a.val, "test": a.test, "num_classes": C, "class_names": names,
        "n_train": len(train), "n_val": len(val), "n_test": len(test) if test is not None else None,
        "features": {"layers": layers, "pool": pool, "shape": list(train.features.shape[1:]),
                     "clip": eval_clip.to_dict()},
        "probe": _grid_config(a, enc, 0, dev).to_dict() if a.kind != "knn" else {"k": a.knn_k},
        "fractions": fractions,
        "std": "sample standard deviation over seeds (0 with one seed)",
    }
    if a.kind == "knn":
        val_probs, val_labels = r["probs"], val.labels[val.labels >= 0]
        results["best"] = {"label_fraction": frac, "seed": seed, "top1": r["top1"], "top5": r["top5"]}
    else:
        val_probs, val_labels = r.val_probs, r.val_labels
        evaluation = {"checkpoint": str(a.checkpoint), "encoder": a.encoder, "layers": layers, "pool": pool,
                      "clip": eval_clip.to_dict(), "kind": a.kind, "trained_on": a.train, "label_fraction": frac,
                      "seed": seed, "lr": r.best["lr"], "weight_decay": r.best["weight_decay"],
                      "val_top1": r.best["top1"]}
        save_probe(r.best_probe, out / "probe", class_names=names, evaluation=evaluation)
        results["best"] = {"label_fraction": frac, "seed": seed, "lr": r.best["lr"],
                           "weight_decay": r.best["weight_decay"], "top1": r.best["top1"], "top5": r.best["top5"],
                           "per_class": dict(zip(names, r.best["per_class"])), "probe": "probe"}
    cm = confusion_matrix(val_probs.argmax(1), val_labels, C)
    plot_confusion(cm, names, out / "confusion.png", title=f"{a.val}: top-1 {results['best']['top1'] * 100:.1f}%")
    if test is not None and a.kind != "knn":
        keep = test.labels >= 0
        if bool(keep.any()):
            t = test.subset(torch.nonzero(keep).flatten())
            probs = predict_probs(r.best_probe, t, device=dev)
            s = summarize(probs, t.labels)
            results["test_metrics"] = {"top1": s["top1"], "top5": s["top5"], "mean_per_class": s["mean_per_class"],
                                       "per_class": dict(zip(names, s["per_class"]))}
            plot_confusion(confusion_matrix(probs.argmax(1), t.labels, C), names, out / "confusion_test.png",
                           title=f"{a.test}: top-1 {s['top1'] * 100:.1f}%")
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / "results.json")
    print(f"\n{'fraction':>8} {'seeds':>5} {'n_train':>8} {'top-1 (%)':>14} {'top-5 (%)':>14}  best lr / wd")
    for e in fractions:
        hp = e.get("best_hparams")
        print(f"{e['label_fraction']:>8g} {len(e['seeds']):>5} {round(sum(e['n_train']) / len(e['n_train'])):>8} "
              f"{e['top1']['mean'] * 100:>7.1f} ± {e['top1']['std'] * 100:<4.1f} "
              f"{e['top5']['mean'] * 100:>7.1f} ± {e['top5']['std'] * 100:<4.1f}"
              + (f"  {hp['lr']:g} / {hp['weight_decay']:g}" if hp else ""))
    if "test_metrics" in results:
        print(f"test ({a.test}): top-1 {results['test_metrics']['top1'] * 100:.1f}%, "
              f"top-5 {results['test_metrics']['top5'] * 100:.1f}%")
    print(f"run folder: {out} (results.json, confusion.png" + (", probe/" if a.kind != "knn" else "")
          + f"); {results['seconds']:.0f} s")
    return 0


# ----------------------------------------------------------------------------------------------- classify
def _run_classify(a) -> int:
    import torch

    from ..evaluation.datasets import ClipSpec, parse_synthetic
    from ..evaluation.features import extract_features
    from ..evaluation.probe import load_probe, predict_probs

    dev = _device(a.device)
    pdir = Path(a.probe)
    if not pdir.exists():
        raise CliError(f"--probe {pdir}: no such folder")
    try:
        probe, pcfg = load_probe(pdir)
    except (ValueError, OSError, KeyError) as e:
        raise CliError(f"cannot load the probe from {pdir}: {e}") from e
    ev = pcfg.get("evaluation") or {}
    ckpt = a.checkpoint or ev.get("checkpoint")
    if ckpt == ".":  # a fine-tuned classifier: its encoder is in the same folder
        ckpt = str(pdir)
    if not ckpt:
        raise CliError(f"{pdir}/config.json does not say which encoder made its features: give --checkpoint")
    enc = _load_encoder(ckpt, a.encoder or ev.get("encoder"))
    layers = _check_layers(enc, a.layers if a.layers is not None else ev.get("layers"))
    pool = ev.get("pool", "none")
    c = dict(ev.get("clip") or {})
    if not c:
        c = _clip_spec(enc, a).to_dict()
    clip = ClipSpec(num_frames=a.frames or c["num_frames"], crop_size=tuple([a.crop] * 2 if a.crop else c["crop_size"]),
                    frame_step=a.frame_step or (None if a.fps else c.get("frame_step")),
                    fps=a.fps or (None if a.frame_step else c.get("fps")),
                    segments=a.segments or c.get("segments", 1), views=a.views or c.get("views", 1))
    names = pcfg.get("labels") or [f"class_{i}" for i in range(_num_classes(probe))]
    if a.explain:
        from ..viz.attention import NoAttentionError, explain_name, pooler_of, write_explanation
        from ..viz.clips import frames_of

        try:
            pooler_of(probe)
        except NoAttentionError as e:
            raise CliError(f"--explain: {pdir}: {e}") from e
        if clip.segments * clip.views != 1:
            raise CliError(f"--explain needs one clip per video (this probe uses {clip.segments} segment(s) x "
                           f"{clip.views} view(s)): give --segments 1 --views 1")
        explain_out = Path(a.explain_out) if a.explain_out else Path(".")
    records = []
    for spec in a.videos:
        is_index = parse_synthetic(spec) is not None or not _is_media(spec)
        items = (a.item or [0]) if is_index else [0]
        ds = _open(spec, clip, a)
        for i in items:
            if not 0 <= i < len(ds):
                raise CliError(f"{spec}: --item {i} is out of range ({len(ds)} items)")
            item = ds[i]  # read once: for the features and, with --explain, for the pictures
            fs = extract_features(enc, [item], batch_size=a.batch_size, layers=layers, pool=pool,
                                  device=dev, progress=False)
            if len(fs) == 0:
                raise CliError(f"{spec}: item {i} could not be read")
            probs = predict_probs(probe, fs, device=dev)[0]
            k = min(a.top, len(probs))
            top = torch.topk(probs, k)
            label = int(fs.labels[0])
            name = spec if not is_index else f"{spec} item {i}"
            rec = {"video": name, "top": [{"class": names[j] if j < len(names) else str(j), "index": int(j),
                                           "prob": float(p)} for p, j in zip(top.values.tolist(), top.indices.tolist())]}
            if label >= 0:
                rec["label"] = names[label] if label < len(names) else str(label)
            if a.explain:
                x = item["clip"].float()
                frames = frames_of(x)
                grid = enc.grid_of(enc.prepare_input(x[None]))
                try:
                    ex = write_explanation(probe, fs.features[0], grid, frames, explain_out,
                                           explain_name(spec, i if is_index else None))
                except ValueError as e:
                    raise CliError(f"--explain: {name}: {e}") from e
                rec["explain"] = {"gif": str(ex["gif"]), "png": str(ex["png"]), "weights": str(ex["npy"]),
                                  "peak": ex["peak"], "note": ex["note"]}
            records.append(rec)
            if a.json:
                print(json.dumps(rec))
            else:
                print(name + (f"  (label: {rec['label']})" if "label" in rec else ""))
                for r, t in enumerate(rec["top"], 1):
                    print(f"  {r}. {t['class']:<24} {t['prob'] * 100:6.2f}%")
                if "explain" in rec:
                    e = rec["explain"]
                    print(f"  probe attention: {e['gif']}, {e['png']} (peak at token t={e['peak'][0]}, "
                          f"row {e['peak'][1]}, column {e['peak'][2]})")
                    if e["note"]:
                        print(f"  note: {e['note']}")
    return 0


def _num_classes(probe) -> int:
    cfg = getattr(probe, "cfg", None)
    return int(cfg.num_classes) if cfg is not None else int(probe.num_classes)


def _is_media(spec: str) -> bool:
    from ..data.decode import IMAGE_EXTS, VIDEO_EXTS
    from ..data.sources import parse_spec

    layout, path = parse_spec(spec)
    p = Path(path)
    return layout is None and p.is_file() and p.suffix.lower() in (VIDEO_EXTS | IMAGE_EXTS)
