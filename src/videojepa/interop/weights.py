"""Read any supported weights file into one container, check it strictly, build modules from it.

Supported sources (the format is detected from the file, never from its name):

- ``vjepa1``: official V-JEPA 1 ``.pth.tar`` (``encoder`` / ``predictor`` / ``target_encoder`` + training state)
- ``vjepa2``: official V-JEPA 2 ``.pt`` (RoPE with the legacy tiling, 10 predictor mask tokens)
- ``vjepa2-ac``: official V-JEPA 2-AC ``.pt``: its encoders and its action-conditioned predictor
  (part ``predictor`` builds a :class:`videojepa.models.ac_predictor.ACPredictor`)
- ``vjepa1-probe``: official V-JEPA 1 attentive probe, ``{"classifier": state dict, ...}``
- ``vjepa2-probe``: official V-JEPA 2 attentive probe, ``{"classifiers": [state dict, ...], ...}``
- ``hf``: HuggingFace transformers V-JEPA 2 folder (``config.json`` + ``model.safetensors``), with or without
  the video-classification head
- ``videojepa``: our exchange format, ``model.safetensors`` + ``config.json`` (a folder, or the file pair)
- ``videojepa-run``: one of our pretraining checkpoints (``runs/.../checkpoints/step_*.pt`` or ``step_*.dcp/``), or
  its run directory (the newest checkpoint; a fine-tuning run directory stands for its ``export/``)

Nothing arbitrary is unpickled: ``.pt`` / ``.pth.tar`` files are read with ``torch.load(weights_only=True)``,
everything else is safetensors and JSON/YAML (our own sharded ``step_*.dcp/`` run checkpoints are read by
``torch.distributed.checkpoint``, whose metadata file is a pickle torch writes itself). Loading is strict: every key the model expects must be in
the file with the right shape and every key in the file must be used; an error lists all offending keys
by the name they have *in the file*. The few keys dropped on purpose are listed in
:data:`videojepa.interop.official.DROPPED_ON_PURPOSE` and reported in :attr:`Weights.dropped`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..models.ac_predictor import ACPredictor, ACPredictorConfig
from ..models.pooler import ProbeConfig, build_classifier
from ..models.predictor import Predictor, PredictorConfig
from ..models.vit import EncoderConfig, VisionTransformer

__all__ = ["Weights", "WeightsError", "PARTS", "FORMATS", "OUR_FORMAT", "read_weights", "write_videojepa",
           "default_preprocessing", "resolve_fields"]

PARTS = ("encoder", "target_encoder", "predictor", "probe")
FORMATS = ("vjepa1", "vjepa2", "vjepa2-ac", "vjepa1-probe", "vjepa2-probe", "hf", "videojepa", "videojepa-run")
OUR_FORMAT = "videojepa-weights/1"
# Config fields that do not change the weights: a config given by the caller may set them freely.
RUNTIME_FIELDS = {"drop_path_rate", "attn_drop", "activation_checkpointing", "init_std", "init_rescale"}
# With RoPE the construction size only sets the predictor's default grid; a caller may change it.
ROPE_SIZE_FIELDS = {"img_size", "num_frames"}


class WeightsError(ValueError):
    """A weights file that cannot be read, does not match its model, or does not match a given config."""


@dataclass
class Weights:
    """Weights of one source, in our key names, with the config of every part they hold.

    ``states[part]``: a state dict with our key names, for ``part`` in :data:`PARTS`.
    ``file_keys[part]``: our key -> the key as written in the file (for error messages).
    ``dropped[part]``: keys of the file left out on purpose (see ``official.DROPPED_ON_PURPOSE``).
    ``meta``: ``evaluated_with`` (the encoder the published probes were trained on), ``preprocessing``,
    ``labels``, ``name`` (registry name), ...
    """

    source: str
    format: str
    encoder: EncoderConfig | None = None
    predictor: PredictorConfig | ACPredictorConfig | None = None
    probe: ProbeConfig | None = None
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    file_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> list[str]:
        return [p for p in PARTS if p in self.states]

    def default_part(self) -> str:
        """``classifier`` for a fine-tuned classifier (encoder + head), ``probe`` for a probe file, else the
        encoder its probes were evaluated with."""
        if self.meta.get("task") == "classification" and "probe" in self.states and "encoder" in self.states:
            return "classifier"
        if self.parts == ["probe"]:
            return "probe"
        ev = self.meta.get("evaluated_with")
        if ev in self.states:
            return ev
        return "target_encoder" if "target_encoder" in self.states else "encoder"

    def config_of(self, part: str):
        return {"encoder": self.encoder, "target_encoder": self.encoder, "predictor": self.predictor,
                "probe": self.probe}[part]

    def new_module(self, part: str, device: str | torch.device | None = None) -> nn.Module:
        """A freshly initialised module for ``part`` (``device="meta"``: shapes only, no memory)."""
        self._require(part)
        with torch.device(device or "cpu"):
            if part in ("encoder", "target_encoder"):
                return VisionTransformer(self.encoder)
            if part == "predictor":
                e = self.encoder
                if isinstance(self.predictor, ACPredictorConfig):
                    return ACPredictor(self.predictor, e.embed_dim, e.grid[1:])
                return Predictor(self.predictor, e.embed_dim, e.grid, e.pos_embed, e.rope_variant)
            return build_classifier(self.probe)

    def check(self, part: str) -> None:
        """Raise :class:`WeightsError` naming every missing, unexpected and mis-shaped key of ``part``."""
        self._require(part)
        expected = {k: tuple(v.shape) for k, v in self.new_module(part, device="meta").state_dict().items()}
        check_state(part, expected, self.states[part], self.file_keys.get(part, {}), self.source)

    def build(self, part: str | None = None) -> nn.Module:
        """The module for ``part`` with these weights, loaded strictly, in eval mode, with ``pretrained_cfg``."""
        part = part or self.default_part()
        if part == "classifier":
            from ..models.classifier import VideoClassifier

            for p in ("encoder", "probe"):
                self._require(p)
            model = VideoClassifier(self.build("encoder"), self.build("probe"))
            model.pretrained_cfg = self.info("encoder")
            return model.eval()
        self.check(part)
        # built on the meta device and filled from the file: no time spent on a random init that is overwritten
        model = self.new_module(part, device="meta").to_empty(device="cpu")
        model.load_state_dict(self.states[part], strict=True)
        model.pretrained_cfg = self.info(part)
        return model.eval()

    def info(self, part: str | None = None) -> dict:
        """What is known about these weights (attached to built modules as ``pretrained_cfg``)."""
        d = {"source": self.source, "format": self.format, "part": part, "parts": self.parts,
             "dropped": self.dropped, "notes": list(self.notes)}
        d.update(self.meta)
        if self.encoder is not None:
            d.setdefault("preprocessing", default_preprocessing(self.encoder))
        return d

    def _require(self, part: str) -> None:
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        if part not in self.states:
            extra = ""
            if part == "target_encoder" and "encoder" in self.states:
                extra = f" (this {self.format} source holds a single encoder: use part='encoder')"
            raise ValueError(f"part {part!r} is not in {self.source} ({self.format}; it holds: "
                             f"{', '.join(self.parts) or 'nothing'}){extra}")


def check_state(part: str, expected: dict[str, tuple], sd: dict[str, torch.Tensor], names: dict[str, str],
                source: str) -> None:
    """Compare a state dict with the expected ``{key: shape}``; one error lists every problem by file name."""
    from collections import Counter

    # keys absent from the file are named with the file's usual prefix (e.g. "module.backbone.")
    prefixes = Counter(f[: len(f) - len(k)] for k, f in names.items() if f.endswith(k))
    prefix = prefixes.most_common(1)[0][0] if prefixes else ""
    name = lambda k: names.get(k, prefix + k)  # noqa: E731
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != tuple(expected[k]))
    if not (missing or unexpected or shapes):
        return
    lines = [f"{source}: the {part} weights do not match the model built for them"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(name(k) for k in missing))
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(name(k) for k in unexpected))
    if shapes:
        lines.append(f"  wrong shape ({len(shapes)}): " + ", ".join(
            f"{name(k)} {tuple(sd[k].shape)} (model: {tuple(expected[k])})" for k in shapes))
    raise WeightsError("\n".join(lines))


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a if isinstance(a, (list, tuple)) else [a, a]) == list(b if isinstance(b, (list, tuple)) else [b, b])
    return a == b


def resolve_fields(part: str, inferred: dict, given: dict | None, assumed: dict | None = None) -> dict:
    """Merge config fields: ``inferred`` (read from the weights; a ``given`` value must agree), ``given`` (the
    caller's config), ``assumed`` (defaults the weights cannot tell: registry or family values)."""
    given = dict(given or {})
    conflicts = [f"{part}.{k}: config {given[k]!r}, weights {inferred[k]!r}" for k in sorted(given)
                 if k in inferred and not _same(given[k], inferred[k])]
    if conflicts:
        raise WeightsError("the given config does not match the weights: " + "; ".join(conflicts))
    return {**(assumed or {}), **given, **inferred}


def _split_config(config, parts=("encoder", "predictor", "probe"), default: str = "encoder") -> dict[str, dict]:
    """``config`` as ``{"encoder": {...}, "predictor": {...}, "probe": {...}}``.

    Accepts that nested form, a flat dict of fields (for ``default``), or config dataclasses.
    """
    if config is None:
        return {}
    if isinstance(config, (EncoderConfig, PredictorConfig, ACPredictorConfig, ProbeConfig)):
        key = {EncoderConfig: "encoder", PredictorConfig: "predictor", ACPredictorConfig: "predictor",
               ProbeConfig: "probe"}[type(config)]
        return {key: config.to_dict()}
    if isinstance(config, (str, Path)):
        config = _read_config_file(Path(config))
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, a config dataclass or a JSON/YAML path, got {type(config).__name__}")
    if config and set(config) <= set(parts):
        return {k: (v.to_dict() if hasattr(v, "to_dict") else dict(v or {})) for k, v in config.items()}
    return {default: dict(config)}


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def default_preprocessing(enc: EncoderConfig) -> dict:
    """The official evaluation transform for a model of this input size (REFERENCE §6.2, §8.2): resize the
    short side to ``int(crop * 256 / 224)`` (bilinear), centre-crop, divide by 255, ImageNet mean/std."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

    crop = enc.img_size[0]
    return {"crop_size": crop, "resize_short_side": int(crop * 256 / 224), "num_frames": enc.num_frames,
            "frame_step": None, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "interpolation": "bilinear",
            "patch_size": enc.patch_size, "tubelet_size": enc.tubelet_size, "source": "default"}


# --------------------------------------------------------------------------------------------------- reading

def read_weights(source: str | Path, config=None, *, hints: dict | None = None, map_location="cpu",
                 download: bool | None = None) -> Weights:
    """Read weights from a path (any format above) or a published model name (see ``videojepa weights list``).

    ``config``: what the caller knows about the architecture (a nested ``{"encoder": ..., "predictor": ...,
    "probe": ...}`` dict, a flat dict of encoder fields, a config dataclass or a JSON/YAML path). Fields the
    weights determine are checked against it; fields they cannot (e.g. attention heads) are taken from it.
    ``hints``: the same, from the registry (used when the caller gives nothing). ``download``: for a
    published name that is not cached; ``None`` downloads unless ``VIDEOJEPA_OFFLINE`` / ``HF_HUB_OFFLINE``.
    """
    given = _split_config(config)
    p = Path(source)
    if not p.exists():
        from .published import get_entry

        entry = get_entry(str(source), missing_ok=True)
        if entry is None:
            raise WeightsError(f"{source}: no such file or folder, and not a published model name "
                               "(see `videojepa weights list`)")
        from .published import fetch

        path = fetch(entry, download=download)
        w = read_weights(path, config=config, hints=entry.hints(), map_location=map_location)
        w.meta.update(entry.meta())
        return w
    p = _run_directory_weights(p)
    entry = None
    if hints is None:  # a file-name match supplies metadata (preprocessing), never the format or architecture
        from .published import match_file

        entry, hints = match_file(p), {}
    if p.is_dir() or p.suffix in (".safetensors", ".json", ".yaml", ".yml"):
        w = _read_folder(p, given, {})
    else:
        from ..training.checkpoint import DIGEST_SUFFIX, CheckpointCorruptError, verify_file

        verified = False
        if p.with_name(p.name + DIGEST_SUFFIX).is_file():
            try:
                verified = verify_file(p, required=True)
            except CheckpointCorruptError as e:
                raise WeightsError(str(e)) from None
        w = _from_pickle(_torch_load(p, map_location), str(p), given, hints)
        if not verified and w.format == "videojepa-run":
            w.notes.append(f"{p} has no checksum file: it could not be verified")
    if entry is not None and _entry_fits(entry, w):
        w.meta.update(entry.meta())
        w.notes.append(f"file name matches the published model {entry.name!r}: its preprocessing applies")
    return w


def _run_directory_weights(p: Path) -> Path:
    """A run directory of ours stands for what it trained: a fine-tuning run's ``export/``, else the newest
    checkpoint of ``checkpoints/`` (any other path is returned as it is)."""
    if not p.is_dir() or (p / "config.json").is_file():
        return p
    if (p / "checkpoints").is_dir() and (p / "export" / "config.json").is_file():
        return p / "export"
    from ..training.checkpoint import run_checkpoint

    try:
        return run_checkpoint(p)
    except FileNotFoundError as e:
        raise WeightsError(str(e)) from None


def _entry_fits(entry, w: Weights) -> bool:
    if w.format != entry.family:
        return False
    if entry.arch and w.encoder is not None:
        from ..models.registry import get_preset

        pr = get_preset(entry.arch)
        return (pr.embed_dim, pr.depth) == (w.encoder.embed_dim, w.encoder.depth)
    return True


def _torch_load(path: Path, map_location) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped when the file allows it; numpy scalars (plain data,
    found in some training checkpoints) are the only non-torch objects allowed."""
    def load(**kw):
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True, **kw)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location=map_location, weights_only=True, **kw)

    try:
        return load()
    except Exception as first:  # noqa: BLE001
        if "Unsupported global" not in str(first) and "weights_only" not in str(first):
            raise WeightsError(f"cannot read {path}: {type(first).__name__}: {first}") from first
        try:
            import numpy as np

            allowed = [np.dtype, type(np.dtype("float64")), type(np.dtype("int64"))]
            core = getattr(np, "_core", None) or np.core
            allowed.append(core.multiarray.scalar)
            with torch.serialization.safe_globals(allowed):
                return load()
        except Exception as e:  # noqa: BLE001
            raise WeightsError(
                f"cannot read {path} with torch.load(weights_only=True): {e}. videojepa never unpickles arbitrary "
                "objects; if you trust the file, re-save just its tensors (e.g. {'encoder': sd, ...}) and retry"
            ) from e


