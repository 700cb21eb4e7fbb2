"""End-to-end fine-tuning of an encoder and a classification head on labelled videos.

``Finetuner(cfg, out_dir).fit()`` then ``.finish()``: the encoder comes from a pretraining checkpoint, published
weights, or a random init (``model.init``); the head is one of the probe heads (:func:`~videojepa.models.pooler.
build_classifier`); the loop is the shared :class:`~videojepa.training.engine.Engine` (resume, atomic
checkpoints, metrics, progress, DDP, the non-finite stop, skipped-file accounting). What step ``s`` sees (clips,
augmentation, mixup, drop path) is a pure function of ``(seed, s)``.

- **Labels** come from ``data.train``: class names of a folder layout (or the synthetic set), else the integer
  labels found; they are saved with the model. A ``val``/``test`` label that training never saw is an error
  naming it and the file.
- **Few labels**: ``data.label_fraction`` keeps the stratified subset :func:`~videojepa.evaluation.fewshot.
  stratified_subset` draws for ``videojepa probe`` (same labels, fraction and seed -> same clips); the split
  manifest is written to ``split.json``. A subset smaller than a batch is repeated to fill it.
- **Optimisation**: AdamW with layer-wise lr decay (:func:`~videojepa.training.optim.layer_decay_param_groups`),
  warmup + cosine, optional head-only first stage (``optim.freeze_steps``) with its own schedule.
- **Evaluation**: single-view ``val`` top-1 every ``train.eval_every`` steps (logged); at the end
  (:meth:`Finetuner.finish`) the selected weights (``last`` or ``best`` on ``val``) are exported (safetensors +
  config: ``videojepa.load`` gives the classifier, ``videojepa classify`` reads it, ``videojepa convert --to hf``
  writes ``VJEPA2ForVideoClassification``) and tested with the ``segments`` x ``views`` protocol.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data.errors import DataError, SkippedSample
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from ..models.classifier import VideoClassifier
from ..models.pooler import ProbeConfig, build_classifier
from ..rng import derive_seed, torch_generator
from .distributed import DistEnv, barrier, init_distributed, wrap_ddp
from .engine import Engine
from .finetune_config import FinetuneConfig
from .metrics import MetricsLog
from .optim import layer_decay_param_groups

__all__ = ["Finetuner", "FINETUNE_FORMAT", "FT_COLUMNS", "LabelSpace", "stage_lr", "mix_batch", "build_encoder",
           "plot_finetune_metrics"]

FINETUNE_FORMAT = "videojepa-finetune/1"
FT_COLUMNS = ["step", "loss", "train_top1", "lr", "head_lr", "wd", "grad_norm", "clips_per_s", "elapsed_s", "val_top1",
              "val_top5", "val_loss", "samples_skipped"]


# ------------------------------------------------------------------------------------------------- schedule
def stage_lr(step: int, *, total: int, freeze_steps: int, warmup: int, final_ratio: float) -> tuple[int, float]:
    """``(stage, factor)`` at ``step``: stage 0 (head alone, ``step < freeze_steps``) or 1 (everything). Each stage
    warms up linearly from 0 over ``min(warmup, its length // 2)`` steps, then follows a cosine to
    ``final_ratio`` of its peak at its last step; the factor multiplies each group's peak lr."""
    if step < freeze_steps:
        s, n, stage = step, freeze_steps, 0
    else:
        s, n, stage = step - freeze_steps, max(1, total - freeze_steps), 1
    w = min(warmup, n // 2)
    if s < w:
        return stage, (s + 1) / (w + 1)
    progress = (s - w) / max(1, n - 1 - w)
    return stage, final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# ------------------------------------------------------------------------------------------------- mixup
def mix_batch(clips: torch.Tensor, labels: torch.Tensor, num_classes: int, *, smoothing: float, mixup: float,
              cutmix: float, mix_prob: float, switch_prob: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup / cutmix over the batch (the batch mixed with itself reversed, as timm does) -> ``(clips, soft
    targets [B, C])`` with label smoothing folded in. Cutmix pastes one box (the same in every frame)."""
    off, on = smoothing / num_classes, 1.0 - smoothing + smoothing / num_classes
    y = torch.full((labels.shape[0], num_classes), off, device=clips.device)
    y.scatter_(1, labels[:, None], on)
    if (mixup <= 0 and cutmix <= 0) or float(torch.rand((), generator=gen)) >= mix_prob:
        return clips, y
    use_cut = cutmix > 0 and (mixup <= 0 or float(torch.rand((), generator=gen)) < switch_prob)
    alpha = cutmix if use_cut else mixup
    lam = _beta(alpha, gen)
    flipped = clips.flip(0)
    if use_cut:
        H, W = clips.shape[-2:]
        ch, cw = int(H * math.sqrt(1 - lam)), int(W * math.sqrt(1 - lam))
        cy, cx = int(torch.randint(H, (), generator=gen)), int(torch.randint(W, (), generator=gen))
        t, b = max(cy - ch // 2, 0), min(cy + ch // 2, H)
        l, r = max(cx - cw // 2, 0), min(cx + cw // 2, W)
        clips = clips.clone()
        clips[..., t:b, l:r] = flipped[..., t:b, l:r]
        lam = 1.0 - (b - t) * (r - l) / (H * W)
    else:
        clips = clips * lam + flipped * (1.0 - lam)
    return clips, y * lam + y.flip(0) * (1.0 - lam)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from ``gen`` (two Gamma draws via numpy seeded from the generator)."""
    rng = np.random.default_rng(int(torch.randint(2**62, (), generator=gen)))
    return float(rng.beta(alpha, alpha))


# ------------------------------------------------------------------------------------------------- labels and data
class LabelSpace:
    """The classes of the training set: ``names[i]`` is class ``i``; ``raw`` maps a raw label of the training
    source (an integer of the index, or of the folder layout) to its class."""

    def __init__(self, names: list[str], raw: dict[int, int]) -> None:
        self.names, self.raw = list(names), dict(raw)
        self.index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_training(cls, labels: list[int], source_names, spec: str) -> "LabelSpace":
        if any(lab is None for lab in labels):
            raise DataError(f"{spec}: fine-tuning needs a label for every training video; "
                            f"{sum(lab is None for lab in labels)} have none")
        present = sorted(set(int(x) for x in labels))
        if len(present) < 2:
            raise DataError(f"{spec}: the training set has {len(present)} class(es); a classifier needs at least 2")
        names = [str(source_names[r]) if source_names is not None and r < len(source_names) else str(r) for r in present]
        return cls(names, {r: i for i, r in enumerate(present)})

    def mapping_for(self, labels: list, source_names, spec: str, paths=None) -> dict[int, int]:
        """Raw label -> class for another split; an unseen label is an error naming it and a file."""
        out = {}
        for j, lab in enumerate(labels):
            if lab is None or int(lab) < 0:
                continue
            lab = int(lab)
            if lab in out:
                continue
            name = str(source_names[lab]) if source_names is not None and lab < len(source_names) else str(lab)
            if name not in self.index:
                where = f" ({paths[j]})" if paths is not None else f" (item {j})"
                raise DataError(f"{spec}: label {name!r}{where} is not one of the {len(self)} classes of the training "
                                f"set ({', '.join(self.names[:10])}{', ...' if len(self) > 10 else ''})")
            out[lab] = self.index[name]
        return out

    def to_dict(self) -> dict:
        return {"names": self.names, "raw": {str(k): v for k, v in self.raw.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSpace":
        return cls(d["names"], {int(k): int(v) for k, v in d["raw"].items()})


def source_labels(ds) -> tuple[list, list | None, list | None]:
    """(raw labels per item, class names of the source or None, file paths or None), read without decoding."""
    base = getattr(ds, "base", ds)
    names = getattr(ds, "class_names", None) or getattr(base, "class_names", None)
    if hasattr(base, "labels") and callable(base.labels):  # the synthetic dataset
        return base.labels(len(base)).tolist(), list(names) if names else None, None
    if hasattr(base, "entries"):
        per = getattr(base, "clips_per_video", 1)
        ents = [base.entries[i // per] for i in range(len(base))]
        return [e.label for e in ents], list(names) if names else None, [e.path for e in ents]
    raise TypeError(f"cannot list the labels of a {type(base).__name__}")


class Relabeled(Dataset):
    """Items ``indices[i % len(indices)]`` of ``base`` with labels mapped to classes; ``repeat`` > 1 repeats the
    subset (a few-label subset smaller than the global batch). Passes ``getitem(index, step)`` through."""

    def __init__(self, base, indices, mapping: dict[int, int], repeat: int = 1) -> None:
        self.base, self.indices, self.mapping, self.repeat = base, list(indices), dict(mapping), int(repeat)
        self.class_names = None

    def __len__(self) -> int:
        return len(self.indices) * self.repeat

    def getitem(self, i: int, step: int = 0):
        j = self.indices[i % len(self.indices)]
        g = getattr(self.base, "getitem", None)
        item = g(j, step) if callable(g) else self.base[j]
        if isinstance(item, SkippedSample) or not isinstance(item, dict):
            return item
        item = dict(item)
        lab = item.get("label")
        item["label"] = -1 if lab is None or int(lab) < 0 else self.mapping[int(lab)]
        item["index"] = i
        return item

    def __getitem__(self, i: int):
        return self.getitem(i, 0)


class LabeledCollator:
    """Stack clips and labels; readable items only (the skipped ones are reported in ``skipped``)."""

    def __call__(self, items):
        skipped = [it for it in items if isinstance(it, SkippedSample)]
        ok = [it for it in items if not isinstance(it, SkippedSample)]
        step = ok[0]["step"] if ok else skipped[0].step
        if not ok:
            return {"clips": None, "labels": None, "step": step, "skipped": skipped}
        return {"clips": torch.stack([it["clip"] for it in ok]),
                "labels": torch.tensor([int(it["label"]) for it in ok], dtype=torch.long),
                "step": int(step), "skipped": skipped}


def _eval_collate(items):
    skipped = [it for it in items if isinstance(it, SkippedSample)]
    ok = [it for it in items if not isinstance(it, SkippedSample)]
    if not ok:
        return {"clips": None, "labels": None, "skipped": skipped}
    return {"clips": torch.stack([it["clip"] for it in ok]),
            "labels": torch.tensor([-1 if it.get("label") is None else int(it["label"]) for it in ok]),
            "skipped": skipped}


# ------------------------------------------------------------------------------------------------- encoder
def build_encoder(cfg: FinetuneConfig, seed: int):
    """The encoder ``model.init`` names, with ``model.drop_path``: ``(encoder, description, preprocessing)``."""
    from ..models.registry import PRESETS, create_model
    from ..models.vit import VisionTransformer

    m = cfg.model
    init = m.init
    if init == "random" or init in PRESETS:
        name = m.name if init == "random" else init
        d = cfg.data
        frames = d.num_frames or 16
        crop = d.crop_size or 64
        kw = dict(m.overrides) if init == "random" else {}  # a preset named by init is taken as registered
        if init == "random" or d.num_frames:
            kw["num_frames"] = frames
        if init == "random" or d.crop_size:
            kw["img_size"] = crop
        kw["drop_path_rate"] = m.drop_path
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "finetune-init"))
            try:
                enc = create_model(name, **kw)
            except (ValueError, TypeError) as e:
                raise ValueError(f"model: {e}") from None
        return enc, f"random init ({name})", None
    from ..interop.weights import read_weights

    w = read_weights(init)
    part = m.part
    if part not in w.states and part == "target_encoder" and "encoder" in w.states:
        part = "encoder"  # a source with one encoder (HF folders, fine-tuned exports)
    if part not in w.states:
        raise ValueError(f"model.init {init}: holds no {m.part!r} (parts: {', '.join(w.parts) or 'none'})")
    src = w.build(part)
    enc = VisionTransformer(replace(src.cfg, drop_path_rate=m.drop_path))
    enc.load_state_dict(src.state_dict(), strict=True)
    info = getattr(src, "pretrained_cfg", {}) or {}
    pre = info.get("preprocessing")
    if pre and pre.get("source") == "default":
        pre = None  # no published preprocessing: the fine-tuning data settings apply
    return enc, f"{init} ({part})", pre


def _head_config(cfg: FinetuneConfig, enc, num_classes: int) -> ProbeConfig:
    from ..evaluation.probe import ProbeGridConfig

    h = cfg.head
    dim = enc.cfg.embed_dim
    if h.kind == "meanpool":
        return ProbeConfig(embed_dim=dim, num_heads=1, depth=1, num_classes=num_classes, kind="meanpool",
                           dropout=h.dropout, layer_norm_eps=enc.cfg.layer_norm_eps,
                           init_scale=1e-3 if h.init_scale is None else h.init_scale)
    # heads: the encoder's by default (V-JEPA 1's probes, and HF's pooler, which an export converts to)
    pc = ProbeGridConfig(probe_depth=h.depth, num_heads=h.num_heads or enc.cfg.num_heads).probe_config(dim, num_classes)
    # the encoder's LayerNorm eps (not the official probes' 1e-5): HF's pooler uses it, so exports convert exactly
    return replace(pc, dropout=h.dropout, layer_norm_eps=enc.cfg.layer_norm_eps,
                   init_scale=1.0 if h.init_scale is None else h.init_scale)


# ------------------------------------------------------------------------------------------------- the job
class Finetuner(Engine):
    FORMAT = FINETUNE_FORMAT
    NAME = "finetune"
    PARTS = ("encoder", "head")
    METRIC_COLUMNS = FT_COLUMNS
    ACC_KEYS = ("loss", "train_top1")
    OPTIM_STRICT = False  # the encoder has no AdamW state while it is frozen (optim.freeze_steps)

    def __init__(self, cfg: FinetuneConfig, out_dir: str | Path, *, resume: str | None = "auto", progress: bool = True,
                 device: str | None = None, env: DistEnv | None = None) -> None:
        from ..evaluation.datasets import clip_spec_for

        self.cfg = cfg
        t, d = cfg.train, cfg.data
        self.setup(out_dir, env=env or init_distributed(device or t.device), progress=progress,
                   dtype=t.dtype, seed=t.seed, max_steps=t.steps, grad_accum=cfg.optim.grad_accum,
                   batch_size=d.batch_size, max_failure_rate=d.max_failure_rate, log_every=t.log_every,
                   checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints)
        enc, self.init_desc, pre = build_encoder(cfg, t.seed)
        self.preprocessing = pre or {}
        self.mean = tuple(self.preprocessing.get("mean") or IMAGENET_MEAN)
        self.std = tuple(self.preprocessing.get("std") or IMAGENET_STD)
        self._imnet_mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1, 1).to(self.device)
        self._imnet_std = torch.tensor(IMAGENET_STD).view(-1, 1, 1, 1).to(self.device)
        enc.pretrained_cfg = {"preprocessing": {**self.preprocessing, "mean": list(self.mean), "std": list(self.std)}}
        self.clip = clip_spec_for(enc, num_frames=d.num_frames, crop_size=d.crop_size, frame_step=d.frame_step, fps=d.fps)
        self.train_set, self.labels, self.split = self._training_data()
        head_cfg = _head_config(cfg, enc, len(self.labels))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(t.seed, "head-init"))
            head = build_classifier(head_cfg)
        proj = getattr(getattr(head, "pooler", None), "cross_attention_block", None)
        if proj is not None and proj.xattn.proj is not None:  # V-JEPA 1's dead projection: held, never trained
            proj.xattn.proj.requires_grad_(False)
        self.model = VideoClassifier(enc, head).to(self.device)
        self.train_model = wrap_ddp(self.model, self.env, find_unused_parameters=cfg.optim.freeze_steps > 0)
        o = cfg.optim
        groups = layer_decay_param_groups(enc, head, weight_decay=o.weight_decay, layer_decay=o.layer_decay,
                                          head_lr_scale=o.head_lr_scale)
        self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
        self.best: dict = {}
        self.probe_init: dict = {}
        self._val = None
        self.resume(resume)
        if self.step == 0 and cfg.head.init == "probe":
            self._init_head_from_probe()

    # ------------------------------------------------------------------ data
    def _open_train(self):
        from ..config import DataSection
        from ..data.build import build_files_dataset
        from ..data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset
        from ..evaluation.datasets import SYNTHETIC_SPLITS, parse_synthetic

        d, c = self.cfg.data, self.clip
        syn = parse_synthetic(d.train)
        if syn is not None:
            kw = dict(d.synthetic)
            kw.update(num_frames=c.num_frames, height=c.crop_size[0], width=c.crop_size[1], num_samples=syn[1],
                      seed=SYNTHETIC_SPLITS[syn[0]][0])
            return SyntheticVideoDataset(SyntheticVideoConfig(**kw))
        spacing = {"fps": c.fps} if c.fps else {"frame_step": c.frame_step}
        ds = DataSection(source="files", datasets=[d.train], num_frames=c.num_frames, crop_size=tuple(c.crop_size),
                         batch_size=d.batch_size, num_workers=d.num_workers,
                         random_resize_scale=tuple(d.random_resize_scale),
                         random_resize_aspect_ratio=tuple(d.random_resize_aspect_ratio),
                         horizontal_flip=d.horizontal_flip, max_failure_rate=d.max_failure_rate, **spacing)
        return build_files_dataset(ds, mode="train", seed=self.cfg.train.seed)

    def _training_data(self):
        from torch.utils.data import IterableDataset

        from ..evaluation.fewshot import stratified_subset

        d = self.cfg.data
        base = self._open_train()
        if isinstance(base, IterableDataset):  # tar shards: streamed, labels not listed up front
            if d.label_fraction < 1.0:
                raise DataError(f"{d.train}: few-label subsets need a listed source (CSV or folder), not tar shards")
            if not d.num_classes:
                raise DataError(f"{d.train}: tar shards are streamed, so the label set is not known up front: "
                                "give data.num_classes")
            labels = LabelSpace([str(i) for i in range(d.num_classes)], {i: i for i in range(d.num_classes)})
            return base, labels, {"fraction": 1.0, "seed": d.split_seed, "streamed": True}
        raw, names, paths = source_labels(base)
        space = LabelSpace.from_training(raw, names, d.train)
        y = torch.tensor([space.raw[int(r)] for r in raw])
        idx = (stratified_subset(y, d.label_fraction, d.split_seed) if d.label_fraction < 1.0
               else torch.arange(len(y))).tolist()
        gbs = d.batch_size * self.env.world_size
        repeat = max(1, math.ceil(gbs / len(idx)))
        split = {"train": d.train, "fraction": d.label_fraction, "seed": d.split_seed, "num_items": len(idx),
                 "indices": idx, "paths": [paths[i] for i in idx] if paths is not None else None,
                 "labels": [int(y[i]) for i in idx], "classes": space.names}
        return Relabeled(base, idx, space.raw, repeat), space, split

    def open_eval(self, spec: str, *, segments: int = 1, views: int = 1):
        """An evaluation dataset of ``spec`` with labels mapped to the training classes (checked)."""
        from ..evaluation.datasets import open_dataset

        clip = replace(self.clip, segments=segments, views=views)
        on_error = self.cfg.data.on_error
        ds = open_dataset(spec, clip, on_error=on_error, synthetic_options=self.cfg.data.synthetic)
        raw, names, paths = source_labels(ds)
        mapping = self.labels.mapping_for(raw, names, spec, paths)
        return Relabeled(ds, range(len(ds)), mapping)

    def _init_head_from_probe(self) -> None:
        """Linear-probe-then-fine-tune: train ``videojepa probe``'s grid on the frozen encoder's features of the
        training subset (evaluation clips), and start the head from the best probe on ``val``."""
        from torch.utils.data import Subset

        from ..evaluation.features import extract_features
        from ..evaluation.probe import ProbeGridConfig, train_probe_grid

        h, d = self.cfg.head, self.cfg.data
        enc = self.model.encoder  # its pretrained_cfg holds the run's mean/std, which extract_features applies
        train_eval = Subset(self.open_eval(d.train), self.split["indices"])
        kw = dict(batch_size=d.eval_batch_size, device=self.device, progress=self.progress)
        ftr = extract_features(enc, train_eval, desc="probe-init features", **kw)
        fva = extract_features(enc, self.val_set(), desc="probe-init val features", **kw) if d.val else ftr
        gcfg = ProbeGridConfig(lrs=h.probe_lrs, weight_decays=h.probe_weight_decays, epochs=h.probe_epochs,
                               probe_depth=h.depth, num_heads=self.model.head.cfg.num_heads, seed=self.seed,
                               device=str(self.device))
        res = train_probe_grid(ftr, fva, len(self.labels), gcfg, progress=self.progress)
        self.model.head.load_state_dict(res.best_probe.state_dict(), strict=True)
        self.probe_init = {"val_top1": res.best["top1"], "val_top5": res.best["top5"], "lr": res.best["lr"],
                           "weight_decay": res.best["weight_decay"], "selected_on": "val" if d.val else "train",
                           "seconds": round(res.seconds, 1)}

    def _loader(self):
        from ..data.loader import build_loader

        e, accum = self.env, self.grad_accum
        return build_loader(self.train_set, LabeledCollator(), batch_size=self.cfg.data.batch_size, seed=self.seed,
                            start_step=self.step * accum, max_steps=self.max_steps * accum,
                            num_workers=self.cfg.data.num_workers, rank=e.rank, world_size=e.world_size)

    # ------------------------------------------------------------------ engine hooks
    def config_dict(self) -> dict:
        return self.cfg.to_dict()

    def check_resume_config(self, theirs: dict) -> None:
        mine = self.cfg.to_dict()
        changed = sorted(s for s in ("model", "head", "data") if mine[s] != theirs.get(s))
        if changed:
            raise ValueError(f"cannot resume: the checkpoint's {', '.join(changed)} config differs from this run's")

    def extra_meta(self) -> dict:
        return {"labels": self.labels.to_dict(), "best": dict(self.best), "probe_init": dict(self.probe_init)}

    def load_extra_meta(self, meta: dict) -> None:
        self.best = dict(meta.get("best") or {})
        self.probe_init = dict(meta.get("probe_init") or {})

    def trainable(self) -> list[nn.Module]:
        return [self.model]

    def train_mode(self) -> None:
        self.model.train()

    def clip_value(self, step: int) -> float | None:
        return self.cfg.optim.clip_grad

    def non_finite_hint(self) -> str:
        return "lower optim.lr (or raise optim.warmup_steps) and resume."

    def frozen(self, step: int) -> bool:
        return step < self.cfg.optim.freeze_steps

    def begin_step(self, step: int) -> dict:
        o = self.cfg.optim
        stage, f = stage_lr(step, total=self.max_steps, freeze_steps=o.freeze_steps, warmup=o.warmup_steps,
                            final_ratio=o.final_lr / o.lr)
        head_peak = o.freeze_lr if (stage == 0 and o.freeze_lr) else o.lr * o.head_lr_scale
        for g in self.optimizer.param_groups:
            if g["part"] == "head":
                g["lr"] = f * head_peak
            else:
                g["lr"] = 0.0 if stage == 0 else f * o.lr * g["lr_scale"]
        self.model.encoder.train(not self.frozen(step))
        top = max(g["lr"] for g in self.optimizer.param_groups if g["part"] == "encoder")
        return {"lr": top, "head_lr": f * head_peak, "wd": o.weight_decay}

    def forward(self, batch: dict, step: int):
        a = self.cfg.aug
        clips = batch["clips"].to(self.device, non_blocking=True)  # normalised by the loader (ImageNet statistics)
        if (self.mean, self.std) != (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)):
            clips = normalize(clips * self._imnet_std + self._imnet_mean, self.mean, self.std)
        labels = batch["labels"].to(self.device)
        gen = torch_generator(self.seed, batch["step"], self.env.rank, "mixup")
        mixed, target = mix_batch(clips, labels, len(self.labels), smoothing=a.label_smoothing, mixup=a.mixup,
                                  cutmix=a.cutmix, mix_prob=a.mix_prob, switch_prob=a.switch_prob, gen=gen)
        logits = self.train_model(mixed, frozen_encoder=self.frozen(step))  # through DDP in both stages
        loss = torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        top1 = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"train_top1": top1}, None

    def after_step(self, step: int) -> dict:
        t = self.cfg.train
        if not self.cfg.data.val or not ((step + 1) % t.eval_every == 0 or step + 1 == self.max_steps):
            return {}
        out: dict = {}
        if self.env.is_main:
            res = self.evaluate(self.val_set())
            out = {"val_top1": res["top1"], "val_top5": res["top5"], "val_loss": res["loss"]}
            if not self.best or res["top1"] > self.best["val_top1"]:
                self.best = {"val_top1": res["top1"], "step": step + 1}
                if t.select == "best":
                    self.export(self.out / "best")
        barrier(self.env)
        self.train_mode()
        return out

    def val_set(self):
        if self._val is None:
            self._val = self.open_eval(self.cfg.data.val)
        return self._val

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, ds, *, segments: int = 1, views: int = 1, progress: bool = False) -> dict:
        """Top-1 / top-5 / loss / per-class of the current model on ``ds`` (softmax averaged over the views)."""
        from ..evaluation.metrics import summarize

        was = self.model.training
        self.model.eval()
        loader = DataLoader(ds, batch_size=self.cfg.data.eval_batch_size, shuffle=False, collate_fn=_eval_collate,
                            num_workers=self.cfg.data.num_workers)
        probs, labels, skipped = [], [], []
        it = loader
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(loader, desc="test", unit="batch", dynamic_ncols=True)
        for b in it:
            skipped += b["skipped"]
            if b["clips"] is None:
                continue
            x = b["clips"]
            with self.autocast():
                if x.ndim == 6:
                    x = normalize(x.flatten(0, 1), self.mean, self.std).reshape(x.shape).to(self.device)
                    logits = self.model.forward_views(x, segments, views)
                else:
                    logits = self.model(normalize(x, self.mean, self.std).to(self.device))[:, None]
            probs.append(logits.float().softmax(-1).mean(1).cpu())
            labels.append(b["labels"])
        self.model.train(was)
        if not probs:
            raise DataError("no evaluation video could be read: " + "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3]))
        p, y = torch.cat(probs), torch.cat(labels)
        known = y >= 0
        res = summarize(p[known], y[known]) if bool(known.any()) else {}
        res["loss"] = float(F.nll_loss(p[known].clamp_min(1e-12).log(), y[known])) if bool(known.any()) else float("nan")
        res["probs"], res["labels"] = p, y
        res["skipped"] = [{"path": s.path, "reason": s.reason} for s in skipped]
        return res

    # ------------------------------------------------------------------ export and the end of a run
    def export(self, dst: str | Path) -> Path:
        """The classifier as ``dst/model.safetensors`` + ``dst/config.json`` (written to a temporary folder, then
        renamed): the fine-tuned encoder (part ``encoder``) and the head (part ``probe``), class names, clip
        settings and normalisation. ``videojepa.load(dst)`` gives the :class:`VideoClassifier`."""
        from ..interop.weights import Weights, write_videojepa

        dst = Path(dst)
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        enc, head = self.model.encoder, self.model.head
        pre = dict(self.preprocessing)
        pre.update(num_frames=self.clip.num_frames, crop_size=list(self.clip.crop_size), mean=list(self.mean),
                   std=list(self.std), frame_step=self.clip.frame_step, fps=self.clip.fps)
        w = Weights(source=str(self.out), format="videojepa", encoder=replace(enc.cfg, drop_path_rate=0.0),
                    probe=replace(head.cfg, dropout=0.0),
                    states={"encoder": {k: v.detach().cpu() for k, v in enc.state_dict().items()},
                            "probe": {k: v.detach().cpu() for k, v in head.state_dict().items()}},
                    meta={"labels": self.labels.names, "preprocessing": pre, "evaluated_with": "encoder",
                          "task": "classification"},
                    notes=[f"fine-tuned from {self.init_desc} for {self.step} steps by videojepa finetune"])
        write_videojepa(w, tmp, parts=["encoder", "probe"])
        cfg = json.loads((tmp / "config.json").read_text())
        cfg["task"] = "classification"
        cfg["evaluation"] = {"checkpoint": ".", "encoder": "encoder", "layers": None, "pool": "none",
                             "clip": replace(self.clip, segments=self.cfg.data.segments,
                                             views=self.cfg.data.views).to_dict()}
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        old = dst.with_name(dst.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dst.exists():
            os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
        return dst

    def finish(self, progress: bool | None = None) -> dict:
        """After :meth:`fit`: export the selected weights, evaluate ``val`` and ``test`` (multi-view), write
        ``results.json``, ``confusion.png`` and ``split.json``; returns the results."""
        from ..evaluation.metrics import confusion_matrix, plot_confusion

        if not self.env.is_main:
            return {}
        progress = self.progress if progress is None else progress
        d, t = self.cfg.data, self.cfg.train
        (self.out / "split.json").write_text(json.dumps(self.split) + "\n")
        if t.select == "best" and (self.out / "best").is_dir():
            import videojepa

            best = videojepa.load(self.out / "best")
            self.model.load_state_dict(best.state_dict(), strict=True)
            selected = f"best on val (step {self.best.get('step')})"
        else:
            selected = f"last (step {self.step})"
        export = self.export(self.out / "export")
        res: dict = {"init": self.init_desc, "steps": self.step, "selected": selected, "export": str(export),
                     "classes": self.labels.names, "train": {"spec": d.train, "fraction": d.label_fraction,
                                                             "seed": d.split_seed, "items": self.split.get("num_items")},
                     "best_val": self.best or None, "probe_init": self.probe_init or None, "data": self.data_summary()}
        if d.val:
            v = self.evaluate(self.val_set())
            res["val"] = _public(v)
        if d.test:
            test = self.open_eval(d.test, segments=d.segments, views=d.views)
            r = self.evaluate(test, segments=d.segments, views=d.views, progress=progress)
            res["test"] = {**_public(r), "segments": d.segments, "views": d.views, "spec": d.test}
            known = r["labels"] >= 0
            cm = confusion_matrix(r["probs"][known].argmax(-1), r["labels"][known], len(self.labels))
            plot_confusion(cm, self.labels.names, self.out / "confusion.png",
                           title=f"test top-1 {100 * r['top1']:.1f}% ({d.segments}x{d.views} views)")
            res["test"]["confusion"] = cm.tolist()
        (self.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        return res

    # ------------------------------------------------------------------ outputs
    def plot(self) -> None:
        plot_finetune_metrics(self.out / "metrics.csv", self.out / "metrics.png", title=f"videojepa finetune: {self.out.name}")

    def summary(self, seconds: float, log: MetricsLog) -> dict:
        rows = log.read()
        losses = [float(r["loss"]) for r in rows if r.get("loss")]
        k = max(1, len(losses) // 10)
        vals = [(int(r["step"]), float(r["val_top1"])) for r in rows if r.get("val_top1")]
        return {"steps": self.step, "max_steps": self.max_steps, "seconds": round(seconds, 2), "device": str(self.device),
                "init": self.init_desc,  # dtype and its reason: added by Engine.fit
                "loss_first": sum(losses[:k]) / k if losses else None, "loss_last": sum(losses[-k:]) / k if losses else None,
                "val_top1_last": vals[-1][1] if vals else None, "best_val": self.best or None,
                "data": self.data_summary(), "resumed_from": str(self.resumed_from) if self.resumed_from else None}


def _public(r: dict) -> dict:
    return {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in r.items() if k not in ("probs", "labels")}


def plot_finetune_metrics(csv_path, png_path, title: str = "") -> Path:
    """Train loss, lr (encoder top block and head) and validation top-1 over steps."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))

    def col(key):
        pts = [(int(float(r["step"])), float(r[key])) for r in rows if r.get(key) not in ("", None)]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    x, y = col("loss")
    ax[0].plot(x, y, lw=0.8, label="train loss")
    ax[0].set_title("training loss (cross-entropy)")
    for key, c in (("lr", "C2"), ("head_lr", "C3")):
        x, y = col(key)
        ax[1].plot(x, y, color=c, label={"lr": "encoder (top block)", "head_lr": "head"}[key])
    ax[1].set_title("learning rate")
    ax[1].legend(fontsize=8)
    x, y = col("train_top1")
    ax[2].plot(x, [100 * v for v in y], lw=0.6, alpha=0.6, label="train batch top-1")
    x, y = col("val_top1")
    if x:
        ax[2].plot(x, [100 * v for v in y], marker="o", color="C1", label="val top-1")
    ax[2].set_title("accuracy (%)")
    ax[2].legend(fontsize=8)
    for a in ax:
        a.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
