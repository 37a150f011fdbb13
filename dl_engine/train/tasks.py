"""Which task (batches, loss, metrics) trains each model kind of the registry."""

from __future__ import annotations

from ..data.errors import DataError


def task_for(kind: str):
    if kind == "pixel":
        from .pixel_task import PixelTask
        return PixelTask
    raise DataError("MODEL_TYPE", f"model kind {kind!r} has no trainer in this version")
