"""The inference algorithms through processing.run: the INTERFACE parameters, quick checks
that name the parameter, and (with a fake worker set through DLT_PYTHON) what reaches the
engine, how its outputs become QGIS outputs (styled raster, feature sinks with their fields,
CRS and geometries), engine refusals and cancel."""

import json
import os
import time

import pytest
from qgis.core import (
    NULL,
    QgsApplication,
    QgsCoordinateReferenceSystem,
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

from dlt_helpers import keyword_index
from dlt_infer_helpers import (CLASSIFY_OBJECTS_ALG, CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG, FAKE_CLASSES, buildings,
                               dsm, fake_infer_python, fake_model, raster_grid, run_alg)

INTERFACE = {
    CLASSIFY_PIXELS_ALG: (
        "Classify Pixels Using Deep Learning",
        ["IN_RASTER", "IN_MODEL_DEFINITION", "ARGUMENTS", "PROCESSING_MODE", "EXTENT", "CELL_SIZE", "DEVICE",
         "OUT_CLASSIFIED_RASTER"],
        ["padding", "batch_size", "predict_background", "test_time_augmentation", "tile_size"],
    ),
    DETECT_OBJECTS_ALG: (
        "Detect Objects Using Deep Learning",
        ["IN_RASTER", "IN_MODEL_DEFINITION", "ARGUMENTS", "RUN_NMS", "CONFIDENCE_SCORE_FIELD", "CLASS_VALUE_FIELD",
         "MAX_OVERLAP_RATIO", "PROCESSING_MODE", "EXTENT", "DEVICE", "OUT_DETECTED_OBJECTS"],
        ["padding", "threshold", "nms_overlap", "batch_size", "exclude_pad_detections", "tile_size"],
    ),
    CLASSIFY_OBJECTS_ALG: (
        "Classify Objects Using Deep Learning",
        ["IN_RASTER", "IN_FEATURES", "IN_MODEL_DEFINITION", "ARGUMENTS", "CLASS_LABEL_FIELD", "DEVICE",
         "OUT_FEATURE_CLASS"],
        ["batch_size", "tile_size"],
    ),
}
OPTIONAL = {"ARGUMENTS", "EXTENT", "CELL_SIZE", "IN_FEATURES"}


def algorithm(alg_id):
    return QgsApplication.processingRegistry().algorithmById(alg_id)


@pytest.mark.parametrize("alg_id", list(INTERFACE))
def test_interface(provider, alg_id):
    display, names, arguments = INTERFACE[alg_id]
    alg = algorithm(alg_id)
    assert alg is not None
    assert alg.displayName() == display
    assert alg.group() == "Inference" and alg.groupId() == "inference"
    definitions = alg.parameterDefinitions()
    assert [p.name() for p in definitions] == names
    assert {p.name() for p in definitions if p.flags() & p.FlagAdvanced} == {"DEVICE"}
    assert {p.name() for p in definitions if p.flags() & p.FlagOptional} == OPTIONAL & set(names)
    defaults = {p.name(): p.defaultValue() for p in definitions}
    assert defaults["DEVICE"] == "auto"
    model = alg.parameterDefinition("IN_MODEL_DEFINITION")
    assert model.type() == "file" and ".dlpk" in model.fileFilter() and ".emd" in model.fileFilter()
    assert alg.parameterDefinition("IN_RASTER").type() == "raster"
    if "PROCESSING_MODE" in names:
        options = [label.split(" ")[0] for label in alg.parameterDefinition("PROCESSING_MODE").options()]
        assert options == ["PROCESS_AS_MOSAICKED_IMAGE", "PROCESS_ITEMS_SEPARATELY"]
        assert defaults["PROCESSING_MODE"] == 0
    help_text = alg.shortHelpString()
    for word in arguments + [n for n in names if n != "DEVICE"] + ["DLT_PYTHON"]:
        assert word in help_text, word
    output = names[-1]
    assert [o.name() for o in alg.outputDefinitions()] == [output]


def test_parameter_types_and_defaults(provider):
    pixels = algorithm(CLASSIFY_PIXELS_ALG)
    assert pixels.parameterDefinition("EXTENT").type() == "extent"
    assert pixels.parameterDefinition("CELL_SIZE").type() == "number"
    assert pixels.parameterDefinition("CELL_SIZE").defaultValue() is None
    assert pixels.parameterDefinition("OUT_CLASSIFIED_RASTER").type() == "rasterDestination"
    detect = algorithm(DETECT_OBJECTS_ALG)
    defaults = {p.name(): p.defaultValue() for p in detect.parameterDefinitions()}
    assert defaults["RUN_NMS"] is False
    assert defaults["CONFIDENCE_SCORE_FIELD"] == "Confidence" and defaults["CLASS_VALUE_FIELD"] == "Class"
    assert defaults["MAX_OVERLAP_RATIO"] == 0
    sink = detect.parameterDefinition("OUT_DETECTED_OBJECTS")
    assert sink.type() == "sink" and sink.dataType() == 2  # QgsProcessing.TypeVectorPolygon
    objects = algorithm(CLASSIFY_OBJECTS_ALG)
    assert objects.parameterDefinition("CLASS_LABEL_FIELD").defaultValue() == "ClassLabel"
    assert objects.parameterDefinition("IN_FEATURES").type() == "source"
    assert objects.parameterDefinition("OUT_FEATURE_CLASS").type() == "sink"
    # The engine's config has the same defaults.
    from dl_engine.infer.config import InferConfig

    engine = InferConfig(tool="detect_objects", in_raster="", model="", out_path="")
    assert (engine.confidence_score_field, engine.class_value_field, engine.class_label_field) == (
        "Confidence", "Class", "ClassLabel")
    assert (engine.run_nms, engine.max_overlap_ratio, engine.device, engine.processing_mode) == (
        False, 0.0, "auto", "PROCESS_AS_MOSAICKED_IMAGE")


# ---- quick checks ---------------------------------------------------------------------------------

BAD_INPUTS = [
    (CLASSIFY_PIXELS_ALG, "missing_model", "IN_MODEL_DEFINITION"),
    (CLASSIFY_PIXELS_ALG, "wrong_extension", "IN_MODEL_DEFINITION"),
    (CLASSIFY_PIXELS_ALG, "negative_cell_size", "CELL_SIZE"),
    (CLASSIFY_PIXELS_ALG, "zero_cell_size", "CELL_SIZE"),
    (CLASSIFY_PIXELS_ALG, "extent_elsewhere", "EXTENT"),
    (CLASSIFY_PIXELS_ALG, "bad_device", "DEVICE"),
    (CLASSIFY_PIXELS_ALG, "mode_out_of_range", "PROCESSING_MODE"),
    (CLASSIFY_PIXELS_ALG, "missing_raster", "IN_RASTER"),
    (DETECT_OBJECTS_ALG, "missing_model", "IN_MODEL_DEFINITION"),
    (DETECT_OBJECTS_ALG, "wrong_extension", "IN_MODEL_DEFINITION"),
    (DETECT_OBJECTS_ALG, "overlap_above_1", "MAX_OVERLAP_RATIO"),
    (DETECT_OBJECTS_ALG, "empty_class_field", "CLASS_VALUE_FIELD"),
    (DETECT_OBJECTS_ALG, "same_field_names", "CONFIDENCE_SCORE_FIELD"),
    (CLASSIFY_OBJECTS_ALG, "missing_model", "IN_MODEL_DEFINITION"),
    (CLASSIFY_OBJECTS_ALG, "empty_label_field", "CLASS_LABEL_FIELD"),
    (CLASSIFY_OBJECTS_ALG, "bad_device", "DEVICE"),
]


def output_name(alg_id):
    return INTERFACE[alg_id][1][-1]


@pytest.mark.parametrize("alg_id, case, parameter", BAD_INPUTS)
def test_bad_input_names_the_parameter(provider, data_dir, tmp_path, monkeypatch, alg_id, case, parameter):
    record = tmp_path / "record"
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path))
    monkeypatch.setenv("FAKE_INFER_RECORD", str(record))
    weights = tmp_path / "weights.pth"
    weights.write_text("x")
    out = tmp_path / ("out.tif" if alg_id == CLASSIFY_PIXELS_ALG else "out.gpkg")
    params = {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path / "m"),
              output_name(alg_id): str(out)}
    params.update({
        "missing_model": {"IN_MODEL_DEFINITION": str(tmp_path / "nope.dlpk")},
        "wrong_extension": {"IN_MODEL_DEFINITION": str(weights)},
        "negative_cell_size": {"CELL_SIZE": -2.0},
        "zero_cell_size": {"CELL_SIZE": 0},
        "extent_elsewhere": {"EXTENT": "0,10,0,10 [EPSG:32618]"},
        "bad_device": {"DEVICE": "gpu please"},
        "mode_out_of_range": {"PROCESSING_MODE": 7},
        "missing_raster": {"IN_RASTER": str(tmp_path / "nope.tif")},
        "overlap_above_1": {"MAX_OVERLAP_RATIO": 1.5},
        "empty_class_field": {"CLASS_VALUE_FIELD": "  "},
        "same_field_names": {"CLASS_VALUE_FIELD": "Score", "CONFIDENCE_SCORE_FIELD": "score"},
        "empty_label_field": {"CLASS_LABEL_FIELD": ""},
    }[case])
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(alg_id, params)
    message = str(raised.value)
    assert parameter in message, message
    assert "Traceback" not in message
    assert not out.exists()
    assert not record.exists()  # refused before the worker started


