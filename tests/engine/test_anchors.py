"""A new YOLOV3 model takes its anchors from k-means of its training boxes, as arcgis.learn's
YOLOv3 does (dl_engine/train/anchors.py): anchors that fit the objects, in pixels of the
network's input, recorded in the emd; YOLOv3's COCO anchors where the boxes are too few."""

from pathlib import Path

import numpy as np
import pytest

import detection_helpers as dh
from dl_engine.data import DataConfig, prepare_data
from dl_engine.models.detection import YOLO_ANCHORS_416
from dl_engine.train.anchors import box_sizes, kmeans_anchors, training_anchors


def best_iou(sizes, anchors):
    """Each box's IoU with its best-fitting anchor (both placed at one corner)."""
    s, a = np.asarray(sizes, float), np.asarray(anchors, float)
    inter = np.minimum(s[:, None, 0], a[None, :, 0]) * np.minimum(s[:, None, 1], a[None, :, 1])
    union = (s[:, 0] * s[:, 1])[:, None] + (a[:, 0] * a[:, 1])[None, :] - inter
    return (inter / union).max(1)


def clusters(seed=0):
    """Boxes of three kinds: small squares, wide rectangles, large squares (pixels)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(centre, 1.0, (100, 2)) for centre in ((8, 8), (30, 10), (40, 40))])


def test_kmeans_finds_the_box_shapes_smallest_first():
    anchors = kmeans_anchors(clusters(), 3, seed=0)
    assert [a for a in anchors] == sorted(anchors, key=lambda a: a[0] * a[1])
    for (w, h), (cw, ch) in zip(anchors, ((8, 8), (30, 10), (40, 40))):
        assert abs(w - cw) <= 2 and abs(h - ch) <= 2  # the median of each kind, rounded up
    assert all(isinstance(v, int) for a in anchors for v in a)
    assert kmeans_anchors(clusters(), 3, seed=0) == anchors  # the same run, the same anchors


def test_kmeans_anchors_fit_the_boxes_better_than_cocos():
    sizes = clusters(1)
    coco = [[w * 64 / 416, h * 64 / 416] for w, h in YOLO_ANCHORS_416]  # what a 64 px chip had before
    anchors = kmeans_anchors(sizes, 9, seed=0)
    assert best_iou(sizes, anchors).mean() > 0.85 > best_iou(sizes, coco).mean() + 0.1


def test_too_few_distinct_sizes_keep_the_default():
    assert kmeans_anchors(np.array([[10, 10]] * 50 + [[20, 12]] * 50), 9) is None
    assert kmeans_anchors(np.zeros((0, 2)), 9) is None


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    return dh.squares_export(tmp_path_factory.mktemp("anchors"), fmt="KITTI_rectangles", cells=4)


def label_sizes(folder):
    """Width and height of every box in the export's KITTI files, read here (fields 4..7)."""
    sizes = []
    for path in sorted(Path(folder, "labels").glob("*.txt")):
        for line in path.read_text().splitlines():
            x1, y1, x2, y2 = map(float, line.split()[4:8])
            sizes.append((x2 - x1, y2 - y1))
    return np.array(sizes)


def test_the_training_boxes_in_pixels_of_the_networks_input(kitti):
    td = prepare_data(DataConfig(kitti, 25))
    every = label_sizes(kitti)
    sizes = box_sizes(td, td.data.tile_size_x)
    assert 0 < len(sizes) <= len(every)  # the training chips' (the validation chips are left out)
    assert {tuple(s) for s in sizes} <= {tuple(s) for s in every}
    resized = prepare_data(DataConfig(kitti, 25, resize_to=2 * td.data.tile_size_x))
    assert np.array_equal(box_sizes(resized, 2 * td.data.tile_size_x), 2 * sizes)  # RESIZE_TO scales them
    assert len(box_sizes(td, td.data.tile_size_x, limit=5)) == 5


def test_training_anchors_say_where_they_came_from(kitti):
    td = prepare_data(DataConfig(kitti, 25))
    said = []
    anchors = training_anchors(td, td.data.tile_size_x, 5, 0, said.append)
    every = label_sizes(kitti)
    assert len(anchors) == 5 and said[0].startswith("anchors: k-means of ")
    assert all(every.min() <= v <= np.ceil(every.max()) for a in anchors for v in a)
    said.clear()
    assert training_anchors(td, td.data.tile_size_x, 200, 0, said.append) is None
    assert "the model's defaults" in said[0]
