"""Anchor sizes a new detector takes from its training data, as arcgis.learn's YOLOv3 does.

arcgis.learn's YOLOv3 without ``anchors`` runs k-means on the width and height of (at most 1000)
training boxes, with 1 - IoU as the distance (boxes compared as if they shared a corner), and takes
the centroids rounded up to whole pixels, sorted by area. Anchors that fit the objects train
faster than YOLOv3's COCO anchors scaled to the chip, which are meant for photographs of street
scenes, not for tree crowns or cars seen from above.

``training_anchors`` does the same on the boxes of an export's label files (PASCAL VOC and KITTI),
in pixels of the network's input (scaled when RESIZE_TO resizes the chips). Its result goes into
the run's ARGUMENTS, so the emd records it and the package rebuilds the same network.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

from ..data.samples import read_box_label

SAMPLE_LIMIT = 1000  # boxes k-means looks at, as arcgis.learn (a random sample of them)
BOX_FORMATS = ("PASCAL_VOC_rectangles", "KITTI_rectangles")


def kmeans_anchors(sizes: np.ndarray, count: int, seed: int = 0, iterations: int = 300) -> Optional[List[List[int]]]:
    """``count`` anchors [width, height] (whole pixels, smallest area first) from the box
    ``sizes`` (n, 2), by k-means with 1 - IoU as the distance and the median as the centre;
    None when there are fewer distinct sizes than anchors."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    sizes = sizes[(sizes > 0).all(1)]
    distinct = np.unique(sizes, axis=0)
    if len(distinct) < count:
        return None
    centres = distinct[np.random.default_rng(seed).choice(len(distinct), count, replace=False)]
    nearest = None
    for _ in range(iterations):
        inter = np.minimum(sizes[:, None, 0], centres[None, :, 0]) * np.minimum(sizes[:, None, 1], centres[None, :, 1])
        union = (sizes[:, 0] * sizes[:, 1])[:, None] + (centres[:, 0] * centres[:, 1])[None, :] - inter
        assigned = (inter / union).argmax(1)
        if nearest is not None and np.array_equal(assigned, nearest):
            break
        nearest = assigned
        # an emptied cluster keeps its centre (arcgis.learn's would collapse to [0, 0])
        centres = np.array([np.median(sizes[nearest == j], axis=0) if (nearest == j).any() else centres[j]
                            for j in range(count)])
    anchors = np.maximum(np.ceil(centres), 1).astype(int).tolist()
    return sorted(anchors, key=lambda a: (a[0] * a[1], a[0]))


def box_sizes(td, input_size: int, limit: int = SAMPLE_LIMIT, seed: int = 0) -> np.ndarray:
    """(n, 2) width and height of the training chips' boxes, in pixels of the network's input:
    at most ``limit`` of them, a random sample when there are more."""
    fmt = td.data.metadata_format
    if fmt not in BOX_FORMATS:
        return np.zeros((0, 2))
    sizes = []
    for ref in td.train:
        for _, box in read_box_label(fmt, ref.label):
            if box is not None and box[2] > box[0] and box[3] > box[1]:
                sizes.append((box[2] - box[0], box[3] - box[1]))
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if td.reader.resize_to:  # chips resized to RESIZE_TO: their boxes with them
        sizes = sizes * (input_size / float(td.data.tile_size_x))
    if len(sizes) > limit:
        sizes = sizes[np.random.default_rng(seed).choice(len(sizes), limit, replace=False)]
    return sizes


def training_anchors(td, input_size: int, count: int, seed: int,
                     log: Callable[[str], None]) -> Optional[List[List[int]]]:
    """k-means anchors of the training boxes (``kmeans_anchors``), or None (the model's default
    anchors) when there are too few distinct box sizes; says which in one log line."""
    sizes = box_sizes(td, input_size, seed=seed)
    anchors = kmeans_anchors(sizes, count, seed)
    if anchors is None:
        log(f"anchors: the model's defaults (the training chips have {len(np.unique(sizes, axis=0))} distinct box "
            f"sizes; k-means of them needs {count})")
    else:
        log(f"anchors: k-means of {len(sizes)} training boxes, as arcgis.learn: "
            + ", ".join(f"{w}x{h}" for w, h in anchors) + " px")
    return anchors
