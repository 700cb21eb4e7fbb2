"""Multi-block 3D masks (V-JEPA) and random tube masks (V-JEPA 1 only).

Both samplers are pure: every random draw comes from the ``torch.Generator`` passed in, so the same
generator state gives the same masks. Ids index tokens in ``[t][h][w]`` order
(``id = t * H' * W' + h * W' + w``) of a ``(T', H', W')`` grid; see :mod:`videojepa.masks.ops`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from videojepa.masks.ops import Grid

__all__ = [
    "MultiBlockMaskConfig",
    "TubeMaskConfig",
    "SHORT_RANGE",
    "LONG_RANGE",
    "DEFAULT_MASKS",
    "EQUALIZE_MODES",
    "MAX_RESAMPLES",
    "check_grid",
    "sample_multiblock",
    "sample_tube",
]

EQUALIZE_MODES = ("random", "prefix")

MAX_RESAMPLES = 20
"""How many times a sample is redrawn when its blocks cover every allowed context token.

After that many failures the sample falls back to a context of one token drawn uniformly from the
allowed positions (time steps below ``max_context_duration``), and every other token is a target.
This makes sampling terminate on tiny grids, e.g. ``(8, 1, 1)`` where one block always covers everything.
"""


def _as_range(cls_name: str, name: str, value: object, *, upper: float | None) -> tuple[float, float]:
    """Validate a ``(lo, hi)`` pair with ``0 < lo <= hi`` (and ``hi <= upper`` if given)."""
    bound = f"(0, {upper:g}]" if upper is not None else "(0, inf)"
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{cls_name}.{name} must be a pair (lo, hi) in {bound}, got {value!r}") from None
    if not (0.0 < lo and (upper is None or hi <= upper)):
        raise ValueError(f"{cls_name}.{name} must lie in {bound}, got {value!r}")
    if lo > hi:
        raise ValueError(f"{cls_name}.{name} must have lo <= hi, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class MultiBlockMaskConfig:
    """One multi-block mask: the target is the union of ``num_blocks`` 3D blocks, the context the rest.

    All blocks of a batch share one size ``(t, h, w)``: ``t = max(1, int(T' * U(temporal_scale)))``
    and ``h, w`` cover ``int(H' * W' * U(spatial_scale))`` patches with aspect ratio
    ``h / w = U(aspect_ratio)``.

    Attributes:
        num_blocks: blocks per sample (>= 1).
        spatial_scale: range of the fraction of the ``H' x W'`` plane covered by one block, in (0, 1].
        temporal_scale: range of the fraction of ``T'`` covered by one block, in (0, 1]. ``(1, 1)`` gives
            tubes that span all time.
        aspect_ratio: range of ``h / w`` (sampled linearly), > 0.
        max_temporal_keep: the context only uses time steps ``< max(1, int(T' * max_temporal_keep))``;
            in (0, 1]. Later steps become targets.
        max_keep: optional cap on the number of context tokens per sample (>= 1).
        full_complement: (V-JEPA 2 option) the target is exactly the complement of the final, equalised
            context instead of the union of the blocks.
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    max_temporal_keep: float = 1.0
    max_keep: int | None = None
    full_complement: bool = False

    def __post_init__(self) -> None:
        cls = type(self).__name__
        if isinstance(self.num_blocks, bool) or int(self.num_blocks) != self.num_blocks or self.num_blocks < 1:
            raise ValueError(f"{cls}.num_blocks must be an integer >= 1, got {self.num_blocks!r}")
        # Lists (e.g. from YAML) are normalised to tuples so the config stays hashable.
        object.__setattr__(self, "num_blocks", int(self.num_blocks))
        for name in ("spatial_scale", "temporal_scale"):
            object.__setattr__(self, name, _as_range(cls, name, getattr(self, name), upper=1.0))
        object.__setattr__(self, "aspect_ratio", _as_range(cls, "aspect_ratio", self.aspect_ratio, upper=None))
        if not (0.0 < float(self.max_temporal_keep) <= 1.0):
            raise ValueError(f"{cls}.max_temporal_keep must lie in (0, 1], got {self.max_temporal_keep!r}")
        if self.max_keep is not None and (
            isinstance(self.max_keep, bool) or int(self.max_keep) != self.max_keep or self.max_keep < 1
        ):
            raise ValueError(f"{cls}.max_keep must be None or an integer >= 1, got {self.max_keep!r}")
        if not isinstance(self.full_complement, bool):
            raise ValueError(f"{cls}.full_complement must be a bool, got {self.full_complement!r}")


@dataclass(frozen=True)
class TubeMaskConfig:
    """Random tube mask (V-JEPA 1): a random set of spatial positions, tiled over all ``T'`` steps.

    Attributes:
        ratio: fraction of spatial positions that are *masked* (targets), in (0, 1). The context keeps
            ``int(H' * W' * (1 - ratio))`` positions, clamped to ``[1, H' * W' - 1]``.
    """

    ratio: float = 0.9

    def __post_init__(self) -> None:
        if not (0.0 < float(self.ratio) < 1.0):
            raise ValueError(f"{type(self).__name__}.ratio must lie in (0, 1), got {self.ratio!r}")


SHORT_RANGE = MultiBlockMaskConfig(num_blocks=8, spatial_scale=(0.15, 0.15))
"""The paper's short-range mask: 8 blocks of 15% of the frame, spanning all time."""
LONG_RANGE = MultiBlockMaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7))
"""The paper's long-range mask: 2 blocks of 70% of the frame, spanning all time."""
DEFAULT_MASKS = (SHORT_RANGE, LONG_RANGE)
"""The mask configs of every official V-JEPA / V-JEPA 2 pretraining recipe."""


def check_grid(grid: Grid) -> Grid:
    """Return ``grid`` as a tuple of three positive ints, or raise ``ValueError``."""
    try:
        t, h, w = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (T', H', W'), got {grid!r}") from None
    if min(t, h, w) < 1 or tuple(grid) != (t, h, w):
        raise ValueError(f"grid must be three positive integers (T', H', W'), got {grid!r}")
    return t, h, w


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + torch.rand(1, generator=generator).item() * (hi - lo)


def _block_size(cfg: MultiBlockMaskConfig, grid: Grid, generator: torch.Generator) -> tuple[int, int, int]:
    """One ``(t, h, w)`` block size for the whole batch (three uniforms from ``generator``)."""
    T, H, W = grid
    t = max(1, int(T * _uniform(*cfg.temporal_scale, generator)))
    n = int(H * W * _uniform(*cfg.spatial_scale, generator))
    ar = _uniform(*cfg.aspect_ratio, generator)
    h = round(math.sqrt(n * ar))
    w = round(math.sqrt(n / ar))
    # Clip to the grid, and to at least one patch so that tiny grids still get a block.
    return min(t, T), min(max(h, 1), H), min(max(w, 1), W)


def _context_maps(
    cfg: MultiBlockMaskConfig, grid: Grid, block: tuple[int, int, int], count: int, generator: torch.Generator
) -> Tensor:
    """Bool ``[count, T'*H'*W']``: True where a token is context (outside every block, within the time limit).

    Vectorised over samples: ``num_blocks`` block positions per sample (start in ``[0, T'-t]``, top in
    ``[0, H'-h]``, left in ``[0, W'-w]``, upper bounds inclusive so every step, row and column can be covered).
    """
    T, H, W = grid
    t, h, w = block
    nb = cfg.num_blocks
    starts = torch.randint(0, T - t + 1, (count, nb, 1), generator=generator)
    tops = torch.randint(0, H - h + 1, (count, nb, 1), generator=generator)
    lefts = torch.randint(0, W - w + 1, (count, nb, 1), generator=generator)
    at, ah, aw = torch.arange(T), torch.arange(H), torch.arange(W)
    in_t = (at >= starts) & (at < starts + t)  # [count, nb, T]
    in_h = (ah >= tops) & (ah < tops + h)
    in_w = (aw >= lefts) & (aw < lefts + w)
    covered = torch.zeros(count, T, H, W, dtype=torch.bool)
    for b in range(nb):  # union of the blocks, one block at a time to bound memory
        covered |= in_t[:, b, :, None, None] & in_h[:, b, None, :, None] & in_w[:, b, None, None, :]
    keep = ~covered
    max_context_duration = max(1, int(T * cfg.max_temporal_keep))
    if max_context_duration < T:
        keep[:, max_context_duration:] = False
    return keep.reshape(count, T * H * W)


def _sample_contexts(
    cfg: MultiBlockMaskConfig, grid: Grid, block: tuple[int, int, int], batch_size: int, generator: torch.Generator
) -> Tensor:
    """Bool ``[B, N]`` context maps, every row with ``1 <= Kc < N`` tokens."""
    keep = _context_maps(cfg, grid, block, batch_size, generator)
    for _ in range(MAX_RESAMPLES):
        empty = (~keep.any(1)).nonzero().squeeze(1)
        if empty.numel() == 0:
            return keep
        keep[empty] = _context_maps(cfg, grid, block, empty.numel(), generator)
    empty = (~keep.any(1)).nonzero().squeeze(1)
    if empty.numel():
        # Fallback (tiny grids): one context token, uniform over the time steps the context may use.
        T, H, W = grid
        max_context_duration = max(1, int(T * cfg.max_temporal_keep))
        tokens = torch.randint(0, max_context_duration * H * W, (empty.numel(),), generator=generator)
        keep[empty, tokens] = True
    return keep


def _equalize(members: Tensor, k: int, equalize: str, generator: torch.Generator) -> Tensor:
    """Keep ``k`` of the True positions of every row of ``members`` ``[B, N]``; return sorted ids ``[B, k]``."""
    b = members.shape[0]
    if equalize == "prefix":
        chosen = members & (members.cumsum(1) <= k)
    else:
        keys = torch.rand(members.shape, generator=generator)
        keys = torch.where(members, keys, torch.full_like(keys, -1.0))
        idx = keys.topk(k, dim=1).indices
        chosen = torch.zeros_like(members).scatter_(1, idx, True)
    # nonzero() walks rows in order, so each row's ids come out sorted.
    return chosen.nonzero()[:, 1].view(b, k)


def sample_multiblock(
    cfg: MultiBlockMaskConfig,
    grid: Grid,
    batch_size: int,
    generator: torch.Generator,
    equalize: str = "random",
) -> tuple[Tensor, Tensor]:
    """Sample multi-block 3D masks for a batch, as the official V-JEPA mask collator does.

    1. One block size ``(t, h, w)`` is drawn for the whole batch (see :class:`MultiBlockMaskConfig`).
    2. Per sample, ``num_blocks`` blocks are placed uniformly (start in ``[0, T'-t]``, top in
       ``[0, H'-h]``, left in ``[0, W'-w]``). Context = tokens outside every block and before
       ``max(1, int(T' * max_temporal_keep))``; target = all other tokens. Unlike the official code,
       placement uses ``generator`` too, so the whole function is reproducible.
    3. If the context of a sample is empty it is redrawn, at most :data:`MAX_RESAMPLES` times; then the
       sample keeps a single random context token (documented fallback, guarantees termination).
    4. Lengths are equalised across the batch: ``K_ctx`` = min context length (capped by ``max_keep``),
       ``K_tgt`` = min target length. ``equalize="random"`` keeps a uniformly random subset of each
       sample's ids; ``equalize="prefix"`` keeps the first K ids of the ascending list, as the official
       code does. **Official quirk, kept for reproduction:** because ids are in ``[t][h][w]`` order,
       "prefix" drops the *latest time steps* of both context and targets.
    5. With ``cfg.full_complement`` the target is the complement of the equalised context.

    Args:
        cfg: the mask config.
        grid: token grid ``(T', H', W')``; needs ``N = T'H'W' >= 2``.
        batch_size: ``B >= 1``.
        generator: the only source of randomness.
        equalize: ``"random"`` (default) or ``"prefix"`` (official).

    Returns:
        ``(context, target)``: ``LongTensor[B, K_ctx]`` and ``LongTensor[B, K_tgt]``; each row is sorted
        ascending, unique, in ``[0, N)``, and the two rows of a sample are disjoint. ``K_ctx, K_tgt >= 1``.
    """
    grid = check_grid(grid)
    n = grid[0] * grid[1] * grid[2]
    if n < 2:
        raise ValueError(f"multi-block masks need at least 2 tokens (a context and a target), got grid {grid}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if equalize not in EQUALIZE_MODES:
        raise ValueError(f"equalize must be one of {EQUALIZE_MODES}, got {equalize!r}")

    block = _block_size(cfg, grid, generator)
    ctx_map = _sample_contexts(cfg, grid, block, batch_size, generator)  # [B, N]; targets = complement, non-empty
    k_ctx = int(ctx_map.sum(1).min())
    if cfg.max_keep is not None:
        k_ctx = min(k_ctx, cfg.max_keep)
    context = _equalize(ctx_map, k_ctx, equalize, generator)
    if cfg.full_complement:
        kept = torch.zeros_like(ctx_map).scatter_(1, context, True)
        target = (~kept).nonzero()[:, 1].view(batch_size, n - k_ctx)
    else:
        tgt_map = ~ctx_map
        target = _equalize(tgt_map, int(tgt_map.sum(1).min()), equalize, generator)
    return context, target


def sample_tube(
    cfg: TubeMaskConfig, grid: Grid, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Sample random tube masks: per sample, a random spatial subset kept as context at every time step.

    The context keeps ``k = clamp(int(H'W' * (1 - ratio)), 1, H'W' - 1)`` spatial positions, so every
    sample has exactly ``k * T'`` context and ``(H'W' - k) * T'`` target tokens.

    Args:
        cfg: the tube config.
        grid: token grid ``(T', H', W')``; needs ``H'W' >= 2``.
        batch_size: ``B >= 1``.
        generator: the only source of randomness.

    Returns:
        ``(context, target)``: ``LongTensor[B, k*T']`` and ``LongTensor[B, (H'W'-k)*T']``, rows sorted ascending.
    """
    T, H, W = check_grid(grid)
    hw = H * W
    if hw < 2:
        raise ValueError(f"tube masks need at least 2 spatial positions, got grid {(T, H, W)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    k = min(max(int(hw * (1.0 - cfg.ratio)), 1), hw - 1)
    idx = torch.rand(batch_size, hw, generator=generator).topk(k, dim=1).indices  # k random positions per sample
    keep = torch.zeros(batch_size, hw, dtype=torch.bool).scatter_(1, idx, True)
    keep = keep.unsqueeze(1).expand(batch_size, T, hw).reshape(batch_size, T * hw)  # [B, T'*H'*W'] in [t][h][w] order
    # nonzero() walks rows in order, so each row's ids come out sorted.
    context = keep.nonzero()[:, 1].view(batch_size, k * T)
    target = (~keep).nonzero()[:, 1].view(batch_size, (hw - k) * T)
    return context, target
