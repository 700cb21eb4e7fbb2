import pytest
import torch

from videojepa.models.pos_embed import resize_pos_embed, sincos_3d
from videojepa.models.predictor import Predictor, PredictorConfig
from videojepa.models.registry import create_model, encoder_config, list_models
from videojepa.models.rope import build_rope, rope_axis_dim, token_coords


def test_token_order_is_t_h_w():
    """Patch embedding, token ids and RoPE coordinates agree on the [t][h][w] order."""
    enc = create_model("vit_test", num_frames=4, img_size=(8, 12), patch_size=4)
    x = torch.zeros(1, 3, 4, 8, 12)
    t, h, w = 1, 1, 2  # mark one tubelet
    x[:, :, 2 * t : 2 * t + 2, 4 * h : 4 * h + 4, 4 * w : 4 * w + 4] = 1.0
    with torch.no_grad():
        tok = enc.patch_embed(x)[0]
        base = enc.patch_embed(torch.zeros_like(x))[0]
    changed = ((tok - base).abs().sum(-1) > 0).nonzero().flatten().tolist()
    grid = (2, 2, 3)
    assert changed == [t * 6 + h * 3 + w]
    tt, hh, ww = token_coords(torch.tensor(changed), grid)
    assert (tt.item(), hh.item(), ww.item()) == (t, h, w)


