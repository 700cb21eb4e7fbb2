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
