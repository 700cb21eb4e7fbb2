"""Typed, validated configuration for pretraining.

A run is described by :class:`PretrainConfig`, a tree of small dataclasses, one per concern. It is
read from YAML (a shipped preset resolved by name, or a path), then ``key=value`` overrides with
dotted keys are applied (``optim.lr=3e-4``, ``data.batch_size=8``); values are parsed as YAML. Any
unknown or mistyped key is an error that names it. The official V-JEPA 1 (``jepa``) and V-JEPA 2
(``vjepa2``) pretraining YAMLs are recognised by their sections and translated; their cluster-only
keys are accepted and reported as ignored. The resolved config is written into every run directory.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .masks.multiblock import EQUALIZE_MODES, MultiBlockMaskConfig, TubeMaskConfig
from .models.predictor import PredictorConfig
from .models.registry import encoder_config, get_preset

__all__ = [
    "ModelSection", "DataSection", "MaskSection", "OptimSection", "LossSection", "TrainSection", "PretrainConfig",
    "load_config", "list_presets", "apply_overrides", "ConfigError",
]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key or value."""


# --------------------------------------------------------------------------- generic strict parsing

def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    return value


def _from_dict(cls, d: Any, where: str):
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) in {where}: {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in d.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _to_dict(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class ModelSection:
    """The encoder: a preset ``name`` plus any :class:`~videojepa.models.vit.EncoderConfig` field
    (``pos_embed``, ``patch_size``, ``embed_dim``, ...). Clip size comes from ``data``."""

    name: str = "vit_nano_cpu"
    overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_preset(self.name)


@dataclass(frozen=True)
class DataSection:
    """Clips for training. ``source: synthetic`` (default) renders the embedded dataset; ``source: files``
    reads real videos from ``datasets`` (CSV indexes, folders, tar shards; see :mod:`videojepa.data.sources`),
    mixed by ``datasets_weights`` when given.

    Frames of a clip are spaced by ``frame_step`` (default 4 when none of the three is set), by a target
    ``fps`` (read from timestamps), or spread over ``clip_duration`` seconds (``fps = num_frames /
    clip_duration``). ``num_clips``: clips per video (training: each from its own part of the video;
    evaluation: the segments). ``short_video``: ``loop``, ``pad`` (repeat the last frame) or ``skip``.
    ``eval_*``: the evaluation views (see :mod:`videojepa.data.transforms`); ``eval_on_error``:
    ``raise`` (an unreadable file stops the evaluation, naming it) or ``report`` (it is listed and excluded).
    """

    source: str = "synthetic"
    num_frames: int = 16
    crop_size: int | tuple[int, int] = (64, 64)
    batch_size: int = 16
    num_workers: int = 0
    pin_memory: bool = False
    synthetic: dict = field(default_factory=dict)
    # file-based sources (video pipeline)
    datasets: list[str] = field(default_factory=list)
    datasets_weights: list[float] | None = None
    frame_step: int | None = None
    fps: float | None = None
    clip_duration: float | None = None
    num_clips: int = 1
    short_video: str = "pad"
    random_resize_scale: tuple[float, float] = (0.3, 1.0)
    random_resize_aspect_ratio: tuple[float, float] = (0.75, 1.35)
    horizontal_flip: bool = True
    frame_folder_fps: float = 30.0
    decode_threads: int = 1
    eval_views: int = 1
    eval_short_side: int | None = None
    eval_on_error: str = "raise"
    max_failure_rate: float = 0.1  # stop training when more than this fraction of samples cannot be read

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"data.max_failure_rate must be in [0, 1], got {self.max_failure_rate}")
        if isinstance(self.crop_size, int):
            object.__setattr__(self, "crop_size", (self.crop_size, self.crop_size))
        if any(c < 1 for c in self.crop_size):
            raise ConfigError(f"data.crop_size must be positive, got {self.crop_size}")
        if self.source not in ("synthetic", "files"):
            raise ConfigError(f"data.source must be 'synthetic' or 'files', got {self.source!r}")
        for k in ("num_frames", "batch_size", "num_clips", "eval_views", "decode_threads"):
            if getattr(self, k) < 1:
                raise ConfigError(f"data.{k} must be >= 1, got {getattr(self, k)}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        spacing = [k for k in ("frame_step", "fps", "clip_duration") if getattr(self, k) is not None]
        if len(spacing) > 1:
            raise ConfigError(f"data: set at most one of frame_step, fps and clip_duration (got {', '.join(spacing)})")
        if self.frame_step is not None and self.frame_step < 1:
            raise ConfigError(f"data.frame_step must be >= 1, got {self.frame_step}")
        for k in ("fps", "clip_duration", "frame_folder_fps"):
            v = getattr(self, k)
            if v is not None and not (v > 0 and v != float("inf")):
                raise ConfigError(f"data.{k} must be a number > 0, got {v}")
        if self.short_video not in ("loop", "pad", "skip"):
            raise ConfigError(f"data.short_video must be 'loop', 'pad' or 'skip', got {self.short_video!r}")
        if self.eval_on_error not in ("raise", "report"):
            raise ConfigError(f"data.eval_on_error must be 'raise' or 'report', got {self.eval_on_error!r}")
        if self.eval_short_side is not None and self.eval_short_side < 1:
            raise ConfigError(f"data.eval_short_side must be >= 1, got {self.eval_short_side}")
        lo, hi = self.random_resize_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"data.random_resize_scale must satisfy 0 < low <= high <= 1, got {[lo, hi]}")
        lo, hi = self.random_resize_aspect_ratio
        if not 0 < lo <= hi:
            raise ConfigError(f"data.random_resize_aspect_ratio must satisfy 0 < low <= high, got {[lo, hi]}")
        if self.datasets_weights is not None:
            w = self.datasets_weights
            if len(w) != len(self.datasets):
                raise ConfigError(f"data.datasets_weights has {len(w)} weights for {len(self.datasets)} datasets")
            if any(x < 0 for x in w) or not sum(w) > 0:
                raise ConfigError(f"data.datasets_weights must be >= 0 with a positive sum, got {list(w)}")
        if self.source == "files" and not self.datasets:
            raise ConfigError("data.source=files needs data.datasets: a list of CSV indexes, folders or tar shards "
                              "(e.g. data.datasets=[/data/train.csv])")

    def clip_sampling(self):
        """The :class:`~videojepa.data.sampling.ClipSampling` these settings describe."""
        from .data.sampling import ClipSampling

        fps = self.fps if self.fps is not None else (
            self.num_frames / self.clip_duration if self.clip_duration is not None else None)
        step = None if fps is not None else (self.frame_step if self.frame_step is not None else 4)
        return ClipSampling(self.num_frames, frame_step=step, fps=fps, num_clips=self.num_clips,
                            short_video=self.short_video)


@dataclass(frozen=True)
class MaskSection:
    """``configs``: a list of ``{type: multiblock, ...}`` or ``{type: tube, ratio: ...}`` entries."""

    equalize: str = "random"
    configs: list[dict] = field(default_factory=lambda: [
        dict(type="multiblock", num_blocks=8, spatial_scale=[0.15, 0.15], temporal_scale=[1.0, 1.0], aspect_ratio=[0.75, 1.5]),
        dict(type="multiblock", num_blocks=2, spatial_scale=[0.7, 0.7], temporal_scale=[1.0, 1.0], aspect_ratio=[0.75, 1.5]),
    ])

    def __post_init__(self) -> None:
        if self.equalize not in EQUALIZE_MODES:
            raise ConfigError(f"mask.equalize must be one of {EQUALIZE_MODES}, got {self.equalize!r}")
        if not self.configs:
            raise ConfigError("mask.configs must hold at least one mask config")
        self.build()

    def build(self) -> list[MultiBlockMaskConfig | TubeMaskConfig]:
        out = []
        for i, c in enumerate(self.configs):
            c = dict(c)
            kind = c.pop("type", "multiblock")
            cls = {"multiblock": MultiBlockMaskConfig, "tube": TubeMaskConfig}.get(kind)
            if cls is None:
                raise ConfigError(f"mask.configs[{i}].type must be 'multiblock' or 'tube', got {kind!r}")
            out.append(_from_dict(cls, c, f"mask.configs[{i}]"))
        return out


LR_SCHEDULES = ("cosine", "wsd", "linear")


@dataclass(frozen=True)
class OptimSection:
    """Optimiser and schedules; all schedules are pure functions of the step (training/schedules.py).

    ``lr_schedule``: ``cosine`` (V-JEPA 1: warmup, then cosine to ``final_lr`` at
    ``schedule_steps``), ``wsd`` (V-JEPA 2: warmup, constant, then a linear cooldown to ``final_lr``
    over the last ``cooldown_steps``), ``linear`` (V-JEPA 2 cooldown phase: linear from ``lr``
    towards ``final_lr`` at ``schedule_steps``). ``schedule_steps`` null means ``train.max_steps``
    (a value above it reproduces the reference's ``ipe_scale``: the schedule never finishes).
    """

    lr_schedule: str = "cosine"
    start_lr: float = 2e-4
    lr: float = 6.25e-4
    final_lr: float = 1e-6
    warmup_steps: int = 0
    schedule_steps: int | None = None
    cooldown_steps: int = 0
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    ema: tuple[float, float] = (0.998, 1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = None
    clip_grad_after_warmup: bool = False
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"optim.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.grad_accum < 1:
            raise ConfigError(f"optim.grad_accum must be >= 1, got {self.grad_accum}")
        for i, m in enumerate(self.ema):
            if not 0.0 <= m <= 1.0:
                raise ConfigError(f"optim.ema[{i}] must be in [0, 1], got {m}")
        if self.warmup_steps < 0 or self.cooldown_steps < 0:
            raise ConfigError("optim.warmup_steps and optim.cooldown_steps must be >= 0")


OBJECTIVES = ("vjepa", "videomae", "maskfeat")
TARGET_NORMS = ("layer", "clip")


@dataclass(frozen=True)
class LossSection:
    """``objective``: ``vjepa`` (latent prediction of the EMA target), or the pixel-space baselines
    ``videomae`` (per-patch normalised pixels of the hidden tubelets) and ``maskfeat`` (HOG of the
    hidden tubelets), which share encoder, data, masks, schedules and checkpoints; their
    ``predictor`` section describes the light decoder."""

    objective: str = "vjepa"
    loss_exp: float = 1.0
    reg_coeff: float = 0.0
    token_var_coeff: float = 0.0  # experimental: hinge on the within-clip spread of encoder tokens (V-JEPA only)
    token_var_target: float = 0.5
    sigreg_coeff: float = 0.0  # experimental: isotropic-Gaussian regulariser on the context encoder's tokens
    sigreg_slices: int = 64
    target_norm: str = "layer"  # "clip": also standardise each feature over the tokens of its clip (experimental)
    norm_pix: bool = True
    hog_bins: int = 9
    hog_cell: int = 8

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"loss.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.loss_exp <= 0:
            raise ConfigError(f"loss.loss_exp must be > 0, got {self.loss_exp}")
        if self.sigreg_coeff < 0 or self.sigreg_slices < 1:
            raise ConfigError(f"loss.sigreg_coeff must be >= 0 and loss.sigreg_slices >= 1, got "
                              f"{self.sigreg_coeff}, {self.sigreg_slices}")
        if self.target_norm not in TARGET_NORMS:
            raise ConfigError(f"loss.target_norm must be one of {TARGET_NORMS}, got {self.target_norm!r}")
        if self.hog_bins < 2 or self.hog_cell < 1:
            raise ConfigError(f"loss.hog_bins must be >= 2 and loss.hog_cell >= 1, got {self.hog_bins}, {self.hog_cell}")


DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class TrainSection:
    seed: int = 0
    max_steps: int = 1000
    dtype: str = "auto"
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    diag_every: int = 50
    mask_token_by: str = "config"
    tensorboard: bool = False  # also log the metrics rows as TensorBoard scalars to RUN_DIR/tensorboard/

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"train.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1, got {self.max_steps}")
        for k in ("log_every", "checkpoint_every", "keep_checkpoints", "diag_every"):
            if getattr(self, k) < 1:
                raise ConfigError(f"train.{k} must be >= 1, got {getattr(self, k)}")
        if self.mask_token_by not in ("config", "first"):
            raise ConfigError(f"train.mask_token_by must be 'config' or 'first', got {self.mask_token_by!r}")


@dataclass(frozen=True)
class PretrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    predictor: dict = field(default_factory=dict)
    data: DataSection = field(default_factory=DataSection)
    mask: MaskSection = field(default_factory=MaskSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)

    def __post_init__(self) -> None:
        self.encoder_config()
        self.predictor_config()

    # -- derived model configs
    def encoder_config(self):
        try:
            return encoder_config(self.model.name, num_frames=self.data.num_frames, img_size=self.data.crop_size,
                                  **self.model.overrides)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None

    def predictor_config(self) -> PredictorConfig:
        d = dict(self.predictor)
        d.setdefault("num_mask_tokens", len(self.mask.configs))
        try:
            return PredictorConfig.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"predictor: {e}") from None

    def to_dict(self) -> dict:
        d = _to_dict(self)
        d["model"] = {"name": self.model.name, **self.model.overrides}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainConfig":
        d = copy.deepcopy(d or {})
        check_sections(cls, d)
        model = d.pop("model", {}) or {}
        if not isinstance(model, dict):
            raise ConfigError(f"model: expected a mapping, got {model!r}")
        name = model.pop("name", ModelSection.name)
        try:
            ms = ModelSection(name=name, overrides=model)
        except ValueError as e:
            raise ConfigError(f"model.name: {e}") from None
        pred = d.pop("predictor", {}) or {}
        if not isinstance(pred, dict):
            raise ConfigError(f"predictor: expected a mapping, got {pred!r}")
        return build_sections(cls, d, model=ms, predictor=pred)