def test_model_errors_say_what_is_accepted(provider, data_dir, tmp_path):
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": str(tmp_path / "x.dlpk"),
                                      "OUT_CLASSIFIED_RASTER": str(tmp_path / "out.tif")})
    message = str(raised.value)
    assert "(IN_MODEL_DEFINITION):" in message and "does not exist" in message and ".dlpk" in message


# ---- with a fake worker --------------------------------------------------------------------------

@pytest.fixture
def fake_worker(tmp_path, monkeypatch):
    """DLT_PYTHON → the fake inference worker; returns the folder where it records its input."""
    record = tmp_path / "record"
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path))
    monkeypatch.setenv("FAKE_INFER_RECORD", str(record))
    return record


def output_layer(value):
    """processing.run hands back a memory output as the layer itself."""
    assert isinstance(value, QgsVectorLayer), value
    return value


def recorded_config(record):
    return json.loads((record / "config.json").read_text())


def test_classify_pixels_parameters_reach_the_engine(provider, data_dir, tmp_path, fake_worker):
    model = fake_model(tmp_path / "model")
    out = tmp_path / "classified.tif"
    # EXTENT in EPSG:4326: converted to the raster's CRS (UTM 18N) before it reaches the engine.
    width, height, gt, _ = raster_grid(dsm(data_dir))
    raster = QgsRasterLayer(dsm(data_dir), "dsm")
    inner = raster.extent().buffered(-100)
    from qgis.core import QgsCoordinateTransform

    to_wgs84 = QgsCoordinateTransform(raster.crs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                      QgsProject.instance())
    wgs = to_wgs84.transformBoundingBox(inner)
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    result = run_alg(CLASSIFY_PIXELS_ALG, {
        "IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model, "ARGUMENTS": "padding 16;batch_size 2",
        "PROCESSING_MODE": keyword_index(algorithm(CLASSIFY_PIXELS_ALG), "PROCESSING_MODE",
                                         "PROCESS_ITEMS_SEPARATELY"),
        "EXTENT": f"{wgs.xMinimum()},{wgs.xMaximum()},{wgs.yMinimum()},{wgs.yMaximum()} [EPSG:4326]",
        "CELL_SIZE": 4.0, "DEVICE": "CUDA:1", "OUT_CLASSIFIED_RASTER": str(out),
    }, feedback=feedback)
    assert result["OUT_CLASSIFIED_RASTER"] == str(out)
    config = recorded_config(fake_worker)
    assert config["tool"] == "classify_pixels"
    assert config["in_raster"] == dsm(data_dir)
    assert config["model"] == model and config["out_path"] == str(out)
    assert config["arguments"] == "padding 16;batch_size 2"
    assert config["processing_mode"] == "PROCESS_ITEMS_SEPARATELY"
    assert config["cell_size"] == 4.0 and config["device"] == "cuda:1"
    xmin, ymin, xmax, ymax = config["extent"]  # the extent of the 4326 box, in UTM: around `inner`
    assert xmin <= inner.xMinimum() + 1 and xmax >= inner.xMaximum() - 1
    assert ymin <= inner.yMinimum() + 1 and ymax >= inner.yMaximum() - 1
    assert xmax - xmin < raster.extent().width() and 300000 < xmin < 700000
    assert 5.0 in progress and progress[-1] == 100.0


