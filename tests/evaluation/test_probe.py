"""Probe grids: the stacked probe is the official module, each probe has its own AdamW, the best on val wins."""
import pytest
import torch
import torch.nn.functional as F

import videojepa
from videojepa.evaluation import FeatureSet, LinearProbe, ProbeGridConfig, knn_accuracy, load_probe, save_probe
from videojepa.evaluation import train_probe_grid
from videojepa.evaluation.probe import _GridAdamW, _init_probes, _StackedAttentive, lr_scale
from videojepa.models.pooler import AttentiveClassifier


def _toy(n=96, C=4, K=6, D=16, seed=0, noise=1.0):
    """Tokens whose mean carries the class (linearly separable), plus noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(C, D, generator=torch.Generator().manual_seed(123)) * 2
    y = torch.arange(n) % C
    x = centres[y][:, None, :] + noise * torch.randn(n, K, D, generator=g)
    return FeatureSet(x, y, torch.arange(n))


@pytest.mark.parametrize("form", [dict(), dict(form="vjepa2"), dict(xattn_proj=False)])
def test_stacked_probe_is_the_attentive_classifier(form):
    cfg = ProbeGridConfig(num_heads=4, **form).probe_config(32, 5)
    mods = _init_probes(cfg, 3, seed=0)
    with torch.no_grad():
        for m in mods:  # move away from the init (LayerNorm affine, biases) so every term matters
            for p in m.parameters():
                p.add_(0.2 * torch.randn_like(p))
    st = _StackedAttentive(cfg, 3, init=mods)
    x = 2 * torch.randn(4, 10, 32) + 0.5
    with torch.no_grad():
        out = st(x)
        for k, m in enumerate(mods):
            assert torch.allclose(out[:, k], m(x), atol=1e-5)
            assert torch.equal(st.export(k)(x), m(x))
    assert ("pooler.cross_attention_block.xattn.proj.weight" in st.export(0).state_dict()) == cfg.xattn_proj


def test_grid_equals_probes_trained_one_by_one():
    """K probes trained together == each trained alone with torch.optim.AdamW at its own lr / wd."""
    torch.manual_seed(0)
    cfg = ProbeGridConfig(num_heads=2).probe_config(16, 3)
    grid = [(1e-2, 0.0), (3e-3, 0.5), (1e-3, 0.1)]
    st = _StackedAttentive(cfg, 3, init=_init_probes(cfg, 3, seed=0))
    refs = _init_probes(cfg, 3, seed=0)
    opt = _GridAdamW(st.param_specs(), torch.tensor([g[0] for g in grid]), torch.tensor([g[1] for g in grid]))
    ref_opts = [torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=wd) for m, (lr, wd) in zip(refs, grid)]
    x, y = torch.randn(5, 8, 7, 16), torch.randint(0, 3, (5, 8))
    for t in range(5):
        s = lr_scale(t, 5, 2)
        st.zero_grad()
        logits = st(x[t])
        F.cross_entropy(logits.reshape(-1, 3), y[t].repeat_interleave(3), reduction="none").reshape(-1, 3).mean(0).sum().backward()
        opt.step(s)
        for m, o, (lr, _) in zip(refs, ref_opts, grid):
            o.param_groups[0]["lr"] = lr * s
            o.zero_grad()
            F.cross_entropy(m(x[t]), y[t]).backward()
            o.step()
    for k, m in enumerate(refs):
        got = st.export(k).state_dict()
        for name, v in m.state_dict().items():
            assert torch.allclose(got[name], v, atol=2e-5), name


@pytest.mark.parametrize("kw", [dict(kind="attentive"), dict(kind="linear"),
                                dict(kind="attentive", probe_depth=2, num_heads=2)])
def test_probe_learns_separable_features(kw):
    tr, va = _toy(), _toy(n=40, seed=1)
    cfg = ProbeGridConfig(lrs=(1e-2, 3e-3), weight_decays=(0.01,), epochs=8, batch_size=16, **kw)
    r = train_probe_grid(tr, va, 4, cfg, progress=False)
    assert r.best["top1"] >= 0.95
    assert len(r.grid) == 2 and r.best["top1"] == max(g["top1"] for g in r.grid)
    with torch.no_grad():
        assert r.best_probe(va.features[:3]).shape == (3, 4)
    assert set(r.best) >= {"lr", "weight_decay", "top1", "top5", "per_class", "probe_state"}


def test_grid_picks_the_best_on_validation():
    tr, va = _toy(), _toy(n=40, seed=1)
    cfg = ProbeGridConfig(lrs=(1e-7, 1e-2), weight_decays=(0.0, 0.05), epochs=6, batch_size=16)
    r = train_probe_grid(tr, va, 4, cfg, progress=False)
    assert [(g["lr"], g["weight_decay"]) for g in r.grid] == cfg.grid
    assert r.best["lr"] == 1e-2 and r.best["top1"] > 0.9
    assert all(g["top1"] < 0.6 for g in r.grid if g["lr"] == 1e-7)  # the frozen-in-place probes stay near chance
    assert isinstance(r.best_probe, AttentiveClassifier) and r.val_probs.shape == (40, 4)
    # the reported best probe reproduces its validation accuracy
    with torch.no_grad():
        acc = (r.best_probe(va.features).argmax(1) == va.labels).float().mean().item()
    assert acc == pytest.approx(r.best["top1"])


def test_attentive_needs_tokens_and_labels_in_range():
    tr = _toy().pooled_features()
    with pytest.raises(ValueError, match="token"):
        train_probe_grid(tr, tr, 4, ProbeGridConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="num_classes"):
        train_probe_grid(_toy(), _toy(), 3, ProbeGridConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="kind"):
        ProbeGridConfig(kind="mlp")


def test_knn_on_separable_features():
    r = knn_accuracy(_toy(noise=0.3), _toy(n=40, seed=1, noise=0.3), k=5)
    assert r["top1"] == 1.0 and r["probs"].shape == (40, 4)


def test_save_and_load_probes(tmp_path):
    cfg = ProbeGridConfig(num_heads=2).probe_config(16, 3)
    m = _init_probes(cfg, 1, 0)[0].eval()
    save_probe(m, tmp_path / "att", class_names=["a", "b", "c"], evaluation={"layers": [1]})
    back, info = load_probe(tmp_path / "att")
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.equal(back(x), m(x))
    assert info["labels"] == ["a", "b", "c"] and info["evaluation"] == {"layers": [1]}
    assert isinstance(videojepa.load(tmp_path / "att"), AttentiveClassifier)  # the weights format of the package
    lin = LinearProbe(16, 3)
    lin.mean.fill_(0.5)
    save_probe(lin, tmp_path / "lin")
    back, info = load_probe(tmp_path / "lin")
    with torch.no_grad():
        assert torch.equal(back(x), lin(x))
