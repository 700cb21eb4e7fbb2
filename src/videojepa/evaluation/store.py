"""Feature shards on disk, written by ``videojepa embed`` and read back as a :class:`FeatureSet`.

A folder holds ``index.json`` and one file (safetensors) or one file per array (``.npy``) per shard of
``shard_size`` consecutive items. Arrays of a shard: ``features`` (``[n, ...]``), ``labels`` (``[n]``,
``-1`` when unknown) and ``indices`` (``[n]``, the dataset indices); with sliding windows also
``window_features`` (``[w, ...]``), ``window_item`` (``[w]``, the row of the shard each window belongs
to) and ``window_start`` (``[w]``, the window's first frame in the decoded video). Each shard is written
to a temporary name and renamed, then recorded in ``index.json`` (also replaced atomically), so an
interrupted run leaves only complete shards behind and the same command continues from the first
missing one. ``index.json`` keeps the settings; a rerun with different settings is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .features import FeatureSet

__all__ = ["FeatureStore", "load_features", "STORE_FORMAT", "FILE_FORMATS"]

STORE_FORMAT = "videojepa-features/1"
FILE_FORMATS = ("safetensors", "npy")


class StoreMismatchError(ValueError):
    pass


class FeatureStore:
    """Shards of one ``videojepa embed`` run in ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path, settings: dict, *, num_items: int, shard_size: int,
                 file_format: str = "safetensors", extra: dict | None = None) -> None:
        if file_format not in FILE_FORMATS:
            raise ValueError(f"format must be one of {FILE_FORMATS}, got {file_format!r}")
        if shard_size < 1:
            raise ValueError(f"shard size must be >= 1, got {shard_size}")
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        want = {"settings": settings, "num_items": int(num_items), "shard_size": int(shard_size),
                "file_format": file_format}
        if self.index_path.is_file():
            idx = json.loads(self.index_path.read_text())
            if idx.get("format") != STORE_FORMAT:
                raise StoreMismatchError(f"{self.index_path}: not a videojepa feature index (format "
                                         f"{idx.get('format')!r})")
            old = idx.get("settings") or {}
            diff = [k for k in want if k != "settings" and _jsonable(idx.get(k)) != _jsonable(want[k])]
            diff += [k for k in sorted(set(settings) | set(old)) if _jsonable(settings.get(k)) != _jsonable(old.get(k))]
            if diff:
                raise StoreMismatchError(
                    f"{self.root} holds features made with other settings (differing: {', '.join(diff)}); "
                    "use another --out folder, or --overwrite to start over")
            self.index = idx
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.index = {"format": STORE_FORMAT, **want, **(extra or {}), "shards": {}, "complete": False}
            self._save()

    @property
    def num_shards(self) -> int:
        return -(-self.index["num_items"] // self.index["shard_size"])

    def shard_range(self, s: int) -> range:
        n, size = self.index["num_items"], self.index["shard_size"]
        return range(s * size, min(n, (s + 1) * size))

    def done(self, s: int) -> bool:
        rec = self.index["shards"].get(str(s))
        return rec is not None and all((self.root / f).is_file() for f in rec["files"])

    def done_items(self) -> int:
        return sum(len(self.shard_range(s)) for s in range(self.num_shards) if self.done(s))

    def write(self, s: int, arrays: dict[str, torch.Tensor], skipped: list | None = None, record: bool = True) -> dict:
        """Write shard ``s`` atomically; with ``record`` (one process) also record it in ``index.json``.

        Returns the shard's record; under ``torchrun`` every rank writes its shards with ``record=False``
        and rank 0 records them all (:meth:`add_records`), so ``index.json`` has a single writer.
        """
        name = f"shard_{s:05d}"
        files = []
        arrays = {k: v.detach().cpu().contiguous() for k, v in arrays.items()}
        if self.index["file_format"] == "safetensors":
            from safetensors.torch import save_file

            f = f"{name}.safetensors"
            tmp = self.root / (f + ".tmp")
            save_file(arrays, str(tmp), metadata={"format": STORE_FORMAT})
            tmp.replace(self.root / f)
            files.append(f)
        else:
            for k, v in arrays.items():
                f = f"{name}.{k}.npy"
                tmp = self.root / (f + ".tmp")
                with open(tmp, "wb") as fh:
                    np.save(fh, v.numpy())
                tmp.replace(self.root / f)
                files.append(f)
        from ..training.checkpoint import file_digest

        rec = {"files": files, "sha256": {f: file_digest(self.root / f) for f in files},
               "rows": int(arrays["labels"].shape[0]),
               "skipped": [{"index": k.index, "path": k.path, "reason": k.reason} for k in (skipped or [])]}
        if record:
            self.add_records({s: rec})
        return rec

    def add_records(self, records: dict[int, dict]) -> None:
        """Record written shards in ``index.json`` (atomically replaced)."""
        for s, rec in records.items():
            self.index["shards"][str(s)] = rec
        self.index["complete"] = all(self.done(i) for i in range(self.num_shards))
        self._save()

    def _save(self) -> None:
        tmp = self.index_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.index, indent=1) + "\n")
        tmp.replace(self.index_path)


