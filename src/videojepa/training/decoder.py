"""Training the light pixel decoder on frozen features (``videojepa decoder train``).

``DecoderTrainer(cfg, out_dir).fit()`` runs on the shared :class:`~videojepa.training.engine.Engine` (resume,
atomic verified checkpoints, metrics CSV + PNG, progress, skipped-file accounting, the non-finite stop). The
encoder is one of our pretraining checkpoints, frozen; a step reads ``batch_size`` clips (a pure function of
``(seed, step)``), runs the target encoder over the whole clip, layer-norms its tokens as the predictor's
targets are, and trains :class:`~videojepa.models.decoder.PixelDecoder` to give back each tubelet's pixels
(``loss: l2`` or ``l1``, in the clip's normalised space).

``source.init: random`` decodes the features of the *same* model before training (the pretraining run's own
initialisation, rebuilt from its seed): the baseline that says how much of a decoded picture training earned.

The run directory (by default ``decoder/`` beside the checkpoint's ``checkpoints/`` folder) holds the usual
files, and the final export ``decoder.safetensors`` + ``decoder.json`` (its config, the encoder it decodes,
and the held-out reconstruction PSNR) that :func:`load_decoder` reads.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import ConfigError, PretrainConfig, _to_dict, apply_overrides, build_sections, check_sections
from ..models.decoder import DecoderConfig, PixelDecoder
from ..rng import derive_seed
from .distributed import DistEnv, init_distributed
from .engine import Engine
from .losses import normalize_targets
from .metrics import MetricsLog, plot_metrics
from .schedules import warmup_cosine

__all__ = ["DecoderRunConfig", "DecoderTrainer", "DECODER_FORMAT", "load_jepa", "load_decoder", "decoder_out_dir",
           "psnr", "psnr_db", "psnr_normalized", "features",
           "predictor_outputs", "WorldDecoderTrainer", "make_trainer", "write_export"]

DECODER_FORMAT = "videojepa-decoder/1"
DECODER_COLUMNS = ["step", "loss", "psnr", "lr", "grad_norm", "clips_per_s", "elapsed_s", "samples_skipped"]
EXPORT_WEIGHTS, EXPORT_CONFIG = "decoder.safetensors", "decoder.json"


@dataclass(frozen=True)
class DSourceSection:
    """``checkpoint``: one of our pretraining checkpoints (``runs/NAME/checkpoints/step_N.pt``) or its run
    directory (the newest checkpoint in it). ``init``: ``trained`` (its weights) or ``random`` (the same model at
    its pretraining initialisation). ``part``: whose features: ``target_encoder`` (what the predictor predicts)
    or ``encoder``. ``inputs``: what the decoder learns to read: ``targets`` (the target encoder's tokens of the
    whole clip), ``predictions`` (the frozen predictor's outputs at the hidden positions of the run's own masks,
    as the V-JEPA paper's decoder reads them) or ``both`` (the loss averaged over the two). ``world``: instead of
    ``checkpoint``, a world-model run: its frozen encoder's latent of each frame is decoded back to the frame
    (:class:`~videojepa.models.decoder.FrameDecoder`), so that imagined rollouts can be looked at."""

    checkpoint: str = ""
    init: str = "trained"
    part: str = "target_encoder"
    inputs: str = "both"
    world: str = ""

    def __post_init__(self) -> None:
        if bool(self.checkpoint) == bool(self.world):
            raise ConfigError("give exactly one of source.checkpoint (a pretraining checkpoint or run directory) and "
                              "source.world (a `videojepa world train` run)")
        if self.init not in ("trained", "random"):
            raise ConfigError(f"source.init must be 'trained' or 'random', got {self.init!r}")
        if self.inputs not in ("targets", "predictions", "both"):
            raise ConfigError(f"source.inputs must be 'targets', 'predictions' or 'both', got {self.inputs!r}")
        if self.part not in ("target_encoder", "encoder"):
            raise ConfigError(f"source.part must be 'target_encoder' or 'encoder', got {self.part!r}")


@dataclass(frozen=True)
class DDataSection:
    """``data``: the clips (empty: the checkpoint's own pretraining data; ``synthetic:SPLIT[:N]`` the embedded
    set; anything ``data.datasets`` takes: CSV index, folder, tar shards). Clip size and frame spacing are the
    checkpoint's."""

    data: str = ""
    batch_size: int = 16
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class DModelSection:
    """``hidden``/``depth``: the token decoder's MLP; ``channels``: the frame decoder's (world models)."""

    hidden: int = 512
    depth: int = 2
    channels: tuple[int, ...] = (128, 64, 32)

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1:
            raise ConfigError(f"model.hidden and model.depth must be >= 1, got {self.hidden}, {self.depth}")


@dataclass(frozen=True)
class DOptimSection:
    loss: str = "l2"
    lr: float = 1e-3
    final_lr: float = 1e-5
    warmup: int = 20
    weight_decay: float = 0.01
    clip_grad: float | None = 1.0

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "l2"):
            raise ConfigError(f"optim.loss must be 'l1' or 'l2', got {self.loss!r}")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class DTrainSection:
    seed: int = 0
    steps: int = 400
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for k in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, k) < 1:
                raise ConfigError(f"train.{k} must be >= 1, got {getattr(self, k)}")


