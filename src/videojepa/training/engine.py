"""The training engine: the loop machinery that every training job shares.

A job (pretraining, fine-tuning, the world model) subclasses :class:`Engine` and adds what is its own:
the model and optimizer (built in its ``__init__`` before :meth:`Engine.resume`), its data loader, and one
step (:meth:`Engine.forward`, the schedules of :meth:`Engine.begin_step`, what happens after the optimizer
step). The engine gives them all the same:

- a run directory with the resolved ``config.yaml``, ``metrics.csv`` (continued without duplicates on
  resume), ``metrics.png``, ``summary.json`` and ``checkpoints/``;
- atomic checkpoints (one consolidated file, or a sharded DCP folder under FSDP), written every
  ``checkpoint_every`` steps and at the end, resumed automatically (``resume="auto"``), loaded strictly,
  with the optimizer keyed by parameter names so that they load into any wrapping and world size;
- gradient accumulation without per-micro-batch communication, bf16 autocast, gradient clipping;
- a collective non-finite-loss stop naming the step and the last good checkpoint;
- skipped-file accounting: unreadable samples are counted, each file is named once, and the run stops
  when more than ``max_failure_rate`` of the samples fail or when nothing decodes;
- a progress bar and per-step seeding of the global RNG from ``(seed, step, rank)`` (drop path, dropout).

What step ``s`` sees is a pure function of ``(seed, s)`` in every job, so a run stopped after any
checkpoint and resumed reaches the same parameters as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from ..rng import derive_seed
from .checkpoint import (CheckpointCorruptError, find_latest, list_checkpoints, load_checkpoint, load_sharded_checkpoint,
                         save_checkpoint, save_sharded_checkpoint, set_aside)
from .distributed import DistEnv, all_reduce, barrier
from .metrics import MetricsLog

__all__ = ["Engine", "NonFiniteLossError", "DataFailureError", "resolve_dtype", "choose_dtype", "native_bf16",
           "MIN_SAMPLES_FOR_RATE"]


class NonFiniteLossError(RuntimeError):
    pass


class DataFailureError(RuntimeError):
    """Too many samples could not be read (or none at all)."""


MIN_SAMPLES_FOR_RATE = 50  # the failure rate is judged once this many samples were attempted


def native_bf16() -> str | None:
    """The CPU's native bf16 instructions, ``"AMX"`` or ``"AVX512-BF16"``, or None (also when the environment sets
    ``VIDEOJEPA_CPU_BF16=0``: float32 whatever the CPU, as the test suite runs)."""
    if os.environ.get("VIDEOJEPA_CPU_BF16", "").strip() == "0":
        return None
    for isa, probe in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported")):
        f = getattr(torch.cpu, probe, None)
        try:
            if f is not None and f():
                return isa
        except RuntimeError:
            continue
    return None


def choose_dtype(name: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The compute dtype for ``train.dtype`` and a line saying why. ``"auto"``: bf16 autocast on CUDA and on CPUs
    with native bf16 (AMX / AVX512-BF16), float32 elsewhere (on AVX2 the bf16 kernels convert in software)."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16, "auto: bfloat16 autocast on CUDA"
        isa = native_bf16() if device.type == "cpu" else None
        if isa:
            return torch.bfloat16, f"auto: bfloat16 autocast (this CPU has native bf16: {isa})"
        why = "this CPU has no native bf16 (AMX or AVX512-BF16)" if device.type == "cpu" else device.type
        return torch.float32, f"auto: float32 ({why})"
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name], f"set: {name}"


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    return choose_dtype(name, device)[0]


def _full(x: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (FSDP), or the tensor itself."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


class Engine:
    """Base class of the training jobs (see the module docstring).

    Subclasses set, in ``__init__`` after :meth:`setup` and before :meth:`resume`: ``self.model`` (the
    module holding every part named in :attr:`PARTS`), ``self.train_model`` (its DDP/FSDP wrapping, or itself),
    ``self.optimizer``, and ``self.fsdp``. They implement :meth:`_loader`, :meth:`forward` and
    :meth:`check_resume_config`, and may override the other hooks.
    """

    FORMAT = "videojepa-run/1"  # the checkpoint ``format`` tag of this job
    NAME = "train"  # progress-bar label and plot title prefix
    PARTS: tuple[str, ...] = ()  # sub-modules of self.model saved as separate state dicts
    METRIC_COLUMNS: list[str] = []
    ACC_KEYS: tuple[str, ...] = ("loss",)  # per-step scalars of forward() averaged into each log row
    OPTIM_STRICT = True  # False: parameters may have no optimizer state yet (frozen so far); the model stays strict

    # ------------------------------------------------------------------ set-up
    def setup(self, out_dir: str | Path, *, env: DistEnv, progress: bool, dtype: str,
              seed: int, max_steps: int, grad_accum: int, batch_size: int, max_failure_rate: float,
              log_every: int, checkpoint_every: int, keep_checkpoints: int, diag_every: int | None = None) -> None:
        self.out = Path(out_dir)
        self.env = env
        self.progress = progress and self.env.is_main
        self.device = self.env.device
        self.dtype_requested = dtype
        self.dtype, self.dtype_note = choose_dtype(dtype, self.device)
        self.ckpt_dir = self.out / "checkpoints"
        self.seed, self.max_steps, self.grad_accum, self.batch_size = int(seed), int(max_steps), int(grad_accum), int(batch_size)
        self.max_failure_rate = float(max_failure_rate)
        self.log_every, self.checkpoint_every, self.keep_checkpoints = int(log_every), int(checkpoint_every), int(keep_checkpoints)
        self.diag_every = diag_every
        self.step = 0
        self.data_ok, self.data_skipped = 0, 0
        self.skipped_files: dict[str, str] = {}  # path -> reason, first occurrence
        self.resumed_from: Path | None = None
        self.fsdp = False

    def resume(self, resume: str | None) -> None:
        """``"auto"``: the newest checkpoint of the run directory that reads and verifies, if any (each damaged
        one stepped past is named in a warning and renamed aside as ``*.corrupt``; when none is good, the error
        lists every file and why); ``"none"``/``None``: start over; a path: that checkpoint, which must be
        intact (never a fallback)."""
        if not resume or resume == "none":
            return
        if resume != "auto":
            self.load_path(Path(resume))
            self.resumed_from = Path(resume)
            return
        bad: list[tuple[Path, str]] = []
        for _, path in reversed(list_checkpoints(self.ckpt_dir)):
            try:
                self.load_path(path)
            except CheckpointCorruptError as e:
                bad.append((path, str(e)))
                if self.env.is_main:
                    print(f"warning: skipping damaged checkpoint {path}: {e}", file=sys.stderr)
                continue
            self.resumed_from = path
            break
        barrier(self.env)  # every rank has read (or rejected) the files before any is moved
        if self.env.is_main:
            for path, _ in bad:
                moved = set_aside(path)
                print(f"warning: renamed the damaged checkpoint {path.name} to {moved.name} (kept, not deleted)",
                      file=sys.stderr)
        if bad and self.resumed_from is None:
            raise CheckpointCorruptError(
                f"no usable checkpoint in {self.ckpt_dir} ({len(bad)} damaged, renamed to *.corrupt): "
                + "; ".join(f"{p.name}: {why}" for p, why in bad)
                + ". Start over with --resume none, or restore a copy of one of them.")

    # ------------------------------------------------------------------ hooks
    def config_dict(self) -> dict:
        raise NotImplementedError

    def check_resume_config(self, theirs: dict) -> None:
        """Raise ``ValueError`` when the checkpoint's config cannot resume this run."""

    def trainable(self) -> list[torch.nn.Module]:
        """The modules the optimizer updates (clipped separately, as the reference does)."""
        return [self.model]

    def extra_meta(self) -> dict:
        return {}

    def load_extra_meta(self, meta: dict) -> None:
        pass

    def _loader(self):
        raise NotImplementedError

    def begin_step(self, step: int) -> dict:
        """Set this step's schedules (lr, wd, ...) before its first micro-batch; returns them for the log."""
        return {}

    def forward(self, batch: dict, step: int) -> tuple[torch.Tensor, dict, object]:
        """One micro-batch: ``(loss, {key: float})`` with the keys of :attr:`ACC_KEYS` other than ``loss``, and
        what :meth:`diagnostics` reads (or None)."""
        raise NotImplementedError

    def after_update(self, step: int, sched: dict) -> None:
        """After the optimizer step (e.g. the EMA update)."""

    def diagnostics(self, out) -> dict:
        return {}

    def after_step(self, step: int) -> dict:
        """After step ``step`` is complete (``self.step == step + 1``); may return extra metrics (validation)."""
        return {}

    def plot(self) -> None:
        pass

    def tensorboard_dir(self) -> Path | None:
        """Where the metrics rows also go as TensorBoard scalars (None: nowhere)."""
        return None

    def summary(self, seconds: float, log: MetricsLog) -> dict:
        return {}

    # ------------------------------------------------------------------ state
    @property
    def dtype_name(self) -> str:
        """The compute dtype as configs write it (``float32`` / ``bfloat16``)."""
        return str(self.dtype).removeprefix("torch.")

    def _meta(self) -> dict:
        return {"format": self.FORMAT, "step": self.step, "config": self.config_dict(),
                "dtype": self.dtype_name,
                "data": {"ok": self.data_ok, "skipped": self.data_skipped, "skipped_files": dict(self.skipped_files)},
                **self.extra_meta()}

    def state_dict(self) -> dict:
        """Consolidated state: one state dict per model part, the optimizer keyed by parameter names
        (so that it loads into any wrapping: plain, DDP or FSDP, on any world size), step, config, data counts."""
        msd, osd = get_state_dict(self.model, self.optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                        cpu_offload=self.fsdp))
        parts = {p: {k[len(p) + 1:]: v for k, v in msd.items() if k.startswith(p + ".")} for p in self.PARTS}
        return {**self._meta(), **parts, "optimizer": osd}

    def _check_meta(self, meta: dict) -> None:
        if not isinstance(meta, dict) or meta.get("format") != self.FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise CheckpointCorruptError(f"not a videojepa {self.NAME} checkpoint (format={got!r}, "
                                         f"expected {self.FORMAT!r})")
        self.check_resume_config(meta["config"])
        self.step = int(meta["step"])
        data = meta.get("data", {})
        self.data_ok, self.data_skipped = int(data.get("ok", 0)), int(data.get("skipped", 0))
        self.skipped_files = dict(data.get("skipped_files", {}))
        ran = meta.get("dtype")
        if self.dtype_requested == "auto" and ran in ("float32", "bfloat16") and ran != self.dtype_name:
            # a run keeps its arithmetic when it resumes on a machine where "auto" means something else
            self.dtype = getattr(torch, ran)
            self.dtype_note = f"auto: {ran}, as the checkpoint ran (this machine alone: {self.dtype_note})"
        self.load_extra_meta(meta)

    def load_state(self, sd: dict) -> None:
        """Load a consolidated state (from :meth:`state_dict`), strictly, into this run's wrapping."""
        self._check_meta(sd)
        msd = {f"{p}.{k}": v for p in self.PARTS for k, v in sd[p].items()}
        if self.OPTIM_STRICT:
            set_state_dict(self.model, self.optimizer, model_state_dict=msd, optim_state_dict=sd["optimizer"],
                           options=StateDictOptions(full_state_dict=True, strict=True))
            return
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        set_model_state_dict(self.model, msd, options=StateDictOptions(full_state_dict=True, strict=True))
        set_optimizer_state_dict(self.model, self.optimizer, sd["optimizer"],
                                 options=StateDictOptions(full_state_dict=True, strict=False))

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
        if self.fsdp:
            msd, osd = get_state_dict(self.model, self.optimizer)
            return save_sharded_checkpoint({"model": msd, "optim": osd}, self._meta(), self.ckpt_dir, self.step,
                                           self.keep_checkpoints, self.env)
        path = None
        if self.env.is_main:
            path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, keep=self.keep_checkpoints)
        barrier(self.env)
        return path

    # ------------------------------------------------------------------ loop pieces
    def _no_sync(self, last_micro: bool):
        if self.env.distributed and not self.fsdp and not last_micro:
            return self.train_model.no_sync()  # DDP: skip the all-reduce of this micro-batch's gradients
        return contextlib.nullcontext()

    def _grad_sync(self, last_micro: bool) -> None:
        if self.fsdp and self.grad_accum > 1:
            for mod in self.trainable():
                mod.set_requires_gradient_sync(last_micro)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def clip_grad(self, step: int, want_norm: bool) -> torch.Tensor | None:
        """Clip (when :meth:`clip_value` says so) and return the total gradient norm as a tensor, or None when
        not clipping and no log row needs it (no extra pass over the gradients, no device sync)."""
        mods = self.trainable()
        clip = self.clip_value(step)
        if clip is None:
            if not want_norm:
                return None
            norms = [_full(p.grad.detach().float().norm()) for mod in mods for p in mod.parameters() if p.grad is not None]
            return torch.stack(norms).norm() if norms else torch.zeros(())
        n = [_full(torch.nn.utils.clip_grad_norm_(mod.parameters(), clip)) for mod in mods]
        return torch.stack([x.float() for x in n]).norm()

    def clip_value(self, step: int) -> float | None:
        return None

    def check_finite(self, loss: torch.Tensor, step: int) -> None:
        finite = all_reduce(torch.tensor([float(torch.isfinite(loss).item())]), self.env, "min")
        if finite.item() < 1.0:  # collective, so that every rank stops together
            last = find_latest(self.ckpt_dir)
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {step}; training stopped. The last good checkpoint is "
                f"{last if last else '(none written yet)'}; {self.non_finite_hint()}")

    def non_finite_hint(self) -> str:
        return "lower the learning rate or clip gradients and resume."

    def account(self, batch: dict, bar) -> None:
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
        if self.data_skipped and self.data_ok == 0 and seen >= self.batch_size:
            raise DataFailureError(f"no sample could be read in the first {seen} attempts; e.g. "
                                   + "; ".join(f"{p}: {r}" for p, r in list(self.skipped_files.items())[:3]))
        rate = self.data_skipped / max(1, seen)
        if seen >= MIN_SAMPLES_FOR_RATE and rate > self.max_failure_rate:
            raise DataFailureError(
                f"{self.data_skipped} of {seen} samples ({rate:.0%}) could not be read, more than "
                f"data.max_failure_rate={self.max_failure_rate:.0%}; {len(self.skipped_files)} distinct files, e.g. "
                + "; ".join(f"{p}: {r}" for p, r in list(self.skipped_files.items())[:3]))

    def seed_step(self, micro_step: int) -> None:
        """Seed the global RNG (drop path, dropout) from ``(seed, micro-step, rank)``."""
        torch.manual_seed(derive_seed(self.seed, micro_step, self.env.rank, "step"))

    # ------------------------------------------------------------------ the loop
    def fit(self, until: int | None = None) -> dict:
        """Train to ``max_steps`` (or stop early after step ``until``, with a checkpoint there)."""
        main = self.env.is_main
        log = None
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
            log = MetricsLog(self.out / "metrics.csv", resume_step=self.step, columns=self.METRIC_COLUMNS,
                             tensorboard_dir=self.tensorboard_dir())
        total, accum = self.max_steps, self.grad_accum
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc=self.NAME, unit="step", dynamic_ncols=True)
        t_start = t_last = time.perf_counter()
        clips_since = 0
        self.train_mode()
        micro = 0
        acc = dict.fromkeys(self.ACC_KEYS, 0.0)
        sched: dict = {}
        for batch in self._loader() if self.step < total else []:
            self.account(batch, bar)
            if batch["clips"] is None:  # nothing readable in this batch (counted above)
                continue
            step = batch["step"] // accum
            if micro == 0:
                sched = self.begin_step(step)
            self.seed_step(batch["step"])
            last_micro = micro + 1 == accum
            self._grad_sync(last_micro)  # accumulate locally; communicate once per optimizer step
            sync_ctx = contextlib.ExitStack()
            sync_ctx.enter_context(self._no_sync(last_micro))  # held through backward
            with self.autocast():
                loss, parts, out = self.forward(batch, step)
            self.check_finite(loss, step)
            (loss / accum).backward()
            sync_ctx.close()
            acc["loss"] += loss.item() / accum
            for k, v in parts.items():
                acc[k] += float(v) / accum
            clips_since += batch["clips"].shape[0]
            micro += 1
            if micro < accum:
                continue
            micro = 0
            diag_now = self.diag_every is not None and ((step + 1) % self.diag_every == 0 or step + 1 == total)
            log_now = (step + 1) % self.log_every == 0 or step + 1 == total or diag_now
            grad_norm = self.clip_grad(step, want_norm=log_now)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.after_update(step, sched)
            self.step = step + 1
            row = None
            if log_now:
                now = time.perf_counter()
                keys = list(acc)
                red = all_reduce(torch.tensor([acc[k] for k in keys] + [float(clips_since)]), self.env, "sum")
                w = self.env.world_size
                vals = {k: red[i].item() / w for i, k in enumerate(keys)}
                clips_since = red[-1].item()
                row = dict(step=step, **vals, **sched, grad_norm=grad_norm.item(),
                           clips_per_s=clips_since / max(now - t_last, 1e-9), elapsed_s=now - t_start,
                           samples_skipped=self.data_skipped)
                t_last, clips_since = now, 0
                if diag_now:
                    row.update(self.diagnostics(out))
            extra = self.after_step(step)
            if extra:
                row = {**(row or {"step": step}), **extra}
                t_last, clips_since = time.perf_counter(), 0  # keep evaluation out of clips/s
            if row is not None and log is not None:
                log.append(row)
                if bar is not None:
                    post = {"loss": f"{row['loss']:.4f}"} if "loss" in row else {}
                    if "clips_per_s" in row:
                        post["clips_s"] = f"{row['clips_per_s']:.1f}"
                    post.update({k: f"{v:.3g}" for k, v in extra.items() if isinstance(v, float)} if extra else {})
                    bar.set_postfix(post, refresh=False)
            acc = dict.fromkeys(self.ACC_KEYS, 0.0)
            if bar is not None:
                bar.update(1)
            stop = until is not None and self.step >= until
            if self.step % self.checkpoint_every == 0 or self.step == total or stop:
                self.save()
                if main:
                    self.plot()
                t_last, clips_since = time.perf_counter(), 0  # keep saving and plotting out of clips/s
            if stop:
                break
        if bar is not None:
            bar.close()
        if not main:
            return {"steps": self.step, "rank": self.env.rank}
        log.close()  # the TensorBoard writer, when there is one
        summary = self.summary(time.perf_counter() - t_start, log)
        summary["dtype"], summary["dtype_note"] = self.dtype_name, self.dtype_note
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def train_mode(self) -> None:
        for m in self.trainable():
            m.train()

    def data_summary(self) -> dict:
        return {"samples_ok": self.data_ok, "samples_skipped": self.data_skipped, "skipped_files": dict(self.skipped_files)}
