"""Compute Accuracy For Object Detection: detections matched to ground-truth objects, per class.

**Matching rule.** Within each class, detections are taken in order of decreasing confidence (ties
in input order). Each is matched to the ground-truth object of the same class, not matched yet,
with which it has the highest intersection over union (IoU = area of intersection / area of union
of the two polygons); the match counts when that IoU is at least MIN_IOU (within 1e-9). A matched
detection is a true positive; a detection without a match is a false positive (also a second
detection of an object already found); a ground-truth object left unmatched is a false negative.
A detection never matches an object of another class.

**AP** (average precision) is the area under the precision–recall curve with PASCAL VOC's
all-point interpolation (VOC 2010 and later): detections are ranked by confidence; at each
confidence threshold (detections of equal confidence enter together) recall = TP / ground-truth
objects and precision = TP / detections so far; precision is made non-increasing from the right
(the best precision at that recall or beyond) and summed over each step in recall. Without a
confidence field every detection has confidence 1: the curve is one point and AP = precision ×
recall.

**Mask.** With MASK_FEATURES, a detection or ground-truth object counts only when its centroid
lies inside or on the boundary of the mask polygons; the others are left out before matching.

**Overall row** (Class ``All``): TP, FP and FN summed over the classes; precision, recall and F1
from these sums; AP the mean of the classes' AP over the classes that have ground-truth objects
(mAP). Ratios with a zero denominator are 0 (``tables.ratio``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import shapely
from shapely import wkb as shapely_wkb

from ..errors import Canceled, InputError
from ..events import Events
from .config import ALL_CLASSES, DETECTION_FIELDS, DetectionAccuracyConfig
from .tables import ratio, rounded, write_csv

IOU_TOLERANCE = 1e-9


@dataclass
class ClassAccuracy:
    """One row of OUT_ACCURACY_TABLE, with the precision–recall curve behind its AP."""

    class_value: str
    true_positive: int
    false_positive: int
    false_negative: int
    ap: float
    recall_curve: List[float] = field(default_factory=list)  # one point per confidence threshold
    precision_curve: List[float] = field(default_factory=list)

    @property
    def ground_truth(self) -> int:
        return self.true_positive + self.false_negative

    @property
    def detections(self) -> int:
        return self.true_positive + self.false_positive

    @property
    def precision(self) -> float:
        return ratio(self.true_positive, self.detections)

    @property
    def recall(self) -> float:
        return ratio(self.true_positive, self.ground_truth)

    @property
    def f1_score(self) -> float:
        return ratio(2 * self.precision * self.recall, self.precision + self.recall)

    def row(self) -> Dict[str, object]:
        values = (self.class_value, rounded(self.precision), rounded(self.recall), rounded(self.f1_score),
                  rounded(self.ap), self.true_positive, self.false_positive, self.false_negative)
        return dict(zip(DETECTION_FIELDS, values))


@dataclass
class DetectionAccuracy:
    classes: List[ClassAccuracy]  # sorted by class value
    overall: ClassAccuracy  # Class "All"
    min_iou: float
    detections_counted: int
    truths_counted: int
    detections_masked_out: int = 0
    truths_masked_out: int = 0
    skipped: int = 0  # empty or non-polygonal geometries

    def rows(self) -> List[Dict[str, object]]:
        """OUT_ACCURACY_TABLE: a row per class, then the overall row."""
        return [c.row() for c in self.classes] + [self.overall.row()]


# ---- the measures -----------------------------------------------------------------------------------

def iou(a, b) -> float:
    """Intersection over union of two polygons (0 when they do not overlap)."""
    intersection = a.intersection(b).area
    union = a.area + b.area - intersection
    return intersection / union if union > 0 else 0.0


def match(detections: Sequence, confidences: Sequence[float], truths: Sequence, min_iou: float,
          cancel: Optional[Callable[[], bool]] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of one class's detections (shapely polygons) to its ground truth.

    Returns (order, is_true_positive, matched_truth): ``order`` the detections' indices by
    decreasing confidence (stable), ``is_true_positive`` per detection in that order, and
    ``matched_truth`` the index of the object each matched (-1: none)."""
    confidences = np.asarray(confidences, dtype=float)
    order = np.argsort(-confidences, kind="stable")
    true_positive = np.zeros(len(order), dtype=bool)
    matched_truth = np.full(len(order), -1, dtype=np.int64)
    if not len(truths):
        return order, true_positive, matched_truth
    truth_array = np.asarray(truths, dtype=object)
    tree = shapely.STRtree(truth_array)
    taken = np.zeros(len(truths), dtype=bool)
    areas = shapely.area(truth_array)
    for position, index in enumerate(order):
        if cancel is not None and position % 256 == 0 and cancel():
            raise Canceled("Compute Accuracy For Object Detection canceled: nothing was written")
        detection = detections[index]
        candidates = tree.query(detection)
        candidates = np.sort(candidates[~taken[candidates]])
        if not len(candidates):
            continue
        intersections = shapely.area(shapely.intersection(detection, truth_array[candidates]))
        unions = detection.area + areas[candidates] - intersections
        ious = np.divide(intersections, unions, out=np.zeros_like(intersections), where=unions > 0)
        best = int(np.argmax(ious))  # the first of equal IoUs: the earlier object
        if ious[best] >= min_iou - IOU_TOLERANCE:
            taken[candidates[best]] = True
            true_positive[position] = True
            matched_truth[position] = candidates[best]
    return order, true_positive, matched_truth


