"""The multi-view protocol: view expansion, grouping of segments and views, softmax averaging."""
import torch
import torch.nn as nn

from videojepa.evaluation import FeatureSet, average_view_probs, evaluate_views, expand_views


def test_average_view_probs_is_the_mean_softmax():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]])
    p = average_view_probs(logits)
    ref = (logits[0].softmax(-1).sum(0) / 3)[None]
    assert torch.allclose(p, ref) and torch.allclose(p.sum(-1), torch.ones(1))
    # one confident view does not win on its own: the average does
    assert p.argmax(-1).item() == 1


def test_by_view_groups_segments_per_view():
    S, V, K, D = 2, 3, 2, 1
    f = torch.arange(S * V * K, dtype=torch.float).reshape(1, S * V, K, D)  # clip c = s*V + v holds 2c, 2c+1
    fs = FeatureSet(f, torch.tensor([0]), torch.tensor([0]), segments=S, views=V)
    g = fs.by_view()
    assert g.shape == (1, V, S * K, D)
    assert g[0, 1, :, 0].tolist() == [2.0, 3.0, 8.0, 9.0]  # view 1: clip 1 (segment 0) then clip 4 (segment 1)
    pooled = FeatureSet(f.mean(2), torch.tensor([0]), torch.tensor([0]), pooled=True, segments=S, views=V)
    assert pooled.by_view()[0, :, 0].tolist() == [3.5, 5.5, 7.5]  # segments averaged per view


class _Sum(nn.Module):
    """A 'probe' whose logits are [sum of tokens, 0]: easy to predict by hand."""

    def forward(self, x):
        s = x.sum(dim=(1, 2)) if x.ndim == 3 else x.sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_evaluate_views_averages_softmax_over_views():
    f = torch.tensor([[[[1.0]], [[-3.0]]], [[[2.0]], [[0.5]]]])  # [N=2, S*V=2, K=1, D=1], 1 segment x 2 views
    out = evaluate_views(_Sum(), f, torch.tensor([0, 0]), segments=1, views=2)
    sig = torch.sigmoid
    ref0 = (sig(torch.tensor(1.0)) + sig(torch.tensor(-3.0))) / 2
    assert torch.allclose(out["probs"][0, 0], ref0)
    assert out["preds"].tolist() == [1, 0] and out["top1"] == 0.5
    # two segments, one view: tokens concatenated, a single pass
    out2 = evaluate_views(_Sum(), f, segments=2, views=1)
    assert torch.allclose(out2["probs"][0, 0], sig(torch.tensor(-2.0)))


def test_expand_views_segments_and_crops():
    T, H, W = 12, 8, 12
    clip = torch.arange(T, dtype=torch.float).view(1, T, 1, 1).expand(3, T, H, W).clone()
    clip[:, :, :, :] += torch.arange(W, dtype=torch.float) * 100  # column id in the hundreds
    v = expand_views(clip, num_frames=4, segments=3, views=3, crop_size=8)
    assert v.shape == (9, 3, 4, 8, 8)
    starts = [int(v[s * 3, 0, 0, 0, 0] % 100) for s in range(3)]
    assert starts == [0, 4, 8]  # evenly spaced from the first to the last possible start
    lefts = [int(v[i, 0, 0, 0, 0] // 100) for i in range(3)]
    assert lefts == [0, 2, 4]  # left, centre, right along the long side
    one = expand_views(clip, num_frames=4, segments=1, views=1, crop_size=8)
    assert int(one[0, 0, 0, 0, 0] % 100) == 4 and int(one[0, 0, 0, 0, 0] // 100) == 2  # centre in time and space
