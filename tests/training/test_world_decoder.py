"""Decoding a world model's latents to frames: training on the engine, resume, and imagined rollouts as frames."""
import numpy as np
import pytest
import torch
from PIL import Image

from videojepa.envs.collect import collect
from videojepa.envs.two_rooms import TwoRoomsConfig, eval_episodes
from videojepa.models.decoder import FrameDecoder, FrameDecoderConfig
from videojepa.planning.visualize import decoded_rollout
from videojepa.training.decoder import DecoderRunConfig, load_decoder, make_trainer
from videojepa.training.world import WorldTrainer, load_world, load_world_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("wd")
    collect(str(root / "data"), 30, 8, TwoRoomsConfig(layout="random"), seed=0, shard_size=30, progress=False)
    cfg = load_world_config(None, [f"data.path={root / 'data'}", "data.window=4", "data.batch_size=8", "train.steps=2",
                                   "data.val_episodes=6", "loss.rollout=2", "model.hidden=32", "model.dim=16",
                                   "model.idm_hidden=16", "model.probe_hidden=16", "model.channels=[8,8,8]"])
    WorldTrainer(cfg, root / "world", progress=False).fit()
    return root / "world"


def _cfg(world, *over):
    return DecoderRunConfig.make([f"source.world={world}", "data.batch_size=8", "model.channels=[8,8]",
                                  "train.checkpoint_every=2", "train.log_every=1", *over])


def test_frame_decoder_shapes():
    d = FrameDecoder(FrameDecoderConfig(dim=16, img_size=64, channels=(8, 8, 8)))
    assert d(torch.randn(2, 5, 16)).shape == (2, 5, 3, 64, 64)
    with pytest.raises(ValueError, match="divisible"):
        FrameDecoderConfig(dim=16, img_size=60, channels=(8, 8, 8))


def test_world_decoder_trains_resumes_and_loads(world, tmp_path):
    full = make_trainer(_cfg(world, "train.steps=4"), tmp_path / "full", progress=False)
    full.fit()
    part = make_trainer(_cfg(world, "train.steps=4"), tmp_path / "part", progress=False)
    part.fit(until=2)
    resumed = make_trainer(_cfg(world, "train.steps=4"), tmp_path / "part", progress=False)
    assert resumed.step == 2
    resumed.fit()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    dec, meta = load_decoder(tmp_path / "full")
    assert isinstance(dec, FrameDecoder) and meta["decoder"]["kind"] == "frame" and meta["world"]


def test_decoded_rollout_lines_up_with_the_simulator(world, tmp_path):
    make_trainer(_cfg(world, "train.steps=2"), tmp_path / "d", progress=False).fit()
    dec, _ = load_decoder(tmp_path / "d")
    model, cfg, meta = load_world(world)
    env = TwoRoomsConfig(layout="random")
    ep = eval_episodes(1, env)
    acts = np.tile([[1.5, 0.0]], (5, 1))
    r = decoded_rollout(model, dec, ep.start[0], ep.layout[0], env, acts)
    assert r["real"].shape == r["imagined"].shape == r["reconstructed"].shape == (6, 64, 64, 3)
    assert np.array_equal(r["imagined"][0], r["reconstructed"][0])  # step 0 is the encoded first frame in both
    assert not np.array_equal(r["real"][0], r["real"][-1])  # the agent moved
    assert r["psnr_imagined"].shape == (6,) and np.all(np.isfinite(r["psnr_imagined"]))


def test_cli_world_imagine_with_decoder(world, tmp_path, capsys):
    from videojepa.cli import main

    assert main(["decoder", "train", "--world", str(world), "--out", str(tmp_path / "d"), "--steps", "1",
                 "--no-progress", "model.channels=[8,8]"]) == 0
    out = tmp_path / "im.png"
    assert main(["world", "imagine", "--world", str(world), "--decoder", str(tmp_path / "d"), "--out", str(out),
                 "--steps", "6"]) == 0
    assert Image.open(tmp_path / "im_decoded.gif").n_frames >= 2 and (tmp_path / "im_decoded.png").is_file()
    assert "PSNR" in capsys.readouterr().out
    assert main(["decoder", "train", "--world", str(world), "--init", "random"]) == 2
