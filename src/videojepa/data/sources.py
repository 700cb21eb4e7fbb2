"""Where the videos are: CSV indexes, folders of videos, of frame folders, of images, and tar shards.

A *source spec* is a path, optionally prefixed with its layout: ``csv:``, ``videos:``, ``frames:``,
``images:`` or ``webdataset:``. Without a prefix the layout is inferred, and a folder whose layout is
ambiguous (only images: are they frames of videos or single images?) is an error that says which
prefix to add, never a guess.

- **CSV index** (``.csv``, ``.txt``, ``.tsv``; the official format): one line per video,
  ``path label`` separated by spaces (the path may itself contain spaces: the label is the last
  field), or by a comma, or by ``::``; an optional header line (``path,label``); the label may be
  left out (then items have ``label=None``). Relative paths resolve against the index's folder.
  A row may name a video, an image (a one-frame clip, as V-JEPA 2 mixes images in) or a folder of
  frame images. ``.npy`` files holding an array of paths are read too (labels ``None``).
- **folder of videos**: every video file under it; the label is the name of the first-level
  sub-folder (classes numbered in sorted order), none for files directly in it.
- **folder of frame folders** (``frames:``): each folder that holds images is one video whose frames
  are its images in natural order (``img_2`` before ``img_10``); ``<root>/<class>/<video>/`` gives labels.
- **image folder** (``images:``): every image is a one-frame clip; ``<root>/<class>/*.jpg`` gives labels.
- **tar shards** (``webdataset:``; a ``.tar`` file, a folder of them, or a brace pattern such as
  ``shards-{0000..0099}.tar``): WebDataset layout, samples are consecutive members that share a
  key (``abc.mp4`` + ``abc.cls``); streamed, never listed (see :mod:`videojepa.data.webdataset`).
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .decode import IMAGE_EXTS, VIDEO_EXTS, natural_key
from .errors import DataError

__all__ = ["LAYOUTS", "Entry", "ListSource", "ShardSource", "parse_spec", "load_source", "read_index",
           "scan_videos", "scan_frame_folders", "scan_images", "expand_shards"]

LAYOUTS = ("csv", "videos", "frames", "images", "webdataset")
INDEX_EXTS = frozenset({".csv", ".txt", ".tsv", ".lst"})


@dataclass(frozen=True)
class Entry:
    """One sample: ``kind`` is ``"video"``, ``"image"``, ``"frames"`` or ``"auto"`` (decided when read:
    a folder is a frame folder, anything else a video)."""

    path: str
    label: int | None = None
    kind: str = "auto"


def kind_of(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    return "auto"


@dataclass
class ListSource:
    """A source whose samples are listed up front."""

    name: str
    layout: str
    entries: list[Entry]
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class ShardSource:
    """Tar shards, streamed in order (see :class:`videojepa.data.webdataset.WebDatasetStream`)."""

    name: str
    shards: list[str] = field(default_factory=list)
    layout: str = "webdataset"


def parse_spec(spec: str | os.PathLike) -> tuple[str | None, str]:
    """``"frames:/data/x"`` -> ``("frames", "/data/x")``; a spec with no known prefix -> ``(None, spec)``."""
    s = os.fspath(spec)
    m = re.match(r"^([a-z]+):(.*)$", s)
    if m and m.group(1) in LAYOUTS:
        return m.group(1), m.group(2)
    return None, s


# ----------------------------------------------------------------------------- CSV index
def _int_or_none(s: str):
    s = s.strip()
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    return None


def _split_row(line: str) -> tuple[str, str | None]:
    """(path, label text or None) of one index line: the first of ``::``, tab, comma and blank
    separators whose last field is an integer wins (so paths may hold spaces or commas)."""
    line = line.strip()
    candidates = []
    if "::" in line:
        candidates.append(line.rsplit("::", 1))
    if "\t" in line:
        candidates.append(line.rsplit("\t", 1))
    if "," in line:
        row = next(csv.reader(io.StringIO(line)))
        if len(row) >= 2:
            candidates.append([",".join(row[:-1]), row[-1]])
    parts = line.rsplit(None, 1)
    if len(parts) == 2:
        candidates.append(parts)
    for p, lab in candidates:
        if _int_or_none(lab) is not None:
            return p.strip(), lab.strip()
    for p, lab in candidates:  # "video.mp4 dog": a label that is not an integer (reported by the caller)
        if os.path.splitext(p.strip())[1] and not os.path.splitext(lab.strip())[1]:
            return p.strip(), lab.strip()
    return line, None


_HEADER_WORDS = {"path", "paths", "file", "filename", "filepath", "video", "videos", "video_path", "label", "labels",
                 "class", "target", "name"}


def read_index(path: str | os.PathLike) -> list[Entry]:
    """Entries of a CSV / text index (see the module docstring) or a ``.npy`` array of paths."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: index file not found")
    base = p.resolve().parent
    if p.suffix.lower() == ".npy":
        import numpy as np

        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{p}: cannot read the .npy index (an array of path strings is expected): {e}") from None
        rows = [(str(x), None) for x in arr.reshape(-1).tolist()]
    else:
        try:
            text = p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{p}: the index is not UTF-8 text") from None
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            path_s, lab = _split_row(line)
            if not rows and lineno == _first_line(text) and _is_header(path_s, lab):
                continue
            rows.append((path_s, lab, lineno))
        rows = [_parse_label(p, r) for r in rows]
    entries = []
    has = [lab is not None for _, lab in rows]
    if any(has) and not all(has):
        missing = next(i for i, h in enumerate(has) if not h)
        raise DataError(f"{p}: some rows have a label and some do not (e.g. row {missing + 1}: {rows[missing][0]!r})")
    for path_s, lab in rows:
        q = Path(path_s)
        full = str(q if q.is_absolute() else base / q)
        entries.append(Entry(full, lab, kind_of(full)))
    if not entries:
        raise DataError(f"{p}: the index lists no files")
    return entries


