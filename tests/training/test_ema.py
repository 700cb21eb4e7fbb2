import pytest
import torch

from videojepa.models.registry import create_model
from videojepa.training.ema import ema_update, make_target


def _pair():
    torch.manual_seed(0)
    online = create_model("vit_test")
    target = make_target(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    return online, target


def test_target_is_frozen_copy():
    online, target = _pair()
    assert all(not p.requires_grad for p in target.parameters())
    assert target is not online


def test_momentum_one_keeps_target():
    online, target = _pair()
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))


def test_momentum_zero_copies_online():
    online, target = _pair()
    ema_update(target, online, 0.0)
    assert all(torch.allclose(a, b) for a, b in zip(online.parameters(), target.parameters()))


def test_one_step_by_hand():
    online, target = _pair()
    t0 = [p.clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for a, o, t in zip(t0, online.parameters(), target.parameters()):
        torch.testing.assert_close(t, 0.9 * a + 0.1 * o, rtol=1e-6, atol=1e-7)


def test_bad_momentum():
    online, target = _pair()
    with pytest.raises(ValueError, match="momentum"):
        ema_update(target, online, 1.5)
