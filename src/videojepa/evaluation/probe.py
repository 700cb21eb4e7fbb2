"""Probes on frozen features: a grid of attentive or linear probes trained in one pass, and k-NN.

:func:`train_probe_grid` trains one probe per ``(lr, weight decay)`` pair of a grid *together*: every batch
of features goes through all ``K`` probes, the ``K`` losses are summed and one backward pass gives each
probe the gradient of its own loss (V-JEPA 2's ``multihead_kwargs``, DINOv2's ``AllClassifiers``). Each
probe has its own AdamW state, learning rate and weight decay (V-JEPA 2: the weight decay is constant and
applies to every parameter; the learning rate warms up linearly, then follows a cosine to 0). The best
probe on the validation set is reported with its hyper-parameters.

Attentive probes are :class:`~videojepa.models.pooler.AttentiveClassifier` (both official forms, so the
saved probes load like the released ones). Depth-1 probes (the V-JEPA 1 form, the default here) are
trained as one stacked module whose cross-attention with a single query is computed without projecting
every token to keys and values: with ``LN(x) = g * xhat + b``, the score of token ``i`` for head ``h``
is ``(g * W_k,h^T q_h) . xhat_i`` up to a constant that softmax ignores, and the attended value is
``W_v,h (g * sum_i a_i xhat_i + b) + b_v,h``. That is the same function (equal to float rounding; tested
against ``AttentiveClassifier``) for ``~D/H`` times less work, which makes grids of probes cheap on a CPU.
Deeper probes (the V-JEPA 2 form, self-attention over all tokens) run as ``K`` ordinary modules.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.pooler import PROBE_LN_EPS, AttentiveClassifier, MeanPoolClassifier, ProbeConfig
from ..rng import derive_seed, torch_generator
from .features import FeatureSet
from .metrics import summarize, topk_accuracy

__all__ = ["ProbeGridConfig", "ProbeGridResult", "LinearProbe", "train_probe_grid", "knn_accuracy",
           "predict_probs", "save_probe", "load_probe", "default_num_heads", "KINDS", "LINEAR_FORMAT"]

KINDS = ("attentive", "linear")
FORMS = ("vjepa1", "vjepa2")
LINEAR_FORMAT = "videojepa-linear-probe/1"


@dataclass
class ProbeGridConfig:
    """A grid of probes trained together (see the module docstring).

    ``probe_depth``: 1 = the V-JEPA 1 form (one cross-attention block; holds the dead ``xattn.proj``),
    4 = the V-JEPA 2 form (3 self-attention blocks over the tokens, then the cross-attention); ``form``
    overrides which form (``"vjepa1"`` / ``"vjepa2"``) and ``xattn_proj`` whether the dead output projection
    is held (``None``: as the form). ``num_heads``: ``None`` picks :func:`default_num_heads`.
    ``warmup_epochs``: linear warmup from 0 (may be fractional). ``aggregate``: how multi-view features are
    grouped (see :meth:`~videojepa.evaluation.features.FeatureSet.by_view`).
    """

    kind: str = "attentive"
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decays: tuple[float, ...] = (0.1, 0.5)
    epochs: int = 20
    batch_size: int = 16
    warmup_epochs: float = 1.0
    probe_depth: int = 1
    num_heads: int | None = None
    form: str | None = None
    xattn_proj: bool | None = None
    label_smoothing: float = 0.0
    aggregate: str = "concat"
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        self.lrs = tuple(float(x) for x in self.lrs)
        self.weight_decays = tuple(float(x) for x in self.weight_decays)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.lrs or not self.weight_decays:
            raise ValueError("the grid needs at least one learning rate and one weight decay")
        if any(not (x > 0 and math.isfinite(x)) for x in self.lrs):
            raise ValueError(f"learning rates must be > 0, got {self.lrs}")
        if any(not (x >= 0 and math.isfinite(x)) for x in self.weight_decays):
            raise ValueError(f"weight decays must be >= 0, got {self.weight_decays}")
        for k in ("epochs", "batch_size", "probe_depth", "eval_batch_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.form is not None and self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS} or None, got {self.form!r}")
        if self.aggregate not in ("concat", "average"):
            raise ValueError(f"aggregate must be 'concat' or 'average', got {self.aggregate!r}")

    @property
    def grid(self) -> list[tuple[float, float]]:
        return [(lr, wd) for lr in self.lrs for wd in self.weight_decays]

    def probe_config(self, dim: int, num_classes: int) -> ProbeConfig:
        """The :class:`ProbeConfig` of every attentive probe of the grid."""
        form = self.form or ("vjepa1" if self.probe_depth == 1 else "vjepa2")
        heads = self.num_heads or default_num_heads(dim)
        proj = (form == "vjepa1") if self.xattn_proj is None else bool(self.xattn_proj)
        return ProbeConfig(embed_dim=dim, num_heads=heads, depth=self.probe_depth, num_classes=num_classes,
                           xattn_proj=proj, self_attn_position="after" if form == "vjepa1" else "before")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lrs"], d["weight_decays"] = list(self.lrs), list(self.weight_decays)
        return d


def default_num_heads(dim: int) -> int:
    """16 heads for widths >= 1024 (the official V-JEPA 2 probes), else the most heads (<= 8) of width >= 32."""
    if dim >= 1024 and dim % 16 == 0:
        return 16
    return next(h for h in (8, 4, 2, 1) if dim % h == 0 and (dim // h >= 32 or h == 1))


# ---------------------------------------------------------------------------------------------- probes
class LinearProbe(nn.Module):
    """``(mean-pooled) features -> standardise with the training statistics -> Linear``.

    Accepts pooled features ``[B, D]`` or tokens ``[B, N, D]`` (mean-pooled first)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.dim, self.num_classes = int(dim), int(num_classes)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.mean(dim=1)
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"linear probe expects features [B, {self.dim}] (or tokens [B, N, {self.dim}]), "
                             f"got shape {tuple(x.shape)}")
        return self.linear((x - self.mean) / self.std)

    def config(self) -> dict:
        return {"dim": self.dim, "num_classes": self.num_classes}


