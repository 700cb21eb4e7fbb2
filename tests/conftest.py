import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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
