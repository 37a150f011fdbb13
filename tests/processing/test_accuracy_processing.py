"""Compute Accuracy For Object Detection and Compute Accuracy For Pixel Classification through
processing.run: the INTERFACE parameters, layers in different CRSs, `.csv` and GeoPackage tables with
their fields and values, OUT_POINTS, bad input naming the parameter, and a Modeler chain after
Classify Pixels and Detect Objects (the fake inference worker stands in for the model)."""

import csv

import numpy as np
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFile,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsProcessing,
    QgsVectorLayer,
)

from dlt_infer_helpers import CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG, dsm, fake_infer_python, fake_model

DETECTION_ALG = "deeplearningtools:computeaccuracyforobjectdetection"
PIXEL_ALG = "deeplearningtools:computeaccuracyforpixelclassification"
DETECTION_FIELDS = ["Class", "Precision", "Recall", "F1_Score", "AP", "True_Positive", "False_Positive",
                    "False_Negative"]

X0, Y0 = 400000.0, 3280000.0  # EPSG:32617 (UTM 17N)


def run(alg_id, params, **kwargs):
    import processing

    return processing.run(alg_id, params, **kwargs)


# ---- data ------------------------------------------------------------------------------------------

def write_polygons(path, epsg, polygons, fields, layer="features"):
    """A GeoPackage of polygons; ``polygons``: [(ring in EPSG:32617 metres, {field: value})], written in ``epsg``."""
    from osgeo import ogr, osr

    source = osr.SpatialReference()
    source.ImportFromEPSG(32617)
    target = osr.SpatialReference()
    target.ImportFromEPSG(epsg)
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    out = dataset.CreateLayer(layer, target, ogr.wkbPolygon)
    kinds = {str: ogr.OFTString, int: ogr.OFTInteger, float: ogr.OFTReal}
    for name, kind in fields:
        out.CreateField(ogr.FieldDefn(name, kinds[kind]))
    for ring, attributes in polygons:
        geometry = ogr.CreateGeometryFromWkt("POLYGON((" + ",".join(f"{x} {y}" for x, y in ring) + "))")
        geometry.Transform(transform)
        feature = ogr.Feature(out.GetLayerDefn())
        feature.SetGeometry(geometry)
        for name, value in attributes.items():
            feature.SetField(name, value)
        out.CreateFeature(feature)
    dataset = None
    return str(path)


def ring(x0, y0, x1, y1):
    """A box in metres from (X0, Y0)."""
    return [(X0 + x0, Y0 + y0), (X0 + x1, Y0 + y0), (X0 + x1, Y0 + y1), (X0 + x0, Y0 + y1), (X0 + x0, Y0 + y0)]


# Ground truth (UTM): trees A, B, C and a car D. Detections (written in EPSG:4326): a hit on A, a
# duplicate of A, a hit on B (IoU 0.8), a miss; a car on D and a "car" on tree C.
TRUTH = [(ring(0, 0, 10, 10), {"classname": "Tree"}), (ring(20, 0, 30, 10), {"classname": "Tree"}),
         (ring(40, 0, 50, 10), {"classname": "Tree"}), (ring(60, 0, 70, 10), {"classname": "Car"})]
DETECTIONS = [(ring(0, 0, 10, 10), {"Class": "Tree", "Confidence": 90.0}),
              (ring(1, 0, 11, 10), {"Class": "Tree", "Confidence": 80.0}),
              (ring(20, 0, 30, 8), {"Class": "Tree", "Confidence": 70.0}),
              (ring(80, 0, 90, 10), {"Class": "Tree", "Confidence": 60.0}),
              (ring(60, 0, 70, 10), {"Class": "Car", "Confidence": 50.0}),
              (ring(40, 0, 50, 10), {"Class": "Car", "Confidence": 40.0})]
# Class: (Precision, Recall, F1_Score, AP, TP, FP, FN), computed by hand
EXPECTED = {
    "Car": (0.5, 1.0, 2 / 3, 1.0, 1, 1, 0),
    "Tree": (0.5, 2 / 3, 4 / 7, 5 / 9, 2, 2, 1),
    "All": (0.5, 0.75, 0.6, (1 + 5 / 9) / 2, 3, 3, 1),
}


