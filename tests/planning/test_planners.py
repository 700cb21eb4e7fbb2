"""CEM / MPPI on known minima; the episode runner with the oracle and the baselines."""
import numpy as np
import pytest
import torch

from videojepa.envs.two_rooms import TwoRoomsConfig, eval_episodes
from videojepa.planning.agent import OracleAgent, RandomAgent, ZeroAgent, run_episodes, wilson
from videojepa.planning.planners import PlannerConfig, clip_norm, plan


def quadratic(target):
    def cost(actions):  # [E, N, H, A]
        return (actions - target[:, None]).pow(2).sum((-1, -2))
    return cost


@pytest.mark.parametrize("method", ["cem", "mppi"])
def test_planners_find_the_minimum_of_a_quadratic(method):
    g = torch.Generator().manual_seed(0)
    target = torch.empty(3, 5, 2).uniform_(-1.2, 1.2, generator=g)  # inside the norm ball (radius 2)
    cfg = PlannerConfig(method=method, horizon=5, samples=300, elites=30, iterations=25, init_std=1.0, replan_every=1)
    out = plan(quadratic(target), torch.zeros(3, 5, 2), cfg, g)
    assert (out["mean"] - target).abs().max() < 0.05
    assert out["costs"][-1].max() < out["costs"][0].min()  # the elites improve
    assert (out["best_cost"] <= quadratic(target)(out["best"][:, None])[:, 0] + 1e-5).all()


def test_minimum_outside_the_bound_lands_on_the_ball():
    g = torch.Generator().manual_seed(1)
    target = torch.tensor([[[3.0, 4.0]]])  # norm 5, bound 2
    cfg = PlannerConfig(horizon=1, samples=200, elites=20, iterations=20, replan_every=1, max_norm=2.0)
    out = plan(quadratic(target), torch.zeros(1, 1, 2), cfg, g)
    assert torch.allclose(out["mean"], torch.tensor([[[1.2, 1.6]]]), atol=0.05)
    assert (out["mean"].norm(dim=-1) <= 2.0 + 1e-6).all()


