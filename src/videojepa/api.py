"""The small public Python API."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from .models.registry import create_model, list_models

__all__ = ["list_models", "create_model", "load", "PARTS"]

PARTS = ("encoder", "target_encoder", "predictor", "probe", "classifier")


def load(path_or_name: str | Path, part: str | None = None, *, config=None, map_location="cpu",
         download: bool | None = None) -> nn.Module:
    """A model from a weights file or a published model name, loaded strictly, in eval mode.

    ``path_or_name``: one of our pretraining checkpoints (``runs/.../step_*.pt``), our exchange format
    (``model.safetensors`` + ``config.json``), an official V-JEPA 1 ``.pth.tar`` / V-JEPA 2 ``.pt`` file or
    attentive-probe checkpoint, a HuggingFace V-JEPA 2 folder, or a published name (``videojepa weights list``;
    fetched from the cache, downloaded there when allowed).

    ``part``: ``target_encoder`` (the EMA encoder, which the published probes were trained on), ``encoder``,
    ``predictor``, ``probe`` or ``classifier`` (encoder + head of a ``videojepa finetune`` export:
    clips ``[B, C, T, H, W]`` -> logits). Default: the classifier of a fine-tuned export, the probe of a probe file, else the encoder the source was evaluated
    with (``target_encoder`` when present). ``config``: architecture facts the file cannot tell (e.g.
    ``{"encoder": {"num_heads": 16}}``); facts it can tell are checked against it.

    The module carries ``pretrained_cfg`` (source, format, preprocessing, notes, keys dropped on purpose).
    """
    from .interop.weights import read_weights

    if part is not None and part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    w = read_weights(path_or_name, config=config, map_location=map_location, download=download)
    return w.build(part)
