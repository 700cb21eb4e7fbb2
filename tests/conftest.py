import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VIDEOJEPA_CPU_BF16", "0")  # float32 on every CPU: the suite's expected floats; tests of the choice unset it
# torchrun tests inherit it: a rank stuck in a collective fails the run in 2 min instead of gloo's 30
os.environ.setdefault("VIDEOJEPA_DIST_TIMEOUT", "120")

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)  # only for module init inside tests; the package itself never uses global RNG
    yield


@pytest.fixture
def one_thread():
    """Tests of many tiny ops: one intra-op thread is much faster on a shared CPU (no spin waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def enc():
    """A tiny encoder (vit_test: 32 wide, 2 blocks, 4 x 16 x 16 clips, 2 x 4 x 4 tokens), the same init each time."""
    import videojepa

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return videojepa.create_model("vit_test").eval()