@pytest.fixture
def detection_layers(tmp_path):
    truth = write_polygons(tmp_path / "truth.gpkg", 32617, TRUTH, [("classname", str)])
    detections = write_polygons(tmp_path / "detections.gpkg", 4326, DETECTIONS,
                                [("Class", str), ("Confidence", float)])
    return detections, truth


def table_rows(destination):
    layer = QgsVectorLayer(destination, "table", "ogr")
    assert layer.isValid(), destination
    names = [f.name() for f in layer.fields() if f.name().lower() != "fid"]
    return names, [{n: f[n] for n in names} for f in layer.getFeatures()], layer


# ---- the interface ---------------------------------------------------------------------------------

def test_interface(provider):
    registry = QgsApplication.processingRegistry()
    detection = registry.algorithmById(DETECTION_ALG)
    pixels = registry.algorithmById(PIXEL_ALG)
    assert detection.displayName() == "Compute Accuracy For Object Detection"
    assert pixels.displayName() == "Compute Accuracy For Pixel Classification"
    assert detection.group() == pixels.group() == "Accuracy"
    assert [p.name() for p in detection.parameterDefinitions()] == [
        "DETECTED_FEATURES", "GROUND_TRUTH_FEATURES", "OUT_ACCURACY_TABLE", "OUT_ACCURACY_REPORT",
        "DETECTED_CLASS_VALUE_FIELD", "GROUND_TRUTH_CLASS_VALUE_FIELD", "MIN_IOU", "MASK_FEATURES"]
    assert {p.name() for p in detection.parameterDefinitions() if p.flags() & p.FlagOptional} == {
        "OUT_ACCURACY_REPORT", "DETECTED_CLASS_VALUE_FIELD", "GROUND_TRUTH_CLASS_VALUE_FIELD", "MASK_FEATURES"}
    assert detection.parameterDefinition("MIN_IOU").defaultValue() == 0.5
    assert [p.name() for p in pixels.parameterDefinitions()] == [
        "IN_RASTER", "IN_GROUND_TRUTH_DATA", "OUT_CONFUSION_MATRIX", "NUM_RANDOM_POINTS", "SAMPLING",
        "MIN_POINT_DISTANCE", "OUT_POINTS", "RANDOM_SEED"]
    assert {p.name() for p in pixels.parameterDefinitions() if p.flags() & p.FlagAdvanced} == {"RANDOM_SEED"}
    defaults = {p.name(): p.defaultValue() for p in pixels.parameterDefinitions()}
    assert defaults["NUM_RANDOM_POINTS"] == 500 and defaults["MIN_POINT_DISTANCE"] == 0
    options = [label.split(" ")[0] for label in pixels.parameterDefinition("SAMPLING").options()]
    assert options == ["STRATIFIED_RANDOM", "EQUALIZED_STRATIFIED_RANDOM", "RANDOM", "ALL_PIXELS"]
    assert defaults["SAMPLING"] == 0
    help_text = detection.shortHelpString()
    for words in ("decreasing confidence", "highest intersection over union", "all-point interpolation",
                  "centroid", "MIN_IOU", "Confidence"):
        assert words in help_text
    for name in [p.name() for p in pixels.parameterDefinitions()] + options + ["U_Accuracy", "P_Accuracy", "IoU"]:
        assert name in pixels.shortHelpString(), name


# ---- object detection ------------------------------------------------------------------------------

@pytest.mark.parametrize("extension", ["csv", "gpkg"])
@pytest.mark.heavy
def test_detection_table_across_crs(provider, detection_layers, tmp_path, extension):
    detections, truth = detection_layers
    out = tmp_path / f"accuracy.{extension}"
    report = tmp_path / "report.html"
    result = run(DETECTION_ALG, {
        "DETECTED_FEATURES": detections, "GROUND_TRUTH_FEATURES": truth, "OUT_ACCURACY_TABLE": str(out),
        "OUT_ACCURACY_REPORT": str(report), "DETECTED_CLASS_VALUE_FIELD": "Class",
        "GROUND_TRUTH_CLASS_VALUE_FIELD": "classname"})
    assert result["OUT_ACCURACY_REPORT"] == str(report) and report.exists()
    names, rows, layer = table_rows(result["OUT_ACCURACY_TABLE"])
    assert names == DETECTION_FIELDS
    assert [r["Class"] for r in rows] == ["Car", "Tree", "All"]
    for r in rows:
        expected = EXPECTED[r["Class"]]
        assert [float(r[n]) for n in DETECTION_FIELDS[1:5]] == pytest.approx(expected[:4], abs=1e-6)
        assert [int(r[n]) for n in DETECTION_FIELDS[5:]] == list(expected[4:])
    if extension == "csv":
        assert layer.fields().field("AP").isNumeric() and layer.fields().field("True_Positive").isNumeric()
        with open(out, newline="", encoding="utf-8") as f:
            assert next(csv.reader(f)) == DETECTION_FIELDS


