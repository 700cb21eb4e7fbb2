"""Streamed tar shards in the WebDataset layout, for corpora too large to list.

A shard is a plain ``.tar`` file; a sample is a run of consecutive members that share a *key* (the
member path up to the first dot of its file name): ``clip0001.mp4`` + ``clip0001.cls`` is one
sample, with the video (any extension in :data:`~videojepa.data.decode.VIDEO_EXTS`) or image, and an
optional integer label in ``.cls`` / ``.label`` / ``.txt``. Shards are read sequentially, never
indexed or extracted.

Order: every epoch the shards are shuffled by ``(seed, epoch)``, dealt to ranks (``shards[rank::world]``)
and then to DataLoader workers (``[worker::workers]``). Each worker cuts its stream into batches and
collates them itself (masks are made in the worker); the ``k``-th batch of stream ``v`` is step
``k * workers + v``, and the DataLoader takes batches from the workers in turn, so steps arrive in order.
Resuming at step ``s`` skips the samples of earlier steps without decoding them. What a step contains
depends on the number of ranks and workers (unlike the listed sources): resume with the same ones.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..rng import numpy_generator
from .decode import IMAGE_EXTS, VIDEO_EXTS, DecodeError
from .errors import DataError, SkippedSample
from .transforms import normalize

__all__ = ["WebDatasetStream", "iter_samples", "build_stream_loader"]

_LABEL_EXTS = ("cls", "label", "cls.txt", "label.txt", "txt")


def _split_name(name: str) -> tuple[str, str]:
    d, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext.lower()


def iter_samples(shard: str) -> Iterator[dict]:
    """``{"__key__": key, "__shard__": shard, ext: bytes, ...}`` for each sample of a tar shard, in order.

    A shard that cannot be read to its end yields ``{"__error__": reason}`` as its last sample."""
    cur: dict | None = None
    try:
        with tarfile.open(shard, mode="r|*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, ext = _split_name(m.name)
                if cur is not None and cur["__key__"] != key:
                    yield cur
                    cur = None
                if cur is None:
                    cur = {"__key__": key, "__shard__": shard}
                f = tf.extractfile(m)
                cur[ext] = f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as e:
        if cur is not None:
            yield cur
            cur = None
        yield {"__key__": "", "__shard__": shard, "__error__": f"cannot read the shard to its end ({type(e).__name__}: {e})"}
    if cur is not None:
        yield cur


def _media(sample: dict) -> tuple[str, str, bytes]:
    """(kind, extension, bytes) of a sample's video or image."""
    for ext, data in sample.items():
        if ext.startswith("__"):
            continue
        last = "." + ext.rsplit(".", 1)[-1]
        if last in VIDEO_EXTS:
            return "video", ext, data
    for ext, data in sample.items():
        if not ext.startswith("__") and "." + ext.rsplit(".", 1)[-1] in IMAGE_EXTS:
            return "image", ext, data
    raise DataError(f"no video or image member (members: {', '.join(k for k in sample if not k.startswith('__'))})")


def _label(sample: dict):
    for ext in _LABEL_EXTS:
        if ext in sample:
            text = sample[ext].decode("utf-8", "replace").strip()
            try:
                return int(text)
            except ValueError:
                raise DataError(f"label {text!r} in .{ext} is not an integer") from None
    return None


class WebDatasetStream(IterableDataset):
    """Training batches streamed from tar shards (see the module docstring).

    Args:
        shards: the shard paths.
        reader: a :class:`~videojepa.data.video_dataset.ClipReader` (train mode is used).
        seed: the run's seed (shard order and augmentation).
    """

    def __init__(self, shards: list[str], reader, seed: int = 0) -> None:
        if not shards:
            raise DataError("no tar shards given")
        self.shards, self.reader, self.seed = list(shards), reader, int(seed)
        self.plan: dict | None = None  # set by build_stream_loader

    def shards_for(self, epoch: int, rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
        order = numpy_generator(self.seed, epoch, "shard-order").permutation(len(self.shards))
        mine = [self.shards[i] for i in order][rank::world_size][worker::num_workers]
        if not mine:
            raise DataError(f"{len(self.shards)} shard(s) for {world_size} rank(s) x {num_workers} worker(s): "
                            "every worker needs at least one shard (use fewer workers or more shards)")
        return mine

    def _item(self, sample: dict, step: int, index: int):
        name = f"{sample['__shard__']}:{sample['__key__']}"
        if "__error__" in sample:
            return SkippedSample(index=index, path=sample["__shard__"], reason=sample["__error__"], step=step)
        try:
            kind, ext, data = _media(sample)
            name = f"{name}.{ext}"
            rng = numpy_generator(self.seed, step, index, "video-clip")
            item = self.reader.item(data, kind, name, mode="train", index=index, label=_label(sample), rng=rng, clip=0)
        except Exception as ex:  # noqa: BLE001 - one sample's failure
            reason = ex.reason if isinstance(ex, DecodeError) else (str(ex) if isinstance(ex, DataError) else
                                                                    f"{type(ex).__name__}: {ex}")
            return SkippedSample(index=index, path=name, reason=reason, step=step)
        item["clip"] = normalize(item["clip"])
        item["step"] = step
        return item

    def __iter__(self):
        if self.plan is None:
            raise RuntimeError("WebDatasetStream is iterated through build_stream_loader (it needs the batch plan)")
        p = self.plan
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        bs, start, stop = p["batch_size"], p["start_step"], p["max_steps"]
        # steps s with s % nw == v belong to the stream of "virtual worker" v; after a resume at `start`,
        # worker wid plays v = (wid + start) % nw, so the DataLoader's round robin still yields start, start+1, ...
        wid = (wid + start) % nw
        k, epoch, batch = 0, 0, []
        while True:
            step = k * nw + wid
            if stop is not None and step >= stop:
                return
            produced = False
            for shard in self.shards_for(epoch, p["rank"], p["world_size"], wid, nw):
                for sample in iter_samples(shard):
                    produced = True
                    step = k * nw + wid
                    if stop is not None and step >= stop:
                        return
                    index = step * bs + len(batch)
                    batch.append(None if step < start else self._item(sample, step, index))
                    if len(batch) == bs:
                        if step >= start:
                            yield p["collate_fn"](batch)
                        batch, k = [], k + 1
            if not produced:
                raise DataError(f"the shards of worker {wid} hold no samples")
            epoch += 1


def build_stream_loader(dataset: WebDatasetStream, collate_fn, *, batch_size: int, seed: int, start_step: int,
                        max_steps: int | None, num_workers: int = 0, pin_memory: bool = False, rank: int = 0,
                        world_size: int = 1) -> DataLoader:
    if seed != dataset.seed:
        raise ValueError(f"the stream was built with seed {dataset.seed}, the loader asks for {seed}")
    dataset.plan = dict(batch_size=batch_size, start_step=start_step, max_steps=max_steps, rank=rank,
                        world_size=world_size, collate_fn=collate_fn)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0, prefetch_factor=2 if num_workers > 0 else None)

