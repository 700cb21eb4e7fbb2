"""World-model training (``videojepa world train``): an action-conditioned predictor in a latent space.

``WorldTrainer(cfg, out_dir).fit()`` runs on the shared :class:`~videojepa.training.engine.Engine` (resume,
atomic verified checkpoints, metrics CSV + PNG, progress, the non-finite stop). A step draws ``batch_size``
windows of ``window`` frames from the trajectory folder (a pure function of ``(seed, step)``), encodes them,
and scores the predictor:

- **teacher forcing** (weight ``loss.teacher_forcing``): ``z_t, a_t -> z_{t+1}`` for every ``t`` of the window;
- **rollout**: from ``z_0`` alone, ``loss.rollout`` auto-regressive steps against ``z_1 .. z_R`` (V-JEPA 2-AC
  rolls out 2 steps, eb_jepa 8); distance ``loss.distance`` (``l1``: V-JEPA 2-AC; ``mse``: eb_jepa). Measured on the
  pooled conv latent, the 8-step rollout held the predictor's one-step error at 98% of "nothing moves" (27% on
  teacher forcing alone), and planning still went better with it (bench/RESULTS_planning.md);
- when the encoder trains (``model.encoder: conv`` or ``conv_map``), eb_jepa's anti-collapse terms on all frames of the window:
  ``std`` (hinge on the per-dimension standard deviation over the batch), ``cov`` (off-diagonal covariance),
  ``time`` (``|z_{t+1} - z_t|^2``, temporal smoothness), ``idm`` (inverse dynamics ``(z_t, z_{t+1}) -> a_t``);
- the temporal-distance term (weight ``loss.metric``, with ``model.metric_dim > 0``): the metric head's distance
  between two frames of one window regressed onto the number of steps between them with a low expectile
  (``loss.metric_expectile``), so that it follows the *shortest* observed way between two places (a random walk's
  detours are upper bounds): :func:`metric_loss`. It trains the encoder too when the encoder trains. With
  ``data.metric_frames=K`` the term reads ``K`` frames drawn across each window's whole episode instead of the
  window (encoded for it alone), so that it sees pairs as far apart as the episodes are long. With
  ``loss.metric_rollout`` (a share of ``loss.metric``), the rollout is also trained so that the head reads the
  same on imagined latents as on the real ones (squared distance, in window lengths; only the predictor gets a
  gradient from this term: letting the head fit it flattened the head, letting the encoder fit it lost the agent,
  bench/RESULTS_planning.md), so that the energy a planner reads off imagined latents matches the real frames;
- the null-action term (weight ``loss.stay``, MLP predictors): ``z_t, 0 -> z_t`` for every frame of the window,
  only the predictor answering for it (inputs and targets detached). Exploration data hardly ever holds a zero
  action (the policy always moves; only blocked moves stand still), so without it the imagined "stand still" of a
  planner's last steps drifts; it fits environments whose actions are displacements (Two Rooms, end-effector
  deltas), where a zero action leaves the scene as it is;
- the state probe (``z -> state``, on detached latents, weight 1): it never shapes the representation.

Frozen encoders (``pixels``, ``vit``, or a trained one started from another run and frozen: ``model.init=RUN
model.freeze=[encoder, ...]``, a second stage that trains the predictor alone) are run once over every frame before
the first step (the features are cached in memory), so their steps cost only the predictor. Diagnostics every ``train.diag_every`` steps: the
per-dimension std and effective rank of the latents, and the probe's position error (pixels) on encoded frames
and at the last rollout step (how far imagination drifts), on held-out episodes when there are any.
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError, _read_with_base, _to_dict, apply_overrides, build_sections, check_sections
from ..data.trajectories import TrajectoryDataset, load_trajectories
from ..models.world import TRAINED_ENCODERS, WorldModel, WorldModelConfig, head_distance
from ..rng import derive_seed, numpy_generator
from .distributed import DistEnv, init_distributed
from .engine import Engine
from .losses import feature_stats
from .metrics import MetricsLog
from .schedules import warmup_cosine

__all__ = ["WorldConfig", "WorldTrainer", "WORLD_FORMAT", "WORLD_COLUMNS", "load_world_config", "load_world", "vc_terms",
           "world_losses", "metric_loss", "metric_step_loss"]

WORLD_FORMAT = "videojepa-world/1"
WORLD_COLUMNS = ["step", "loss", "loss_tf", "loss_rollout", "loss_std", "loss_cov", "loss_time", "loss_idm",
                 "loss_probe", "loss_metric", "loss_metric_local", "loss_metric_step", "loss_metric_rollout", "loss_stay",
                 "loss_scene", "lr", "grad_norm",
                 "clips_per_s", "elapsed_s", "z_std", "z_erank", "probe_err_px", "rollout_err_px", "val_rollout",
                 "val_metric", "samples_skipped"]


@dataclass(frozen=True)
class WDataSection:
    """``path``: a trajectory folder (``videojepa world collect``, :func:`~videojepa.data.trajectories.
    write_trajectories`) or a LeRobot dataset folder. ``window``: frames per training window. ``val_episodes``:
    episodes held out for the diagnostics (the last ones). ``limit``: use only the first ``limit`` episodes.
    ``metric_frames``: ``K > 0`` draws, for each window, ``K`` distinct frames spread over its whole episode (sorted,
    uniformly at random) for the temporal-distance term, whose pairs are then as far apart as the episode is long
    (0: the term reads the window). With perfect perception the distances learned from 97-frame spans folded the far
    field (CEM on the true dynamics 72% across rooms), from 97 frames drawn over 385-frame episodes they did not
    (94%; bench/world_metric_objectives.py). From pixels (the ``conv_map`` encoder) the energy came out right in
    the large and rough at the scale of the map's cells, and planned worse than 97-frame windows did
    (bench/RESULTS_planning.md). Episodes shorter than ``K`` frames are not drawn."""

    path: str = ""
    window: int = 17
    batch_size: int = 64
    val_episodes: int = 64
    limit: int | None = None
    metric_frames: int = 0

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ConfigError(f"data.window must be >= 2, got {self.window}")
        if self.batch_size < 2:
            raise ConfigError(f"data.batch_size must be >= 2 (the variance terms need a batch), got {self.batch_size}")
        if self.val_episodes < 0:
            raise ConfigError(f"data.val_episodes must be >= 0, got {self.val_episodes}")
        if self.metric_frames < 0 or self.metric_frames == 1:
            raise ConfigError(f"data.metric_frames must be 0 (off) or >= 2, got {self.metric_frames}")


@dataclass(frozen=True)
class WLossSection:
    """Coefficients: eb_jepa's (``std`` 16, ``cov`` 8, ``time`` 12, ``idm`` 1) apply only when the encoder trains.
    ``cov_norm``: ``dim`` (VICReg: the squared off-diagonal covariances summed over ``D``) or ``pairs`` (eb_jepa's
    form: their mean over the ``D (D - 1)`` pairs, ``D - 1`` times weaker at the same coefficient). ``dim`` is the
    default: with ``pairs`` and batches of 32-64 windows the conv encoder encoded the layout and not the agent
    (held-out position probe 19-20 px after 250-500 steps against 3.7 px with ``dim``; bench/RESULTS_planning.md).

    ``rollout_starts``: the ``rollout``-step auto-regressive loss from this many frames spread over the window
    (batched; 1: from its first frame only). ``blocked``: extra weight on the transitions the data shows stopped
    (the state did not move although the action asked to: walls), in the teacher-forcing and rollout losses;
    needs states. Both apply to the ``mlp`` and ``conv`` predictors. ``scene``: the same-episode contrastive term
    (:func:`scene_loss`, with ``model.scene_dim > 0``), at ``scene_temperature``. The three were tried against an
    imagination that walks through walls (bench/world_wall_check.py) and did not stop it at the scale measured
    (bench/RESULTS_planning.md). ``metric_local``: with ``data.metric_frames``, the temporal-distance term on the
    window's own consecutive frames too, at this share of ``metric`` (the spread frames are on average several steps
    apart, so they hardly constrain the distance between neighbouring places). Measured at 600 steps on
    ``conv_map``: it sharpened the energy near the goal and flattened it elsewhere (26% against 56% on the true
    dynamics), so it is off by default. ``metric_step``: at this share of ``metric``, a hinge that holds the head's
    distance between consecutive frames of the window within the one step between them (:func:`metric_step_loss`):
    a bound the true distance meets, so unlike ``metric_local`` it asks nothing of the far field; with a Euclidean
    head it bounds how fast the distance to any goal can change along a trajectory, i.e. the bumps between
    neighbouring places."""

    distance: str = "mse"
    teacher_forcing: float = 1.0
    rollout: int = 8
    std: float = 16.0
    cov: float = 8.0
    time: float = 12.0
    idm: float = 1.0
    std_margin: float = 1.0
    cov_norm: str = "dim"
    metric: float = 0.0
    metric_expectile: float = 0.1
    metric_rollout: float = 0.0
    metric_local: float = 0.0
    metric_step: float = 0.0
    stay: float = 0.0
    rollout_starts: int = 1
    blocked: float = 0.0
    scene: float = 0.0
    scene_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.distance not in ("l1", "mse"):
            raise ConfigError(f"loss.distance must be 'l1' or 'mse', got {self.distance!r}")
        if self.rollout < 0:
            raise ConfigError(f"loss.rollout must be >= 0, got {self.rollout}")
        if self.scene_temperature <= 0:
            raise ConfigError(f"loss.scene_temperature must be > 0, got {self.scene_temperature}")
        if self.rollout_starts < 1:
            raise ConfigError(f"loss.rollout_starts must be >= 1, got {self.rollout_starts}")
        if self.cov_norm not in ("pairs", "dim"):
            raise ConfigError(f"loss.cov_norm must be 'pairs' or 'dim', got {self.cov_norm!r}")
        if not 0 < self.metric_expectile < 1:
            raise ConfigError(f"loss.metric_expectile must be in (0, 1), got {self.metric_expectile}")
        for k in ("teacher_forcing", "std", "cov", "time", "idm", "std_margin", "metric", "metric_rollout",
                  "metric_local", "metric_step", "stay", "blocked", "scene"):
            if getattr(self, k) < 0:
                raise ConfigError(f"loss.{k} must be >= 0, got {getattr(self, k)}")
        if self.rollout == 0 and self.teacher_forcing == 0:
            raise ConfigError("loss.rollout and loss.teacher_forcing are both 0: nothing trains the predictor")


@dataclass(frozen=True)
class WOptimSection:
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup: float = 0.1  # share of the steps
    final_lr: float = 0.0
    clip_grad: float | None = 2.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"optim.warmup must be in [0, 1), got {self.warmup}")


@dataclass(frozen=True)
class WTrainSection:
    seed: int = 0
    steps: int = 3000
    device: str = "auto"
    dtype: str = "float32"
    log_every: int = 25
    diag_every: int = 250
    checkpoint_every: int = 500
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for k in ("steps", "log_every", "diag_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, k) < 1:
                raise ConfigError(f"train.{k} must be >= 1, got {getattr(self, k)}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"train.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")


@dataclass(frozen=True)
class WorldConfig:
    data: WDataSection = field(default_factory=WDataSection)
    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    loss: WLossSection = field(default_factory=WLossSection)
    optim: WOptimSection = field(default_factory=WOptimSection)
    train: WTrainSection = field(default_factory=WTrainSection)

    def __post_init__(self) -> None:
        if not self.data.path:
            raise ConfigError("data.path is required: a trajectory folder (videojepa world collect) or a LeRobot folder")
        if (self.loss.metric > 0) != (self.model.metric_dim > 0):
            raise ConfigError(f"loss.metric={self.loss.metric} and model.metric_dim={self.model.metric_dim}: the "
                              "temporal-distance term needs its head and the head needs the term (set both or neither)")
        if self.data.metric_frames and not self.loss.metric > 0:
            raise ConfigError(f"data.metric_frames={self.data.metric_frames} feeds the temporal-distance term: set "
                              "loss.metric > 0 and model.metric_dim > 0 too")
        if self.loss.metric_local > 0 and not self.data.metric_frames:
            raise ConfigError("loss.metric_local weighs the window's own pairs beside the frames of data.metric_frames; "
                              "without those the term reads the window already")
        if (self.loss.scene > 0) != (self.model.scene_dim > 0):
            raise ConfigError(f"loss.scene={self.loss.scene} and model.scene_dim={self.model.scene_dim}: the "
                              "same-episode term needs its head and the head needs the term (set both or neither)")
        if self.loss.scene > 0 and self.model.encoder not in TRAINED_ENCODERS:
            raise ConfigError("loss.scene shapes the encoder: it needs a trained encoder (model.encoder=conv or conv_map)")
        if (self.loss.rollout_starts > 1 or self.loss.blocked > 0) and self.model.predictor == "ac":
            raise ConfigError("loss.rollout_starts and loss.blocked apply to the mlp and conv predictors; the 'ac' predictor "
                              "has its own teacher-forcing and rollout losses (V-JEPA 2-AC's)")
        if self.loss.stay > 0 and self.model.predictor == "ac":
            raise ConfigError("loss.stay applies to the latent-step predictors (mlp, conv); the 'ac' predictor's steps "
                              "also read the proprioceptive state, which a zero action does not define")

    def to_dict(self) -> dict:
        d = _to_dict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        d = copy.deepcopy(d or {})
        check_sections(cls, d)
        model = d.pop("model", {}) or {}
        try:
            m = WorldModelConfig.from_dict(model)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model: {e}") from None
        return build_sections(cls, d, model=m)


def load_world_config(path: str | Path | None = None, overrides: list[str] | None = None) -> WorldConfig:
    """Defaults, then the YAML at ``path`` (if any), then ``key=value`` overrides."""
    d = _read_with_base(path, ())[0] if path else {}
    return WorldConfig.from_dict(apply_overrides(d, overrides or []))


# ------------------------------------------------------------------------------------------------- losses
def _dist(a: torch.Tensor, b: torch.Tensor, kind: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 / squared distance; ``weight`` (broadcast over all dims but the last) makes it a weighted mean
    over the leading positions."""
    d = (a - b).abs() if kind == "l1" else (a - b).pow(2)
    if weight is None:
        return d.mean()
    w = weight.expand(d.shape[:-1])
    return (d.mean(-1) * w).sum() / w.sum()


