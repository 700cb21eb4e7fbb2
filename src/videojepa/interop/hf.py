"""HuggingFace ``transformers`` V-JEPA 2 <-> videojepa: configs and state-dict key maps.

Our encoder and predictor use the reference key names (``blocks.{i}.attn.qkv``,
``predictor_blocks.{i}...``), so the map is a table of patterns plus two tensor transforms:
HF splits the fused ``qkv`` into ``query/key/value`` (row thirds, in that order) and stacks the
predictor mask tokens into one ``[K, 1, 1, D]`` parameter. Conversions are strict: every source key
must be consumed, otherwise the error lists the leftovers by name. HF models only RoPE (legacy
tiling), so only RoPE configs map.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..models.pooler import ProbeConfig
from ..models.predictor import PredictorConfig
from ..models.vit import EncoderConfig

__all__ = ["configs_from_hf", "hf_config_kwargs", "hf_to_videojepa", "videojepa_to_hf", "probe_config_from_hf",
           "hf_probe_to_videojepa", "videojepa_probe_to_hf", "read_hf_folder", "write_hf_folder", "HF_CLASSIFIER_PREFIX"]

HF_CLASSIFIER_PREFIX = "vjepa2."  # VJEPA2ForVideoClassification holds its VJEPA2Model under this name

# (HF pattern, our pattern) for tensors that map one to one; {i} is a layer index.
_BLOCK = [
    ("norm1.weight", "norm1.weight"), ("norm1.bias", "norm1.bias"),
    ("norm2.weight", "norm2.weight"), ("norm2.bias", "norm2.bias"),
    ("attention.proj.weight", "attn.proj.weight"), ("attention.proj.bias", "attn.proj.bias"),
    ("mlp.fc1.weight", "mlp.fc1.weight"), ("mlp.fc1.bias", "mlp.fc1.bias"),
    ("mlp.fc2.weight", "mlp.fc2.weight"), ("mlp.fc2.bias", "mlp.fc2.bias"),
]
_ENC_FLAT = [
    ("encoder.embeddings.patch_embeddings.proj.weight", "patch_embed.proj.weight"),
    ("encoder.embeddings.patch_embeddings.proj.bias", "patch_embed.proj.bias"),
    ("encoder.layernorm.weight", "norm.weight"), ("encoder.layernorm.bias", "norm.bias"),
]
_PRED_FLAT = [
    ("predictor.embeddings.predictor_embeddings.weight", "predictor_embed.weight"),
    ("predictor.embeddings.predictor_embeddings.bias", "predictor_embed.bias"),
    ("predictor.layernorm.weight", "predictor_norm.weight"), ("predictor.layernorm.bias", "predictor_norm.bias"),
    ("predictor.proj.weight", "predictor_proj.weight"), ("predictor.proj.bias", "predictor_proj.bias"),
]


def configs_from_hf(hf_config) -> tuple[EncoderConfig, PredictorConfig]:
    """Our encoder / predictor configs for a ``transformers.VJEPA2Config`` (object or dict)."""
    c = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    if c.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported hidden_act {c['hidden_act']!r} (V-JEPA 2 uses exact 'gelu')")
    enc = EncoderConfig(
        embed_dim=c["hidden_size"], depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
        mlp_ratio=float(c["mlp_ratio"]), patch_size=c["patch_size"], tubelet_size=c["tubelet_size"],
        num_frames=c["frames_per_clip"], img_size=c["crop_size"], in_chans=c.get("in_chans", 3),
        pos_embed="rope", rope_variant="legacy", qkv_bias=c.get("qkv_bias", True),
        drop_path_rate=float(c.get("drop_path_rate", 0.0)), layer_norm_eps=c.get("layer_norm_eps", 1e-6),
    )
    pred = PredictorConfig(
        embed_dim=c["pred_hidden_size"], depth=c["pred_num_hidden_layers"], num_heads=c["pred_num_attention_heads"],
        mlp_ratio=float(c["pred_mlp_ratio"]), num_mask_tokens=c["pred_num_mask_tokens"],
        zero_init_mask_tokens=c.get("pred_zero_init_mask_tokens", True), pos_embed="rope", rope_variant="legacy",
        sort_by_position=True, layer_norm_eps=c.get("layer_norm_eps", 1e-6),
    )
    return enc, pred


def hf_config_kwargs(enc: EncoderConfig, pred: PredictorConfig) -> dict:
    """Keyword arguments for ``transformers.VJEPA2Config`` describing our configs (RoPE, square crop only)."""
    if enc.pos_embed != "rope" or enc.rope_variant != "legacy":
        raise ValueError("HF V-JEPA 2 supports only RoPE with the legacy tiling (encoder.pos_embed='rope')")
    if enc.img_size[0] != enc.img_size[1]:
        raise ValueError(f"HF V-JEPA 2 assumes a square crop, got img_size {enc.img_size}")
    return dict(
        patch_size=enc.patch_size, crop_size=enc.img_size[0], frames_per_clip=enc.num_frames,
        tubelet_size=enc.tubelet_size, hidden_size=enc.embed_dim, in_chans=enc.in_chans,
        num_attention_heads=enc.num_heads, num_hidden_layers=enc.depth, drop_path_rate=enc.drop_path_rate,
        mlp_ratio=enc.mlp_ratio, layer_norm_eps=enc.layer_norm_eps, qkv_bias=enc.qkv_bias,
        pred_hidden_size=pred.embed_dim, pred_num_attention_heads=pred.num_heads,
        pred_num_hidden_layers=pred.depth, pred_num_mask_tokens=pred.num_mask_tokens,
        pred_zero_init_mask_tokens=pred.zero_init_mask_tokens, pred_mlp_ratio=pred.mlp_ratio,
    )


def _layer_ids(keys, prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in keys if (m := pat.match(k))})


def hf_to_videojepa(sd: dict[str, torch.Tensor], prefix: str = "") -> tuple[dict, dict]:
    """Split an HF ``VJEPA2Model`` state dict into our ``(encoder, predictor)`` state dicts.

    ``prefix`` is stripped first (``"vjepa2."`` inside ``VJEPA2ForVideoClassification``). Keys outside
    ``encoder.`` / ``predictor.`` under the prefix (e.g. a classification head) are left for the caller;
    any other leftover is an error.
    """
    src = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    used: set[str] = set()
    missing: list[str] = []

    def take(*keys: str) -> torch.Tensor | None:
        absent = [k for k in keys if k not in src]
        missing.extend(prefix + k for k in absent)
        used.update(keys)
        return None if absent else (src[keys[0]] if len(keys) == 1 else torch.cat([src[k] for k in keys], dim=0))

    enc, pred = {}, {}
    for hk, ok in _ENC_FLAT:
        enc[ok] = take(hk)
    for hp, op, out in (("encoder.layer.", "blocks.", enc), ("predictor.layer.", "predictor_blocks.", pred)):
        for i in _layer_ids(src, hp):
            for hk, ok in _BLOCK:
                out[f"{op}{i}.{ok}"] = take(f"{hp}{i}.{hk}")
            for t in ("weight", "bias"):
                out[f"{op}{i}.attn.qkv.{t}"] = take(*(f"{hp}{i}.attention.{n}.{t}" for n in ("query", "key", "value")))
    for hk, ok in _PRED_FLAT:
        pred[ok] = take(hk)
    mt = take("predictor.embeddings.mask_tokens")
    left = sorted(prefix + k for k in src if k not in used and (k.startswith("encoder.") or k.startswith("predictor.")))
    if missing or left:
        msg = ["HF V-JEPA 2 state dict does not match VJEPA2Model"]
        if missing:
            msg.append(f"missing key(s): {', '.join(missing)}")
        if left:
            msg.append(f"unexpected key(s): {', '.join(left)}")
        raise ValueError("; ".join(msg))
    for k in range(mt.shape[0]):
        pred[f"mask_tokens.{k}"] = mt[k].reshape(1, 1, -1)
    return enc, pred


def videojepa_to_hf(enc: dict[str, torch.Tensor], pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`hf_to_videojepa` (strict: every input key must be used)."""
    out: dict[str, torch.Tensor] = {}
    used: set[tuple[str, str]] = set()

    def take(side: str, sd: dict, k: str) -> torch.Tensor:
        if k not in sd:
            raise ValueError(f"{side} state dict is missing key {k}")
        used.add((side, k))
        return sd[k]

    for hk, ok in _ENC_FLAT:
        out[hk] = take("encoder", enc, ok)
    for side, sd, hp, op in (("encoder", enc, "encoder.layer.", "blocks."), ("predictor", pred, "predictor.layer.", "predictor_blocks.")):
        for i in _layer_ids(sd, op):
            for hk, ok in _BLOCK:
                out[f"{hp}{i}.{hk}"] = take(side, sd, f"{op}{i}.{ok}")
            for t in ("weight", "bias"):
                q, k, v = take(side, sd, f"{op}{i}.attn.qkv.{t}").chunk(3, dim=0)
                for n, x in zip(("query", "key", "value"), (q, k, v)):
                    out[f"{hp}{i}.attention.{n}.{t}"] = x.contiguous()
    for hk, ok in _PRED_FLAT:
        out[hk] = take("predictor", pred, ok)
    ks = sorted((int(k.split(".")[1]) for k in pred if k.startswith("mask_tokens.")))
    if ks != list(range(len(ks))) or not ks:
        raise ValueError(f"predictor mask tokens must be mask_tokens.0..K-1, got indices {ks}")
    out["predictor.embeddings.mask_tokens"] = torch.stack([take("predictor", pred, f"mask_tokens.{k}").reshape(1, 1, -1) for k in ks])
    left = sorted([f"encoder:{k}" for k in enc if ("encoder", k) not in used] + [f"predictor:{k}" for k in pred if ("predictor", k) not in used])
    if left:
        raise ValueError(f"keys with no HF counterpart: {', '.join(left)}")
    return out


