"""Embedded procedural video dataset: the package's default data source.

Every clip shows one *class event* (an object that moves, rotates, grows, fades, orbits, or two
objects that approach each other) over a drifting textured background, with small distractor
objects moving at random and per-pixel noise. The classes come in **time-reversed pairs**
(``move_right``/``move_left``, ``grow``/``shrink``, ...): the second member of a pair is the first
one played backwards, and every nuisance factor (background drift, distractors, noise) has a
distribution that is symmetric under time reversal. So the *set* of frames has the same
distribution for both members of a pair and only their order tells them apart: a single frame or
a time-averaged clip can at best name the pair (50 % within it); naming the class needs time.

Item ``i`` is a pure function of ``(cfg, i)``: its label comes from a stratified label stream
(:meth:`SyntheticVideoDataset.labels`) and everything else from
``numpy_generator(seed, i, "synthetic")`` (scene) and ``(seed, i, "synthetic-noise")`` (noise),
so it is identical across processes, DataLoader workers and runs. Clips are float32 in [0, 1],
laid out ``C x T x H x W``; one 16x64x64 clip renders in a few milliseconds on one CPU core.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from videojepa.rng import numpy_generator

__all__ = [
    "DEFAULT_CLASSES", "SHAPES", "SyntheticVideoConfig", "SyntheticVideoDataset", "Scene",
    "SceneObject", "render_scene", "reversed_partner", "sample_scene", "save_preview",
]

# class name -> (motion kind, played backwards?). The forward member is listed first.
_CLASS_TABLE: dict[str, tuple[str, bool]] = {
    "move_right": ("translate_x", False), "move_left": ("translate_x", True),
    "move_down": ("translate_y", False), "move_up": ("translate_y", True),
    "rotate_cw": ("rotate", False), "rotate_ccw": ("rotate", True),
    "grow": ("scale", False), "shrink": ("scale", True),
    "fade_in": ("fade", False), "fade_out": ("fade", True),
    "approach": ("approach", False), "separate": ("approach", True),
    "orbit_cw": ("orbit", False), "orbit_ccw": ("orbit", True),
}
DEFAULT_CLASSES: tuple[str, ...] = tuple(_CLASS_TABLE)
SHAPES: tuple[str, ...] = ("disc", "ring", "square", "triangle", "cross", "bar")
_ORIENTED_SHAPES = ("square", "triangle", "cross", "bar")  # rotation is visible on these
_LABEL_BLOCK_PER_CLASS = 64  # labels are exactly balanced within blocks of 64 * num_classes


def reversed_partner(name: str) -> str:
    """The class that is ``name`` played backwards (``"grow"`` -> ``"shrink"``)."""
    kind, rev = _CLASS_TABLE[name]
    return next(n for n, (k, r) in _CLASS_TABLE.items() if k == kind and r != rev)


@dataclass(frozen=True)
class SyntheticVideoConfig:
    num_frames: int = 16
    height: int = 64
    width: int = 64
    num_samples: int = 100_000
    seed: int = 0
    classes: tuple[str, ...] = DEFAULT_CLASSES
    num_distractors: int = 2
    noise: float = 0.03  # std of the zero-mean per-pixel noise (triangular distribution)

    def __post_init__(self) -> None:
        for name, lo in (("num_frames", 2), ("height", 8), ("width", 8), ("num_samples", 1),
                         ("num_distractors", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"SyntheticVideoConfig.{name} must be an integer >= {lo}, got {v!r}")
            object.__setattr__(self, name, int(v))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"SyntheticVideoConfig.seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        classes = self.classes
        if isinstance(classes, str) or not isinstance(classes, (tuple, list)):
            raise ValueError(f"SyntheticVideoConfig.classes must be a sequence of names, got {classes!r}")
        classes = tuple(classes)
        unknown = [c for c in classes if c not in _CLASS_TABLE]
        if unknown:
            raise ValueError(f"SyntheticVideoConfig.classes: unknown {unknown}; known: {list(_CLASS_TABLE)}")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"SyntheticVideoConfig.classes must hold >= 2 distinct names, got {classes}")
        object.__setattr__(self, "classes", classes)
        noise = self.noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating)) or not 0.0 <= noise <= 1.0:
            raise ValueError(f"SyntheticVideoConfig.noise must be a float in [0, 1], got {noise!r}")
        object.__setattr__(self, "noise", float(noise))


@dataclass
class SceneObject:
    """One object; per-frame arrays have length T. Units: fractions of min(height, width)."""
    shape: str
    colour: np.ndarray  # (3,) RGB in [0, 1]
    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray  # radians; increasing = clockwise on screen (y points down)
    radius: np.ndarray
    opacity: np.ndarray
    stripes: tuple[float, float, float] | None = None  # (cycles per radius, phase, amplitude)

    def reversed(self) -> SceneObject:
        return replace(self, **{k: getattr(self, k)[::-1].copy()
                                for k in ("cx", "cy", "angle", "radius", "opacity")})


@dataclass
class Scene:
    """Full description of one clip (before noise). ``objects`` are drawn in order."""
    label: int
    class_name: str
    bg_colours: np.ndarray  # (2, 3): the background pattern blends between these
    bg_freqs: np.ndarray  # (K, 2) cycles per unit along x, y
    bg_phases: np.ndarray  # (K,)
    bg_weights: np.ndarray  # (K,)
    bg_offset: np.ndarray  # (T, 2) camera drift
    objects: list[SceneObject]
    num_main: int  # the last num_main objects carry the class event; the others are distractors

    def reversed(self) -> Scene:
        return replace(self, bg_offset=self.bg_offset[::-1].copy(),
                       objects=[o.reversed() for o in self.objects])


# ----------------------------------------------------------------------------- sampling
def _uniform_in(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else 0.5 * (lo + hi)


def _colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A saturated bright (or, 1 time in 4, dark) colour that stands out from ``background``."""
    for _ in range(8):
        h, s = rng.uniform(0.0, 1.0), rng.uniform(0.55, 1.0)
        v = rng.uniform(0.02, 0.2) if rng.uniform() < 0.25 else rng.uniform(0.75, 1.0)
        colour = np.array(colorsys.hsv_to_rgb(h, s, v))
        if np.abs(colour - background).max() >= 0.4:
            break
    return colour