def check_sections(cls, d) -> None:
    """``d`` is a mapping whose keys are all sections (fields) of the config class ``cls``."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)} "
                          f"(known: {', '.join(f.name for f in fields(cls))})")


def build_sections(cls, d: dict, **built):
    """``cls`` from a mapping of section -> mapping, each section parsed strictly (``built``: sections the
    caller made itself); a failed cross-section check is a :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    kwargs = {k: _from_dict(hints[k], v, k) for k, v in d.items()}
    try:
        return cls(**kwargs, **built)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


# --------------------------------------------------------------------------- presets, files, overrides

def _preset_dir():
    return resources.files("videojepa") / "configs" / "pretrain"


def list_presets() -> list[str]:
    """Names of the shipped pretraining presets."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def _read_yaml(name_or_path: str | Path) -> tuple[dict, str]:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        text, src = p.read_text(), str(p)
    else:
        res = _preset_dir() / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(f"unknown config preset {str(name_or_path)!r}; presets: {', '.join(list_presets())} "
                              "(or give a path to a .yaml file)")
        text, src = res.read_text(), f"preset {name_or_path}"
    try:
        d = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{src}: not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{src}: the top level must be a mapping")
    return d, src


def _merge(base: dict, child: dict) -> dict:
    """``child`` over ``base``: mappings merge key by key, anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for k, v in child.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read_with_base(name_or_path: str | Path, seen: tuple[str, ...]) -> tuple[dict, str]:
    """A YAML whose top-level ``base: PRESET_OR_PATH`` names the config it changes: that config (itself
    resolved the same way), with this file's keys merged over it."""
    d, src = _read_yaml(name_or_path)
    if "base" not in d:
        return d, src
    base = d.pop("base")
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{src}: base must be a preset name or a YAML path, got {base!r}")
    key = src if src.startswith("preset ") else str(Path(src).resolve())
    if key in seen:
        raise ConfigError(f"{src}: base configs form a cycle: {' -> '.join(seen + (key,))}")
    if not Path(base).is_absolute() and Path(base).suffix in (".yaml", ".yml") and Path(str(name_or_path)).exists():
        base = str(Path(str(name_or_path)).parent / base)  # a relative YAML path is relative to this file
    parent, _ = _read_with_base(base, seen + (key,))
    return _merge(parent, d), src


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested dict, in order."""
    d = copy.deepcopy(d)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return d


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> tuple[PretrainConfig, list[str]]:
    """Resolve a preset name or YAML path (default: the CPU demo preset), apply overrides.

    Returns the config and a list of notes (e.g. official keys that were ignored).
    """
    from .interop.official_config import is_official, translate_official

    d, src = _read_with_base(name_or_path or "cpu_demo", ())
    notes: list[str] = []
    if is_official(d):
        d, notes = translate_official(d, src)
    d = apply_overrides(d, overrides or [])
    return PretrainConfig.from_dict(d), notes
