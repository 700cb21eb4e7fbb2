"""Typed, validated configuration for fine-tuning (``videojepa finetune``).

A run is a :class:`FinetuneConfig`: sections ``model`` (where the encoder comes from), ``head``, ``data``,
``optim``, ``aug`` and ``train``. It is read from YAML (``--config``; ``base:`` works as for pretraining),
then ``key=value`` overrides with dotted keys; any unknown or mistyped key is an error that names it.
Defaults follow VideoMAE's fine-tuning recipe scaled to a CPU (see ``shared/FINETUNE.md``): AdamW, layer-wise
lr decay 0.75, weight decay 0.05 (none on 1-D parameters), warmup + cosine, drop path 0.1, label smoothing 0.1,
no mixup / cutmix and no horizontal flip unless asked for.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError, _read_with_base, _to_dict, apply_overrides, build_sections, check_sections
from ..models.pooler import HEAD_KINDS

__all__ = ["FinetuneConfig", "FTModelSection", "FTHeadSection", "FTDataSection", "FTOptimSection", "FTAugSection",
           "FTTrainSection", "load_finetune_config"]


@dataclass(frozen=True)
class FTModelSection:
    """``init``: a pretraining checkpoint or weights file/folder (``runs/.../step_*.pt``, an official file, HF or
    videojepa weights), a published name (``videojepa weights list``), an encoder preset (``videojepa models``:
    random init) or ``random`` (random init of ``name`` with ``overrides``, the from-scratch baseline).
    ``part``: which encoder of a checkpoint (``target_encoder``, the EMA one the official evaluations use, or
    ``encoder``)."""

    init: str = "random"
    part: str = "target_encoder"
    name: str = "vit_nano_cpu"
    overrides: dict = field(default_factory=lambda: {"patch_size": 8, "tubelet_size": 2})
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        if self.part not in ("target_encoder", "encoder"):
            raise ConfigError(f"model.part must be 'target_encoder' or 'encoder', got {self.part!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"model.drop_path must be in [0, 1), got {self.drop_path}")


@dataclass(frozen=True)
class FTHeadSection:
    """``kind``: ``attentive`` (``depth`` 1: V-JEPA 1's probe; 4: V-JEPA 2's, which converts to HF's
    ``VJEPA2ForVideoClassification``) or ``meanpool`` (VideoMAE: mean -> LayerNorm -> Linear, init x 1e-3).
    ``init``: ``random``, or ``probe``: before the first step, the frozen encoder's features of the training
    subset train ``videojepa probe``'s grid (``probe_lrs`` x ``probe_weight_decays``, ``probe_epochs``), and the
    head starts from the best probe on ``val`` (on the training subset when there is no ``val``): linear-probe-
    then-fine-tune, attentive heads only. Its validation top-1 is the frozen-probe figure of the run."""

    kind: str = "attentive"
    depth: int = 1
    init: str = "random"  # "probe": start from the best probe of videojepa probe's grid on frozen features (LP-FT)
    num_heads: int | None = None  # None: the encoder's
    dropout: float = 0.0
    init_scale: float | None = None  # None: 1e-3 for meanpool (VideoMAE), 1 for attentive heads

    probe_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    probe_weight_decays: tuple[float, ...] = (0.1, 0.5)
    probe_epochs: int = 20

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ConfigError(f"head.kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if self.init not in ("random", "probe"):
            raise ConfigError(f"head.init must be 'random' or 'probe', got {self.init!r}")
        if self.init == "probe" and self.kind != "attentive":
            raise ConfigError("head.init=probe needs head.kind=attentive (the probes videojepa probe trains)")
        if self.depth < 1:
            raise ConfigError(f"head.depth must be >= 1, got {self.depth}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"head.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class FTDataSection:
    """``train`` / ``val`` / ``test``: ``INDEX`` specs (CSV index, folder of class sub-folders, ``frames:DIR``,
    ``images:DIR``, tar shards for ``train``, or ``synthetic:SPLIT[:N]``). ``label_fraction`` of ``train`` is
    kept per class (the stratified subsets ``videojepa probe`` draws, seeded by ``split_seed``). Clip size and
    spacing default to the encoder's. ``segments`` x ``views``: the final test protocol. ``on_error``: an
    unreadable ``val``/``test`` file is an error naming it (``raise``) or is listed and excluded (``report``);
    unreadable training files are always skipped, counted and named once, up to ``max_failure_rate``."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    label_fraction: float = 1.0
    split_seed: int = 0
    num_classes: int | None = None  # tar shards only: the label set cannot be listed up front
    num_frames: int | None = None
    crop_size: int | None = None
    frame_step: int | None = None
    fps: float | None = None
    batch_size: int = 16
    eval_batch_size: int = 32
    num_workers: int = 0
    random_resize_scale: tuple[float, float] = (0.5, 1.0)
    random_resize_aspect_ratio: tuple[float, float] = (0.75, 1.35)
    horizontal_flip: bool = False  # swaps left/right classes; turn on only where that cannot matter
    segments: int = 1
    views: int = 1
    on_error: str = "raise"
    max_failure_rate: float = 0.1
    synthetic: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {self.label_fraction}")
        for k in ("batch_size", "eval_batch_size", "segments", "views"):
            if getattr(self, k) < 1:
                raise ConfigError(f"data.{k} must be >= 1, got {getattr(self, k)}")
        if self.on_error not in ("raise", "report"):
            raise ConfigError(f"data.on_error must be 'raise' or 'report', got {self.on_error!r}")
        if self.frame_step is not None and self.fps is not None:
            raise ConfigError("data: set at most one of frame_step and fps")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"data.max_failure_rate must be in [0, 1], got {self.max_failure_rate}")
        lo, hi = self.random_resize_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"data.random_resize_scale must satisfy 0 < low <= high <= 1, got {[lo, hi]}")