def _from_pickle(obj: Any, source: str, given: dict, hints: dict) -> Weights:
    from ..training.trainer import CHECKPOINT_FORMAT
    from . import official

    if not isinstance(obj, dict):
        raise WeightsError(f"{source}: not a videojepa pretraining checkpoint, nor a recognised weights file "
                           f"(it holds a {type(obj).__name__}, not a dict)")
    if obj.get("format") == CHECKPOINT_FORMAT:
        return _from_run_checkpoint(obj, source, given)
    fmt = obj.get("format")
    if isinstance(fmt, str) and fmt.startswith("videojepa-"):  # another job's training state, not weights to load
        hint = {"videojepa-finetune/1": "load the run's export/ folder (the fine-tuned classifier) instead",
                "videojepa-world/1": "load it with videojepa.training.world.load_world",
                "videojepa-decoder/1": "load the run's decoder.json with videojepa.training.decoder.load_decoder"}
        raise WeightsError(f"{source}: a videojepa training checkpoint of another job (format {fmt!r}), not "
                           f"encoder weights; {hint.get(fmt, 'load what that job exported')}")
    if "classifiers" in obj or "classifier" in obj:
        return official.read_probe(obj, source, given, hints)
    if "encoder" in obj or "target_encoder" in obj:
        return official.read_pretrain(obj, source, given, hints)
    keys = ", ".join(sorted(map(str, obj))[:12])
    raise WeightsError(f"{source}: not a videojepa pretraining checkpoint, nor an official V-JEPA / V-JEPA 2 "
                       f"checkpoint or probe (top-level keys: {keys})")


