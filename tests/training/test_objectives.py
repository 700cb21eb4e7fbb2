import math

import pytest
import torch

from videojepa.config import ConfigError, load_config
from videojepa.models.registry import create_model
from videojepa.training.checkpoint import find_latest, load_checkpoint
from videojepa.training.objectives import ReconstructionObjective, hog_targets, patchify
from videojepa.training.trainer import Pretrainer


def test_patchify_follows_token_order():
    enc = create_model("vit_test", num_frames=4, img_size=(8, 12), patch_size=4)
    x = torch.zeros(1, 3, 4, 8, 12)
    x[:, :, 2:4, 4:8, 8:12] = torch.arange(3 * 2 * 4 * 4, dtype=torch.float).reshape(3, 2, 4, 4) + 1
    p = patchify(x, 2, 4)
    assert p.shape == (1, 2 * 2 * 3, 2 * 4 * 4 * 3)
    assert (p.abs().sum(-1) > 0).nonzero()[:, 1].tolist() == [1 * 6 + 1 * 3 + 2]  # same id as the patch embedding


def test_hog_orientation_and_normalisation():
    # vertical stripes: horizontal gradients only -> all mass in the 0-degree bins (first and last half-bins)
    x = torch.zeros(1, 3, 2, 8, 8)
    x[..., ::2] = 1.0
    h = hog_targets(x, tubelet=2, patch=8, bins=9, cell=4)
    assert h.shape == (1, 1, 2 * 4 * 9)
    per_frame = h.reshape(2, 4, 9)
    assert torch.allclose(per_frame[..., 1:8], torch.zeros(2, 4, 7), atol=1e-6)
    norms = h.reshape(2, 36).norm(dim=-1)
    assert torch.allclose(norms, torch.ones(2), atol=1e-5)
    # horizontal stripes: the 90-degree bin
    y = x.transpose(-1, -2).contiguous()
    hy = hog_targets(y, 2, 8, 9, 4).reshape(2, 4, 9)
    assert hy[..., 4].min() > 0.4 and hy[..., 0].max() < 1e-6


@pytest.mark.parametrize("objective", ["videomae", "maskfeat"])
def test_reconstruction_objectives_train_and_resume(tmp_path, objective):
    over = [f"loss.objective={objective}", "train.max_steps=4", "train.checkpoint_every=2", "optim.ema=[0.0, 0.0]"]
    cfg, _ = load_config("cpu_test", over)
    tr = Pretrainer(cfg, tmp_path, progress=False)
    assert isinstance(tr.model, ReconstructionObjective)
    tr.fit(until=2)
    sd = load_checkpoint(find_latest(tmp_path / "checkpoints"))
    assert "head" in sd and sd["head"]["weight"].shape[0] == (2 * 4 * 4 * 3 if objective == "videomae" else 2 * 9)
    full = Pretrainer(cfg, tmp_path / "full", progress=False)
    s = full.fit()
    resumed = Pretrainer(cfg, tmp_path, progress=False)
    resumed.fit()
    assert math.isfinite(s["loss_last"])
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    # EMA momentum 0: the target encoder is the trained encoder
    for a, b in zip(full.model.encoder.parameters(), full.model.target_encoder.parameters()):
        assert torch.equal(a, b)


def test_videomae_targets_are_per_patch_normalised():
    cfg, _ = load_config("cpu_test", ["loss.objective=videomae"])
    m = Pretrainer(cfg, "/nonexistent-unused", progress=False, resume="none").model
    t = m.targets_of(torch.randn(2, 3, 4, 16, 16) * 5 + 3)
    assert torch.allclose(t.mean(-1), torch.zeros(2, 32), atol=1e-5)
    assert torch.allclose(t.std(-1), torch.ones(2, 32), atol=1e-3)


def test_unknown_objective_is_named():
    with pytest.raises(ConfigError, match="loss.objective"):
        load_config("cpu_test", ["loss.objective=mae"])
