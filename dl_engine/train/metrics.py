"""Validation metrics of pixel classification, from one confusion matrix per epoch
(summed over batches and, in a distributed run, over processes).

- ``accuracy``: correctly classified pixels / all counted pixels (background included, as
  arcgis.learn's ``accuracy``).
- per class: precision, recall, F1 (= Dice of that class) and IoU.
- ``miou`` and ``dice``: means over the foreground classes (background / NoData left out,
  so a model that predicts only background does not score well); classes absent from both
  truth and prediction are left out of the means.
Ignored classes (ARGUMENTS ignore_classes) are not counted anywhere.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

# MONITOR keyword -> (metrics key, higher is better)
MONITOR_KEYS = {"VALID_LOSS": ("valid_loss", False), "ACCURACY": ("accuracy", True), "MIOU": ("miou", True),
                "DICE": ("dice", True), "F1": ("f1", True), "AVERAGE_PRECISION": ("average_precision", True)}


class ConfusionMatrix:
    def __init__(self, num_classes: int, device=None):
        self.num_classes = num_classes
        self.matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        """predicted, target: integer tensors of the same shape; targets < 0 are ignored."""
        keep = target >= 0
        t = target[keep].to(torch.int64)
        p = predicted[keep].to(torch.int64)
        n = self.num_classes
        self.matrix += torch.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def numpy(self) -> np.ndarray:
        return self.matrix.detach().cpu().numpy()


def pixel_metrics(matrix: np.ndarray, names: Sequence[str], background: bool = True,
                  exclude: Sequence[int] = ()) -> Dict[str, object]:
    """Metrics from a confusion matrix (rows truth, columns prediction)."""
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    truth = m.sum(axis=1)
    pred = m.sum(axis=0)
    total = m.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(truth > 0, tp / truth, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        union = truth + pred - tp
        iou = np.where(union > 0, tp / union, 0.0)
    first = 1 if background and len(names) > 1 else 0
    counted = [i for i in range(first, len(names)) if i not in exclude and (truth[i] + pred[i]) > 0]
    per_class = {names[i]: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                            "iou": float(iou[i])} for i in range(len(names)) if i not in exclude}
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "miou": float(np.mean(iou[counted])) if counted else 0.0,
        "dice": float(np.mean(f1[counted])) if counted else 0.0,
        "f1": float(np.mean(f1[counted])) if counted else 0.0,
        "per_class": per_class,
        # share of the truth pixels in the classes to find (model_metrics.html warns when tiny)
        **({"foreground_share": float(truth[first:].sum() / total) if total else 0.0} if first else {}),
    }


def monitor_key(monitor: str) -> str:
    return MONITOR_KEYS[monitor][0]


def is_better(monitor: str, value: Optional[float], best: Optional[float], min_delta: float = 0.0) -> bool:
    if value is None or not np.isfinite(value):
        return False
    if best is None:
        return True
    higher = MONITOR_KEYS[monitor][1]
    return value > best + min_delta if higher else value < best - min_delta
