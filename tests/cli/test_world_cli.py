"""``videojepa world collect | export-videos | train | imagine`` and ``videojepa plan``, end to end on tiny data."""
import json

import pytest

from videojepa.cli import main


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wcli")
    data, run = root / "data", root / "run"
    assert main(["world", "collect", "--out", str(data), "--episodes", "24", "--length", "8", "--layout", "fixed",
                 "--shard-size", "10", "--no-progress"]) == 0
    assert main(["world", "train", "--data", str(data), "--out", str(run), "--steps", "3", "--no-progress",
                 "model.encoder=pixels", "model.hidden=32", "data.window=5", "data.batch_size=4", "loss.rollout=2",
                 "data.val_episodes=4"]) == 0
    return root


def test_collect_train_imagine_plan(world_run, capsys):
    run = world_run / "run"
    assert (run / "summary.json").is_file() and (run / "metrics.png").is_file()
    assert main(["world", "imagine", "--world", str(run), "--steps", "4", "--out", str(world_run / "im.png")]) == 0
    out = capsys.readouterr().out
    assert "left" in out and "off by" in out and (world_run / "im.png").stat().st_size > 1000
    assert main(["plan", "--world", str(run), "--episodes", "2", "--budget", "8", "--horizon", "8", "--samples", "16",
                 "--elites", "4", "--iterations", "2", "--out", str(world_run / "plan"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "success" in out and "s per episode" in out
    res = json.loads((world_run / "plan" / "results.json").read_text())
    assert res["episodes"] == 2 and res["layout"] == "fixed" and 0 <= res["success"] <= 1
    assert (world_run / "plan" / "episodes.gif").is_file() and (world_run / "plan" / "energy.png").is_file()
    assert -1 <= res["energy_geodesic_spearman"] <= 1
    assert 0 <= res["energy_descent_opposite"] <= 1 and 0 <= res["energy_descent_same"] <= 1
    assert "steepest descent of the energy ends at the goal" in out
    assert main(["plan", "--world", str(run), "--agent", "world-energy", "--episodes", "2", "--budget", "8",
                 "--horizon", "8", "--samples", "16", "--elites", "4", "--iterations", "2", "--gif", "0",
                 "--out", str(world_run / "plan-e"), "--no-progress"]) == 0
    assert "true dynamics, world-model energy (l2): success" in capsys.readouterr().out
    assert main(["plan", "--world", str(run), "--energy", "metric", "--episodes", "2", "--no-progress"]) == 2
    assert "temporal-distance head" in capsys.readouterr().err


def test_plan_baselines_and_errors(world_run, capsys, tmp_path):
    assert main(["plan", "--agent", "oracle", "--episodes", "2", "--budget", "30", "--out", str(tmp_path / "o"),
                 "--gif", "0", "--no-progress"]) == 0
    assert "oracle (geodesic): success" in capsys.readouterr().out
    assert main(["plan", "--episodes", "2"]) == 2
    assert "needs --world" in capsys.readouterr().err
    assert main(["plan", "--agent", "zero", "--horizon", "4", "--replan-every", "8"]) == 2
    assert main(["world", "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "not a trajectory folder" in capsys.readouterr().err
    assert main(["world", "train", "--data", str(world_run / "data"), "model.encoder=cnn"]) == 2


def test_export_videos(world_run, capsys):
    assert main(["world", "export-videos", "--data", str(world_run / "data"), "--out", str(world_run / "v"),
                 "--limit", "2", "--no-progress"]) == 0
    assert sorted(p.name for p in (world_run / "v").iterdir()) == ["episode_000000.mp4", "episode_000001.mp4"]
    assert "data.source=files" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_collect_train_plan_beats_the_random_policy(tmp_path, one_thread):
    """collect -> train (a small jointly trained encoder, ~300 steps) -> plan: on the fixed layout with a short budget
    and start and goal in one room, the planner ends nearer the goal than the data's random policy (same episodes)."""
    from videojepa.envs.two_rooms import TwoRoomsConfig, eval_episodes
    from videojepa.planning.agent import RandomAgent, WorldModelAgent, run_episodes
    from videojepa.planning.planners import PlannerConfig
    from videojepa.training.world import load_world

    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["world", "collect", "--out", str(data), "--episodes", "200", "--length", "17", "--layout", "fixed",
                 "--no-progress"]) == 0
    assert main(["world", "train", "--data", str(data), "--out", str(run), "--steps", "300", "--no-progress",
                 "model.encoder=conv", "model.dim=32", "model.hidden=128", "loss.time=48", "data.window=9",
                 "data.batch_size=32", "loss.rollout=4", "data.val_episodes=20", "train.diag_every=300"]) == 0
    model, _, meta = load_world(run)
    env = TwoRoomsConfig(layout="fixed", budget=40)
    eps = eval_episodes(12, env, task="same")
    cfg = PlannerConfig(horizon=16, samples=64, elites=8, iterations=3)
    planned = run_episodes(WorldModelAgent(model, cfg), eps, env, cfg)
    rand = run_episodes(RandomAgent(env), eps, env, cfg)
    assert planned["final_distance"] < 0.8 * rand["final_distance"], (planned, rand)
    assert planned["success"] >= rand["success"]
