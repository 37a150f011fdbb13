"""The trainer's own ARGUMENTS (every model type takes them; each ``ModelSpec`` adds its
model's). Parsing is ``dl_engine.arguments``."""

from __future__ import annotations

from typing import Any, Dict

# name -> default; None means "not set" (the parameter of the same meaning decides).
TRAINER_ARGUMENTS: Dict[str, Any] = {
    "chip_size": None,  # = CHIP_SIZE
    "monitor": None,  # = MONITOR
    "resume": False,  # continue from OUT_FOLDER's checkpoint of an interrupted run
    "class_balancing": False,  # loss weights ~ 1 / class frequency (pixel models)
    "focal_loss": False,  # focal loss (gamma 2) instead of cross-entropy
    "ignore_classes": [],  # class values left out of loss and metrics
    "mixup": False,  # mix pairs of training chips (and their losses)
    "weight_decay": 0.01,  # AdamW
    "patience": None,  # epochs without improvement before STOP_TRAINING stops (default 5)
}
