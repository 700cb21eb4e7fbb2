"""How unreadable samples travel: never replaced, always counted and named."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SkippedSample", "DataError"]


class DataError(RuntimeError):
    """A sample or a data source cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class SkippedSample:
    """Returned by a training dataset instead of an item it could not produce.

    The collate function drops it from the batch and lists it under ``batch["skipped"]``; the trainer
    counts it, logs its path once, and stops the run when the failure rate passes
    ``data.max_failure_rate`` or when nothing can be read at all.
    """

    index: int
    path: str
    reason: str
    step: int = -1