def test_classify_pixels_output_is_styled_with_the_model_classes(provider, data_dir, tmp_path, fake_worker):
    model = fake_model(tmp_path / "model")
    out = tmp_path / "classified.tif"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    # What the Toolbox passes when "Open output file after running" is checked.
    destination = QgsProcessingOutputLayerDefinition(str(out), QgsProject.instance())
    result = run_alg(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model,
                                           "OUT_CLASSIFIED_RASTER": destination}, feedback=feedback, context=context)
    path = result["OUT_CLASSIFIED_RASTER"]
    assert path == str(out) and out.is_file()
    width, height, gt, wkt = raster_grid(path)
    assert (width, height, gt) == raster_grid(dsm(data_dir))[:3]

    # The post-processor QGIS runs on the loaded layer sets the model's palette and names.
    assert context.willLoadLayerOnCompletion(path)
    processor = context.layerToLoadOnCompletionDetails(path).postProcessor()
    assert processor is not None
    layer = QgsRasterLayer(path, "classified", "gdal")
    processor.postProcessLayer(layer, context, feedback)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, c.color.getRgb()[:3]) for c in renderer.classes()] == [
        (c["Value"], c["Name"], tuple(c["Color"])) for c in FAKE_CLASSES]

    # And a .qml beside it: the raster opens styled wherever it is opened later.
    assert (tmp_path / "classified.qml").is_file()
    reopened = QgsRasterLayer(path, "again", "gdal")
    assert isinstance(reopened.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in reopened.renderer().classes()] == ["Building", "Road"]


