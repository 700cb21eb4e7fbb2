"""Property and unit tests for videojepa.masks (all CPU, a few seconds in total)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from videojepa.masks import (
    DEFAULT_MASKS,
    LONG_RANGE,
    MAX_RESAMPLES,
    SHORT_RANGE,
    MaskCollator,
    MaskGenerator,
    MultiBlockMaskConfig,
    TubeMaskConfig,
    apply_masks,
    grid_size,
    sample_multiblock,
    sample_tube,
)
from videojepa.rng import torch_generator

VARIANTS = {
    "short": SHORT_RANGE,
    "long": LONG_RANGE,
    "short_t_half": dataclasses.replace(SHORT_RANGE, temporal_scale=(0.3, 0.7)),
    "keep_half": dataclasses.replace(SHORT_RANGE, max_temporal_keep=0.5),
    "full_complement": dataclasses.replace(LONG_RANGE, full_complement=True),
    "max_keep": dataclasses.replace(SHORT_RANGE, max_keep=5),
    "tube": TubeMaskConfig(0.9),
}
SMALL_GRIDS = [(1, 1, 2), (1, 2, 2), (2, 2, 2), (8, 1, 1), (4, 3, 7), (2, 1, 3)]


def _n(grid: tuple[int, int, int]) -> int:
    return grid[0] * grid[1] * grid[2]


def _check_pair(ctx: torch.Tensor, tgt: torch.Tensor, n: int, batch: int) -> None:
    """Shared invariants: shapes, dtype, range, sorted+unique rows, disjoint context/target."""
    assert ctx.dtype == torch.long and tgt.dtype == torch.long
    assert ctx.dim() == 2 and tgt.dim() == 2
    assert ctx.shape[0] == tgt.shape[0] == batch
    assert ctx.shape[1] >= 1 and tgt.shape[1] >= 1
    for c, t in zip(ctx, tgt):
        for ids in (c, t):
            assert int(ids.min()) >= 0 and int(ids.max()) < n
            assert bool((ids[1:] > ids[:-1]).all()), "rows must be strictly ascending (sorted, unique)"
        assert not set(c.tolist()) & set(t.tolist()), "context and target overlap"


def _sample(cfg, grid, batch, seed=0, equalize="random"):
    g = torch_generator(seed, "test")
    if isinstance(cfg, TubeMaskConfig):
        return sample_tube(cfg, grid, batch, g)
    return sample_multiblock(cfg, grid, batch, g, equalize=equalize)


# ----------------------------------------------------------------------------------------------- ops


def test_apply_masks_gathers_tokens_and_concatenates_lists():
    B, N, D = 2, 10, 3
    x = torch.arange(B * N * D, dtype=torch.float32).view(B, N, D)
    m1 = torch.tensor([[0, 3, 9], [1, 2, 4]])
    out = apply_masks(x, m1)
    assert out.shape == (B, 3, D)
    for b in range(B):
        assert torch.equal(out[b], x[b, m1[b]])
    m2 = torch.tensor([[5, 6, 7], [8, 0, 1]])
    both = apply_masks(x, [m1, m2])
    assert both.shape == (2 * B, 3, D)
    assert torch.equal(both[:B], out) and torch.equal(both[B:], apply_masks(x, m2))
    with pytest.raises(ValueError, match="empty"):
        apply_masks(x, [])
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        apply_masks(x, torch.tensor([[0, 1]]))


def test_grid_size():
    assert grid_size(16, 224, 224, 2, 16) == (8, 14, 14)
    assert grid_size(16, 256, 128, 2, 16) == (8, 16, 8)
    with pytest.raises(ValueError, match="num_frames=15"):
        grid_size(15, 224, 224, 2, 16)
    with pytest.raises(ValueError, match="height=220"):
        grid_size(16, 220, 224, 2, 16)
    with pytest.raises(ValueError, match="width=230"):
        grid_size(16, 224, 230, 2, 16)
    with pytest.raises(ValueError, match="patch"):
        grid_size(16, 224, 224, 2, 0)


# ------------------------------------------------------------------------------------ invariants


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("equalize", ["random", "prefix"])
def test_invariants_over_seeds_and_grids(name, equalize):
    cfg = VARIANTS[name]
    for grid in [(8, 14, 14), (4, 6, 6), (3, 5, 9)]:
        for seed in range(4):
            ctx, tgt = _sample(cfg, grid, 6, seed, equalize)
            _check_pair(ctx, tgt, _n(grid), 6)
            if getattr(cfg, "max_keep", None) is not None:
                assert ctx.shape[1] <= cfg.max_keep


@pytest.mark.parametrize("name", [k for k in VARIANTS if k != "max_keep"])
def test_single_sample_partitions_all_tokens(name):
    """With batch 1 nothing is lost to equalisation: context and target cover every token."""
    cfg = VARIANTS[name]
    for grid in [(8, 14, 14), (4, 3, 7)]:
        n = _n(grid)
        for seed in range(5):
            ctx, tgt = _sample(cfg, grid, 1, seed)
            assert sorted(ctx[0].tolist() + tgt[0].tolist()) == list(range(n))


def test_full_complement_partitions_every_sample():
    cfg = VARIANTS["full_complement"]
    grid = (4, 6, 6)
    for seed in range(4):
        ctx, tgt = _sample(cfg, grid, 8, seed)
        _check_pair(ctx, tgt, _n(grid), 8)
        assert ctx.shape[1] + tgt.shape[1] == _n(grid)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)).filter(lambda g: _n(g) >= 2),
    num_blocks=st.integers(1, 4),
    spatial=st.floats(0.01, 1.0),
    temporal=st.floats(0.01, 1.0),
    keep=st.floats(0.05, 1.0),
    full_complement=st.booleans(),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    equalize=st.sampled_from(["random", "prefix"]),
)
def test_invariants_property(grid, num_blocks, spatial, temporal, keep, full_complement, batch, seed, equalize):
    cfg = MultiBlockMaskConfig(
        num_blocks=num_blocks,
        spatial_scale=(spatial, spatial),
        temporal_scale=(temporal, temporal),
        max_temporal_keep=keep,
        full_complement=full_complement,
    )
    ctx, tgt = _sample(cfg, grid, batch, seed, equalize)
    _check_pair(ctx, tgt, _n(grid), batch)
    max_context_duration = max(1, int(grid[0] * keep))
    assert int(ctx.max()) < max_context_duration * grid[1] * grid[2]


# ------------------------------------------------------------------------------ coverage and shape


@pytest.mark.parametrize("cfg", [SHORT_RANGE, LONG_RANGE, TubeMaskConfig(0.75)], ids=["short", "long", "tube"])
def test_every_position_can_be_masked(cfg):
    """Edges and corners included (cf. I-JEPA's never-masked last row/column)."""
    grid = (4, 6, 6)
    n = _n(grid)
    gen = MaskGenerator([cfg], grid, seed=0)
    tgt_hits = torch.zeros(n, dtype=torch.long)
    ctx_hits = torch.zeros(n, dtype=torch.long)
    for step in range(150):
        ((ctx, tgt),) = gen.sample(step, 2)
        tgt_hits += torch.bincount(tgt.flatten(), minlength=n)
        ctx_hits += torch.bincount(ctx.flatten(), minlength=n)
    assert bool((tgt_hits > 0).all()), f"never-masked ids: {(tgt_hits == 0).nonzero().flatten().tolist()}"
    if cfg is not LONG_RANGE:
        # Two blocks of 70% always cover the centre of a 6x6 plane, so only the short-range and tube
        # masks are expected to leave every position visible sometimes.
        assert bool((ctx_hits > 0).all()), f"never-visible ids: {(ctx_hits == 0).nonzero().flatten().tolist()}"


def test_token_order_t_h_w_and_tubes_span_time():
    """temporal_scale (1, 1): the target is a set of spatial positions repeated at every step (id = t*HW + s)."""
    T, H, W = 4, 5, 7
    for seed in range(5):
        ctx, tgt = _sample(SHORT_RANGE, (T, H, W), 1, seed)
        ids = tgt[0]
        per_t = [set((ids[ids // (H * W) == t] % (H * W)).tolist()) for t in range(T)]
        assert all(s == per_t[0] for s in per_t) and per_t[0]


def test_block_extent_matches_config():
    """One block with temporal_scale 0.5 on T'=8 spans exactly 4 consecutive steps and one h x w rectangle."""
    T, H, W = 8, 10, 10
    cfg = MultiBlockMaskConfig(
        num_blocks=1, spatial_scale=(0.16, 0.16), temporal_scale=(0.5, 0.5), aspect_ratio=(1.0, 1.0)
    )
    for seed in range(10):
        _, tgt = _sample(cfg, (T, H, W), 1, seed)
        ids = tgt[0]
        t, h, w = ids // (H * W), (ids // W) % H, ids % W
        assert sorted(set(t.tolist())) == list(range(int(t.min()), int(t.min()) + 4))
        assert len(set(h.tolist())) == 4 and len(set(w.tolist())) == 4  # n = 16, ar = 1 -> 4 x 4
        assert ids.numel() == 4 * 4 * 4


# ----------------------------------------------------------------------------------- determinism


def test_same_inputs_same_masks_and_no_state():
    gen = MaskGenerator(DEFAULT_MASKS, (8, 14, 14), seed=3)
    a = gen.sample(7, 4, rank=1, world_size=2)
    gen.sample(8, 4, rank=1, world_size=2)  # no hidden state: other calls in between change nothing
    b = MaskGenerator(DEFAULT_MASKS, (8, 14, 14), seed=3).sample(7, 4, rank=1, world_size=2)
    c = gen.sample(7, 4, rank=1, world_size=2)
    for (ca, ta), (cb, tb), (cc, tc) in zip(a, b, c):
        assert torch.equal(ca, cb) and torch.equal(ta, tb)
        assert torch.equal(ca, cc) and torch.equal(ta, tc)


@pytest.mark.parametrize("change", ["step", "rank", "seed"])
def test_different_step_rank_or_seed_gives_different_masks(change):
    base = dict(seed=3, step=7, rank=1)
    other = dict(base, **{change: base[change] + 1})
    for cfg in (*DEFAULT_MASKS, TubeMaskConfig()):
        ma = MaskGenerator([cfg], (8, 14, 14), seed=base["seed"]).sample(base["step"], 4, rank=base["rank"], world_size=3)
        mb = MaskGenerator([cfg], (8, 14, 14), seed=other["seed"]).sample(other["step"], 4, rank=other["rank"], world_size=3)
        (ca, ta), (cb, tb) = ma[0], mb[0]
        assert ca.shape != cb.shape or not torch.equal(ca, cb)
        assert ta.shape != tb.shape or not torch.equal(ta, tb)


def test_mask_configs_draw_independent_streams():
    """The two default configs at the same step use different generators (config index in the key)."""
    gen = MaskGenerator([SHORT_RANGE, SHORT_RANGE], (8, 14, 14), seed=0)
    (c0, _), (c1, _) = gen.sample(0, 4)
    assert c0.shape != c1.shape or not torch.equal(c0, c1)


# ------------------------------------------------------------------------------------ tiny grids


@pytest.mark.parametrize("grid", SMALL_GRIDS)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_small_grids_terminate_with_valid_masks(grid, name):
    cfg = VARIANTS[name]
    if isinstance(cfg, TubeMaskConfig) and grid[1] * grid[2] < 2:
        with pytest.raises(ValueError, match="spatial positions"):
            _sample(cfg, grid, 3)
        return
    for seed in range(5):
        ctx, tgt = _sample(cfg, grid, 3, seed)
        _check_pair(ctx, tgt, _n(grid), 3)


def test_fallback_keeps_one_context_token_when_blocks_cover_everything():
    """On (8, 1, 1) every block covers the whole grid: after MAX_RESAMPLES redraws one token stays visible."""
    assert MAX_RESAMPLES >= 1
    grid = (8, 1, 1)
    seen = set()
    for seed in range(30):
        ctx, tgt = _sample(SHORT_RANGE, grid, 1, seed)
        assert ctx.shape == (1, 1) and tgt.shape == (1, 7)
        seen.add(int(ctx))
    assert len(seen) > 4  # the fallback token is drawn uniformly, not always the same one
    cfg = dataclasses.replace(SHORT_RANGE, max_temporal_keep=0.25)  # context limited to t < 2
    for seed in range(20):
        ctx, _ = _sample(cfg, grid, 2, seed)
        assert int(ctx.max()) < 2


def test_one_token_grid_raises_clear_error():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        _sample(SHORT_RANGE, (1, 1, 1), 2)
    with pytest.raises(ValueError, match="needs >= 2 tokens"):
        MaskGenerator([SHORT_RANGE], (1, 1, 1), seed=0)
    with pytest.raises(ValueError, match="spatial positions"):
        MaskGenerator([TubeMaskConfig()], (8, 1, 1), seed=0)


# --------------------------------------------------------------------------------------- statistics


def _kept_fractions(cfg, equalize="random", steps=20, batch=24, grid=(8, 14, 14)):
    gen = MaskGenerator([cfg], grid, seed=0, equalize=equalize)
    n = _n(grid)
    ctx_frac, tgt_frac = [], []
    for step in range(steps):
        ((ctx, tgt),) = gen.sample(step, batch)
        ctx_frac.append(ctx.shape[1] / n)
        tgt_frac.append(tgt.shape[1] / n)
    return sum(ctx_frac) / steps, sum(tgt_frac) / steps


def test_kept_ratios_match_reference_ranges():
    """Reference (official collator, 224 px / 16 f, batch 24): short 23.5% / 48.2%, long 6.9% / 70.2%."""
    ctx, tgt = _kept_fractions(SHORT_RANGE)
    assert 0.15 <= ctx <= 0.35 and 0.35 <= tgt <= 0.60, (ctx, tgt)
    ctx, tgt = _kept_fractions(LONG_RANGE)
    assert 0.03 <= ctx <= 0.12 and 0.60 <= tgt <= 0.80, (ctx, tgt)
    # The kept lengths do not depend on the equalisation mode (only which ids are kept does).
    assert _kept_fractions(SHORT_RANGE, "prefix", steps=3) == _kept_fractions(SHORT_RANGE, "random", steps=3)


def _target_tokens_per_step(equalize, steps=5, grid=(8, 14, 14)):
    gen = MaskGenerator([SHORT_RANGE], grid, seed=1, equalize=equalize)
    T, H, W = grid
    counts = torch.zeros(T)
    for step in range(steps):
        ((_, tgt),) = gen.sample(step, 24)
        counts += torch.bincount((tgt // (H * W)).flatten(), minlength=T).float()
    return counts / counts.sum()


def test_prefix_equalisation_reproduces_official_time_bias():
    prefix = _target_tokens_per_step("prefix")
    random = _target_tokens_per_step("random")
    assert prefix[-1] < random[-1]
    assert prefix[-1] < 0.5 * prefix[0]  # the official quirk: the last step loses most of its targets


def test_random_equalisation_is_uniform_over_time():
    frac = _target_tokens_per_step("random")
    assert float(frac.max() / frac.min()) < 1.1, frac


# ----------------------------------------------------------------------------------------- tubes


def test_tube_masks_exact_counts_and_identical_across_time():
    T, H, W = 4, 14, 14
    hw = H * W
    for ratio in (0.9, 0.5, 0.75):
        k = int(hw * (1.0 - ratio))
        for seed in range(3):
            ctx, tgt = _sample(TubeMaskConfig(ratio), (T, H, W), 5, seed)
            _check_pair(ctx, tgt, T * hw, 5)
            assert ctx.shape == (5, k * T) and tgt.shape == (5, (hw - k) * T)
            for ids, per_step in ((ctx, k), (tgt, hw - k)):
                grid_ids = ids.view(5, T, per_step)  # sorted rows: step t holds ids in [t*hw, (t+1)*hw)
                assert torch.equal(grid_ids // hw, torch.arange(T).view(1, T, 1).expand_as(grid_ids))
                spatial = grid_ids % hw
                assert torch.equal(spatial, spatial[:, :1].expand_as(spatial))
            assert len({tuple(r.tolist()) for r in ctx}) > 1  # samples differ


def test_tube_keeps_at_least_one_context_and_one_target():
    ctx, tgt = _sample(TubeMaskConfig(0.99), (2, 3, 3), 2)
    assert ctx.shape == (2, 2) and tgt.shape == (2, 16)
    ctx, tgt = _sample(TubeMaskConfig(0.01), (2, 1, 2), 2)
    assert ctx.shape == (2, 2) and tgt.shape == (2, 2)


# ------------------------------------------------------------------------------ max_temporal_keep


def test_max_temporal_keep_limits_context_in_time():
    T, H, W = 8, 6, 6
    cfg = dataclasses.replace(SHORT_RANGE, max_temporal_keep=0.5)  # context only in t < 4
    for seed in range(5):
        ctx, tgt = _sample(cfg, (T, H, W), 4, seed)
        assert int((ctx // (H * W)).max()) < 4
        ctx1, tgt1 = _sample(cfg, (T, H, W), 1, seed)
        assert set(range(4 * H * W, T * H * W)) <= set(tgt1[0].tolist())


# ------------------------------------------------------------------------------------- collator


def _items(step_of=lambda i: 5, label=True, b=3):
    return [
        {"clip": torch.randn(3, 4, 8, 8), "index": 10 + i, "step": step_of(i), **({"label": i % 2} if label else {})}
        for i in range(b)
    ]


def test_collator_output():
    gen = MaskGenerator(DEFAULT_MASKS, grid_size(4, 8, 8, 2, 4), seed=0)
    collate = MaskCollator(gen, rank=2, world_size=3)
    out = collate(_items())
    assert out["clips"].shape == (3, 3, 4, 8, 8)
    assert out["labels"].dtype == torch.long and out["labels"].tolist() == [0, 1, 0]
    assert out["indices"].tolist() == [10, 11, 12]
    assert out["step"] == 5
    assert len(out["masks"]) == len(DEFAULT_MASKS)
    for (ctx, tgt), (ec, et) in zip(out["masks"], gen.sample(5, 3, rank=2, world_size=3)):
        assert torch.equal(ctx, ec) and torch.equal(tgt, et)
        _check_pair(ctx, tgt, 2 * 2 * 2, 3)
    assert "labels" not in collate(_items(label=False))


def test_collator_in_dataloader():
    gen = MaskGenerator([SHORT_RANGE], (2, 2, 2), seed=0)
    items = _items(b=4)
    loader = torch.utils.data.DataLoader(items, batch_size=2, collate_fn=MaskCollator(gen))
    batches = list(loader)
    assert [b["indices"].tolist() for b in batches] == [[10, 11], [12, 13]]


def test_collator_rejects_mixed_steps():
    collate = MaskCollator(MaskGenerator(DEFAULT_MASKS, (2, 2, 2), seed=0))
    with pytest.raises(ValueError, match=r"step.*\[3, 4\]"):
        collate(_items(step_of=lambda i: 3 if i == 0 else 4))
    with pytest.raises(ValueError, match="'step'"):
        collate([{"clip": torch.zeros(3, 4, 8, 8), "index": 0}])


# --------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(num_blocks=0), "num_blocks"),
        (dict(spatial_scale=(0.0, 0.2)), "spatial_scale"),
        (dict(spatial_scale=(0.3, 0.2)), "spatial_scale"),
        (dict(spatial_scale=(0.3, 1.2)), "spatial_scale"),
        (dict(temporal_scale=(0.5, 1.5)), "temporal_scale"),
        (dict(aspect_ratio=(1.5, 0.75)), "aspect_ratio"),
        (dict(aspect_ratio=(-1.0, 0.75)), "aspect_ratio"),
        (dict(max_temporal_keep=0.0), "max_temporal_keep"),
        (dict(max_keep=0), "max_keep"),
        (dict(spatial_scale=0.15), "spatial_scale"),
    ],
)
def test_multiblock_config_validation_names_field(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        MultiBlockMaskConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_configs_constants_and_normalisation():
    assert SHORT_RANGE.num_blocks == 8 and SHORT_RANGE.spatial_scale == (0.15, 0.15)
    assert LONG_RANGE.num_blocks == 2 and LONG_RANGE.spatial_scale == (0.7, 0.7)
    for cfg in DEFAULT_MASKS:
        assert cfg.temporal_scale == (1.0, 1.0) and cfg.aspect_ratio == (0.75, 1.5)
    assert MultiBlockMaskConfig(spatial_scale=[0.1, 0.2]).spatial_scale == (0.1, 0.2)  # YAML lists
    for ratio in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            TubeMaskConfig(ratio)


def test_mask_generator_validation():
    with pytest.raises(ValueError, match="equalize"):
        MaskGenerator(DEFAULT_MASKS, (2, 2, 2), seed=0, equalize="first")
    with pytest.raises(TypeError, match=r"configs\[1\]"):
        MaskGenerator([SHORT_RANGE, {"num_blocks": 8}], (2, 2, 2), seed=0)
    with pytest.raises(ValueError, match="at least one"):
        MaskGenerator([], (2, 2, 2), seed=0)
    with pytest.raises(ValueError, match="grid"):
        MaskGenerator(DEFAULT_MASKS, (2, 0, 2), seed=0)


def test_masks_do_not_depend_on_world_size():
    """Rank r of a world of size W gets rows [rB, (r+1)B) of the single-process batch of W*B."""
    gen = MaskGenerator(DEFAULT_MASKS, (4, 6, 6), seed=11)
    whole = gen.sample(3, 6)
    for r in range(3):
        part = gen.sample(3, 2, rank=r, world_size=3)
        for (c, t), (wc, wt) in zip(part, whole):
            assert torch.equal(c, wc[2 * r : 2 * r + 2]) and torch.equal(t, wt[2 * r : 2 * r + 2])
    with pytest.raises(ValueError, match="rank 3"):
        gen.sample(3, 2, rank=3, world_size=3)


def test_collator_drops_rows_of_skipped_items():
    from videojepa.data.errors import SkippedSample

    gen = MaskGenerator(DEFAULT_MASKS, (2, 4, 4), seed=0)
    items = [{"clip": torch.zeros(3, 4, 16, 16), "index": i, "step": 5} for i in range(4)]
    items[1] = SkippedSample(index=1, path="/x/broken.mp4", reason="zero bytes", step=5)
    out = MaskCollator(gen)(items)
    assert out["clips"].shape[0] == 3 and [s.path for s in out["skipped"]] == ["/x/broken.mp4"]
    for (c, t), (fc, ft) in zip(out["masks"], gen.sample(5, 4)):
        assert torch.equal(c, fc[[0, 2, 3]]) and torch.equal(t, ft[[0, 2, 3]])