def precision_recall_curve(sorted_confidences: np.ndarray, is_true_positive: np.ndarray,
                           ground_truth: int) -> Tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each confidence threshold, the detections sorted by decreasing
    confidence; detections of equal confidence enter together (one point)."""
    if not len(is_true_positive):
        return np.zeros(0), np.zeros(0)
    tp = np.cumsum(is_true_positive)
    fp = np.cumsum(~is_true_positive)
    confidences = np.asarray(sorted_confidences, dtype=float)
    last_of_group = np.append(confidences[1:] != confidences[:-1], True)
    tp, fp = tp[last_of_group], fp[last_of_group]
    recall = tp / ground_truth if ground_truth else np.zeros(len(tp))
    precision = tp / (tp + fp)
    return recall.astype(float), precision.astype(float)


def average_precision(recall: Sequence[float], precision: Sequence[float]) -> float:
    """PASCAL VOC all-point interpolated AP of a precision–recall curve (recall non-decreasing)."""
    if not len(recall):
        return 0.0
    mrec = np.concatenate(([0.0], np.asarray(recall, float), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, float), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the best precision at this recall or beyond
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def class_accuracy(class_value: str, detections: Sequence, confidences: Sequence[float], truths: Sequence,
                   min_iou: float, cancel=None) -> ClassAccuracy:
    order, true_positive, _ = match(detections, confidences, truths, min_iou, cancel)
    sorted_confidences = np.asarray(confidences, dtype=float)[order]
    recall, precision = precision_recall_curve(sorted_confidences, true_positive, len(truths))
    tp = int(true_positive.sum())
    return ClassAccuracy(
        class_value=class_value,
        true_positive=tp,
        false_positive=int(len(order) - tp),
        false_negative=int(len(truths) - tp),
        ap=average_precision(recall, precision) if len(truths) else 0.0,
        recall_curve=[float(v) for v in recall],
        precision_curve=[float(v) for v in precision],
    )


def overall_accuracy(classes: Sequence[ClassAccuracy]) -> ClassAccuracy:
    with_truth = [c.ap for c in classes if c.ground_truth]
    return ClassAccuracy(
        class_value=ALL_CLASSES,
        true_positive=sum(c.true_positive for c in classes),
        false_positive=sum(c.false_positive for c in classes),
        false_negative=sum(c.false_negative for c in classes),
        ap=float(np.mean(with_truth)) if with_truth else 0.0,
    )


def class_sort_key(value: str):
    """Numbers in numeric order first, then names in text order."""
    try:
        number = float(value)
        if math.isfinite(number):
            return (0, number, value)
    except ValueError:
        pass
    return (1, 0.0, value.lower())


# ---- geometries --------------------------------------------------------------------------------------

def polygon(data: bytes, parameter: str):
    """A valid polygonal shapely geometry from WKB, or None when it is empty or has no area."""
    try:
        geometry = shapely_wkb.loads(bytes(data))
    except Exception as error:  # shapely raises GEOSException or others on bad WKB
        raise InputError(parameter, f"a geometry cannot be read ({error})") from None
    if geometry.is_empty:
        return None
    if geometry.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        raise InputError(parameter, f"holds {geometry.geom_type} geometries; give polygons (buffer points or "
                                    f"lines into polygons first)")
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    if geometry.geom_type == "GeometryCollection":
        parts = [g for g in shapely.get_parts(geometry) if g.geom_type in ("Polygon", "MultiPolygon")]
        geometry = shapely.union_all(parts) if parts else None
    if geometry is None or geometry.is_empty or geometry.area <= 0:
        return None
    return geometry


def inside_mask(geometries: Sequence, mask) -> np.ndarray:
    """Whether each geometry's centroid lies inside or on the boundary of ``mask``."""
    if mask is None or not len(geometries):
        return np.ones(len(geometries), dtype=bool)
    centroids = shapely.centroid(np.asarray(geometries, dtype=object))
    return shapely.covers(mask, centroids)


