"""One self-contained HTML page about a run directory: ``videojepa report RUN_DIR``.

The page needs no server and fetches nothing: styles and the one small script are inline, and every
image (curves, masks, features, predictions) is embedded as a base64 ``data:`` URI, so the file can be
mailed or opened from a USB stick. Its sections (each an element with that ``id``):

``config``       the resolved ``config.yaml``, section by section
``summary``      the key facts of ``summary.json`` (steps, time, device, loss first -> last, clips/s, data)
``curves``       the columns of ``metrics.csv`` drawn with matplotlib (loss, lr, grad norm, collapse diagnostics...)
``diagnostics``  the collapse check of the last logged diagnostics, with a verdict in plain words
``masks``        the run's own mask configs sampled with the project's mask code: what the context
                 encoder sees and what the predictor must fill in, per time step, for a few samples
``features``     :func:`videojepa.viz.features.show_features` on a video with the newest checkpoint
``predictions``  decoded predictions and their PSNR when the run has a ``decoder/`` folder

A section that cannot be made says why; it never stops the others.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["write_report", "SECTIONS", "default_video", "mask_figures", "collapse_verdict", "curve_png"]

SECTIONS = ("config", "summary", "curves", "diagnostics", "masks", "features", "predictions")
_TITLES = {"config": "Config", "summary": "Summary", "curves": "Curves", "diagnostics": "Collapse check",
           "masks": "Masks: what the model sees and what it must predict", "features": "Features",
           "predictions": "Predictions"}


class SectionSkipped(Exception):
    """A section that cannot be made; the message says why (shown on the page as a note)."""


# --------------------------------------------------------------------------- small helpers

def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{_e(alt)}" src="{_data_uri(data, mime)}">'


def _img_file(path: Path, alt: str, cls: str = "") -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}[path.suffix.lower()]
    return _img(Path(path).read_bytes(), mime, alt, cls)


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def _duration(s: float) -> str:
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def _table(rows: list[tuple], head: tuple | None = None, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    out = [f"<table{c}>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{x if isinstance(x, _Raw) else _e(x)}</td>" for x in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


class _Raw(str):
    """HTML that a table cell takes as it is."""


def _read_rows(csv_path: Path) -> list[dict]:
    with csv_path.open() as f:
        return list(csv.DictReader(f))


def _num(v) -> float | None:
    if v in ("", None):
        return None
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _column(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        y = _num(r.get(key))
        if y is not None and _num(r.get("step")) is not None:
            xs.append(int(float(r["step"])))
            ys.append(y)
    return xs, ys


def _pretrain_config(cfg: dict):
    """The run's :class:`~videojepa.config.PretrainConfig`, or None when ``config.yaml`` is another job's."""
    from ..config import ConfigError, PretrainConfig

    try:
        return PretrainConfig.from_dict(cfg)
    except (ConfigError, ValueError, TypeError, KeyError):
        return None


# --------------------------------------------------------------------------- config

def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _yaml_value(v) -> str:
    import yaml

    if isinstance(v, (dict, list, tuple)):
        return yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def section_config(run: Path, cfg: dict | None, text: str | None) -> str:
    if cfg is None:
        raise SectionSkipped(f"no config.yaml in {run}: this is not a run directory, or the run never started")
    parts = []
    for sec, body in cfg.items():
        if isinstance(body, dict):
            rows = [(k, _Raw("<br>".join(f"<code>{_e(_yaml_value(x))}</code>" for x in v)
                              if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)
                              else f"<code>{_e(_yaml_value(v))}</code>")) for k, v in _flatten(body)]
            parts.append(f'<div class="cfgsec"><h3>{_e(sec)}</h3>{_table(rows, cls="kv")}</div>')
        else:
            parts.append(f'<div class="cfgsec"><h3>{_e(sec)}</h3><code>{_e(_yaml_value(body))}</code></div>')
    raw = f"<details><summary>config.yaml as written</summary><pre>{_e(text or '')}</pre></details>"
    return f'<div class="cfggrid">{"".join(parts)}</div>{raw}'


# --------------------------------------------------------------------------- summary

def section_summary(run: Path, summary: dict | None) -> str:
    from ..training.checkpoint import list_checkpoints

    ckpts = list_checkpoints(run / "checkpoints")
    ck = (f"{len(ckpts)} in checkpoints/: " + ", ".join(p.name for _, p in ckpts)) if ckpts else "none written"
    if summary is None:
        return (_note("no summary.json: the run has not finished (it is written at the end of training), or it "
                      "was stopped early. The curves below come from metrics.csv as far as it got.")
                + _table([("checkpoints", ck)], cls="kv"))
    s = dict(summary)
    rows: list[tuple] = []
    if "steps" in s:
        rows.append(("steps", f"{s.pop('steps')}" + (f" of {s.pop('max_steps')}" if "max_steps" in s else "")))
    if "seconds" in s:
        secs = s.pop("seconds")
        rows.append(("time", _duration(secs) if isinstance(secs, (int, float)) else secs))
    for k in ("device", "dtype"):
        if k in s:
            rows.append((k, s.pop(k)))
    lf, ll = s.pop("loss_first", None), s.pop("loss_last", None)
    if lf is not None and ll is not None:
        change = f" ({(ll - lf) / abs(lf):+.0%})" if lf else ""
        rows.append(("loss first -> last", f"{lf:.4f} -> {ll:.4f}{change}"))
    if s.get("clips_per_s") is not None:
        rows.append(("clips/s", f"{s.pop('clips_per_s'):.1f}"))
    data = s.pop("data", None)
    if isinstance(data, dict):
        ok, bad = data.get("samples_ok"), data.get("samples_skipped", 0)
        rows.append(("data", f"{ok} samples read, {bad} skipped"
                     + (f" ({len(data.get('skipped_files', {}))} files)" if bad else "")))
        for path, why in list((data.get("skipped_files") or {}).items())[:10]:
            rows.append(("skipped file", f"{path}: {why}"))
    s.pop("diagnostics", None)  # in its own section
    for k in ("resumed_from", "checkpoint"):
        if k in s:
            v = s.pop(k)
            rows.append((k.replace("_", " "), v if v else "-"))
    rows.append(("checkpoints", ck))
    for k, v in s.items():  # other jobs' keys (fine-tuning, world models)
        rows.append((k, _Raw(f"<code>{_e(json.dumps(v))}</code>") if isinstance(v, (dict, list)) else _fmt(v)))
    return _table(rows, cls="kv")


# --------------------------------------------------------------------------- curves

_GROUPS = [  # (title, [(column, right axis?)], log y)
    ("loss", [("loss", False), ("loss_jepa", False), ("loss_reg", False)], False),
    ("learning rate and weight decay", [("lr", False), ("wd", True)], False),
    ("gradient norm", [("grad_norm", False)], True),
    ("EMA momentum", [("ema", False)], False),
    ("feature std (collapse check)", [("target_std", False), ("target_token_std", False), ("pred_std", False),
                                      ("pred_token_std", False)], False),
    ("effective rank (collapse check)", [("target_erank", False), ("pred_erank", False)], False),
    ("throughput (clips/s)", [("clips_per_s", False)], False),
    ("skipped samples (cumulative)", [("samples_skipped", False)], False),
]
_NOT_PLOTTED = {"step", "elapsed_s"}


def curve_png(rows: list[dict], title: str = "") -> tuple[bytes, list[str]]:
    """PNG bytes of the metrics rows, one panel per group of columns with data (loss, lr, grad norm,
    collapse diagnostics, then any other numeric column), and the names of the columns drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = list(rows[0].keys()) if rows else []
    panels, used = [], set()
    for name, members, logy in _GROUPS:
        have = [(c, right) for c, right in members if c in cols and _column(rows, c)[0]]
        if name.startswith("skipped") and not any(_column(rows, "samples_skipped")[1]):
            have = []
        if have:
            panels.append((name, have, logy))
        used.update(c for c, _ in members)
    for c in cols:
        if c not in used and c not in _NOT_PLOTTED and _column(rows, c)[0]:
            panels.append((c, [(c, False)], False))
    if not panels:
        raise SectionSkipped("metrics.csv has no numeric values yet")
    n = len(panels)
    ncol = 3 if n > 4 else 2 if n > 1 else 1
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(4.6 * ncol, 3.0 * nrow), dpi=90)
    FigureCanvasAgg(fig)
    drawn = []
    for i, (name, members, logy) in enumerate(panels):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        tw = None
        for j, (c, right) in enumerate(members):
            x, y = _column(rows, c)
            a = ax
            if right:
                tw = tw or ax.twinx()
                a = tw
            few = len(x) < 40
            a.plot(x, y, lw=1.0, marker="." if few else None, color=f"C{j}", label=c)
            if c == "loss" and len(y) >= 20:
                k = max(5, len(y) // 20)
                sm = np.convolve(y, np.ones(k) / k, mode="valid")
                a.plot(x[k - 1:], sm, lw=2, color="C3", label=f"loss, mean of {k}")
            drawn.append(c)
        if logy:
            ys = _column(rows, members[0][0])[1]
            if ys and min(ys) > 0 and max(ys) / min(ys) > 50:
                ax.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        if tw is not None:
            h2, l2 = tw.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if len(labels) > 1:
            ax.legend(handles, labels, fontsize=7, loc="best")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue(), drawn


def section_curves(run: Path, rows: list[dict] | None) -> str:
    if rows is None:
        raise SectionSkipped(f"no metrics.csv in {run}: nothing was logged yet")
    if not rows:
        raise SectionSkipped("metrics.csv has no rows yet (nothing logged before the run stopped)")
    png, drawn = curve_png(rows)
    last = int(float(rows[-1]["step"]))
    return (f"<p>{len(rows)} logged rows, steps {int(float(rows[0]['step']))}..{last}; "
            f"columns drawn: {_e(', '.join(drawn))}.</p>" + _img(png, "image/png", "training curves", "wide"))


# --------------------------------------------------------------------------- diagnostics

def collapse_verdict(std: float | None, token_std: float | None, erank: float | None,
                     embed_dim: int | None = None, first_erank: float | None = None) -> tuple[str, str]:
    """``(level, words)``: ``"collapsed"``, ``"warning"`` or ``"ok"`` and a sentence saying why, from the
    target features' std over all tokens, std within a clip, and effective rank (1 = one direction)."""
    if erank is not None and erank < 1.5:
        return "collapsed", (f"Collapsed: the effective rank of the target features is {erank:.2f}, i.e. every token "
                             "maps to (nearly) one direction. The predictor can match such targets without learning "
                             "anything about the video.")
    if std is not None and std < 1e-2:
        return "collapsed", (f"Collapsed: the target features barely vary (std {std:.2g}); every token maps to about "
                             "the same vector.")
    if std is not None and token_std is not None and std > 0 and token_std < 0.1 * std:
        return "warning", (f"Clip-global features: within a clip the tokens hardly differ (token std {token_std:.3g} vs "
                           f"{std:.3g} over the batch), so the features say which clip but not where or when.")
    if erank is not None and embed_dim and erank < max(2.0, 0.05 * embed_dim):
        return "warning", (f"Low rank: the target features use about {erank:.1f} of {embed_dim} dimensions. "
                           "Not collapsed, but watch whether it keeps falling.")
    if erank is not None and first_erank is not None and first_erank > 0 and erank < 0.5 * first_erank:
        return "warning", (f"Falling rank: the effective rank dropped from {first_erank:.1f} to {erank:.1f} during "
                           "the run; if it keeps falling the features are collapsing.")
    if erank is None and std is None:
        return "warning", "No collapse diagnostics in the logged rows."
    dims = f" of {embed_dim}" if embed_dim else ""
    return "ok", (f"No sign of collapse: the target features vary across tokens and clips and span about "
                  f"{erank:.1f}{dims} dimensions." if erank is not None else "No sign of collapse.")


_DIAG_MEANING = {
    "target_std": "std of each target feature over all tokens of the batch (0: every token the same vector)",
    "target_token_std": "the same within each clip (low while target_std is high: clip-global features)",
    "target_erank": "effective rank of the target features (1: collapsed to a line; the width: isotropic)",
    "pred_std": "std of the predictor's outputs over all predicted tokens",
    "pred_token_std": "the same within each clip",
    "pred_erank": "effective rank of the predictions",
}


def section_diagnostics(rows: list[dict] | None, pcfg) -> str:
    if not rows:
        raise SectionSkipped("no metrics.csv rows to read the diagnostics from")
    diag = [r for r in rows if _num(r.get("target_erank")) is not None or _num(r.get("target_std")) is not None]
    if not diag:
        raise SectionSkipped("no logged row has the collapse diagnostics (target_std / target_erank): they are "
                             "computed every train.diag_every steps by pretraining runs only")
    last, first = diag[-1], diag[0]
    dim = None
    if pcfg is not None:
        try:
            dim = pcfg.encoder_config().embed_dim
        except Exception:  # noqa: BLE001 - only a hint for the verdict
            dim = None
    level, words = collapse_verdict(_num(last.get("target_std")), _num(last.get("target_token_std")),
                                    _num(last.get("target_erank")), dim,
                                    _num(first.get("target_erank")) if first is not last else None)
    table = []
    for k, meaning in _DIAG_MEANING.items():
        v = _num(last.get(k))
        if v is None:
            continue
        v0 = _num(first.get(k))
        table.append((k, f"{v0:.4g}" if v0 is not None and first is not last else "-", f"{v:.4g}", meaning))
    step0, step1 = int(float(first["step"])), int(float(last["step"]))
    return (f'<p class="verdict {level}"><b>{_e(level.upper())}</b>: {_e(words)}</p>'
            + _table(table, head=("diagnostic", f"step {step0}", f"step {step1} (last)", "meaning"))
            + (f"<p>Encoder width: {dim}.</p>" if dim else ""))


# --------------------------------------------------------------------------- masks

_TARGET_RGB = np.array([230, 40, 40], dtype=np.float32)


def _sample_frames(pcfg, n: int) -> tuple[np.ndarray | None, str]:
    """``n`` clips of the run's data as ``uint8 [n, T, H, W, 3]`` (or None), and where they came from."""
    from ..training.trainer import build_dataset

    try:
        ds = build_dataset(pcfg, split="val")
        want = (3, pcfg.data.num_frames, *pcfg.data.crop_size)
        clips = []
        for i in range(min(len(ds), 4 * n)):
            item = ds[i]
            c = item.get("clip") if isinstance(item, dict) else None
            while c is not None and c.dim() > 4:  # evaluation items stack their views / segments: the first
                c = c[0]
            if c is not None and tuple(c.shape) == want:
                clips.append(c)
            if len(clips) == n:
                break
        if not clips:
            return None, "plain grids: no clip of the run's data could be read at the training size"
        x = np.stack([c.float().clamp(0, 1).permute(1, 2, 3, 0).numpy() for c in clips])  # n T H W C
        return (x * 255).round().astype(np.uint8), "the run's data" + (
            " (the embedded synthetic videos)" if pcfg.data.source == "synthetic" else "")
    except Exception as e:  # noqa: BLE001 - the masks are still worth drawing without pictures
        return None, f"plain grids: the run's data could not be read here ({type(e).__name__}: {e})"


def _describe_mask(m) -> str:
    from ..masks.multiblock import MultiBlockMaskConfig

    if isinstance(m, MultiBlockMaskConfig):
        sp = m.spatial_scale
        tm = m.temporal_scale
        spf = f"{sp[0]:.0%}" if sp[0] == sp[1] else f"{sp[0]:.0%}-{sp[1]:.0%}"
        tmf = f"{tm[0]:.0%}" if tm[0] == tm[1] else f"{tm[0]:.0%}-{tm[1]:.0%}"
        extra = ""
        if m.max_temporal_keep < 1:
            extra += f", context only from the first {m.max_temporal_keep:.0%} of time"
        if m.full_complement:
            extra += ", target = complement of the context"
        return f"multi-block: {m.num_blocks} block(s) of {spf} of the frame each, {tmf} of the time{extra}"
    return f"tube: {m.ratio:.0%} of the frame hidden at every time step"


def mask_figures(pcfg, samples: int = 3, step: int = 0) -> list[dict]:
    """Draw the run's mask configs as the training step ``step`` would (the project's
    :class:`~videojepa.masks.MaskGenerator` with the run's seed, grid and equalisation, over a batch of
    ``data.batch_size``), for the first ``samples`` clips of the batch.

    Returns one dict per mask config: ``png`` (bytes: a row per sample, a panel per tubelet time step;
    the context encoder sees the clear patches, the predictor must predict the red ones, grey ones are
    neither), ``description``, ``context_frac``, ``target_frac``, ``grid`` and ``source`` (of the frames).
    """
    import torch

    from ..masks.collator import MaskGenerator
    from ..masks.ops import grid_size

    enc = pcfg.encoder_config()
    d = pcfg.data
    grid = grid_size(d.num_frames, *d.crop_size, enc.tubelet_size, enc.patch_size)
    t_, h_, w_ = grid
    n_tok = t_ * h_ * w_
    batch = max(samples, d.batch_size)
    gen = MaskGenerator(pcfg.mask.build(), grid, pcfg.train.seed, pcfg.mask.equalize)
    pairs = gen.sample(step, batch)
    frames, source = _sample_frames(pcfg, samples)
    from .media import grid as grid_img

    H, W = d.crop_size
    ph, pw = enc.patch_size if isinstance(enc.patch_size, (tuple, list)) else (enc.patch_size, enc.patch_size)
    scale = max(1, int(round(96 / max(H, W))))
    frame_of = [min(t * enc.tubelet_size, d.num_frames - 1) for t in range(t_)]
    out = []
    for mi, (m, (ctx, tgt)) in enumerate(zip(pcfg.mask.build(), pairs)):
        cells: list[list[np.ndarray]] = []
        cfr, tfr = [], []
        for b in range(samples):
            state = torch.zeros(n_tok, dtype=torch.uint8)  # 0 neither, 1 context, 2 target
            state[ctx[b]] = 1
            state[tgt[b]] = 2
            cfr.append(float((state == 1).float().mean()))
            tfr.append(float((state == 2).float().mean()))
            st = state.view(t_, h_, w_).numpy()
            row = []
            for t in range(t_):
                if frames is not None:
                    img = frames[b % len(frames), frame_of[t]].astype(np.float32)
                else:
                    img = np.full((H, W, 3), 200.0, dtype=np.float32)
                cell = np.kron(st[t], np.ones((ph, pw), dtype=np.uint8))[:H, :W]
                if cell.shape != (H, W):  # crop not a multiple of the patch: the rest is "neither"
                    cell = np.pad(cell, ((0, H - cell.shape[0]), (0, W - cell.shape[1])))
                shown = img.copy()
                tmask = cell == 2
                shown[tmask] = 0.35 * img[tmask] + 0.65 * _TARGET_RGB
                nmask = cell == 0
                shown[nmask] = 0.25 * img[nmask].mean(-1, keepdims=True) + 0.75 * 90.0
                if frames is None:
                    shown[cell == 1] = (207, 227, 247)
                up = np.kron(shown, np.ones((scale, scale, 1), dtype=np.float32))
                up[::ph * scale, :, :] *= 0.8  # faint patch grid
                up[:, ::pw * scale, :] *= 0.8
                row.append(up.clip(0, 255).astype(np.uint8))
            cells.append(row)
        pic = grid_img(cells, row_labels=[f"clip {b}" for b in range(samples)],
                       col_labels=[f"t={f}" for f in frame_of], pad=3)
        out.append(dict(png=_png_bytes(pic), description=_describe_mask(m), context_frac=float(np.mean(cfr)),
                        target_frac=float(np.mean(tfr)), grid=grid, source=source, index=mi))
    return out


def section_masks(pcfg, samples: int = 3) -> str:
    if pcfg is None:
        raise SectionSkipped("this run's config has no pretraining mask configs (a fine-tuning or world-model run): "
                             "masks are drawn for pretraining runs")
    figs = mask_figures(pcfg, samples=samples)
    t_, h_, w_ = figs[0]["grid"]
    src = figs[0]["source"]
    enc = pcfg.encoder_config()
    parts = [f"<p>Token grid {t_} x {h_} x {w_} (time steps of {enc.tubelet_size} frames, patches of "
             f"{enc.patch_size} px); masks of training step 0, drawn by the run's own mask code (seed "
             f"{pcfg.train.seed}, equalize={_e(pcfg.mask.equalize)}), first {samples} clips of the batch; "
             f"{_e(src if src.startswith('plain') else 'frames from ' + src)}. Each row is a clip, each panel a time "
             "step (its first frame).</p>",
             '<p class="legend"><span class="sw ctx"></span> clear: the context, what the encoder sees '
             '<span class="sw tgt"></span> red: the target, hidden; the predictor must predict its features '
             '<span class="sw nei"></span> grey: neither (dropped to equalise lengths across the batch)</p>']
    for f in figs:
        parts.append(f'<figure><figcaption>mask {f["index"]}: {_e(f["description"])}; the context keeps '
                     f'{f["context_frac"]:.0%} of the tokens, the target is {f["target_frac"]:.0%}</figcaption>'
                     + _img(f["png"], "image/png", f"mask config {f['index']}", "pix") + "</figure>")
    return "".join(parts)


# --------------------------------------------------------------------------- features and predictions

def default_video(cfg: dict | None) -> str | None:
    """The video the report looks at when ``--video`` is not given: the embedded dataset's validation split for
    runs on synthetic data, else the first entry of ``data.datasets``."""
    data = (cfg or {}).get("data") or {}
    if not isinstance(data, dict):
        return None
    for k in ("val", "train"):  # fine-tuning configs name their splits
        if "source" not in data and isinstance(data.get(k), str) and data[k]:
            return data[k]
    ds = data.get("datasets") or []
    if data.get("source", "synthetic") != "synthetic" and isinstance(ds, (list, tuple)) and ds:
        return str(ds[0])
    return "synthetic:val" if data.get("source", "synthetic") == "synthetic" else None


def _embed_outputs(paths: dict, what: str) -> str:
    parts = []
    for key in ("gif", "png"):
        p = paths.get(key)
        if p and Path(p).is_file():
            parts.append(f"<figure>{_img_file(Path(p), f'{what} ({key})', 'pix')}"
                         f"<figcaption>{_e(Path(p).name)}</figcaption></figure>")
    for key, p in paths.items():
        if key not in ("gif", "png") and isinstance(p, (str, Path)) and Path(p).suffix.lower() in (".png", ".gif") \
                and Path(p).is_file():
            parts.append(f"<figure>{_img_file(Path(p), f'{what} ({key})', 'pix')}"
                         f"<figcaption>{_e(key)}: {_e(Path(p).name)}</figcaption></figure>")
    mp4 = paths.get("mp4")
    if mp4 and Path(mp4).is_file():
        parts.append(f"<p>Also written beside this page: <code>{_e(mp4)}</code></p>")
    if not parts:
        raise SectionSkipped(f"{what}: nothing was written ({paths})")
    return '<div class="row">' + "".join(parts) + "</div>"


def section_features(video: str | None, ckpt: Path | None, out_dir: Path) -> str:
    if ckpt is None:
        raise SectionSkipped("no checkpoint in checkpoints/ yet: the features need a trained encoder")
    if video is None:
        raise SectionSkipped("no video to look at: the run's config names no dataset; pass --video SPEC")
    try:
        from .features import show_features
    except ImportError as e:
        raise SectionSkipped(f"videojepa.viz.features is not available in this install ({e})") from None
    res = show_features(video, ckpt, out_dir, formats=("gif",))
    paths = {k: v for k, v in res.items() if k in ("gif", "png", "mp4")}
    expl = res.get("explained") or []
    ex = (f" The three components explain {', '.join(f'{float(v):.0%}' for v in expl)} of the variance"
          f" (PCA fitted on {_e(res.get('pca', 'the clip'))}).") if expl else ""
    return (f"<p>Video <code>{_e(video)}</code> (item 0) through the encoder of <code>{_e(ckpt.name)}</code>: each "
            "frame beside the colour map of the tokens covering it, their first three principal components as red, "
            "green and blue. Tokens of similar colour have similar features: objects that keep their colour as they "
            f"move are tracked by the features; a flat single colour means the features carry little.{ex}</p>"
            + _embed_outputs(paths, "features"))


def _decoder_command(ckpt: Path | None, cfg: dict | None) -> str:
    data = (cfg or {}).get("data") or {}
    index = "INDEX"
    if isinstance(data, dict):
        if data.get("datasets"):
            index = str(data["datasets"][0])
        elif data.get("source", "synthetic") == "synthetic":
            index = "synthetic:train"
    return f"videojepa decoder train --checkpoint {ckpt if ckpt else 'CKPT'} --data {index}"


_PSNR_MEANING = {
    "prediction": "the predictor's outputs, decoded: the model's guess of tubelets it never saw",
    "copy_nearest": "baseline: each hidden tubelet copied from the nearest visible one",
    "random_init": "baseline: the same pipeline with the model before training",
    "target_decoded": "ceiling: the target encoder's features of the full clip, decoded (it saw the pixels)",
}


def section_predictions(run: Path, video: str | None, ckpt: Path | None, cfg: dict | None, out_dir: Path) -> str:
    dec = run / "decoder"
    cmd = _decoder_command(ckpt, cfg)
    if not dec.is_dir():
        return (_note(f"No decoder was trained for this run (there is no {dec}), so its predictions cannot be "
                      "turned back into pixels. Train one (a few minutes on a CPU; it is written to that folder) and "
                      "run videojepa report again:") + f"<pre>{_e(cmd)}</pre>")
    try:
        from .predictions import show_predictions
    except ImportError as e:
        raise SectionSkipped(f"{dec} exists, but videojepa.viz.predictions is not available in this install ({e})") \
            from None
    if ckpt is None:
        raise SectionSkipped("no checkpoint in checkpoints/ yet")
    if video is None:
        raise SectionSkipped("no video to look at: pass --video SPEC")
    try:
        meta = json.loads((dec / "decoder.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SectionSkipped(f"{dec}/decoder.json does not read ({e}): the decoder's training has not finished") from None
    if meta.get("decoder", {}).get("kind") == "frame":
        raise SectionSkipped(f"{dec} decodes world-model latents (videojepa world imagine --decoder shows them)")
    own = Path(meta.get("checkpoint", ""))
    if own.is_file() or own.is_dir():  # the checkpoint the decoder was trained on, not a newer one
        ckpt = own
    rnd = run / "decoder-random"  # the random-init baseline's decoder (videojepa decoder train --init random)
    res = show_predictions(video, ckpt, dec, out_dir, formats=("gif",), random_decoder=rnd if rnd.is_dir() else None)
    psnr = res.get("psnr") or {}
    verdict = ""
    if "prediction" in psnr and "copy_nearest" in psnr:
        gap = float(psnr["prediction"]) - float(psnr["copy_nearest"])
        verdict = _note(f"On this clip the decoded predictions {'beat' if gap > 0 else 'do not beat'} the "
                        f"copy-nearest-visible baseline: {gap:+.2f} dB at the hidden positions"
                        + (" (the predictor's guesses carry more than the visible neighbours do)." if gap > 0 else
                           " (the model's predictions, as this decoder reads them, are no better than copying the "
                           "nearest visible tubelet)."))
    table = _table([(k, f"{float(v):.2f} dB", _PSNR_MEANING.get(k, "")) for k, v in psnr.items()],
                   head=("at the hidden positions", "PSNR", "what it is")) if psnr else \
        _note("no PSNR values were returned")
    return (f"<p>Video <code>{_e(video)}</code> with the predictor of <code>{_e(ckpt.name)}</code>, decoded by "
            f"<code>{_e(dec)}</code>.</p>" + _embed_outputs({k: v for k, v in res.items() if k in ("gif", "png", "mp4")},
                                                              "predictions") + table + verdict)


# --------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1250px;padding:16px 24px;
color:#1d232b;background:#fbfbfc;line-height:1.4}
h1{margin:.2em 0}h2{border-bottom:2px solid #dde3ea;padding-bottom:4px;margin-top:1.6em}h3{margin:.4em 0;font-size:1em}
nav a{margin-right:12px}section{margin-bottom:12px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{border:1px solid #dde3ea;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eef2f6}table.kv td:first-child{color:#4a5866;white-space:nowrap}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}pre{background:#f0f3f6;padding:8px;
overflow:auto}.cfggrid{display:flex;flex-wrap:wrap;gap:14px}.cfgsec{flex:1 1 330px}
.note{background:#fff7e0;border-left:4px solid #e0b020;padding:6px 10px}
.verdict{padding:8px 12px;border-left:6px solid}.verdict.ok{background:#e8f6ea;border-color:#2a9d3a}
.verdict.warning{background:#fff7e0;border-color:#e0b020}.verdict.collapsed{background:#fde8e8;border-color:#d03030}
img.wide{max-width:100%}img.pix{image-rendering:pixelated;max-width:100%}
figure{margin:8px 0}figcaption{font-size:13px;color:#4a5866}.row{display:flex;flex-wrap:wrap;gap:16px}
.sw{display:inline-block;width:14px;height:14px;vertical-align:middle;margin:0 4px 0 12px;border:1px solid #888}
.sw.ctx{background:#cfe3f7}.sw.tgt{background:#e62828}.sw.nei{background:#5a5a5a}
.meta{color:#4a5866;font-size:13px}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.getElementsByTagName("img"), ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.setAttribute("data-images-loaded", String(ok));
  document.body.setAttribute("data-images-total", String(imgs.length));
});
"""


def write_report(run_dir: str | Path, out: str | Path | None = None, *, video: str | None = None,
                 features: bool = True, predictions: bool = True, mask_samples: int = 3,
                 log: Callable[[str], None] | None = print) -> Path:
    """Write the run report of ``run_dir`` (default ``RUN_DIR/report.html``) and return its path.

    ``video``: what the features / predictions sections look at (default :func:`default_video`); their
    files are written to ``<out stem>_files/`` beside the page and embedded in it. ``features`` /
    ``predictions`` False: skip those sections (they say so). ``log``: progress lines (None: quiet).
    """
    import yaml

    say = log or (lambda _m: None)
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory not found: {run}")
    out = Path(out) if out else run / "report.html"
    assets = out.parent / f"{out.stem}_files"
    t0 = time.perf_counter()

    cfg, cfg_text = None, None
    if (run / "config.yaml").is_file():
        cfg_text = (run / "config.yaml").read_text()
        try:
            cfg = yaml.safe_load(cfg_text) or {}
        except yaml.YAMLError:
            cfg = None
    summary = None
    if (run / "summary.json").is_file():
        try:
            summary = json.loads((run / "summary.json").read_text())
        except json.JSONDecodeError:
            summary = None
    rows = _read_rows(run / "metrics.csv") if (run / "metrics.csv").is_file() else None
    pcfg = _pretrain_config(cfg) if isinstance(cfg, dict) else None
    from ..training.checkpoint import find_latest

    ckpt = find_latest(run / "checkpoints")
    if (run / "export" / "config.json").is_file():  # a fine-tuning run: its export holds the encoder to show
        ckpt = run / "export"
    vid = video or default_video(cfg if isinstance(cfg, dict) else None)

    def skipped(why):
        def f():
            raise SectionSkipped(why)
        return f

    makers = {
        "config": lambda: section_config(run, cfg if isinstance(cfg, dict) else None, cfg_text),
        "summary": lambda: section_summary(run, summary),
        "curves": lambda: section_curves(run, rows),
        "diagnostics": lambda: section_diagnostics(rows, pcfg),
        "masks": lambda: section_masks(pcfg, mask_samples),
        "features": (lambda: section_features(vid, ckpt, assets / "features")) if features
        else skipped("skipped (--no-features)"),
        "predictions": (lambda: section_predictions(run, vid, ckpt, cfg if isinstance(cfg, dict) else None,
                                                    assets / "predictions")) if predictions
        else skipped("skipped (--no-predictions)"),
    }
    if isinstance(cfg_text, str) and cfg is None:
        makers["config"] = skipped("config.yaml is not valid YAML")
    bodies: dict[str, str] = {}
    status: dict[str, str] = {}
    for name in SECTIONS:
        t = time.perf_counter()
        try:
            bodies[name] = makers[name]()
            status[name] = "ok"
        except SectionSkipped as e:
            bodies[name] = _note(str(e))
            status[name] = f"skipped: {e}"
        except Exception as e:  # noqa: BLE001 - one broken section never loses the others
            tb = traceback.format_exc(limit=3)
            bodies[name] = _note(f"this section could not be made: {type(e).__name__}: {e}") + \
                f"<details><summary>traceback</summary><pre>{_e(tb)}</pre></details>"
            status[name] = f"failed: {type(e).__name__}: {e}"
        say(f"report: {name:<12} {time.perf_counter() - t:5.1f} s  {status[name]}")

    title = f"videojepa run report: {run.resolve().name}"
    nav = "".join(f'<a href="#{n}">{_e(_TITLES[n].split(":")[0])}</a>' for n in SECTIONS)
    secs = "".join(f'<section id="{n}" data-status="{_e(status[n].split(":")[0])}"><h2>{_e(_TITLES[n])}</h2>'
                   f"{bodies[n]}</section>" for n in SECTIONS)
    from .. import __version__

    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><h1>{_e(title)}</h1><p class=\"meta\">{_e(run.resolve())} &middot; written "
            f"{_e(time.strftime('%Y-%m-%d %H:%M'))} by videojepa {_e(__version__)}"
            f"{' &middot; checkpoint ' + _e(ckpt.name) if ckpt else ''}</p><nav>{nav}</nav>{secs}"
            f"<script>{_SCRIPT}</script></body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    say(f"report: wrote {out} ({len(page) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return out


if __name__ == "__main__":  # pragma: no cover
    write_report(sys.argv[1])