def _seeded(seed: int, *keys):
    """Initialise modules from an explicit stream without touching the caller's global RNG."""
    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(int(seed), *keys))
            yield
    return ctx()


class _StackedLinear(nn.Module):
    def __init__(self, K: int, dim: int, num_classes: int, mean: torch.Tensor, std: torch.Tensor, seed: int) -> None:
        super().__init__()
        self.K, self.dim, self.num_classes = K, dim, num_classes
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        with _seeded(seed, "linear-probe-init"):
            w = torch.empty(K, num_classes, dim)
            nn.init.trunc_normal_(w, std=0.02, a=-2.0, b=2.0)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(K, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, K, C]
        if x.ndim == 3:
            x = x.mean(dim=1)
        x = (x - self.mean) / self.std
        return torch.einsum("bd,kcd->bkc", x, self.weight) + self.bias

    def param_specs(self):
        return [(self.weight, None), (self.bias, None)]

    def export(self, k: int) -> nn.Module:
        m = LinearProbe(self.dim, self.num_classes)
        m.load_state_dict({"mean": self.mean, "std": self.std, "linear.weight": self.weight[k],
                           "linear.bias": self.bias[k]})
        return m


_STACK_KEYS = {  # stacked parameter name -> AttentiveClassifier key
    "query": "pooler.query_tokens",
    "q_w": "pooler.cross_attention_block.xattn.q.weight", "q_b": "pooler.cross_attention_block.xattn.q.bias",
    "kv_w": "pooler.cross_attention_block.xattn.kv.weight", "kv_b": "pooler.cross_attention_block.xattn.kv.bias",
    "n1_w": "pooler.cross_attention_block.norm1.weight", "n1_b": "pooler.cross_attention_block.norm1.bias",
    "n2_w": "pooler.cross_attention_block.norm2.weight", "n2_b": "pooler.cross_attention_block.norm2.bias",
    "fc1_w": "pooler.cross_attention_block.mlp.fc1.weight", "fc1_b": "pooler.cross_attention_block.mlp.fc1.bias",
    "fc2_w": "pooler.cross_attention_block.mlp.fc2.weight", "fc2_b": "pooler.cross_attention_block.mlp.fc2.bias",
    "lin_w": "linear.weight", "lin_b": "linear.bias",
}
_DEAD_KEYS = {"proj_w": "pooler.cross_attention_block.xattn.proj.weight",
              "proj_b": "pooler.cross_attention_block.xattn.proj.bias"}


