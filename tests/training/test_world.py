"""World-model training on the shared engine: losses, frozen vs trained encoders, resume, strict loading."""
import numpy as np
import pytest
import torch

from videojepa.config import ConfigError
from videojepa.data.errors import DataError
from videojepa.data.trajectories import load_trajectories
from videojepa.envs.collect import collect
from videojepa.envs.two_rooms import TwoRoomsConfig
from videojepa.models.world import WorldModel
from videojepa.training.checkpoint import CheckpointError
from videojepa.training.world import (WorldTrainer, load_world, load_world_config, metric_loss, metric_step_loss, vc_terms,
                                      world_losses)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "data"
    collect(str(root), 40, 10, TwoRoomsConfig(layout="random"), seed=0, shard_size=20, progress=False)
    return root


def cfg(data, *ov):
    return load_world_config(None, [f"data.path={data}", "data.window=6", "data.batch_size=8", "train.steps=4",
                                    "train.log_every=1", "train.diag_every=2", "train.checkpoint_every=2",
                                    "data.val_episodes=8", "loss.rollout=3", "model.hidden=32", "model.dim=16",
                                    "model.idm_hidden=16", "model.probe_hidden=16", *ov])


def test_vc_terms_see_collapse():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(256, 8, generator=g) * 2
    collapsed = torch.zeros(256, 8) + 0.01 * torch.randn(256, 8, generator=g)
    correlated = torch.randn(256, 1, generator=g).repeat(1, 8)
    assert vc_terms(spread)[0] < 0.05 and vc_terms(collapsed)[0] > 0.9
    assert vc_terms(correlated)[1] > 50 * vc_terms(spread / 2)[1]
    assert vc_terms(correlated)[1] == pytest.approx(7 * vc_terms(correlated, cov_norm="pairs")[1].item(), rel=1e-5)


@pytest.mark.parametrize("encoder", ["conv", "pixels", "conv_map"])
def test_gradients_reach_what_trains(data, encoder):
    c = cfg(data, f"model.encoder={encoder}", *(["model.predictor=conv"] if encoder == "conv_map" else [])).model
    m = WorldModel(c)
    ds = load_trajectories(data)
    b = ds.sample(4, 6, np.random.default_rng(0))
    z = m.encode(torch.from_numpy(b["frames"]))
    loss, parts, _ = world_losses(m, z, torch.from_numpy(b["actions"]), torch.from_numpy(b["states"]),
                                  cfg(data).loss, 64.0)
    loss.backward()
    trained = {n.split(".")[0] for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    if encoder != "pixels":
        assert trained == {"encoder", "predictor", "idm", "probe"} and "loss_idm" in parts
    else:
        assert trained == {"predictor", "probe"} and "loss_std" not in parts  # no anti-collapse terms when frozen
    # the probe reads detached latents: its loss alone moves nothing else
    m.zero_grad()
    z2 = m.encode(torch.from_numpy(b["frames"]))
    torch.nn.functional.mse_loss(m.read_state(z2.detach()), torch.zeros(4, 6, 3 - 1)).backward()
    assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("probe"))


def test_latents_are_normalised_and_rollout_is_autoregressive(data):
    m = WorldModel(cfg(data, "model.encoder=pixels").model)
    z0 = m.encode(torch.zeros(2, 64, 64, 3, dtype=torch.uint8) + 100)
    a = torch.randn(2, 5, 2)
    r = m.rollout(z0, a)
    z = z0
    for t in range(5):
        z = m.step(z, a[:, t])
        assert torch.allclose(r[:, t], z)
    assert torch.allclose(r.mean(-1), torch.zeros(2, 5), atol=1e-5)
    assert torch.allclose(r.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3)


