"""What the encoder sees: its token features as colours (PCA to RGB), beside the input frames.

Tokens of one clip form a grid ``[T', H', W', D]`` (one per tubelet of ``tubelet_size`` frames x
``patch_size``^2 pixels). The three main directions of their variation (PCA) become red, green and blue:
tokens the encoder represents alike get alike colours, so objects, parts and motion show as regions.

The PCA is deterministic: an SVD of the centred float64 tokens, each component's sign chosen so that the
fitted token with the largest |projection| on it projects positively (so the colours depend neither on the
SVD's arbitrary signs nor on a global sign flip of the features), each channel scaled by the 1% and 99%
percentiles of the fitted projections and clipped. It is fitted per video by default, or once on a reference
set (several clips' tokens concatenated) so that several videos share one colouring.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .media import VIDEO_FORMATS, auto_scale, grid, upscale, write_png, write_video

__all__ = ["PCA", "token_grid", "fit_pca", "pca_rgb", "feature_frames", "feature_maps", "show_features"]

PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class PCA:
    """A fitted PCA: ``mean [D]``, ``components [k, D]`` (rows, unit norm), per-channel ``lo`` / ``hi`` [k]
    (the percentiles of the fitted projections that map to 0 and 255)."""

    mean: np.ndarray
    components: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    explained: np.ndarray  # fraction of the variance along each component

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    def project(self, tokens) -> np.ndarray:
        """``[..., D]`` -> projections ``[..., k]`` (float64)."""
        x = _as_f64(tokens)
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"tokens of width {x.shape[-1]} for a PCA fitted on width {self.mean.shape[0]}")
        return (x - self.mean) @ self.components.T

    def scaled(self, tokens) -> np.ndarray:
        """``[..., D]`` -> ``[..., k]`` in [0, 1] (percentile-scaled and clipped)."""
        return np.clip((self.project(tokens) - self.lo) / (self.hi - self.lo), 0.0, 1.0)


def _as_f64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def fit_pca(tokens, k: int = 3) -> PCA:
    """Fit a ``k``-component PCA on ``tokens [N, D]`` (a tensor or an array; see the module docstring).
    With fewer than ``k`` directions of variation the missing components are zero (their channel is 0)."""
    x = torch.as_tensor(_as_f64(tokens))
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"fit_pca expects tokens [N, D] with N >= 1, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    N, D = x.shape
    mean = x.mean(dim=0)
    xc = x - mean
    U, S, Vh = torch.linalg.svd(xc, full_matrices=False)
    tol = float(S.max()) * max(N, D) * float(np.finfo(np.float64).eps) if S.numel() else 0.0
    r = min(k, int((S > tol).sum()))  # directions of real variation only (numerical-noise ones are dropped)
    comps = torch.zeros(k, D, dtype=torch.float64)
    comps[:r] = Vh[:r]
    scores = xc @ comps.T  # [N, k]
    # sign: the fitted token with the largest |projection| projects positively (first such token on ties)
    idx = scores.abs().argmax(dim=0)
    sign = torch.sign(scores[idx, torch.arange(k)])
    sign[sign == 0] = 1.0
    comps, scores = comps * sign[:, None], scores * sign
    s = scores.numpy()
    lo = np.percentile(s, PERCENTILES[0], axis=0)
    hi = np.percentile(s, PERCENTILES[1], axis=0)
    flat = hi - lo <= 1e-12 * max(1.0, float(np.abs(s).max(initial=0.0)))
    hi = np.where(flat, lo + 1.0, hi)
    var = (S ** 2).numpy()
    explained = np.zeros(k)
    if var.sum() > 0:
        explained[:r] = var[:r] / var.sum()
    return PCA(mean=mean.numpy(), components=comps.numpy(), lo=lo, hi=hi, explained=explained)


def pca_rgb(tokens, pca: PCA) -> np.ndarray:
    """Tokens ``[..., D]`` -> colours ``[..., 3]`` uint8 (components 1, 2, 3 as red, green, blue; a 1-component
    PCA gives grey, a 2-component one no blue)."""
    v = pca.scaled(tokens)
    if pca.k == 1:
        v = np.repeat(v, 3, axis=-1)
    elif pca.k == 2:
        v = np.concatenate([v, np.zeros_like(v[..., :1])], axis=-1)
    else:
        v = v[..., :3]
    return np.rint(v * 255.0).astype(np.uint8)


@torch.no_grad()
def token_grid(encoder, clip: torch.Tensor) -> torch.Tensor:
    """The encoder's output tokens of ``clip`` (``[C, T, H, W]`` or ``[B, C, T, H, W]``, normalised) on their
    grid: ``[T', H', W', D]`` (``[B, T', H', W', D]`` for a batch of more than one clip), float32 on the CPU.
    Runs in eval mode without gradients (the encoder's mode is restored)."""
    x = torch.as_tensor(clip)
    single = x.ndim == 4
    if single:
        x = x[None]
    p = next(encoder.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    x = encoder.prepare_input(x.to(dev, dtype))
    Tg, Hg, Wg = encoder.grid_of(x)
    was = encoder.training
    encoder.eval()
    try:
        tok = encoder(x)
    finally:
        encoder.train(was)
    B, N, D = tok.shape
    if N != Tg * Hg * Wg:
        raise ValueError(f"the encoder returned {N} tokens for a grid of {Tg}x{Hg}x{Wg}")
    out = tok.float().cpu().reshape(B, Tg, Hg, Wg, D)
    return out[0] if single or B == 1 else out


def _spread(maps: np.ndarray, T: int, H: int, W: int) -> np.ndarray:
    """Per-token maps ``[T', H', W', C]`` -> per-frame pictures ``[T, H, W, C]`` by nearest neighbour (each
    tubelet covers its frames; each token its patch)."""
    Tg, Hg, Wg = maps.shape[:3]
    ti = np.minimum((np.arange(T) * Tg) // T, Tg - 1)
    ri = np.minimum((np.arange(H) * Hg) // H, Hg - 1)
    ci = np.minimum((np.arange(W) * Wg) // W, Wg - 1)
    return maps[ti][:, ri][:, :, ci]


def feature_maps(encoder, clip: torch.Tensor, frames: np.ndarray, pca: PCA | None = None) -> tuple[np.ndarray, PCA]:
    """``(maps [T, H, W, 3] uint8, pca)``: the PCA colours of the tokens covering each frame of ``frames``
    (``pca`` fitted on this clip's tokens when not given)."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {f.shape}")
    tok = token_grid(encoder, clip)
    if tok.ndim != 4:
        raise ValueError("feature_maps takes one clip [C, T, H, W]")
    if pca is None:
        pca = fit_pca(tok.reshape(-1, tok.shape[-1]))
    rgb = pca_rgb(tok, pca)  # [T', H', W', 3]
    T, H, W = f.shape[:3]
    return _spread(rgb, T, H, W), pca


def feature_frames(encoder, clip: torch.Tensor, frames: np.ndarray, pca: PCA | None = None, pad: int = 2) -> np.ndarray:
    """Each frame of ``frames [T, H, W, 3]`` beside the PCA colour map of the tokens covering it (nearest
    upsampled; a tubelet of 2 frames colours both): ``[T, H, 2 W + pad, 3]`` uint8 (``pad`` white columns)."""
    maps, _ = feature_maps(encoder, clip, frames, pca)
    f = np.asarray(frames, dtype=np.uint8)
    sep = np.full((*f.shape[:2], pad, 3), 255, np.uint8)
    return np.concatenate([f, sep, maps], axis=2)


def _pick(T: int, n: int) -> list[int]:
    return sorted(set(np.linspace(0, T - 1, min(n, T)).round().astype(int).tolist()))


def show_features(spec: str, checkpoint, out_dir, *, part: str | None = None, item: int = 0, fps: float = 4,
                  reference: str | None = None, formats: Sequence[str] = VIDEO_FORMATS, png: bool = True,
                  reference_items: int = 8, max_columns: int = 16, scale: int | None = None) -> dict:
    """Write what the encoder of ``checkpoint`` sees in item ``item`` of ``spec`` into ``out_dir``:
    ``features.gif`` / ``features.mp4`` (``formats``: each frame beside its PCA colour map) and
    ``features.png`` (``png``: rows input / PCA map, columns frames, at most ``max_columns``).

    ``checkpoint``: anything :func:`videojepa.load` reads (``part``: ``encoder`` or ``target_encoder``; the
    encoder of a fine-tuned classifier is used too). ``reference``: a spec whose first ``reference_items``
    clips fit the PCA (shared colours across videos) instead of this clip. ``scale``: integer upscale of the
    pictures (default: small clips are enlarged to about 160 px).

    Returns ``{"gif", "mp4", "png": paths written, "frames": T, "grid": [T', H', W'], "pca": "clip" or the
    reference, "explained": variance fractions, "seconds"}``. Raises :class:`~videojepa.viz.clips.VizError`
    for input that cannot be used."""
    import videojepa

    from ..data.errors import DataError
    from .clips import VizError, clip_defaults, encoder_of, read_clip, read_clips

    t0 = time.perf_counter()
    for fmt in formats:
        if fmt not in VIDEO_FORMATS:
            raise VizError(f"unknown video format {fmt!r}; use {' or '.join(VIDEO_FORMATS)}")
    if part is not None and part not in ("encoder", "target_encoder"):
        raise VizError(f"part must be 'encoder' or 'target_encoder', got {part!r}")
    try:
        model = videojepa.load(checkpoint, part=part)
    except (FileNotFoundError, ValueError, KeyError, OSError, DataError) as e:
        raise VizError(f"cannot load the encoder from {checkpoint}: {e}") from e
    enc = encoder_of(model)
    if enc is None:
        raise VizError(f"{checkpoint}: part {part or 'default'} is a {type(model).__name__}, not an encoder "
                       "(use part encoder or target_encoder)")
    kw = clip_defaults(model)
    clip, frames = read_clip(spec, item=item, **kw)
    pca, fitted_on = None, "clip"
    if reference:
        clips = read_clips(reference, max_items=reference_items, **kw)
        toks = [token_grid(enc, c) for c in clips]
        pca = fit_pca(torch.cat([t.reshape(-1, t.shape[-1]) for t in toks]))
        fitted_on = f"{reference} ({len(clips)} clips)"
    try:
        maps, pca = feature_maps(enc, clip, frames, pca)
    except ValueError as e:  # a clip the encoder cannot cut into tubelets
        raise VizError(f"{spec}: {e}") from e
    T, H, W = frames.shape[:3]
    k = scale or auto_scale(H, W)
    big_f, big_m = upscale(frames, k), upscale(maps, k)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {}
    if formats:
        sep = np.full((T, H * k, 2, 3), 255, np.uint8)
        res.update(write_video(np.concatenate([big_f, sep, big_m], axis=2), out / "features", formats, fps))
    if png:
        cols = _pick(T, max_columns)
        pic = grid([[big_f[t] for t in cols], [big_m[t] for t in cols]], row_labels=["input", "PCA"],
                   col_labels=[f"t={t}" for t in cols])
        res["png"] = write_png(pic, out / "features.png")
    tb = enc.cfg.tubelet_size
    res.update(frames=int(T), grid=[max(1, T // tb), H // enc.cfg.patch_size, W // enc.cfg.patch_size],
               pca=fitted_on, explained=[round(float(v), 4) for v in pca.explained],
               seconds=round(time.perf_counter() - t0, 2))
    return res