def _object(rng, bg, shapes, radius, T, cx, cy) -> SceneObject:
    stripes = None
    shape = str(shapes[rng.integers(len(shapes))])
    colour, angle = _colour(rng, bg), np.full(T, rng.uniform(0.0, 2 * math.pi))
    if rng.uniform() < 0.5:  # textured: stripes in the object's own frame (they turn with it)
        stripes = (rng.uniform(0.8, 2.0), rng.uniform(0.0, 2 * math.pi), rng.uniform(0.3, 0.6))
    full = lambda a: np.broadcast_to(np.asarray(a, dtype=np.float64), (T,)).copy()  # noqa: E731
    return SceneObject(shape, colour, full(cx), full(cy), angle, full(radius), np.ones(T), stripes)


def sample_scene(rng: np.random.Generator, label: int, cfg: SyntheticVideoConfig) -> Scene:
    """Draw the scene of one clip of class ``cfg.classes[label]`` from ``rng``."""
    T, m = cfg.num_frames, min(cfg.height, cfg.width)
    ex, ey = cfg.width / m, cfg.height / m  # frame extent in units
    s = np.linspace(0.0, 1.0, T)  # normalised time; tau is centred so reversal is symmetric
    tau = s - 0.5
    # background: K smooth oriented gratings blended between two dull colours, drifting.
    K = 3
    base = rng.uniform(0.15, 0.6, 3)
    bg_colours = np.stack([base, np.clip(base + rng.uniform(-0.25, 0.25, 3), 0.0, 1.0)])
    bg = bg_colours.mean(0)
    ori = rng.uniform(0.0, 2 * math.pi, K)
    bg_freqs = rng.uniform(0.7, 3.0, K)[:, None] * np.stack([np.cos(ori), np.sin(ori)], 1)
    bg_phases, bg_weights = rng.uniform(0.0, 2 * math.pi, K), rng.uniform(0.3, 1.0, K)
    d = rng.uniform(0.0, 2 * math.pi)
    bg_offset = rng.uniform(0.0, 0.3) * tau[:, None] * np.array([math.cos(d), math.sin(d)])
    # distractors: small objects in linear motion in any direction (either way along it).
    objects = []
    for _ in range(cfg.num_distractors):
        mx, my, d = rng.uniform(0.0, ex), rng.uniform(0.0, ey), rng.uniform(0.0, 2 * math.pi)
        amount = rng.uniform(0.0, 0.6) * tau
        objects.append(_object(rng, bg, SHAPES, rng.uniform(0.03, 0.055), T,
                               mx + amount * math.cos(d), my + amount * math.sin(d)))
    # the class event (forward direction; the backward member is the reversed scene).
    name = cfg.classes[label]
    kind, backwards = _CLASS_TABLE[name]
    main: list[SceneObject] = []
    if kind in ("translate_x", "translate_y"):
        r, dist, jitter = rng.uniform(0.08, 0.13), rng.uniform(0.3, 0.6), rng.uniform(-0.25, 0.25)
        ux, uy = (math.cos(jitter), math.sin(jitter)) if kind == "translate_x" else \
            (math.sin(jitter), math.cos(jitter))
        mx = _uniform_in(rng, r + dist / 2 * abs(ux), ex - r - dist / 2 * abs(ux))
        my = _uniform_in(rng, r + dist / 2 * abs(uy), ey - r - dist / 2 * abs(uy))
        main.append(_object(rng, bg, SHAPES, r, T, mx + dist * tau * ux, my + dist * tau * uy))
    elif kind in ("rotate", "scale", "fade"):
        r = rng.uniform(0.09, 0.14)
        r0, ratio = rng.uniform(0.05, 0.07), rng.uniform(2.0, 3.0)
        r_max = r0 * ratio if kind == "scale" else 1.1 * r
        mx, my = _uniform_in(rng, r_max, ex - r_max), _uniform_in(rng, r_max, ey - r_max)
        o = _object(rng, bg, _ORIENTED_SHAPES if kind == "rotate" else SHAPES, r, T, mx, my)
        if kind == "rotate":  # <= 30 deg/frame, well below half the shapes' symmetry (90-180 deg)
            o.angle = o.angle + min(rng.uniform(0.5, 1.25) * math.pi, (T - 1) * math.pi / 6) * s
        elif kind == "scale":
            o.radius = r0 * ratio ** s
        else:
            o.opacity = s.copy()
        main.append(o)
    elif kind == "approach":
        r, far = rng.uniform(0.065, 0.095), rng.uniform(0.5, 0.7)
        near = 2.2 * r + rng.uniform(0.0, 0.08)
        b = rng.uniform(0.0, 2 * math.pi)
        ux, uy = math.cos(b), math.sin(b)
        mx = _uniform_in(rng, r + far / 2 * abs(ux), ex - r - far / 2 * abs(ux))
        my = _uniform_in(rng, r + far / 2 * abs(uy), ey - r - far / 2 * abs(uy))
        half = (far + (near - far) * s) / 2
        first = _object(rng, bg, SHAPES, r, T, mx + half * ux, my + half * uy)
        second = replace(first, cx=mx - half * ux, cy=my - half * uy, angle=first.angle + math.pi)
        main += [first, second]
    elif kind == "orbit":
        r, R = rng.uniform(0.07, 0.11), rng.uniform(0.15, 0.26)
        mx, my = _uniform_in(rng, R + r, ex - R - r), _uniform_in(rng, R + r, ey - R - r)
        phi = rng.uniform(0.0, 2 * math.pi) + min(rng.uniform(0.6, 1.2) * math.pi, (T - 1) * math.pi / 3) * s
        main.append(_object(rng, bg, SHAPES, r, T, mx + R * np.cos(phi), my + R * np.sin(phi)))
    else:  # pragma: no cover - guarded by the config validation
        raise AssertionError(kind)
    scene = Scene(label, name, bg_colours, bg_freqs, bg_phases, bg_weights, bg_offset,
                  objects + main, len(main))
    return scene.reversed() if backwards else scene


