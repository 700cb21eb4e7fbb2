"""The registry of published weights (data in ``configs/weights/published.yaml``) and the download cache.

>>> from videojepa.interop.published import list_entries, get_entry, cached_path
>>> [e.name for e in list_entries(kind="pretrained")][:2]
['vjepa1-vitl16', 'vjepa1-vith16']
>>> cached_path(get_entry("vjepa2-vitl"))          # ~/.cache/videojepa/vjepa2-vitl/vitl.pt

Cache: ``$VIDEOJEPA_CACHE`` or ``~/.cache/videojepa``, one folder per name holding the file under its original
name. :func:`fetch` returns a cached file, downloads a missing one (``urllib``, to a ``.part`` file, then
renamed; size and SHA-256 are checked where the registry knows them), or, offline, raises an error that gives
the URL and the exact path to put the file at. Downloads are off when ``VIDEOJEPA_OFFLINE`` or
``HF_HUB_OFFLINE`` is set to a non-empty value other than ``0``.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .weights import WeightsError

__all__ = ["PublishedModel", "list_entries", "get_entry", "cache_dir", "cached_path", "fetch", "downloads_allowed",
           "WeightsNotFoundError", "sha256_of", "match_file"]

KINDS = ("pretrained", "probe")


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """A published file that is not in the cache and could not (or may not) be downloaded."""


@dataclass(frozen=True)
class PublishedModel:
    """One published file: where it comes from, what it holds, and how its inputs must be prepared."""

    name: str
    kind: str
    family: str
    url: str
    arch: str | None = None  # encoder preset (videojepa models)
    base: str | None = None  # for probes: the pretrained model they sit on
    hf_id: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    evaluated_with: str | None = None
    encoder: dict = field(default_factory=dict)
    predictor: dict = field(default_factory=dict)
    probe: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    loadable: bool = True
    description: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def hints(self) -> dict:
        """Architecture facts the weights do not store (heads, construction size), for the readers."""
        from ..models.registry import get_preset

        h: dict = {"family": self.family}
        if self.arch:
            h["encoder"] = {"num_heads": get_preset(self.arch).num_heads, **self.encoder}
        if self.predictor:
            h["predictor"] = dict(self.predictor)
        if self.probe:
            h["probe"] = {k: v for k, v in self.probe.items() if k != "num_classes"}
        return h

    def meta(self) -> dict:
        """What a loaded model carries in ``pretrained_cfg`` besides its configs."""
        m = {"name": self.name, "url": self.url, "preprocessing": dict(self.preprocessing, source="registry")}
        for k in ("evaluated_with", "hf_id", "base"):
            if getattr(self, k):
                m[k] = getattr(self, k)
        if self.eval:
            m["eval"] = dict(self.eval)
        return m

    @property
    def input_size(self) -> str:
        p = self.preprocessing
        return f"{p.get('num_frames', '?')}x{p.get('crop_size', '?')}px"


@functools.lru_cache(maxsize=None)
def _registry() -> tuple[PublishedModel, ...]:
    text = resources.files("videojepa").joinpath("configs/weights/published.yaml").read_text()
    data = yaml.safe_load(text)
    defaults = data.get("defaults", {})
    out = []
    for d in data["models"]:
        d = dict(d)
        pre = dict(d.pop("preprocessing", {}))
        crop = pre.get("crop_size")
        pre = {"crop_size": crop, "resize_short_side": int(crop * 256 / 224) if crop else None,
               "num_frames": pre.get("num_frames"), "frame_step": pre.get("frame_step"), **defaults, **pre}
        e = PublishedModel(preprocessing=pre, **d)
        if e.kind not in KINDS:
            raise ValueError(f"published.yaml: {e.name}: kind must be one of {KINDS}")
        out.append(e)
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError("published.yaml: duplicate names")
    return tuple(out)


def list_entries(kind: str | None = None, family: str | None = None) -> list[PublishedModel]:
    """Registry entries in file order, optionally filtered by ``kind`` and family prefix."""
    return [e for e in _registry() if (kind is None or e.kind == kind) and (family is None or e.family.startswith(family))]


def get_entry(name: str, missing_ok: bool = False) -> PublishedModel | None:
    for e in _registry():
        if e.name == name:
            return e
    if missing_ok:
        return None
    import difflib

    close = difflib.get_close_matches(name, [e.name for e in _registry()], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise WeightsError(f"unknown published model {name!r}{hint}; see `videojepa weights list`")


def match_file(path: Path) -> PublishedModel | None:
    """The entry a local file is a copy of, judged by name only: ``<cache>/<name>/<file>``, or a file name that
    exactly one entry has (``vitl.pt`` yes, ``k400-probe.pth.tar`` no). Used for metadata, never for the format."""
    path = Path(path)
    by_file = [e for e in _registry() if e.filename == path.name and e.loadable]
    for e in by_file:
        if path.parent.name == e.name:
            return e
    return by_file[0] if len(by_file) == 1 else None


def cache_dir() -> Path:
    return Path(os.environ.get("VIDEOJEPA_CACHE") or Path.home() / ".cache" / "videojepa").expanduser()


def cached_path(entry: PublishedModel) -> Path:
    """Where ``entry``'s file lives in the cache (whether or not it is there)."""
    return cache_dir() / entry.name / entry.filename


def downloads_allowed() -> bool:
    return not any(os.environ.get(v, "") not in ("", "0") for v in ("VIDEOJEPA_OFFLINE", "HF_HUB_OFFLINE"))


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(entry: PublishedModel | str, download: bool | None = None, progress: bool = True) -> Path:
    """The local path of a published file: from the cache, or downloaded there (see the module docstring)."""
    if isinstance(entry, str):
        entry = get_entry(entry)
    path = cached_path(entry)
    if path.is_file():
        if entry.size_bytes is not None and path.stat().st_size != entry.size_bytes:
            raise WeightsError(f"{path}: {path.stat().st_size} bytes, expected {entry.size_bytes}: an incomplete or "
                               f"different file; delete it and download {entry.url} again")
        return path
    allowed = downloads_allowed() if download is None else download
    where = (f"download {entry.url} and save it as {path} (the cache folder is $VIDEOJEPA_CACHE or "
             "~/.cache/videojepa)")
    if not allowed:
        why = "downloads are off (VIDEOJEPA_OFFLINE / HF_HUB_OFFLINE)" if download is None else "download=False"
        raise WeightsNotFoundError(f"{entry.name} is not in the cache and {why}: {where}")
    try:
        _download(entry, path, progress)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsNotFoundError(f"{entry.name}: could not download {entry.url} ({e}); {where}") from e
    return path


def _download(entry: PublishedModel, path: Path, progress: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    h, n = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or entry.size_bytes
            bar = None
            if progress and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=entry.name)
            while block := r.read(1 << 22):
                f.write(block)
                h.update(block)
                n += len(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        if entry.size_bytes is not None and n != entry.size_bytes:
            raise WeightsError(f"{entry.url}: got {n} bytes, expected {entry.size_bytes}; nothing was saved")
        if entry.sha256 is not None and h.hexdigest() != entry.sha256.lower():
            raise WeightsError(f"{entry.url}: SHA-256 {h.hexdigest()} does not match the registry's {entry.sha256}; "
                               "nothing was saved")
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
