"""The pretraining loop.

``Pretrainer(cfg, out_dir).fit()`` builds the model, the data and the masks from a
:class:`~videojepa.config.PretrainConfig`, resumes from the newest checkpoint in ``out_dir`` when
asked, and trains to ``train.max_steps``. What step ``s`` sees (clips, masks, schedules) is a pure
function of ``(seed, s)``, so a run stopped after any checkpoint and resumed reaches the same
parameters as an uninterrupted one. The run directory holds ``config.yaml`` (resolved),
``metrics.csv``, ``metrics.png``, ``summary.json`` and ``checkpoints/``.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
import yaml

from ..config import PretrainConfig
from ..masks.collator import MaskCollator, MaskGenerator
from ..masks.ops import grid_size
from ..rng import derive_seed
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from .checkpoint import find_latest, load_checkpoint, load_sharded_checkpoint, save_checkpoint, save_sharded_checkpoint
from .distributed import DistEnv, all_reduce, barrier, init_distributed, wrap_ddp, wrap_fsdp
from .jepa import JEPA
from .objectives import build_objective
from .losses import feature_stats, random_directions
from .metrics import MetricsLog, plot_metrics
from .optim import build_optimizer, set_lr_wd
from .schedules import ema_at, lr_at, wd_at

__all__ = ["Pretrainer", "NonFiniteLossError", "DataFailureError", "read_checkpoint", "build_dataset", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "videojepa-pretrain/1"


def _full(x: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (FSDP), or the tensor itself."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


class NonFiniteLossError(RuntimeError):
    pass


class DataFailureError(RuntimeError):
    """Too many samples could not be read (or none at all)."""


MIN_SAMPLES_FOR_RATE = 50  # the failure rate is judged once this many samples were attempted


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


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


class Pretrainer:
    def __init__(self, cfg: PretrainConfig, out_dir: str | Path, *, resume: str | None = "auto", progress: bool = True,
                 device: str | None = None, env: DistEnv | None = None, parallel: str = "ddp") -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.env = env or init_distributed(device or cfg.train.device)
        self.progress = progress and self.env.is_main
        self.device = self.env.device
        self.dtype = resolve_dtype(cfg.train.dtype, self.device)
        self.ckpt_dir = self.out / "checkpoints"
        enc_cfg, pred_cfg = cfg.encoder_config(), cfg.predictor_config()
        with torch.random.fork_rng(devices=[]):  # init from the run seed without touching the caller's RNG
            torch.manual_seed(derive_seed(cfg.train.seed, "init"))
            self.model = build_objective(cfg).to(self.device)
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
        self.step = 0
        self.data_ok, self.data_skipped = 0, 0
        self.skipped_files: dict[str, str] = {}  # path -> reason, first occurrence
        self.resumed_from: Path | None = None
        if resume and resume != "none":
            path = find_latest(self.ckpt_dir) if resume == "auto" else Path(resume)
            if path is not None:
                self.load_path(path)
                self.resumed_from = path

    # ------------------------------------------------------------------ state
    @property
    def _PARTS(self) -> tuple[str, ...]:
        return ("encoder", "predictor", "target_encoder") + (("head",) if hasattr(self.model, "head") else ())

    def _meta(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "config": self.cfg.to_dict(),
                "data": {"ok": self.data_ok, "skipped": self.data_skipped, "skipped_files": dict(self.skipped_files)}}

    def state_dict(self) -> dict:
        """Consolidated state: one state dict per model part, the optimizer keyed by parameter names
        (so that it loads into any wrapping: plain, DDP or FSDP, on any world size), step, config, data counts."""
        msd, osd = get_state_dict(self.model, self.optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                        cpu_offload=self.fsdp))
        parts = {p: {k[len(p) + 1:]: v for k, v in msd.items() if k.startswith(p + ".")} for p in self._PARTS}
        return {**self._meta(), **parts, "optimizer": osd}

    def _check_meta(self, meta: dict) -> None:
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a videojepa pretraining checkpoint (format={meta.get('format')!r})")
        mine, theirs = self.cfg.to_dict(), meta["config"]
        changed = sorted(s for s in ("model", "predictor", "mask") if mine[s] != theirs[s])
        if changed:
            raise ValueError(f"cannot resume: the checkpoint's {', '.join(changed)} config differs from this run's")
        self.step = int(meta["step"])
        data = meta.get("data", {})
        self.data_ok, self.data_skipped = int(data.get("ok", 0)), int(data.get("skipped", 0))
        self.skipped_files = dict(data.get("skipped_files", {}))

    def load_state(self, sd: dict) -> None:
        """Load a consolidated state (from :meth:`state_dict`), strictly, into this run's wrapping."""
        self._check_meta(sd)
        msd = {f"{p}.{k}": v for p in self._PARTS for k, v in sd[p].items()}
        set_state_dict(self.model, self.optimizer, model_state_dict=msd, optim_state_dict=sd["optimizer"],
                       options=StateDictOptions(full_state_dict=True, strict=True))

    def load_path(self, path: Path) -> None:
        if path.is_dir():  # sharded (DCP) checkpoint: resharded onto this run's world size
            msd, osd = get_state_dict(self.model, self.optimizer)
            tpl, meta = load_sharded_checkpoint(path, {"model": msd, "optim": osd})
            self._check_meta(meta)
            set_state_dict(self.model, self.optimizer, model_state_dict=tpl["model"], optim_state_dict=tpl["optim"])
        else:
            self.load_state(load_checkpoint(path, map_location=self.device))

    def save(self) -> Path:
        """Single process and DDP: rank 0 writes one consolidated file. FSDP: every rank writes its shards."""
        keep = self.cfg.train.keep_checkpoints
        if self.fsdp:
            msd, osd = get_state_dict(self.model, self.optimizer)
            return save_sharded_checkpoint({"model": msd, "optim": osd}, self._meta(), self.ckpt_dir, self.step, keep,
                                           self.env)
        path = None
        if self.env.is_main:
            path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, keep=keep)
        barrier(self.env)
        return path

    # ------------------------------------------------------------------ loop
    def _loader(self):
        from ..data.loader import build_loader

        c = self.cfg
        accum = c.optim.grad_accum
        e = self.env
        return build_loader(build_dataset(c), MaskCollator(self.masks, e.rank, e.world_size), batch_size=c.data.batch_size,
                            seed=c.train.seed, start_step=self.step * accum, max_steps=c.train.max_steps * accum,
                            num_workers=c.data.num_workers, pin_memory=c.data.pin_memory and self.device.type == "cuda",
                            rank=e.rank, world_size=e.world_size)

    def _no_sync(self, last_micro: bool):
        if self.env.distributed and not self.fsdp and not last_micro:
            return self.train_model.no_sync()  # DDP: skip the all-reduce of this micro-batch's gradients
        return contextlib.nullcontext()

    def _grad_sync(self, last_micro: bool) -> None:
        if self.fsdp and self.cfg.optim.grad_accum > 1:
            for mod in self.model.trainable():
                mod.set_requires_gradient_sync(last_micro)

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def fit(self, until: int | None = None) -> dict:
        """Train to ``train.max_steps`` (or stop early after step ``until``, with a checkpoint there)."""
        c, m = self.cfg, self.model
        main = self.env.is_main
        log = None
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(c.to_dict(), sort_keys=False))
            log = MetricsLog(self.out / "metrics.csv", resume_step=self.step)
        total, accum, bs = c.train.max_steps, c.optim.grad_accum, c.data.batch_size
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc="pretrain", unit="step", dynamic_ncols=True)
        t_start = t_last = time.perf_counter()
        clips_since = 0
        m.encoder.train()
        m.predictor.train()
        micro, acc_loss, acc_jepa, acc_reg = 0, 0.0, 0.0, 0.0
        for batch in self._loader() if self.step < total else []:
            self._account(batch, bar)
            if batch["clips"] is None:  # nothing readable in this batch (counted above)
                continue
            step = batch["step"] // accum
            if micro == 0:
                lr, wd, mom = lr_at(step, c.optim, total), wd_at(step, c.optim, total), ema_at(step, c.optim, total)
                set_lr_wd(self.optimizer, lr, wd)
            torch.manual_seed(derive_seed(c.train.seed, batch["step"], self.env.rank, "step"))  # drop path etc.
            clips = batch["clips"].to(self.device, non_blocking=True)
            masks = [(a.to(self.device), b.to(self.device)) for a, b in batch["masks"]]
            last_micro = micro + 1 == accum
            self._grad_sync(last_micro)  # accumulate locally; communicate once per optimizer step
            sync_ctx = contextlib.ExitStack()
            sync_ctx.enter_context(self._no_sync(last_micro))  # held through backward
            with self._autocast():
                out = self.train_model(clips, masks, loss_exp=c.loss.loss_exp, reg_coeff=c.loss.reg_coeff,
                                       mask_token_by=c.train.mask_token_by, **self._vjepa_kwargs(step))
            finite = all_reduce(torch.tensor([float(torch.isfinite(out.loss).item())]), self.env, "min")
            if finite.item() < 1.0:  # collective, so that every rank stops together
                last = find_latest(self.ckpt_dir)
                raise NonFiniteLossError(
                    f"loss is {out.loss.item()} at step {step}; training stopped. The last good checkpoint is "
                    f"{last if last else '(none written yet)'}; lower optim.lr or set optim.clip_grad and resume.")
            (out.loss / accum).backward()
            sync_ctx.close()
            acc_loss += out.loss.item() / accum
            acc_jepa += out.loss_jepa.item() / accum
            acc_reg += out.loss_reg.item() / accum
            clips_since += clips.shape[0]
            micro += 1
            if micro < accum:
                continue
            micro = 0
            log_now = (step + 1) % c.train.log_every == 0 or step + 1 == total or (step + 1) % c.train.diag_every == 0
            grad_norm = self._clip(step, want_norm=log_now)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.fsdp:  # EMA on local shards: both models must be in their sharded state
                m.encoder.reshard()
                m.target_encoder.reshard()
            m.update_target(mom)
            self.step = step + 1
            row = None
            if log_now:
                now = time.perf_counter()
                red = all_reduce(torch.tensor([acc_loss, acc_jepa, acc_reg, float(clips_since)]), self.env, "sum")
                w = self.env.world_size
                acc_loss, acc_jepa, acc_reg, clips_since = red[0].item() / w, red[1].item() / w, red[2].item() / w, red[3].item()
                row = dict(step=step, loss=acc_loss, loss_jepa=acc_jepa, loss_reg=acc_reg, lr=lr, wd=wd, ema=mom,
                           grad_norm=grad_norm.item(), clips_per_s=clips_since / max(now - t_last, 1e-9), elapsed_s=now - t_start,
                           samples_skipped=self.data_skipped)
                t_last, clips_since = now, 0
            if self.step % c.train.diag_every == 0 or self.step == total:
                row.update(self._diagnostics(out))
            if row is not None and log is not None:
                log.append(row)
                if bar is not None:
                    bar.set_postfix(loss=f"{acc_loss:.4f}", clips_s=f"{row['clips_per_s']:.1f}", refresh=False)
            acc_loss = acc_jepa = acc_reg = 0.0
            if bar is not None:
                bar.update(1)
            stop = until is not None and self.step >= until
            if self.step % c.train.checkpoint_every == 0 or self.step == total or stop:
                self.save()
                if main:
                    plot_metrics(self.out / "metrics.csv", self.out / "metrics.png", title=f"videojepa pretrain: {self.out.name}")
                t_last, clips_since = time.perf_counter(), 0  # keep saving and plotting out of clips/s
            if stop:
                break
        if bar is not None:
            bar.close()
        if not main:
            return {"steps": self.step, "rank": self.env.rank}
        summary = self._summary(time.perf_counter() - t_start, log)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _account(self, batch: dict, bar) -> None:
        """Count readable / skipped samples, name each bad file once, stop on too many failures."""
        skipped = batch.get("skipped") or []
        ok = 0 if batch["clips"] is None else batch["clips"].shape[0]
        counts = all_reduce(torch.tensor([ok, len(skipped)], dtype=torch.float64), self.env, "sum")
        self.data_ok += int(counts[0].item())
        self.data_skipped += int(counts[1].item())
        if counts[1].item() > 0:
            new = [(s.path, s.reason) for s in skipped]
            if self.env.distributed:  # every rank learns every bad file, so that all stop alike
                gathered: list = [None] * self.env.world_size
                torch.distributed.all_gather_object(gathered, new)
                new = [x for part in gathered for x in part]
            for path, reason in new:
                if path not in self.skipped_files:
                    self.skipped_files[path] = reason
                    if self.env.is_main:
                        msg = f"warning: skipped unreadable sample {path}: {reason}"
                        (bar.write if bar is not None else print)(msg)
        seen = self.data_ok + self.data_skipped
        if self.data_skipped and self.data_ok == 0 and seen >= self.cfg.data.batch_size:
            raise DataFailureError(f"no sample could be read in the first {seen} attempts; e.g. "
                                   + "; ".join(f"{p}: {r}" for p, r in list(self.skipped_files.items())[:3]))
        rate = self.data_skipped / max(1, seen)
        if seen >= MIN_SAMPLES_FOR_RATE and rate > self.cfg.data.max_failure_rate:
            raise DataFailureError(
                f"{self.data_skipped} of {seen} samples ({rate:.0%}) could not be read, more than "
                f"data.max_failure_rate={self.cfg.data.max_failure_rate:.0%}; {len(self.skipped_files)} distinct files, e.g. "
                + "; ".join(f"{p}: {r}" for p, r in list(self.skipped_files.items())[:3]))

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

    def _clip(self, step: int, want_norm: bool) -> torch.Tensor | None:
        """Clip (when configured) and return the total gradient norm as a tensor, or None when not
        clipping and no log row needs it (no extra pass over the gradients, no device sync)."""
        c = self.cfg.optim
        mods = self.model.trainable()
        if c.clip_grad is None or (c.clip_grad_after_warmup and step < c.warmup_steps):
            if not want_norm:
                return None
            norms = [_full(p.grad.detach().float().norm()) for mod in mods for p in mod.parameters() if p.grad is not None]
            return torch.stack(norms).norm() if norms else torch.zeros(())
        # the reference clips encoder and predictor separately
        n = [_full(torch.nn.utils.clip_grad_norm_(mod.parameters(), c.clip_grad)) for mod in mods]
        return torch.stack([x.float() for x in n]).norm()

    @staticmethod
    def _diagnostics(out) -> dict:
        t = feature_stats(out.targets[0])
        p = feature_stats(out.preds[0])
        return dict(target_std=t["std"], target_token_std=t["token_std"], target_erank=t["erank"], pred_std=p["std"],
                    pred_token_std=p["token_std"], pred_erank=p["erank"])

    def _summary(self, seconds: float, log: MetricsLog) -> dict:
        rows = log.read()
        losses = [float(r["loss"]) for r in rows if r["loss"]]
        k = max(1, len(losses) // 10)
        diag = [r for r in rows if r.get("target_std")]
        return {
            "steps": self.step, "max_steps": self.cfg.train.max_steps, "seconds": round(seconds, 2),
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "loss_first": sum(losses[:k]) / k if losses else None, "loss_last": sum(losses[-k:]) / k if losses else None,
            "clips_per_s": (sum(float(r["clips_per_s"]) for r in rows[-k:]) / len(rows[-k:])) if rows else None,
            "diagnostics": {key: float(diag[-1][key]) for key in ("target_std", "target_token_std", "target_erank",
                                                                  "pred_std", "pred_erank")} if diag else {},
            "data": {"samples_ok": self.data_ok, "samples_skipped": self.data_skipped,
                     "skipped_files": dict(self.skipped_files)},
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

    from .checkpoint import META, CheckpointError

    if not (path / META).is_file():
        raise CheckpointError(f"{path} is not a complete sharded checkpoint (no {META})")
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