def test_detection_mask_in_a_third_crs(provider, detection_layers, tmp_path):
    detections, truth = detection_layers
    mask = write_polygons(tmp_path / "mask.gpkg", 3857, [(ring(-5, -5, 35, 15), {})], [])
    result = run(DETECTION_ALG, {
        "DETECTED_FEATURES": detections, "GROUND_TRUTH_FEATURES": truth, "OUT_ACCURACY_TABLE": "TEMPORARY_OUTPUT",
        "DETECTED_CLASS_VALUE_FIELD": "Class", "GROUND_TRUTH_CLASS_VALUE_FIELD": "classname", "MASK_FEATURES": mask,
        "MIN_IOU": 0.5})
    layer = result["OUT_ACCURACY_TABLE"]
    rows = {f["Class"]: f for f in layer.getFeatures()}
    assert sorted(rows) == ["All", "Tree"]
    assert (rows["Tree"]["True_Positive"], rows["Tree"]["False_Positive"], rows["Tree"]["False_Negative"]) == (2, 1, 0)


def test_detection_without_class_fields_is_one_class(provider, detection_layers, tmp_path):
    detections, truth = detection_layers
    result = run(DETECTION_ALG, {"DETECTED_FEATURES": detections, "GROUND_TRUTH_FEATURES": truth,
                                 "OUT_ACCURACY_TABLE": "TEMPORARY_OUTPUT"})
    rows = {f["Class"]: f for f in result["OUT_ACCURACY_TABLE"].getFeatures()}
    assert sorted(rows) == ["1", "All"]
    assert (rows["1"]["True_Positive"], rows["1"]["False_Positive"], rows["1"]["False_Negative"]) == (4, 2, 0)


@pytest.mark.parametrize("case, parameter", [
    ("empty_truth", "GROUND_TRUTH_FEATURES"),
    ("empty_detections", "DETECTED_FEATURES"),
    ("one_class_field", "GROUND_TRUTH_CLASS_VALUE_FIELD"),
    ("min_iou_zero", "MIN_IOU"),
    ("report_docx", "OUT_ACCURACY_REPORT"),
])
def test_detection_bad_input_names_the_parameter(provider, detection_layers, tmp_path, case, parameter):
    detections, truth = detection_layers
    empty = write_polygons(tmp_path / "empty.gpkg", 32617, [], [("classname", str)])
    out = tmp_path / "accuracy.csv"
    params = {"DETECTED_FEATURES": detections, "GROUND_TRUTH_FEATURES": truth, "OUT_ACCURACY_TABLE": str(out)}
    params.update({
        "empty_truth": {"GROUND_TRUTH_FEATURES": empty},
        "empty_detections": {"DETECTED_FEATURES": empty},
        "one_class_field": {"DETECTED_CLASS_VALUE_FIELD": "Class"},
        "min_iou_zero": {"MIN_IOU": 0.0},
        "report_docx": {"OUT_ACCURACY_REPORT": str(tmp_path / "report.docx")},
    }[case])
    with pytest.raises(QgsProcessingException) as raised:
        run(DETECTION_ALG, params)
    assert parameter in str(raised.value) and "Traceback" not in str(raised.value)
    assert not out.exists()


# ---- pixel classification ------------------------------------------------------------------------

PIXEL = 2.0


def write_raster(path, array, epsg=32617, nodata=0):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=f"EPSG:{epsg}", transform=from_origin(X0, Y0, PIXEL, PIXEL),
                       nodata=nodata) as ds:
        ds.write(array, 1)
    return str(path)


