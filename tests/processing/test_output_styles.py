"""The inference tools' outputs load looking finished (issue 17 item 1): named after the model
and the raster, detections as outlines in the model's class colours labelled with class and
confidence, classified objects categorised by their label, classified pixels paletted; and
"nothing detected" says which threshold was used and how to lower it. Run with the fake
inference worker (tests/data/fake_infer_worker.py) through DLT_PYTHON."""

import zipfile

import pytest
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsExpression,
    QgsExpressionContext,
    QgsExpressionContextUtils,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt

from dlt_infer_helpers import (CLASSIFY_OBJECTS_ALG, CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG, dsm, fake_infer_python,
                               fake_model, run_alg)

# The fake worker's detections are Tree (two) and Car; its classified objects Building and Shed.
TREE_CLASSES = [{"Value": 1, "Name": "Tree", "Color": [0, 168, 0]},
                {"Value": 2, "Name": "Car", "Color": [255, 0, 197]}]
OBJECT_CLASSES = [{"Value": 1, "Name": "Building", "Color": [230, 0, 0]},
                  {"Value": 2, "Name": "Shed", "Color": [255, 170, 0]}]


@pytest.fixture
def fake_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path))


def run_loading(alg_id, params, output, path):
    """Run as the Toolbox does with "Open output file after running": the output goes to the
    project, its post-processor applied. Returns (loaded layer, feedback); the caller removes it."""
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = Feedback()
    params = dict(params, **{output: QgsProcessingOutputLayerDefinition(str(path), QgsProject.instance())})
    result = run_alg(alg_id, params, feedback=feedback, context=context)
    destination = result[output]
    assert context.willLoadLayerOnCompletion(destination)
    details = context.layerToLoadOnCompletionDetails(destination)
    if output == "OUT_CLASSIFIED_RASTER":
        layer = QgsRasterLayer(destination, "as the file is called", "gdal")
    else:
        layer = QgsVectorLayer(destination, "as the file is called", "ogr")
    assert layer.isValid()
    details.setOutputLayerName(layer)  # what QGIS's Postprocessing does, then the post-processor
    details.postProcessor().postProcessLayer(layer, context, feedback)
    return layer, feedback


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.warnings = [], []

    def pushInfo(self, text):  # noqa: N802
        self.infos.append(text)
        super().pushInfo(text)

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)
        super().pushWarning(text)


def rgb(color):
    return color.getRgb()[:3]


def label_text(layer, feature):
    settings = layer.labeling().settings()
    assert settings.isExpression
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    context.setFeature(feature)
    return QgsExpression(settings.fieldName).evaluate(context)


def test_detections_are_outlines_in_the_class_colours_labelled_with_class_and_confidence(
        provider, data_dir, tmp_path, fake_worker):
    model = fake_model(tmp_path / "m", TREE_CLASSES, name="trees.emd")
    layer, _ = run_loading(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model},
                           "OUT_DETECTED_OBJECTS", tmp_path / "detections.gpkg")
    assert layer.name() == "trees.emd — Detected objects on dsm"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "Class"
    categories = {c.value(): c for c in renderer.categories()}
    assert set(categories) == {"Tree", "Car"}
    for entry in TREE_CLASSES:
        symbol_layer = categories[entry["Name"]].symbol().symbolLayer(0)
        assert symbol_layer.brushStyle() == Qt.NoBrush  # outlines only: the imagery stays visible
        assert rgb(symbol_layer.strokeColor()) == tuple(entry["Color"])
        assert categories[entry["Name"]].label() == entry["Name"]
    assert layer.labelsEnabled()
    texts = sorted(label_text(layer, f) for f in layer.getFeatures())
    assert texts == ["Car 70%", "Tree 55%", "Tree 92%"]


def test_detections_with_renamed_fields_and_a_project_load(provider, data_dir, tmp_path, fake_worker):
    """runAndLoadResults, as the Toolbox dialog runs it: the layer in the project carries the
    name (not the file's) and the style; CLASS_VALUE_FIELD / CONFIDENCE_SCORE_FIELD are followed."""
    import processing

    model = fake_model(tmp_path / "m", TREE_CLASSES, name="trees.dlpk.emd")
    project = QgsProject.instance()
    before = set(project.mapLayers())
    try:
        processing.runAndLoadResults(DETECT_OBJECTS_ALG, {
            "IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model, "CLASS_VALUE_FIELD": "Label",
            "CONFIDENCE_SCORE_FIELD": "Score", "OUT_DETECTED_OBJECTS": str(tmp_path / "boxes.gpkg")})
        added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
        assert [layer.name() for layer in added] == ["trees.dlpk.emd — Detected objects on dsm"]
        layer = added[0]
        assert layer.renderer().classAttribute() == "Label"
        assert sorted(label_text(layer, f) for f in layer.getFeatures())[0] == "Car 70%"
    finally:
        project.removeMapLayers(list(set(project.mapLayers()) - before))


def test_memory_detections_come_back_styled(provider, data_dir, tmp_path, fake_worker):
    """processing.run hands a memory output back as the layer: named and styled already."""
    model = fake_model(tmp_path / "m", TREE_CLASSES, name="trees.emd")
    result = run_alg(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model,
                                          "OUT_DETECTED_OBJECTS": "memory:"})
    layer = result["OUT_DETECTED_OBJECTS"]
    assert layer.name() == "trees.emd — Detected objects on dsm"
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer) and layer.labelsEnabled()