# ------------------------------------------------------------------------------------------ classification head

_PROBE_T = ("weight", "bias")
# (HF key, our key) one to one; {i} is a self-attention layer index.
_PROBE_FLAT = [("pooler.query_tokens", "pooler.query_tokens")] + [
    (f"pooler.cross_attention_layer.{h}.{t}", f"pooler.cross_attention_block.{o}.{t}")
    for h, o in (("layer_norm1", "norm1"), ("layer_norm2", "norm2"), ("cross_attn.q_proj", "xattn.q"),
                 ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"))
    for t in _PROBE_T
] + [(f"classifier.{t}", f"linear.{t}") for t in _PROBE_T]
_PROBE_BLOCK = [(f"{h}.{t}", f"{o}.{t}") for h, o in (("layer_norm1", "norm1"), ("layer_norm2", "norm2"),
                                                     ("self_attn.out_proj", "attn.proj"), ("mlp.fc1", "mlp.fc1"),
                                                     ("mlp.fc2", "mlp.fc2")) for t in _PROBE_T]


def probe_config_from_hf(c: dict, num_classes: int | None = None) -> ProbeConfig:
    """Our probe config for the head of ``VJEPA2ForVideoClassification`` (HF's pooler semantics)."""
    n = num_classes or len(c.get("id2label") or {}) or c.get("num_labels")
    return ProbeConfig(embed_dim=c["hidden_size"], num_heads=c["num_attention_heads"],
                       depth=c.get("num_pooler_layers", 3) + 1, num_classes=int(n), num_queries=1, mlp_ratio=4.0,
                       xattn_proj=False, self_attn_position="before", qkv_bias=True,
                       layer_norm_eps=c.get("layer_norm_eps", 1e-6))


def hf_probe_to_videojepa(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ``pooler.*`` / ``classifier.*`` -> our probe state dict (strict; errors list every key)."""
    used, missing, out = set(), [], {}

    def take(*keys):
        absent = [k for k in keys if k not in sd]
        missing.extend(absent)
        used.update(keys)
        return None if absent else (sd[keys[0]] if len(keys) == 1 else torch.cat([sd[k] for k in keys], dim=0))

    for hk, ok in _PROBE_FLAT:
        out[ok] = take(hk)
    for t in _PROBE_T:
        out[f"pooler.cross_attention_block.xattn.kv.{t}"] = take(*(f"pooler.cross_attention_layer.cross_attn.{n}_proj.{t}"
                                                                  for n in "kv"))
    for i in _layer_ids(sd, "pooler.self_attention_layers."):
        hp = f"pooler.self_attention_layers.{i}."
        for hk, ok in _PROBE_BLOCK:
            out[f"pooler.blocks.{i}.{ok}"] = take(hp + hk)
        for t in _PROBE_T:
            out[f"pooler.blocks.{i}.attn.qkv.{t}"] = take(*(f"{hp}self_attn.{n}_proj.{t}" for n in "qkv"))
    left = sorted(k for k in sd if k not in used)
    if missing or left:
        raise ValueError("HF classification head does not match VJEPA2ForVideoClassification: "
                         + "; ".join(x for x in (missing and f"missing key(s): {', '.join(missing)}",
                                                  left and f"unexpected key(s): {', '.join(left)}") if x))
    return out


def videojepa_probe_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`hf_probe_to_videojepa` (strict)."""
    used, out = set(), {}

    def take(k):
        if k not in sd:
            raise ValueError(f"probe state dict is missing key {k}")
        used.add(k)
        return sd[k]

    for hk, ok in _PROBE_FLAT:
        out[hk] = take(ok)
    for t in _PROBE_T:
        k, v = take(f"pooler.cross_attention_block.xattn.kv.{t}").chunk(2, dim=0)
        out[f"pooler.cross_attention_layer.cross_attn.k_proj.{t}"] = k.contiguous()
        out[f"pooler.cross_attention_layer.cross_attn.v_proj.{t}"] = v.contiguous()
    for i in _layer_ids(sd, "pooler.blocks."):
        hp = f"pooler.self_attention_layers.{i}."
        for hk, ok in _PROBE_BLOCK:
            out[hp + hk] = take(f"pooler.blocks.{i}.{ok}")
        for t in _PROBE_T:
            for n, x in zip("qkv", take(f"pooler.blocks.{i}.attn.qkv.{t}").chunk(3, dim=0)):
                out[f"{hp}self_attn.{n}_proj.{t}"] = x.contiguous()
    left = sorted(k for k in sd if k not in used)
    if left:
        raise ValueError(f"probe keys with no HF counterpart: {', '.join(left)}")
    return out


# ------------------------------------------------------------------------------------------------ HF folders

def _load_hf_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for s in shards:
            out.update(load_file(str(folder / s)))
        return out
    if (folder / "pytorch_model.bin").is_file():
        raise ValueError(f"{folder}: only pytorch_model.bin (a pickle) found; videojepa reads HF weights from "
                         "safetensors only (re-save with save_pretrained(safe_serialization=True))")
    raise ValueError(f"{folder}: no model.safetensors (or model.safetensors.index.json)")


def read_hf_folder(folder: str | Path, cfg: dict, given: dict):
    """An HF ``VJEPA2Model`` / ``VJEPA2ForVideoClassification`` folder as :class:`~.weights.Weights`."""
    from .weights import Weights, WeightsError, _apply_given

    folder = Path(folder)
    try:
        sd = _load_hf_tensors(folder)
        prefix = HF_CLASSIFIER_PREFIX if any(k.startswith(HF_CLASSIFIER_PREFIX) for k in sd) else ""
        enc_cfg, pred_cfg = configs_from_hf(cfg)
        enc, pred = hf_to_videojepa(sd, prefix)
        head = {k: v for k, v in sd.items() if not k.startswith(prefix)} if prefix else {}
        stray = sorted(k for k in sd if k.startswith(prefix) and not k[len(prefix):].startswith(("encoder.", "predictor.")))
        if stray:
            raise ValueError(f"unexpected key(s): {', '.join(stray)}")
        probe_cfg = probe_sd = None
        if head:
            probe_sd = hf_probe_to_videojepa(head)
            probe_cfg = probe_config_from_hf(cfg, num_classes=probe_sd["linear.weight"].shape[0])
    except ValueError as e:
        raise WeightsError(f"{folder}: {e}") from None
    enc_cfg, pred_cfg, probe_cfg = _apply_given(enc_cfg, pred_cfg, probe_cfg, given)
    states = {"encoder": enc, "predictor": pred}
    meta = {"evaluated_with": "encoder", "hf_architectures": cfg.get("architectures")}
    if probe_sd is not None:
        states["probe"] = probe_sd
        id2label = cfg.get("id2label") or {}
        if len(id2label) == probe_cfg.num_classes:
            meta["labels"] = [id2label.get(str(i), id2label.get(i)) for i in range(probe_cfg.num_classes)]
    notes = ["an HF V-JEPA 2 folder holds one encoder (the facebook/vjepa2-* conversions took the official "
             "files' 'encoder', not the 'target_encoder' the published probes were trained on)"]
    return Weights(source=str(folder), format="hf", encoder=enc_cfg, predictor=pred_cfg, probe=probe_cfg,
                   states=states, notes=notes, meta=meta)


def hf_probe_problems(enc: EncoderConfig, probe: ProbeConfig) -> tuple[list[str], list[str]]:
    """(blocking problems, notes) for expressing ``probe`` as the head of an HF ``VJEPA2ForVideoClassification``."""
    bad, notes = [], []
    if probe.kind != "attentive":
        bad.append(f"a {probe.kind} head (HF's classification head is the attentive pooler; fine-tune with "
                   "head.kind=attentive to export to HF)")
    if probe.embed_dim != enc.embed_dim:
        bad.append(f"probe width {probe.embed_dim} != encoder width {enc.embed_dim}")
    if probe.num_heads != enc.num_heads:
        bad.append(f"probe heads {probe.num_heads} != encoder heads {enc.num_heads} (HF's pooler uses the encoder's)")
    if abs(probe.mlp_ratio - 4.0) > 1e-9:
        bad.append(f"probe MLP ratio {probe.mlp_ratio} != 4 (HF's pooler always uses 4)")
    if probe.num_queries != 1:
        bad.append(f"{probe.num_queries} queries (HF's pooler has 1)")
    if probe.depth > 1 and probe.self_attn_position != "before":
        bad.append("self-attention blocks after the cross-attention (V-JEPA 1 form); HF runs them before")
    if not probe.qkv_bias:
        bad.append("probe without q/kv biases")
    if probe.xattn_proj:
        notes.append("the probe's xattn.proj is dropped: it is never applied (V-JEPA 1 quirk), so nothing changes")
    if probe.layer_norm_eps != enc.layer_norm_eps:
        notes.append(f"HF's pooler LayerNorms use eps {enc.layer_norm_eps} (the encoder's); this probe was trained "
                     f"with {probe.layer_norm_eps}: logits will differ very slightly")
    return bad, notes


def write_hf_folder(w, dst: str | Path, encoder_part: str | None = None, with_probe: bool = True) -> tuple[Path, list[str]]:
    """Write ``w`` as an HF folder (``config.json`` + ``model.safetensors``) that ``AutoModel.from_pretrained``
    loads. With a probe: ``VJEPA2ForVideoClassification``. Returns (folder, notes). Needs no transformers."""
    from safetensors.torch import save_file

    from .weights import WeightsError

    encoder_part = encoder_part or w.default_part()
    if encoder_part not in ("encoder", "target_encoder"):
        encoder_part = "target_encoder" if "target_encoder" in w.states else "encoder"
    notes: list[str] = []
    if "predictor" not in w.states:
        if not (with_probe and "probe" in w.states):
            raise WeightsError(f"{w.source}: HF VJEPA2Model always has a predictor, and this source has none "
                               f"(parts: {', '.join(w.parts)})")
        w = _with_placeholder_predictor(w)
        notes.append("this classifier has no predictor, but HF's VJEPA2Model always holds one: a 1-block predictor "
                     "(seeded init) was written, which VJEPA2ForVideoClassification never runs")
    from ..models.ac_predictor import ACPredictorConfig

    if isinstance(w.predictor, ACPredictorConfig):
        raise WeightsError(f"{w.source}: its predictor is V-JEPA 2-AC's action-conditioned one, which HF transformers "
                           "does not implement; convert to our format instead (--to videojepa)")
    for p in (encoder_part, "predictor"):
        w.check(p)
    if w.encoder.pos_embed == "sincos":
        raise WeightsError(f"{w.source}: {w.format} weights use sin-cos absolute positions, which HF's V-JEPA 2 "
                           "(RoPE only) does not implement; convert to our format instead (--to videojepa)")
    try:
        kwargs = hf_config_kwargs(w.encoder, w.predictor)
    except ValueError as e:
        raise WeightsError(f"{w.source}: cannot be expressed as HF V-JEPA 2: {e}") from None
    sd = videojepa_to_hf(w.states[encoder_part], w.states["predictor"])
    cfg = {"model_type": "vjepa2", "architectures": ["VJEPA2Model"], **kwargs, "hidden_act": "gelu",
           "initializer_range": 0.02, "attention_probs_dropout_prob": 0.0, "attention_dropout": 0.0}
    if with_probe and "probe" in w.states:
        w.check("probe")
        bad, more = hf_probe_problems(w.encoder, w.probe)
        notes += more
        if bad:
            raise WeightsError(f"{w.source}: the probe cannot be expressed as HF's classification head: " + "; ".join(bad))
        head = dict(w.states["probe"])
        head.pop("pooler.cross_attention_block.xattn.proj.weight", None)
        head.pop("pooler.cross_attention_block.xattn.proj.bias", None)
        sd = {HF_CLASSIFIER_PREFIX + k: v for k, v in sd.items()}
        sd.update(videojepa_probe_to_hf(head))
        labels = w.info().get("labels") or [f"LABEL_{i}" for i in range(w.probe.num_classes)]
        cfg.update(architectures=["VJEPA2ForVideoClassification"], num_pooler_layers=w.probe.depth - 1,
                   id2label={str(i): str(l) for i, l in enumerate(labels)},
                   label2id={str(l): i for i, l in enumerate(labels)})
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    tmp = dst / "model.safetensors.tmp"
    save_file({k: v.detach().to("cpu").contiguous() for k, v in sd.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(dst / "model.safetensors")
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst, notes


def _with_placeholder_predictor(w):
    """``w`` with a small predictor added (HF's classifier holds a VJEPA2Model, whose predictor it never runs)."""
    import dataclasses

    import torch

    from ..models.predictor import Predictor, PredictorConfig

    e = w.encoder
    cfg = PredictorConfig(embed_dim=e.embed_dim, depth=1, num_heads=e.num_heads, num_mask_tokens=1,
                          pos_embed=e.pos_embed, rope_variant=e.rope_variant, layer_norm_eps=e.layer_norm_eps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pred = Predictor(cfg, e.embed_dim, e.grid, e.pos_embed, e.rope_variant)
    return dataclasses.replace(w, predictor=cfg, states={**w.states, "predictor": pred.state_dict()})
