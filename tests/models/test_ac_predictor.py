"""The V-JEPA 2-AC action-conditioned predictor: mask, causality, RoPE, losses, rollout, strict loading."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import videojepa
from videojepa.interop import official
from videojepa.interop.weights import WeightsError, read_weights, write_videojepa
from videojepa.models.ac_predictor import (ACPredictor, ACPredictorConfig, ac_losses, ac_rope_tables,
                                           block_causal_mask, encode_frames, rollout)
from videojepa.models.rope import apply_rope
from videojepa.models.vit import EncoderConfig, VisionTransformer

DE = 24  # encoder width
GRID = (2, 3)  # H' x W' tokens per frame (non-square on purpose)
N = GRID[0] * GRID[1]
TINY = ACPredictorConfig(embed_dim=32, depth=2, num_heads=4)  # head_dim 8: 2 rotated dims per axis


def randomize(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module.eval()


def inputs(b=2, t=4, seed=0, cfg=TINY):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, N, DE, generator=g), torch.randn(b, t, cfg.action_dim, generator=g),
            torch.randn(b, t, cfg.state_dim, generator=g), torch.randn(b, t, cfg.extrinsics_dim, generator=g))


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_block_causal_mask_pattern():
    m = block_causal_mask(3, 4)
    assert m.shape == (12, 12) and m.dtype == torch.bool
    for i in range(12):
        for j in range(12):
            assert bool(m[i, j]) == (j // 4 <= i // 4), (i, j)
    assert m[:4, :4].all() and not m[:4, 4:].any() and m[8:].all()  # a frame sees all of itself, nothing later


def test_config_roundtrip_and_validation():
    cfg = ACPredictorConfig(embed_dim=64, depth=3, num_heads=8, use_extrinsics=True)
    assert ACPredictorConfig.from_dict(cfg.to_dict()) == cfg and cfg.cond_tokens == 3
    assert ACPredictorConfig().to_dict()["embed_dim"] == 1024  # defaults: the released predictor
    with pytest.raises(ValueError, match="unknown ac_predictor config key"):
        ACPredictorConfig.from_dict({**cfg.to_dict(), "num_mask_tokens": 2})
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        ACPredictorConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="rope_variant"):
        ACPredictorConfig(rope_variant="fixed")


def test_shapes_layouts_and_errors():
    pred = randomize(ACPredictor(TINY, DE, GRID), 1)
    z, a, s, _ = inputs()
    with torch.no_grad():
        out4 = pred(z, a, s)
        out3 = pred(z.flatten(1, 2), a, s)
    assert out4.shape == z.shape and out3.shape == (2, 4 * N, DE)
    assert torch.allclose(out3, out4.flatten(1, 2), atol=1e-6)
    with pytest.raises(ValueError, match=r"actions has shape \(2, 3, 7\), expected \(2, 4, 7\)"):
        pred(z, a[:, :3], s)
    with pytest.raises(ValueError, match=r"states has shape \(2, 4, 5\), expected \(2, 4, 7\)"):
        pred(z, a, s[..., :5])
    with pytest.raises(ValueError, match=r"z has shape \(2, 4, 5, 24\), expected \[B, T, 6, 24\]"):
        pred(z[:, :, :5], a, s)
    with pytest.raises(ValueError, match=r"z has shape \(2, 23, 24\), expected \[B, T\*6, 24\]"):
        pred(z.flatten(1, 2)[:, :23], a, s)
    ext = ACPredictor(ACPredictorConfig(embed_dim=32, depth=1, num_heads=4, use_extrinsics=True), DE, GRID)
    with pytest.raises(ValueError, match="extrinsics is required"):
        ext(z, a, s)


@pytest.mark.parametrize("use_extrinsics", [False, True])
def test_frame_t_output_ignores_later_frames(use_extrinsics):
    cfg = ACPredictorConfig(embed_dim=32, depth=2, num_heads=4, use_extrinsics=use_extrinsics)
    pred = randomize(ACPredictor(cfg, DE, GRID), 2)
    z, a, s, e = inputs(cfg=cfg)
    z2, a2, s2, e2 = (x.clone() for x in (z, a, s, e))
    z2[:, 2:] += 1.0  # frames 2 and 3: features, action, state, extrinsics all changed
    a2[:, 2:] += 1.0
    s2[:, 2:] -= 1.0
    e2[:, 2:] += 0.5
    with torch.no_grad():
        y, y2 = pred(z, a, s, e), pred(z2, a2, s2, e2)
        y3 = pred(z, a, s2, e)  # only the state of frame 2 changed
    assert torch.allclose(y[:, :2], y2[:, :2], atol=1e-6, rtol=0)
    assert (y[:, 2:] - y2[:, 2:]).abs().amax() > 1e-2  # not vacuous
    assert torch.allclose(y[:, :2], y3[:, :2], atol=1e-6, rtol=0) and (y[:, 2] - y3[:, 2]).abs().amax() > 1e-3
    # the conditioning reaches frame t: changing only a_1 changes output frame 1
    a4 = a.clone()
    a4[:, 1] += 1.0
    with torch.no_grad():
        y4 = pred(z, a4, s, e)
    assert torch.allclose(y[:, 0], y4[:, 0], atol=1e-6, rtol=0) and (y[:, 1] - y4[:, 1]).abs().amax() > 1e-3


def test_rope_rotates_conditioning_tokens_by_frame_only():
    """Hand formula (legacy tiling, d = 2 * ((hd // 3) // 2) dims per axis, theta_j = pos * 10000^(-(j mod d/2)/(d/2))):
    out[2i] = x[2i] cos th_{2i} - x[2i+1] sin th_{2i}, out[2i+1] = x[2i+1] cos th_{2i+1} + x[2i] sin th_{2i+1}.
    A conditioning token of frame t: temporal dims rotated by t, every other dim unchanged (the reference rotates
    only ``q[..., :d]`` of action/state tokens with positions ``arange(T)``)."""
    t_n, k, grid, hd = 3, 2, (2, 2), 12
    d = 2 * ((hd // 3) // 2)  # 4
    per_frame = k + grid[0] * grid[1]
    x = torch.randn(1, 1, t_n * per_frame, hd, generator=torch.Generator().manual_seed(3))
    y = apply_rope(x, ac_rope_tables(t_n, grid, k, hd, "legacy"))

    def rotated(v, pos):
        out = v.clone().double()
        th = [pos * 10000 ** (-(j % (d // 2)) / (d / 2)) for j in range(d)]
        for i in range(d // 2):
            a, b = v[2 * i].double(), v[2 * i + 1].double()
            out[2 * i] = a * math.cos(th[2 * i]) - b * math.sin(th[2 * i])
            out[2 * i + 1] = b * math.cos(th[2 * i + 1]) + a * math.sin(th[2 * i + 1])
        return out

    for t in range(t_n):
        for c in range(k):
            i = t * per_frame + c
            v, w = x[0, 0, i], y[0, 0, i]
            assert torch.allclose(w[:d].double(), rotated(v[:d], t), atol=1e-6)
            assert torch.equal(w[d:], v[d:])  # height, width and rest: unrotated, bit for bit
        for p in range(grid[0] * grid[1]):  # patches: frame, row, column
            i = t * per_frame + k + p
            v, w = x[0, 0, i], y[0, 0, i]
            for axis, pos in enumerate((t, p // grid[1], p % grid[1])):
                sl = slice(axis * d, (axis + 1) * d)
                assert torch.allclose(w[sl].double(), rotated(v[sl], pos), atol=1e-6)
            assert torch.equal(w[3 * d :], v[3 * d :])


def test_non_square_grid_scales_columns_like_the_reference():
    """The reference snaps positions to a grid of H' (``grid_size = grid_height``): columns scale by H'/W'."""
    c, s = ac_rope_tables(1, (2, 4), 0, 12, "legacy")[2]  # width axis, 8 patches of one frame
    d = 4
    cols = torch.tensor([0, 1, 2, 3] * 2, dtype=torch.float32) * (2 / 4)
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32) / (d / 2))
    ang = (cols[:, None] * omega).repeat(1, 2)
    assert torch.equal(c, ang.cos()) and torch.equal(s, ang.sin())


class RollMock(nn.Module):
    """A perfect world model for rolled data: frame t+1 = frame t cyclically shifted by a_t[0] feature slots."""

    tokens_per_frame = N

    def forward(self, z, actions, states, extrinsics=None):
        assert z.ndim == 4 and actions.shape[1] == z.shape[1] == states.shape[1]
        return torch.stack([torch.roll(z[:, t], int(actions[0, t, 0]), dims=-1) for t in range(z.shape[1])], dim=1)


def _rolled_clip(t_n=4, b=2):
    z0 = F.layer_norm(torch.randn(b, N, DE, generator=torch.Generator().manual_seed(4)), (DE,))
    shifts = [1, 2, 3, 5][: t_n - 1]
    frames = [z0]
    for sh in shifts:
        frames.append(torch.roll(frames[-1], sh, dims=-1))
    actions = torch.zeros(b, t_n - 1, 7)
    actions[..., 0] = torch.tensor(shifts, dtype=torch.float32)
    return torch.stack(frames, dim=1), actions, torch.zeros(b, t_n, 7)


@pytest.mark.parametrize("auto_steps", [2, 3])
def test_rollout_starts_from_the_prediction_of_frame_1_pr25(auto_steps):
    """vjepa2 PR #25: the rollout's second input frame is ``z_tf[:, :tokens_per_frame]`` (output position 0 of the
    teacher-forced pass = the prediction of frame 1). Before the fix it was ``z_tf[:, tokens_per_frame:2*...]``,
    the prediction of frame 2, fed in as if it were frame 1 ("predict z_3 from z_1 and zhat_3 instead of zhat_2").
    With a perfect model the fixed rollout has zero loss; the old indexing does not."""
    z, actions, states = _rolled_clip()
    tf, ar = ac_losses(RollMock(), z, actions, states, auto_steps=auto_steps)
    assert tf.item() < 1e-4 and ar.item() < 1e-4
    # the pre-fix indexing, spelled out, is far off with the same perfect model
    mock = RollMock()
    z_tf = F.layer_norm(mock(z[:, :-1], actions, states[:, :-1]), (DE,))
    seq = torch.cat([z[:, :1], z_tf[:, 1:2]], dim=1)
    for m in range(1, auto_steps):
        seq = torch.cat([seq, F.layer_norm(mock(seq, actions[:, : m + 1], states[:, : m + 1]), (DE,))[:, -1:]], 1)
    assert (seq[:, 1:] - z[:, 1 : 1 + auto_steps]).abs().mean() > 0.1


def test_planning_rollout_with_a_perfect_model():
    z, actions, states = _rolled_clip()
    pred = rollout(RollMock(), z[:, :1], actions, states[:, :3])
    assert pred.shape == (2, 3, N, DE) and torch.allclose(pred, z[:, 1:], atol=1e-4)
    pred2 = rollout(RollMock(), z[:, :2], actions, states[:, :3])  # 2 context frames -> 2 new frames
    assert pred2.shape == (2, 2, N, DE) and torch.allclose(pred2, z[:, 2:], atol=1e-4)
    with pytest.raises(ValueError, match="states has shape"):
        rollout(RollMock(), z[:, :1], actions, states)


def test_ac_losses_shapes_gradients_and_agreement_with_rollout():
    pred = randomize(ACPredictor(TINY, DE, GRID), 5).train()
    enc = VisionTransformer(EncoderConfig(embed_dim=DE, depth=1, num_heads=4, patch_size=4, img_size=(8, 12),
                                          num_frames=2))
    frames = torch.randn(2, 3, 4, 8, 12, generator=torch.Generator().manual_seed(6))
    z = encode_frames(enc, frames)  # with grad on purpose: ac_losses must not let it through
    assert z.shape == (2, 4, N, DE) and z.requires_grad
    _, a, s, _ = inputs(t=4, seed=7)
    tf, ar = ac_losses(pred, z, a[:, :3], s, auto_steps=2)
    assert tf.shape == () and ar.shape == () and tf.item() > 0 and ar.item() > 0
    (tf + ar).backward()
    assert all(p.grad is None for p in enc.parameters())
    used = {n: p.grad for n, p in pred.named_parameters() if not n.startswith("extrinsics_encoder.")}
    assert all(g is not None and g.abs().sum() > 0 for g in used.values())
    assert pred.extrinsics_encoder.weight.grad is None  # exists for the official layout, unused without extrinsics
    # flat layout, loss_exp 2 and the rollout of planning agree with the trainer's rollout
    pred.eval()
    with torch.no_grad():
        tf2, ar2 = ac_losses(pred, z.flatten(1, 2), a[:, :3], s, auto_steps=3, loss_exp=2.0)
        zl = z.detach()
        z_ar = rollout(pred, zl[:, :1], a[:, :3], s[:, :3])
        z_tf = F.layer_norm(pred(zl[:, :3], a[:, :3], s[:, :3]), (DE,))
    assert torch.allclose(tf2, ((z_tf - zl[:, 1:]) ** 2).mean() / 2, atol=1e-6)
    assert torch.allclose(ar2, ((z_ar - zl[:, 1:]) ** 2).mean() / 2, atol=1e-5)
    with pytest.raises(ValueError, match=r"auto_steps must be in \[1, 3\]"):
        ac_losses(pred, z, a[:, :3], s, auto_steps=4)
    with pytest.raises(ValueError, match=r"actions has shape \(2, 4, 7\), expected \[2, 3, A\]"):
        ac_losses(pred, z, a, s)


def test_encode_frames_encodes_each_frame_alone():
    enc = randomize(VisionTransformer(EncoderConfig(embed_dim=DE, depth=2, num_heads=4, patch_size=4, img_size=8,
                                                    num_frames=2)), 8)
    frames = torch.randn(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        z = encode_frames(enc, frames)
        raw = encode_frames(enc, frames, normalize=False)
        for t in range(3):
            h = enc(frames[:, :, t : t + 1].repeat(1, 1, 2, 1, 1))  # one tubelet of two copies of frame t
            assert torch.allclose(raw[:, t], h, atol=1e-5)
            assert torch.allclose(z[:, t], F.layer_norm(h, (DE,)), atol=1e-5)
    assert z.shape == (2, 3, 4, DE)


# ------------------------------------------------------------------------------------- official checkpoints

ENC_CFG = EncoderConfig(embed_dim=DE, depth=1, num_heads=4, patch_size=4, tubelet_size=2, num_frames=2,
                        img_size=(8, 12), pos_embed="rope", rope_variant="legacy")
LOAD_CFG = {"encoder": {"num_heads": 4, "img_size": [8, 12]}, "predictor": {"num_heads": 4}}


def official_ac_file(pred: ACPredictor, seed: int = 10) -> dict:
    """The layout of vjepa2-ac-vitg.pt: encoders under ``module.backbone.``, predictor under ``module.``."""
    enc = randomize(VisionTransformer(ENC_CFG), seed)
    tgt = randomize(VisionTransformer(ENC_CFG), seed + 1)
    pre = lambda sd, p: {p + k: v.clone() for k, v in sd.items()}  # noqa: E731
    return {"encoder": pre(enc.state_dict(), "module.backbone."), "predictor": pre(pred.state_dict(), "module."),
            "target_encoder": pre(tgt.state_dict(), "module.backbone."), "opt": {"state": {}, "param_groups": []},
            "scaler": None, "epoch": 315, "loss": 0.5, "batch_size": 8, "world_size": 32, "lr": 0.0}


def test_official_ac_predictor_loads_strictly(tmp_path):
    ref = randomize(ACPredictor(TINY, DE, GRID), 11)
    path = tmp_path / "vjepa2-ac-tiny.pt"
    torch.save(official_ac_file(ref), path)
    loaded = videojepa.load(path, part="predictor", config=LOAD_CFG)
    assert isinstance(loaded, ACPredictor) and loaded.cfg == TINY and loaded.grid_hw == GRID and not loaded.training
    direct = ACPredictor(TINY, DE, GRID)
    raw = torch.load(path, weights_only=True)["predictor"]
    direct.load_state_dict({k.removeprefix("module."): v for k, v in raw.items()}, strict=True)
    z, a, s, _ = inputs(t=3, seed=12)
    with torch.no_grad():
        assert torch.equal(loaded(z, a, s), direct.eval()(z, a, s))
    assert loaded.pretrained_cfg["format"] == "vjepa2-ac" and loaded.pretrained_cfg["dropped"] == {}
    # our exchange format keeps it an action-conditioned predictor
    w = read_weights(path, config=LOAD_CFG)
    out = write_videojepa(w, tmp_path / "export", ["encoder", "predictor"])
    again = videojepa.load(out, part="predictor")
    with torch.no_grad():
        assert isinstance(again, ACPredictor) and torch.equal(again(z, a, s), direct(z, a, s))


def test_official_ac_predictor_with_extrinsics_needs_the_config(tmp_path):
    cfg = ACPredictorConfig(embed_dim=32, depth=1, num_heads=4, use_extrinsics=True)
    ref = randomize(ACPredictor(cfg, DE, GRID), 13)
    path = tmp_path / "ac-ext.pt"
    torch.save(official_ac_file(ref), path)
    z, a, s, e = inputs(t=2, seed=14, cfg=cfg)
    plain = videojepa.load(path, part="predictor", config=LOAD_CFG)  # the tensors cannot tell: released = off
    assert not plain.cfg.use_extrinsics
    given = {**LOAD_CFG, "predictor": {"num_heads": 4, "use_extrinsics": True}}
    with torch.no_grad():
        assert torch.equal(videojepa.load(path, part="predictor", config=given)(z, a, s, e), ref(z, a, s, e))


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_official_ac_predictor_key_problems_are_named(tmp_path, change):
    ck = official_ac_file(randomize(ACPredictor(TINY, DE, GRID), 15))
    if change == "missing":
        del ck["predictor"]["module.state_encoder.bias"]
        expect = r"missing \(1\): module\.state_encoder\.bias"
    else:
        ck["predictor"]["module.predictor_blocks.0.attn.q_norm.weight"] = torch.zeros(8)
        expect = r"unexpected \(1\): module\.predictor_blocks\.0\.attn\.q_norm\.weight"
    path = tmp_path / "broken.pt"
    torch.save(ck, path)
    with pytest.raises(WeightsError, match=expect):
        videojepa.load(path, part="predictor", config=LOAD_CFG)


def test_ac_config_is_read_from_shapes():
    """Released sizes need no config: width 1024 -> 16 heads (shape-only tensors, no memory)."""
    def t(*shape):
        return torch.zeros(()).expand(*shape)

    dp, de, hidden = 1024, 1408, 4096
    sd = {"predictor_embed.weight": t(dp, de), "action_encoder.weight": t(dp, 7), "state_encoder.weight": t(dp, 7),
          "extrinsics_encoder.weight": t(dp, 6), "predictor_blocks.0.mlp.fc1.weight": t(hidden, dp),
          "predictor_blocks.0.attn.qkv.bias": t(3 * dp)}
    sd.update({f"predictor_blocks.{i}.norm1.weight": t(dp) for i in range(24)})
    enc = EncoderConfig(embed_dim=1408, depth=40, num_heads=22, img_size=256, num_frames=64)
    fields = official.infer_ac_predictor(sd, {}, enc, {}, {}, "x.pt")
    cfg = ACPredictorConfig.from_dict(fields)
    assert cfg == ACPredictorConfig()  # the released predictor is the default
    sd["predictor_embed.weight"] = t(512, de)
    with pytest.raises(WeightsError, match="num_heads"):
        official.infer_ac_predictor(sd, {}, enc, {}, {}, "x.pt")
    with pytest.raises(WeightsError, match=r"predictor\.depth: config 12, weights 24"):
        official.infer_ac_predictor(sd, {}, enc, {"num_heads": 8, "depth": 12}, {}, "x.pt")
