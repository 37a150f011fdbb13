"""Train Deep Learning Model: configuration, the training loop, the worker process.

``run_training(TrainConfig(...))`` in-process, or ``python -m dl_engine train`` as a worker
(JSON-lines events on stdout) and under ``torchrun``. Importing this package does not
import torch; ``dl_engine.train.run`` does."""

from .config import MONITORS, WEIGHT_INIT_SCHEMES, TrainConfig

__all__ = ["MONITORS", "WEIGHT_INIT_SCHEMES", "TrainConfig"]