def test_classify_pixels_run_and_load_results_styles_the_layer(provider, data_dir, tmp_path, fake_worker):
    """The path the Toolbox takes: the output is loaded into the project and post-processed."""
    import processing

    model = fake_model(tmp_path / "model")
    out = tmp_path / "loaded.tif"
    project = QgsProject.instance()
    before = set(project.mapLayers())
    try:
        processing.runAndLoadResults(CLASSIFY_PIXELS_ALG, {
            "IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": model, "OUT_CLASSIFIED_RASTER": str(out)})
        added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
        layers = [layer for layer in added if layer.source() == str(out)]
        assert len(layers) == 1, [layer.source() for layer in added]
        renderer = layers[0].renderer()
        assert isinstance(renderer, QgsPalettedRasterRenderer)
        assert [c.label for c in renderer.classes()] == ["Building", "Road"]
    finally:
        project.removeMapLayers(list(set(project.mapLayers()) - before))


def test_classify_pixels_other_format_is_converted(provider, data_dir, tmp_path, fake_worker):
    out = tmp_path / "classified.img"
    result = run_alg(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
                                           "OUT_CLASSIFIED_RASTER": str(out)})
    assert result["OUT_CLASSIFIED_RASTER"] == str(out)
    from osgeo import gdal

    dataset = gdal.Open(str(out))
    assert dataset.GetDriver().ShortName == "HFA"
    assert dataset.RasterXSize == raster_grid(dsm(data_dir))[0]
    assert recorded_config(fake_worker)["out_path"] != str(out)  # the engine wrote a temporary GeoTIFF
    assert not os.path.exists(recorded_config(fake_worker)["out_path"])


