"""The official checkpoint layouts (facebookresearch/jepa and facebookresearch/vjepa2) -> our names and configs.

Layouts (REFERENCE §4.5, §6.4, §8):

- **V-JEPA 1** ``*.pth.tar`` and **V-JEPA 2** ``*.pt`` pretraining files: a dict with ``encoder``,
  ``predictor``, ``target_encoder`` state dicts plus training state (``opt``, ``scaler``, ``epoch``, ...,
  :data:`TRAINING_STATE`, read past). Keys carry ``module.`` (DDP) and ``backbone.`` (multi-mask wrapper)
  prefixes, e.g. ``module.backbone.blocks.0.attn.qkv.weight``. After removing them the names are ours.
- **V-JEPA 2-AC**: the same dict; its ``predictor`` is the action-conditioned one (``action_encoder``,
  ``state_encoder``, ``extrinsics_encoder``, ``predictor_blocks.*``; only ``module.`` prefixes), read as a
  :class:`videojepa.models.ac_predictor.ACPredictor`, strictly (every key used, none missing).
- **Probes**: V-JEPA 1 ``{"classifier": state dict, ...}``; V-JEPA 2 ``{"classifiers": [state dict, ...], ...}``
  (the released files are read at index 0, as the official inference configs do). Keys ``module.pooler.*``,
  ``module.linear.*``: ours after removing ``module.``.

Everything else is read from the tensors: width, depth, MLP ratio, patch and tubelet size, position scheme,
the sin-cos grid (hence clip size) and ``uniform_power``, predictor width, depth and mask-token count, probe
width, depth, queries and classes, the 2-AC predictor's width, depth, MLP width and action / state / extrinsics
widths. Attention heads are not in the tensors: they come from the caller's config, the registry, or the known
released sizes (:func:`known_heads`; predictor: V-JEPA 1 = encoder heads, V-JEPA 2 = 12, 2-AC = 16 at width
1024; probe: V-JEPA 1 = encoder heads, V-JEPA 2 = 16). Whether the 2-AC predictor reads extrinsics is not in
the tensors either (its extrinsics encoder always exists): released = no (``use_extrinsics: false``).

V-JEPA 1 vs V-JEPA 2 is told apart by the tensors: an ``action_encoder`` in the predictor means 2-AC; no
``pos_embed`` in the encoder, or 10 predictor mask tokens (every released V-JEPA 2 predictor), means V-JEPA 2;
otherwise V-JEPA 1. A caller's ``family`` hint or ``pos_embed`` setting overrides this.
"""
from __future__ import annotations

import math
import re

import torch

from ..models.ac_predictor import ACPredictorConfig
from ..models.pooler import PROBE_LN_EPS, ProbeConfig
from ..models.pos_embed import sincos_3d
from ..models.predictor import PredictorConfig
from ..models.registry import PRESETS
from ..models.vit import EncoderConfig
from .weights import Weights, WeightsError, resolve_fields

__all__ = ["PREFIXES", "TRAINING_STATE", "DROPPED_ON_PURPOSE", "strip_prefixes", "detect_family", "known_heads",
           "infer_encoder", "infer_predictor", "infer_ac_predictor", "infer_probe", "read_pretrain", "read_probe",
           "AC_PREDICTOR_HEADS"]

PREFIXES = ("module.", "backbone.")
TRAINING_STATE = ("opt", "scaler", "epoch", "loss", "batch_size", "world_size", "lr")
# Keys of the official files that we leave out on purpose (only when the model uses RoPE).
DROPPED_ON_PURPOSE = {
    "pos_embed": "V-JEPA 2 RoPE encoders have no absolute position, yet the released files carry this table "
                 "(the official hub loads them with strict=False because of it)",
    "predictor_pos_embed": "the same unused table in the V-JEPA 2 RoPE predictor",
}
# Heads of the released 2-AC predictor by width (vjepa2 app/vjepa_droid config: pred_num_heads 16 at 1024).
AC_PREDICTOR_HEADS = {1024: 16}
# V-JEPA 2 RoPE encoders do not store their construction size; the official hub builds 256 px x 64 frames.
ROPE_DEFAULT_SIZE = {"img_size": 256, "num_frames": 64}
# EK100 anticipation probes have three heads; not supported yet.
_MULTI_HEAD_PROBE = ("verb_classifier.", "noun_classifier.", "action_classifier.")