@dataclass(frozen=True)
class FTOptimSection:
    """AdamW. ``lr``: the peak lr of the encoder's final norm and of the head (``x head_lr_scale`` for the head);
    block ``i`` (0-based) of ``L`` gets ``lr * layer_decay**(L - i)``, the patch embedding
    ``lr * layer_decay**(L + 1)`` (VideoMAE's mapping). Warmup (from 0) then cosine to ``final_lr``. ``freeze_steps`` K > 0: two stages, the head alone
    for K steps at ``freeze_lr`` (default: the head's lr) with its own warmup and cosine, then everything with a
    fresh warmup. No weight decay on biases, norms, other 1-D parameters, position tables and the probe query."""

    lr: float = 5e-4
    layer_decay: float = 0.75
    head_lr_scale: float = 1.0
    final_lr: float = 1e-6
    warmup_steps: int = 50
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = 1.0
    grad_accum: int = 1
    freeze_steps: int = 0
    freeze_lr: float | None = None

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"optim.layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.warmup_steps < 0 or self.freeze_steps < 0:
            raise ConfigError("optim.warmup_steps and optim.freeze_steps must be >= 0")
        if self.grad_accum < 1:
            raise ConfigError(f"optim.grad_accum must be >= 1, got {self.grad_accum}")


@dataclass(frozen=True)
class FTAugSection:
    """Label smoothing, and mixup / cutmix (off by default): with probability ``mix_prob`` a batch is mixed,
    by cutmix with probability ``switch_prob`` when both are on (VideoMAE: mixup 0.8, cutmix 1.0, switch 0.5)."""

    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"aug.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.mixup < 0 or self.cutmix < 0:
            raise ConfigError("aug.mixup and aug.cutmix are Beta(alpha, alpha) parameters and must be >= 0")


@dataclass(frozen=True)
class FTTrainSection:
    """``steps``: the budget in optimizer steps (so 1% / 10% / 100% runs get equal compute). ``select``: the
    weights exported and tested at the end, ``last`` or ``best`` (highest ``val`` top-1; never ``test``)."""

    seed: int = 0
    steps: int = 600
    dtype: str = "auto"
    device: str = "auto"
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    select: str = "last"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"train.steps must be >= 1, got {self.steps}")
        for k in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, k) < 1:
                raise ConfigError(f"train.{k} must be >= 1, got {getattr(self, k)}")
        if self.select not in ("last", "best"):
            raise ConfigError(f"train.select must be 'last' or 'best', got {self.select!r}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"train.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    model: FTModelSection = field(default_factory=FTModelSection)
    head: FTHeadSection = field(default_factory=FTHeadSection)
    data: FTDataSection = field(default_factory=FTDataSection)
    optim: FTOptimSection = field(default_factory=FTOptimSection)
    aug: FTAugSection = field(default_factory=FTAugSection)
    train: FTTrainSection = field(default_factory=FTTrainSection)

    def __post_init__(self) -> None:
        if not self.data.train:
            raise ConfigError("data.train is required: the labelled training videos (--train INDEX, e.g. a folder of "
                              "class sub-folders, a CSV index or synthetic:train)")
        if self.train.select == "best" and not self.data.val:
            raise ConfigError("train.select=best needs data.val (selection is never made on the test set)")

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        d = copy.deepcopy(d or {})
        check_sections(cls, d)
        return build_sections(cls, d)


def load_finetune_config(path: str | Path | None = None, overrides: list[str] | None = None) -> FinetuneConfig:
    """Defaults, then the YAML at ``path`` (if any), then ``key=value`` overrides."""
    d = _read_with_base(path, ())[0] if path else {}
    return FinetuneConfig.from_dict(apply_overrides(d, overrides or []))
