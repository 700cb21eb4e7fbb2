"""Released attentive-probe checkpoints (V-JEPA 1 and V-JEPA 2 layouts) load strictly and give the same logits."""
import pytest
import torch

import videojepa
from videojepa.interop.weights import WeightsError, read_weights

TOKENS = torch.randn(3, 20, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("depth", [1, 2])
def test_vjepa1_probe_file(tmp_path, layouts, depth):
    probe = layouts.vjepa1_probe(depth=depth)
    path = tmp_path / "k400-probe.pth.tar"
    torch.save({"classifier": layouts.prefixed(probe.state_dict(), "module."), "opt": {}, "scaler": None,
                "epoch": 20, "batch_size": 4, "world_size": 64, "lr": 1e-3}, path)
    w = read_weights(path, config={"probe": {"num_heads": 4}})
    assert w.format == "vjepa1-probe" and w.parts == ["probe"]
    c = w.probe
    assert (c.depth, c.num_classes, c.xattn_proj, c.self_attn_position, c.layer_norm_eps) == (depth, 7, True, "after", 1e-5)
    loaded = videojepa.load(path, config={"probe": {"num_heads": 4}})  # default part of a probe file: the probe
    with torch.no_grad():
        assert torch.equal(loaded(TOKENS), probe(TOKENS))


def test_vjepa2_probe_file(tmp_path, layouts):
    probe, other = layouts.vjepa2_probe(depth=4), layouts.vjepa2_probe(depth=4, seed=9)
    path = tmp_path / "ssv2-vitl-16x2x3.pt"
    torch.save({"classifiers": [layouts.prefixed(m.state_dict(), "module.") for m in (probe, other)],
                "opt": [{}, {}], "scaler": None, "epoch": 20, "batch_size": 4, "world_size": 64}, path)
    w = read_weights(path, config={"probe": {"num_heads": 4}})
    assert w.format == "vjepa2-probe" and not w.probe.xattn_proj and w.probe.self_attn_position == "before"
    assert any("holds 2 probes" in n for n in w.notes)
    with torch.no_grad():
        assert torch.equal(videojepa.load(path, part="probe", config={"probe": {"num_heads": 4}})(TOKENS), probe(TOKENS))
    # without a config the V-JEPA 2 rule applies: 16 heads
    assert read_weights(path).probe.num_heads == 16


def test_probe_file_errors(tmp_path, layouts):
    sd = layouts.prefixed(layouts.vjepa2_probe(depth=2).state_dict(), "module.")
    sd["module.pooler.blocks.0.mlp.fc2.bias"] = torch.zeros(3)
    del sd["module.linear.bias"]
    path = tmp_path / "p.pt"
    torch.save({"classifiers": [sd]}, path)
    with pytest.raises(WeightsError, match=r"(?s)missing \(1\): module\.linear\.bias.*wrong shape \(1\): module\.pooler\.blocks\.0\.mlp\.fc2\.bias"):
        videojepa.load(path, config={"probe": {"num_heads": 4}})
    ek = tmp_path / "ek100.pt"
    torch.save({"classifiers": [{"module.pooler.query_tokens": torch.zeros(1, 3, 64),
                                 "module.verb_classifier.weight": torch.zeros(5, 64)}]}, ek)
    with pytest.raises(WeightsError, match="EK100"):
        videojepa.load(ek)
    with pytest.raises(ValueError, match="part 'encoder' is not in"):
        videojepa.load(path, part="encoder")
