"""Translate the official V-JEPA 1 (jepa) and V-JEPA 2 (vjepa2) pretraining YAMLs into our config.

Every key that the reference code reads is mapped (REFERENCE §10.1, §10.3); keys that only steer
the cluster (``nodes``, ``tasks_per_node``, ``mem_per_gpu``, ``folder`` ...) or that the reference
itself ignores are accepted and reported as ignored; an unknown key is an error that names it.

Schedules: the reference counts virtual epochs of ``ipe`` iterations and stretches every schedule
by ``ipe_scale`` while stopping at ``epochs * ipe``. We keep exactly that: ``train.max_steps =
epochs * ipe``, ``optim.schedule_steps = int(ipe_scale * epochs * ipe)``, ``warmup_steps =
int(warmup * ipe)`` (so a V-JEPA 1 ViT-L run ends at lr ~7.5e-5, as the reference's did).
"""
from __future__ import annotations

from typing import Any

__all__ = ["is_official", "translate_official"]

_OFFICIAL_SECTIONS = {"meta", "optimization", "data_aug", "logging"}

# section -> {key: our dotted key | None (accepted, ignored) | callable}
_IGNORED_TOP = {"app", "nodes", "tasks_per_node", "cpus_per_task", "mem_per_gpu", "folder"}
_IGNORED = {
    "meta": {"load_checkpoint", "read_checkpoint", "eval_freq", "use_sdpa", "save_every_freq", "skip_batches", "sync_gc"},
    "data": {"dataset_type", "decode_one_clip", "pin_mem", "num_workers", "persistent_workers",
             "log_resource_utilization", "mask_type"},
    "data_aug": {"auto_augment", "motion_shift", "reprob"},
    "model": {"use_mask_tokens", "use_sdpa", "compile_model", "use_silu", "use_pred_silu", "wide_silu"},
    "logging": {"folder", "write_tag"},
    "optimization": {"is_anneal", "anneal_ckpt", "resume_anneal"},
    "loss": set(),
}
_KNOWN = {
    "meta": {"seed", "dtype"},
    "data": {"datasets", "datasets_weights", "batch_size", "num_frames", "dataset_fpcs", "tubelet_size", "sampling_rate",
             "fps", "crop_size", "patch_size", "num_clips", "filter_short_videos", "clip_duration"},
    "data_aug": {"random_resize_scale", "random_resize_aspect_ratio"},
    "model": {"model_name", "pred_depth", "pred_embed_dim", "pred_num_heads", "uniform_power", "use_rope",
              "use_activation_checkpointing", "zero_init_mask_tokens"},
    "loss": {"loss_exp", "reg_coeff"},
    "optimization": {"ipe", "ipe_scale", "clip_grad", "weight_decay", "final_weight_decay", "epochs", "warmup",
                     "start_lr", "lr", "final_lr", "ema", "betas", "eps"},
    "logging": set(),
}
_MASK_KEYS = {"aspect_ratio", "num_blocks", "spatial_scale", "temporal_scale", "max_temporal_keep", "max_keep",
              "full_complement"}
_MASK_IGNORED = {"pred_full_complement", "inv_block"}

# reference factory names -> our presets
_MODEL_NAMES = {
    "vit_tiny": "vit_tiny", "vit_small": "vit_small", "vit_base": "vit_base", "vit_large": "vit_large",
    "vit_huge": "vit_huge", "vit_giant_xformers": "vit_giant", "vit_giant": "vit_giant_16h",
    "vit_gigantic": "vit_gigantic", "vit_large_rope": "vit_large", "vit_huge_rope": "vit_huge",
    "vit_giant_xformers_rope": "vit_giant",
}


def is_official(d: dict) -> bool:
    """True for a reference-style config (it has ``meta`` / ``optimization`` sections)."""
    return isinstance(d, dict) and bool(_OFFICIAL_SECTIONS & set(d))


