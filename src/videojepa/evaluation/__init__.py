"""Frozen evaluation: features, probes (attentive, linear, k-NN), few-label subsets, multi-view metrics.

>>> from videojepa.evaluation import extract_features, train_probe_grid, ProbeGridConfig
>>> train = extract_features(enc, train_ds)            # tokens [N, K, D]
>>> res = train_probe_grid(train, val, num_classes, ProbeGridConfig())
>>> res.best["top1"], res.best["lr"], res.best_probe
"""
from .features import FeatureSet, WindowedEmbedding, embed, extract_features, iter_features, window_starts
from .fewshot import stratified_subset
from .metrics import confusion_matrix, per_class_accuracy, plot_confusion, topk_accuracy
from .multiview import ClipViews, average_view_probs, evaluate_views, expand_views
from .probe import (LinearProbe, ProbeGridConfig, ProbeGridResult, knn_accuracy, load_probe, predict_probs,
                    save_probe, train_probe_grid)

__all__ = [
    "FeatureSet", "WindowedEmbedding", "embed", "extract_features", "iter_features", "window_starts",
    "stratified_subset", "confusion_matrix", "per_class_accuracy", "plot_confusion", "topk_accuracy",
    "ClipViews", "average_view_probs", "evaluate_views", "expand_views", "LinearProbe", "ProbeGridConfig",
    "ProbeGridResult", "knn_accuracy", "load_probe", "predict_probs", "save_probe", "train_probe_grid",
]