def _from_run_checkpoint(sd: dict, source: str, given: dict) -> Weights:
    from ..config import PretrainConfig

    cfg = PretrainConfig.from_dict(sd["config"])
    enc = cfg.encoder_config()
    pred = explicit_predictor(cfg.predictor_config(), enc)
    enc, pred, _ = _apply_given(enc, pred, None, given)
    w = Weights(source=source, format="videojepa-run", encoder=enc, predictor=pred,
                states={p: sd[p] for p in ("encoder", "target_encoder", "predictor") if p in sd},
                meta={"evaluated_with": "target_encoder", "step": sd.get("step")})
    return w


def predictor_config_from_dict(d: dict) -> PredictorConfig | ACPredictorConfig:
    """A stored predictor config: the action-conditioned one has ``action_dim``, the masked one does not."""
    return ACPredictorConfig.from_dict(d) if "action_dim" in d else PredictorConfig.from_dict(d)


def explicit_predictor(pred: PredictorConfig, enc: EncoderConfig) -> PredictorConfig:
    """The predictor config with its position scheme spelled out (``None`` means "as the encoder")."""
    return replace(pred, pos_embed=pred.pos_embed or enc.pos_embed, rope_variant=pred.rope_variant or enc.rope_variant)


def _apply_given(enc, pred, probe, given: dict):
    """Check a caller's config against stored configs; runtime-only fields (and the RoPE size) may change."""
    out = []
    for part, cfg in (("encoder", enc), ("predictor", pred), ("probe", probe)):
        g = given.get(part)
        if cfg is None or not g:
            out.append(cfg)
            continue
        stored = cfg.to_dict()
        free = set(RUNTIME_FIELDS)
        if part == "encoder" and stored.get("pos_embed") == "rope":
            free |= ROPE_SIZE_FIELDS
        inferred = {k: v for k, v in stored.items() if k not in free}
        merged = resolve_fields(part, inferred, g, {k: v for k, v in stored.items() if k in free})
        out.append(type(cfg).from_dict(merged))
    for part in given:
        if part not in ("encoder", "predictor", "probe"):
            raise WeightsError(f"unknown config section {part!r} (expected encoder, predictor or probe)")
    return tuple(out)


