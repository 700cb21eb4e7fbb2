"""Datasets from the ``data`` section of a config (``data.source: files``)."""
from __future__ import annotations

from .errors import DataError
from .sources import ListSource, ShardSource, load_source
from .video_dataset import ClipReader, VideoDataset

__all__ = ["make_reader", "load_sources", "build_files_dataset"]


def make_reader(data) -> ClipReader:
    """The :class:`ClipReader` a :class:`~videojepa.config.DataSection` describes."""
    return ClipReader(
        sampling=data.clip_sampling(), crop_size=tuple(data.crop_size),
        random_resize_scale=tuple(data.random_resize_scale),
        random_resize_aspect_ratio=tuple(data.random_resize_aspect_ratio), flip=data.horizontal_flip,
        eval_views=data.eval_views, eval_short_side=data.eval_short_side, frame_folder_fps=data.frame_folder_fps,
        decode_threads=data.decode_threads)


def load_sources(specs) -> list[ListSource | ShardSource]:
    if not specs:
        raise DataError("data.datasets is empty: give CSV indexes, folders or tar shards")
    return [load_source(s) for s in specs]


def build_files_dataset(data, *, mode: str = "train", seed: int = 0, on_error: str | None = None, datasets=None):
    """A :class:`VideoDataset` (listed sources) or a :class:`~videojepa.data.webdataset.WebDatasetStream`
    (tar shards, training only) for ``data.datasets`` (or ``datasets``), mixed by ``data.datasets_weights``.

    ``mode="eval"`` uses ``data.eval_on_error`` unless ``on_error`` is given."""
    specs = list(datasets if datasets is not None else data.datasets)
    sources = load_sources(specs)
    reader = make_reader(data)
    shards = [s for s in sources if isinstance(s, ShardSource)]
    if shards:
        if len(shards) != len(sources):
            raise DataError("data.datasets: tar shards cannot be mixed with listed sources (CSV, folders) yet")
        if data.datasets_weights is not None and len(set(data.datasets_weights)) > 1:
            raise DataError("data.datasets_weights: weighting several shard sets is not supported; "
                            "list the shards of one stream in one entry")
        if mode != "train":
            raise DataError("tar shards are streamed for training only; evaluate from an index or a folder")
        from .webdataset import WebDatasetStream

        return WebDatasetStream([p for s in shards for p in s.shards], reader, seed=seed)
    entries = [e for s in sources for e in s.entries]
    names = sources[0].class_names if len(sources) == 1 else None
    if on_error is None and mode == "eval":
        on_error = data.eval_on_error
    return VideoDataset(entries, reader, mode=mode, seed=seed, on_error=on_error,
                        sources=[(s.name, len(s.entries)) for s in sources], weights=data.datasets_weights,
                        class_names=names)
