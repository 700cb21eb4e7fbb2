"""The pretraining loop.

``Pretrainer(cfg, out_dir).fit()`` builds the model, the data and the masks from a
:class:`~videojepa.config.PretrainConfig`, resumes from the newest checkpoint in ``out_dir`` when
asked, and trains to ``train.max_steps``. What step ``s`` sees (clips, masks, schedules) is a pure
function of ``(seed, s)``, so a run stopped after any checkpoint and resumed reaches the same
parameters as an uninterrupted one. The run directory holds ``config.yaml`` (resolved),
``metrics.csv``, ``metrics.png``, ``summary.json`` and ``checkpoints/``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import PretrainConfig
from ..masks.collator import MaskCollator, MaskGenerator
from ..masks.ops import grid_size
from ..rng import derive_seed

from .checkpoint import find_latest, load_checkpoint
from .distributed import DistEnv, init_distributed, wrap_ddp, wrap_fsdp
from .engine import DataFailureError, Engine, NonFiniteLossError, resolve_dtype
from .objectives import build_objective
from .losses import feature_stats, random_directions
from .metrics import COLUMNS, MetricsLog, plot_metrics, require_tensorboard
from .optim import build_optimizer, set_lr_wd
from .schedules import ema_at, lr_at, wd_at

__all__ = ["Pretrainer", "initial_objective", "NonFiniteLossError", "DataFailureError", "read_checkpoint", "build_dataset", "CHECKPOINT_FORMAT",
           "resolve_dtype"]

CHECKPOINT_FORMAT = "videojepa-pretrain/1"


def build_dataset(cfg: PretrainConfig, split: str = "train"):
    d = cfg.data
    if d.source == "synthetic":
        from ..data.synthetic import SyntheticVideoConfig, SyntheticVideoDataset

        kw = dict(d.synthetic)
        kw.update(num_frames=d.num_frames, height=d.crop_size[0], width=d.crop_size[1])
        try:
            return SyntheticVideoDataset(SyntheticVideoConfig(**kw))
        except TypeError as e:
            raise ValueError(f"data.synthetic: {e}") from None
    from ..data.build import build_files_dataset

    return build_files_dataset(d, mode="train" if split == "train" else "eval", seed=cfg.train.seed)


def initial_objective(cfg: PretrainConfig):
    """The run's model at step 0: built from ``(train.seed, "init")`` without touching the caller's RNG (what the
    pretrainer trains from, and the random-init baseline of the decoded predictions)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.train.seed, "init"))
        return build_objective(cfg)


