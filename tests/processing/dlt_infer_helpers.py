"""Helpers shared by the inference tests (imported by the test modules)."""

import importlib.util
import json
import stat
import sys

import pytest

from dlt_helpers import DATA, REPO, elevation

CLASSIFY_PIXELS_ALG = "deeplearningtools:classifypixelsusingdeeplearning"
DETECT_OBJECTS_ALG = "deeplearningtools:detectobjectsusingdeeplearning"
CLASSIFY_OBJECTS_ALG = "deeplearningtools:classifyobjectsusingdeeplearning"
FAKE_INFER_WORKER = DATA / "fake_infer_worker.py"


def engine_has_inference() -> bool:
    """Whether the inference engine has landed: ``dl_engine.infer`` offers ``run_inference``
    and the command line has its ``infer`` command (what the worker runs)."""
    try:
        import dl_engine.infer as infer

        has_run = importlib.util.find_spec("dl_engine.infer.run") is not None or hasattr(infer, "run_inference")
    except Exception:
        return False
    try:
        cli = (REPO / "dl_engine" / "cli.py").read_text(encoding="utf-8")
    except OSError:
        return False
    return has_run and ('"infer"' in cli or "'infer'" in cli)


# Tests that run the real engine start running the moment it exists.
needs_inference_engine = pytest.mark.skipif(
    not engine_has_inference(), reason="the inference engine (dl_engine.infer.run_inference) has not landed yet"
)


def fake_infer_python(folder, mode="ok"):
    """An executable standing in for the worker's Python (set DLT_PYTHON to it): it runs the
    fake inference worker in MODE with the arguments the runner passes."""
    script = folder / f"fake-infer-python-{mode}"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_INFER_WORKER}" {mode} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


# The classes of the fake model (what a trained .emd holds).
FAKE_CLASSES = [
    {"Value": 1, "Name": "Building", "Color": [230, 0, 0]},
    {"Value": 2, "Name": "Road", "Color": [0, 0, 230]},
]


def fake_model(folder, classes=None, name="model.emd"):
    """A .emd that passes the quick checks; the fake worker does not read it, the styling does."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({
        "Framework": "PyTorch", "ModelName": "UnetClassifier", "ModelFile": "model.pth",
        "Classes": FAKE_CLASSES if classes is None else classes,
    }))
    return str(path)


def run_alg(alg_id, params, feedback=None, context=None):
    import processing

    return processing.run(alg_id, params, feedback=feedback, context=context)


def dsm(data_dir):
    return elevation(data_dir)[0]


def buildings(data_dir):
    return elevation(data_dir)[1]


def train_buildings_model(data_dir, folder, tile=64, epochs=1):
    """Classified_Tiles of the elevation sample → UNET RESNET18 for one epoch on the CPU; the .dlpk."""
    from dlt_train_helpers import TRAIN_ALG, export_buildings, tiny_training_params

    chips = export_buildings(data_dir, folder / "chips", tile=tile)
    result = run_alg(TRAIN_ALG, tiny_training_params(chips, folder / "model", MAX_EPOCHS=epochs, FREEZE=False))
    return result["OUT_MODEL_FILE"]


def raster_grid(path):
    """(width, height, geotransform, WKT) of a raster file."""
    from osgeo import gdal

    dataset = gdal.Open(str(path))
    try:
        return dataset.RasterXSize, dataset.RasterYSize, dataset.GetGeoTransform(), dataset.GetProjection()
    finally:
        dataset = None


@pytest.fixture(scope="session")
def trained_buildings_dlpk(dlt_plugin, data_dir, tmp_path_factory):
    """One tiny UNET per test session (import this fixture into a test module to use it)."""
    _ensure_provider(dlt_plugin)
    return train_buildings_model(data_dir, tmp_path_factory.mktemp("buildings-model"))


def _ensure_provider(dlt_plugin):
    from qgis.core import QgsApplication

    from dlt_helpers import PROVIDER_ID

    if QgsApplication.processingRegistry().providerById(PROVIDER_ID) is None:
        dlt_plugin.initProcessing()


def _export_and_train(raster, labels, folder, metadata_format, model_type, tile):
    from qgis.core import QgsApplication

    from dlt_helpers import EXPORT_ALG, keyword_index
    from dlt_train_helpers import TRAIN_ALG, model_type_index, tiny_training_params

    export = QgsApplication.processingRegistry().algorithmById(EXPORT_ALG)
    chips = run_alg(EXPORT_ALG, {
        "IN_RASTER": str(raster), "IN_CLASS_DATA": str(labels), "OUT_FOLDER": str(folder / "chips"),
        "METADATA_FORMAT": keyword_index(export, "METADATA_FORMAT", metadata_format),
        "TILE_SIZE_X": tile, "TILE_SIZE_Y": tile, "STRIDE_X": tile // 2, "STRIDE_Y": tile // 2,
    })["OUT_FOLDER"]
    params = tiny_training_params(chips, folder / "model", MODEL_TYPE=model_type_index(model_type), FREEZE=False)
    return run_alg(TRAIN_ALG, params)["OUT_MODEL_FILE"]


def two_class_trees(data_dir, path, crs="EPSG:4326"):
    """The tree crowns of the trees sample as two classes (1 Tree, 2 Snag, alternating), in ``crs``:
    a GeoJSON file (a classifier needs two classes; another CRS than the raster's on purpose)."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsVectorLayer

    source = QgsVectorLayer(str(data_dir / "trees_osbs" / "trees.gpkg"), "trees", "ogr")
    target = QgsCoordinateReferenceSystem(crs)
    transform = QgsCoordinateTransform(source.crs(), target, QgsProject.instance())
    features = []
    for index, feature in enumerate(source.getFeatures()):
        geometry = feature.geometry()
        geometry.transform(transform)
        features.append({"type": "Feature", "geometry": json.loads(geometry.asJson(12)),
                         "properties": {"classvalue": 1 + index % 2, "classname": ["Tree", "Snag"][index % 2]}})
    epsg = target.authid().split(":")[1]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features, "crs": {
        "type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}}))
    return str(path)


@pytest.fixture(scope="session")
def trained_trees_detector(dlt_plugin, data_dir, tmp_path_factory):
    """RETINANET (RESNET18, one epoch) on PASCAL_VOC_rectangles of the trees sample."""
    _ensure_provider(dlt_plugin)
    folder = tmp_path_factory.mktemp("trees-detector")
    return _export_and_train(data_dir / "trees_osbs" / "OSBS_029.tif", data_dir / "trees_osbs" / "trees.gpkg",
                             folder, "PASCAL_VOC_rectangles", "RETINANET", 200)


@pytest.fixture(scope="session")
def trained_trees_classifier(dlt_plugin, data_dir, tmp_path_factory):
    """FEATURE_CLASSIFIER (RESNET18, one epoch) on Labeled_Tiles of the two-class tree crowns;
    returns (the .dlpk, the crowns as GeoJSON in EPSG:4326)."""
    _ensure_provider(dlt_plugin)
    folder = tmp_path_factory.mktemp("trees-classifier")
    labels = two_class_trees(data_dir, folder / "two_classes.geojson")
    model = _export_and_train(data_dir / "trees_osbs" / "OSBS_029.tif", labels, folder, "Labeled_Tiles",
                              "FEATURE_CLASSIFIER", 32)
    return model, labels
