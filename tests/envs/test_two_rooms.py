"""Two Rooms: the one collision rule, rendering, evaluation episodes, the gymnasium interface, exploration."""
import numpy as np
import pytest

from videojepa.envs.collect import PolicyConfig, explore
from videojepa.envs.two_rooms import (TwoRoomsConfig, TwoRoomsEnv, eval_episode, eval_episodes, geodesic_distance, move,
                                      render, room_of)
from videojepa.rng import numpy_generator

CFG = TwoRoomsConfig()  # wall x = 32 (band 30.5..33.5), door rows 15..25, arena 4..59
LAY = np.array([32.0, 20.0, 5.0])


def step(p, a, cfg=CFG, lay=LAY):
    return move(np.array([p], float), np.array([a], float), lay, cfg)[0]


@pytest.mark.parametrize("start, action, expect_moved", [
    ((29.0, 40.0), (2.0, 0.0), False),    # ends inside the wall band, below the door
    ((30.0, 40.0), (2.0, 0.0), False),    # crosses the band (30.5..33.5) away from the door... starts at 30, ends at 32
    ((29.5, 20.0), (2.0, 0.0), True),     # through the door
    ((31.0, 20.0), (2.0, 0.0), True),     # inside the door, moving on
    ((32.0, 24.0), (0.0, 2.0), False),    # inside the doorway, stepping down into the wall
    ((32.0, 24.0), (0.0, 1.0), True),     # still within the door (row 25 is its edge)
    ((29.6, 26.0), (1.8, -0.5), False),   # diagonal: enters the band at row 26 > 25, outside the door
    ((29.6, 25.8), (1.0, -0.5), False),   # diagonal: enters the band at row 25.35, just outside the door
    ((29.6, 25.4), (1.6, -0.9), True),    # diagonal: enters the band at row 24.9, inside the door
    ((29.0, 17.0), (1.9, 0.0), True),     # comfortably in the door range
    ((4.5, 30.0), (-1.0, 0.0), False),    # leaves the arena (x < 4)
    ((58.5, 59.0), (0.0, 0.5), False),    # leaves the arena (y > 59)
    ((10.0, 10.0), (0.0, 0.0), True),     # no move is never blocked
])
def test_collision_edge_cases(start, action, expect_moved):
    new = step(start, action)
    moved = not np.allclose(new, start) or np.allclose(action, 0)
    assert moved == expect_moved, (start, action, new)
    if expect_moved:
        assert np.allclose(new, np.add(start, action))


def test_actions_are_clipped_to_the_norm_bound():
    new = step((10.0, 10.0), (30.0, 40.0))
    assert np.allclose(new, (10.0 + 1.2, 10.0 + 1.6))


def test_batched_move_matches_one_by_one():
    rng = np.random.default_rng(0)
    cfg = CFG.with_layout("random")
    lay = np.stack([[rng.integers(24, 41), rng.integers(14, 51), 5] for _ in range(64)]).astype(float)
    pos = rng.uniform(4, 59, (64, 2))
    act = rng.normal(0, 2, (64, 2))
    batched = move(pos, act, lay, cfg)
    single = np.stack([move(pos[i], act[i], lay[i], cfg)[0] for i in range(64)])
    assert np.array_equal(batched, single)


def test_never_inside_a_wall_outside_the_door():
    rng = numpy_generator(1, "t")
    tr = explore(64, 60, CFG.with_layout("random"), rng)
    p, lay = tr["positions"], tr["layouts"][:, None]
    in_band = np.abs(p[..., 0] - lay[..., 0]) <= CFG.half_width
    in_door = np.abs(p[..., 1] - lay[..., 1]) <= lay[..., 2]
    assert not (in_band & ~in_door).any()
    assert (p >= CFG.lo).all() and (p <= CFG.hi).all()


def test_exploration_replays_through_the_dynamics():
    cfg = CFG.with_layout("random")
    tr = explore(32, 40, cfg, numpy_generator(2, "t"))
    p = tr["positions"][:, 0]
    for t in range(39):
        p = move(p, tr["actions"][:, t], tr["layouts"], cfg)
        assert np.allclose(p, tr["positions"][:, t + 1])
    assert (np.linalg.norm(tr["actions"], axis=-1) <= cfg.max_step + 1e-9).all()
    rooms = np.stack([room_of(tr["positions"][:, t], tr["layouts"]) for t in range(40)], 1)
    crossed = (rooms != rooms[:, :1]).any(1)
    assert crossed[tr["steered"]].mean() > 0.5  # steered episodes do go through the door


