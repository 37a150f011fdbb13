"""Headless inference: the inference algorithms through ``qgis_process``.

Reuses the set-up of test_qgis_process.py (temporary profile, plugin enabled). With a fake
worker (DLT_PYTHON) the plumbing runs always; with the real engine (once it has landed) a
model trained in this session classifies the DSM.
"""

import json
import os

import pytest

from dlt_infer_helpers import (CLASSIFY_OBJECTS_ALG, CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG,  # noqa: F401
                               buildings, dsm, fake_infer_python, fake_model, needs_inference_engine, raster_grid,
                               trained_buildings_dlpk)
from test_qgis_process import QGIS_PROCESS, qgis_process, qgis_process_env  # noqa: F401 (fixture)
from test_qgis_process_train import results_of

# Each test starts qgis_process (about a second): make test runs them; make test-fast keeps the export's
# qgis_process tests (test_qgis_process.py) as its headless check.
pytestmark = [pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed"),
              pytest.mark.heavy]


@pytest.mark.parametrize("alg_id, names", [
    (CLASSIFY_PIXELS_ALG, ["IN_RASTER", "IN_MODEL_DEFINITION", "ARGUMENTS", "PROCESSING_MODE", "EXTENT",
                           "CELL_SIZE", "DEVICE", "OUT_CLASSIFIED_RASTER", "PROCESS_AS_MOSAICKED_IMAGE"]),
    (DETECT_OBJECTS_ALG, ["RUN_NMS", "CONFIDENCE_SCORE_FIELD", "CLASS_VALUE_FIELD", "MAX_OVERLAP_RATIO",
                          "OUT_DETECTED_OBJECTS"]),
    (CLASSIFY_OBJECTS_ALG, ["IN_FEATURES", "CLASS_LABEL_FIELD", "OUT_FEATURE_CLASS"]),
])
def test_help_lists_the_parameters(qgis_process_env, alg_id, names):
    described = qgis_process(qgis_process_env, "help", alg_id)
    assert described.returncode == 0, described.stderr
    for name in names:
        assert name in described.stdout, name


def test_missing_model_names_the_parameter(qgis_process_env, data_dir, tmp_path):
    out = tmp_path / "classified.tif"
    result = qgis_process(qgis_process_env, "run", CLASSIFY_PIXELS_ALG, "--", f"IN_RASTER={dsm(data_dir)}",
                          f"IN_MODEL_DEFINITION={tmp_path / 'nope.dlpk'}", f"OUT_CLASSIFIED_RASTER={out}")
    assert result.returncode != 0
    assert "IN_MODEL_DEFINITION" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()


def test_classify_pixels_with_a_fake_worker(qgis_process_env, data_dir, tmp_path):
    env = dict(qgis_process_env, DLT_PYTHON=fake_infer_python(tmp_path), FAKE_INFER_RECORD=str(tmp_path / "record"))
    out = tmp_path / "classified.tif"
    results = results_of(qgis_process(
        env, "--json", "run", CLASSIFY_PIXELS_ALG, "--", f"IN_RASTER={dsm(data_dir)}",
        f"IN_MODEL_DEFINITION={fake_model(tmp_path / 'model')}", "ARGUMENTS=batch_size 2", "PROCESSING_MODE=0",
        "DEVICE=cpu", f"OUT_CLASSIFIED_RASTER={out}"))
    assert results["OUT_CLASSIFIED_RASTER"] == str(out)
    assert raster_grid(out)[:3] == raster_grid(dsm(data_dir))[:3]
    assert (tmp_path / "classified.qml").is_file()  # the model's classes as the raster's default style
    config = json.loads((tmp_path / "record" / "config.json").read_text())
    assert (config["tool"], config["arguments"], config["device"]) == ("classify_pixels", "batch_size 2", "cpu")


def test_detect_and_classify_objects_with_a_fake_worker(qgis_process_env, data_dir, tmp_path):
    from qgis.core import QgsVectorLayer

    env = dict(qgis_process_env, DLT_PYTHON=fake_infer_python(tmp_path))
    model = fake_model(tmp_path / "model")
    detections = results_of(qgis_process(
        env, "--json", "run", DETECT_OBJECTS_ALG, "--", f"IN_RASTER={dsm(data_dir)}", f"IN_MODEL_DEFINITION={model}",
        "RUN_NMS=true", f"OUT_DETECTED_OBJECTS={tmp_path / 'detections.gpkg'}"))["OUT_DETECTED_OBJECTS"]
    layer = QgsVectorLayer(detections, "detections", "ogr")
    assert layer.featureCount() == 3
    assert [f.name() for f in layer.fields()][-3:] == ["Class", "ClassValue", "Confidence"]
    classified = results_of(qgis_process(
        env, "--json", "run", CLASSIFY_OBJECTS_ALG, "--", f"IN_RASTER={dsm(data_dir)}",
        f"IN_FEATURES={buildings(data_dir)}", f"IN_MODEL_DEFINITION={model}",
        f"OUT_FEATURE_CLASS={tmp_path / 'classified.gpkg'}"))["OUT_FEATURE_CLASS"]
    layer = QgsVectorLayer(classified, "classified", "ogr")
    assert layer.featureCount() == 84 and layer.crs().authid() == "EPSG:4326"
    assert [f.name() for f in layer.fields()][-2:] == ["ClassLabel", "Confidence"]


@pytest.mark.trains
@needs_inference_engine
@pytest.mark.slow
def test_qgis_process_classify_pixels(qgis_process_env, trained_buildings_dlpk, data_dir, tmp_path):
    out = tmp_path / "classified.tif"
    results = results_of(qgis_process(
        qgis_process_env, "--json", "run", CLASSIFY_PIXELS_ALG, "--", f"IN_RASTER={dsm(data_dir)}",
        f"IN_MODEL_DEFINITION={trained_buildings_dlpk}", "DEVICE=cpu", f"OUT_CLASSIFIED_RASTER={out}"))
    assert results["OUT_CLASSIFIED_RASTER"] == str(out)
    width, height, gt, wkt = raster_grid(out)
    source = raster_grid(dsm(data_dir))
    assert (width, height) == source[:2] and gt == pytest.approx(source[2])
    assert (tmp_path / "classified.qml").is_file()