def test_clip_norm_and_config_checks():
    a = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    assert torch.allclose(clip_norm(a, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="elites"):
        PlannerConfig(samples=10, elites=20)
    with pytest.raises(ValueError, match="replan_every"):
        PlannerConfig(horizon=4, replan_every=8)
    with pytest.raises(ValueError, match="unknown planner"):
        PlannerConfig.from_dict({"horizont": 3})


def test_cost_shape_is_checked():
    with pytest.raises(ValueError, match="cost_fn returned"):
        plan(lambda a: a.sum(-1), torch.zeros(1, 2, 2), PlannerConfig(horizon=2, replan_every=1), torch.Generator())


def test_wilson_interval():
    lo, hi = wilson(50, 50)
    assert hi == 1.0 and 0.92 < lo < 0.94
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.17


def test_oracle_plans_through_the_door_and_greedy_distance_gets_stuck():
    env = TwoRoomsConfig(layout="random", budget=60)
    eps = eval_episodes(12, env)
    cfg = PlannerConfig(horizon=24, samples=100, elites=10, iterations=4, replan_every=4)
    geo = run_episodes(OracleAgent(cfg, env, "geodesic"), eps, env, cfg)
    euclid = run_episodes(OracleAgent(cfg, env, "euclid"), eps, env, cfg)
    zero = run_episodes(ZeroAgent(), eps, env, cfg)
    rand = run_episodes(RandomAgent(env), eps, env, cfg)
    assert geo["success"] >= 0.9
    assert euclid["success"] < geo["success"]
    assert zero["success"] == 0.0 and zero["final_distance"] == pytest.approx(
        float(np.linalg.norm(eps.start - eps.goal, axis=1).mean()))
    assert rand["final_distance"] > geo["final_distance"]


def test_runner_records_and_is_reproducible():
    env = TwoRoomsConfig(budget=8)
    eps = eval_episodes(3, env)
    cfg = PlannerConfig(horizon=8, samples=20, elites=4, iterations=2, replan_every=4)
    a = run_episodes(OracleAgent(cfg, env), eps, env, cfg, seed=3, record=True)
    b = run_episodes(OracleAgent(cfg, env), eps, env, cfg, seed=3, record=True)
    assert a["trajectories"].shape == (3, 9, 2) and len(a["plans"]) == 2
    assert np.array_equal(a["trajectories"], b["trajectories"])
    assert a["plans"][0]["states"].shape == (3, 8, 2)


class _PositionModel:
    """A stand-in world model whose latent is the agent's pixel position (the pixel nearest the agent's colour) and
    whose energy is the straight-line distance (``scramble``: a fixed random energy per position instead)."""

    metric = None

    def __init__(self, scramble: bool = False) -> None:
        self.scramble = scramble

    def eval(self):
        return self

    def encode(self, frames):
        from videojepa.envs.two_rooms import AGENT_RGB

        d = (frames.float() - torch.from_numpy(AGENT_RGB)).abs().sum(-1).flatten(1)  # [N, H*W]
        i = d.argmin(1)
        return torch.stack([i % frames.shape[-2], i // frames.shape[-2]], 1).float()

    def distance(self, z, goal, kind="l2"):
        d = (z - goal).norm(dim=-1)
        if self.scramble:
            g = torch.Generator().manual_seed(0)
            table = torch.rand(64 * 64, generator=g)
            return table[(z[:, 0] * 64 + z[:, 1]).long()]
        return d


def test_energy_geodesic_correlation_orders_a_good_energy_above_a_scrambled_one():
    from videojepa.planning.visualize import energy_diagnostics

    env = TwoRoomsConfig(layout="random")
    eps = eval_episodes(3, env)
    euclid = energy_diagnostics(_PositionModel(), eps, env, n=3, stride=4)["spearman"]
    scrambled = energy_diagnostics(_PositionModel(scramble=True), eps, env, n=3, stride=4)["spearman"]
    assert 0.6 < euclid < 1.0  # straight-line distance orders places well, but not around the wall
    assert abs(scrambled) < 0.25


def test_descent_reaches_the_goal_only_from_its_basin():
    from videojepa.planning.visualize import descent_reaches

    x = np.arange(10, dtype=float)
    geo = np.tile(np.abs(x - 1.0), (3, 1))  # a corridor, goal at column 1
    assert descent_reaches(geo, geo, 0.5).all()  # the true distance leads everywhere to the goal
    bumpy = geo.copy()
    bumpy[:, 6] = 0.5  # a false minimum at column 6 captures columns 5..9
    ok = descent_reaches(bumpy, geo, 0.5)
    assert ok[:, :5].all() and not ok[:, 5:].any()
    walled = geo.copy()
    walled[:, 3] = np.inf  # a wall: nothing beyond it reaches the goal, whatever the energy says
    ok = descent_reaches(walled, np.where(np.isinf(walled), np.inf, geo), 0.5)
    assert ok[:, :3].all() and not ok[:, 3:].any()


def test_energy_diagnostics_see_the_straight_line_minimum_against_the_wall():
    from videojepa.planning.visualize import energy_diagnostics

    env = TwoRoomsConfig(layout="random")
    eps = eval_episodes(3, env)
    d = energy_diagnostics(_PositionModel(), eps, env, n=3, stride=2)
    assert d["descent_same"] == 1.0  # a room is convex: the straight line leads to the goal
    assert 0.0 < d["descent_opposite"] < 0.8  # across the wall it ends against it unless aligned with the door
    assert energy_diagnostics(_PositionModel(scramble=True), eps, env, n=3, stride=2)["descent_same"] < 0.2


def test_metric_energy_needs_a_metric_head():
    from videojepa.planning.agent import WorldModelAgent

    with pytest.raises(ValueError, match="temporal-distance head"):
        WorldModelAgent(_PositionModel(), PlannerConfig(energy="metric"))
    with pytest.raises(ValueError, match="planner.energy"):
        PlannerConfig(energy="cosine")


def test_learned_energy_agent_plans_on_the_true_dynamics_with_a_models_energy():
    from videojepa.planning.agent import LearnedEnergyAgent, energy_field

    env = TwoRoomsConfig(layout="random", budget=40)
    eps = eval_episodes(4, env, task="same")
    m = _PositionModel()
    f = energy_field(m, eps.goal[0], eps.layout[0], env, chunk=500)
    assert f.shape == (64, 64) and np.isinf(f[0, 0]) and np.isfinite(f[32, 10])
    r, c = (int(round(v)) for v in eps.goal[0][::-1])
    assert f[r, c] == f[np.isfinite(f)].min()  # zero at the goal's pixel
    cfg = PlannerConfig(horizon=16, samples=60, elites=6, iterations=3, replan_every=4)
    res = run_episodes(LearnedEnergyAgent(m, cfg, env), eps, env, cfg)
    assert res["success"] == 1.0  # within a room the straight-line energy is the right one
    with pytest.raises(ValueError, match="temporal-distance head"):
        LearnedEnergyAgent(m, PlannerConfig(energy="metric"), env)


def test_repeat_searches_held_actions_and_returns_the_full_horizon():
    g = torch.Generator().manual_seed(0)
    target = torch.tensor([[0.8, -0.4], [-1.0, 0.6], [0.2, 1.1]])[None].repeat_interleave(4, dim=1)  # [1, 12, 2]
    seen = []

    def cost(actions):
        seen.append(actions.shape)
        return quadratic(target)(actions)

    cfg = PlannerConfig(horizon=12, repeat=4, samples=200, elites=20, iterations=20, init_std=1.0, replan_every=4)
    out = plan(cost, torch.zeros(1, 12, 2), cfg, g)
    assert all(s[2] == 12 for s in seen)  # the cost always scores the whole horizon
    assert out["mean"].shape == (1, 12, 2) and out["best"].shape == (1, 12, 2)
    blocks = out["mean"].reshape(1, 3, 4, 2)
    assert torch.equal(blocks, blocks[:, :, :1].expand_as(blocks))  # each action held 4 steps
    assert (out["mean"] - target).abs().max() < 0.05
    with pytest.raises(ValueError, match="multiple of planner.repeat"):
        PlannerConfig(horizon=10, repeat=4)


@pytest.mark.parametrize("kw", [dict(encoder="conv", predictor="mlp", dim=16, hidden=32, metric_dim=8),
                                dict(encoder="conv_map", predictor="conv", channels=(4, 4, 5), hidden=6,
                                     metric_dim=8)])
@pytest.mark.parametrize("energy, reduce", [("l2", "sum"), ("metric", "sum"), ("l1", "last")])
def test_streamed_rollout_cost_equals_the_energy_of_the_whole_rollout(kw, energy, reduce):
    """The planner's cost takes the energy step by step; it must equal the energy of the stacked rollout."""
    from videojepa.models.world import WorldModel, WorldModelConfig
    from videojepa.planning.agent import WorldModelAgent

    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(**kw))
    for m in model.predictor.modules():  # the conv predictor's last layer starts at zero: make it move
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
    agent = WorldModelAgent(model, PlannerConfig(energy=energy, reduce=reduce))
    frames = torch.randint(0, 255, (3, 64, 64, 3), dtype=torch.uint8)
    agent.goal_z = model.encode(frames[:2])
    z0, s0 = model.encode(frames[1:]), torch.zeros(2, 2)
    actions = torch.randn(2, 5, 7, 2)
    with torch.no_grad():
        streamed = agent.rollout_cost(z0, s0)(actions)
        whole = agent.energy(model.rollout(z0[:, None].expand(2, 5, -1).reshape(10, -1), actions.reshape(10, 7, 2))
                             .reshape(2, 5, 7, -1), agent.goal_z)
    assert streamed.shape == (2, 5)
    torch.testing.assert_close(streamed, whole, rtol=1e-5, atol=1e-6)
    assert whole.std() > 0  # the candidates differ