def test_wall_pushing_episodes_push_the_wall_and_keep_the_old_stream():
    cfg = CFG.with_layout("random")
    base = explore(48, 40, cfg, numpy_generator(3, "t"))
    same = explore(48, 40, cfg, numpy_generator(3, "t"), PolicyConfig(wall_share=0.0, push_steps=9))
    for k in ("positions", "actions", "layouts"):  # no pushes asked for: not one extra draw
        assert np.array_equal(base[k], same[k])
    tr = explore(48, 40, cfg, numpy_generator(3, "t"), PolicyConfig(door_share=0.0, wall_share=1.0))
    p, lay = tr["positions"], tr["layouts"]
    assert tr["pushed"].all() and not tr["steered"].any()
    free = explore(48, 40, cfg, numpy_generator(3, "t"), PolicyConfig(door_share=0.0))

    def pushed_at_wall(t):  # stopped moves next to the wall between the rooms, away from the door
        p, lay = t["positions"], t["layouts"][:, None]
        stopped = np.linalg.norm(np.diff(p, axis=1), axis=-1) < 1e-9
        at_wall = np.abs(p[:, :-1, 0] - lay[..., 0]) < CFG.half_width + CFG.max_step
        return (stopped & at_wall & (np.abs(p[:, :-1, 1] - lay[..., 1]) > lay[..., 2])).mean()

    assert pushed_at_wall(tr) > 0.15 and pushed_at_wall(tr) > 5 * pushed_at_wall(free)  # 23% vs 2.3%
    in_band = np.abs(p[..., 0] - lay[:, None, 0]) <= CFG.half_width  # the one rule still holds
    assert not (in_band & (np.abs(p[..., 1] - lay[:, None, 1]) > lay[:, None, 2])).any()
    with pytest.raises(ValueError, match="door_share \\+ wall_share"):
        PolicyConfig(door_share=0.6, wall_share=0.5)
    with pytest.raises(ValueError, match="push_steps"):
        PolicyConfig(wall_share=0.2, push_steps=0)


def test_render():
    f = render(np.array([[20.0, 40.0]]), LAY, CFG)
    assert f.shape == (1, 64, 64, 3) and f.dtype == np.uint8
    red = f[0, :, :, 0].astype(int) - f[0, :, :, 2]
    assert np.unravel_index(red.argmax(), red.shape) == (40, 20)  # (row, col)
    assert f[0, 40, 32, 2] > 150 and f[0, 20, 32, 2] < 50  # wall below the door, open in the doorway
    assert f[0, 0, 0, 2] > 150  # border


def test_eval_episodes_are_fixed_and_cross_the_wall():
    cfg = CFG.with_layout("random")
    a, b = eval_episodes(30, cfg), eval_episodes(10, cfg)
    assert np.array_equal(a.start[:10], b.start) and np.array_equal(a.layout[:10], b.layout)
    assert (room_of(a.start, a.layout) != room_of(a.goal, a.layout)).all()
    assert len(np.unique(a.layout[:, 0])) > 3  # random layouts differ
    s, g, lay = eval_episode(7, cfg)
    assert np.array_equal(s, a.start[7]) and np.array_equal(lay, a.layout[7])


def test_geodesic_goes_around_the_wall():
    goal = np.array([40.0, 45.0])
    d = geodesic_distance(goal, LAY, CFG)
    assert d[45, 40] == 0 and np.isinf(d[45, 32])  # a wall pixel
    straight = np.linalg.norm(np.array([24.0, 45.0]) - goal)
    assert d[45, 24] > straight + 20  # through the door at row 20


def test_gymnasium_interface():
    env = TwoRoomsEnv(TwoRoomsConfig(budget=3))
    obs, info = env.reset(seed=4)
    s, g, lay = eval_episode(4, env.cfg)
    assert obs.shape == (64, 64, 3) and np.array_equal(info["pos"], s) and np.array_equal(info["goal"], g)
    assert info["goal_frame"].shape == (64, 64, 3)
    out = [env.step([1.0, 0.0]) for _ in range(3)]
    assert [o[3] for o in out] == [False, False, True] and all(o[2] is False for o in out)
    assert out[-1][1] == -out[-1][4]["distance"]
    with pytest.raises(ValueError, match="2 finite numbers"):
        env.step([np.nan, 0.0])
    obs, info = env.reset(options={"start": [10, 10], "goal": [50, 50], "layout": [32, 20, 5]})
    assert np.array_equal(info["pos"], [10, 10])


def test_config_validation():
    with pytest.raises(ValueError, match="layout"):
        TwoRoomsConfig(layout="maze")
    with pytest.raises(ValueError, match="wall_x_range"):
        TwoRoomsConfig(wall_x_range=(2, 40))
    assert TwoRoomsConfig.from_dict(TwoRoomsConfig(layout="random").to_dict()) == TwoRoomsConfig(layout="random")
