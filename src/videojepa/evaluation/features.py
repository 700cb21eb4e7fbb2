"""Frozen-encoder features: :func:`embed` for tensors, :func:`extract_features` for datasets.

Layouts (``D`` = encoder width, ``K`` = tokens of one clip, ``L`` = number of layers asked for):

- ``pool="none"``: tokens ``[B, K, D]``; several layers are concatenated along the **token** axis
  (``[B, L*K, D]``), as V-JEPA 2's multilevel probes do (an attentive probe has no positions, so the
  order does not matter).
- ``pool="mean"``: the mean over tokens, ``[B, D]``; several layers are concatenated along the
  **feature** axis (``[B, L*D]``; the mean of a token-concatenation would blur the layers together).
- ``pool=<module>`` (e.g. a trained ``AttentivePooler``): applied to the tokens, ``[B, D]``.

Layer indices count blocks from 0; negative ones count from the end (``-1`` is the last block). Every
output goes through the encoder's final LayerNorm, as the reference's ``out_layers`` does. ``None``
means the last block.

Clips of several views (the evaluation items of :class:`~videojepa.data.video_dataset.VideoDataset`:
``[S*V, C, T, H, W]``, segment-major) keep a view axis: a :class:`FeatureSet` then holds
``[N, S*V, K, D]`` (or ``[N, S*V, D]``) with ``segments`` and ``views`` set, and
:meth:`FeatureSet.by_view` groups them the way the official protocol does (REFERENCE §6.2).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ..data.errors import SkippedSample
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize as _normalize

__all__ = ["FeatureSet", "WindowedEmbedding", "embed", "extract_features", "iter_features", "resolve_layers",
           "window_starts", "POOLS"]

POOLS = ("none", "mean")


# ----------------------------------------------------------------------------------------------- helpers
def resolve_layers(layers, depth: int) -> list[int] | None:
    """``None`` (last block), an int or a sequence of ints (negative from the end) -> sorted block ids."""
    if layers is None:
        return None
    if isinstance(layers, int):
        layers = [layers]
    out = set()
    for i in layers:
        j = int(i) + depth if int(i) < 0 else int(i)
        if not 0 <= j < depth:
            raise ValueError(f"layer {i} is out of range for an encoder of depth {depth} "
                             f"(use 0..{depth - 1} or -1..-{depth})")
        out.add(j)
    return sorted(out)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _norm_stats(model: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    pre = (getattr(model, "pretrained_cfg", None) or {}).get("preprocessing") or {}
    return tuple(pre.get("mean") or IMAGENET_MEAN), tuple(pre.get("std") or IMAGENET_STD)


@contextlib.contextmanager
def _frozen(model: nn.Module, device: torch.device):
    """Eval mode, inference mode and (on CUDA only) bf16 autocast; the training flag is restored."""
    was = model.training
    model.eval()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    try:
        with torch.inference_mode(), amp:
            yield
    finally:
        model.train(was)


def _encode(model: nn.Module, x: torch.Tensor, layers: list[int] | None, pool) -> torch.Tensor:
    """One forward pass of a batch ``[B, C, T, H, W]`` -> features (see the module docstring), float32."""
    outs = [model(x)] if layers is None else list(model(x, out_layers=layers))
    if isinstance(pool, nn.Module):
        res = []
        for o in outs:
            p = pool(o)
            res.append(p.squeeze(1) if p.ndim == 3 and p.shape[1] == 1 else p)
        return torch.cat(res, dim=-1).float()
    if pool == "mean":
        return torch.cat([o.mean(dim=1) for o in outs], dim=-1).float()
    if pool == "none":
        return torch.cat(outs, dim=1).float()
    raise ValueError(f"pool must be one of {POOLS} or an nn.Module, got {pool!r}")


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Start frames of sliding windows of ``window`` frames every ``stride`` frames over ``num_frames``.

    The last window is moved back to end at the last frame when the stride does not land there, so every
    frame is covered; a video shorter than one window gives one window at 0 (padded by :func:`embed`).
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


@dataclass
class WindowedEmbedding:
    """Features of a video cut into sliding windows.

    ``windows``: per window, ``[B, W, ...]`` (``W`` windows, each laid out as :func:`embed` without windows);
    ``video``: per video, the mean over windows (pooled) or the windows' tokens concatenated along the token
    axis (``pool="none"``: ``[B, W*K, D]``, which an attentive probe reads as one long clip);
    ``starts``: the first frame of each window (``LongTensor[W]``).
    """

    windows: torch.Tensor
    video: torch.Tensor
    starts: torch.Tensor


# ----------------------------------------------------------------------------------------------- embed
def embed(model: nn.Module, clips: torch.Tensor, pool="mean", layers=None, *, window: int | None = None,
          stride: int | None = None, batch_size: int | None = None, normalize: bool = False,
          device: str | torch.device | None = None) -> torch.Tensor | WindowedEmbedding:
    """Frozen features of ``clips`` (see the module docstring for ``pool`` and ``layers``).

    ``clips``: ``[B, C, T, H, W]`` (any ``T`` and size the model accepts: ``T`` a multiple of the tubelet
    size, ``H`` and ``W`` of the patch size) or ``[B, C, H, W]`` images (one-frame clips; the frame is
    repeated to fill a tubelet). A single clip needs its batch axis: ``clip[None]``.
    Clips are expected as the model's ``forward`` takes them (ImageNet-normalised); ``normalize=True``
    normalises ``[0, 1]`` clips first (with the model's published mean/std when it has them).

    ``window`` / ``stride`` (frames): cut videos longer than a clip into sliding windows (see
    :func:`window_starts`; a video shorter than a window is padded by repeating its last frame) and
    return a :class:`WindowedEmbedding` with per-window and per-video features. ``batch_size``: clips
    (or windows) per forward pass (default: all at once).

    Runs under ``torch.inference_mode`` in eval mode (the model's mode is restored), with bf16 autocast on
    CUDA only. ``device``: where to run; the model is moved there (default: where the model is). The
    result is float32 on that device.
    """
    if device is not None:
        model.to(device)
    dev = _device_of(model)
    if not isinstance(clips, torch.Tensor):
        raise TypeError(f"clips must be a tensor, got {type(clips).__name__}")
    if clips.ndim == 4:
        clips = clips.unsqueeze(2)
    if clips.ndim != 5:
        raise ValueError(f"expected clips [B, C, T, H, W] or images [B, C, H, W], got shape {tuple(clips.shape)}")
    depth = len(getattr(model, "blocks", [])) or None
    layers = resolve_layers(layers, depth) if depth else layers
    x = clips.to(dev)
    if normalize:
        mean, std = _norm_stats(model)
        x = _normalize(x.float(), mean, std)
    if isinstance(pool, nn.Module):
        pool.to(dev)
    with _frozen(model, dev):
        if window is None:
            return _chunked(model, x, layers, pool, batch_size)
        stride = window if stride is None else stride
        T = x.shape[2]
        if T < window:  # pad by repeating the last frame
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, window - T, -1, -1)], dim=2)
            T = window
        starts = window_starts(T, window, stride)
        B = x.shape[0]
        w = torch.stack([x[:, :, s:s + window] for s in starts], dim=1)  # [B, W, C, window, H, W]
        feats = _chunked(model, w.flatten(0, 1), layers, pool, batch_size)
        feats = feats.reshape(B, len(starts), *feats.shape[1:])
        video = feats.mean(dim=1) if feats.ndim == 3 else feats.flatten(1, 2)
        return WindowedEmbedding(windows=feats, video=video, starts=torch.tensor(starts, dtype=torch.long))


def _chunked(model, x, layers, pool, batch_size) -> torch.Tensor:
    bs = batch_size or x.shape[0]
    return torch.cat([_encode(model, x[i:i + bs], layers, pool) for i in range(0, x.shape[0], bs)], dim=0)


# ----------------------------------------------------------------------------------------------- datasets
@dataclass
class FeatureSet:
    """Frozen features of a dataset.

    ``features``: ``[N, K, D]`` tokens or ``[N, D]`` pooled; with several clips per item (``segments`` x
    ``views``, segment-major as the evaluation datasets give them) ``[N, S*V, K, D]`` / ``[N, S*V, D]``.
    ``labels``: ``LongTensor[N]`` (``-1`` where unknown); ``indices``: the dataset indices of the rows.
    ``skipped``: samples that could not be read (excluded). ``meta``: how the features were made.
    """

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    pooled: bool = False
    segments: int | None = None
    views: int | None = None
    class_names: list[str] | None = None
    skipped: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def multiview(self) -> bool:
        return self.segments is not None

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])

    @property
    def num_clips(self) -> int:
        return 1 if not self.multiview else self.segments * self.views

    def subset(self, idx) -> "FeatureSet":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return replace(self, features=self.features[idx], labels=self.labels[idx], indices=self.indices[idx])

    def by_view(self, aggregate: str = "concat") -> torch.Tensor:
        """Features grouped for the multi-view protocol: ``[N, M, ...]`` with one entry per probe pass.

        ``aggregate="concat"`` (V-JEPA 2, and V-JEPA 1 with ``attend_across_segments``): one entry per
        spatial view, the segments' tokens concatenated (``[N, V, S*K, D]``) or, pooled, averaged
        (``[N, V, D]``). ``"average"``: one entry per clip (``[N, S*V, ...]``), every clip its own pass.
        Single-clip features give ``M = 1``.
        """
        f = self.features
        if not self.multiview:
            return f.unsqueeze(1)
        if aggregate == "average":
            return f
        if aggregate != "concat":
            raise ValueError(f"aggregate must be 'concat' or 'average', got {aggregate!r}")
        S, V = self.segments, self.views
        f = f.reshape(f.shape[0], S, V, *f.shape[2:])
        if self.pooled:
            return f.mean(dim=1)
        # [N, S, V, K, D] -> [N, V, S*K, D]
        return f.transpose(1, 2).flatten(2, 3)

    def for_training(self, aggregate: str = "concat") -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, labels)`` with every view a training sample of its own (views flattened into rows)."""
        f = self.by_view(aggregate)
        M = f.shape[1]
        return f.flatten(0, 1), self.labels.repeat_interleave(M)

    def pooled_features(self) -> "FeatureSet":
        """The same set with tokens mean-pooled (a no-op when already pooled)."""
        if self.pooled:
            return self
        return replace(self, features=self.features.mean(dim=-2), pooled=True)


def _collate(items):
    ok = [it for it in items if not isinstance(it, SkippedSample)]
    skipped = [it for it in items if isinstance(it, SkippedSample)]
    if not ok:
        return None, None, None, skipped
    clips = torch.stack([it["clip"] for it in ok])
    labels = torch.tensor([-1 if it.get("label") is None else int(it["label"]) for it in ok], dtype=torch.long)
    indices = torch.tensor([int(it.get("index", -1)) for it in ok], dtype=torch.long)
    return clips, labels, indices, skipped


def iter_features(encoder: nn.Module, dataset: Dataset, *, batch_size: int = 16, layers=None, pool="none",
                  device="cpu", num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]]:
    """Yield ``(features, labels, indices, skipped)`` per batch of ``dataset``, in order, features on the CPU.

    Items are ``{"clip": [C, T, H, W] or [M, C, T, H, W] in [0, 1], "label", "index"}`` or
    :class:`~videojepa.data.errors.SkippedSample`; clips are normalised with the encoder's mean/std
    (ImageNet's unless its ``pretrained_cfg`` says otherwise), as pretraining does.
    """
    dev = torch.device(device)
    encoder.to(dev)
    depth = len(getattr(encoder, "blocks", [])) or None
    layers = resolve_layers(layers, depth) if depth else layers
    mean, std = _norm_stats(encoder)
    if isinstance(pool, nn.Module):
        pool.to(dev)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, pin_memory=dev.type == "cuda")
    with _frozen(encoder, dev):
        for clips, labels, indices, skipped in loader:
            if clips is None:
                yield None, None, None, skipped
                continue
            x = _normalize(clips.to(dev, non_blocking=True).float(), mean, std)
            lead = x.shape[:-4]  # [B] or [B, M]
            f = _encode(encoder, x.reshape(-1, *x.shape[-4:]), layers, pool)
            yield f.reshape(*lead, *f.shape[1:]).cpu(), labels, indices, skipped