@pytest.mark.parametrize("encoder", ["conv", "pixels", "vit", "conv_map"])
def test_train_resume_and_load(data, tmp_path, encoder, one_thread):
    ov = [f"model.encoder={encoder}"] + (["model.predictor=conv", "model.channels=[8, 8, 8]"] if encoder == "conv_map" else [])
    if encoder == "vit":
        ov += ["model.vit_name=vit_nano_cpu", "model.vit_overrides={patch_size: 16, tubelet_size: 2, depth: 1}",
               "model.vit_pool=2"]
    c = cfg(data, *ov)
    full = WorldTrainer(c, tmp_path / "full", progress=False)
    s = full.fit()
    assert s["steps"] == 4 and np.isfinite(s["loss_last"]) and "probe_err_px" in s and "rollout_err_px" in s
    assert (tmp_path / "full" / "metrics.png").is_file()
    part = WorldTrainer(c, tmp_path / "part", progress=False)
    part.fit(until=2)
    again = WorldTrainer(c, tmp_path / "part", progress=False)
    assert again.step == 2
    again.fit()
    for (n, a), (_, b) in zip(full.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), n
    model, wc, meta = load_world(tmp_path / "full")
    assert wc == c and meta["step"] == 4
    for (n, a), (_, b) in zip(full.model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), n


def test_resume_refuses_another_model(data, tmp_path):
    WorldTrainer(cfg(data, "model.encoder=pixels"), tmp_path / "r", progress=False).fit(until=2)
    with pytest.raises(ValueError, match="model"):
        WorldTrainer(cfg(data, "model.encoder=pixels", "model.hidden=64"), tmp_path / "r", progress=False)


def test_config_errors(data):
    with pytest.raises(ConfigError, match="data.path is required"):
        load_world_config(None, [])
    with pytest.raises(ConfigError, match="model.encoder"):
        cfg(data, "model.encoder=resnet")
    with pytest.raises(ConfigError, match="unknown config section"):
        load_world_config(None, [f"data.path={data}", "planner.horizon=3"])
    with pytest.raises(ValueError, match="action"):
        WorldTrainer(cfg(data, "model.action_dim=7"), "/nonexistent/unused", progress=False)
    with pytest.raises(ConfigError, match="predictor=conv works on a grid"):
        cfg(data, "model.predictor=conv")  # the conv encoder's latent is one vector
    with pytest.raises(ConfigError, match="frozen encoder"):
        cfg(data, "model.encoder=conv_map", "model.predictor=ac")
    with pytest.raises(ValueError, match="grid of tokens"):
        cfg(data, "model.encoder=vit", "model.predictor=conv", "model.vit_pool=1")  # one token per frame


def test_vc_terms_per_token_on_a_grid_latent():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 4, 3, generator=g)
    z[:, 1, 2] = z[:, 1, 0] * 2  # one token's channels correlated; tokens 0 / 2 / 3 correlated with each other
    z[:, 2] = z[:, 0]
    z[:, 3] = -z[:, 0]
    std, cov = vc_terms(z.flatten(1), tokens=4)
    per_token = torch.stack([vc_terms(z[:, k])[1] for k in range(4)])
    assert cov == pytest.approx(per_token.mean().item(), rel=1e-5)  # cross-token covariances are not penalised
    assert std == pytest.approx(vc_terms(z.flatten(1))[0].item(), rel=1e-6)  # the hinge is on every dimension
    assert vc_terms(z.flatten(1))[1] > 2 * cov  # the full covariance sees the copied tokens


