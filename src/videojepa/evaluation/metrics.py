"""Classification metrics: top-k, per-class accuracy, confusion matrix and its plot."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["topk_accuracy", "per_class_accuracy", "confusion_matrix", "plot_confusion", "mean_std", "summarize"]


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose label is among the ``k`` highest scores (``k`` is capped at the class count).

    ``scores``: logits or probabilities ``[N, C]``; ``labels``: ``LongTensor[N]``. Returns ``{k: accuracy}``.
    """
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be [N, C] with N = len(labels); got {tuple(scores.shape)} and {len(labels)} labels")
    if len(labels) == 0:
        return {int(k): float("nan") for k in ks}
    labels = labels.to(scores.device)
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # [N, kmax]
    hit = top == labels[:, None]
    return {int(k): hit[:, :min(k, kmax)].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``LongTensor[C, C]``: row = true class, column = predicted class."""
    preds, labels = preds.reshape(-1).long().cpu(), labels.reshape(-1).long().cpu()
    idx = labels * num_classes + preds
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Recall of each class, ``FloatTensor[C]`` (``nan`` for a class absent from ``labels``)."""
    cm = confusion_matrix(preds, labels, num_classes).double()
    support = cm.sum(dim=1)
    return torch.where(support > 0, cm.diagonal() / support.clamp(min=1), torch.full_like(support, float("nan"))).float()


def summarize(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """``top1``, ``top5``, ``per_class`` (list), ``mean_per_class`` of scores ``[N, C]``."""
    acc = topk_accuracy(probs, labels, (1, 5))
    pc = per_class_accuracy(probs.argmax(dim=1), labels, probs.shape[1])
    valid = pc[~pc.isnan()]
    return {"top1": acc[1], "top5": acc[5], "per_class": [None if math.isnan(v) else v for v in pc.tolist()],
            "mean_per_class": valid.mean().item() if len(valid) else float("nan")}


def mean_std(values: Sequence[float]) -> dict:
    """``{"mean", "std", "n"}``; ``std`` is the sample standard deviation (0 for a single value)."""
    v = [float(x) for x in values]
    if not v:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": m, "std": s, "n": len(v)}


def plot_confusion(cm: torch.Tensor, class_names: Sequence[str] | None, path: str | Path, *, normalize: bool = True,
                   title: str | None = None) -> Path:
    """Write the confusion matrix as a PNG (rows: true class, normalised per row unless ``normalize=False``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = torch.as_tensor(cm).double().cpu()
    C = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(C)]
    if len(names) != C:
        raise ValueError(f"{len(names)} class names for a {C}x{C} confusion matrix")
    shown = cm / cm.sum(dim=1, keepdim=True).clamp(min=1) if normalize else cm
    size = min(4.0 + 0.35 * C, 40.0)
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown.numpy(), cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if C <= 60:
        ax.set_xticks(range(C)), ax.set_yticks(range(C))
        ax.set_xticklabels(names, rotation=90, fontsize=7), ax.set_yticklabels(names, fontsize=7)
        if C <= 25:
            for i in range(C):
                for j in range(C):
                    if cm[i, j] > 0:
                        v = shown[i, j].item()
                        ax.text(j, i, f"{v:.2f}" if normalize else f"{int(cm[i, j])}", ha="center", va="center",
                                fontsize=6, color="white" if v > 0.5 * (shown.max().item() or 1) else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
