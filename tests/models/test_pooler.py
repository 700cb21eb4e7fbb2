"""Attentive probes: shapes, the two official forms, and the reference quirks they keep."""
import pytest
import torch

from videojepa.models.pooler import AttentiveClassifier, ProbeConfig


def _x(b=2, n=10, d=32, seed=0):
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_keys_of_both_forms():
    v2 = AttentiveClassifier(ProbeConfig(embed_dim=32, num_heads=4, depth=3, num_classes=5)).eval()
    assert v2(_x()).shape == (2, 5)
    keys = set(v2.state_dict())
    assert {"pooler.query_tokens", "pooler.cross_attention_block.xattn.q.weight", "pooler.cross_attention_block.xattn.kv.weight",
            "pooler.blocks.1.attn.qkv.weight", "linear.weight"} <= keys
    assert not any("xattn.proj" in k for k in keys)
    v1 = AttentiveClassifier(ProbeConfig.vjepa1(32, 4, 5)).eval()
    assert "pooler.cross_attention_block.xattn.proj.weight" in v1.state_dict()
    assert not any(k.startswith("pooler.blocks.") for k in v1.state_dict())
    multi = AttentiveClassifier(ProbeConfig(embed_dim=32, num_heads=4, depth=1, num_classes=5, num_queries=3)).eval()
    assert multi(_x()).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="tokens"):
        v2(torch.randn(2, 10, 16))


def test_vjepa1_xattn_proj_is_never_applied():
    m = AttentiveClassifier(ProbeConfig.vjepa1(32, 4, 5)).eval()
    with torch.no_grad():
        a = m(_x())
        m.pooler.cross_attention_block.xattn.proj.weight.normal_()
        assert torch.equal(a, m(_x()))


def test_query_is_not_layer_normed_and_token_order_does_not_matter():
    m = AttentiveClassifier(ProbeConfig(embed_dim=32, num_heads=4, depth=2, num_classes=5)).eval()
    x = _x()
    with torch.no_grad():
        a = m(x)
        assert torch.allclose(a, m(x[:, torch.randperm(10)]), atol=1e-5)  # no positions in a probe
        m.pooler.cross_attention_block.norm1.weight.mul_(2)  # LN1 acts on the tokens ...
        assert not torch.allclose(a, m(x))


def test_self_attention_position():
    """V-JEPA 2 runs the self-attention blocks over the tokens, V-JEPA 1 over the queries: same weights differ."""
    before = AttentiveClassifier(ProbeConfig(embed_dim=32, num_heads=4, depth=2, num_classes=5)).eval()
    after = AttentiveClassifier(ProbeConfig(embed_dim=32, num_heads=4, depth=2, num_classes=5,
                                            self_attn_position="after")).eval()
    after.load_state_dict(before.state_dict())
    with torch.no_grad():
        assert not torch.allclose(before(_x()), after(_x()))
    with pytest.raises(ValueError, match="self_attn_position"):
        ProbeConfig(self_attn_position="middle")
    assert ProbeConfig.from_dict(ProbeConfig().to_dict()) == ProbeConfig()