def test_conv_map_latent_and_conv_predictor_keep_the_geometry():
    """The map latent is token-major (cell (i, j)'s channels together) and the conv predictor is translation
    equivariant away from the border: a wrong reshape anywhere breaks both."""
    from videojepa.models.world import ConvMapEncoder, ConvPredictor, WorldModelConfig

    enc = ConvMapEncoder(WorldModelConfig(encoder="conv_map", predictor="conv", channels=(4, 4, 5)))
    assert enc.grid == (8, 8) and enc.tokens == 64 and enc.dim == 320
    x = torch.randn(2, 3, 64, 64)
    fmap = enc.net(x)  # [2, 5, 8, 8]
    assert torch.equal(enc(x).reshape(2, 8, 8, 5), fmap.permute(0, 2, 3, 1))
    torch.manual_seed(0)
    pred = ConvPredictor((12, 12), 5, 2, 8, 2)
    for p in pred.parameters():  # the last convolution starts at zero (a first step of "no change"): randomise
        torch.nn.init.normal_(p, std=0.3)
    z = torch.zeros(1, 12, 12, 5)
    z[0, 4:8, 4:7] = torch.randn(4, 3, 5)
    a = torch.tensor([[0.5, -1.0]])
    out = pred(z.flatten(1), a).reshape(12, 12, 5)
    shifted = pred(torch.roll(z, 1, dims=1).flatten(1), a).reshape(12, 12, 5)  # one row down
    # every cell whose 7x7 neighbourhood (three 3x3 convolutions) stays clear of the zero padding
    assert torch.allclose(shifted[4:9, 3:9], out[3:8, 3:9], atol=1e-5)
    assert not torch.allclose(shifted[3:8, 3:9], out[3:8, 3:9], atol=1e-3)
    fresh = ConvPredictor((12, 12), 5, 2, 8, 2)
    assert torch.equal(fresh(z.flatten(1), a), z.flatten(1))  # starts as the identity step


def test_renormalising_a_near_constant_cell_moves_it_and_renormalize_false_keeps_the_identity():
    """A map cell whose raw channels barely vary is layer-normed to less than unit variance; normalising the
    predictor's output again moves it (bench/RESULTS_planning.md: it made every conv-map step worse than "nothing
    moves"). With model.renormalize=false a fresh predictor's step is exactly the identity."""
    from videojepa.models.world import WorldModelConfig

    torch.manual_seed(0)
    kw = dict(encoder="conv_map", predictor="conv", channels=(4, 4, 8), hidden=8)
    raw = torch.randn(3, 64, 8)
    raw[:, :10] = 0.3 + 1e-3 * raw[:, :10]  # ten near-constant cells (raw variance ~1e-6, below the norm's eps)
    kw["renormalize"] = True
    on, off = WorldModel(WorldModelConfig(**kw)), WorldModel(WorldModelConfig(**{**kw, "renormalize": False}))
    z = on.normalize(raw.flatten(1))
    a = torch.randn(3, 2)
    assert (on.step(z, a) - z).abs().max() > 0.1  # re-normalised: moved, though the predictor adds nothing
    assert torch.equal(off.step(z, a), z)
    assert (on.step(z, a) - z).reshape(3, 64, 8)[:, 10:].abs().max() < 1e-4  # the well-spread cells are unchanged
    # the default follows the latent: off for conv_map, on elsewhere; an explicit value survives a round trip
    assert WorldModelConfig(encoder="conv_map", predictor="conv").renormalize is False
    assert WorldModelConfig().renormalize is True
    assert WorldModelConfig.from_dict(WorldModelConfig(**kw).to_dict()).renormalize is True


def test_load_world_rejects_other_checkpoints(tmp_path):
    from videojepa.training.checkpoint import save_checkpoint

    save_checkpoint({"format": "videojepa-run/1", "step": 1}, tmp_path, 1)
    with pytest.raises(ValueError, match="not a videojepa world-model checkpoint"):
        load_world(tmp_path / "step_00000001.pt")


def test_metric_loss_prefers_the_shortest_way():
    t = torch.arange(9, dtype=torch.float32)
    exact = torch.stack([t, torch.zeros(9)], -1)[None]  # |phi_i - phi_j| == |i - j| steps
    assert metric_loss(exact, 0.1).item() < 1e-10
    over, under = metric_loss(1.5 * exact, 0.1), metric_loss(0.5 * exact, 0.1)
    assert over.item() == pytest.approx(9 * under.item(), rel=1e-5)  # overestimates cost (1 - q) / q more
    assert metric_loss(1.5 * exact, 0.5).item() == pytest.approx(metric_loss(0.5 * exact, 0.5).item(), rel=1e-5)
    # between the same two places the data holds a detour (6 steps) and a direct way (2 steps): a low expectile
    # lands near the direct one, the mean (expectile 0.5) halfway
    for q, lo, hi in ((0.1, 2.0, 3.0), (0.5, 3.5, 4.5)):
        g = torch.Generator().manual_seed(0)
        p, r = torch.zeros(8, requires_grad=True), torch.randn(8, generator=g).requires_grad_(True)
        free = (0.1 * torch.randn(2, 5, 8, generator=g)).requires_grad_(True)  # the other frames of both windows
        opt = torch.optim.Adam([p, r, free], lr=0.02)
        for _ in range(1500):
            detour = torch.cat([p[None], free[0], r[None]])[None]  # P at frame 0, Q at frame 6
            direct = torch.cat([p[None], free[1, :1], r[None], free[1, 1:]])[None]  # P at 0, Q at 2
            loss = metric_loss(detour, q) + metric_loss(direct, q)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert lo < (p - r).norm().item() < hi, q