@pytest.fixture
def classified(tmp_path):
    values = np.ones((30, 40), dtype="uint8")
    values[:, 20:] = 2
    values[0] = 0  # NoData
    return write_raster(tmp_path / "classified.tif", values), values


def numpy_matrix(c, r, valid, classes):
    m = np.zeros((len(classes), len(classes)), dtype=int)
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            m[i, j] = int(((c == a) & (r == b) & valid).sum())
    return m


def check_matrix(rows, names, expected, classes):
    assert names == ["ClassValue"] + [f"C_{v}" for v in classes] + ["Total", "U_Accuracy", "Kappa"]
    labels = [r["ClassValue"] for r in rows]
    assert labels == [f"C_{v}" for v in classes] + ["Total", "P_Accuracy", "Kappa", "IoU"]
    for i, v in enumerate(classes):
        assert [float(rows[i][f"C_{w}"]) for w in classes] == list(expected[i])
    n = expected.sum()
    diag = np.diag(expected)
    assert float(rows[len(classes)]["Total"]) == n
    assert float(rows[len(classes) + 1]["U_Accuracy"]) == pytest.approx(diag.sum() / n, abs=1e-6)
    pe = (expected.sum(1) * expected.sum(0)).sum() / n ** 2
    assert float(rows[len(classes) + 2]["Kappa"]) == pytest.approx((diag.sum() / n - pe) / (1 - pe), abs=1e-6)
    iou = diag / (expected.sum(1) + expected.sum(0) - diag)
    assert [float(rows[-1][f"C_{v}"]) for v in classes] == pytest.approx(list(iou), abs=1e-6)


@pytest.mark.parametrize("extension", ["csv", "gpkg"])
def test_pixels_all_pixels_against_a_raster(provider, classified, tmp_path, extension):
    path, c = classified
    truth = c.copy()
    truth[5:15, 15:25] = 3  # a class only in the ground truth
    truth[20:, 18:20] = 2
    truth_path = write_raster(tmp_path / "truth.tif", truth)
    out = tmp_path / f"matrix.{extension}"
    result = run(PIXEL_ALG, {"IN_RASTER": path, "IN_GROUND_TRUTH_DATA": truth_path, "OUT_CONFUSION_MATRIX": str(out),
                             "SAMPLING": 3})
    names, rows, layer = table_rows(result["OUT_CONFUSION_MATRIX"])
    valid = c != 0
    check_matrix(rows, names, numpy_matrix(c, truth, valid, [1, 2, 3]), [1, 2, 3])
    if extension == "csv":
        assert layer.fields().field("C_1").isNumeric()


def test_pixels_polygons_in_another_crs(provider, classified, tmp_path):
    """Ground-truth polygons in EPSG:4326 (edges on pixel edges in UTM); outside them: class 0."""
    path, c = classified
    polygons = write_polygons(tmp_path / "truth.gpkg", 4326, [
        (ring(0, -60, 40, 0), {"classvalue": 1}),  # columns 0–19, every row
        (ring(40, -60, 60, -20), {"classvalue": 2}),  # columns 20–29, rows 10–29
    ], [("classvalue", int)])
    result = run(PIXEL_ALG, {"IN_RASTER": path, "IN_GROUND_TRUTH_DATA": polygons,
                             "OUT_CONFUSION_MATRIX": "TEMPORARY_OUTPUT", "SAMPLING": 3})
    truth = np.zeros_like(c)
    truth[:, :20] = 1
    truth[10:, 20:30] = 2
    layer = result["OUT_CONFUSION_MATRIX"]
    names = [f.name() for f in layer.fields()]
    check_matrix([{n: f[n] for n in names} for f in layer.getFeatures()], names,
                 numpy_matrix(c, truth, c != 0, [0, 1, 2]), [0, 1, 2])


