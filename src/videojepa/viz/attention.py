"""Where an attentive probe looks: the cross-attention weights of its learned queries over the tokens.

An attentive probe (:class:`~videojepa.models.pooler.AttentiveClassifier`) pools the encoder's tokens with
``Q`` learned queries in one cross-attention block: per head, ``softmax(q k^T / sqrt(head_dim))`` over the
``N`` tokens. :func:`probe_attention` recomputes those weights from the module's own ``q`` / ``kv``
projections and LayerNorm (the probe's forward is not touched) and averages them over heads and queries,
so they sum to 1 over the tokens.

A V-JEPA 2 style probe (``self_attn_position="before"``, depth > 1) runs self-attention blocks over all
tokens first: its weights are then over those *transformed* tokens (token ``n`` still sits at position ``n``,
but it has mixed in information from the others), which :attr:`ProbeAttention.note` says.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ProbeAttention", "probe_attention", "attention_grid", "pooler_of", "NoAttentionError", "explain_name",
           "write_explanation"]


class NoAttentionError(TypeError):
    """The head has no attention to show (a mean-pool or linear probe)."""


@dataclass
class ProbeAttention:
    """``weights [B, N]``: the mean over heads and queries (each row sums to 1); ``per_head [B, h, Q, N]``;
    ``over_transformed``: the tokens went through the probe's own self-attention blocks first; ``note``: a
    sentence saying so (``None`` otherwise)."""

    weights: torch.Tensor
    per_head: torch.Tensor
    over_transformed: bool
    note: str | None = None


def pooler_of(probe):
    """The :class:`~videojepa.models.pooler.AttentivePooler` of a probe, fine-tuned classifier or pooler;
    :class:`NoAttentionError` naming the type for heads without one."""
    from ..models.pooler import AttentiveClassifier, AttentivePooler

    head = getattr(probe, "head", probe)  # a VideoClassifier's head
    if isinstance(head, AttentivePooler):
        return head
    if isinstance(head, AttentiveClassifier):
        return head.pooler
    raise NoAttentionError(f"the probe is a {type(head).__name__}, which has no attention to show "
                           "(--explain needs an attentive probe: videojepa probe --kind attentive)")


@torch.no_grad()
def probe_attention(probe, tokens: torch.Tensor) -> ProbeAttention:
    """The cross-attention weights of ``probe`` over ``tokens [B, N, D]`` (or ``[N, D]``), see the module
    docstring."""
    pooler = pooler_of(probe)
    x = torch.as_tensor(tokens)
    if x.ndim == 2:
        x = x[None]
    D = pooler.cfg.embed_dim
    if x.ndim != 3 or x.shape[-1] != D:
        raise ValueError(f"the probe expects tokens [B, N, {D}], got shape {tuple(x.shape)}")
    p = pooler.query_tokens
    x = x.to(p.device, p.dtype)
    was = pooler.training
    pooler.eval()
    try:
        before = pooler.cfg.self_attn_position == "before" and len(pooler.blocks) > 0
        if before:
            for blk in pooler.blocks:
                x = blk(x)
        block = pooler.cross_attention_block
        xattn = block.xattn
        kx = block.norm1(x)
        B, N, _ = kx.shape
        h = xattn.num_heads
        hd = D // h
        q = pooler.query_tokens.expand(B, -1, -1)
        Q = q.shape[1]
        qh = xattn.q(q).reshape(B, Q, h, hd).transpose(1, 2)  # [B, h, Q, hd]
        k = xattn.kv(kx).reshape(B, N, 2, h, hd)[:, :, 0].transpose(1, 2)  # [B, h, N, hd]
        logits = (qh.float() @ k.float().transpose(-2, -1)) / (hd ** 0.5)
        per_head = logits.softmax(dim=-1)  # [B, h, Q, N]
    finally:
        pooler.train(was)
    note = None
    if before:
        note = (f"the probe runs {len(pooler.blocks)} self-attention block(s) over the tokens before pooling: "
                "the weights are over those transformed tokens, each at its input position")
    return ProbeAttention(weights=per_head.mean(dim=(1, 2)).cpu(), per_head=per_head.cpu(),
                          over_transformed=before, note=note)


def attention_grid(weights: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Weights over ``N`` tokens -> ``[T', H', W']`` (time-major token order, as the encoder emits them).
    ``N`` must be one token per tubelet (``T' H' W'``); multi-layer or multi-clip features are refused."""
    w = torch.as_tensor(weights).flatten()
    T, H, W = (int(g) for g in grid)
    n = T * H * W
    if w.numel() != n:
        extra = ""
        if w.numel() % n == 0:
            extra = (f" ({w.numel() // n} x {n}: features of several layers, segments or views concatenated "
                     "along the token axis)")
        raise ValueError(f"the probe's tokens are not one per tubelet: {w.numel()} tokens for a grid of "
                         f"{T}x{H}x{W} = {n}{extra}; --explain needs single-layer, single-clip features")
    return w.reshape(T, H, W)


def _safe_name(text: str) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._")
    return s or "video"


def explain_name(spec: str, item: int | None = None) -> str:
    """A file-name-safe name for a video (its stem) or an item of an index (``synthetic_val_20_item3``)."""
    from pathlib import Path

    if item is None:
        return _safe_name(Path(str(spec)).stem)
    return f"{_safe_name(spec)}_item{int(item)}"


def write_explanation(probe, tokens: torch.Tensor, grid: tuple[int, int, int], frames, out_dir, name: str, *,
                      fps: float = 4, scale: int | None = None, max_columns: int = 8) -> dict:
    """Overlay the probe's attention over ``tokens`` (one clip: ``[N, D]`` or ``[1, N, D]`` on the token
    ``grid``) on ``frames [T, H, W, 3]`` and write ``explain_<name>.gif`` (input | overlay), ``.png``
    (rows input / attention, columns frames) and ``.npy`` (the weights ``[T', H', W']`` before any
    normalisation: they sum to 1) into ``out_dir``.

    Returns ``{"gif", "png", "npy": paths, "peak": [t', h', w'] of the largest weight, "note"}``."""
    from pathlib import Path

    import numpy as np

    from .media import auto_scale, grid as grid_of, overlay_heatmap, side_by_side, upscale, write_gif, write_png

    att = probe_attention(probe, tokens)
    if att.weights.shape[0] != 1:
        raise ValueError(f"write_explanation takes the tokens of one clip, got {att.weights.shape[0]}")
    heat = attention_grid(att.weights[0], grid).double().numpy()
    f = np.asarray(frames, dtype=np.uint8)
    over = overlay_heatmap(f, heat)
    T, H, W = f.shape[:3]
    k = scale or auto_scale(H, W)
    big_f, big_o = upscale(f, k), upscale(over, k)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"explain_{name}"
    np.save(stem.with_name(stem.name + ".npy"), heat)
    gif = write_gif(side_by_side([big_f, big_o], labels=["input", "probe attention"]),
                    stem.with_name(stem.name + ".gif"), fps)
    cols = sorted(set(np.linspace(0, T - 1, min(max_columns, T)).round().astype(int).tolist()))
    pic = grid_of([[big_f[t] for t in cols], [big_o[t] for t in cols]], row_labels=["input", "attention"],
                  col_labels=[f"t={t}" for t in cols])
    png = write_png(pic, stem.with_name(stem.name + ".png"))
    peak = [int(v) for v in np.unravel_index(int(np.argmax(heat)), heat.shape)]
    return {"gif": gif, "png": png, "npy": stem.with_name(stem.name + ".npy"), "peak": peak, "note": att.note}
