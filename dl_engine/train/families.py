"""Which task (batches, loss, validation metrics, sample results) trains each model kind
of the registry. The interface a task offers is described in pixel_task.py."""

from __future__ import annotations

import importlib

from ..errors import InputError

# ModelSpec.kind -> "module:class" in this package
TASKS = {
    "pixel": "pixel_task:PixelTask",
    "detection": "detection_task:DetectionTask",
    "instance": "detection_task:DetectionTask",
    "classification": "classification_task:ClassificationTask",
}


def task_for(kind: str):
    where = TASKS.get(kind)
    if where is None:
        raise InputError("MODEL_TYPE", f"model kind {kind!r} has no trainer in this version")
    module, name = where.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)