class Pretrainer(Engine):
    """Self-supervised pretraining (V-JEPA, or the VideoMAE / MaskFeat baselines) on the shared engine."""

    FORMAT = CHECKPOINT_FORMAT
    NAME = "pretrain"
    METRIC_COLUMNS = COLUMNS
    ACC_KEYS = ("loss", "loss_jepa", "loss_reg")

    def __init__(self, cfg: PretrainConfig, out_dir: str | Path, *, resume: str | None = "auto", progress: bool = True,
                 device: str | None = None, env: DistEnv | None = None, parallel: str = "ddp") -> None:
        self.cfg = cfg
        t = cfg.train
        if t.tensorboard:
            require_tensorboard()  # before anything is built
        self.setup(out_dir, env=env or init_distributed(device or t.device), progress=progress,
                   dtype=t.dtype, seed=t.seed, max_steps=t.max_steps, grad_accum=cfg.optim.grad_accum,
                   batch_size=cfg.data.batch_size, max_failure_rate=cfg.data.max_failure_rate, log_every=t.log_every,
                   checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints, diag_every=t.diag_every)
        enc_cfg, pred_cfg = cfg.encoder_config(), cfg.predictor_config()
        self.model = initial_objective(cfg).to(self.device)
        if parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")
        self.fsdp = parallel == "fsdp" and self.env.distributed
        if self.fsdp:
            self.train_model = wrap_fsdp(self.model, self.env, self.dtype if self.dtype != torch.float32 else None)
        else:
            n_cfg, n_tok = len(cfg.mask.configs), pred_cfg.num_mask_tokens
            used = {0} if cfg.train.mask_token_by == "first" else {m % n_tok for m in range(n_cfg)}
            self.train_model = wrap_ddp(self.model, self.env, find_unused_parameters=len(used) < n_tok)
        self.optimizer = build_optimizer(self.model.trainable(), cfg.optim)  # after sharding (FSDP owns DTensors)
        self.grid = grid_size(cfg.data.num_frames, *cfg.data.crop_size, enc_cfg.tubelet_size, enc_cfg.patch_size)
        self.masks = MaskGenerator(cfg.mask.build(), self.grid, cfg.train.seed, cfg.mask.equalize)
        self.resume(resume)

    @property
    def PARTS(self) -> tuple[str, ...]:  # noqa: N802 - the engine's attribute
        return ("encoder", "predictor", "target_encoder") + (("head",) if hasattr(self.model, "head") else ())

    # ------------------------------------------------------------------ engine hooks
    def config_dict(self) -> dict:
        return self.cfg.to_dict()

    def check_resume_config(self, theirs: dict) -> None:
        mine = self.cfg.to_dict()
        changed = sorted(s for s in ("model", "predictor", "mask") if mine[s] != theirs[s])
        if changed:
            raise ValueError(f"cannot resume: the checkpoint's {', '.join(changed)} config differs from this run's")

    def trainable(self) -> list[torch.nn.Module]:
        return self.model.trainable()

    def non_finite_hint(self) -> str:
        return "lower optim.lr or set optim.clip_grad and resume."

    def clip_value(self, step: int) -> float | None:
        c = self.cfg.optim
        if c.clip_grad is None or (c.clip_grad_after_warmup and step < c.warmup_steps):
            return None
        return c.clip_grad  # the reference clips encoder and predictor separately

    def _loader(self):
        from ..data.loader import build_loader

        c = self.cfg
        accum = c.optim.grad_accum
        e = self.env
        return build_loader(build_dataset(c), MaskCollator(self.masks, e.rank, e.world_size), batch_size=c.data.batch_size,
                            seed=c.train.seed, start_step=self.step * accum, max_steps=c.train.max_steps * accum,
                            num_workers=c.data.num_workers, pin_memory=c.data.pin_memory and self.device.type == "cuda",
                            rank=e.rank, world_size=e.world_size)

    def begin_step(self, step: int) -> dict:
        c, total = self.cfg.optim, self.max_steps
        lr, wd, mom = lr_at(step, c, total), wd_at(step, c, total), ema_at(step, c, total)
        set_lr_wd(self.optimizer, lr, wd)
        return {"lr": lr, "wd": wd, "ema": mom}

    def forward(self, batch: dict, step: int):
        c = self.cfg
        clips = batch["clips"].to(self.device, non_blocking=True)
        masks = [(a.to(self.device), b.to(self.device)) for a, b in batch["masks"]]
        out = self.train_model(clips, masks, loss_exp=c.loss.loss_exp, reg_coeff=c.loss.reg_coeff,
                               mask_token_by=c.train.mask_token_by, **self._vjepa_kwargs(step))
        return out.loss, {"loss_jepa": out.loss_jepa.item(), "loss_reg": out.loss_reg.item()}, out

    def after_update(self, step: int, sched: dict) -> None:
        m = self.model
        if self.fsdp:  # EMA on local shards: both models must be in their sharded state
            m.encoder.reshard()
            m.target_encoder.reshard()
        m.update_target(sched["ema"])

    def tensorboard_dir(self) -> Path | None:
        return self.out / "tensorboard" if self.cfg.train.tensorboard else None

    def plot(self) -> None:
        plot_metrics(self.out / "metrics.csv", self.out / "metrics.png", title=f"videojepa pretrain: {self.out.name}")

    def _vjepa_kwargs(self, step: int) -> dict:
        """The V-JEPA-only loss options (the pixel objectives take none of them)."""
        lc = self.cfg.loss
        if lc.objective != "vjepa":
            return {}
        kw = dict(token_var_coeff=lc.token_var_coeff, token_var_target=lc.token_var_target, target_norm=lc.target_norm)
        if lc.sigreg_coeff > 0:  # the same directions on every rank: a function of (seed, step)
            gen = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, step, "sigreg"))
            dirs = random_directions(self.model.encoder.cfg.embed_dim, lc.sigreg_slices, gen)
            kw.update(sigreg_coeff=lc.sigreg_coeff, sigreg_directions=dirs.to(self.device))
        return kw

    def diagnostics(self, out) -> dict:
        t = feature_stats(out.targets[0])
        p = feature_stats(out.preds[0])
        return dict(target_std=t["std"], target_token_std=t["token_std"], target_erank=t["erank"], pred_std=p["std"],
                    pred_token_std=p["token_std"], pred_erank=p["erank"])

    def summary(self, seconds: float, log: MetricsLog) -> dict:
        rows = log.read()
        losses = [float(r["loss"]) for r in rows if r["loss"]]
        k = max(1, len(losses) // 10)
        diag = [r for r in rows if r.get("target_std")]
        return {
            "steps": self.step, "max_steps": self.cfg.train.max_steps, "seconds": round(seconds, 2),
            "device": str(self.device),  # dtype and its reason: added by Engine.fit
            "loss_first": sum(losses[:k]) / k if losses else None, "loss_last": sum(losses[-k:]) / k if losses else None,
            "clips_per_s": (sum(float(r["clips_per_s"]) for r in rows[-k:]) / len(rows[-k:])) if rows else None,
            "diagnostics": {key: float(diag[-1][key]) for key in ("target_std", "target_token_std", "target_erank",
                                                                  "pred_std", "pred_erank")} if diag else {},
            "data": self.data_summary(),
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
            "checkpoint": str(find_latest(self.ckpt_dir)) if find_latest(self.ckpt_dir) else None,
        }


def read_checkpoint(path: str | Path) -> dict:
    """One of our pretraining checkpoints, consolidated or sharded (DCP folder), as a consolidated dict
    (``encoder`` / ``predictor`` / ``target_encoder`` state dicts, ``step``, ``config``...; no optimizer
    for sharded ones). Reads a sharded checkpoint in a single process, whatever world size wrote it."""
    path = Path(path)
    if not path.is_dir():
        return load_checkpoint(path)
    import json

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from .checkpoint import META, CheckpointError, verify_folder

    if not (path / META).is_file():
        raise CheckpointError(f"{path} is not a complete sharded checkpoint (no {META})")
    verify_folder(path)
    meta = json.loads((path / META).read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a videojepa pretraining checkpoint (format={meta.get('format')!r})")
    cfg = PretrainConfig.from_dict(meta["config"])
    with torch.device("meta"):
        model = build_objective(cfg)
    tpl = {"model": {k: torch.empty(v.shape, dtype=v.dtype) for k, v in get_model_state_dict(model).items()}}
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process.*")
        dcp.load(tpl, checkpoint_id=str(path))
    parts = {p: {k[len(p) + 1:]: v for k, v in tpl["model"].items() if k.startswith(p + ".")}
             for p in ("encoder", "predictor", "target_encoder", "head") if hasattr(model, p)}
    return {**meta, **parts}
