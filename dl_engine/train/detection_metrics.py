"""Average precision of detections, per class, as object detectors are scored.

- Each image's detections (highest score first) are matched greedily to its ground-truth
  objects of the same class: a detection is a true positive at IoU threshold t when it
  overlaps a not yet matched object by at least t (the best such object), else a false
  positive. Instance models match masks (mask IoU), box models boxes.
- Per class, over all images: precision/recall by descending score and the area under the
  precision envelope at every recall step (PASCAL VOC 2010+ "all-point interpolation").
- ``average_precision``: AP at IoU 0.5 — what arcgis.learn reports as
  ``average_precision_score`` — per class, and its mean over the classes that have objects
  in the validation chips. ``coco_map``: AP averaged over IoU 0.50:0.05:0.95 (COCO mAP).
- Chips without objects count: every detection on them is a false positive.

Only what each image leaves behind is kept (score, class and a true-positive flag per IoU
threshold for every detection, objects per class), so memory stays small and the state
can be gathered from several processes.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)  # 0.50 … 0.95; index 0 is AP@0.5


class APAccumulator:
    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)  # with background index 0
        self.scores: List[np.ndarray] = []
        self.labels: List[np.ndarray] = []
        self.tp: List[np.ndarray] = []  # (n, len(IOU_THRESHOLDS)) bool
        self.objects = np.zeros(self.num_classes, np.int64)

    def add(self, scores: np.ndarray, labels: np.ndarray, gt_labels: np.ndarray, iou: np.ndarray) -> None:
        """One image: detection ``scores``/``labels`` (n,), object ``gt_labels`` (g,), and
        ``iou`` (n, g) between every detection and object."""
        scores = np.asarray(scores, np.float64).reshape(-1)
        labels = np.asarray(labels, np.int64).reshape(-1)
        gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
        iou = np.asarray(iou, np.float64).reshape(len(scores), len(gt_labels))
        self.objects += np.bincount(np.clip(gt_labels, 0, self.num_classes - 1), minlength=self.num_classes)
        tp = np.zeros((len(scores), len(IOU_THRESHOLDS)), bool)
        if len(scores) and len(gt_labels):
            order = np.argsort(-scores, kind="stable")
            same = labels[:, None] == gt_labels[None, :]
            overlap = np.where(same, iou, -1.0)
            for k, t in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(gt_labels), bool)
                for d in order:
                    cand = np.where(taken, -1.0, overlap[d])
                    g = int(np.argmax(cand))
                    if cand[g] >= t:
                        taken[g] = True
                        tp[d, k] = True
        self.scores.append(scores)
        self.labels.append(labels)
        self.tp.append(tp)

    # ---- gathering ---------------------------------------------------------------------------

    def state(self) -> Dict[str, np.ndarray]:
        n = len(IOU_THRESHOLDS)
        return {"scores": np.concatenate(self.scores) if self.scores else np.zeros(0),
                "labels": np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64),
                "tp": np.concatenate(self.tp) if self.tp else np.zeros((0, n), bool),
                "objects": self.objects.copy()}

    @staticmethod
    def merge(states: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        return {"scores": np.concatenate([s["scores"] for s in states]),
                "labels": np.concatenate([s["labels"] for s in states]),
                "tp": np.concatenate([s["tp"] for s in states]),
                "objects": np.sum([s["objects"] for s in states], axis=0)}


def average_precision(tp: np.ndarray, scores: np.ndarray, objects: int) -> float:
    """All-point interpolated AP of one class: ``tp`` flags of its detections (any order,
    sorted here by ``scores``), ``objects`` ground-truth count (> 0)."""
    if objects <= 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, np.float64)[order]
    tps = np.cumsum(hits)
    fps = np.cumsum(1.0 - hits)
    recall = tps / objects
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def detection_metrics(state: Dict[str, np.ndarray], names: Sequence[str]) -> Dict[str, object]:
    """``average_precision`` (mean AP@0.5), ``coco_map`` (mean AP@[.5:.95]) and ``per_class``
    {name: {average_precision, coco_ap, objects, detections}} for the classes 1..K of
    ``names`` (index 0 = background). Means over the classes with validation objects;
    None when there are none."""
    scores, labels, tp, objects = state["scores"], state["labels"], state["tp"], state["objects"]
    per_class: Dict[str, Dict[str, Optional[float]]] = {}
    ap50, ap_all = [], []
    for c in range(1, len(names)):
        mine = labels == c
        n = int(objects[c]) if c < len(objects) else 0
        entry: Dict[str, Optional[float]] = {"average_precision": None, "coco_ap": None, "objects": n,
                                             "detections": int(mine.sum())}
        if n > 0:
            aps = [average_precision(tp[mine, k], scores[mine], n) for k in range(len(IOU_THRESHOLDS))]
            entry["average_precision"] = aps[0]
            entry["coco_ap"] = float(np.mean(aps))
            ap50.append(aps[0])
            ap_all.append(entry["coco_ap"])
        per_class[names[c]] = entry
    return {"average_precision": float(np.mean(ap50)) if ap50 else None,
            "coco_map": float(np.mean(ap_all)) if ap_all else None,
            "per_class": per_class}


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)