def test_metric_head_trains_resumes_and_plans(data, tmp_path, one_thread):
    with pytest.raises(ConfigError, match="loss.metric"):
        cfg(data, "model.metric_dim=8")
    with pytest.raises(ConfigError, match="loss.metric"):
        cfg(data, "loss.metric=1")
    with pytest.raises(ConfigError, match="metric_expectile"):
        cfg(data, "model.metric_dim=8", "loss.metric=1", "loss.metric_expectile=1.5")
    c = cfg(data, "model.metric_dim=8", "loss.metric=1", "model.encoder=conv")
    m = WorldModel(c.model)
    ds = load_trajectories(data)
    b = ds.sample(4, 6, np.random.default_rng(0))
    z = m.encode(torch.from_numpy(b["frames"]))
    loss, parts, _ = world_losses(m, z, torch.from_numpy(b["actions"]), torch.from_numpy(b["states"]), c.loss, 64.0)
    loss.backward()
    assert parts["loss_metric"] > 0 and m.metric[0].weight.grad.abs().sum() > 0
    assert m.encoder.fc.weight.grad.abs().sum() > 0
    # the rollout term trains the predictor so that the head reads imagined latents as the real ones
    c_ro = cfg(data, "model.metric_dim=8", "loss.metric=1", "model.encoder=conv", "loss.metric_rollout=1",
               "loss.teacher_forcing=0", "loss.std=0", "loss.cov=0", "loss.time=0", "loss.idm=0")
    m.zero_grad()
    z = m.encode(torch.from_numpy(b["frames"]))
    _, parts_ro, _ = world_losses(m, z, torch.from_numpy(b["actions"]), torch.from_numpy(b["states"]), c_ro.loss, 64.0)
    assert parts_ro["loss_metric_rollout"] > 0
    parts_ro["loss_metric_rollout"].backward()
    assert m.predictor.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.metric.parameters())  # the head is not bent to fit imagined latents
    assert all(p.grad is None for p in m.encoder.parameters())  # nor the encoder
    full = WorldTrainer(c, tmp_path / "full", progress=False)
    full.fit()
    part = WorldTrainer(c, tmp_path / "part", progress=False)
    part.fit(until=2)
    again = WorldTrainer(c, tmp_path / "part", progress=False)
    again.fit()
    for (n, x), (_, y) in zip(full.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(x, y), n
    model, _, _ = load_world(tmp_path / "full")
    assert model.parts[-1] == "metric" and torch.equal(model.metric[0].weight, full.model.metric[0].weight)
    z = model.encode(torch.from_numpy(b["frames"][:, :2]))
    d = model.distance(z[:, 0], z[:, 1], "metric")
    assert d.shape == (4,) and (d >= 0).all()
    assert torch.allclose(model.distance(z[:, 0], z[:, 0], "metric"), torch.zeros(4), atol=1e-5)
    with pytest.raises(ValueError, match="temporal-distance head"):
        WorldModel(cfg(data).model).distance(z[:, 0], z[:, 1], "metric")


def test_metric_frames_spread_over_the_episode(data, tmp_path, one_thread):
    ds = load_trajectories(data)
    eps = np.array([0, 3, 3, 7])
    steps, rows = ds.spread(eps, 5, np.random.default_rng(0))
    assert steps.shape == rows.shape == (4, 5)
    assert (np.diff(steps, axis=1) > 0).all() and steps.min() >= 0 and (steps < ds.lengths[eps][:, None]).all()
    assert np.array_equal(ds.all_frames()[rows[1]], ds.episodes[3].frames[steps[1]])
    assert steps.max() - steps.min() > 5  # not a window: spread over the 10-frame episodes
    with pytest.raises(DataError, match="fewer than the 11"):
        ds.spread(eps, 11, np.random.default_rng(0))
    # the term on frames at given steps: consecutive steps give the window's loss exactly
    phi = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(0))
    assert metric_loss(phi, 0.1, torch.arange(6).expand(3, -1)).item() == pytest.approx(metric_loss(phi, 0.1).item(), rel=1e-6)
    t = torch.tensor([[0, 2, 5, 9]])
    exact = torch.stack([t[0].float(), torch.zeros(4)], -1)[None]  # distances equal to the steps between them
    assert metric_loss(exact, 0.1, t).item() < 1e-10 and metric_loss(exact, 0.1).item() > 0.1
    with pytest.raises(ConfigError, match="data.metric_frames"):
        cfg(data, "data.metric_frames=4")  # no temporal-distance term to feed
    with pytest.raises(ConfigError, match="data.metric_frames"):
        cfg(data, "data.metric_frames=1", "model.metric_dim=8", "loss.metric=1")
    c = cfg(data, "model.metric_dim=8", "loss.metric=1", "model.encoder=conv", "data.metric_frames=8")
    tr = WorldTrainer(c, tmp_path / "spread", progress=False)
    b = next(tr._loader())
    assert b["metric_clips"].shape[:2] == (8, 8) and b["metric_times"].shape == (8, 8)
    plain = WorldTrainer(cfg(data, "model.metric_dim=8", "loss.metric=1", "model.encoder=conv"), tmp_path / "plain",
                         progress=False)
    pb = next(plain._loader())
    assert torch.equal(pb["clips"], b["clips"]) and "metric_clips" not in pb  # the windows drawn are the same
    tr.fit()
    rows = (tmp_path / "spread" / "metrics.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[rows[0].split(",").index("loss_metric")]) > 0
    assert np.isfinite(tr.evaluate_rollout()["val_metric"])  # validated on the spread frames of held-out episodes
    # the window's own pairs beside the spread frames: their own loss part, the window's loss exactly
    with pytest.raises(ConfigError, match="loss.metric_local"):
        cfg(data, "model.metric_dim=8", "loss.metric=1", "loss.metric_local=1")  # no spread frames
    c_local = cfg(data, "model.metric_dim=8", "loss.metric=1", "model.encoder=conv", "data.metric_frames=8",
                  "loss.metric_local=0.5")
    m = WorldModel(c_local.model)
    z, zm = m.encode(b["clips"]), m.encode(b["metric_clips"])
    a, s = b["actions"], b["states"]
    _, parts, _ = world_losses(m, z, a, s, c_local.loss, 64.0, metric=(zm, b["metric_times"]))
    assert parts["loss_metric_local"].item() == pytest.approx(metric_loss(m.metric(z), 0.1).item(), rel=1e-6)
    assert parts["loss_metric"].item() == pytest.approx(metric_loss(m.metric(zm), 0.1, b["metric_times"]).item(), rel=1e-6)
    # the step hinge: consecutive distances within one step cost nothing, the excess costs its square (in units)
    assert metric_step_loss(torch.tensor([[[0.0], [0.5], [1.5], [1.0]]]), 8).item() == 0.0
    jump = torch.tensor([[[0.0], [3.0], [3.0]]])  # 3 steps' distance between neighbours: excess 2, none, over 8
    assert metric_step_loss(jump, 8).item() == pytest.approx(((2 / 8) ** 2 + 0) / 2)
    c_step = cfg(data, "model.metric_dim=8", "loss.metric=1", "model.encoder=conv", "data.metric_frames=8",
                 "loss.metric_step=2")
    _, parts, _ = world_losses(m, z, a, s, c_step.loss, 64.0, metric=(zm, b["metric_times"]))
    assert parts["loss_metric_step"].item() == pytest.approx(metric_step_loss(m.metric(z), 7).item(), rel=1e-6)
    with pytest.raises(ConfigError, match="loss.metric_step"):
        cfg(data, "model.metric_dim=8", "loss.metric=1", "loss.metric_step=-1")


def test_stay_term_trains_only_the_predictor_to_stand_still(data):
    with pytest.raises(ConfigError, match="loss.stay"):
        cfg(data, "loss.stay=-1")
    with pytest.raises(ConfigError, match="'ac' predictor"):
        cfg(data, "loss.stay=1", "model.predictor=ac", "model.encoder=pixels")
    c = cfg(data, "model.encoder=conv", "loss.stay=1", "loss.std=0",
            "loss.cov=0", "loss.time=0", "loss.idm=0")
    m = WorldModel(c.model)
    ds = load_trajectories(data)
    b = ds.sample(4, 6, np.random.default_rng(0))
    frames, actions = torch.from_numpy(b["frames"]), torch.from_numpy(b["actions"])
    z = m.encode(frames)
    _, parts, _ = world_losses(m, z, actions, None, c.loss, 64.0)
    parts["loss_stay"].backward()
    assert m.predictor.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.encoder.parameters())  # the encoder is not bent to fit it
    # a few steps of it alone: the predictor learns that a zero action leaves the latent where it is
    opt = torch.optim.Adam(m.predictor.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        opt.zero_grad()
        _, parts, _ = world_losses(m, z.detach(), actions, None, c.loss, 64.0)
        parts["loss_stay"].backward()
        opt.step()
        first = parts["loss_stay"].item() if first is None else first
    assert parts["loss_stay"].item() < 0.2 * first


def test_rollouts_from_several_starts_and_the_blocked_weight():
    from videojepa.training.world import _dist, blocked_moves, rollout_starts

    assert rollout_starts(97, 8, 12) == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88]
    assert rollout_starts(97, 8, 1) == [0] and rollout_starts(9, 8, 4) == [0] and rollout_starts(11, 8, 5) == [0, 1, 2]
    states = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    actions = torch.tensor([[[1.0, 0.0], [1.5, 0.0], [0.1, 0.0]]])  # moved; pushed and stopped; barely asked
    assert blocked_moves(actions, states).tolist() == [[False, True, False]]
    assert blocked_moves(actions, None) is None
    a, b = torch.zeros(1, 3, 2), torch.tensor([[[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]])
    assert _dist(a, b, "mse", torch.tensor([[1.0, 3.0, 1.0]])).item() == pytest.approx((1 + 3 * 4) / 5)


def test_world_losses_with_several_rollout_starts_average_the_single_start_losses(data):
    import dataclasses

    c = cfg(data, "model.encoder=conv", "loss.rollout=2")
    torch.manual_seed(0)
    m = WorldModel(c.model)
    ds = load_trajectories(data)
    bt = ds.sample(3, 6, np.random.default_rng(0))
    z = m.encode(torch.from_numpy(bt["frames"])).detach()
    acts, st = torch.from_numpy(bt["actions"]), torch.from_numpy(bt["states"])
    lc = dataclasses.replace(c.loss, rollout_starts=4)  # window 6, rollout 2: starts 0..3
    _, parts, _ = world_losses(m, z, acts, st, lc, 64.0)
    single = [world_losses(m, z[:, s:], acts[:, s:], st[:, s:], c.loss, 64.0)[1]["loss_rollout"] for s in range(4)]
    assert parts["loss_rollout"].item() == pytest.approx(torch.stack(single).mean().item(), rel=1e-5)
    from videojepa.training.world import blocked_moves

    for ov in ("loss.rollout_starts=4", "loss.blocked=1"):  # the 2-AC predictor has its own losses: refused, not ignored
        with pytest.raises(ConfigError, match="mlp and conv predictors"):
            cfg(data, ov, "model.predictor=ac", "model.encoder=pixels")
    st, acts = st.clone(), acts.clone()
    st[0, 3], acts[0, 2] = st[0, 2], torch.tensor([1.5, 0.0])  # one push the data shows stopped, for sure
    stopped = blocked_moves(acts, st)
    assert stopped[0, 2]
    lw = dataclasses.replace(c.loss, blocked=3.0)
    _, pw, _ = world_losses(m, z, acts, st, lw, 64.0)
    tf = (m.step(z[:, :-1], acts) - z[:, 1:]).pow(2).mean(-1)
    w = 1 + 3.0 * stopped.float()
    assert pw["loss_tf"].item() == pytest.approx(((tf * w).sum() / w.sum()).item(), rel=1e-5)


def test_scene_loss_rewards_codes_shared_within_an_episode(data, tmp_path, one_thread):
    from videojepa.training.world import scene_loss

    g = torch.Generator().manual_seed(0)
    codes = torch.randn(6, 1, 8, generator=g).expand(6, 5, 8)
    shared = scene_loss(codes + 0.01 * torch.randn(6, 5, 8, generator=g))
    assert shared.item() == pytest.approx(np.log(4), abs=0.05)  # the bound: all mass on the 4 other frames
    assert scene_loss(torch.randn(6, 5, 8, generator=g)).item() > shared.item() + 1.0
    # two windows of one episode: with their ids they are positives of each other, not negatives
    noise = 0.01 * torch.randn(6, 5, 8, generator=g)
    twin = torch.cat([codes[:1], codes[:1], codes[2:]]) + noise  # windows 0 and 1 coded alike
    apart = codes + noise  # windows 0 and 1 coded differently
    ids = torch.tensor([3, 3, 1, 2, 4, 5])
    assert scene_loss(twin, episodes=ids).item() < scene_loss(apart, episodes=ids).item() - 0.5
    assert scene_loss(twin).item() > scene_loss(apart).item() + 0.1  # without the ids they would be pushed apart
    with pytest.raises(ConfigError, match="loss.scene"):
        cfg(data, "model.scene_dim=8")
    with pytest.raises(ConfigError, match="trained encoder"):
        cfg(data, "model.scene_dim=8", "loss.scene=1", "model.encoder=pixels")
    c = cfg(data, "model.encoder=conv", "model.scene_dim=8", "loss.scene=1")
    tr = WorldTrainer(c, tmp_path / "run", progress=False)
    tr.fit()
    m, _, _ = load_world(tmp_path / "run")
    assert m.scene is not None and "scene" in m.parts
    hist = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    col = hist[0].split(",").index("loss_scene")
    assert all(float(r.split(",")[col]) > 0 for r in hist[1:])


def test_a_second_stage_trains_the_predictor_alone_on_the_frozen_encoder(data, tmp_path, one_thread):
    heads = ["model.metric_dim=8", "loss.metric=1"]
    WorldTrainer(cfg(data, *heads), tmp_path / "joint", progress=False).fit()
    src, _, _ = load_world(tmp_path / "joint")
    stage = [*heads, "loss.metric_rollout=1", f"model.init={tmp_path / 'joint'}", "model.freeze=[encoder, metric, probe]"]
    t = WorldTrainer(cfg(data, *stage, "model.hidden=48"), tmp_path / "wide", progress=False)
    assert t.feats is not None and not t.model.encoder_trains  # the frozen encoder's latents are cached once
    fresh = {k: v.clone() for k, v in t.model.predictor.state_dict().items()}
    s = t.fit()
    assert s["init"]["loaded"] == ["encoder", "idm", "probe", "metric"]
    assert len(s["init"]["fresh"]) == 1 and s["init"]["fresh"][0].startswith("predictor (shapes differ")
    m, c, _ = load_world(tmp_path / "wide")
    assert c.model.freeze == ("encoder", "metric", "probe")
    for part in ("encoder", "idm", "probe", "metric"):  # idm: an anti-collapse term, frozen with the encoder
        for (n, a), (_, b) in zip(getattr(src, part).state_dict().items(), getattr(m, part).state_dict().items()):
            assert torch.equal(a, b), (part, n)
    assert any(not torch.equal(fresh[k], v) for k, v in m.predictor.state_dict().items())
    rows = (tmp_path / "wide" / "metrics.csv").read_text().splitlines()
    head, last = rows[0].split(","), rows[-1].split(",")
    assert float(last[head.index("loss_std")] or 0) == 0 and float(last[head.index("loss_tf")]) > 0  # no VC terms
    # the same predictor shape: it starts from the joint run's
    same = WorldTrainer(cfg(data, *stage), tmp_path / "same", progress=False)
    assert "predictor" in same.init_report["loaded"] and not same.init_report["fresh"]
    for (n, a), (_, b) in zip(src.predictor.state_dict().items(), same.model.predictor.state_dict().items()):
        assert torch.equal(a, b), n


def test_a_frozen_part_must_load_and_freeze_names_parts(data, tmp_path, one_thread):
    WorldTrainer(cfg(data, "model.metric_dim=8", "loss.metric=1"), tmp_path / "joint", progress=False).fit(until=2)
    with pytest.raises(ValueError, match="the metric is frozen .* shapes differ"):
        WorldTrainer(cfg(data, "model.metric_dim=4", "loss.metric=1", f"model.init={tmp_path / 'joint'}",
                         "model.freeze=[encoder, metric]"), tmp_path / "bad", progress=False)
    t = WorldTrainer(cfg(data, "model.metric_dim=4", "loss.metric=1", f"model.init={tmp_path / 'joint'}",
                         "model.freeze=[encoder]"), tmp_path / "ok", progress=False)  # not frozen: starts fresh, named
    assert any(f.startswith("metric (shapes differ") for f in t.init_report["fresh"])
    with pytest.raises(CheckpointError, match="nothing"):
        WorldTrainer(cfg(data, f"model.init={tmp_path / 'nothing'}"), tmp_path / "none", progress=False)
    with pytest.raises(ConfigError, match="model.freeze: unknown part"):
        cfg(data, "model.freeze=[predictor]")
    with pytest.raises(ConfigError, match="no metric head"):
        cfg(data, "model.freeze=[metric]")
    assert cfg(data, "model.freeze=encoder").model.freeze == ("encoder",)  # one part, not its letters


def test_encode_in_chunks_without_a_gradient_matches_one_pass(data):
    m = WorldModel(cfg(data).model)
    frames = torch.randint(0, 256, (10, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(m.encode(frames, chunk=3), m.encode(frames, chunk=100), atol=1e-6)


def test_bilinear_predictor_starts_at_the_identity_and_learns_what_translation_does_to_a_periodic_code():
    from videojepa.models.world import BilinearPredictor, MLPPredictor

    torch.manual_seed(0)
    k = torch.randn(8, 2) * 1.5  # 8 frequencies: the latent turns each pair by an angle k . displacement

    def code(p):
        ph = p @ k.T
        return torch.cat([ph.cos(), ph.sin()], -1)

    pos, act = torch.rand(1024, 2) * 4, (torch.rand(1024, 2) - 0.5)
    z0, z1 = code(pos), code(pos + act)
    bil = BilinearPredictor(16, 2, 32, 1)
    assert torch.equal(bil(z0, act), z0)  # V starts at zero
    errs = {}
    for name, net in (("bilinear", bil), ("mlp", MLPPredictor(16, 2, 32, 1))):
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(300):
            loss = (net(z0, act) - z1).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        errs[name] = loss.item()
    ident = (z0 - z1).pow(2).mean().item()
    assert errs["bilinear"] < 0.2 * ident and errs["bilinear"] < 0.5 * errs["mlp"], (errs, ident)


def test_bilinear_predictor_trains_in_the_world_trainer(data, tmp_path, one_thread):
    s = WorldTrainer(cfg(data, "model.predictor=bilinear", "loss.stay=1"), tmp_path / "b", progress=False).fit()
    assert s["steps"] == 4 and np.isfinite(s["loss_last"])
    m, c, _ = load_world(tmp_path / "b")
    assert c.model.predictor == "bilinear" and type(m.predictor).__name__ == "BilinearPredictor"