def test_detect_objects_geojson_becomes_the_sink(provider, data_dir, tmp_path, fake_worker):
    out = tmp_path / "detections.gpkg"
    params = {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path / "m"),
              "ARGUMENTS": "threshold 0.5;nms_overlap 0.1", "RUN_NMS": True, "CONFIDENCE_SCORE_FIELD": "Score",
              "CLASS_VALUE_FIELD": "Label", "MAX_OVERLAP_RATIO": 0.3, "OUT_DETECTED_OBJECTS": str(out)}
    result = run_alg(DETECT_OBJECTS_ALG, params)
    config = recorded_config(fake_worker)
    assert config["tool"] == "detect_objects"
    assert (config["run_nms"], config["confidence_score_field"], config["class_value_field"],
            config["max_overlap_ratio"], config["arguments"]) == (True, "Score", "Label", 0.3,
                                                                  "threshold 0.5;nms_overlap 0.1")
    assert not os.path.exists(config["out_path"])  # the engine's GeoJSON is temporary

    layer = QgsVectorLayer(result["OUT_DETECTED_OBJECTS"], "detections", "ogr")
    assert layer.isValid()
    assert layer.crs() == QgsRasterLayer(dsm(data_dir), "dsm").crs()
    assert layer.wkbType() == QgsWkbTypes.Polygon
    names = [f.name() for f in layer.fields() if f.name() != "fid"]
    assert names == ["Label", "ClassValue", "Score"]
    types = {f.name(): f.typeName().lower() for f in layer.fields()}
    assert "str" in types["Label"] and "int" in types["ClassValue"] and types["Score"] in ("real", "double")
    features = sorted(layer.getFeatures(), key=lambda f: f["Score"])
    assert [(f["Label"], f["ClassValue"], f["Score"]) for f in features] == [
        ("Tree", 1, 55.0), ("Car", 2, 70.25), ("Tree", 1, 91.5)]
    _, _, gt, _ = raster_grid(dsm(data_dir))
    box = features[-1].geometry().boundingBox()  # pixels (10, 10)–(30, 40)
    assert box.xMinimum() == pytest.approx(gt[0] + 10 * gt[1])
    assert box.xMaximum() == pytest.approx(gt[0] + 30 * gt[1])
    assert box.yMaximum() == pytest.approx(gt[3] + 10 * gt[5])
    assert box.yMinimum() == pytest.approx(gt[3] + 40 * gt[5])


def test_detect_objects_memory_output(provider, data_dir, tmp_path, fake_worker):
    result = run_alg(DETECT_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
                                          "OUT_DETECTED_OBJECTS": "memory:"})
    layer = output_layer(result["OUT_DETECTED_OBJECTS"])
    assert layer.featureCount() == 3
    assert [f.name() for f in layer.fields()] == ["Class", "ClassValue", "Confidence"]


