"""Tiny encoders and data for the evaluation tests (vit_test: 32 wide, 2 blocks, 4 x 16 x 16 clips)."""
from __future__ import annotations

import pytest
import torch

from videojepa.data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_synthetic(n: int = 6, seed: int = 2, frames: int = 4, size: int = 16, width: int | None = None):
    return SyntheticVideoDataset(SyntheticVideoConfig(num_frames=frames, height=size, width=width or size,
                                                      num_samples=n, seed=seed))


@pytest.fixture(scope="session")
def run_checkpoint(tmp_path_factory):
    """A 2-step cpu_test pretraining run (vit_test encoder): the path of its checkpoint."""
    from videojepa.cli import main

    out = tmp_path_factory.mktemp("pretrain")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["pretrain", "--config", "cpu_test", "--out", str(out), "--max-steps", "2", "--no-progress",
                   "train.checkpoint_every=2"])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
    assert ckpts
    return str(ckpts[-1])
