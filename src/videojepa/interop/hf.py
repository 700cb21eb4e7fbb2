"""HuggingFace ``transformers`` V-JEPA 2 <-> videojepa: configs and state-dict key maps.

Our encoder and predictor use the reference key names (``blocks.{i}.attn.qkv``,
``predictor_blocks.{i}...``), so the map is a table of patterns plus two tensor transforms:
HF splits the fused ``qkv`` into ``query/key/value`` (row thirds, in that order) and stacks the
predictor mask tokens into one ``[K, 1, 1, D]`` parameter. Conversions are strict: every source key
must be consumed, otherwise the error lists the leftovers by name. HF models only RoPE (legacy
tiling), so only RoPE configs map.
"""
from __future__ import annotations

import re

import torch

from ..models.predictor import PredictorConfig
from ..models.vit import EncoderConfig

__all__ = ["configs_from_hf", "hf_config_kwargs", "hf_to_videojepa", "videojepa_to_hf"]

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

    def take(k: str) -> torch.Tensor:
        if k not in src:
            raise KeyError(k)
        used.add(k)
        return src[k]

    enc, pred = {}, {}
    try:
        for hk, ok in _ENC_FLAT:
            enc[ok] = take(hk)
        for side, hp, op, out in (("encoder", "encoder.layer.", "blocks.", enc), ("predictor", "predictor.layer.", "predictor_blocks.", pred)):
            for i in _layer_ids(src, hp):
                for hk, ok in _BLOCK:
                    out[f"{op}{i}.{ok}"] = take(f"{hp}{i}.{hk}")
                for t in ("weight", "bias"):
                    out[f"{op}{i}.attn.qkv.{t}"] = torch.cat(
                        [take(f"{hp}{i}.attention.{n}.{t}") for n in ("query", "key", "value")], dim=0)
        for hk, ok in _PRED_FLAT:
            pred[ok] = take(hk)
        mt = take("predictor.embeddings.mask_tokens")
    except KeyError as e:
        raise ValueError(f"HF V-JEPA 2 state dict is missing key {prefix}{e.args[0]}") from None
    for k in range(mt.shape[0]):
        pred[f"mask_tokens.{k}"] = mt[k].reshape(1, 1, -1)
    left = sorted(k for k in src if k not in used and (k.startswith("encoder.") or k.startswith("predictor.")))
    if left:
        raise ValueError(f"unexpected keys in HF V-JEPA 2 state dict: {', '.join(prefix + k for k in left)}")
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