def strip_prefixes(sd: dict, where: str) -> tuple[dict, dict[str, str]]:
    """Remove leading ``module.`` / ``backbone.`` from every key; returns (state dict, our key -> file key)."""
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    for k, v in sd.items():
        key = k
        while key.startswith(PREFIXES):
            key = key.split(".", 1)[1]
        if key in out:
            raise WeightsError(f"{where}: keys {names[key]!r} and {k!r} coincide once prefixes are removed")
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"{where}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[key], names[key] = v, k
    return out, names


def _layers(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)(?:\.|$)")
    ids = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(ids) + 1 if ids else 0


def _need(sd: dict, key: str, names: dict, where: str) -> torch.Tensor:
    if key not in sd:
        raise WeightsError(f"{where}: cannot read the architecture: key {names.get(key, key)!r} is missing "
                           f"(looked for {key!r} after removing the {'/'.join(PREFIXES)} prefixes)")
    return sd[key]


def mlp_ratio(hidden: int, dim: int) -> float:
    """A float ratio with ``int(dim * ratio) == hidden`` (4 and 48/11 exactly when they fit)."""
    for r in (4.0, 48 / 11):
        if int(dim * r) == hidden:
            return r
    r = hidden / dim
    while int(dim * r) < hidden:
        r = math.nextafter(r, math.inf)
    return r


def known_heads(embed_dim: int, depth: int, family: str) -> int | None:
    """Heads of a released (or preset) encoder size; ViT-g/16 (1408 x 40) has 22 heads in V-JEPA 2."""
    if (embed_dim, depth) == (1408, 40):
        return 22 if family.startswith("vjepa2") else 16
    cands = {p.num_heads for p in PRESETS.values() if (p.embed_dim, p.depth) == (embed_dim, depth)}
    return cands.pop() if len(cands) == 1 else None