def _init_probes(cfg: ProbeConfig, K: int, seed: int) -> list[AttentiveClassifier]:
    out = []
    for k in range(K):
        with _seeded(seed, "attentive-probe-init", k):
            out.append(AttentiveClassifier(cfg))
    return out


class _StackedAttentive(nn.Module):
    """``K`` depth-1 attentive probes with one query, as stacked parameters (see the module docstring)."""

    def __init__(self, cfg: ProbeConfig, K: int, seed: int = 0, init: list[AttentiveClassifier] | None = None) -> None:
        super().__init__()
        if cfg.depth != 1 or cfg.num_queries != 1:
            raise ValueError("the stacked attentive probe handles depth 1 with one query")
        self.cfg, self.K = cfg, K
        mods = init if init is not None else _init_probes(cfg, K, seed)
        sds = [m.state_dict() for m in mods]
        for name, key in _STACK_KEYS.items():
            self.register_parameter(name, nn.Parameter(torch.stack([sd[key] for sd in sds]).clone()))
        if cfg.xattn_proj:  # held, never applied (V-JEPA 1): kept only to be written out with the probe
            for name, key in _DEAD_KEYS.items():
                self.register_buffer(name, torch.stack([sd[key] for sd in sds]).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, K, C]
        K, D, H = self.K, self.cfg.embed_dim, self.cfg.num_heads
        hd = D // H
        B, N, _ = x.shape
        xhat = F.layer_norm(x, (D,), eps=self.cfg.layer_norm_eps)  # the LayerNorm without its affine part
        q0 = self.query[:, 0, 0]  # [K, D] (query_tokens are [1, 1, D] per probe)
        q = torch.einsum("ki,koi->ko", q0, self.q_w) + self.q_b  # [K, D]
        wk = self.kv_w[:, :D].reshape(K, H, hd, D)
        wv = self.kv_w[:, D:].reshape(K, H, hd, D)
        u = torch.einsum("khe,khed->khd", q.reshape(K, H, hd), wk) * self.n1_w[:, None, :] / math.sqrt(hd)
        scores = torch.matmul(xhat, u.reshape(K * H, D).t())  # [B, N, K*H]
        a = scores.transpose(1, 2).softmax(dim=-1)  # [B, K*H, N]
        p = torch.bmm(a, xhat).reshape(B, K, H, D)  # attention-weighted mean of the normalised tokens
        ln = p * self.n1_w[None, :, None, :] + self.n1_b[None, :, None, :]
        o = torch.einsum("bkhd,khed->bkhe", ln, wv) + self.kv_b[:, D:].reshape(K, H, hd)
        t = q0[None] + o.reshape(B, K, D)
        y = F.layer_norm(t, (D,), eps=self.cfg.layer_norm_eps) * self.n2_w + self.n2_b
        h = F.gelu(torch.einsum("bkd,kod->bko", y, self.fc1_w) + self.fc1_b)
        t = t + torch.einsum("bko,kdo->bkd", h, self.fc2_w) + self.fc2_b
        return torch.einsum("bkd,kcd->bkc", t, self.lin_w) + self.lin_b

    def param_specs(self):
        return [(p, None) for p in self.parameters()]

    def export(self, k: int) -> AttentiveClassifier:
        sd = {key: getattr(self, name)[k].detach().clone() for name, key in _STACK_KEYS.items()}
        if self.cfg.xattn_proj:
            sd.update({key: getattr(self, name)[k].clone() for name, key in _DEAD_KEYS.items()})
        with torch.device("meta"):
            m = AttentiveClassifier(self.cfg)
        m = m.to_empty(device="cpu")
        m.load_state_dict({k_: v.cpu() for k_, v in sd.items()}, strict=True)
        return m.eval()


