"""Compute Accuracy For Object Detection's engine (dl_engine.accuracy.detection) against figures
computed by hand on synthetic boxes, and AP against an independent implementation of PASCAL VOC's
all-point interpolation (the loop of the VOC development kit)."""

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from dl_engine.accuracy.config import (DETECTION_FIELDS, DetectedObject, DetectionAccuracyConfig, TruthObject)
from dl_engine.accuracy.detection import average_precision, compute_detection_accuracy, match
from dl_engine.errors import InputError


def truth(*boxes, cls="1"):
    return [TruthObject(box(*b).wkb, cls) for b in boxes]


def detected(*items, cls="1"):
    return [DetectedObject(box(*b).wkb, cls, conf) for b, conf in items]


def run(detections, truths, **kwargs):
    return compute_detection_accuracy(DetectionAccuracyConfig(detections, truths, **kwargs))


def row(accuracy, cls):
    return next(r for r in accuracy.rows() if r["Class"] == cls)


# Three objects; four detections: an exact hit, a duplicate of it, a hit at IoU exactly 0.5, a miss.
GT3 = truth((0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10))
DET4 = detected(((0, 0, 10, 10), 0.9), ((1, 0, 11, 10), 0.8), ((20, 0, 30, 5), 0.7), ((60, 0, 70, 10), 0.6))


def test_hand_computed_counts_and_ap():
    a = run(DET4, GT3)
    r = row(a, "1")
    assert (r["True_Positive"], r["False_Positive"], r["False_Negative"]) == (2, 2, 1)
    assert r["Precision"] == pytest.approx(0.5)
    assert r["Recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert r["F1_Score"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), abs=1e-6)
    # PR points (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2): AP = 1/3 · 1 + 1/3 · 2/3 = 5/9
    assert r["AP"] == pytest.approx(5 / 9, abs=1e-6)
    assert [x["Class"] for x in a.rows()] == ["1", "All"]
    assert list(a.rows()[0]) == list(DETECTION_FIELDS)
    c = a.classes[0]
    assert c.recall_curve == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert c.precision_curve == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2])


def test_min_iou_decides_the_match():
    strict = row(run(DET4, GT3, min_iou=0.6), "1")  # the IoU 0.5 detection is no longer a hit
    assert (strict["True_Positive"], strict["False_Positive"], strict["False_Negative"]) == (1, 3, 2)
    loose = row(run(DET4, GT3, min_iou=0.49), "1")
    assert loose["True_Positive"] == 2


def test_greedy_by_confidence_and_best_unmatched_object():
    gt = truth((0, 0, 10, 10))
    # The confident detection (IoU 0.6) takes the object; the better-placed one (IoU 1) comes later: FP.
    dets = detected(((0, 0, 10, 6), 0.9), ((0, 0, 10, 10), 0.5))
    order, tp, matched = match([box(0, 0, 10, 6), box(0, 0, 10, 10)], [0.9, 0.5], [box(0, 0, 10, 10)], 0.5)
    assert list(order) == [0, 1] and list(tp) == [True, False]
    r = row(run(dets, gt), "1")
    assert (r["True_Positive"], r["False_Positive"]) == (1, 1)
    # A detection over two objects goes to the one it overlaps most; the next one takes the other.
    gt2 = truth((0, 0, 10, 10), (8, 0, 18, 10))
    order, tp, matched = match([box(7, 0, 17, 10), box(0, 0, 10, 10)], [0.9, 0.8],
                               [box(0, 0, 10, 10), box(8, 0, 18, 10)], 0.5)
    assert list(matched) == [1, 0] and tp.all()
    assert row(run(detected(((7, 0, 17, 10), 0.9), ((0, 0, 10, 10), 0.8)), gt2), "1")["True_Positive"] == 2


def test_classes_on_one_side_only_and_the_overall_row():
    gt = truth((0, 0, 10, 10), (20, 0, 30, 10)) + truth((40, 0, 50, 10), cls="3")
    dets = (detected(((0, 0, 10, 10), 0.9)) + detected(((20, 0, 30, 10), 0.8), cls="2")
            + detected(((40, 0, 50, 10), 0.7), cls="2"))
    a = run(dets, gt)
    assert [r["Class"] for r in a.rows()] == ["1", "2", "3", "All"]
    r1, r2, r3, total = a.rows()
    assert (r1["True_Positive"], r1["False_Positive"], r1["False_Negative"]) == (1, 0, 1)
    assert r1["AP"] == pytest.approx(0.5) and r1["Recall"] == pytest.approx(0.5)
    # detected only: every detection a false positive; precision, recall, F1 and AP 0
    assert (r2["True_Positive"], r2["False_Positive"], r2["False_Negative"]) == (0, 2, 0)
    assert (r2["Precision"], r2["Recall"], r2["F1_Score"], r2["AP"]) == (0, 0, 0, 0)
    # ground truth only: every object a false negative
    assert (r3["True_Positive"], r3["False_Positive"], r3["False_Negative"]) == (0, 0, 1)
    assert (r3["Precision"], r3["Recall"], r3["AP"]) == (0, 0, 0)
    # All: sums; AP the mean over the classes with ground truth (1 and 3)
    assert (total["True_Positive"], total["False_Positive"], total["False_Negative"]) == (1, 2, 2)
    assert total["Precision"] == pytest.approx(1 / 3, abs=1e-6) and total["Recall"] == pytest.approx(1 / 3, abs=1e-6)
    assert total["AP"] == pytest.approx((0.5 + 0) / 2)


