"""3D masks for V-JEPA: multi-block and tube samplers, the per-step generator, the collator, token gathering."""
from videojepa.masks.collator import MaskCollator, MaskConfig, MaskGenerator, MaskPair
from videojepa.masks.multiblock import (
    DEFAULT_MASKS,
    LONG_RANGE,
    MAX_RESAMPLES,
    SHORT_RANGE,
    MultiBlockMaskConfig,
    TubeMaskConfig,
    sample_multiblock,
    sample_tube,
)
from videojepa.masks.ops import Grid, apply_masks, grid_size, num_tokens

__all__ = [
    "DEFAULT_MASKS",
    "LONG_RANGE",
    "MAX_RESAMPLES",
    "SHORT_RANGE",
    "Grid",
    "MaskCollator",
    "MaskConfig",
    "MaskGenerator",
    "MaskPair",
    "MultiBlockMaskConfig",
    "TubeMaskConfig",
    "apply_masks",
    "grid_size",
    "num_tokens",
    "sample_multiblock",
    "sample_tube",
]
