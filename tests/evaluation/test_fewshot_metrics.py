"""Stratified few-label subsets and classification metrics."""
import math

import pytest
import torch

from videojepa.evaluation import confusion_matrix, per_class_accuracy, plot_confusion, stratified_subset, topk_accuracy
from videojepa.evaluation.metrics import mean_std


def test_stratified_subset():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 4 + [-1] * 5)
    idx = stratified_subset(labels, 0.1, seed=0)
    counts = torch.bincount(labels[idx], minlength=3).tolist()
    assert counts == [5, 3, 1]  # round(0.1 n), at least one per class
    assert torch.equal(idx, stratified_subset(labels, 0.1, seed=0))  # deterministic per seed
    assert not torch.equal(idx, stratified_subset(labels, 0.1, seed=1))
    assert set(idx.tolist()) <= set(stratified_subset(labels, 0.5, seed=0).tolist())  # nested for one seed
    assert torch.bincount(labels[stratified_subset(labels, 0.01, 3, min_per_class=2)]).tolist() == [2, 2, 2]
    full = stratified_subset(labels, 1.0, 0)
    assert len(full) == 84 and (labels[full] >= 0).all() and torch.equal(full, full.sort().values)
    with pytest.raises(ValueError):
        stratified_subset(labels, 0.0, 0)


def test_topk_per_class_and_confusion():
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    labels = torch.tensor([0, 2, 1, 0])
    acc = topk_accuracy(scores, labels, (1, 2, 5))
    assert acc[1] == pytest.approx(0.5) and acc[2] == pytest.approx(1.0) and acc[5] == 1.0
    preds = scores.argmax(1)
    cm = confusion_matrix(preds, labels, 4)
    assert cm.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    pc = per_class_accuracy(preds, labels, 4)
    assert pc[:3].tolist() == [0.5, 1.0, 0.0] and math.isnan(pc[3])
    ms = mean_std([0.5, 0.7])
    assert ms["mean"] == pytest.approx(0.6) and ms["std"] == pytest.approx(math.sqrt(0.02))
    assert mean_std([0.3])["std"] == 0.0


def test_plot_confusion(tmp_path):
    cm = torch.tensor([[3, 1], [0, 4]])
    p = plot_confusion(cm, ["a", "b"], tmp_path / "cm.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(cm, ["a"], tmp_path / "x.png")