@dataclass(frozen=True)
class DecoderRunConfig:
    source: DSourceSection = field(default_factory=lambda: DSourceSection(checkpoint="?"))
    data: DDataSection = field(default_factory=DDataSection)
    model: DModelSection = field(default_factory=DModelSection)
    optim: DOptimSection = field(default_factory=DOptimSection)
    train: DTrainSection = field(default_factory=DTrainSection)

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DecoderRunConfig":
        d = copy.deepcopy(d or {})
        check_sections(cls, d)
        return build_sections(cls, d)

    @classmethod
    def make(cls, overrides: list[str]) -> "DecoderRunConfig":
        return cls.from_dict(apply_overrides({}, overrides))


# ------------------------------------------------------------------------------------------------ sources
def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file/folder, or a run directory (its newest checkpoint); an error naming it when missing."""
    from .checkpoint import run_checkpoint

    p = run_checkpoint(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint or run directory")
    return p


def load_jepa(path: str | Path, init: str = "trained"):
    """``(model, cfg, path)``: the whole pretraining objective (encoder, predictor, target encoder) of one of our
    pretraining checkpoints, strictly loaded, in eval mode; ``init="random"``: the same model at its
    initialisation (rebuilt from the run's seed exactly as the pretrainer built it at step 0)."""
    from .checkpoint import CheckpointError
    from .trainer import CHECKPOINT_FORMAT, initial_objective, read_checkpoint

    path = resolve_checkpoint(path)
    sd = read_checkpoint(path)
    if not isinstance(sd, dict) or sd.get("format") != CHECKPOINT_FORMAT:
        got = sd.get("format") if isinstance(sd, dict) else type(sd).__name__
        raise CheckpointError(f"{path}: not a videojepa pretraining checkpoint (format={got!r}); the decoder and the "
                              "predictions need the predictor and target encoder of a `videojepa pretrain` run")
    cfg = PretrainConfig.from_dict(sd["config"])
    if cfg.loss.objective != "vjepa":
        raise ValueError(f"{path}: a {cfg.loss.objective} run predicts pixels or HOG, not features; decode V-JEPA runs")
    model = initial_objective(cfg)  # the pretrainer's own step-0 model
    if init == "trained":
        for part in ("encoder", "predictor", "target_encoder"):
            getattr(model, part).load_state_dict(sd[part], strict=True)
    elif init != "random":
        raise ValueError(f"init must be 'trained' or 'random', got {init!r}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, cfg, path


def decoder_out_dir(checkpoint: str | Path, init: str = "trained") -> Path:
    """``RUN/decoder`` (``RUN/decoder-random`` for the random-init baseline) for a checkpoint in ``RUN/checkpoints``."""
    p = resolve_checkpoint(checkpoint)
    run = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    return run / ("decoder" if init == "trained" else "decoder-random")


def data_config(pcfg: PretrainConfig, spec: str):
    """The checkpoint's data section, pointed at ``spec`` (empty: unchanged)."""
    if not spec:
        return pcfg.data
    from ..evaluation.datasets import SYNTHETIC_SPLITS, parse_synthetic

    syn = parse_synthetic(spec)
    if syn is not None:
        split, n = syn
        return replace(pcfg.data, source="synthetic",
                       synthetic={**pcfg.data.synthetic, "seed": SYNTHETIC_SPLITS[split][0], "num_samples": n})
    return replace(pcfg.data, source="files", datasets=[spec], datasets_weights=None)


def psnr_db(mse):
    """PSNR (dB) for peak 1 from a mean squared error (a float or a numpy array; 0 gives inf)."""
    import numpy as np

    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(1.0 / np.asarray(mse, dtype=np.float64))
    return float(out) if out.ndim == 0 else out


def psnr(pred01: torch.Tensor, true01: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in ``[0, 1]``."""
    return psnr_db((pred01.float() - true01.float()).pow(2).mean().item())


def psnr_normalized(pred: torch.Tensor, target: torch.Tensor, std=None) -> float:
    """PSNR (dB, peak 1) of patchified pixels ``[..., tubelet*patch*patch*C]`` given in the clip's normalised space:
    the error is scaled back to ``[0, 1]`` units per channel (ImageNet std by default) before averaging."""
    from ..data.transforms import IMAGENET_STD

    s = torch.as_tensor(std if std is not None else IMAGENET_STD, dtype=torch.float32, device=pred.device)
    c = s.numel()
    d = (pred.float() - target.float()).reshape(*pred.shape[:-1], -1, c) * s
    return psnr_db(d.pow(2).mean().item())


def predictor_outputs(jepa, x: torch.Tensor, ctx: torch.Tensor, tgt: torch.Tensor, m: int,
                      mask_token_by: str = "config") -> torch.Tensor:
    """The frozen predictor's outputs ``[B, K_t, D]`` at ``tgt`` from the context encoder on ``ctx`` (mask config
    ``m``, with the mask token the run trained with: its ``train.mask_token_by``)."""
    grid = jepa.encoder.grid_of(x)
    z = jepa.encoder(x, masks=ctx)
    token = m if mask_token_by == "config" else 0
    return jepa.predictor(z, ctx, tgt, mask_index=token, grid=grid)


def features(model, clips: torch.Tensor, part: str = "target_encoder") -> torch.Tensor:
    """The decoder's input: layer-normed (affine-free) tokens of the whole clip, as the predictor's targets are."""
    enc = getattr(model, part)
    return normalize_targets(enc(enc.prepare_input(clips)))


# ------------------------------------------------------------------------------------------------ trainer
class DecoderTrainer(Engine):
    FORMAT = DECODER_FORMAT
    NAME = "decoder"
    PARTS = ("decoder",)
    METRIC_COLUMNS = DECODER_COLUMNS
    ACC_KEYS = ("loss", "psnr")

    def __init__(self, cfg: DecoderRunConfig, out_dir: str | Path | None = None, *, resume: str | None = "auto",
                 progress: bool = True, device: str | None = None, env: DistEnv | None = None) -> None:
        self.cfg = cfg
        if cfg.source.world:
            raise ValueError("source.world is a world-model run: use WorldDecoderTrainer (make_trainer picks it)")
        self.jepa, self.pcfg, self.ckpt_path = load_jepa(cfg.source.checkpoint, cfg.source.init)
        self._begin(out_dir or decoder_out_dir(self.ckpt_path, cfg.source.init), device, env, progress,
                    self.pcfg.data.max_failure_rate)
        self.jepa.to(self.device)
        enc = self.jepa.target_encoder.cfg
        self.data_cfg = data_config(self.pcfg, cfg.data.data)
        from ..masks.ops import grid_size

        self.grid = grid_size(self.pcfg.data.num_frames, *self.pcfg.data.crop_size, enc.tubelet_size, enc.patch_size)
        self.dec_cfg = DecoderConfig(embed_dim=enc.embed_dim, grid=self.grid, tubelet_size=enc.tubelet_size,
                                     patch_size=enc.patch_size, in_chans=enc.in_chans, hidden=cfg.model.hidden,
                                     depth=cfg.model.depth)
        self._finish_setup(lambda: PixelDecoder(self.dec_cfg), resume)

    def _begin(self, out_dir, device, env, progress: bool, max_failure_rate: float) -> None:
        """One process (no torchrun) and the engine's run directory, from ``cfg.train``."""
        t = self.cfg.train
        env = env or init_distributed(device or t.device)
        if env.distributed:
            raise NotImplementedError("decoder training runs in one process: run it without torchrun")
        self.setup(Path(out_dir), env=env, progress=progress, dtype="float32", seed=t.seed, max_steps=t.steps,
                   grad_accum=1, batch_size=self.cfg.data.batch_size, max_failure_rate=max_failure_rate,
                   log_every=t.log_every, checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints)

    def _finish_setup(self, make, resume: str | None) -> None:
        """The decoder (``make()``, initialised from the run's seed), AdamW without decay on 1-D parameters, resume."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.cfg.train.seed, "decoder-init"))
            self.model = torch.nn.ModuleDict({"decoder": make()}).to(self.device)
        self.train_model = self.model
        o = self.cfg.optim
        params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": o.weight_decay},
                                            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=o.lr)
        self.resume(resume)

    # ------------------------------------------------------------------ engine hooks
    def config_dict(self) -> dict:
        return self.cfg.to_dict()

    def check_resume_config(self, theirs: dict) -> None:
        mine = self.cfg.to_dict()
        changed = sorted(s for s in ("source", "data", "model", "optim") if mine[s] != theirs.get(s))
        if changed:
            raise ValueError(f"cannot resume: the checkpoint's {', '.join(changed)} config differs from this run's")

    def _loader(self):
        from ..data.loader import build_loader
        from ..masks.collator import MaskCollator, MaskGenerator
        from .trainer import build_dataset

        pc = replace(self.pcfg, data=self.data_cfg)
        masks = MaskGenerator(self.pcfg.mask.build(), self.grid, self.seed, self.pcfg.mask.equalize)  # inputs: predictions
        return build_loader(build_dataset(pc), MaskCollator(masks), batch_size=self.cfg.data.batch_size, seed=self.seed,
                            start_step=self.step, max_steps=self.max_steps, num_workers=self.cfg.data.num_workers)

    def begin_step(self, step: int) -> dict:
        o = self.cfg.optim
        lr = warmup_cosine(step, warmup=o.warmup, total=self.max_steps, start=o.lr * 0.1, peak=o.lr, final=o.final_lr)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return {"lr": lr}

    def forward(self, batch: dict, step: int):
        from ..masks.ops import apply_masks
        from .objectives import patchify

        clips = batch["clips"].to(self.device)
        enc = self.dec_cfg
        x = self.jepa.target_encoder.prepare_input(clips)
        pixels = patchify(x, enc.tubelet_size, enc.patch_size)
        dec = self.model["decoder"]
        dist = F.mse_loss if self.cfg.optim.loss == "l2" else F.l1_loss
        terms, psnrs = [], []
        if self.cfg.source.inputs in ("targets", "both"):
            with torch.no_grad():
                h = features(self.jepa, x, self.cfg.source.part)
            pred = dec(h)
            terms.append(dist(pred, pixels))
            psnrs.append(psnr_normalized(pred.detach(), pixels))
        if self.cfg.source.inputs in ("predictions", "both"):
            losses = []
            for m, (ctx, tgt) in enumerate(batch["masks"]):
                ctx, tgt = ctx.to(self.device), tgt.to(self.device)
                with torch.no_grad():
                    p = predictor_outputs(self.jepa, x, ctx, tgt, m, self.pcfg.train.mask_token_by)
                out, want = dec(p, tgt), apply_masks(pixels, tgt)
                losses.append(dist(out, want))
                psnrs.append(psnr_normalized(out.detach(), want))
            terms.append(torch.stack(losses).mean())
        loss = torch.stack(terms).mean()
        return loss, {"psnr": sum(psnrs) / len(psnrs)}, None

    def clip_value(self, step: int) -> float | None:
        return self.cfg.optim.clip_grad

    def train_mode(self) -> None:
        self.model.train()

    def plot(self) -> None:
        plot_metrics(self.out / "metrics.csv", self.out / "metrics.png", title=f"videojepa decoder: {self.out.name}")

    def extra_meta(self) -> dict:
        return {"decoder_config": self.dec_cfg.to_dict(), "checkpoint": str(self.ckpt_path)}

    def summary(self, seconds: float, log: MetricsLog) -> dict:
        rows = log.read()
        losses = [float(r["loss"]) for r in rows if r.get("loss")]
        k = max(1, len(losses) // 10)
        export = self.export()
        return {"steps": self.step, "seconds": round(seconds, 2), "device": str(self.device),
                "loss_first": sum(losses[:k]) / k if losses else None,
                "loss_last": sum(losses[-k:]) / k if losses else None,
                "checkpoint": str(self.ckpt_path), "init": self.cfg.source.init, "export": str(export),
                "data": self.data_summary()}

    def export(self) -> Path:
        """``decoder.safetensors`` + ``decoder.json`` in the run directory (atomic writes)."""
        return write_export(self.out, self.model["decoder"], {
            "decoder": self.dec_cfg.to_dict(), "checkpoint": str(self.ckpt_path), "init": self.cfg.source.init,
            "part": self.cfg.source.part, "inputs": self.cfg.source.inputs, "seed": self.pcfg.train.seed,
            "steps": self.step, "data": self.cfg.data.data or "(the checkpoint's pretraining data)"})


def write_export(out: Path, module: torch.nn.Module, meta: dict) -> Path:
    """The decoder's weights (safetensors) and ``decoder.json`` (``meta`` + format + the weights' SHA-256), each
    written to a temporary name and renamed into place."""
    from safetensors.torch import save_file

    from .checkpoint import file_digest

    w = Path(out) / EXPORT_WEIGHTS
    tmp = w.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(w)
    c = Path(out) / EXPORT_CONFIG
    tmpc = c.with_suffix(".tmp")
    tmpc.write_text(json.dumps({"format": DECODER_FORMAT, **meta, "weights_sha256": file_digest(w)}, indent=2))
    tmpc.replace(c)
    return w


class WorldDecoderTrainer(DecoderTrainer):
    """Frames of a world model's trajectory data, through its frozen encoder, decoded back to the frames: a step
    draws ``batch_size`` frames (a pure function of ``(seed, step)``) from the training episodes (the world run's
    held-out episodes are kept out), and the loss is the MSE in the world model's pixel space."""

    def __init__(self, cfg: DecoderRunConfig, out_dir: str | Path | None = None, *, resume: str | None = "auto",
                 progress: bool = True, device: str | None = None, env: DistEnv | None = None) -> None:
        import numpy as np

        from ..data.trajectories import load_trajectories
        from ..models.decoder import FrameDecoder, FrameDecoderConfig
        from .world import load_world

        self.cfg = cfg
        self.world, self.wcfg, self.wmeta = load_world(cfg.source.world)
        self.world.requires_grad_(False)
        self.ckpt_path = Path(self.wmeta["path"])
        self._begin(out_dir or self.ckpt_path.parent.parent / "decoder", device, env, progress, 1.0)
        self.world.to(self.device)
        self.data = load_trajectories(cfg.data.data or self.wcfg.data.path, progress=progress)
        mc = self.wcfg.model
        if self.data.frame_shape[:2] != (mc.img_size, mc.img_size):
            raise ValueError(f"{cfg.data.data or self.wcfg.data.path}: {self.data.frame_shape[0]}x"
                             f"{self.data.frame_shape[1]} frames, the world model reads {mc.img_size}x{mc.img_size}")
        n_val = min(self.wcfg.data.val_episodes, len(self.data) // 5)
        self.pool = np.arange(len(self.data) - n_val)
        with torch.no_grad():
            dim = self.world.encode(torch.from_numpy(self.data.episodes[0].frames[:1]).to(self.device)).shape[-1]
        self.dec_cfg = FrameDecoderConfig(dim=int(dim), img_size=mc.img_size, channels=tuple(cfg.model.channels))
        self._finish_setup(lambda: FrameDecoder(self.dec_cfg), resume)

    def _loader(self):
        from ..rng import numpy_generator

        for s in range(self.step, self.max_steps):
            rng = numpy_generator(self.seed, s, "world-decoder")
            eps, starts = self.data.draw(self.cfg.data.batch_size, 1, rng, self.pool)
            frames = self.data.windows(eps, starts, 1)["frames"][:, 0]
            yield {"clips": torch.from_numpy(frames), "step": s, "skipped": []}

    def forward(self, batch: dict, step: int):
        from ..models.world import _frames_to_float

        frames = batch["clips"].to(self.device)
        with torch.no_grad():
            z = self.world.encode(frames)
        out = self.model["decoder"](z)
        target = _frames_to_float(frames)
        mse = F.mse_loss(out, target)
        loss = mse if self.cfg.optim.loss == "l2" else F.l1_loss(out, target)
        return loss, {"psnr": psnr_db(mse.item())}, None

    def extra_meta(self) -> dict:
        return {"decoder_config": self.dec_cfg.to_dict(), "world": str(self.wmeta["path"])}

    def export(self) -> Path:
        return write_export(self.out, self.model["decoder"], {
            "decoder": self.dec_cfg.to_dict(), "world": str(self.wmeta["path"]), "init": "trained",
            "steps": self.step, "data": self.cfg.data.data or self.wcfg.data.path})


def make_trainer(cfg: DecoderRunConfig, out_dir=None, **kw) -> DecoderTrainer:
    """The decoder trainer for ``cfg``'s source: a pretraining checkpoint or a world-model run."""
    return (WorldDecoderTrainer if cfg.source.world else DecoderTrainer)(cfg, out_dir, **kw)


def load_decoder(path: str | Path, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    """A decoder export (its folder, or the ``decoder.json`` / ``decoder.safetensors`` in it), verified and strictly
    loaded, in eval mode; with its metadata (which checkpoint, which init, which part)."""
    from safetensors.torch import load_file

    from .checkpoint import CheckpointCorruptError, file_digest

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    cfg_path, w_path = folder / EXPORT_CONFIG, folder / EXPORT_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(f"{folder}: no decoder export ({EXPORT_CONFIG} + {EXPORT_WEIGHTS}); train one with "
                                "`videojepa decoder train --checkpoint CKPT`")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != DECODER_FORMAT:
        raise ValueError(f"{cfg_path}: not a videojepa decoder (format={meta.get('format')!r})")
    digest = file_digest(w_path)
    if meta.get("weights_sha256") and digest != meta["weights_sha256"]:
        raise CheckpointCorruptError(f"{w_path}: SHA-256 {digest[:12]}... does not match {cfg_path.name} "
                                     f"({meta['weights_sha256'][:12]}...): the file is damaged")
    if meta["decoder"].get("kind") == "frame":
        from ..models.decoder import FrameDecoder, FrameDecoderConfig

        dec = FrameDecoder(FrameDecoderConfig.from_dict(meta["decoder"]))
    else:
        dec = PixelDecoder(DecoderConfig.from_dict(meta["decoder"]))
    dec.load_state_dict(load_file(str(w_path), device=str(map_location)), strict=True)
    return dec.eval(), meta
