"""Run metrics: a CSV that survives resumes, and a PNG of the curves; optionally TensorBoard scalars too."""
from __future__ import annotations

import csv
import math
from pathlib import Path

__all__ = ["MetricsLog", "plot_metrics", "COLUMNS", "TENSORBOARD_MISSING", "tensorboard_available", "require_tensorboard"]

TENSORBOARD_MISSING = "train.tensorboard=true needs the tensorboard package: pip install tensorboard"


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def require_tensorboard(message: str = TENSORBOARD_MISSING) -> None:
    """Raise ``RuntimeError(message)`` when the ``tensorboard`` package is not installed."""
    if not tensorboard_available():
        raise RuntimeError(message)


def _summary_writer(log_dir: Path, purge_step: int | None):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

COLUMNS = ["step", "loss", "loss_jepa", "loss_reg", "lr", "wd", "ema", "grad_norm", "clips_per_s", "elapsed_s",
           "target_std", "target_token_std", "target_erank", "pred_std", "pred_token_std", "pred_erank", "samples_skipped"]


class MetricsLog:
    """Append-only CSV of per-step metrics. On resume, rows after the resumed step are dropped.

    ``tensorboard_dir``: also write each appended row's numeric values as TensorBoard scalars there, keyed
    by the row's step (needs the ``tensorboard`` package; on resume, events from the resumed step on are
    purged, like the CSV rows)."""

    def __init__(self, path: str | Path, resume_step: int | None = None, columns: list[str] | None = None,
                 tensorboard_dir: str | Path | None = None) -> None:
        self.path = Path(path)
        self.columns = list(columns or COLUMNS)
        self.writer = None
        if tensorboard_dir is not None:
            require_tensorboard()
            self.writer = _summary_writer(Path(tensorboard_dir), resume_step if resume_step else None)
        rows = self.read() if resume_step is not None and self.path.exists() else []
        rows = [{k: v for k, v in r.items() if k in self.columns} for r in rows
                if int(float(r["step"])) < (resume_step or 0)]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown metric column(s): {sorted(unknown)}")
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow({k: _fmt(v) for k, v in row.items()})
        if self.writer is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(k, float(v), global_step=step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def read(self) -> list[dict]:
        with self.path.open() as f:
            return list(csv.DictReader(f))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _col(rows, key):
    xs, ys = [], []
    for r in rows:
        v = r.get(key, "")
        if v not in ("", None):
            y = float(v)
            if math.isfinite(y):
                xs.append(int(float(r["step"])))
                ys.append(y)
    return xs, ys


def plot_metrics(csv_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """Loss, schedules and collapse diagnostics, four panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    x, y = _col(rows, "loss")
    ax[0, 0].plot(x, y, lw=0.8, label="loss")
    if len(y) >= 10:
        k = max(5, len(y) // 20)
        sm = [sum(y[max(0, i - k + 1): i + 1]) / len(y[max(0, i - k + 1): i + 1]) for i in range(len(y))]
        ax[0, 0].plot(x, sm, lw=2, label=f"mean of {k}")
    ax[0, 0].set_title("loss (L1 in latent space)")
    ax[0, 0].legend()
    x, y = _col(rows, "lr")
    ax[0, 1].plot(x, y, color="C2")
    ax[0, 1].set_ylabel("lr", color="C2")
    tw = ax[0, 1].twinx()
    x, y = _col(rows, "wd")
    tw.plot(x, y, color="C3")
    tw.set_ylabel("weight decay", color="C3")
    ax[0, 1].set_title("schedules")
    x, y = _col(rows, "ema")
    ax[1, 0].plot(x, y, color="C4")
    ax[1, 0].set_title("EMA momentum")
    for key, style in (("target_std", "-"), ("target_token_std", "--"), ("pred_std", ":")):
        x, y = _col(rows, key)
        if x:
            ax[1, 1].plot(x, y, style, marker=".", label=key)
    ax[1, 1].set_ylabel("feature std")
    if ax[1, 1].get_lines():
        ax[1, 1].legend(loc="upper left", fontsize=8)
    tw = ax[1, 1].twinx()
    for key, c in (("target_erank", "C5"), ("pred_erank", "C6")):
        x, y = _col(rows, key)
        if x:
            tw.plot(x, y, color=c, marker="x", label=key)
    tw.set_ylabel("effective rank")
    if tw.get_lines():
        tw.legend(loc="upper right", fontsize=8)
    ax[1, 1].set_title("collapse diagnostics")
    for a in ax.flat:
        a.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
