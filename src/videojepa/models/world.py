"""Latent world models for planning: an encoder of frames, an action-conditioned predictor, and two heads.

``WorldModel`` = ``encoder`` (frames -> latent vectors ``z``) + ``predictor`` (``(z_t, a_t) -> z_{t+1}``) +
``idm`` (inverse dynamics, ``(z_t, z_{t+1}) -> a_t``: one of the anti-collapse terms when the encoder trains) +
``probe`` (``z -> state``, trained on detached latents: it reads positions off imagined rollouts and never
shapes the representation) + optionally ``metric`` (``z -> phi``, ``model.metric_dim > 0``: a head whose Euclidean
distances are trained to follow the number of steps between two frames of one trajectory, so that a planner can
read "how far to the goal" from it; see :func:`~videojepa.training.world.metric_loss`).

Encoders (``kind``):

- ``conv``: a small convolutional encoder trained jointly with the predictor (eb_jepa's recipe needs the
  variance / covariance / temporal-smoothness / inverse-dynamics terms to keep it from collapsing);
- ``conv_map``: the same convolutions without the final Linear: the latent is their last feature map, one token
  per cell (8 x 8 cells of ``channels[-1]`` on 64 x 64 frames), so the geometry of the scene (where the wall and
  the door are) stays where it is instead of competing with the agent for the dimensions of one vector;
- ``pixels``: the frame itself, average-pooled (a fixed, parameter-free baseline);
- ``vit``: a frozen video ViT (V-JEPA-pretrained, or a random init), each frame encoded alone (the frame repeated
  to fill a tubelet, as V-JEPA 2-AC does), patch tokens average-pooled to a ``pool x pool`` grid.

Predictors (``predictor``): ``mlp`` (a residual MLP on the whole latent), ``bilinear`` (the same MLP whose output is
a sum of steps each multiplied by one action component: a translation of the agent acts on a latent made of many
periodic functions of its position as a rotation whose angle is proportional to the displacement, a product of
action and latent that an MLP on their concatenation has to build from its nonlinearity), ``conv`` (a residual convolutional net on
the token grid with the action broadcast to every cell: each cell's next value is read off its neighbourhood, so a
rule such as "the agent stops at a wall" is learned once for every place; for ``conv_map``, or a ``vit`` encoder's
pooled token grid), ``ac`` (V-JEPA 2-AC's block-causal transformer, on frozen encoders).

Every latent is layer-normed without affine parameters per token (V-JEPA 2-AC normalises its frozen features
this way); the predictor's output is normalised the same way, so predictions and targets live on one sphere,
except on ``conv_map`` latents (``model.renormalize``: there the norm is not idempotent and a second one moves the
targets' near-constant cells).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WorldModelConfig", "WorldModel", "head_distance", "ConvEncoder", "PixelEncoder", "FrozenViTEncoder",
           "MLPPredictor", "BilinearPredictor", "ConvPredictor", "make_predictor", "ENCODER_KINDS", "TRAINED_ENCODERS",
           "PREDICTOR_KINDS", "FREEZABLE"]

ENCODER_KINDS = ("conv", "conv_map", "pixels", "vit")
TRAINED_ENCODERS = ("conv", "conv_map")
PREDICTOR_KINDS = ("mlp", "bilinear", "conv", "ac")
FREEZABLE = ("encoder", "idm", "probe", "metric", "scene")  # the parts model.freeze may hold (never the predictor)


NO_METRIC_HEAD = ("energy 'metric' needs a world model trained with a temporal-distance head (model.metric_dim > 0 "
                  "and loss.metric > 0); this one has none")


@dataclass(frozen=True)
class WorldModelConfig:
    """``encoder``: conv | conv_map | pixels | vit. ``dim``: conv latent width (``conv_map``: unused, the latent is
    ``channels[-1]`` per cell of the last feature map). ``pixel_pool``: average-pool factor of the
    pixels baseline. ``vit_init``: for ``vit``, a checkpoint / weights path, or ``random``; ``vit_name`` and
    ``vit_overrides`` build the random one. ``vit_pool``: the token grid kept per frame (``pool x pool`` tokens).
    ``predictor``: mlp | bilinear | conv | ac. ``hidden``: predictor width (MLP units; ``conv``: channels);
    ``predictor_depth``: its hidden layers. ``action_dim`` / ``state_dim``:
    from the data. ``action_scale``: actions are divided by it before the predictor (the env's max step).
    ``renormalize``: layer-norm the mlp / conv predictor's output per token, as the targets are (the 2-AC predictor
    always does). The norm is not idempotent on tokens whose raw variance is near its eps, the near-constant cells
    of a ``conv_map`` latent (re-normalising encoded frames moved them by up to 0.54), so every predicted step is
    pulled off its target there; ``false`` returns ``z + dz`` (an exact identity at initialisation). Default: false
    for ``conv_map``, true otherwise.
    ``metric_dim``: width of the temporal-distance head (0: none); ``metric_hidden``: its MLP width (and the scene
    head's). ``scene_dim``: width of the scene head (0: none), a projection the same-episode contrastive term
    (``loss.scene``) trains so that the latent holds what stays fixed along an episode (the layout).
    ``init``: a world-model run (or checkpoint) whose parts start this model, each part whose weights have the same
    names and shapes (the others start fresh, and a frozen one must load); ``freeze``: parts that do not train
    (``encoder``, ``idm``, ``probe``, ``metric``, ``scene``). Together they give a second stage: a jointly trained
    encoder and its heads kept as they are, and the predictor trained alone on their cached latents, as V-JEPA 2-AC
    trains its predictor on a frozen encoder."""

    encoder: str = "conv"
    dim: int = 128
    channels: tuple[int, ...] = (16, 32, 32)
    pixel_pool: int = 4
    vit_init: str = "random"
    vit_part: str = "target_encoder"
    vit_name: str = "vit_nano_cpu"
    vit_overrides: dict = field(default_factory=lambda: {"patch_size": 8, "tubelet_size": 2})
    vit_pool: int = 2
    predictor: str = "mlp"
    hidden: int = 512
    predictor_depth: int = 2
    predictor_heads: int = 4
    idm_hidden: int = 256
    probe_hidden: int = 256
    metric_dim: int = 0
    metric_hidden: int = 256
    scene_dim: int = 0
    action_dim: int = 2
    state_dim: int = 2
    action_scale: float = 2.0
    img_size: int = 64
    renormalize: bool | None = None  # None: resolved from the encoder in __post_init__
    init: str = ""
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.predictor not in PREDICTOR_KINDS:
            raise ValueError(f"model.predictor must be one of {PREDICTOR_KINDS} (ac: V-JEPA 2-AC's block-causal "
                             f"transformer), got {self.predictor!r}")
        if self.predictor == "ac" and self.encoder in TRAINED_ENCODERS:
            raise ValueError("model.predictor=ac trains on a frozen encoder (V-JEPA 2-AC): use model.encoder=vit or pixels")
        if self.predictor == "conv" and not (self.encoder == "conv_map" or (self.encoder == "vit" and self.vit_pool > 1)):
            raise ValueError(f"model.predictor=conv works on a grid of tokens: use model.encoder=conv_map or vit "
                             f"with model.vit_pool > 1, not {self.encoder!r} (vit_pool {self.vit_pool})")
        if self.renormalize is None:
            object.__setattr__(self, "renormalize", self.encoder != "conv_map")
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"model.encoder must be one of {ENCODER_KINDS}, got {self.encoder!r}")
        for k in ("dim", "hidden", "predictor_depth", "idm_hidden", "probe_hidden", "action_dim", "pixel_pool", "vit_pool",
                  "img_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"model.{k} must be >= 1, got {getattr(self, k)}")
        if self.action_scale <= 0:
            raise ValueError(f"model.action_scale must be > 0, got {self.action_scale}")
        if self.img_size % self.pixel_pool:
            raise ValueError(f"model.pixel_pool {self.pixel_pool} does not divide model.img_size {self.img_size}")
        if self.scene_dim < 0:
            raise ValueError(f"model.scene_dim must be >= 0, got {self.scene_dim}")
        object.__setattr__(self, "freeze", (self.freeze,) if isinstance(self.freeze, str) else tuple(self.freeze))
        bad = [p for p in self.freeze if p not in FREEZABLE]
        if bad:
            raise ValueError(f"model.freeze: unknown part(s) {', '.join(map(repr, bad))}; choose from {', '.join(FREEZABLE)} "
                             "(the predictor always trains)")
        for part, width in (("metric", self.metric_dim), ("scene", self.scene_dim)):
            if part in self.freeze and not width:
                raise ValueError(f"model.freeze holds {part!r} but the model has no {part} head (model.{part}_dim=0)")
        if self.metric_dim < 0 or self.metric_hidden < 1:
            raise ValueError(f"model.metric_dim must be >= 0 and model.metric_hidden >= 1, got {self.metric_dim}, "
                             f"{self.metric_hidden}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["freeze"] = list(self.freeze)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldModelConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown world model config key(s): {', '.join(unknown)}")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


def _frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in ``[-0.5, 0.5]``."""
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames
    return x.movedim(-1, -3) - 0.5


def _conv_stack(channels: tuple[int, ...]) -> nn.Sequential:
    c = (3,) + tuple(channels)
    layers: list[nn.Module] = []
    for i in range(len(c) - 1):
        k = 4 if i < len(c) - 2 else 3
        layers += [nn.Conv2d(c[i], c[i + 1], k, stride=2, padding=1), nn.GELU()]
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Three strided convolutions (``channels``; 64 -> 32 -> 16 -> 8), then Linear to ``dim``: trained jointly."""

    tokens = 1
    trainable = True

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.net = _conv_stack(cfg.channels)
        with torch.no_grad():
            n = self.net(torch.zeros(1, 3, cfg.img_size, cfg.img_size)).numel()
        self.fc = nn.Linear(n, cfg.dim)
        self.dim = cfg.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, dim]
        return self.fc(self.net(x).flatten(1))


class ConvMapEncoder(nn.Module):
    """The same strided convolutions as :class:`ConvEncoder` without the Linear: the latent is the last feature map,
    token-major (``[N, h * w * C]``: cell ``(i, j)``'s ``C`` channels at ``(i * w + j) * C``), trained jointly."""

    trainable = True

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.net = _conv_stack(cfg.channels)
        with torch.no_grad():
            _, c, h, w = self.net(torch.zeros(1, 3, cfg.img_size, cfg.img_size)).shape
        self.grid = (h, w)
        self.tokens = h * w
        self.dim = h * w * c

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, h*w*C]
        return self.net(x).flatten(2).transpose(1, 2).flatten(1)


class PixelEncoder(nn.Module):
    """The pixels, average-pooled by ``pixel_pool``: no parameters."""

    tokens = 1
    trainable = False

    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.pool = cfg.pixel_pool
        self.dim = 3 * (cfg.img_size // cfg.pixel_pool) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.pool).flatten(1)


class FrozenViTEncoder(nn.Module):
    """A frozen video ViT reading one frame at a time; tokens average-pooled to ``vit_pool x vit_pool``."""

    trainable = False

    def __init__(self, vit: nn.Module, pool: int, cfg: "WorldModelConfig") -> None:
        super().__init__()
        self.vit = vit.requires_grad_(False).eval()
        p = vit.cfg.patch_size
        if cfg.img_size % p or (cfg.img_size // p) % pool:
            raise ValueError(f"model.vit_pool {pool} does not divide the ViT's token grid on {cfg.img_size}x"
                             f"{cfg.img_size} frames (patch {p})")
        self.vit_grid = (cfg.img_size // p, cfg.img_size // p)
        self.grid = (pool, pool)
        self.pool = pool
        self.tokens = pool * pool
        self.token_dim = vit.cfg.embed_dim
        self.dim = self.tokens * self.token_dim
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # always frozen, always in eval mode
        super().train(mode)
        self.vit.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 0.5) - self.mean) / self.std
        tok = self.vit(x)  # [N, H'*W', D] (a frame: one tubelet)
        n, _, d = tok.shape
        tok = tok.transpose(1, 2).reshape(n, d, *self.vit_grid)
        tok = F.adaptive_avg_pool2d(tok, self.pool)  # [N, D, p, p]
        return tok.flatten(2).transpose(1, 2).flatten(1)  # [N, p*p*D], token-major


def _trunk(inputs: int, hidden: int, depth: int) -> list[nn.Module]:
    """``depth`` Linear + GELU layers of width ``hidden``: the hidden part of the MLP and bilinear predictors."""
    layers: list[nn.Module] = [nn.Linear(inputs, hidden), nn.GELU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.GELU()]
    return layers


class MLPPredictor(nn.Module):
    """``z_{t+1} = norm(z_t + MLP([z_t, a_t / scale]))``: a residual step in latent space."""

    def __init__(self, dim: int, action_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*_trunk(dim + action_dim, hidden, depth), nn.Linear(hidden, dim))

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return z + self.net(torch.cat([z, a], dim=-1))


class BilinearPredictor(nn.Module):
    """``z_{t+1} = z_t + V_0 h + sum_k a_k V_k h`` with ``h = MLP([z_t, a_t / scale])``: the step is linear in each
    action component, with coefficients that depend on the state (``h``), so a latent in which moving the agent
    rotates many features by angles proportional to the move (what the anti-collapse terms give on a world of few
    factors: bench/RESULTS_planning.md) is predicted to first order by ``h`` linear in ``z``, and a wall can switch
    a direction's coefficients off. ``V`` starts at zero: the first step predicts "nothing changes"."""

    def __init__(self, dim: int, action_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*_trunk(dim + action_dim, hidden, depth))
        self.out = nn.Linear(hidden, dim * (action_dim + 1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dim = dim

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = self.net(torch.cat([z, a], dim=-1))
        v = self.out(h).unflatten(-1, (a.shape[-1] + 1, self.dim))  # [..., 1 + A, D]
        coef = torch.cat([torch.ones_like(a[..., :1]), a], dim=-1)  # [..., 1 + A]
        return z + (coef.unsqueeze(-1) * v).sum(-2)


class ConvPredictor(nn.Module):
    """``z_t + CNN([z_t, a_t / scale])`` on the token grid (token-major latents): ``depth`` hidden 3x3 convolutions of
    ``hidden`` channels, the action broadcast to every cell as extra input channels, the last convolution started
    at zero (the first step predicts "nothing changes")."""

    def __init__(self, grid: tuple[int, int], channels: int, action_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.grid, self.channels = tuple(grid), channels
        layers: list[nn.Module] = [nn.Conv2d(channels + action_dim, hidden, 3, padding=1), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU()]
        out = nn.Conv2d(hidden, channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h, w = self.grid
        # token-major latents are NHWC already: the convolutions run channels-last on them (no NCHW copy either way)
        act = a.reshape(-1, 1, 1, a.shape[-1]).expand(-1, h, w, -1)
        x = torch.cat([z.reshape(-1, h, w, self.channels), act], dim=-1).permute(0, 3, 1, 2)
        dz = self.net(x).permute(0, 2, 3, 1).reshape(*lead, -1)
        return z + dz


def make_predictor(cfg: WorldModelConfig, encoder: nn.Module) -> nn.Module:
    """The predictor ``cfg.predictor`` names, sized for ``encoder``'s latent (``dim``, ``tokens``, ``grid``)."""
    d, tokens = encoder.dim, encoder.tokens
    if cfg.predictor == "mlp":
        return MLPPredictor(d, cfg.action_dim, cfg.hidden, cfg.predictor_depth)
    if cfg.predictor == "bilinear":
        return BilinearPredictor(d, cfg.action_dim, cfg.hidden, cfg.predictor_depth)
    if cfg.predictor == "conv":
        return ConvPredictor(encoder.grid, d // tokens, cfg.action_dim, cfg.hidden, cfg.predictor_depth)
    from .ac_predictor import ACPredictor, ACPredictorConfig

    side = int(round(tokens ** 0.5))
    grid = (side, side) if side * side == tokens else (1, tokens)
    ac = ACPredictorConfig(embed_dim=cfg.hidden, depth=cfg.predictor_depth, num_heads=cfg.predictor_heads,
                           action_dim=cfg.action_dim, state_dim=max(cfg.state_dim, 1))
    return ACPredictor(ac, d // tokens, grid)


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, o))


def head_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The temporal-distance head's distance between its outputs ``a`` and ``b`` (Euclidean over the last dim, kept
    off 0 so that its gradient stays finite): the planner's ``metric`` energy and the term that trains it."""
    return (a - b).pow(2).sum(-1).clamp_min(1e-12).sqrt()


class WorldModel(nn.Module):
    """See the module docstring. Shapes: frames uint8 ``[..., H, W, 3]``; latents ``[..., D]``; actions ``[..., A]``."""

    def __init__(self, cfg: WorldModelConfig, vit: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.encoder == "conv":
            self.encoder: nn.Module = ConvEncoder(cfg)
        elif cfg.encoder == "conv_map":
            self.encoder = ConvMapEncoder(cfg)
        elif cfg.encoder == "pixels":
            self.encoder = PixelEncoder(cfg)
        else:
            if vit is None:
                raise ValueError("model.encoder=vit needs the ViT (built from model.vit_init by the trainer)")
            self.encoder = FrozenViTEncoder(vit, cfg.vit_pool, cfg)
        d = self.encoder.dim
        self.dim = d
        self.tokens = self.encoder.tokens
        self.predictor: nn.Module = make_predictor(cfg, self.encoder)
        self.idm = _mlp(2 * d, cfg.idm_hidden, cfg.action_dim)
        if not self.encoder_trains:  # inverse dynamics is an anti-collapse term: nothing to hold up when frozen
            self.idm.requires_grad_(False)
        self.probe = _mlp(d, cfg.probe_hidden, max(cfg.state_dim, 1))
        self.metric = _mlp(d, cfg.metric_hidden, cfg.metric_dim) if cfg.metric_dim else None
        self.scene = _mlp(d, cfg.metric_hidden, cfg.scene_dim) if cfg.scene_dim else None
        for part in cfg.freeze:
            getattr(self, part).requires_grad_(False)
        self.register_buffer("action_scale", torch.tensor(float(cfg.action_scale)), persistent=False)
        self.register_buffer("state_scale", torch.tensor(float(cfg.img_size)), persistent=False)

    @property
    def uses_states(self) -> bool:
        """The 2-AC predictor reads proprioceptive states (the mlp and conv ones do not)."""
        return self.cfg.predictor == "ac"

    @property
    def parts(self) -> tuple[str, ...]:
        """The sub-modules a checkpoint holds, one state dict each."""
        return ("encoder", "predictor", "idm", "probe") + (("metric",) if self.metric is not None else ()) \
            + (("scene",) if self.scene is not None else ())

    @property
    def encoder_trains(self) -> bool:
        return bool(self.encoder.trainable) and "encoder" not in self.cfg.freeze

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Per-token layer norm without affine parameters."""
        shape = z.shape
        z = z.reshape(*shape[:-1], self.tokens, shape[-1] // self.tokens)
        return F.layer_norm(z, z.shape[-1:]).reshape(shape)

    def encode(self, frames: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """uint8 frames ``[..., H, W, 3]`` -> normalised latents ``[..., D]``, in chunks (converted to float one chunk
        at a time) unless a gradient must reach a training encoder."""
        lead = frames.shape[:-3]
        flat = frames.reshape(-1, *frames.shape[-3:])
        if (self.encoder_trains and torch.is_grad_enabled()) or flat.shape[0] <= chunk:
            z = self.encoder(_frames_to_float(flat))
        else:
            z = torch.cat([self.encoder(_frames_to_float(flat[i:i + chunk])) for i in range(0, flat.shape[0], chunk)])
        return self.normalize(z).reshape(*lead, -1)

    def _tokens(self, z: torch.Tensor) -> torch.Tensor:
        return z.unflatten(-1, (self.tokens, z.shape[-1] // self.tokens))

    def step(self, z: torch.Tensor, a: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: ``z`` ``[..., T, D]`` (or ``[..., D]`` for the mlp / conv predictors) and the actions taken
        there -> the next latents. The mlp and conv predictors step each frame alone; the 2-AC predictor attends
        block-causally over the ``T`` frames and reads ``states``."""
        if self.cfg.predictor != "ac":
            out = self.predictor(z, a / self.action_scale)
            return self.normalize(out) if self.cfg.renormalize else out
        if states is None:
            raise ValueError("the 2-AC predictor needs the proprioceptive states")
        out = self.predictor(self._tokens(z), a / self.action_scale, states / self.state_scale)
        return self.normalize(out.flatten(-2))

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor, state0: torch.Tensor | None = None) -> torch.Tensor:
        """Auto-regressive: ``z0`` ``[B, D]``, actions ``[B, H, A]`` -> predicted ``[B, H, D]`` (frames 1..H).

        The 2-AC predictor reruns on every frame so far (block-causal, as V-JEPA 2-AC plans) with states
        integrated from the actions (``s_{t+1} = s_t + a_t`` from ``state0``: its planner integrates the pose the
        same way; walls make this an approximation here)."""
        if self.cfg.predictor != "ac":
            return torch.stack(list(self.rollout_steps(z0, actions)), dim=1)
        if state0 is None:
            raise ValueError("the 2-AC predictor needs the start state (state0) to roll out")
        states = state0[:, None] + torch.cat([torch.zeros_like(actions[:, :1]), actions.cumsum(1)[:, :-1]], 1)
        hist = z0[:, None]
        for t in range(actions.shape[1]):
            nxt = self.step(hist, actions[:, :t + 1], states[:, :t + 1])[:, -1:]
            hist = torch.cat([hist, nxt], 1)
        return hist[:, 1:]

    def rollout_steps(self, z0: torch.Tensor, actions: torch.Tensor):
        """The mlp / conv predictors' rollout one imagined latent ``[B, D]`` at a time (frames 1..H), for callers
        that reduce as they go (the planner's energy) instead of holding ``[B, H, D]``."""
        if self.cfg.predictor == "ac":
            raise ValueError("the 2-AC predictor attends over the whole history: use rollout()")
        z = z0
        for t in range(actions.shape[1]):
            z = self.step(z, actions[:, t])
            yield z

    def inverse(self, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        return self.idm(torch.cat([z0, z1], dim=-1)) * self.action_scale

    def read_state(self, z: torch.Tensor) -> torch.Tensor:
        return self.probe(z)

    def distance(self, z: torch.Tensor, goal: torch.Tensor, kind: str = "l2") -> torch.Tensor:
        """The planning energy between latents ``z`` ``[..., D]`` and ``goal`` (broadcast): ``l2`` (mean squared
        difference), ``l1`` (mean absolute difference), or ``metric`` (Euclidean distance of the temporal-distance
        head's outputs: in steps of the data's policy)."""
        if kind == "metric":
            if self.metric is None:
                raise ValueError(NO_METRIC_HEAD)
            return head_distance(self.metric(z), self.metric(goal))
        d = z - goal
        if kind == "l2":
            return d.pow(2).mean(-1)
        if kind == "l1":
            return d.abs().mean(-1)
        raise ValueError(f"energy must be 'l2', 'l1' or 'metric', got {kind!r}")
