import math

import pytest

from videojepa.training.schedules import cosine_wd, ema_momentum, linear_decay, warmup_cosine, warmup_stable_decay


def ref_warmup_cosine(n, warmup, t_max, start, ref, final):
    """The reference scheduler as a stateful loop: counter starts at 0 and is incremented before use."""
    out, s = [], 0
    for _ in range(n):
        s += 1
        if s < warmup:
            lr = start + (s / warmup) * (ref - start)
        else:
            p = (s - warmup) / max(1, t_max - warmup)
            lr = max(final, final + (ref - final) * 0.5 * (1 + math.cos(math.pi * p)))
        out.append(lr)
    return out


def test_warmup_cosine_matches_reference_loop():
    ref = ref_warmup_cosine(500, 40, 625, 2e-4, 6.25e-4, 1e-6)
    ours = [warmup_cosine(i, warmup=40, total=625, start=2e-4, peak=6.25e-4, final=1e-6) for i in range(500)]
    assert ours == pytest.approx(ref, rel=0, abs=1e-15)


@pytest.mark.parametrize("step,expected", [(0, 2e-4 + (1 / 4) * 4e-4), (2, 2e-4 + (3 / 4) * 4e-4), (3, 6e-4), (103, 1e-6)])
def test_warmup_cosine_table(step, expected):
    assert warmup_cosine(step, warmup=4, total=104, start=2e-4, peak=6e-4, final=1e-6) == pytest.approx(expected)


def test_vjepa1_ipe_scale_ends_early():
    # V-JEPA 1 ViT-L: 300 epochs x 300 it, ipe_scale 1.25 -> the cosine stops at 80% (lr ~7.5e-5)
    lr = warmup_cosine(90000 - 1, warmup=12000, total=112500, start=2e-4, peak=6.25e-4, final=1e-6)
    assert 7.0e-5 < lr < 8.0e-5
    wd = cosine_wd(90000 - 1, total=112500, start=0.04, final=0.4)
    assert 0.36 < wd < 0.37
    assert ema_momentum(90000, total=112500, start=0.998, end=1.0) == pytest.approx(0.9996)


def test_wsd_table():
    f = lambda s: warmup_stable_decay(s, warmup=10, total=100, cooldown=20, start=0.0, peak=1.0, final=0.0)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == 1.0 and f(50) == 1.0 and f(79) == 1.0
    assert f(89) == pytest.approx(0.5)
    assert f(99) == pytest.approx(0.0)


def test_linear_decay_vjepa2_cooldown():
    # 12k steps with T_max = 1.25 * 12k: ends near 1.06e-4 from 5.25e-4 towards 1e-6
    lr = linear_decay(12000 - 1, total=15000, peak=5.25e-4, final=1e-6)
    assert lr == pytest.approx(5.25e-4 + 0.8 * (1e-6 - 5.25e-4))
    assert 1.0e-4 < lr < 1.1e-4


def test_schedules_are_pure():
    a = [warmup_cosine(s, warmup=5, total=50, start=0, peak=1, final=0) for s in (7, 3, 7)]
    assert a[0] == a[2]
    assert ema_momentum(0, total=10, start=0.99, end=1.0) == 0.99
    assert ema_momentum(10, total=10, start=0.99, end=1.0) == 1.0
    assert ema_momentum(20, total=10, start=0.99, end=1.0) == 1.0