@pytest.mark.parametrize("dim,widths", [(1024, 342), (1280, 428), (1408, 470), (384, 128)])
def test_uniform_power_widths(dim, widths):
    emb = sincos_3d(dim, (2, 3, 3), uniform_power=True)
    assert emb.shape == (18, dim)
    # the time block comes first: token 0 (t=h=w=0) has sin=0 then cos=1 in each axis block
    assert torch.all(emb[0, : widths // 2] == 0) and torch.all(emb[0, widths // 2 : widths] == 1)
    # tokens at the same t and h but different w differ only in the w block
    d = (emb[0] - emb[1]).abs()
    assert d[: 2 * widths].max() == 0 and d[2 * widths :].max() > 0


def test_sincos_default_split():
    emb = sincos_3d(64, (2, 2, 2), uniform_power=False)
    # t block is 32 wide: tokens 0 and 4 (t 0 vs 1) differ there, not in h/w blocks
    d = (emb[0] - emb[4]).abs()
    assert d[:32].max() > 0 and d[32:].max() == 0


def test_pos_embed_interpolation_rules():
    pe = sincos_3d(24, (4, 4, 4), True)[None]
    assert resize_pos_embed(pe, (4, 4, 4), (4, 4, 4)) is pe
    assert torch.equal(resize_pos_embed(pe, (4, 4, 4), (2, 4, 4)), pe[:, :32])  # earliest times kept
    out = resize_pos_embed(pe, (4, 4, 4), (4, 6, 2))
    assert out.shape == (1, 48, 24)


def test_rope_axis_dims_from_reference_table():
    assert [rope_axis_dim(h) for h in (64, 80, 88, 32)] == [20, 26, 28, 10]


def test_rope_legacy_tiling_quirk_and_interleaved_rotation():
    """Legacy: pair members use different angles (not a rotation). Interleaved: a true rotation (norm kept)."""
    from videojepa.models.rope import apply_rope

    ids = torch.arange(16)
    x = torch.randn(1, 1, 16, 12)
    for variant, keeps_pair_norm in (("legacy", False), ("interleaved", True)):
        tables = build_rope(ids, (1, 4, 4), 12, variant)
        y = apply_rope(x, tables)
        pn = lambda z: z[..., :12].unflatten(-1, (-1, 2)).norm(dim=-1)
        assert torch.allclose(pn(x), pn(y), atol=1e-5) == keeps_pair_norm
        # position 0 is the identity in both
        assert torch.allclose(y[..., 0, :], x[..., 0, :])


@pytest.mark.parametrize("variant", ["legacy", "interleaved"])
@pytest.mark.parametrize("head_dim", [32, 64, 30, 33])
def test_fused_rope_matches_the_per_axis_rotation(variant, head_dim):
    """The one-pass rotation (q and k stacked, full-width tables) gives the per-axis form's floats to one fused
    multiply-add's rounding, forward and backward, for shared ids [N] and per-sample ids [B, N], with an unrotated
    rest (odd or even) or none; and `rope_qkv` rotates q and k of a permuted qkv view, passes v through untouched
    and sends the gradient back in qkv's own layout."""
    from videojepa.models.rope import FusedRope, _axis_table, apply_rope, rope_qkv

    g = torch.Generator().manual_seed(head_dim)
    grid = (4, 6, 5)
    d = rope_axis_dim(head_dim)
    close = dict(rtol=0, atol=1e-6)
    for ids, lead in ((torch.randperm(120, generator=g)[:70], ()),
                      (torch.stack([torch.randperm(120, generator=g)[:70] for _ in range(3)]), (3,))):
        fused = build_rope(ids, grid, head_dim, variant)
        assert isinstance(fused, FusedRope) and fused.cos.shape[-1] == head_dim
        per_ids = ids[:, None, :] if ids.ndim == 2 else ids
        per_axis = tuple(_axis_table(p, d, variant) for p in token_coords(per_ids, grid))
        x = torch.randn(2, *(lead or (3,)), 4, 70, head_dim, generator=g, requires_grad=True)
        a = apply_rope(x, fused)
        b = apply_rope(x, per_axis)
        torch.testing.assert_close(a, b, **close)
        w = torch.randn(a.shape, generator=g)
        ga, = torch.autograd.grad((a * w).sum(), x)
        gb, = torch.autograd.grad((b * w).sum(), x)
        torch.testing.assert_close(ga, gb, **close)

        heads, bsz = 4, 3
        lin = torch.randn(bsz, 70, 3 * heads * head_dim, generator=g, requires_grad=True)
        qkv = lin.reshape(bsz, 70, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = rope_qkv(qkv, fused)
        qr, kr = apply_rope(qkv[:2], per_axis).unbind(0)
        torch.testing.assert_close(q, qr, **close)
        torch.testing.assert_close(k, kr, **close)
        assert torch.equal(v, qkv[2])
        ws = [torch.randn(q.shape, generator=g) for _ in range(3)]
        gl, = torch.autograd.grad(sum((o * w_).sum() for o, w_ in zip((q, k, v), ws)), lin)
        glr, = torch.autograd.grad(sum((o * w_).sum() for o, w_ in zip((qr, kr, qkv[2]), ws)), lin)
        torch.testing.assert_close(gl, glr, **close)


def test_fused_rope_in_bfloat16_rotates_in_float32():
    """A bf16 qkv (autocast) is rotated in float32 and returned, with its gradient, in bf16."""
    from videojepa.models.rope import apply_rope, rope_qkv

    g = torch.Generator().manual_seed(0)
    tables = build_rope(torch.arange(40), (2, 4, 5), 32)
    lin = torch.randn(2, 40, 3 * 64, generator=g).to(torch.bfloat16).requires_grad_(True)
    qkv = lin.reshape(2, 40, 3, 2, 32).permute(2, 0, 3, 1, 4)
    q, k, v = rope_qkv(qkv, tables)
    assert q.dtype == k.dtype == v.dtype == torch.bfloat16
    ref = apply_rope(qkv[:2].float(), tables)
    assert torch.equal(q, ref[0].to(torch.bfloat16)) and torch.equal(k, ref[1].to(torch.bfloat16))
    (q.float().sum() + 2 * k.float().sum()).backward()
    assert lin.grad.dtype == torch.bfloat16 and lin.grad.isfinite().all()
    assert lin.grad.reshape(2, 40, 3, 64)[:, :, 2].abs().max() == 0  # v unused


@pytest.mark.parametrize("pos", ["rope", "sincos"])
def test_any_clip_size_and_images(pos):
    enc = create_model("vit_test", pos_embed=pos)  # built for 4 x 16 x 16
    for shape, n in [((2, 3, 4, 16, 16), 2 * 4 * 4), ((2, 3, 8, 16, 24), 4 * 4 * 6), ((2, 3, 16, 16), 4 * 4),
                     ((2, 3, 1, 16, 16), 16)]:
        out = enc(torch.randn(*shape))
        assert out.shape == (2, n, 32)
    with pytest.raises(ValueError, match="not divisible"):
        enc(torch.randn(1, 3, 4, 15, 16))
    with pytest.raises(ValueError, match="channels"):
        enc(torch.randn(1, 4, 4, 16, 16))


def test_image_equals_two_frame_static_clip():
    enc = create_model("vit_test").eval()
    img = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(enc(img), enc(img[:, :, None].repeat(1, 1, 2, 1, 1)))


@pytest.mark.parametrize("pos", ["rope", "sincos"])
def test_masked_forward_is_gather_before_blocks(pos):
    enc = create_model("vit_test", pos_embed=pos, depth=2).eval()
    x = torch.randn(2, 3, 4, 16, 16)
    ids = torch.tensor([[0, 3, 5, 31], [1, 2, 20, 30]])
    with torch.no_grad():
        out = enc(x, masks=ids)
        twice = enc(x, masks=[ids, ids])
    assert out.shape == (2, 4, 32) and twice.shape == (4, 4, 32)
    assert torch.allclose(twice[:2], out) and torch.allclose(twice[2:], out)
    # a single visible token sees only itself: equals running the model on that token alone
    with torch.no_grad():
        one = enc(x, masks=ids[:, :1])
        full_first = enc(x, masks=torch.tensor([[0], [1]]))
    assert torch.allclose(one, full_first)


def test_out_layers_and_drop_path_and_checkpointing():
    enc = create_model("vit_test", depth=3, drop_path_rate=0.2, activation_checkpointing=True)
    x = torch.randn(2, 3, 4, 16, 16)
    enc.eval()
    with torch.no_grad():
        outs = enc(x, out_layers=[0, 2])
        last = enc(x)
    assert len(outs) == 2 and torch.allclose(outs[1], last)
    enc.train()
    y = enc(x)
    y.sum().backward()
    assert enc.blocks[0].attn.qkv.weight.grad is not None
    with pytest.raises(ValueError, match="out_layers"):
        enc.eval()(x, out_layers=[5])


def test_registry():
    assert {"vit_large", "vit_huge", "vit_giant", "vit_tiny", "vit_small", "vit_base", "vit_nano_cpu"} <= set(list_models())
    g = encoder_config("vit_giant")
    assert (g.embed_dim, g.depth, g.num_heads, g.head_dim) == (1408, 40, 22, 64)
    assert int(g.embed_dim * g.mlp_ratio) == 6144
    with pytest.raises(ValueError, match="unknown model 'vit_lage'"):
        create_model("vit_lage")
    with pytest.raises(ValueError, match="unknown encoder config key"):
        create_model("vit_test", embed_dims=3)


def test_vit_large_parameter_count():
    """ViT-L/16 with RoPE has ~303.9M parameters (REFERENCE §1.6); built on the meta device, no memory."""
    with torch.device("meta"):
        enc = create_model("vit_large", img_size=256)
        n = sum(p.numel() for p in enc.parameters())
        pred = Predictor(PredictorConfig(embed_dim=384, depth=12, num_heads=12, num_mask_tokens=10), 1024, (8, 16, 16))
        npred = sum(p.numel() for p in pred.parameters())
    assert abs(n / 1e6 - 303.9) < 0.15
    assert 22.0 < npred / 1e6 < 22.5


def test_predictor_shapes_mask_tokens_and_sorting():
    grid = (2, 4, 4)
    for pos in ("rope", "sincos"):
        p1 = Predictor(PredictorConfig(embed_dim=16, depth=2, num_heads=2, num_mask_tokens=3, sort_by_position=True,
                                       zero_init_mask_tokens=False, pos_embed=pos), 32, grid).eval()
        p2 = Predictor(p1.cfg.__class__(**{**p1.cfg.to_dict(), "sort_by_position": False}), 32, grid).eval()
        p2.load_state_dict(p1.state_dict())
        ctx = torch.randn(2, 5, 32)
        cid = torch.tensor([[0, 4, 9, 20, 31], [2, 3, 10, 11, 12]])
        tid = torch.tensor([[1, 5, 30], [0, 31, 13]])
        with torch.no_grad():
            a, b = p1(ctx, cid, tid, mask_index=4), p2(ctx, cid, tid, mask_index=4)
            c = p1(ctx, cid, tid, mask_index=0)
        assert a.shape == (2, 3, 32)
        assert torch.allclose(a, b, atol=1e-5)  # sorting changes rounding only
        assert not torch.allclose(a, c)  # 4 % 3 = 1 selects another token than 0
    zero = Predictor(PredictorConfig(embed_dim=16, depth=1, num_heads=2), 32, grid)
    assert all(torch.all(t == 0) for t in zero.mask_tokens)
