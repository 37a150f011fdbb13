"""The accuracy tools' job (QGIS's process → the worker) keeps every value and polygon, and the
worker's result carries what the algorithms write (table rows, headline figures, sample points)."""

import json

from shapely.geometry import box

from dl_engine.accuracy.config import (DetectedObject, DetectionAccuracyConfig, PixelAccuracyConfig, PolygonTruth,
                                       TruthObject)
from dl_engine.accuracy.job import read_job, result_fields, result_points, write_job


def test_a_pixel_job_with_polygons_reads_back_equal(tmp_path):
    config = PixelAccuracyConfig(in_raster="/data/classified.tif",
                                 ground_truth=PolygonTruth(wkb=[box(0, 0, 1, 1).wkb, box(2, 2, 3, 3).wkb],
                                                           values=[1, 7]),
                                 num_random_points=321, sampling="RANDOM", min_point_distance=2.5, random_seed=9)
    assert read_job(write_job(str(tmp_path), config)) == config


def test_a_pixel_job_with_a_truth_raster_reads_back_equal(tmp_path):
    config = PixelAccuracyConfig(in_raster="/data/classified.tif", ground_truth="/data/truth.tif",
                                 sampling="ALL_PIXELS")
    assert read_job(write_job(str(tmp_path), config)) == config


def test_a_detection_job_keeps_classes_confidences_and_the_mask(tmp_path):
    config = DetectionAccuracyConfig(
        detections=[DetectedObject(box(0, 0, 1, 1).wkb, "Tree", 0.91), DetectedObject(box(5, 5, 6, 6).wkb, "Car", 0.4)],
        ground_truth=[TruthObject(box(0, 0, 1.1, 1).wkb, "Tree")],
        min_iou=0.3, mask_wkb=[box(-1, -1, 10, 10).wkb], out_accuracy_report="/out/report.html", crs="EPSG:32618",
        has_confidence=True)
    assert read_job(write_job(str(tmp_path), config)) == config


def test_the_pixel_result_is_json_with_the_table_and_points(tmp_path):
    import numpy as np

    from dl_engine.accuracy.pixels import ConfusionMatrix, PixelAccuracy, SamplePoint

    matrix = ConfusionMatrix.from_pairs({(1, 1): 8, (1, 2): 2, (2, 2): 10}, [1, 2])
    result = PixelAccuracy(matrix=matrix, points=[SamplePoint(x=np.float64(10.5), y=20.5, row=1, col=2,
                                                               classified=1, reference=2)],
                           sampling="RANDOM", pixels_counted=20)
    fields = json.loads(json.dumps(result_fields(result), default=lambda v: v.tolist()))
    assert fields["fields"] == matrix.fields() and len(fields["rows"]) == len(matrix.rows())
    assert fields["overall_accuracy"] == 0.9 and fields["total"] == 20
    assert result_points(fields) == [(10.5, 20.5, 1, 2)]
