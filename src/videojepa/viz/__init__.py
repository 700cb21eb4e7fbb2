"""Pictures of what the model sees and predicts: writers (:mod:`.media`), clips (:mod:`.clips`), token
features as colours (:mod:`.features`) and where an attentive probe looks (:mod:`.attention`)."""
from __future__ import annotations

from .media import (VIDEO_FORMATS, auto_scale, denormalize, grid, overlay_heatmap, side_by_side, upscale,
                    write_gif, write_mp4, write_png, write_video)

__all__ = ["VIDEO_FORMATS", "auto_scale", "denormalize", "grid", "overlay_heatmap", "side_by_side", "upscale",
           "write_gif", "write_mp4", "write_png", "write_video",
           # lazily imported (they import torch models):
           "VizError", "read_clip", "read_clips", "clip_defaults", "encoder_of",
           "PCA", "token_grid", "fit_pca", "pca_rgb", "feature_frames", "feature_maps", "show_features",
           "ProbeAttention", "probe_attention", "attention_grid"]

_LAZY = {
    "clips": ("VizError", "read_clip", "read_clips", "clip_defaults", "encoder_of"),
    "features": ("PCA", "token_grid", "fit_pca", "pca_rgb", "feature_frames", "feature_maps", "show_features"),
    "attention": ("ProbeAttention", "probe_attention", "attention_grid"),
}


def __getattr__(name: str):
    import importlib

    for mod, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