def test_classify_objects_joins_results_to_the_input_features(provider, data_dir, tmp_path, fake_worker):
    """IN_FEATURES in EPSG:4326 on a UTM raster: the engine gets them in UTM, the output is the
    input (geometry, CRS, attributes) plus the label and the confidence."""
    source = QgsVectorLayer(buildings(data_dir), "buildings", "ogr")
    assert source.crs().authid() == "EPSG:4326"
    out = tmp_path / "classified.gpkg"
    result = run_alg(CLASSIFY_OBJECTS_ALG, {
        "IN_RASTER": dsm(data_dir), "IN_FEATURES": buildings(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
        "CLASS_LABEL_FIELD": "Kind", "ARGUMENTS": "batch_size 8", "OUT_FEATURE_CLASS": str(out)})
    config = recorded_config(fake_worker)
    assert config["tool"] == "classify_objects" and config["class_label_field"] == "Kind"
    assert config["arguments"] == "batch_size 8"
    assert not os.path.exists(config["in_features"]) and not os.path.exists(config["out_path"])
    sent = json.loads((fake_worker / "in_features.geojson").read_text())
    assert len(sent["features"]) == source.featureCount()
    point = sent["features"][0]["geometry"]["coordinates"]
    while isinstance(point[0], list):
        point = point[0]
    x, y = point[:2]
    assert 300000 < x < 700000 and y > 1000000  # UTM metres, not degrees
    assert QgsCoordinateReferenceSystem.fromWkt(sent["crs_wkt"]) == QgsRasterLayer(dsm(data_dir), "d").crs()

    layer = QgsVectorLayer(result["OUT_FEATURE_CLASS"], "out", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326"
    assert layer.featureCount() == source.featureCount()
    input_names = [f.name() for f in source.fields()]
    out_names = [f.name() for f in layer.fields() if f.name() != "fid"]
    assert out_names == [n for n in input_names if n != "fid"] + ["Kind", "Confidence"]
    originals = {f.id(): f for f in source.getFeatures()}
    ordered = list(layer.getFeatures())
    labelled = [f for f in ordered if f["Kind"]]
    assert len(labelled) == source.featureCount() - 1  # the fake leaves out the last one
    assert {f["Kind"] for f in labelled} == {"Building", "Shed"}
    unlabelled = [f for f in ordered if not f["Kind"]]
    assert len(unlabelled) == 1 and unlabelled[0]["Kind"] == NULL and unlabelled[0]["Confidence"] == NULL
    for feature in ordered:  # attributes and geometry of the input, unchanged
        match = [o for o in originals.values() if o.geometry().equals(feature.geometry())]
        assert len(match) == 1
        for name in input_names:
            if name != "fid":
                assert feature[name] == match[0][name]


def test_classify_objects_replaces_a_field_of_the_same_name(provider, data_dir, tmp_path, fake_worker):
    result = run_alg(CLASSIFY_OBJECTS_ALG, {
        "IN_RASTER": str(data_dir / "trees_osbs" / "OSBS_029.tif"),
        "IN_FEATURES": str(data_dir / "trees_osbs" / "trees.gpkg"), "IN_MODEL_DEFINITION": fake_model(tmp_path),
        "CLASS_LABEL_FIELD": "classname", "OUT_FEATURE_CLASS": "memory:"})
    layer = output_layer(result["OUT_FEATURE_CLASS"])
    source = QgsVectorLayer(str(data_dir / "trees_osbs" / "trees.gpkg"), "trees", "ogr")
    names = [f.name() for f in layer.fields()]
    assert names == [f.name() for f in source.fields()] + ["Confidence"]
    assert layer.fields().field("classname").typeName().lower().startswith("str")
    values = [f["classname"] for f in layer.getFeatures()]
    assert set(values) - {NULL} == {"Building", "Shed"} and values.count(NULL) == 1


def test_classify_objects_without_features_gives_tiles(provider, data_dir, tmp_path, fake_worker):
    result = run_alg(CLASSIFY_OBJECTS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
                                            "OUT_FEATURE_CLASS": "memory:"})
    assert recorded_config(fake_worker)["in_features"] is None
    layer = output_layer(result["OUT_FEATURE_CLASS"])
    assert layer.crs() == QgsRasterLayer(dsm(data_dir), "dsm").crs()
    assert layer.geometryType() == QgsWkbTypes.PolygonGeometry
    assert [f.name() for f in layer.fields()] == ["tile", "ClassLabel", "Confidence"]
    features = list(layer.getFeatures())
    assert [(f["tile"], f["ClassLabel"], f["Confidence"]) for f in features] == [
        (i, "Tile", 10.0 * i) for i in range(4)]


def test_engine_refusal_names_the_parameter(provider, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path, "error"))
    out = tmp_path / "out.tif"
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
                                      "OUT_CLASSIFIED_RASTER": str(out)})
    assert str(raised.value) == "Input raster (IN_RASTER): the model was trained on 3 bands; the raster has 1"
    assert not out.exists()


class CancelOnProgress(QgsProcessingFeedback):
    """Cancels when the worker reports that it started tiling."""

    def __init__(self):
        super().__init__()
        self.canceled_at = None
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value):
        if value >= 10 and self.canceled_at is None:
            self.canceled_at = time.monotonic()
            self.cancel()


@pytest.mark.parametrize("alg_id", list(INTERFACE))
def test_cancel_stops_the_worker(provider, data_dir, tmp_path, monkeypatch, alg_id):
    record = tmp_path / "record"
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path, "slow"))
    monkeypatch.setenv("FAKE_INFER_RECORD", str(record))
    out = tmp_path / ("out.tif" if alg_id == CLASSIFY_PIXELS_ALG else "out.gpkg")
    feedback = CancelOnProgress()
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(alg_id, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
                         output_name(alg_id): str(out)}, feedback=feedback)
    stopped_in = time.monotonic() - feedback.canceled_at
    assert stopped_in < 2.0, stopped_in
    assert "canceled" in str(raised.value) and INTERFACE[alg_id][0] in str(raised.value)
    pid = int((record / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not out.exists()