@pytest.mark.heavy
def test_pixels_points_are_written_and_reproducible(provider, classified, tmp_path):
    path, c = classified
    truth = c.copy()
    truth[10:20, :] = 2
    truth_path = write_raster(tmp_path / "truth.tif", truth)

    def points(seed, name):
        out = tmp_path / f"{name}.gpkg"
        result = run(PIXEL_ALG, {"IN_RASTER": path, "IN_GROUND_TRUTH_DATA": truth_path,
                                 "OUT_CONFUSION_MATRIX": str(tmp_path / f"{name}.csv"), "NUM_RANDOM_POINTS": 40,
                                 "SAMPLING": 0, "MIN_POINT_DISTANCE": 4.0, "RANDOM_SEED": seed, "OUT_POINTS": str(out)})
        layer = QgsVectorLayer(result["OUT_POINTS"], "points", "ogr")
        assert layer.isValid() and layer.crs().authid() == "EPSG:32617"
        assert [f.name() for f in layer.fields() if f.name() != "fid"] == ["Classified", "GrndTruth"]
        found = []
        for feature in layer.getFeatures():
            p = feature.geometry().asPoint()
            col, row = int((p.x() - X0) / PIXEL), int((Y0 - p.y()) / PIXEL)
            assert (feature["Classified"], feature["GrndTruth"]) == (c[row, col], truth[row, col])
            found.append((row, col))
        return found

    first = points(5, "a")
    assert len(first) == 40 and len(set(first)) == 40
    assert sum(1 for row, col in first if c[row, col] == 1) == 20  # stratified: half the area, half the points
    assert points(5, "b") == first
    assert points(6, "c") != first


@pytest.mark.parametrize("case, parameter", [
    ("points_truth", "IN_GROUND_TRUTH_DATA"),
    ("far_truth", "IN_GROUND_TRUTH_DATA"),
    ("negative_distance", "MIN_POINT_DISTANCE"),
    ("sampling_out_of_range", "SAMPLING"),
])
def test_pixels_bad_input_names_the_parameter(provider, classified, tmp_path, case, parameter):
    path, c = classified
    points = QgsVectorLayer("Point?crs=EPSG:32617&field=classvalue:integer", "points", "memory")
    far = write_polygons(tmp_path / "far.gpkg", 32617, [(ring(5000, 5000, 5010, 5010), {"classvalue": 1})],
                         [("classvalue", int)])
    out = tmp_path / "matrix.csv"
    params = {"IN_RASTER": path, "IN_GROUND_TRUTH_DATA": path, "OUT_CONFUSION_MATRIX": str(out)}
    params.update({
        "points_truth": {"IN_GROUND_TRUTH_DATA": points},
        "far_truth": {"IN_GROUND_TRUTH_DATA": far},
        "negative_distance": {"MIN_POINT_DISTANCE": -1.0},
        "sampling_out_of_range": {"SAMPLING": 9},
    }[case])
    with pytest.raises(QgsProcessingException) as raised:
        run(PIXEL_ALG, params)
    assert parameter in str(raised.value) and "Traceback" not in str(raised.value)
    assert not out.exists()


# ---- Modeler: after Classify Pixels and Detect Objects --------------------------------------------

def accuracy_model():
    model = QgsProcessingModelAlgorithm("Accuracy after inference", "Deep learning tools tests")
    for definition in (QgsProcessingParameterRasterLayer("raster", "Image"),
                       QgsProcessingParameterFile("model", "Model definition"),
                       QgsProcessingParameterMapLayer("truth_raster", "Ground truth raster",
                                                      types=[QgsProcessing.TypeRaster]),
                       QgsProcessingParameterVectorLayer("truth_objects", "Ground truth objects",
                                                         [QgsProcessing.TypeVectorPolygon])):
        model.addModelParameter(definition, QgsProcessingModelParameter(definition.name()))
    source = QgsProcessingModelChildParameterSource

    def child(child_id, alg_id, sources, output, output_name):
        algorithm = QgsProcessingModelChildAlgorithm(alg_id)
        algorithm.setChildId(child_id)
        for name, value in sources.items():
            algorithm.addParameterSources(name, [value])
        if output:
            model_output = QgsProcessingModelOutput(output_name)
            model_output.setChildId(child_id)
            model_output.setChildOutputName(output)
            algorithm.setModelOutputs({output_name: model_output})
        model.addChildAlgorithm(algorithm)

    inputs = {"IN_RASTER": source.fromModelParameter("raster"), "IN_MODEL_DEFINITION": source.fromModelParameter("model")}
    child("classify", CLASSIFY_PIXELS_ALG, inputs, None, None)
    child("detect", DETECT_OBJECTS_ALG, inputs, None, None)
    child("pixel_accuracy", PIXEL_ALG, {
        "IN_RASTER": source.fromChildOutput("classify", "OUT_CLASSIFIED_RASTER"),
        "IN_GROUND_TRUTH_DATA": source.fromModelParameter("truth_raster"),
        "SAMPLING": source.fromStaticValue(3)}, "OUT_CONFUSION_MATRIX", "matrix")
    child("object_accuracy", DETECTION_ALG, {
        "DETECTED_FEATURES": source.fromChildOutput("detect", "OUT_DETECTED_OBJECTS"),
        "GROUND_TRUTH_FEATURES": source.fromModelParameter("truth_objects"),
        "DETECTED_CLASS_VALUE_FIELD": source.fromStaticValue("Class"),
        "GROUND_TRUTH_CLASS_VALUE_FIELD": source.fromStaticValue("classname")}, "OUT_ACCURACY_TABLE", "accuracy")
    model.updateDestinationParameters()
    return model


