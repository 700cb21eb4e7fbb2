"""videojepa: V-JEPA / V-JEPA 2 in PyTorch.

>>> import videojepa
>>> videojepa.list_models()[:3]
>>> enc = videojepa.create_model("vit_large", pos_embed="rope", img_size=256, num_frames=16)
>>> enc = videojepa.load("runs/demo/checkpoints/step_00000400.pt")  # EMA target encoder
"""
from .api import PARTS, create_model, list_models, load

__version__ = "0.1.0"
__all__ = ["list_models", "create_model", "load", "PARTS", "__version__"]
