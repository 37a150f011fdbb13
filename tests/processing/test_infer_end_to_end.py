"""Export → train → infer on the bundled sample data with the real engine (skipped until
``dl_engine.infer`` has landed): a tiny UNET (RESNET18, one epoch on the CPU) trained on the
Classified_Tiles of the elevation sample, then Classify Pixels Using Deep Learning on the DSM;
a RETINANET on the trees' PASCAL_VOC_rectangles, then Detect Objects; a FEATURE_CLASSIFIER on
the trees' Labeled_Tiles, then Classify Objects on the crowns (in another CRS); and the
engine's refusals (band count, model type) as messages that name the parameter."""

import re

import numpy as np
import pytest
from qgis.core import (
    NULL,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)

from dlt_helpers import read
from dlt_infer_helpers import (CLASSIFY_OBJECTS_ALG, CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG, dsm,  # noqa: F401
                               needs_inference_engine, raster_grid, run_alg, trained_buildings_dlpk,
                               trained_trees_classifier, trained_trees_detector)

pytestmark = [needs_inference_engine, pytest.mark.slow, pytest.mark.trains]  # the fixtures train the models


def emd_classes(model):
    from dl_engine.package.reader import open_package

    with open_package(model, "IN_MODEL_DEFINITION") as package:
        return package.classes


def nodata_of(path):
    from osgeo import gdal

    dataset = gdal.Open(str(path))
    try:
        return dataset.GetRasterBand(1).GetNoDataValue()
    finally:
        dataset = None


def test_classify_pixels_with_a_trained_model(provider, trained_buildings_dlpk, data_dir, tmp_path):
    out = tmp_path / "classified.tif"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    result = run_alg(CLASSIFY_PIXELS_ALG, {
        "IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": trained_buildings_dlpk, "DEVICE": "cpu",
        "OUT_CLASSIFIED_RASTER": QgsProcessingOutputLayerDefinition(str(out), QgsProject.instance()),
    }, feedback=feedback, context=context)
    assert result["OUT_CLASSIFIED_RASTER"] == str(out) and out.is_file()
    assert progress and progress[-1] == pytest.approx(100.0)

    # The input's grid and CRS.
    width, height, gt, _ = raster_grid(out)
    assert (width, height) == raster_grid(dsm(data_dir))[:2]
    assert gt == pytest.approx(raster_grid(dsm(data_dir))[2])
    layer = QgsRasterLayer(str(out), "classified", "gdal")
    source = QgsRasterLayer(dsm(data_dir), "dsm", "gdal")
    assert layer.crs() == source.crs()
    assert layer.extent().toString(3) == source.extent().toString(3)
    assert layer.bandCount() == 1

    # Class values from the emd (0 = background, and NoData).
    classes = emd_classes(trained_buildings_dlpk)
    assert classes
    values = set(np.unique(read(out)).tolist())
    allowed = {0} | {c["Value"] for c in classes} | {nodata_of(out)}
    assert values <= allowed, (values, allowed)

    # Styled with the model's classes when QGIS loads it.
    processor = context.layerToLoadOnCompletionDetails(str(out)).postProcessor()
    processor.postProcessLayer(layer, context, feedback)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label) for c in renderer.classes()] == [(c["Value"], c["Name"]) for c in classes]


def test_classify_pixels_extent_and_cell_size(provider, trained_buildings_dlpk, data_dir, tmp_path):
    source = QgsRasterLayer(dsm(data_dir), "dsm", "gdal")
    full = source.extent()
    xmin, ymin = full.xMinimum() + 100, full.yMinimum() + 100
    xmax, ymax = xmin + 200, ymin + 160
    out = tmp_path / "part.tif"
    run_alg(CLASSIFY_PIXELS_ALG, {
        "IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": trained_buildings_dlpk, "DEVICE": "cpu",
        "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [{source.crs().authid()}]", "CELL_SIZE": 4.0,
        "OUT_CLASSIFIED_RASTER": str(out),
    })
    width, height, gt, _ = raster_grid(out)
    assert gt[1] == pytest.approx(4.0) and gt[5] == pytest.approx(-4.0)
    assert (width, height) == (pytest.approx(50, abs=1), pytest.approx(40, abs=1))
    assert gt[0] == pytest.approx(xmin, abs=4.0) and gt[3] == pytest.approx(ymax, abs=4.0)
    assert QgsRasterLayer(str(out), "part", "gdal").crs() == source.crs()


def test_band_count_mismatch_names_the_parameter(provider, trained_buildings_dlpk, data_dir, tmp_path):
    """The model was trained on the one-band DSM; the RGB trees image has three bands."""
    out = tmp_path / "rgb.tif"
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(CLASSIFY_PIXELS_ALG, {
            "IN_RASTER": str(data_dir / "trees_osbs" / "OSBS_029.tif"), "IN_MODEL_DEFINITION": trained_buildings_dlpk,
            "DEVICE": "cpu", "OUT_CLASSIFIED_RASTER": str(out)})
    message = str(raised.value)
    assert re.search(r"\((IN_RASTER|IN_MODEL_DEFINITION)\): ", message), message
    assert "band" in message and "Traceback" not in message
    assert not out.exists()


@pytest.mark.parametrize("alg_id, output", [(DETECT_OBJECTS_ALG, "OUT_DETECTED_OBJECTS"),
                                            (CLASSIFY_OBJECTS_ALG, "OUT_FEATURE_CLASS")])