def _jsonable(x):
    return json.loads(json.dumps(x))


def _read_shard(root: Path, rec: dict, file_format: str) -> dict[str, torch.Tensor]:
    from ..training.checkpoint import CheckpointCorruptError, UnverifiedWarning, check_digest

    digests = rec.get("sha256")
    if digests is None:
        import warnings

        warnings.warn(f"{root}: shard {rec['files'][0]} has no checksum in index.json (an older version wrote it), "
                      "so it could not be verified", UnverifiedWarning, stacklevel=2)
    for f in rec["files"] if digests else []:
        try:
            check_digest(root / f, digests[f])
        except CheckpointCorruptError as e:
            raise CheckpointCorruptError(f"{e}; delete it and run `videojepa embed` again to rewrite it") from None
    if file_format == "safetensors":
        from safetensors.torch import load_file

        return load_file(str(root / rec["files"][0]))
    out = {}
    for f in rec["files"]:
        key = f.split(".")[-2]
        out[key] = torch.from_numpy(np.load(root / f))
    return out


def is_feature_dir(path: str | Path) -> bool:
    p = Path(path)
    if not (p / "index.json").is_file():
        return False
    try:
        return json.loads((p / "index.json").read_text()).get("format") == STORE_FORMAT
    except (OSError, ValueError):
        return False


def load_features(root: str | Path, *, windows: bool = False, allow_partial: bool = False) -> FeatureSet:
    """The features of a ``videojepa embed`` folder as a :class:`FeatureSet` (per video; ``windows=True``:
    one row per window, with ``meta["window_item"]`` / ``meta["window_start"]``)."""
    root = Path(root)
    ip = root / "index.json"
    if not ip.is_file():
        raise FileNotFoundError(f"{root}: no index.json (not a videojepa embed output folder)")
    idx = json.loads(ip.read_text())
    if idx.get("format") != STORE_FORMAT:
        raise ValueError(f"{ip}: not a videojepa feature index (format {idx.get('format')!r})")
    n_shards = -(-idx["num_items"] // idx["shard_size"])
    missing = [s for s in range(n_shards) if str(s) not in idx["shards"]]
    if missing and not allow_partial:
        raise ValueError(f"{root}: incomplete ({len(missing)} of {n_shards} shards missing, e.g. shard {missing[0]}); "
                         "run the same `videojepa embed` command again to finish it")
    feats, labels, indices, w_item, w_start, skipped = [], [], [], [], [], []
    row = 0
    for s in range(n_shards):
        rec = idx["shards"].get(str(s))
        if rec is None:
            continue
        a = _read_shard(root, rec, idx["file_format"])
        skipped += rec.get("skipped", [])
        if windows:
            if "window_features" not in a:
                raise ValueError(f"{root}: made without sliding windows (no window features)")
            feats.append(a["window_features"])
            w_item.append(a["indices"][a["window_item"]])
            w_start.append(a["window_start"])
            labels.append(a["labels"][a["window_item"]])
            indices.append(a["indices"][a["window_item"]])
        else:
            if "features" not in a:
                raise ValueError(f"{root}: no per-video features (token features of sliding windows are stored "
                                 "per window only: load with windows=True)")
            feats.append(a["features"]), labels.append(a["labels"]), indices.append(a["indices"])
        row += int(a["labels"].shape[0])
    if not feats:
        raise ValueError(f"{root}: no shard written yet")
    st = idx["settings"]
    S, V = idx.get("segments"), idx.get("views")
    meta = {"settings": st, "root": str(root)}
    if windows:
        meta.update(window_item=torch.cat(w_item), window_start=torch.cat(w_start))
        S = V = None
    f = torch.cat(feats)
    return FeatureSet(features=f, labels=torch.cat(labels).long(), indices=torch.cat(indices).long(),
                      pooled=st.get("pool") != "none", segments=S, views=V, class_names=idx.get("class_names"),
                      skipped=skipped, meta=meta)
