"""Which task (batches, loss, validation metrics, sample results) trains each model kind
(``ModelSpec.kind``) of the registry. The interface a task offers is described in
pixel_task.py. Imports torch (through the tasks): only the trainer imports this module."""

from __future__ import annotations

from ..errors import InputError
from .classification_task import ClassificationTask
from .detection_task import DetectionTask
from .pixel_task import PixelTask

TASKS = {
    "pixel": PixelTask,
    "detection": DetectionTask,
    "instance": DetectionTask,
    "classification": ClassificationTask,
}


def task_for(kind: str):
    task = TASKS.get(kind)
    if task is None:
        raise InputError("MODEL_TYPE", f"model kind {kind!r} has no trainer in this version")
    return task