def test_without_confidence_ap_is_precision_times_recall():
    dets = [DetectedObject(box(*b).wkb) for b in ((0, 0, 10, 10), (60, 0, 70, 10), (20, 0, 30, 10))]
    r = row(run(dets, GT3, has_confidence=False), "1")
    assert (r["True_Positive"], r["False_Positive"], r["False_Negative"]) == (2, 1, 1)
    assert r["AP"] == pytest.approx((2 / 3) * (2 / 3), abs=1e-6)


def test_polygons_not_just_boxes():
    triangle = Polygon([(0, 0), (10, 0), (0, 10)])
    square = box(0, 0, 10, 10)  # IoU with the triangle: 50 / 100
    a = compute_detection_accuracy(DetectionAccuracyConfig([DetectedObject(triangle.wkb, "1", 1.0)],
                                                           [TruthObject(square.wkb, "1")], min_iou=0.5))
    assert row(a, "1")["True_Positive"] == 1
    a = compute_detection_accuracy(DetectionAccuracyConfig([DetectedObject(triangle.wkb, "1", 1.0)],
                                                           [TruthObject(square.wkb, "1")], min_iou=0.51))
    assert row(a, "1")["True_Positive"] == 0


def test_mask_counts_objects_by_their_centroid():
    mask = [box(-1, -1, 26, 11).wkb]  # holds the centroids (5, 5) and (25, 5) of the first two objects
    a = run(DET4, GT3, mask_wkb=mask)
    r = row(a, "1")
    # left out: the object at 40–50 and the detection at 60–70
    assert (r["True_Positive"], r["False_Positive"], r["False_Negative"]) == (2, 1, 0)
    assert a.truths_masked_out == 1 and a.detections_masked_out == 1
    # a centroid on the mask's boundary counts
    edge = run(DET4, GT3, mask_wkb=[box(-1, -1, 25, 11).wkb])
    assert edge.truths_counted == 2


def voc_ap_reference(tp_flags, n_truth):
    """The VOC devkit's all-point AP (VOCevalcls/VOCevaldet, 2010+), written as its loops."""
    tp = np.cumsum(tp_flags).astype(float)
    fp = np.cumsum(~np.asarray(tp_flags)).astype(float)
    rec = tp / n_truth
    prec = tp / (tp + fp)
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def test_ap_matches_the_voc_devkit_on_random_boxes():
    rng = np.random.default_rng(3)
    for trial in range(5):
        corners = rng.uniform(0, 200, size=(25, 2))
        truths = [box(x, y, x + 12, y + 12) for x, y in corners]
        dets, conf = [], []
        for x, y in corners[rng.random(25) < 0.8]:
            dx, dy = rng.normal(0, 3, 2)
            dets.append(box(x + dx, y + dy, x + dx + 12, y + dy + 12))
            conf.append(float(rng.random()))
        for x, y in rng.uniform(0, 200, size=(6, 2)):
            dets.append(box(x, y, x + 12, y + 12))
            conf.append(float(rng.random()))
        a = compute_detection_accuracy(DetectionAccuracyConfig(
            [DetectedObject(d.wkb, "1", c) for d, c in zip(dets, conf)], [TruthObject(t.wkb, "1") for t in truths]))
        order, tp, _ = match(dets, conf, truths, 0.5)
        assert a.classes[0].ap == pytest.approx(voc_ap_reference(tp, len(truths)), abs=1e-12)
        assert a.classes[0].true_positive == int(tp.sum())


def test_average_precision_edges():
    assert average_precision([], []) == 0
    assert average_precision([1.0], [1.0]) == 1
    assert average_precision([0.5], [1.0]) == 0.5


@pytest.mark.parametrize("change, parameter", [
    (dict(ground_truth=[]), "GROUND_TRUTH_FEATURES"),
    (dict(detections=[]), "DETECTED_FEATURES"),
    (dict(min_iou=0.0), "MIN_IOU"),
    (dict(min_iou=1.5), "MIN_IOU"),
    (dict(out_accuracy_report="/tmp/report.docx"), "OUT_ACCURACY_REPORT"),
    (dict(mask_wkb=[box(500, 500, 600, 600).wkb]), "MASK_FEATURES"),
    (dict(mask_wkb=[]), "MASK_FEATURES"),
])
def test_bad_input_names_the_parameter(change, parameter):
    settings = dict(detections=DET4, ground_truth=GT3)
    settings.update(change)
    with pytest.raises(InputError) as caught:
        compute_detection_accuracy(DetectionAccuracyConfig(**settings))
    assert caught.value.parameter == parameter


def test_points_are_refused():
    from shapely.geometry import Point

    with pytest.raises(InputError) as caught:
        run(DET4, [TruthObject(Point(1, 1).wkb)])
    assert caught.value.parameter == "GROUND_TRUTH_FEATURES" and "polygons" in caught.value.message


@pytest.mark.parametrize("extension", [".html", ".pdf"])
def test_table_csv_and_report(tmp_path, extension):
    table = tmp_path / "accuracy.csv"
    report = tmp_path / f"report{extension}"
    run(DET4, GT3, out_accuracy_table=str(table), out_accuracy_report=str(report))
    lines = table.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(DETECTION_FIELDS)
    assert lines[1] == "1,0.5,0.666667,0.571429,0.555556,2,2,1"
    assert lines[2].startswith("All,")
    data = report.read_bytes()
    if extension == ".pdf":
        assert data.startswith(b"%PDF")
    else:
        text = data.decode("utf-8")
        assert "data:image/png;base64," in text and "all-point" in text and "0.555556" in text