def test_a_model_without_classes_gets_one_outline_colour(provider, data_dir, tmp_path, fake_worker):
    model = fake_model(tmp_path / "m", [], name="bare.emd")
    layer, _ = run_loading(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model},
                           "OUT_DETECTED_OBJECTS", tmp_path / "detections.gpkg")
    assert isinstance(layer.renderer(), QgsSingleSymbolRenderer)
    assert layer.renderer().symbol().symbolLayer(0).brushStyle() == Qt.NoBrush
    assert layer.labelsEnabled()


def test_dlpk_classes_are_read_from_the_package(provider, data_dir, tmp_path, fake_worker):
    emd = fake_model(tmp_path / "m", TREE_CLASSES, name="trees.emd")
    dlpk = tmp_path / "trees.dlpk"
    with zipfile.ZipFile(dlpk, "w") as zf:
        zf.write(emd, "trees.emd")
        zf.writestr("trees.pth", b"weights stay packed")
    layer, _ = run_loading(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": str(dlpk)},
                           "OUT_DETECTED_OBJECTS", tmp_path / "detections.gpkg")
    assert layer.name() == "trees.dlpk — Detected objects on dsm"
    assert {c.value(): rgb(c.symbol().symbolLayer(0).strokeColor()) for c in layer.renderer().categories()} == {
        c["Name"]: tuple(c["Color"]) for c in TREE_CLASSES}


def test_nothing_detected_gives_the_threshold_and_how_to_lower_it(provider, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path, "empty"))
    feedback = Feedback()
    run_alg(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path / "m"),
                                 "ARGUMENTS": "threshold 0.8", "OUT_DETECTED_OBJECTS": "memory:"}, feedback=feedback)
    assert any("0 objects detected" in line for line in feedback.infos)
    [warning] = [w for w in feedback.warnings if "No objects detected" in w]
    assert "threshold 0.8" in warning and "ARGUMENTS 'threshold 0.4'" in warning

    feedback = Feedback()  # the default threshold, when ARGUMENTS does not give one
    run_alg(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path / "m"),
                                 "OUT_DETECTED_OBJECTS": "memory:"}, feedback=feedback)
    [warning] = [w for w in feedback.warnings if "No objects detected" in w]
    assert "threshold 0.5" in warning and "ARGUMENTS 'threshold 0.25'" in warning


def test_classified_objects_are_categorised_by_their_label(provider, data_dir, tmp_path, fake_worker):
    model = fake_model(tmp_path / "m", OBJECT_CLASSES, name="houses.emd")
    layer, _ = run_loading(CLASSIFY_OBJECTS_ALG, {
        "IN_RASTER": str(data_dir / "trees_osbs" / "OSBS_029.tif"),
        "IN_FEATURES": str(data_dir / "trees_osbs" / "trees.gpkg"), "IN_MODEL_DEFINITION": model},
        "OUT_FEATURE_CLASS", tmp_path / "classified.gpkg")
    assert layer.name() == "houses.emd — Classified objects on OSBS_029"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "ClassLabel"
    assert [(c.value(), c.label(), rgb(c.symbol().color())) for c in renderer.categories()] == [
        (c["Name"], c["Name"], tuple(c["Color"])) for c in OBJECT_CLASSES]
    # every label the model gave has its category
    assert {f["ClassLabel"] for f in layer.getFeatures() if f["ClassLabel"]} <= {c["Name"] for c in OBJECT_CLASSES}


def test_classified_pixels_are_named_and_paletted(provider, data_dir, tmp_path, fake_worker):
    model = fake_model(tmp_path / "m", OBJECT_CLASSES, name="landcover.emd")
    layer, _ = run_loading(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model},
                           "OUT_CLASSIFIED_RASTER", tmp_path / "classified.tif")
    assert layer.name() == "landcover.emd — Classified pixels on dsm"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, rgb(c.color)) for c in renderer.classes()] == [
        (c["Value"], c["Name"], tuple(c["Color"])) for c in OBJECT_CLASSES]


def test_accuracy_points_show_agreement(provider, tmp_path):
    """Compute Accuracy For Pixel Classification's OUT_POINTS: green where the classification
    agrees with the ground truth, red where not; named after the raster."""
    from osgeo import gdal, osr

    def raster(path, values):
        dataset = gdal.GetDriverByName("GTiff").Create(str(path), 40, 30, 1, gdal.GDT_Byte)
        dataset.SetGeoTransform((500000.0, 2.0, 0.0, 3000000.0, 0.0, -2.0))
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(32617)
        dataset.SetProjection(srs.ExportToWkt())
        band = dataset.GetRasterBand(1)
        band.WriteArray(values)
        band.SetNoDataValue(0)
        dataset = None
        return str(path)

    import numpy as np

    values = np.ones((30, 40), dtype="uint8")
    values[:, 20:] = 2
    truth = values.copy()
    truth[10:20, :] = 2
    layer, _ = run_loading("deeplearningtools:computeaccuracyforpixelclassification", {
        "IN_RASTER": raster(tmp_path / "landcover.tif", values),
        "IN_GROUND_TRUTH_DATA": raster(tmp_path / "truth.tif", truth), "NUM_RANDOM_POINTS": 40,
        "OUT_CONFUSION_MATRIX": str(tmp_path / "matrix.csv")}, "OUT_POINTS", tmp_path / "points.gpkg")
    assert layer.name() == "Accuracy assessment points on landcover"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == '"Classified" = "GrndTruth"'
    context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    colors = {}
    for feature in layer.getFeatures():
        context.setFeature(feature)
        category = renderer.categories()[renderer.categoryIndexForValue(
            QgsExpression(renderer.classAttribute()).evaluate(context))]
        colors[feature["Classified"] == feature["GrndTruth"]] = (category.label(), rgb(category.symbol().color()))
    assert colors == {True: ("agrees with the ground truth", (26, 150, 65)),
                      False: ("differs from the ground truth", (215, 25, 28))}