def translate_official(d: dict, src: str = "config") -> tuple[dict, list[str]]:
    """Our config dict for an official pretraining config, plus notes listing ignored keys."""
    ignored: list[str] = []
    unknown: list[str] = []
    for k in d:
        if k in _IGNORED_TOP:
            ignored.append(k)
        elif k not in _KNOWN and k != "mask":
            unknown.append(k)
    sec = {}
    for s in _KNOWN:
        v = d.get(s) or {}
        if not isinstance(v, dict):
            raise ValueError(f"{src}: section {s!r} must be a mapping")
        for k in v:
            if k in _IGNORED[s]:
                ignored.append(f"{s}.{k}")
            elif k not in _KNOWN[s]:
                unknown.append(f"{s}.{k}")
        sec[s] = v
    masks = d.get("mask") or []
    if not isinstance(masks, list):
        raise ValueError(f"{src}: 'mask' must be a list of mask configs")
    mask_cfgs = []
    for i, m in enumerate(masks):
        for k in m:
            if k in _MASK_IGNORED:
                if m[k]:
                    unknown.append(f"mask[{i}].{k} (= {m[k]!r}: not supported)")
                else:
                    ignored.append(f"mask[{i}].{k}")
            elif k not in _MASK_KEYS and k != "ratio":
                unknown.append(f"mask[{i}].{k}")
        if "ratio" in m:
            mask_cfgs.append({"type": "tube", "ratio": m["ratio"]})
        else:
            mc = {"type": "multiblock", **{k: m[k] for k in _MASK_KEYS if k in m}}
            mask_cfgs.append(mc)
    if unknown:
        raise ValueError(f"{src}: unknown key(s) for an official V-JEPA config: {', '.join(unknown)}")

    meta, data, aug, model, loss, opt = (sec[s] for s in ("meta", "data", "data_aug", "model", "loss", "optimization"))
    v2 = "dataset_fpcs" in data or "use_rope" in model or "fps" in data
    name = model.get("model_name", "vit_large")
    if name not in _MODEL_NAMES:
        raise ValueError(f"{src}: model.model_name {name!r} is not a known reference factory ({', '.join(_MODEL_NAMES)})")
    use_rope = bool(model.get("use_rope", False)) or name.endswith("_rope")

    num_frames = max(data["dataset_fpcs"]) if "dataset_fpcs" in data else data.get("num_frames", 16)
    if "dataset_fpcs" in data and len(set(data["dataset_fpcs"])) > 1:
        raise ValueError(f"{src}: data.dataset_fpcs with different clip lengths {data['dataset_fpcs']} is not supported yet")

    ipe = opt.get("ipe")
    if ipe is None:
        raise ValueError(f"{src}: optimization.ipe is null (iterations per epoch from the dataset length); set it")
    epochs = opt["epochs"]
    ipe_scale = opt.get("ipe_scale", 1.0)
    overrides: dict[str, Any] = dict(
        patch_size=data.get("patch_size", 16), tubelet_size=data.get("tubelet_size", 2),
        pos_embed="rope" if use_rope else "sincos", uniform_power=model.get("uniform_power", not v2),
        activation_checkpointing=bool(model.get("use_activation_checkpointing", False)),
        # V-JEPA 1 re-initialises every Linear after construction, undoing the depth-scaled init
        init_rescale=v2,
    )
    from ..models.registry import get_preset

    enc_heads = get_preset(_MODEL_NAMES[name]).num_heads
    pred_heads = model.get("pred_num_heads") if v2 else None
    out = {
        "model": {"name": _MODEL_NAMES[name], **overrides},
        "predictor": {
            "embed_dim": model.get("pred_embed_dim", 384), "depth": model.get("pred_depth", 6),
            "num_heads": pred_heads if pred_heads is not None else enc_heads,
            "zero_init_mask_tokens": model.get("zero_init_mask_tokens", True),
            "uniform_power": model.get("uniform_power", not v2),
            "sort_by_position": v2, "init_rescale": v2,
            "activation_checkpointing": bool(model.get("use_activation_checkpointing", False)),
        },
        "data": {
            "source": "files", "num_frames": num_frames, "crop_size": data.get("crop_size", 224),
            "batch_size": data["batch_size"], "datasets": list(data.get("datasets") or []),
            "datasets_weights": data.get("datasets_weights"),
            "frame_step": (data.get("sampling_rate") if not v2 else None) if data.get("clip_duration") is None else None,
            "fps": data.get("fps"), "clip_duration": data.get("clip_duration") if not data.get("fps") else None,
            "num_clips": data.get("num_clips", 1),
            # the reference skips (and replaces) videos shorter than a clip when filter_short_videos is set
            "short_video": "skip" if data.get("filter_short_videos") else "pad",
            "random_resize_scale": aug.get("random_resize_scale", [0.3, 1.0]),
            "random_resize_aspect_ratio": aug.get("random_resize_aspect_ratio", [0.75, 4 / 3]),
        },
        "mask": {"equalize": "prefix", "configs": mask_cfgs},
        "optim": {
            "lr_schedule": "cosine", "start_lr": opt["start_lr"], "lr": opt["lr"], "final_lr": opt["final_lr"],
            "warmup_steps": int(opt["warmup"] * ipe), "schedule_steps": int(ipe_scale * epochs * ipe),
            "weight_decay": opt["weight_decay"], "final_weight_decay": opt["final_weight_decay"],
            "ema": list(opt["ema"]), "clip_grad": opt.get("clip_grad"), "clip_grad_after_warmup": not v2,
            **({"betas": list(opt["betas"])} if "betas" in opt else {}), **({"eps": opt["eps"]} if "eps" in opt else {}),
        },
        "loss": {"loss_exp": loss.get("loss_exp", 1.0), "reg_coeff": loss.get("reg_coeff", 0.0)},
        "train": {
            "seed": meta.get("seed", 0), "max_steps": int(epochs * ipe),
            "dtype": "auto" if meta.get("dtype") == "bfloat16" else "float32",
            "mask_token_by": "first" if v2 else "config",
        },
    }
    if meta.get("dtype") == "float16":
        ignored.append("meta.dtype=float16 (we run bfloat16 on CUDA, float32 on CPU)")
    if opt.get("is_anneal"):
        out["optim"].update(lr_schedule="linear", warmup_steps=0)
        ignored.append("optimization.is_anneal: the cooldown starts from --resume/anneal checkpoint given on the command line")
    notes = [f"{src}: official {'V-JEPA 2' if v2 else 'V-JEPA 1'} config translated"]
    if ignored:
        notes.append(f"ignored (cluster-only or unused by the reference): {', '.join(ignored)}")
    return out, notes
