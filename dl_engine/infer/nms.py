"""Greedy non-maximum suppression over a whole raster's detections.

Boxes are looked up in an STR tree, so each box is compared only with the boxes it touches:
O(n log n) for the millions of detections of a large raster, where a dense n x n IoU
matrix would not fit.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import shapely

DUPLICATE_IOU = 0.9  # boxes of one class from two overlapping tiles this alike are one object


def suppress(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou: float,
             groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices kept by greedy NMS (highest score first) among boxes of the same label whose
    IoU is above ``iou``. With ``groups`` (e.g. the tile of each box) only boxes of different
    groups suppress each other. Returns kept indices in descending score order."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    boxes = np.asarray(boxes, np.float64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    labels = np.asarray(labels)
    polygons = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    pairs = shapely.STRtree(polygons).query(polygons, predicate="intersects")  # every touching pair
    a, b = pairs
    same = (a < b) & (labels[a] == labels[b])
    if groups is not None:
        same &= groups[a] != groups[b]
    a, b = a[same], b[same]
    # orient each pair from the higher-scored box to the lower one
    first = np.where(rank[a] < rank[b], a, b)
    second = np.where(rank[a] < rank[b], b, a)
    hit = _pair_iou(boxes[first], boxes[second]) > iou
    first, second = first[hit], second[hit]
    # greedy: a box suppresses its followers only if it is itself kept
    by_first = {}
    for f, s in zip(first.tolist(), second.tolist()):
        by_first.setdefault(f, []).append(s)
    suppressed = np.zeros(n, bool)
    kept = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        kept.append(i)
        for j in by_first.get(i, ()):
            suppressed[j] = True
    return np.asarray(kept, np.int64)


def _pair_iou(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(p[:, 2], q[:, 2]) - np.maximum(p[:, 0], q[:, 0]), 0, None)
    iy = np.clip(np.minimum(p[:, 3], q[:, 3]) - np.maximum(p[:, 1], q[:, 1]), 0, None)
    inter = ix * iy
    union = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]) + (q[:, 2] - q[:, 0]) * (q[:, 3] - q[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)