class _ProbeList(nn.Module):
    """``K`` ordinary attentive probes (any depth, any form)."""

    def __init__(self, cfg: ProbeConfig, K: int, seed: int = 0, init: list[AttentiveClassifier] | None = None) -> None:
        super().__init__()
        self.cfg, self.K = cfg, K
        self.probes = nn.ModuleList(init if init is not None else _init_probes(cfg, K, seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.probes], dim=1)

    def param_specs(self):
        return [(p, k) for k, m in enumerate(self.probes) for p in m.parameters()]

    def export(self, k: int) -> AttentiveClassifier:
        m = AttentiveClassifier(self.cfg)
        m.load_state_dict({n: v.detach().cpu().clone() for n, v in self.probes[k].state_dict().items()})
        return m.eval()


# ---------------------------------------------------------------------------------------------- optimiser
class _GridAdamW:
    """AdamW (PyTorch's update, decoupled weight decay) with a learning rate and weight decay per probe.

    ``specs``: ``(param, k)`` pairs: ``k=None`` for a stacked parameter whose first axis is the probe,
    ``k=int`` for a parameter of probe ``k``. Parameters without a gradient are left alone, as AdamW does."""

    def __init__(self, specs, lrs: torch.Tensor, wds: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.specs = list(specs)
        self.lrs, self.wds = lrs, wds
        self.b1, self.b2 = betas
        self.eps, self.t = eps, 0
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in self.specs]

    @torch.no_grad()
    def step(self, scale: float, active: torch.Tensor | None = None) -> None:
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        lrs = self.lrs * scale if active is None else self.lrs * scale * active
        for (p, k), (m, v) in zip(self.specs, self.state):
            g = p.grad
            if g is None:
                continue
            if k is None:
                shape = (-1,) + (1,) * (p.ndim - 1)
                lr, wd = lrs.view(shape), self.wds.view(shape)
            else:
                lr, wd = lrs[k], self.wds[k]
            p.mul_(1 - lr * wd)
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
            p.sub_((lr / bc1) * m / denom)