def _first_line(text: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            return i
    return 0


def _is_header(path_s: str, lab: str | None) -> bool:
    words = {w.strip().lower() for w in re.split(r"[\s,;:]+", f"{path_s} {lab or ''}") if w.strip()}
    return bool(words) and words <= _HEADER_WORDS | {""}


def _parse_label(index: Path, row) -> tuple[str, int | None]:
    path_s, lab, lineno = row
    if lab is None or lab == "":
        return path_s, None
    v = _int_or_none(lab)
    if v is None:
        raise DataError(f"{index}:{lineno}: label {lab!r} is not an integer (rows are 'path label')")
    return path_s, v


# ----------------------------------------------------------------------------- folders
def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort(key=natural_key)
        yield Path(dirpath), sorted(filenames, key=natural_key)


def _classes_from(rel_paths: list[Path], min_depth: int) -> tuple[list[int | None], list[str] | None]:
    names = sorted({r.parts[0] for r in rel_paths if len(r.parts) >= min_depth}, key=natural_key)
    if not names:
        return [None] * len(rel_paths), None
    if any(len(r.parts) < min_depth for r in rel_paths):
        bad = next(r for r in rel_paths if len(r.parts) < min_depth)
        raise DataError(f"some files sit in class sub-folders and some do not (e.g. {bad}); labels would be ambiguous")
    lookup = {n: i for i, n in enumerate(names)}
    return [lookup[r.parts[0]] for r in rel_paths], names


def _scan_files(root: str | os.PathLike, exts, kind: str, what: str) -> ListSource:
    """Every file with one of ``exts`` under ``root``, labelled by its first-level sub-folder."""
    root = Path(root)
    files = [d / f for d, fs in _walk(root) for f in fs if os.path.splitext(f)[1].lower() in exts]
    if not files:
        raise DataError(f"{root}: no {what} found")
    labels, names = _classes_from([f.relative_to(root) for f in files], 2)
    return ListSource(str(root), kind + "s", [Entry(str(f), lab, kind) for f, lab in zip(files, labels)], names)


def scan_videos(root: str | os.PathLike) -> ListSource:
    return _scan_files(root, VIDEO_EXTS, "video", f"video files ({', '.join(sorted(VIDEO_EXTS))})")


def scan_images(root: str | os.PathLike) -> ListSource:
    return _scan_files(root, IMAGE_EXTS, "image", "image files")


def scan_frame_folders(root: str | os.PathLike) -> ListSource:
    root = Path(root)
    folders = [d for d, fs in _walk(root) if d != root and any(os.path.splitext(f)[1].lower() in IMAGE_EXTS for f in fs)]
    if not folders:
        raise DataError(f"{root}: no folders of frame images found (expected <root>/<video>/*.jpg "
                        "or <root>/<class>/<video>/*.jpg)")
    rel = [f.relative_to(root) for f in folders]
    labels, names = _classes_from(rel, 2)
    return ListSource(str(root), "frames", [Entry(str(f), lab, "frames") for f, lab in zip(folders, labels)], names)


# ----------------------------------------------------------------------------- shards
def expand_shards(spec: str) -> list[str]:
    """``a-{000..002}.tar`` -> ``[a-000.tar, a-001.tar, a-002.tar]``; a folder -> its ``.tar`` files; a file -> itself."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", spec)
    if m:
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        out = []
        for i in range(int(lo), int(hi) + 1):
            out.extend(expand_shards(spec[:m.start()] + (str(i).zfill(width)) + spec[m.end():]))
        return out
    p = Path(spec)
    if p.is_dir():
        shards = sorted((str(f) for f in p.iterdir() if f.name.endswith(".tar")), key=natural_key)
        if not shards:
            raise DataError(f"{p}: no .tar shards in this folder")
        return shards
    return [spec]


# ----------------------------------------------------------------------------- dispatch
def load_source(spec: str | os.PathLike) -> ListSource | ShardSource:
    """Read or scan one source spec (see the module docstring)."""
    layout, path = parse_spec(spec)
    p = Path(path)
    if layout is None:
        layout = _infer_layout(p, path)
    if layout == "webdataset":
        shards = expand_shards(path)
        missing = [s for s in shards if not Path(s).is_file()]
        if missing:
            raise DataError(f"{spec}: shard(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        return ShardSource(str(spec), shards)
    if layout == "csv":
        ents = read_index(p)
        return ListSource(str(spec), "csv", ents, None)
    if not p.is_dir():
        raise DataError(f"{spec}: folder not found" if not p.exists() else f"{spec}: a {layout}: source must be a folder")
    return {"videos": scan_videos, "frames": scan_frame_folders, "images": scan_images}[layout](p)


def _infer_layout(p: Path, raw: str) -> str:
    if re.search(r"\{\d+\.\.\d+\}", raw) or raw.endswith(".tar"):
        return "webdataset"
    if p.is_file():
        if p.suffix.lower() in INDEX_EXTS | {".npy"}:
            return "csv"
        raise DataError(f"{p}: not an index (expected .csv/.txt/.tsv/.npy, a folder, or .tar shards); "
                        "prefix the path with its layout (csv:, videos:, frames:, images:, webdataset:)")
    if not p.exists():
        raise DataError(f"{p}: not found")
    if any(f.name.endswith(".tar") for f in p.iterdir()):
        return "webdataset"
    n_vid = n_img = 0
    for _, fs in _walk(p):
        for f in fs:
            ext = os.path.splitext(f)[1].lower()
            n_vid += ext in VIDEO_EXTS
            n_img += ext in IMAGE_EXTS
        if n_vid and n_img:
            break
    if n_vid and not n_img:
        return "videos"
    if n_img and not n_vid:
        raise DataError(f"{p}: this folder holds images only; say how to read it: 'frames:{p}' (each folder of "
                        f"images is one video) or 'images:{p}' (each image is a one-frame clip)")
    if n_vid and n_img:
        raise DataError(f"{p}: this folder holds both videos and images; say which to use: 'videos:{p}', "
                        f"'images:{p}' or 'frames:{p}'")
    raise DataError(f"{p}: no videos, images or .tar shards found in this folder")