def _read_folder(p: Path, given: dict, hints: dict) -> Weights:
    """A HuggingFace folder or our exchange format (folder, ``*.safetensors`` or its config file)."""
    if p.is_dir() and (p / "meta.json").is_file() and not (p / "config.json").is_file():
        from ..training.trainer import read_checkpoint  # one of our sharded (FSDP / DCP) run checkpoints

        return _from_run_checkpoint(read_checkpoint(p), str(p), given)
    if p.is_dir():
        folder, cfg_path = p, None
        for name in ("config.json", "config.yaml", "config.yml"):
            if (p / name).is_file():
                cfg_path = p / name
                break
        if cfg_path is None:
            raise WeightsError(f"{p}: folder without config.json (expected a HuggingFace V-JEPA 2 folder or "
                               "videojepa weights: model.safetensors + config.json)")
    elif p.suffix == ".safetensors":
        folder = p.parent
        cands = [p.with_suffix(".json"), folder / "config.json", folder / "config.yaml"]
        cfg_path = next((c for c in cands if c.is_file()), None)
        if cfg_path is None:
            raise WeightsError(f"{p}: no config next to it (looked for {', '.join(c.name for c in cands)})")
    else:
        folder, cfg_path = p.parent, p
    cfg = _read_config_file(cfg_path)
    if cfg.get("model_type") == "vjepa2":
        from .hf import read_hf_folder

        return read_hf_folder(folder, cfg, given)
    if str(cfg.get("format", "")).startswith("videojepa-weights"):
        st = p if p.suffix == ".safetensors" else folder / cfg.get("weights", "model.safetensors")
        return _read_ours(st, cfg, str(p), given)
    raise WeightsError(f"{cfg_path}: neither a HuggingFace V-JEPA 2 config (model_type 'vjepa2', found "
                       f"{cfg.get('model_type')!r}) nor videojepa weights (format {OUR_FORMAT!r})")