def match_sincos(table: torch.Tensor, dim: int, prefer: tuple[int, int, int] | None = None):
    """The ``((T', H', W'), uniform_power)`` whose 3D sin-cos table equals ``table`` ``[1, N, D]``, or ``None``.

    Official tables are square in space (``H' = W'``); candidates are every such factorisation of N.
    """
    n = table.shape[-2]
    cands = [prefer] if prefer else []
    for t in range(1, n + 1):
        if n % t == 0:
            h = math.isqrt(n // t)
            if h * h == n // t and (t, h, h) not in cands:
                cands.append((t, h, h))
    ref = table.reshape(n, dim).float()
    for grid in cands:
        if grid[0] * grid[1] * grid[2] != n:
            continue
        for up in (True, False):
            try:
                if (sincos_3d(dim, grid, up) - ref).abs().max().item() < 1e-4:
                    return grid, up
            except ValueError:
                continue
    return None


def detect_family(enc_sd: dict, pred_sd: dict | None, hint: str | None = None) -> str:
    if hint:
        return hint
    if pred_sd and any(k.startswith(("action_encoder.", "state_encoder.")) for k in pred_sd):
        return "vjepa2-ac"
    if "pos_embed" not in enc_sd:
        return "vjepa2"
    if pred_sd is not None and _layers(pred_sd, "mask_tokens.") == 10:
        return "vjepa2"
    return "vjepa1"


def infer_encoder(sd: dict, names: dict, family: str, given: dict, assumed: dict, where: str) -> tuple[dict, list[str], list[str]]:
    """Encoder config fields from the tensors. Returns (fields, keys to drop on purpose, notes)."""
    w = _need(sd, "patch_embed.proj.weight", names, where)
    if w.ndim != 5:
        raise WeightsError(f"{where}: {names.get('patch_embed.proj.weight')} has shape {tuple(w.shape)}: an image "
                           "(Conv2d) patch embedding; only video (Conv3d tubelet) encoders are supported")
    d, c, tub, p, p2 = w.shape
    if p != p2:
        raise WeightsError(f"{where}: non-square patches {p}x{p2} are not supported")
    depth = _layers(sd, "blocks.")
    fc1 = _need(sd, "blocks.0.mlp.fc1.weight", names, where)
    inferred = dict(embed_dim=d, in_chans=c, tubelet_size=tub, patch_size=p, depth=depth,
                    mlp_ratio=mlp_ratio(fc1.shape[0], d), qkv_bias="blocks.0.attn.qkv.bias" in sd)
    scheme = given.get("pos_embed") or assumed.get("pos_embed") or ("sincos" if family == "vjepa1" else "rope")
    drop, notes = [], []
    if scheme == "sincos":
        pe = _need(sd, "pos_embed", names, where)
        prefer = None
        size = {**assumed, **given}
        if "num_frames" in size and "img_size" in size:
            hw = size["img_size"] if isinstance(size["img_size"], int) else size["img_size"][0]
            prefer = (max(1, size["num_frames"] // tub), hw // p, hw // p)
        found = match_sincos(pe, d, prefer)
        if found is None:
            raise WeightsError(f"{where}: {names['pos_embed']} {tuple(pe.shape)} is not a 3D sin-cos table of any "
                               "square grid (with or without uniform_power)")
        (gt, gh, gw), up = found
        inferred.update(pos_embed="sincos", uniform_power=up, img_size=(gh * p, gw * p), num_frames=gt * tub)
    else:
        inferred.update(pos_embed="rope")
        if family.startswith("vjepa2"):
            inferred["rope_variant"] = "legacy"  # what the released V-JEPA 2.0 weights were trained with
        if "pos_embed" in sd:
            drop.append("pos_embed")
        missing = [k for k in ROPE_DEFAULT_SIZE if k not in given and k not in assumed]
        if missing:
            img, frames = ROPE_DEFAULT_SIZE["img_size"], ROPE_DEFAULT_SIZE["num_frames"]
            size = {"img_size": img if img % p == 0 else 16 * p, "num_frames": frames if frames % tub == 0 else 32 * tub}
            assumed = {**assumed, **{k: size[k] for k in missing}}
            notes.append("RoPE encoder: the construction size is not stored; using "
                         + ", ".join(f"{k}={size[k]}" for k in missing)
                         + " (it only sets the predictor's default grid; any divisible clip size works)")
    if "num_heads" not in given and "num_heads" not in assumed:
        h = known_heads(d, depth, family)
        if h is None:
            raise WeightsError(f"{where}: attention heads are not stored in the weights and {d} x {depth} is not a "
                               "released size: pass them, e.g. config={'encoder': {'num_heads': N}}")
        assumed = {**assumed, "num_heads": h}
    return resolve_fields("encoder", inferred, given, assumed), drop, notes


def infer_predictor(sd: dict, names: dict, family: str, enc: EncoderConfig, given: dict, assumed: dict,
                    where: str) -> tuple[dict, list[str]]:
    """Predictor config fields from the tensors. Returns (fields, keys to drop on purpose)."""
    w = _need(sd, "predictor_embed.weight", names, where)
    dp, de = w.shape
    if de != enc.embed_dim:
        raise WeightsError(f"{where}: predictor input width {de} != encoder width {enc.embed_dim}")
    fc1 = _need(sd, "predictor_blocks.0.mlp.fc1.weight", names, where)
    n_tokens = _layers(sd, "mask_tokens.")
    if n_tokens == 0:
        raise WeightsError(f"{where}: predictor without mask tokens (use_mask_tokens=False) is not supported")
    inferred = dict(embed_dim=dp, depth=_layers(sd, "predictor_blocks."), mlp_ratio=mlp_ratio(fc1.shape[0], dp),
                    num_mask_tokens=n_tokens, qkv_bias="predictor_blocks.0.attn.qkv.bias" in sd)
    drop: list[str] = []
    if enc.pos_embed == "sincos":
        pe = _need(sd, "predictor_pos_embed", names, where)
        found = match_sincos(pe, dp, enc.grid)
        if found is None or found[0] != enc.grid:
            raise WeightsError(f"{where}: {names['predictor_pos_embed']} {tuple(pe.shape)} is not the sin-cos table "
                               f"of the encoder grid {enc.grid}")
        inferred.update(pos_embed="sincos", uniform_power=found[1])
    else:
        inferred.update(pos_embed="rope", rope_variant=enc.rope_variant)
        if "predictor_pos_embed" in sd:
            drop.append("predictor_pos_embed")
    v1 = family == "vjepa1"
    base = {"num_heads": enc.num_heads if v1 else 12, "sort_by_position": not v1}
    return resolve_fields("predictor", inferred, given, {**base, **assumed}), drop


def infer_ac_predictor(sd: dict, names: dict, enc: EncoderConfig, given: dict, assumed: dict, where: str) -> dict:
    """V-JEPA 2-AC predictor config fields from the tensors."""
    w = _need(sd, "predictor_embed.weight", names, where)
    dp, de = w.shape
    if de != enc.embed_dim:
        raise WeightsError(f"{where}: predictor input width {de} != encoder width {enc.embed_dim}")
    if any(".mlp.fc3." in k for k in sd):
        raise WeightsError(f"{where}: a SwiGLU (use_silu=True) action-conditioned predictor; only the GELU MLP "
                           "of the released model is supported")
    act = _need(sd, "action_encoder.weight", names, where)
    state = _need(sd, "state_encoder.weight", names, where)
    fc1 = _need(sd, "predictor_blocks.0.mlp.fc1.weight", names, where)
    inferred = dict(embed_dim=dp, depth=_layers(sd, "predictor_blocks."), mlp_ratio=mlp_ratio(fc1.shape[0], dp),
                    action_dim=act.shape[1], state_dim=state.shape[1],
                    qkv_bias="predictor_blocks.0.attn.qkv.bias" in sd)
    base = {"use_extrinsics": False, "frame_causal": True, "use_rope": True, "rope_variant": "legacy",
            "extrinsics_dim": max(1, act.shape[1] - 1)}  # the reference: extrinsics width = action width - 1
    if "extrinsics_encoder.weight" in sd:
        inferred["extrinsics_dim"] = sd["extrinsics_encoder.weight"].shape[1]
    if "num_heads" not in given and "num_heads" not in assumed:
        heads = AC_PREDICTOR_HEADS.get(dp)
        if heads is None:
            raise WeightsError(f"{where}: attention heads are not stored in the weights and width {dp} is not the "
                               "released 2-AC predictor's: pass them, e.g. config={'predictor': {'num_heads': N}}")
        base["num_heads"] = heads
    return resolve_fields("predictor", inferred, given, {**base, **assumed})


def infer_probe(sd: dict, names: dict, family: str, given: dict, assumed: dict, where: str) -> dict:
    qt = _need(sd, "pooler.query_tokens", names, where)
    d = qt.shape[-1]
    lin = _need(sd, "linear.weight", names, where)
    fc1 = _need(sd, "pooler.cross_attention_block.mlp.fc1.weight", names, where)
    inferred = dict(embed_dim=d, num_queries=qt.shape[1], num_classes=lin.shape[0],
                    depth=1 + _layers(sd, "pooler.blocks."), mlp_ratio=mlp_ratio(fc1.shape[0], d),
                    xattn_proj="pooler.cross_attention_block.xattn.proj.weight" in sd,
                    qkv_bias="pooler.cross_attention_block.xattn.q.bias" in sd)
    v1 = family == "vjepa1-probe"
    base = {"self_attn_position": "after" if v1 else "before", "layer_norm_eps": PROBE_LN_EPS}
    if "num_heads" not in given and "num_heads" not in assumed:
        heads = {1024: 16, 1280: 16}.get(d) if v1 else 16  # V-JEPA 1: the encoder's heads (ViT-L/H: 16)
        if heads is None or d % heads:
            raise WeightsError(f"{where}: probe heads are not stored in the weights: pass them, e.g. "
                               "config={'probe': {'num_heads': N}}")
        base["num_heads"] = heads
    return resolve_fields("probe", inferred, given, {**base, **assumed})


def _drop(sd: dict, names: dict, keys: list[str]) -> tuple[dict, list[str]]:
    return {k: v for k, v in sd.items() if k not in keys}, [names[k] for k in keys]


def read_pretrain(obj: dict, source: str, given: dict, hints: dict) -> Weights:
    """An official V-JEPA 1 / V-JEPA 2 / V-JEPA 2-AC pretraining checkpoint."""
    sds, names = {}, {}
    for part in ("encoder", "target_encoder", "predictor"):
        if part in obj:
            if not isinstance(obj[part], dict):
                raise WeightsError(f"{source}: entry {part!r} is a {type(obj[part]).__name__}, not a state dict")
            sds[part], names[part] = strip_prefixes(obj[part], f"{source} [{part}]")
    notes = []
    other = sorted(str(k) for k in obj if k not in sds and k not in TRAINING_STATE)
    if other:
        notes.append(f"top-level entries not read: {', '.join(other)}")
    enc_part = "target_encoder" if "target_encoder" in sds else "encoder"
    family = detect_family(sds[enc_part], sds.get("predictor"), hints.get("family"))
    g_enc, a_enc = given.get("encoder", {}), hints.get("encoder", {})
    fields, drop_enc, n = infer_encoder(sds[enc_part], names[enc_part], family, g_enc, a_enc, f"{source} [{enc_part}]")
    notes += n
    enc = EncoderConfig.from_dict(fields)
    w = Weights(source=source, format=family, encoder=enc, notes=notes,
                meta={"evaluated_with": "target_encoder" if "target_encoder" in sds else "encoder"})
    for part in ("encoder", "target_encoder"):
        if part in sds:
            w.states[part], dropped = _drop(sds[part], names[part], drop_enc)
            w.file_keys[part] = names[part]
            if dropped:
                w.dropped[part] = dropped
    if "predictor" in sds:
        if family == "vjepa2-ac":
            pf = infer_ac_predictor(sds["predictor"], names["predictor"], enc, given.get("predictor", {}),
                                    hints.get("predictor", {}), f"{source} [predictor]")
            w.predictor = ACPredictorConfig.from_dict(pf)
            w.states["predictor"] = sds["predictor"]
            w.file_keys["predictor"] = names["predictor"]
        else:
            pf, drop_pred = infer_predictor(sds["predictor"], names["predictor"], family, enc,
                                            given.get("predictor", {}), hints.get("predictor", {}),
                                            f"{source} [predictor]")
            w.predictor = PredictorConfig.from_dict(pf)
            w.states["predictor"], dropped = _drop(sds["predictor"], names["predictor"], drop_pred)
            w.file_keys["predictor"] = names["predictor"]
            if dropped:
                w.dropped["predictor"] = dropped
    if given.get("probe"):
        raise WeightsError(f"{source}: a probe config was given, but this is a pretraining checkpoint")
    if family.startswith("vjepa2") and enc.pos_embed == "rope":
        notes.append("V-JEPA 2.0 weights: RoPE with the legacy tiling (rope_variant='legacy'), as they were trained")
    return w


def read_probe(obj: dict, source: str, given: dict, hints: dict) -> Weights:
    """An official V-JEPA 1 (``classifier``) or V-JEPA 2 (``classifiers[0]``) attentive-probe checkpoint."""
    notes = []
    if "classifiers" in obj:
        family, lst = "vjepa2-probe", obj["classifiers"]
        if not isinstance(lst, (list, tuple)) or not lst or not isinstance(lst[0], dict):
            raise WeightsError(f"{source}: 'classifiers' should be a non-empty list of state dicts")
        if len(lst) > 1:
            notes.append(f"the file holds {len(lst)} probes; read the first, as the official inference does")
        raw, where = lst[0], f"{source} [classifiers[0]]"
    else:
        family, raw, where = "vjepa1-probe", obj["classifier"], f"{source} [classifier]"
        if not isinstance(raw, dict):
            raise WeightsError(f"{source}: 'classifier' is a {type(raw).__name__}, not a state dict")
    family = hints.get("family") or family
    sd, names = strip_prefixes(raw, where)
    if any(k.startswith(_MULTI_HEAD_PROBE) for k in sd):
        raise WeightsError(f"{where}: an EK100 action-anticipation probe (verb / noun / action heads); "
                           "these are not supported yet")
    other = sorted(str(k) for k in obj if k not in ("classifier", "classifiers") and k not in TRAINING_STATE)
    if other:
        notes.append(f"top-level entries not read: {', '.join(other)}")
    for part in given:
        if part != "probe":
            raise WeightsError(f"{source}: a {part} config was given, but this is a probe checkpoint")
    fields = infer_probe(sd, names, family, given.get("probe", {}), hints.get("probe", {}), where)
    return Weights(source=source, format=family, probe=ProbeConfig.from_dict(fields), states={"probe": sd},
                   file_keys={"probe": names}, notes=notes)