def _views_of(dataset, clips_per_item: int) -> tuple[int, int]:
    """``(segments, views)`` of a multi-clip dataset: from its reader (VideoDataset) or its attributes."""
    reader = getattr(dataset, "reader", None)
    if reader is not None and hasattr(reader, "eval_views"):
        S, V = reader.sampling.num_clips, reader.eval_views
    else:
        S, V = getattr(dataset, "segments", None), getattr(dataset, "views", None)
        if S is None and V is None:
            S, V = 1, clips_per_item
        elif S is None:
            S = clips_per_item // V
        elif V is None:
            V = clips_per_item // S
    if S * V != clips_per_item:
        raise ValueError(f"items hold {clips_per_item} clips but the dataset says {S} segments x {V} views")
    return int(S), int(V)


def extract_features(encoder: nn.Module, dataset: Dataset, *, batch_size: int = 16, layers=None, pool="none",
                     device="cpu", num_workers: int = 0, progress: bool = True, desc: str = "features") -> FeatureSet:
    """Run a frozen ``encoder`` over ``dataset`` once and keep its features (see the module docstring).

    The encoder is put in eval mode (and moved to ``device``); everything runs under
    ``torch.inference_mode``, with bf16 autocast on CUDA only. Unreadable samples (``SkippedSample``
    items, from datasets built with ``on_error="report"``) are excluded and listed in ``skipped``.
    """
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc=desc, unit="clip", dynamic_ncols=True, leave=False)
    feats, labels, indices, skipped = [], [], [], []
    try:
        for f, y, i, s in iter_features(encoder, dataset, batch_size=batch_size, layers=layers, pool=pool,
                                        device=device, num_workers=num_workers):
            skipped += s
            if f is not None:
                feats.append(f), labels.append(y), indices.append(i)
            if bar is not None:
                bar.update((0 if y is None else len(y)) + len(s))
    finally:
        if bar is not None:
            bar.close()
    if not feats:
        raise ValueError(f"no sample of the dataset could be read ({len(skipped)} skipped)")
    f = torch.cat(feats)
    pooled = not (pool == "none")
    multi = f.ndim == (3 if pooled else 4)
    S = V = None
    if multi:
        S, V = _views_of(dataset, f.shape[1])
        if S * V == 1:  # one clip per item: the single-clip layout
            f, S, V = f[:, 0], None, None
    names = getattr(dataset, "class_names", None)
    depth = len(getattr(encoder, "blocks", [])) or None
    meta = {"pool": pool if isinstance(pool, str) else type(pool).__name__,
            "layers": resolve_layers(layers, depth) if depth else layers,
            "source": (getattr(encoder, "pretrained_cfg", None) or {}).get("source")}
    return FeatureSet(features=f, labels=torch.cat(labels), indices=torch.cat(indices), pooled=pooled, segments=S,
                      views=V, class_names=list(names) if names is not None else None, skipped=skipped, meta=meta)
