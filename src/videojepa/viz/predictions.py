"""Masked predictions as pictures: what the predictor believes is behind the mask, decoded to pixels.

For one clip and one multi-block mask drawn from the run's own mask configs, :func:`predict` runs the context
encoder on the visible tubelets, the predictor at the hidden ones, and the light pixel decoder
(:mod:`videojepa.models.decoder`) on the predictor's outputs and on the target encoder's features. It scores,
at the hidden positions only, against the input pixels (PSNR, dB):

- ``prediction``: the predictor's outputs, decoded (the model's guess: it never saw these tubelets);
- ``copy_nearest``: each hidden tubelet copied from the nearest visible one (grid distance): the baseline a
  prediction must beat to show it carries more than "what is next to it";
- ``random_init``: the same pipeline for the model before training (its own decoder), when given;
- ``target_decoded``: the target encoder's features of the full clip, decoded: the decoder's ceiling, not a
  prediction (it saw the hidden pixels).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["predict", "nearest_visible", "compose", "prediction_panels", "show_predictions", "evaluate"]

GREY = 0.5


def nearest_visible(ctx: torch.Tensor, tgt: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """For each target id ``[K_t]`` the context id ``[K_c]`` nearest to it on the token grid (Euclidean in
    ``(t, h, w)`` units; ties go to the lowest id)."""
    t, h, w = grid

    def coords(ids):
        ids = ids.long()
        return torch.stack([ids // (h * w), (ids // w) % h, ids % w], -1).float()

    d = torch.cdist(coords(tgt), coords(ctx))  # [K_t, K_c]
    return ctx[d.argmin(-1)]


@torch.no_grad()
def predict(jepa, decoder, clip: torch.Tensor, ctx: torch.Tensor, tgt: torch.Tensor, mask_index: int = 0,
            part: str = "target_encoder", mask_token_by: str = "config",
            target_decoded: torch.Tensor | None = None, with_target: bool = True) -> dict:
    """One clip ``[C, T, H, W]`` (normalised), one mask ``ctx [K_c]`` / ``tgt [K_t]`` -> patchified pixels
    ``[N, P]`` (normalised space): ``input``, ``target_decoded`` (all positions), and at the target positions
    ``prediction`` and ``copy_nearest``; plus the grid. ``mask_index``: the mask config the mask was drawn from
    (``mask_token_by``: the run's ``train.mask_token_by``). The decoded target does not depend on the mask:
    pass it back as ``target_decoded`` for the clip's other masks, or ``with_target=False`` to skip it."""
    from ..training.decoder import features, predictor_outputs
    from ..training.objectives import patchify

    dc = decoder.cfg
    x = jepa.encoder.prepare_input(clip.unsqueeze(0))
    grid = jepa.encoder.grid_of(x)
    if tuple(grid) != tuple(dc.grid):
        raise ValueError(f"the decoder was trained for a token grid {dc.grid}, this clip gives {tuple(grid)}: "
                         "use the clip size the checkpoint was trained with")
    c, t_ = ctx.view(1, -1).long(), tgt.view(1, -1).long()
    p = predictor_outputs(jepa, x, c, t_, mask_index, mask_token_by)  # [1, K_t, D]
    pix = patchify(x, dc.tubelet_size, dc.patch_size)[0]  # [N, P]
    near = nearest_visible(c[0], t_[0], grid)
    out = {"input": pix, "prediction": decoder(p, t_)[0], "copy_nearest": pix[near], "ctx": c[0], "tgt": t_[0],
           "grid": tuple(grid)}
    if with_target:
        out["target_decoded"] = target_decoded if target_decoded is not None else decoder(features(jepa, x, part))[0]
    return out


def _to01(pix: torch.Tensor, mean, std) -> torch.Tensor:
    c = len(mean)
    m = torch.as_tensor(mean, dtype=torch.float32)
    s = torch.as_tensor(std, dtype=torch.float32)
    shape = pix.shape
    return (pix.float().reshape(*shape[:-1], -1, c) * s + m).clamp(0, 1).reshape(shape)


def hidden_psnr(out: dict, key: str, mean, std) -> float:
    """PSNR (dB) at the hidden positions of ``out[key]`` against the input, in ``[0, 1]`` pixels (clamped)."""
    from ..training.decoder import psnr

    true = _to01(out["input"][out["tgt"]], mean, std)
    pred = out[key] if key != "target_decoded" else out[key][out["tgt"]]
    return psnr(_to01(pred, mean, std), true)


def compose(out: dict, key: str, dc, mean, std, *, dim_visible: bool = True) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` uint8: the input at visible positions (blended towards grey when ``dim_visible``)
    and ``out[key]`` at the hidden ones (``key=None``: grey there; ``"target_decoded"``: decoded everywhere)."""
    from ..models.decoder import unpatchify

    pix = _to01(out["input"], mean, std).clone()
    if dim_visible:
        pix = GREY + 0.5 * (pix - GREY)
    if key in ("input", "target_decoded"):  # the whole clip
        pix = _to01(out[key], mean, std)
    elif key is None:
        pix[out["tgt"]] = GREY
    else:
        pix[out["tgt"]] = _to01(out[key], mean, std)
    video = unpatchify(pix.unsqueeze(0), out["grid"], dc.tubelet_size, dc.patch_size, dc.in_chans)[0]
    return (video.permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)


def prediction_panels(out: dict, dc, mean, std, random_out: dict | None = None) -> tuple[list[str], list[np.ndarray]]:
    """The named panels: input, visible context, decoded target, decoded prediction, copy-nearest (and the
    random-init model's decoded prediction)."""
    names = ["input", "visible context", "decoded target", "decoded prediction", "copy nearest visible"]
    panels = [compose(out, "input", dc, mean, std, dim_visible=False), compose(out, None, dc, mean, std),
              compose(out, "target_decoded", dc, mean, std), compose(out, "prediction", dc, mean, std),
              compose(out, "copy_nearest", dc, mean, std)]
    if random_out is not None:
        names.append("random-init prediction")
        panels.append(compose(random_out, "prediction", dc, mean, std))
    return names, panels


def draw_masks(jcfg, grid, seed: int, index: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One ``(ctx [K_c], tgt [K_t])`` per mask config of the run, drawn for sample ``index`` (a pure function of
    ``(seed, index)``)."""
    from ..masks.collator import MaskGenerator

    gen = MaskGenerator(jcfg.mask.build(), tuple(grid), int(seed), jcfg.mask.equalize)
    return [(c[0], t[0]) for c, t in gen.sample(int(index), 1)]


def _check_pair(jepa, decoder, meta: dict, what: str) -> None:
    d = jepa.target_encoder.cfg.embed_dim
    if decoder.cfg.embed_dim != d:
        raise ValueError(f"{what}: the decoder reads {decoder.cfg.embed_dim}-d tokens, the checkpoint's encoder gives "
                         f"{d}-d: it was trained for another model ({meta.get('checkpoint')})")


@torch.no_grad()
def evaluate(jepa, decoder, clips, jcfg, *, seed: int = 0, random_pair=None, part: str = "target_encoder",
             mean=None, std=None) -> dict:
    """Mean hidden-position PSNR over ``clips`` (an iterable of normalised ``[C, T, H, W]``) x every mask config:
    ``{name: {"mean": dB, "per_config": [...]}}`` for prediction, copy_nearest, target_decoded (and random_init)."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = mean or IMAGENET_MEAN
    std = std or IMAGENET_STD
    keys = ["prediction", "copy_nearest", "target_decoded"] + (["random_init"] if random_pair else [])
    scores: dict[str, list[list[float]]] = {k: [] for k in keys}
    for i, clip in enumerate(clips):
        grid = jepa.encoder.grid_of(jepa.encoder.prepare_input(clip.unsqueeze(0)))
        decoded = None  # the clip's decoded target, the same for each of its masks
        for m, (ctx, tgt) in enumerate(draw_masks(jcfg, grid, seed, i)):
            out = predict(jepa, decoder, clip, ctx, tgt, m, part, jcfg.train.mask_token_by, target_decoded=decoded)
            decoded = out["target_decoded"]
            row = {k: hidden_psnr(out, k, mean, std) for k in ("prediction", "copy_nearest", "target_decoded")}
            if random_pair:
                rj, rd = random_pair
                r_out = predict(rj, rd, clip, ctx, tgt, m, part, jcfg.train.mask_token_by, with_target=False)
                row["random_init"] = hidden_psnr(r_out, "prediction", mean, std)
            for k in keys:
                while len(scores[k]) <= m:
                    scores[k].append([])
                scores[k][m].append(row[k])
    return {k: {"mean": float(np.mean([x for per in v for x in per])),
                "per_config": [float(np.mean(per)) for per in v], "n": sum(len(per) for per in v)}
            for k, v in scores.items()}


def show_predictions(video: str, checkpoint: str | Path, decoder_dir: str | Path, out_dir: str | Path, *,
                     item: int = 0, mask_config: int | None = None, seed: int = 0, random_decoder: str | Path | None = None,
                     fps: float = 4, formats=("gif", "mp4"), png: bool = True) -> dict:
    """Decode one clip's masked predictions: writes ``predictions.gif``/``.mp4`` (the panels side by side, over
    time), ``predictions.png`` (panels x tubelets) and ``predictions.json`` (hidden-position PSNR of each panel);
    returns ``{"gif", "png", "mp4", "json", "psnr", "seconds"}``. ``random_decoder``: the decoder trained on the
    random-init model (``videojepa decoder train --init random``), adding that baseline."""
    import json

    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..training.decoder import load_decoder, load_jepa
    from .clips import read_clip
    from .media import grid as grid_img
    from .media import auto_scale, side_by_side, upscale, write_png, write_video

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jepa, jcfg, ckpt = load_jepa(checkpoint)
    decoder, meta = load_decoder(decoder_dir)
    _check_pair(jepa, decoder, meta, str(decoder_dir))
    part = meta.get("part", "target_encoder")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    clip, _ = read_clip(video, num_frames=jcfg.data.num_frames, crop_size=jcfg.data.crop_size, item=item,
                        frame_step=jcfg.data.frame_step, fps=jcfg.data.fps, mean=mean, std=std)  # the run's clips
    grid = jepa.encoder.grid_of(jepa.encoder.prepare_input(clip.unsqueeze(0)))
    masks = draw_masks(jcfg, grid, seed, item)
    m = (len(masks) - 1) if mask_config is None else int(mask_config)  # default: the long-range (largest) config
    if not 0 <= m < len(masks):
        raise ValueError(f"mask config {m} does not exist: the run has {len(masks)} ({jcfg.mask.configs})")
    ctx, tgt = masks[m]
    out = predict(jepa, decoder, clip, ctx, tgt, m, part, jcfg.train.mask_token_by)
    random_out = None
    scores = {k: hidden_psnr(out, k, mean, std) for k in ("prediction", "copy_nearest", "target_decoded")}
    if random_decoder is not None:
        rj, _, _ = load_jepa(checkpoint, "random")
        rd, rmeta = load_decoder(random_decoder)
        _check_pair(rj, rd, rmeta, str(random_decoder))
        if rmeta.get("init") != "random":
            raise ValueError(f"{random_decoder}: this decoder was trained on the trained model's features "
                             f"(init={rmeta.get('init')!r}); train the baseline one with --init random")
        random_out = predict(rj, rd, clip, ctx, tgt, m, part, jcfg.train.mask_token_by, with_target=False)
        scores["random_init"] = hidden_psnr(random_out, "prediction", mean, std)
    names, panels = prediction_panels(out, decoder.cfg, mean, std, random_out)
    k = auto_scale(*panels[0].shape[1:3])
    panels = [upscale(p, k) for p in panels]
    paths = write_video(side_by_side(panels, labels=names), out_dir / "predictions", formats=formats, fps=fps)
    tub = decoder.cfg.tubelet_size
    cols = list(range(0, panels[0].shape[0], tub))
    if png:
        png = write_png(grid_img([[p[t] for t in cols] for p in panels], row_labels=names,
                                 col_labels=[f"t={t}" for t in cols]), out_dir / "predictions.png")
    hidden = int(tgt.numel())
    info = {"video": video, "item": item, "checkpoint": str(ckpt), "decoder": str(decoder_dir), "mask_config": m,
            "hidden_tokens": hidden, "tokens": int(np.prod(grid)), "psnr_db": scores}
    (out_dir / "predictions.json").write_text(json.dumps(info, indent=2))
    res = {**{k: Path(v) for k, v in paths.items()}, **({"png": png} if png else {}), "json": out_dir / "predictions.json", "psnr": scores,
           "seconds": time.perf_counter() - t0}
    return res
