"""Video data: the embedded synthetic dataset and real files (videos, images, frame folders, tar shards).

Entry points: :func:`~videojepa.data.build.build_files_dataset` (from a config's ``data`` section),
:class:`~videojepa.data.video_dataset.VideoDataset` (``mode="train"`` / ``"eval"``),
:func:`~videojepa.data.sources.load_source` (CSV index, folder or shards), the decoder
:func:`~videojepa.data.decode.read_frames` and the clip placement :func:`~videojepa.data.sampling.sample_clips`.
"""
from .build import build_files_dataset
from .decode import DecodeError, VideoInfo, probe, read_frames
from .errors import DataError, SkippedSample
from .sampling import ClipSampling, ShortVideoError, sample_clips
from .sources import Entry, load_source
from .video_dataset import ClipReader, VideoDataset, eval_collate

__all__ = [
    "build_files_dataset", "DecodeError", "VideoInfo", "probe", "read_frames", "DataError", "SkippedSample",
    "ClipSampling", "ShortVideoError", "sample_clips", "Entry", "load_source", "ClipReader", "VideoDataset",
    "eval_collate",
]
