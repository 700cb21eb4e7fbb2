"""The small public Python API."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from .models.predictor import Predictor
from .models.registry import create_model, list_models
from .models.vit import VisionTransformer

__all__ = ["list_models", "create_model", "load", "PARTS"]

PARTS = ("encoder", "target_encoder", "predictor")


def load(path: str | Path, part: str = "target_encoder", map_location="cpu") -> nn.Module:
    """A model from one of our pretraining checkpoints, loaded strictly, in eval mode.

    ``part``: ``target_encoder`` (the EMA encoder, what V-JEPA evaluates; default), ``encoder`` or
    ``predictor``. Other formats (official V-JEPA files, HuggingFace folders) are not read here.
    """
    from .config import PretrainConfig
    from .training.checkpoint import load_checkpoint
    from .training.trainer import CHECKPOINT_FORMAT

    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    sd = load_checkpoint(path, map_location=map_location)
    if not isinstance(sd, dict) or sd.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a videojepa pretraining checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    cfg = PretrainConfig.from_dict(sd["config"])
    enc_cfg = cfg.encoder_config()
    if part == "predictor":
        model: nn.Module = Predictor(cfg.predictor_config(), enc_cfg.embed_dim, enc_cfg.grid, enc_cfg.pos_embed,
                                     enc_cfg.rope_variant)
    else:
        model = VisionTransformer(enc_cfg)
    model.load_state_dict(sd[part], strict=True)
    return model.eval()