def mask_geometry(mask_wkb: Optional[Sequence[bytes]]):
    if mask_wkb is None:
        return None
    parts = [g for g in (polygon(data, "MASK_FEATURES") for data in mask_wkb) if g is not None]
    if not parts:
        raise InputError("MASK_FEATURES", "the mask layer has no polygon with an area; give the polygons of the "
                                          "area to assess, or leave MASK_FEATURES empty")
    mask = shapely.union_all(parts)
    shapely.prepare(mask)
    return mask


# ---- a run ------------------------------------------------------------------------------------------

def compute_detection_accuracy(config: DetectionAccuracyConfig, events: Optional[Events] = None,
                               cancel: Optional[Callable[[], bool]] = None) -> DetectionAccuracy:
    """Match, measure and write what ``config`` asks for (OUT_ACCURACY_TABLE as CSV when
    ``out_accuracy_table`` is set, the report when ``out_accuracy_report`` is)."""
    config.check()
    events = events or Events(enabled=False)
    mask = mask_geometry(config.mask_wkb)

    skipped = 0
    det_geoms, det_classes, det_conf = [], [], []
    for obj in config.detections:
        geometry = polygon(obj.wkb, "DETECTED_FEATURES")
        if geometry is None:
            skipped += 1
            continue
        confidence = float(obj.confidence)
        if not math.isfinite(confidence):
            raise InputError("DETECTED_FEATURES", f"a detection has the confidence {obj.confidence!r}; give numbers")
        det_geoms.append(geometry)
        det_classes.append(str(obj.class_value))
        det_conf.append(confidence)
    truth_geoms, truth_classes = [], []
    for obj in config.ground_truth:
        geometry = polygon(obj.wkb, "GROUND_TRUTH_FEATURES")
        if geometry is None:
            skipped += 1
            continue
        truth_geoms.append(geometry)
        truth_classes.append(str(obj.class_value))
    if not truth_geoms:
        raise InputError("GROUND_TRUTH_FEATURES", "no ground-truth polygon has an area; give polygons")

    det_in = inside_mask(det_geoms, mask)
    truth_in = inside_mask(truth_geoms, mask)
    if not truth_in.any():
        raise InputError("MASK_FEATURES", f"none of the {len(truth_geoms)} ground-truth objects has its centroid "
                                          f"inside the mask polygons (do the layers overlap? check their CRS); "
                                          f"give a mask over the ground truth, or leave MASK_FEATURES empty")
    if mask is not None:
        events.log(f"MASK_FEATURES: {int(det_in.sum())} of {len(det_geoms)} detections and {int(truth_in.sum())} "
                   f"of {len(truth_geoms)} ground-truth objects have their centroid inside the mask")
    if not det_in.any():
        events.warning("DETECTED_FEATURES: no detection counts (none inside the mask); every ground-truth object "
                       "is a false negative")

    classes = sorted({c for c, keep in zip(det_classes, det_in) if keep}
                     | {c for c, keep in zip(truth_classes, truth_in) if keep}, key=class_sort_key)
    detected_only = sorted({c for c, k in zip(det_classes, det_in) if k} - set(truth_classes), key=class_sort_key)
    if detected_only:
        events.warning(f"classes detected but absent from the ground truth: {', '.join(detected_only)} (all their "
                       f"detections are false positives; are the class value fields the right ones?)")

    results = []
    for number, class_value in enumerate(classes):
        d = [i for i, (c, k) in enumerate(zip(det_classes, det_in)) if k and c == class_value]
        t = [i for i, (c, k) in enumerate(zip(truth_classes, truth_in)) if k and c == class_value]
        results.append(class_accuracy(class_value, [det_geoms[i] for i in d], [det_conf[i] for i in d],
                                      [truth_geoms[i] for i in t], config.min_iou, cancel))
        events.progress(90.0 * (number + 1) / len(classes), f"class {class_value}")

    accuracy = DetectionAccuracy(
        classes=results,
        overall=overall_accuracy(results),
        min_iou=float(config.min_iou),
        detections_counted=int(det_in.sum()),
        truths_counted=int(truth_in.sum()),
        detections_masked_out=int((~det_in).sum()),
        truths_masked_out=int((~truth_in).sum()),
        skipped=skipped,
    )
    if config.out_accuracy_table:
        write_csv(config.out_accuracy_table, DETECTION_FIELDS, accuracy.rows())
    if config.out_accuracy_report:
        from .report import write_detection_report

        write_detection_report(config.out_accuracy_report, accuracy, config)
    events.progress(100.0)
    return accuracy