def lr_scale(step: int, total: int, warmup: int) -> float:
    """Linear warmup from 0 over ``warmup`` steps, then a cosine from 1 to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


# ---------------------------------------------------------------------------------------------- training
@dataclass
class ProbeGridResult:
    """``best``: ``{"lr", "weight_decay", "top1", "top5", "per_class", "mean_per_class", "index", "probe_state"}``
    of the probe with the best validation top-1; ``grid``: one dict per ``(lr, wd)`` with its validation
    ``top1`` / ``top5`` / ``loss`` (and ``diverged``); ``best_probe``: that probe, an ``nn.Module`` in eval mode
    on the CPU; ``val_probs``: its view-averaged class probabilities on the validation set ``[N, C]``, with
    ``val_labels``."""

    best: dict
    grid: list[dict]
    best_probe: nn.Module
    val_probs: torch.Tensor
    val_labels: torch.Tensor
    config: ProbeGridConfig
    probe_config: dict
    seconds: float
    history: list[dict] = field(default_factory=list)


def _prepare(fs: FeatureSet, kind: str) -> FeatureSet:
    if kind == "linear":
        return fs.pooled_features()
    if fs.pooled:
        raise ValueError("the attentive probe needs token features: extract them with pool='none'")
    return fs


def _build(cfg: ProbeGridConfig, X: torch.Tensor, num_classes: int) -> tuple[nn.Module, dict]:
    K, D = len(cfg.grid), X.shape[-1]
    if cfg.kind == "linear":
        mean = X.mean(dim=0)
        std = X.std(dim=0).clamp(min=1e-6) if X.shape[0] > 1 else torch.ones_like(mean)
        return _StackedLinear(K, D, num_classes, mean, std, cfg.seed), {"kind": "linear", "dim": D,
                                                                         "num_classes": num_classes}
    pcfg = cfg.probe_config(D, num_classes)
    desc = {"kind": "attentive", **pcfg.to_dict()}
    if pcfg.depth == 1 and pcfg.num_queries == 1:
        return _StackedAttentive(pcfg, K, cfg.seed), desc
    return _ProbeList(pcfg, K, cfg.seed), desc


@torch.no_grad()
def predict_probs(probe: nn.Module, fs: FeatureSet | torch.Tensor, *, aggregate: str = "concat",
                  batch_size: int = 128, device="cpu") -> torch.Tensor:
    """Class probabilities averaged over views (the multi-view test protocol; REFERENCE §6.2).

    ``fs``: a :class:`FeatureSet` (single- or multi-view; grouped by :meth:`FeatureSet.by_view` with
    ``aggregate``) or a tensor ``[N, M, ...]`` of ``M`` views per item. Each view goes through the probe on its
    own; the softmax of the ``M`` outputs is averaged. Returns ``[N, C]`` (``[N, K, C]`` for a stacked grid).
    """
    views = fs.by_view(aggregate) if isinstance(fs, FeatureSet) else fs
    dev = torch.device(device)
    was = probe.training
    probe.eval().to(dev)
    out = []
    try:
        for i in range(0, views.shape[0], batch_size):
            v = views[i:i + batch_size].to(dev)
            b, M = v.shape[:2]
            logits = probe(v.flatten(0, 1)).float()
            out.append(logits.softmax(dim=-1).reshape(b, M, *logits.shape[1:]).mean(dim=1).cpu())
    finally:
        probe.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def train_probe_grid(train: FeatureSet, val: FeatureSet, num_classes: int, cfg: ProbeGridConfig | None = None,
                     progress: bool = True) -> ProbeGridResult:
    """Train the grid of probes ``cfg`` describes on ``train`` and pick the best on ``val`` (top-1).

    Attentive probes need token features (``pool="none"``); linear probes mean-pool tokens if given them.
    Multi-view training features give one training sample per view; validation follows the multi-view
    protocol (:func:`predict_probs`). Items with an unknown label (``-1``) are ignored.
    """
    cfg = cfg or ProbeGridConfig()
    t0 = time.perf_counter()
    dev = torch.device(cfg.device)
    train, val = _prepare(train, cfg.kind), _prepare(val, cfg.kind)
    X, y = train.for_training(cfg.aggregate)
    keep = y >= 0
    X, y = X[keep], y[keep]
    if len(y) == 0:
        raise ValueError("no labelled training sample")
    if int(y.max()) >= num_classes:
        raise ValueError(f"a training label ({int(y.max())}) is >= num_classes ({num_classes})")
    vkeep = val.labels >= 0
    if not bool(vkeep.any()):
        raise ValueError("no labelled validation sample")
    val = val.subset(torch.nonzero(vkeep).flatten())
    if int(val.labels.max()) >= num_classes:
        raise ValueError(f"a validation label ({int(val.labels.max())}) is >= num_classes ({num_classes})")
    if X.shape[-1] != val.dim:
        raise ValueError(f"train features have width {X.shape[-1]}, validation features {val.dim}")
    grid = cfg.grid
    K = len(grid)
    probes, desc = _build(cfg, X, num_classes)
    probes.to(dev).train()
    lrs = torch.tensor([lr for lr, _ in grid], device=dev)
    wds = torch.tensor([wd for _, wd in grid], device=dev)
    opt = _GridAdamW(probes.param_specs(), lrs, wds)
    N = len(y)
    bs = min(cfg.batch_size, N)
    spe = -(-N // bs)
    total, warmup = cfg.epochs * spe, int(round(cfg.warmup_epochs * spe))
    gen = torch_generator(cfg.seed, "probe-batches")
    alive = torch.ones(K, device=dev)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{K} {cfg.kind} probes", unit="step", dynamic_ncols=True, leave=False)
    history, step = [], 0
    try:
        for epoch in range(cfg.epochs):
            perm = torch.randperm(N, generator=gen)
            run = torch.zeros(K, device=dev)
            for i in range(spe):
                idx = perm[i * bs:(i + 1) * bs]
                xb, yb = X[idx].to(dev, non_blocking=True).float(), y[idx].to(dev)
                with amp:
                    logits = probes(xb)  # [B, K, C]
                per = F.cross_entropy(logits.float().reshape(-1, num_classes), yb.repeat_interleave(K),
                                      label_smoothing=cfg.label_smoothing, reduction="none").reshape(-1, K).mean(0)
                finite = torch.isfinite(per)
                alive = alive * finite.float()
                probes.zero_grad(set_to_none=True)
                torch.where(finite, per, torch.zeros_like(per)).sum().backward()
                opt.step(lr_scale(step, total, warmup), alive)
                step += 1
                run += per.detach().nan_to_num(nan=float("inf"))
                if bar is not None:
                    bar.update(1)
            history.append({"epoch": epoch + 1, "loss": (run / spe).tolist()})
            if bar is not None:
                bar.set_postfix(loss=f"{float((run / spe)[alive > 0].min()) if alive.any() else float('nan'):.3f}")
    finally:
        if bar is not None:
            bar.close()
    probs = predict_probs(probes, val, aggregate=cfg.aggregate, batch_size=cfg.eval_batch_size, device=dev)
    labels = val.labels
    rows = []
    for k, (lr, wd) in enumerate(grid):
        pk = probs[:, k]
        ok = bool(alive[k] > 0) and bool(torch.isfinite(pk).all())
        acc = topk_accuracy(pk.nan_to_num(0.0), labels, (1, 5))
        loss = F.nll_loss(pk.clamp(min=1e-12).log(), labels).item() if ok else float("nan")
        rows.append({"lr": lr, "weight_decay": wd, "top1": acc[1] if ok else 0.0, "top5": acc[5] if ok else 0.0,
                     "loss": loss, "diverged": not ok})
    order = sorted(range(K), key=lambda k: (-rows[k]["top1"], rows[k]["loss"] if rows[k]["loss"] == rows[k]["loss"]
                                             else float("inf"), k))
    b = order[0]
    best_probe = probes.export(b)
    best_probs = probs[:, b].nan_to_num(0.0)
    s = summarize(best_probs, labels)
    best = {"lr": grid[b][0], "weight_decay": grid[b][1], "top1": rows[b]["top1"], "top5": rows[b]["top5"],
            "per_class": s["per_class"], "mean_per_class": s["mean_per_class"], "loss": rows[b]["loss"], "index": b,
            "probe_state": {k_: v.detach().cpu() for k_, v in best_probe.state_dict().items()}}
    return ProbeGridResult(best=best, grid=rows, best_probe=best_probe, val_probs=best_probs, val_labels=labels,
                           config=cfg, probe_config=desc, seconds=time.perf_counter() - t0, history=history)


# ---------------------------------------------------------------------------------------------- k-NN
@torch.no_grad()
def knn_accuracy(train: FeatureSet, val: FeatureSet, k: int = 20, temperature: float = 0.07, *,
                 num_classes: int | None = None, aggregate: str = "concat", device="cpu",
                 batch_size: int = 256) -> dict:
    """Weighted k-NN on mean-pooled, L2-normalised features (DINO's protocol): each of the ``k`` nearest
    training features votes ``exp(cos / temperature)`` for its class; votes are normalised into a
    distribution, averaged over views (multi-view validation), and scored. Returns ``top1``, ``top5``,
    ``per_class``, ``mean_per_class`` and ``probs``."""
    dev = torch.device(device)
    tr, va = train.pooled_features(), val.pooled_features()
    Xt, yt = tr.for_training(aggregate)
    keep = yt >= 0
    Xt, yt = F.normalize(Xt[keep].float(), dim=-1).to(dev), yt[keep].to(dev)
    if len(yt) == 0:
        raise ValueError("no labelled training sample for k-NN")
    va = va.subset(torch.nonzero(va.labels >= 0).flatten())
    C = int(num_classes or max(int(yt.max()), int(va.labels.max()) if len(va) else 0) + 1)
    kk = min(int(k), len(yt))
    views = va.by_view(aggregate)  # [N, M, D]
    out = []
    for i in range(0, views.shape[0], batch_size):
        v = F.normalize(views[i:i + batch_size].to(dev).float(), dim=-1)
        b, M, D = v.shape
        sim = v.reshape(b * M, D) @ Xt.t()
        top, idx = sim.topk(kk, dim=1)
        w = (top / temperature).exp()
        votes = torch.zeros(b * M, C, device=dev).scatter_add_(1, yt[idx], w)
        votes = votes / votes.sum(dim=1, keepdim=True)
        out.append(votes.reshape(b, M, C).mean(dim=1).cpu())
    probs = torch.cat(out)
    s = summarize(probs, va.labels)
    return {**s, "k": kk, "temperature": temperature, "probs": probs}


# ---------------------------------------------------------------------------------------------- files
def save_probe(probe: nn.Module, dst: str | Path, *, class_names=None, evaluation: dict | None = None) -> Path:
    """Write a probe as ``dst/model.safetensors`` + ``dst/config.json``.

    An attentive probe is written in videojepa's weights format, so ``videojepa.load(dst)`` (and
    ``videojepa convert``) read it like any probe; a linear probe in its own small format. ``evaluation``
    (how its features are made: checkpoint, layers, frames, views, ...) is kept in ``config.json`` for
    ``videojepa classify``."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    names = list(class_names) if class_names is not None else None
    if isinstance(probe, (AttentiveClassifier, MeanPoolClassifier)):
        from ..interop.weights import Weights, write_videojepa

        w = Weights(source="videojepa probe", format="videojepa", probe=probe.cfg,
                    states={"probe": {k: v.detach().cpu() for k, v in probe.state_dict().items()}},
                    meta={"labels": names})
        write_videojepa(w, dst, parts=["probe"])
        cfg = json.loads((dst / "config.json").read_text())
    elif isinstance(probe, LinearProbe):
        from safetensors.torch import save_file

        from ..training.checkpoint import file_digest

        tmp = dst / "model.safetensors.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in probe.state_dict().items()}, str(tmp),
                  metadata={"format": LINEAR_FORMAT})
        digest = file_digest(tmp)
        tmp.replace(dst / "model.safetensors")
        cfg = {"format": LINEAR_FORMAT, "weights": "model.safetensors", "weights_sha256": digest,
               "linear": probe.config(), "labels": names}
    else:
        raise TypeError(f"cannot save a {type(probe).__name__} (expected AttentiveClassifier or LinearProbe)")
    cfg["evaluation"] = evaluation or {}
    tmp = dst / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.replace(dst / "config.json")
    return dst