def test_pixel_model_refused_by_the_object_tools(provider, trained_buildings_dlpk, data_dir, tmp_path, alg_id,
                                                 output):
    out = tmp_path / "objects.gpkg"
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(alg_id, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": trained_buildings_dlpk,
                         "DEVICE": "cpu", output: str(out)})
    message = str(raised.value)
    assert "(IN_MODEL_DEFINITION): " in message, message
    assert "Traceback" not in message
    assert not out.exists()


def test_detect_objects_with_a_trained_detector(provider, trained_trees_detector, data_dir, tmp_path):
    raster = str(data_dir / "trees_osbs" / "OSBS_029.tif")
    out = tmp_path / "trees.gpkg"
    result = run_alg(DETECT_OBJECTS_ALG, {
        "IN_RASTER": raster, "IN_MODEL_DEFINITION": trained_trees_detector, "ARGUMENTS": "threshold 0.01",
        "RUN_NMS": True, "CLASS_VALUE_FIELD": "Species", "DEVICE": "cpu", "OUT_DETECTED_OBJECTS": str(out)})
    layer = QgsVectorLayer(result["OUT_DETECTED_OBJECTS"], "trees", "ogr")
    source = QgsRasterLayer(raster, "trees", "gdal")
    assert layer.isValid() and layer.crs() == source.crs()
    assert layer.geometryType() == QgsWkbTypes.PolygonGeometry
    assert [f.name() for f in layer.fields() if f.name() != "fid"] == ["Species", "ClassValue", "Confidence"]
    features = list(layer.getFeatures())
    assert features, "no detection at threshold 0.01"
    grown = source.extent().buffered(1.0)
    for feature in features:
        assert (feature["Species"], feature["ClassValue"]) == ("Tree", 1)
        assert 0 <= feature["Confidence"] <= 100
        assert grown.contains(feature.geometry().boundingBox())


def test_classify_objects_with_a_trained_classifier(provider, trained_trees_classifier, data_dir, tmp_path):
    model, crowns = trained_trees_classifier
    source = QgsVectorLayer(crowns, "crowns", "ogr")
    assert source.crs().authid() == "EPSG:4326"
    out = tmp_path / "crowns.gpkg"
    result = run_alg(CLASSIFY_OBJECTS_ALG, {
        "IN_RASTER": str(data_dir / "trees_osbs" / "OSBS_029.tif"), "IN_FEATURES": crowns,
        "IN_MODEL_DEFINITION": model, "DEVICE": "cpu", "OUT_FEATURE_CLASS": str(out)})
    layer = QgsVectorLayer(result["OUT_FEATURE_CLASS"], "crowns", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326"
    assert [f.name() for f in layer.fields() if f.name() != "fid"] == ["classvalue", "classname", "ClassLabel",
                                                                       "Confidence"]
    assert layer.featureCount() == source.featureCount() == 61
    originals = sorted((f["classvalue"], f["classname"], f.geometry().centroid().asWkt(6))
                       for f in source.getFeatures())
    got = sorted((f["classvalue"], f["classname"], f.geometry().centroid().asWkt(6)) for f in layer.getFeatures())
    assert got == originals  # the input's attributes and geometries, in the input's CRS
    for feature in layer.getFeatures():
        assert feature["ClassLabel"] in ("Tree", "Snag")
        assert feature["Confidence"] != NULL and 0 <= feature["Confidence"] <= 100


def test_classify_objects_tiles_with_a_trained_classifier(provider, trained_trees_classifier, data_dir):
    model, _ = trained_trees_classifier
    raster = str(data_dir / "trees_osbs" / "OSBS_029.tif")
    layer = run_alg(CLASSIFY_OBJECTS_ALG, {"IN_RASTER": raster, "IN_MODEL_DEFINITION": model, "DEVICE": "cpu",
                                           "ARGUMENTS": "tile_size 100", "OUT_FEATURE_CLASS": "memory:"})[
        "OUT_FEATURE_CLASS"]
    assert layer.crs() == QgsRasterLayer(raster, "trees", "gdal").crs()
    assert layer.featureCount() == 16  # 400 x 400 px in 100 px tiles
    assert {f["ClassLabel"] for f in layer.getFeatures()} <= {"Tree", "Snag"}


class CancelWhenTiling(QgsProcessingFeedback):
    """Cancels at the first progress past loading the model (the worker is tiling by then)."""

    def __init__(self):
        super().__init__()
        self.canceled_at = None
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value):
        if 0 < value < 100 and self.canceled_at is None:
            import time

            self.canceled_at = time.monotonic()
            self.cancel()


def test_cancel_stops_the_real_worker(provider, trained_buildings_dlpk, data_dir, tmp_path):
    import time

    out = tmp_path / "canceled.tif"
    feedback = CancelWhenTiling()
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(CLASSIFY_PIXELS_ALG, {
            "IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": trained_buildings_dlpk, "DEVICE": "cpu",
            "ARGUMENTS": "batch_size 1", "OUT_CLASSIFIED_RASTER": str(out)}, feedback=feedback)
    assert feedback.canceled_at is not None
    assert time.monotonic() - feedback.canceled_at < 2.0
    assert str(raised.value).startswith("Classify Pixels Using Deep Learning canceled")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".canceled")] == []  # no partial file