def _read_ours(st_path: Path, cfg: dict, source: str, given: dict) -> Weights:
    from safetensors.torch import load_file

    if cfg["format"] != OUR_FORMAT:
        raise WeightsError(f"{source}: videojepa weights format {cfg['format']!r} is not supported by this "
                           f"version (it reads {OUR_FORMAT!r})")
    if not st_path.is_file():
        raise WeightsError(f"{source}: weights file not found: {st_path}")
    unverified = _verify_ours(st_path, cfg.get("weights_sha256"))
    flat = load_file(str(st_path))
    parts = list(cfg.get("parts", []))
    states: dict[str, dict] = {p: {} for p in parts}
    stray = []
    for k, v in flat.items():
        part, _, key = k.partition(".")
        if part in states:
            states[part][key] = v
        else:
            stray.append(k)
    if stray:
        raise WeightsError(f"{source}: tensors of no listed part ({', '.join(parts)}): {', '.join(sorted(stray)[:20])}")
    enc = EncoderConfig.from_dict(cfg["encoder"]) if cfg.get("encoder") else None
    pred = predictor_config_from_dict(cfg["predictor"]) if cfg.get("predictor") else None
    probe = ProbeConfig.from_dict(cfg["probe"]) if cfg.get("probe") else None
    enc, pred, probe = _apply_given(enc, pred, probe, given)
    file_keys = {p: {k: f"{p}.{k}" for k in sd} for p, sd in states.items()}
    meta = {k: cfg[k] for k in ("evaluated_with", "preprocessing", "labels", "name", "converted_from", "task")
            if cfg.get(k) is not None}
    notes = list(cfg.get("notes", [])) + ([unverified] if unverified else [])
    return Weights(source=source, format="videojepa", encoder=enc, predictor=pred, probe=probe, states=states,
                   file_keys=file_keys, notes=notes, meta=meta)