# ----------------------------------------------------------------------------- rendering
def _t(a, shape=(-1, 1, 1)) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).view(shape)


def _separable_cos(a_x: torch.Tensor, b_y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_k w_k cos(a_x[t, k, x] + b_y[t, k, y]) as one batched matmul (cos(a+b) = ca cb - sa sb).

    a_x: (T, K, W), b_y: (T, K, H), weights: (K,) or None -> (T, H, W)."""
    left = torch.cat([torch.cos(b_y), -torch.sin(b_y)], 1)  # (T, 2K, H)
    if weights is not None:
        left = left * weights.repeat(2).view(1, -1, 1)
    return torch.bmm(left.transpose(1, 2), torch.cat([torch.cos(a_x), torch.sin(a_x)], 1))


def _sdf(o: SceneObject, dx: torch.Tensor, dy: torch.Tensor, c, s, r) -> torch.Tensor:
    """Signed distance (negative inside) of the object's shape; dx: (T,1,W), dy: (T,H,1)."""
    if o.shape in ("disc", "ring"):
        dist = torch.sqrt(dx * dx + dy * dy)
        return dist - r if o.shape == "disc" else (dist - 0.7 * r).abs_() - 0.3 * r
    u, v = c * dx + s * dy, c * dy - s * dx  # object-local coordinates
    if o.shape == "triangle":  # equilateral, inradius 0.55 r
        return torch.maximum(v, 0.866 * u.abs_() - 0.5 * v) - 0.55 * r
    a, b = u.abs_(), v.abs_()
    if o.shape == "square":
        return torch.maximum(a, b) - 0.85 * r
    if o.shape == "bar":
        return torch.maximum(a - r, b - 0.4 * r)
    if o.shape == "cross":
        return torch.minimum(torch.maximum(a - r, b - 0.3 * r), torch.maximum(a - 0.3 * r, b - r))
    raise ValueError(f"unknown shape {o.shape!r}")


def render_scene(scene: Scene, height: int, width: int, noise: float = 0.0,
                 noise_rng: np.random.Generator | None = None) -> torch.Tensor:
    """Render ``scene`` to a float32 clip of shape (3, T, height, width) in [0, 1].

    ``noise`` is the standard deviation of zero-mean per-pixel, per-channel noise drawn from
    ``noise_rng`` (a sum of two uniform bytes: triangular, 3x cheaper than Gaussian)."""
    m = min(height, width)
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / m
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / m
    T = len(scene.bg_offset)
    # background: sum of K gratings, shifted by the drift offset, mapped to [0, 1].
    f, w = scene.bg_freqs, scene.bg_weights / scene.bg_weights.sum()
    phase_t = scene.bg_phases[None, :] - 2 * math.pi * (scene.bg_offset @ f.T)  # (T, K)
    a_x = _t(2 * math.pi * f[:, 0], (1, -1, 1)) * xs + _t(phase_t, (T, -1, 1))  # (T, K, W)
    b_y = (_t(2 * math.pi * f[:, 1], (1, -1, 1)) * ys).expand(T, -1, -1)  # (T, K, H)
    pattern = _separable_cos(a_x, b_y, _t(w, (-1,)))
    c0, c1 = _t(scene.bg_colours[0], (3, 1, 1, 1)), _t(scene.bg_colours[1], (3, 1, 1, 1))
    clip = torch.addcmul(c0, c1 - c0, pattern.mul_(0.5).add_(0.5).unsqueeze(0))  # (3, T, H, W)
    for o in scene.objects:
        # only the box the object covers in some frame (shapes reach 1.25 r, edges 1 px more)
        reach = 1.25 * o.radius.max() + 1.5 / m
        x0 = max(0, math.floor((o.cx.min() - reach) * m))
        x1 = min(width, math.ceil((o.cx.max() + reach) * m))
        y0 = max(0, math.floor((o.cy.min() - reach) * m))
        y1 = min(height, math.ceil((o.cy.max() + reach) * m))
        if x0 >= x1 or y0 >= y1 or not np.any(o.opacity > 0):
            continue
        dx = xs[x0:x1].view(1, 1, -1) - _t(o.cx)  # (T, 1, w)
        dy = ys[y0:y1].view(1, -1, 1) - _t(o.cy)  # (T, h, 1)
        c, s, r = _t(np.cos(o.angle)), _t(np.sin(o.angle)), _t(o.radius)
        alpha = _sdf(o, dx, dy, c, s, r).mul_(-m).add_(0.5).clamp_(0.0, 1.0)  # ~1 px soft edge
        if np.any(o.opacity != 1.0):
            alpha.mul_(_t(o.opacity))
        colour = _t(o.colour, (3, 1, 1, 1))
        if o.stripes is not None:  # cos(2 pi f u / r + phase), u = c dx + s dy: separable
            cyc, ph, amp = o.stripes
            k = 2 * math.pi * cyc / r
            stripes = _separable_cos((k * c * dx + ph).view(T, 1, -1), (k * s * dy).view(T, 1, -1))
            colour = colour * stripes.mul_(0.5 * amp).add_(1.0 - 0.5 * amp).unsqueeze(0)
        box = clip[:, :, y0:y1, x0:x1]
        box.lerp_(colour.expand_as(box), alpha.unsqueeze(0))
    if noise > 0:
        if noise_rng is None:
            raise ValueError("render_scene: noise > 0 needs a noise_rng")
        n = clip.numel()
        b = torch.frombuffer(bytearray(noise_rng.bytes(2 * n)), dtype=torch.uint8).view(2, *clip.shape)
        tri = (b[0].to(torch.int16) + b[1]).float().sub_(255.0)  # mean 0, std 104.51
        clip.add_(tri, alpha=noise / 104.51)
    return clip.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------- dataset
class SyntheticVideoDataset(Dataset):
    """``dataset[i] -> {"clip": FloatTensor[3, T, H, W] in [0, 1], "label": int, "index": i}``.

    Rendering works on small tensors: it is fastest with one intra-op thread (as in DataLoader
    workers); several threads gain nothing and can stall on a CPU shared with other work."""

    def __init__(self, cfg: SyntheticVideoConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else SyntheticVideoConfig()
        self.class_names: tuple[str, ...] = self.cfg.classes
        self.num_classes = len(self.class_names)
        self._block = _LABEL_BLOCK_PER_CLASS * self.num_classes

    def __len__(self) -> int:
        return self.cfg.num_samples

    def _index(self, index) -> int:
        if isinstance(index, torch.Tensor) and index.numel() == 1 and not index.is_floating_point():
            index = index.item()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        i = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return i

    def _label_block(self, b: int) -> np.ndarray:
        # Each block of 64 * num_classes consecutive indices holds every label 64 times, in an
        # order drawn from the block's own stream: balanced, random, and cheap to recompute.
        base = np.repeat(np.arange(self.num_classes), _LABEL_BLOCK_PER_CLASS)
        return numpy_generator(self.cfg.seed, b, "synthetic-labels").permutation(base)

    def labels(self, n: int | None = None) -> torch.Tensor:
        """Labels of items ``0 .. n-1`` (default: all) without rendering any clip."""
        n = len(self) if n is None else int(n)
        if not 0 <= n <= len(self):
            raise ValueError(f"n must be in [0, {len(self)}], got {n}")
        blocks = [self._label_block(b) for b in range(-(-n // self._block))]
        out = np.concatenate(blocks)[:n] if blocks else np.zeros(0, dtype=np.int64)
        return torch.from_numpy(out.astype(np.int64))

    def label(self, index: int) -> int:
        i = self._index(index)
        return int(self._label_block(i // self._block)[i % self._block])

    def scene(self, index: int) -> Scene:
        """The full description (objects, tracks, background) of item ``index``."""
        i = self._index(index)
        return sample_scene(numpy_generator(self.cfg.seed, i, "synthetic"), self.label(i), self.cfg)

    def __getitem__(self, index) -> dict:
        i = self._index(index)
        scene = self.scene(i)
        clip = render_scene(scene, self.cfg.height, self.cfg.width, self.cfg.noise,
                            numpy_generator(self.cfg.seed, i, "synthetic-noise"))
        return {"clip": clip, "label": scene.label, "index": i}


def save_preview(dataset: SyntheticVideoDataset, path: str | Path, n: int | None = None,
                 num_frames: int = 8, indices: list[int] | None = None) -> Path:
    """Write a PNG grid: one row per sample (default: the first sample of each of the first ``n``
    classes), ``num_frames`` evenly spaced frames per row, the class name on the left."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if indices is None:
        n = dataset.num_classes if n is None else n
        labels = dataset.labels(min(len(dataset), _LABEL_BLOCK_PER_CLASS * dataset.num_classes)).tolist()
        firsts = {c: labels.index(c) for c in range(dataset.num_classes) if c in labels}
        indices = [firsts[c] for c in sorted(firsts)][:n]
    T = dataset.cfg.num_frames
    frames = np.unique(np.linspace(0, T - 1, min(num_frames, T)).round().astype(int))
    h, w = dataset.cfg.height, dataset.cfg.width
    fig = Figure(figsize=(1.0 + 1.1 * len(frames) * w / h, 1.15 * len(indices) + 0.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(indices), len(frames), squeeze=False)
    for row, i in enumerate(indices):
        item = dataset[i]
        for col, t in enumerate(frames):
            ax = axes[row, col]
            ax.imshow(item["clip"][:, t].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}", fontsize=8)
        axes[row, 0].set_ylabel(f"{dataset.class_names[item['label']]}\n#{i}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