@pytest.mark.heavy
def test_modeler_chain_after_inference(provider, data_dir, tmp_path, monkeypatch):
    from osgeo import gdal

    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path))
    raster = dsm(data_dir)
    dataset = gdal.Open(raster)
    gt, width, height, wkt = dataset.GetGeoTransform(), dataset.RasterXSize, dataset.RasterYSize, dataset.GetProjection()
    dataset = None
    # The fake worker classifies stripes of 10 columns (1, 2, 1, …; row 0 NoData) and detects two trees and a car.
    truth = np.where((np.arange(width) // 10) % 2 == 0, 1, 2).astype("uint8")[None, :].repeat(height, 0)
    truth[:, :10] = 2  # the first stripe is wrong
    truth_raster = tmp_path / "truth.tif"
    out = gdal.GetDriverByName("GTiff").Create(str(truth_raster), width, height, 1, gdal.GDT_Byte)
    out.SetGeoTransform(gt)
    out.SetProjection(wkt)
    out.GetRasterBand(1).WriteArray(truth)
    out = None

    def box(c0, r0, c1, r1):
        xs = [gt[0] + c * gt[1] for c in (c0, c1)]
        ys = [gt[3] + r * gt[5] for r in (r0, r1)]
        return f"POLYGON(({xs[0]} {ys[0]},{xs[1]} {ys[0]},{xs[1]} {ys[1]},{xs[0]} {ys[1]},{xs[0]} {ys[0]}))"

    objects = QgsVectorLayer("Polygon?crs=EPSG:32618&field=classname:string", "truth", "memory")
    from qgis.core import QgsFeature, QgsGeometry

    for wkt_box in (box(10, 10, 30, 40), box(100, 50, 120, 60)):
        feature = QgsFeature(objects.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt_box))
        feature.setAttributes(["Tree"])
        objects.dataProvider().addFeature(feature)

    model = accuracy_model()
    assert sorted(p.name() for p in model.destinationParameterDefinitions()) == [
        "object_accuracy:accuracy", "pixel_accuracy:matrix"]
    import processing

    result = processing.run(model, {
        "raster": raster, "model": fake_model(tmp_path / "model"), "truth_raster": str(truth_raster),
        "truth_objects": objects, "pixel_accuracy:matrix": str(tmp_path / "matrix.csv"),
        "object_accuracy:accuracy": str(tmp_path / "accuracy.gpkg")})
    _, rows, _ = table_rows(result["object_accuracy:accuracy"])
    counts = {r["Class"]: (r["True_Positive"], r["False_Positive"], r["False_Negative"]) for r in rows}
    assert counts == {"Car": (0, 1, 0), "Tree": (2, 0, 0), "All": (2, 1, 0)}
    _, rows, _ = table_rows(result["pixel_accuracy:matrix"])
    classified = np.where((np.arange(width) // 10) % 2 == 0, 1, 2)[None, :].repeat(height, 0)
    valid = np.ones((height, width), bool)
    valid[0] = False
    expected = numpy_matrix(classified, truth, valid, [1, 2])
    assert [[float(r["C_1"]), float(r["C_2"])] for r in rows[:2]] == expected.tolist()