def load_probe(src: str | Path) -> tuple[nn.Module, dict]:
    """``(probe, config)`` from a folder written by :func:`save_probe` (or any probe ``videojepa.load``
    reads). ``config["labels"]``: class names when known; ``config["evaluation"]``: how its features were
    made."""
    src = Path(src)
    cfg_path = src / "config.json" if src.is_dir() else src
    if cfg_path.suffix == ".json" and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format") == LINEAR_FORMAT:
            from safetensors.torch import load_file

            st = cfg_path.parent / cfg.get("weights", "model.safetensors")
            if not st.is_file():
                raise FileNotFoundError(f"{src}: probe weights not found: {st}")
            from ..interop.weights import _verify_ours

            note = _verify_ours(st, cfg.get("weights_sha256"))
            if note:
                import warnings

                from ..training.checkpoint import UnverifiedWarning

                warnings.warn(note, UnverifiedWarning, stacklevel=2)
            m = LinearProbe(**cfg["linear"])
            m.load_state_dict(load_file(str(st)), strict=True)
            return m.eval(), cfg
    else:
        cfg = {}
    from ..api import load

    m = load(src, part="probe")
    info = dict(getattr(m, "pretrained_cfg", {}) or {})
    cfg = {**cfg, "labels": cfg.get("labels", info.get("labels")), "evaluation": cfg.get("evaluation", {})}
    return m, cfg