def _verify_ours(st_path: Path, expected: str | None) -> str | None:
    """Check our weights file against the digest in its config.json: a mismatch is a :class:`WeightsError`
    naming the file and both digests; no digest (an older export) gives a note that it was not verified."""
    if not expected:
        return f"{st_path} has no checksum in its config.json (an older version wrote it): it could not be verified"
    from ..training.checkpoint import CheckpointCorruptError, check_digest

    try:
        check_digest(st_path, expected)
    except CheckpointCorruptError as e:
        raise WeightsError(f"{e}; it is not loaded") from None
    return None


# --------------------------------------------------------------------------------------------------- writing

def write_videojepa(w: Weights, dst: str | Path, parts: list[str] | None = None) -> Path:
    """Write ``w`` (the chosen parts, each checked strictly first) as ``dst/model.safetensors`` + ``dst/config.json``."""
    from safetensors.torch import save_file

    parts = list(parts or w.parts)
    for p in parts:
        w.check(p)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    flat = {f"{p}.{k}": v.detach().to("cpu").contiguous() for p in parts for k, v in w.states[p].items()}
    needs_enc = any(p in ("encoder", "target_encoder", "predictor") for p in parts)
    info = w.info()
    cfg = {
        "format": OUR_FORMAT,
        "weights": "model.safetensors",
        "parts": parts,
        "encoder": w.encoder.to_dict() if needs_enc and w.encoder else None,
        "predictor": w.predictor.to_dict() if "predictor" in parts else None,
        "probe": w.probe.to_dict() if "probe" in parts else None,
        "evaluated_with": info.get("evaluated_with") if info.get("evaluated_with") in parts else None,
        "preprocessing": info.get("preprocessing"),
        "labels": info.get("labels"),
        "name": info.get("name"),
        "converted_from": info.get("converted_from") or {"format": w.format, "path": w.source},
        "task": info.get("task") if "probe" in parts and "encoder" in parts else None,
        "notes": list(w.notes),
    }
    from ..training.checkpoint import file_digest

    tmp = dst / "model.safetensors.tmp"
    save_file(flat, str(tmp), metadata={"format": "pt", "videojepa": OUR_FORMAT})
    cfg["weights_sha256"] = file_digest(tmp)  # checked by every load
    tmp.replace(dst / "model.safetensors")
    tmp = dst / "config.json.tmp"
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.replace(dst / "config.json")
    return dst