def blocked_moves(actions: torch.Tensor, states: torch.Tensor | None, min_action: float = 0.2,
                  eps: float = 1e-6) -> torch.Tensor | None:
    """``[B, T-1]`` bool: transitions the data shows stopped (the state did not move although the action asked
    for at least ``min_action``): collisions with a wall or the border. ``None`` without states."""
    if states is None or states.shape[-1] == 0:
        return None
    moved = (states[:, 1:] - states[:, :-1]).norm(dim=-1)
    return (actions.norm(dim=-1) >= min_action) & (moved <= eps)


def rollout_starts(t: int, r: int, n: int) -> list[int]:
    """``n`` start frames spread evenly over a window of ``t`` frames for rollouts of ``r`` steps (fewer when the
    window is short): ``[0]`` for ``n = 1``."""
    last = t - 1 - r
    if last <= 0 or n == 1:
        return [0]
    n = min(n, last + 1)
    return sorted({round(i * last / (n - 1)) for i in range(n)})


def vc_terms(z: torch.Tensor, margin: float = 1.0, cov_norm: str = "dim", tokens: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The variance hinge ``mean(relu(margin - std_d))`` and the covariance penalty of ``[N, D]``: the squared
    off-diagonal covariances summed and divided by ``D`` (``cov_norm="dim"``, VICReg's form) or averaged over the
    ``D (D - 1)`` pairs (``"pairs"``, eb_jepa's form: ``D - 1`` times weaker at the same coefficient).

    ``tokens > 1`` (a grid latent, token-major): the hinge is still on every dimension (every cell's channels
    must vary across the batch), the covariance is taken per token (each cell's ``C x C`` channel covariance, the
    penalty averaged over the cells; eb_jepa's spatial models regularise per pixel), so its cost stays ``O(N D C)``
    instead of ``O(N D^2)`` and it does not ask neighbouring cells, which see overlapping pixels, to decorrelate."""
    z = z - z.mean(0)
    std = torch.sqrt(z.var(0) + 1e-4)
    n, d = z.shape
    zt = z.reshape(n, tokens, d // tokens).transpose(0, 1)  # [tokens, N, C]
    c = zt.shape[-1]
    cov = zt.transpose(1, 2) @ zt / max(n - 1, 1)  # [tokens, C, C]
    off = cov - torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))
    pen = off.pow(2).sum((-2, -1)).mean() / (c * max(c - 1, 1) if cov_norm == "pairs" else c)
    return F.relu(margin - std).mean(), pen


def metric_loss(phi: torch.Tensor, expectile: float = 0.1, times: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal-distance regression on one window per row: ``phi`` ``[B, T, M]`` (the metric head's outputs for
    ``T`` consecutive frames, or for frames at the increasing steps ``times`` ``[B, T]`` of their episodes). For every
    pair ``i < j`` the distance ``|phi_i - phi_j|`` is regressed onto the steps between them (``j - i``, or
    ``times_j - times_i``) with the asymmetric squared loss of expectile ``expectile``: with a low expectile an
    overestimate costs ``1 - expectile`` and an underestimate ``expectile``, so across the data the distance settles
    near the *fewest* steps observed between two places (the policy's detours are upper bounds), the quantity a
    planner's energy needs. Errors are measured in units of ``T - 1`` steps (a window's length), so the term's scale
    does not grow with the window."""
    b, t, _ = phi.shape
    i, j = torch.triu_indices(t, t, 1, device=phi.device)
    dist = head_distance(phi[:, i], phi[:, j])  # [B, P]
    gap = (j - i).to(phi.dtype) if times is None else (times[:, j] - times[:, i]).to(phi.dtype)
    u = (gap - dist) / (t - 1)
    w = torch.where(u < 0, 1.0 - expectile, expectile)
    return (w * u.pow(2)).mean()


def metric_step_loss(phi: torch.Tensor, unit: int) -> torch.Tensor:
    """Hinge on consecutive frames: ``phi`` ``[B, T, M]`` (the metric head on ``T`` consecutive frames); every
    distance ``|phi_t - phi_t+1|`` above the one step between them costs its excess squared, in units of ``unit``
    steps (the temporal-distance term's, so that the two weigh alike). Distances within a step cost nothing."""
    return (F.relu(head_distance(phi[:, 1:], phi[:, :-1]) - 1.0) / unit).pow(2).mean()


def scene_loss(s: torch.Tensor, temperature: float = 0.1, episodes: torch.Tensor | None = None) -> torch.Tensor:
    """Same-episode contrastive term (supervised-contrastive form, the episode as the label): ``s`` ``[B, T, K]``
    (the scene head's outputs for ``T`` frames of ``B`` windows from different episodes); every frame's positives
    are the other frames of its window, its negatives the frames of the other windows. What frames of one episode
    share and other episodes do not is the scene: with layouts drawn per episode, the wall and the door, which
    nothing else in the losses asks the latent to hold (the agent's position varies within an episode too). Needs
    no labels: episode boundaries are in every trajectory dataset. ``episodes`` ``[B]``: the windows' episode ids
    (two windows of one episode are positives of each other); default: all different."""
    b, t, _ = s.shape
    f = F.normalize(s.reshape(b * t, -1), dim=-1)
    sim = (f @ f.T) / temperature
    eye = torch.eye(b * t, dtype=torch.bool, device=s.device)
    sim = sim.masked_fill(eye, float("-inf"))
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    ep = (torch.arange(b, device=s.device) if episodes is None else episodes.to(s.device)).repeat_interleave(t)
    pos = (ep[:, None] == ep[None, :]) & ~eye
    return -(logp.masked_fill(~pos, 0.0).sum(1) / pos.sum(1).clamp_min(1)).mean()


def world_losses(model: WorldModel, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor | None,
                 loss, state_scale: float, episodes: torch.Tensor | None = None,
                 metric: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict, dict]:
    """``z`` ``[B, T, D]`` (normalised latents of the window), actions ``[B, T-1, A]``, states ``[B, T, S]``.
    ``metric``: ``(latents [B, K, D], steps [B, K])`` of frames spread over each window's episode
    (``data.metric_frames``), which the temporal-distance term then reads instead of the window."""
    b, t, d = z.shape
    parts: dict = {}
    total = z.new_zeros(())
    r = min(loss.rollout, t - 1)
    pred = None
    if model.uses_states:  # V-JEPA 2-AC's losses (teacher forcing + rollout from [z_0, zhat_1], PR #25 indexing)
        from ..models.ac_predictor import ac_losses

        tf_loss, ro_loss = ac_losses(model.predictor, model._tokens(z), actions / model.action_scale,
                                     states / model.state_scale, auto_steps=max(r, 1),
                                     loss_exp=1.0 if loss.distance == "l1" else 2.0)
        parts["loss_tf"], parts["loss_rollout"] = tf_loss, ro_loss
        total = total + loss.teacher_forcing * tf_loss + (ro_loss if r > 0 else 0.0)
    else:
        stopped = blocked_moves(actions, states) if loss.blocked > 0 else None
        w = None if stopped is None else 1.0 + loss.blocked * stopped.to(z.dtype)  # [B, T-1]
        if loss.teacher_forcing > 0:
            tf = model.step(z[:, :-1], actions)
            parts["loss_tf"] = _dist(tf, z[:, 1:], loss.distance, w)
            total = total + loss.teacher_forcing * parts["loss_tf"]
        if r > 0:
            # rollouts from every start frame at once; the first one (frame 0) is `pred`, which later terms read
            starts = torch.tensor(rollout_starts(t, r, loss.rollout_starts), device=z.device)
            idx = starts[:, None] + torch.arange(r + 1, device=z.device)  # [S, r + 1] frames of each rollout
            preds = model.rollout(z[:, idx[:, 0]].reshape(-1, d), actions[:, idx[:, :-1]].flatten(0, 1))
            preds = preds.reshape(b, len(starts), r, d)
            pred = preds[:, 0]
            ws = None if w is None else w[:, idx[:, :-1]]
            parts["loss_rollout"] = _dist(preds, z[:, idx[:, 1:]], loss.distance, ws)
            total = total + parts["loss_rollout"]
        if loss.stay > 0:  # a zero action leaves the latent where it is; only the predictor answers for it
            still = z.detach()
            parts["loss_stay"] = _dist(model.step(still, torch.zeros_like(still[..., :actions.shape[-1]])), still,
                                       loss.distance)
            total = total + loss.stay * parts["loss_stay"]
    if model.encoder_trains:
        flat = z.reshape(b * t, d)
        parts["loss_std"], parts["loss_cov"] = vc_terms(flat, loss.std_margin, loss.cov_norm, model.tokens)
        parts["loss_time"] = (z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean() / d
        parts["loss_idm"] = F.mse_loss(model.inverse(z[:, :-1], z[:, 1:]) / model.action_scale, actions / model.action_scale)
        total = total + loss.std * parts["loss_std"] + loss.cov * parts["loss_cov"] + loss.time * parts["loss_time"] \
            + loss.idm * parts["loss_idm"]
    if model.metric is not None and loss.metric > 0:
        window_read = metric is None or loss.metric_local > 0 or loss.metric_step > 0 or loss.metric_rollout > 0
        phi = model.metric(z) if window_read else None  # the head on the window's frames
        unit = (t if metric is None else metric[1].shape[1]) - 1  # the temporal-distance term's unit of steps
        if metric is None:
            parts["loss_metric"] = metric_loss(phi, loss.metric_expectile)
        else:
            parts["loss_metric"] = metric_loss(model.metric(metric[0]), loss.metric_expectile, metric[1])
        total = total + loss.metric * parts["loss_metric"]
        if metric is not None and loss.metric_local > 0:  # the window's own pairs: the short range, at every step
            parts["loss_metric_local"] = metric_loss(phi, loss.metric_expectile)
            total = total + loss.metric * loss.metric_local * parts["loss_metric_local"]
        if loss.metric_step > 0:  # neighbours within a step of each other
            parts["loss_metric_step"] = metric_step_loss(phi, unit)
            total = total + loss.metric * loss.metric_step * parts["loss_metric_step"]
        if loss.metric_rollout > 0 and pred is not None:  # the planner reads the head on *imagined* latents
            # only the predictor answers for this term: the head fitting it flattened the head, the encoder fitting
            # it stopped encoding the agent (bench/RESULTS_planning.md)
            frozen = {k: v.detach() for k, v in model.metric.named_parameters()}
            imagined = model.rollout(z[:, 0].detach(), actions[:, :r])
            phi_pred = torch.func.functional_call(model.metric, frozen, (imagined,))
            gap = (phi_pred - phi[:, 1:r + 1].detach()).pow(2).sum(-1).mean() / unit ** 2
            parts["loss_metric_rollout"] = gap
            total = total + loss.metric * loss.metric_rollout * gap
    if model.scene is not None and loss.scene > 0:
        parts["loss_scene"] = scene_loss(model.scene(z), loss.scene_temperature, episodes)
        total = total + loss.scene * parts["loss_scene"]
    if states is not None and states.shape[-1] > 0:
        parts["loss_probe"] = F.mse_loss(model.read_state(z.detach()), states / state_scale)
        total = total + parts["loss_probe"]
    return total, parts, {"z": z.detach(), "pred": None if pred is None else pred.detach(), "r": r}


# ------------------------------------------------------------------------------------------------- trainer
class WorldTrainer(Engine):
    FORMAT = WORLD_FORMAT
    NAME = "world"
    PARTS = ("encoder", "predictor", "idm", "probe")  # the WorldModel's sub-modules (+ "metric", "scene" if present)
    METRIC_COLUMNS = WORLD_COLUMNS
    ACC_KEYS = ("loss", "loss_tf", "loss_rollout", "loss_std", "loss_cov", "loss_time", "loss_idm", "loss_probe",
                "loss_metric", "loss_metric_local", "loss_metric_step", "loss_metric_rollout", "loss_stay", "loss_scene")

    def __init__(self, cfg: WorldConfig, out_dir: str | Path, *, resume: str | None = "auto", progress: bool = True,
                 device: str | None = None, env: DistEnv | None = None, data: TrajectoryDataset | None = None) -> None:
        self.cfg = cfg
        t = cfg.train
        env = env or init_distributed(device or t.device)
        if env.distributed:
            raise NotImplementedError("world-model training runs in one process (no gradient synchronisation across "
                                      "ranks yet): run it without torchrun")
        self.setup(out_dir, env=env, progress=progress, dtype=t.dtype,
                   seed=t.seed, max_steps=t.steps, grad_accum=1, batch_size=cfg.data.batch_size, max_failure_rate=1.0,
                   log_every=t.log_every, checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints,
                   diag_every=t.diag_every)
        self.data = data if data is not None else load_trajectories(cfg.data.path, limit=cfg.data.limit, progress=progress)
        ds = self.data
        mc = cfg.model
        if (mc.action_dim, mc.state_dim) != (ds.action_dim, ds.state_dim) or ds.frame_shape[:2] != (mc.img_size, mc.img_size):
            raise ValueError(f"{cfg.data.path}: the data has {ds.action_dim}-d actions, {ds.state_dim}-d states and "
                             f"{ds.frame_shape[0]}x{ds.frame_shape[1]} frames, the model expects model.action_dim="
                             f"{mc.action_dim}, model.state_dim={mc.state_dim}, model.img_size={mc.img_size}")
        n_val = min(cfg.data.val_episodes, len(ds) // 5)
        self.train_eps = np.arange(len(ds) - n_val)
        self.val_eps = np.arange(len(ds) - n_val, len(ds))
        if cfg.data.metric_frames:  # the spread frames come from the window's episode: it must hold them
            long_enough = ds.eligible(cfg.data.metric_frames)
            self.train_eps = np.intersect1d(self.train_eps, long_enough)
            self.val_eps = np.intersect1d(self.val_eps, long_enough)
            if not len(self.train_eps):
                raise ValueError(f"{cfg.data.path}: no training episode has data.metric_frames="
                                 f"{cfg.data.metric_frames} frames")
        self.state_scale = float(mc.img_size)
        vit, self.vit_desc = self._build_vit() if mc.encoder == "vit" else (None, None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(t.seed, "world-init"))
            self.model = WorldModel(mc, vit).to(self.device)
        self.init_report = init_from_world(self.model, mc.init) if mc.init else None
        if self.init_report and self.env.is_main:
            r = self.init_report
            print(f"model.init {mc.init}: loaded {', '.join(r['loaded']) or 'nothing'}"
                  + (f"; fresh: {', '.join(r['fresh'])}" if r["fresh"] else "")
                  + (f"; frozen: {', '.join(mc.freeze)}" if mc.freeze else ""), file=sys.stderr, flush=True)
        self.train_model = self.model
        self.PARTS = self.model.parts
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=o.lr)
        self.feats = None
        self.encode_seconds = 0.0
        if not self.model.encoder_trains:
            t0 = time.perf_counter()
            self.feats = self._encode_all()
            self.encode_seconds = time.perf_counter() - t0
        self.resume(resume)

    # ------------------------------------------------------------------ set-up pieces
    def _build_vit(self):
        from .finetune import build_encoder
        from .finetune_config import FinetuneConfig

        m = self.cfg.model
        ft = FinetuneConfig.from_dict({"model": {"init": m.vit_init, "part": m.vit_part, "name": m.vit_name,
                                                 "overrides": dict(m.vit_overrides), "drop_path": 0.0},
                                       "data": {"train": "unused", "num_frames": 16, "crop_size": m.img_size}})
        enc, desc, _ = build_encoder(ft, self.cfg.train.seed)
        return enc, desc

    @torch.no_grad()
    def _encode_all(self) -> torch.Tensor:
        frames = self.data.all_frames()
        chunk = 512
        it = range(0, len(frames), chunk)
        if self.progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"encode ({self.cfg.model.encoder}, frozen)", unit="chunk", leave=False)
        self.model.eval()
        out = [self.model.encode(torch.from_numpy(frames[i:i + chunk]).to(self.device)).cpu() for i in it]
        return torch.cat(out)

    def _spread(self, eps: np.ndarray, rng: np.random.Generator) -> dict:
        """``data.metric_frames`` frames drawn across each of the episodes ``eps`` (pixels, or cached features) and
        their steps within the episode."""
        times, rows = self.data.spread(eps, self.cfg.data.metric_frames, rng)
        clips = self.data.all_frames()[rows] if self.feats is None else self.feats[torch.from_numpy(rows)]
        return {"metric_clips": torch.as_tensor(clips), "metric_times": torch.from_numpy(times)}

    def _batch(self, rng: np.random.Generator, pool: np.ndarray, n: int, step: int, spread: bool = True) -> dict:
        w = self.cfg.data.window
        eps, starts = self.data.draw(n, w, rng, pool)
        win = self.data.windows(eps, starts, w, frames=self.feats is None)
        clips = win["frames"] if self.feats is None else self.feats[torch.from_numpy(self.data.frame_index(eps, starts, w))]
        out = {"clips": torch.as_tensor(clips), "actions": torch.from_numpy(win["actions"]),
               "states": torch.from_numpy(win["states"]), "episodes": torch.from_numpy(eps), "step": step,
               "skipped": []}
        if spread and self.cfg.data.metric_frames:  # drawn after the window: the windows stay those of metric_frames=0
            out.update(self._spread(eps, rng))
        return out

    def _loader(self):
        for s in range(self.step, self.max_steps):
            rng = numpy_generator(self.seed, s, self.env.rank, "world-batch")
            yield self._batch(rng, self.train_eps, self.cfg.data.batch_size, s)

    # ------------------------------------------------------------------ engine hooks
    def config_dict(self) -> dict:
        return self.cfg.to_dict()

    def check_resume_config(self, theirs: dict) -> None:
        mine = self.cfg.to_dict()
        try:  # read through today's config, so that keys added since (with their defaults) do not count as changes
            theirs = WorldConfig.from_dict(theirs).to_dict()
        except (ConfigError, ValueError, TypeError) as e:
            raise ValueError(f"cannot resume: the checkpoint's config does not read: {e}") from None
        changed = sorted(s for s in ("data", "model", "loss") if mine[s] != theirs.get(s))
        if changed:
            raise ValueError(f"cannot resume: the checkpoint's {', '.join(changed)} config differs from this run's")

    def extra_meta(self) -> dict:
        meta = {"data_meta": self.data.meta, "state_scale": self.state_scale}
        if self.cfg.model.encoder == "vit":
            meta["vit_config"] = self.model.encoder.vit.cfg.to_dict()
        return meta

    def clip_value(self, step: int) -> float | None:
        return self.cfg.optim.clip_grad

    def begin_step(self, step: int) -> dict:
        o = self.cfg.optim
        lr = warmup_cosine(step, warmup=int(o.warmup * self.max_steps), total=self.max_steps, start=0.0, peak=o.lr,
                           final=o.final_lr)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return {"lr": lr}

    def latents(self, batch: dict) -> torch.Tensor:
        x = batch["clips"].to(self.device)
        return x if self.feats is not None else self.model.encode(x)

    def spread_latents(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(latents, steps)`` of the batch's frames drawn across whole episodes (``data.metric_frames``), or None."""
        if "metric_clips" not in batch:
            return None
        return self.latents({"clips": batch["metric_clips"]}), batch["metric_times"].to(self.device)

    def forward(self, batch: dict, step: int):
        z = self.latents(batch)
        a = batch["actions"].to(self.device)
        s = batch["states"].to(self.device)
        spread = self.spread_latents(batch)
        loss, parts, out = world_losses(self.model, z, a, s, self.cfg.loss, self.state_scale,
                                        episodes=batch.get("episodes"), metric=spread)
        out["states"] = s
        return loss, {k: v.item() for k, v in parts.items()}, out

    @torch.no_grad()
    def diagnostics(self, out) -> dict:
        res = {}
        z = out["z"]
        st = feature_stats(z.reshape(-1, 1, z.shape[-1]))
        res["z_std"], res["z_erank"] = st["std"], st["erank"]
        ev = self.evaluate_rollout()
        res.update(ev)
        self.train_mode()
        return res

    @torch.no_grad()
    def evaluate_rollout(self, n: int = 256) -> dict:
        """Probe error (px) on encoded frames and after the rollout, the rollout loss and the temporal-distance term
        (on the frames it trains on: the window, or those of ``data.metric_frames``), on held-out windows (training
        windows when nothing is held out); a fixed draw, the same at every call."""
        self.model.eval()
        pool = self.val_eps if len(self.val_eps) else self.train_eps
        rng = numpy_generator(self.seed, "world-val")
        b = self._batch(rng, pool, n, -1, spread=False)
        if self.cfg.data.metric_frames:  # the term's own frames for 32 of the windows (K frames each to encode)
            b.update(self._spread(b["episodes"][:32].numpy(), rng))
        z = self.latents(b)
        a, s = b["actions"].to(self.device), b["states"].to(self.device)
        r = max(1, min(self.cfg.loss.rollout, z.shape[1] - 1))
        pred = self.model.rollout(z[:, 0], a[:, :r], s[:, 0])
        err = lambda zz, ss: (self.model.read_state(zz) * self.state_scale - ss).norm(dim=-1).mean().item()  # noqa: E731
        res = {"val_rollout": _dist(pred, z[:, 1:r + 1], self.cfg.loss.distance).item()}
        if self.model.metric is not None:
            spread = self.spread_latents(b)
            res["val_metric"] = (metric_loss(self.model.metric(z), self.cfg.loss.metric_expectile) if spread is None else
                                 metric_loss(self.model.metric(spread[0]), self.cfg.loss.metric_expectile, spread[1])).item()
        if s.shape[-1] >= 2:
            res["probe_err_px"] = err(z, s)
            res["rollout_err_px"] = err(pred[:, -1], s[:, r])
        return res

    def plot(self) -> None:
        try:
            plot_world_metrics(self.out / "metrics.csv", self.out / "metrics.png",
                               title=f"world model ({self.cfg.model.encoder})")
        except Exception as e:  # a plot never stops training
            print(f"warning: could not plot metrics: {e}", file=sys.stderr)

    def summary(self, seconds: float, log: MetricsLog) -> dict:
        rows = log.read() if log is not None else []
        losses = [float(r["loss"]) for r in rows if r.get("loss")]
        ev = self.evaluate_rollout()
        return {"steps": self.step, "seconds": seconds, "encode_seconds": self.encode_seconds,
                "device": str(self.device), "encoder": self.cfg.model.encoder,
                "encoder_init": self.vit_desc, "episodes": len(self.data), "train_episodes": int(len(self.train_eps)),
                "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None, **ev,
                "data": {"skipped": [list(x) for x in self.data.skipped]},
                "resumed_from": str(self.resumed_from) if self.resumed_from else None, "init": self.init_report}


def plot_world_metrics(csv_path, png_path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _read_csv(csv_path)

    def col(key):
        xs, ys = [], []
        for r in rows:
            v = r.get(key)
            if v not in (None, ""):
                xs.append(int(float(r["step"])))
                ys.append(float(v))
        return xs, ys

    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for k in WorldTrainer.ACC_KEYS:
        xs, ys = col(k)
        if xs:
            ax[0].plot(xs, ys, label=k)
    ax[0].set_yscale("log")
    ax[0].set_title("losses")
    ax[0].legend(fontsize=7)
    for k in ("probe_err_px", "rollout_err_px"):
        xs, ys = col(k)
        if xs:
            ax[1].plot(xs, ys, "o-", label=k)
    ax[1].set_title("state probe error (px, held out)")
    ax[1].legend(fontsize=7)
    for k in ("z_std", "z_erank"):
        xs, ys = col(k)
        if xs:
            (ax[2] if k == "z_std" else ax[2].twinx()).plot(xs, ys, "o-" if k == "z_std" else "s--",
                                                            color="C0" if k == "z_std" else "C1", label=k)
    ax[2].set_title("collapse check: z std (o), effective rank (s)")
    for a in ax:
        a.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return Path(png_path)


def _read_csv(path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------- loading
def init_from_world(model: WorldModel, path: str | Path) -> dict:
    """Start ``model``'s parts from the world-model run (or checkpoint) at ``path`` (``model.init``): every part whose
    weights have the same names and shapes loads strictly; the others keep their fresh init and are named in the
    report, except a frozen one (``model.freeze``), which must load. Returns ``{"from", "loaded", "fresh"}``."""
    src, _, meta = load_world(path)
    loaded, fresh = [], []
    for part in model.parts:
        mine = getattr(model, part).state_dict()
        theirs = getattr(src, part).state_dict() if part in src.parts else None
        if theirs is None:
            why = "the init has no such part"
        elif mine.keys() != theirs.keys():
            why = "its weights have other names"
        else:
            diff = [f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in mine.items() if v.shape != theirs[k].shape]
            why = f"shapes differ ({'; '.join(diff[:3])})" if diff else None
        if why is None:
            getattr(model, part).load_state_dict(theirs, strict=True)
            loaded.append(part)
        elif part in model.cfg.freeze:
            raise ValueError(f"model.init {path} ({meta['path']}): the {part} is frozen (model.freeze) but cannot be "
                             f"loaded from it: {why}")
        else:
            fresh.append(f"{part} ({why})")
    return {"from": meta["path"], "loaded": loaded, "fresh": fresh}


def load_world(path: str | Path, device: str | torch.device = "cpu") -> tuple[WorldModel, WorldConfig, dict]:
    """A trained world model from a ``videojepa world train`` checkpoint (a file under ``checkpoints/``, or the run
    folder: its newest checkpoint), verified against its checksum and loaded strictly."""
    from .checkpoint import find_latest, load_checkpoint, run_checkpoint

    p = run_checkpoint(path)
    if p.is_dir():  # a checkpoints/ folder itself
        latest = find_latest(p)
        if latest is None:
            raise FileNotFoundError(f"{p}: no world-model checkpoint (expected checkpoints/step_*.pt)")
        p = latest
    sd = load_checkpoint(p, map_location="cpu")
    if not isinstance(sd, dict) or sd.get("format") != WORLD_FORMAT:
        got = sd.get("format") if isinstance(sd, dict) else type(sd).__name__
        raise ValueError(f"{p}: not a videojepa world-model checkpoint (format={got!r}, expected {WORLD_FORMAT!r})")
    cfg = WorldConfig.from_dict(sd["config"])
    vit = None
    if cfg.model.encoder == "vit":
        from ..models.vit import EncoderConfig, VisionTransformer

        vit = VisionTransformer(EncoderConfig.from_dict(sd["vit_config"]))
    model = WorldModel(cfg.model, vit)
    missing = [part for part in model.parts if part not in sd]
    if missing:
        raise ValueError(f"{p}: checkpoint lacks the part(s) {', '.join(missing)}")
    model.load_state_dict({f"{part}.{k}": v for part in model.parts for k, v in sd[part].items()}, strict=True)
    meta = {k: sd.get(k) for k in ("step", "data_meta", "state_scale")}
    meta["path"] = str(p)
    return model.to(device).eval(), cfg, meta
