"""One V-JEPA training step, ours against the official code, side by side in one process.

    python bench/vs_official.py --jepa PATH/TO/jepa --vjepa2 PATH/TO/vjepa2

``--jepa`` / ``--vjepa2``: checkouts of facebookresearch/jepa and facebookresearch/vjepa2 (a working tree, or a
bare git repository whose HEAD is extracted to a temporary folder). Nothing of theirs is copied into this project:
their modules are imported from the checkout. vjepa2's ``modules.py`` imports ``timm`` only for ``drop_path``;
when timm is not installed (it drags in torchvision) a stand-in with the same behaviour is registered (drop path
is 0 here, so it is never on the timed path).

Rows (the config of issue 15: encoder 128 wide x 4 deep, 4 heads, predictor 96 x 4, clips 16 x 64², patch 8,
tubelet 2, batch 16, the demo's two multi-block mask configs, identical masks and clips for both sides):

- ``sincos``: ours with sin-cos positions vs facebookresearch/jepa (V-JEPA 1);
- ``rope``: ours with RoPE (legacy layout) vs facebookresearch/vjepa2 with ``use_rope=True``;
- ``ours rope / ours sincos``: what RoPE costs us.

A step is the full training step as each repository's trainer does it: target encoder (no grad) + layer norm,
context encoder per mask config, predictor, L1 loss, backward, AdamW, EMA (jepa: a per-parameter loop; vjepa2:
``torch._foreach_mul_/add_``; ours: ``ema_update``). Rounds alternate between the two sides; medians reported.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

CFG = dict(img=64, frames=16, patch=8, tubelet=2, dim=128, depth=4, heads=4, pdim=96, pdepth=4, pheads=4, batch=16)


def materialize(path: str) -> Path:
    """A checkout's folder holding ``src/`` (a working tree as is; a bare repository's HEAD extracted)."""
    p = Path(path).expanduser()
    if (p / "src" / "models").is_dir():
        return p
    if (p / "HEAD").is_file() and (p / "objects").is_dir():
        out = Path(tempfile.mkdtemp(prefix=f"ref-{p.parent.name}-"))
        tar = subprocess.run(["git", f"--git-dir={p}", "archive", "HEAD"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
        return out
    raise SystemExit(f"{p}: neither a checkout with src/models nor a bare git repository")


def import_reference(root: Path) -> dict:
    """Import the reference's ``src.models`` / ``src.masks`` from ``root`` (both repositories name their package
    ``src``: each import is made alone and its modules kept by reference)."""
    if "timm" not in sys.modules:
        try:
            import timm  # noqa: F401
        except ImportError:  # only drop_path is used (vjepa2 modules.py): the same function, ours
            def drop_path(x, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
                if drop_prob == 0.0 or not training:
                    return x
                keep = 1 - drop_prob
                mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
                return x * (mask / keep if scale_by_keep else mask)

            timm = types.ModuleType("timm")
            models = types.ModuleType("timm.models")
            layers = types.ModuleType("timm.models.layers")
            layers.drop_path = drop_path
            timm.models, models.layers = models, layers
            sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})
    for k in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
        del sys.modules[k]
    sys.path.insert(0, str(root))
    try:
        try:
            import einops  # noqa: F401  (vjepa2's patch_embed.py imports it)
        except ImportError:
            raise SystemExit("the reference imports einops: pip install einops (small, pure Python)") from None
        mods = {n: importlib.import_module(f"src.{n}") for n in ("models.vision_transformer", "models.predictor",
                                                                 "masks.utils")}
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
            del sys.modules[k]
    return mods


# ------------------------------------------------------------------------------------------------ the two sides
class Ours:
    def __init__(self, pos: str, masks_n: int):
        from videojepa.models.predictor import PredictorConfig
        from videojepa.models.vit import EncoderConfig
        from videojepa.training.jepa import JEPA
        from videojepa.training.optim import param_groups

        c = CFG
        enc = EncoderConfig(img_size=c["img"], num_frames=c["frames"], patch_size=c["patch"], tubelet_size=c["tubelet"],
                            embed_dim=c["dim"], depth=c["depth"], num_heads=c["heads"], pos_embed=pos,
                            rope_variant="legacy")
        pred = PredictorConfig(embed_dim=c["pdim"], depth=c["pdepth"], num_heads=c["pheads"], num_mask_tokens=masks_n)
        self.model = JEPA(enc, pred)
        self.opt = torch.optim.AdamW(param_groups(*self.model.trainable()), lr=1e-4)

    def step(self, clips, masks):
        out = self.model(clips, masks)
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.model.update_target(0.996)
        return out.loss.detach()


class Reference:
    """The official step: ``forward_target`` / ``forward_context`` / ``loss_fn`` / EMA as their train.py does."""

    def __init__(self, mods: dict, version: int, masks_n: int):
        c = CFG
        vt, pr = mods["models.vision_transformer"], mods["models.predictor"]
        self.apply_masks = mods["masks.utils"].apply_masks
        self.version = version
        common = dict(img_size=c["img"], patch_size=c["patch"], num_frames=c["frames"], tubelet_size=c["tubelet"])
        extra = {"use_rope": True} if version == 2 else {"uniform_power": True}
        self.encoder = vt.VisionTransformer(**common, embed_dim=c["dim"], depth=c["depth"], num_heads=c["heads"],
                                            **extra)
        self.predictor = pr.VisionTransformerPredictor(
            **common, embed_dim=c["dim"], predictor_embed_dim=c["pdim"], depth=c["pdepth"], num_heads=c["pheads"],
            use_mask_tokens=True, num_mask_tokens=masks_n, zero_init_mask_tokens=True, **extra)
        self.target = copy.deepcopy(self.encoder)
        for p in self.target.parameters():
            p.requires_grad_(False)
        params = [p for m in (self.encoder, self.predictor) for p in m.parameters()]
        self.opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1]},
                                      {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=1e-4)

    def step(self, clips, masks):
        enc_masks = [m[0] for m in masks]
        pred_masks = [m[1] for m in masks]
        with torch.no_grad():
            h = self.target(clips)
            h = F.layer_norm(h, (h.size(-1),))
            hs = [self.apply_masks(h, [m]) for m in pred_masks]
        losses = []
        for i, (mc, mt) in enumerate(zip(enc_masks, pred_masks)):  # their MultiMask wrappers: one pass per config
            z = self.encoder(clips, masks=[mc])
            if self.version == 1:
                z = self.predictor(z, hs[i], [mc], [mt], mask_index=i)
            else:
                z = self.predictor(z, [mc], [mt], mask_index=i)
            losses.append(torch.mean(torch.abs(z - hs[i]) ** 1.0) / 1.0)
        loss = sum(losses) / len(losses)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            m = 0.996
            q = list(self.encoder.parameters())
            k = list(self.target.parameters())
            if self.version == 2:
                torch._foreach_mul_(k, m)
                torch._foreach_add_(k, q, alpha=1 - m)
            else:
                for pq, pk in zip(q, k):
                    pk.data.mul_(m).add_((1.0 - m) * pq.detach().data)
        return loss.detach()


# ------------------------------------------------------------------------------------------------ timing
def batch(seed: int):
    from videojepa.masks.collator import MaskGenerator
    from videojepa.masks.multiblock import MultiBlockMaskConfig
    from videojepa.masks.ops import grid_size

    c = CFG
    g = torch.Generator().manual_seed(seed)
    clips = torch.randn(c["batch"], 3, c["frames"], c["img"], c["img"], generator=g)
    grid = grid_size(c["frames"], c["img"], c["img"], c["tubelet"], c["patch"])
    cfgs = [MultiBlockMaskConfig(num_blocks=8, spatial_scale=(0.15, 0.15), aspect_ratio=(0.75, 1.5)),
            MultiBlockMaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7), aspect_ratio=(0.75, 1.5))]
    masks = MaskGenerator(cfgs, grid, seed).sample(0, c["batch"])
    return clips, masks


def time_pair(a, b, clips, masks, rounds: int, steps: int) -> tuple[float, float]:
    for side in (a, b):  # warm-up
        side.step(clips, masks)
    ta, tb = [], []
    for r in range(rounds):
        order = (a, b) if r % 2 == 0 else (b, a)
        for side in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                side.step(clips, masks)
            dt = (time.perf_counter() - t0) / steps
            (ta if side is a else tb).append(dt)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jepa", help="facebookresearch/jepa checkout (sincos row)")
    ap.add_argument("--vjepa2", help="facebookresearch/vjepa2 checkout (rope row)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    clips, masks = batch(0)
    bs = CFG["batch"]
    rows = []
    torch.manual_seed(0)
    ours = {pos: Ours(pos, len(masks)) for pos in ("sincos", "rope")}
    if a.jepa:
        ref = Reference(import_reference(materialize(a.jepa)), 1, len(masks))
        to, tr = time_pair(ours["sincos"], ref, clips, masks, a.rounds, a.steps)
        rows.append(("sincos: ours vs facebookresearch/jepa", bs / to, bs / tr, tr / to))
    if a.vjepa2:
        ref = Reference(import_reference(materialize(a.vjepa2)), 2, len(masks))
        to, tr = time_pair(ours["rope"], ref, clips, masks, a.rounds, a.steps)
        rows.append(("rope: ours vs facebookresearch/vjepa2", bs / to, bs / tr, tr / to))
    ts, trp = time_pair(ours["sincos"], ours["rope"], clips, masks, a.rounds, a.steps)
    rows.append(("ours: rope vs sincos", bs / trp, bs / ts, ts / trp))
    print(f"\none training step, {CFG}, {torch.get_num_threads()} threads, float32, "
          f"median of {a.rounds} alternating rounds x {a.steps} steps")
    print(f"| comparison | first clips/s | second clips/s | speed ratio (first / second) |")
    print("|---|---|---|---|")
    for name, x, y, r in rows:
        print(f"| {name} | {x:.2f} | {y:.2f} | {r:.2f}x |")


if __name__ == "__main__":
    main()
