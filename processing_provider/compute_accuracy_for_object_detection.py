"""deeplearningtools:computeaccuracyforobjectdetection — Compute Accuracy For Object Detection.

Thin: the detected, ground-truth and mask polygons are read from QGIS (any provider, any CRS),
reprojected into one CRS and handed as WKB to ``dl_engine.accuracy.detection``, run in a worker process
with the engine's Python (``accuracy_tables.run_accuracy``); its rows go into the OUT_ACCURACY_TABLE sink. The matching rule and the AP definition live in the
engine (``dl_engine/accuracy/detection.py``) and are stated in the help below.
"""

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from dl_engine.accuracy.config import (ALL_CLASSES, CONFIDENCE_FIELD_NAMES, DETECTION_FIELDS,  # standard library only
                                       SINGLE_CLASS, DetectedObject, DetectionAccuracyConfig, TruthObject)
from dl_engine.accuracy.tables import rows_text  # standard library only

from .accuracy_tables import DOUBLE, INTEGER, STRING, run_accuracy, write_table
from .base import DeepLearningAlgorithm, check_config, config_default

ALGORITHM_ID = "computeaccuracyforobjectdetection"
DISPLAY_NAME = "Compute Accuracy For Object Detection"
TABLE_COLUMNS = list(zip(DETECTION_FIELDS, (STRING, DOUBLE, DOUBLE, DOUBLE, DOUBLE, INTEGER, INTEGER, INTEGER)))

HELP = f"""
<p>Measures detected objects (the output of <i>Detect Objects Using Deep Learning</i>, or any polygons)
against ground-truth polygons, as ArcGIS Pro's tool of the same name does: precision, recall, F1 score,
average precision (AP) and the counts of true positives, false positives and false negatives, per class
and overall.</p>
<p><b>DETECTED_FEATURES</b> and <b>GROUND_TRUTH_FEATURES</b>: polygon layers in any CRS; both (and the
mask) are reprojected into one CRS before they are compared: the detections' CRS, or the ground
truth's when only that one is projected (areas, hence IoU, are measured there).</p>
<p><b>DETECTED_CLASS_VALUE_FIELD</b> and <b>GROUND_TRUTH_CLASS_VALUE_FIELD</b>: the fields holding each
object's class (names or values, compared as text: 1 and 1.0 are the same class). With neither, every
feature is one class (<code>{SINGLE_CLASS}</code>); with only one, a field of the same name in the other layer
is used. Detections are only matched to objects of their class.</p>
<p><b>Matching rule.</b> Within each class, detections are taken in order of decreasing confidence (the
detections' <code>Confidence</code> field, as Detect Objects writes it, else a field named
<code>Score</code>; any scale). Each is matched to the ground-truth object of the same class, not
matched yet, with which it has the highest intersection over union (IoU = area of intersection / area
of union of the two polygons); the match counts when that IoU is at least <b>MIN_IOU</b> (0.5). A
matched detection is a true positive, a detection without a match a false positive (a second detection
of an object already found too), a ground-truth object left unmatched a false negative.
Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 · precision · recall / (precision + recall).</p>
<p><b>AP</b> (average precision) is the area under the precision–recall curve with PASCAL VOC's
all-point interpolation: detections ranked by confidence (equal confidences enter together), at each threshold
recall and precision of the detections so far; precision is made non-increasing from the right (the best
precision at that recall or beyond) and summed over the steps in recall. Without a confidence field every
detection has confidence 1, the curve is one point and AP = precision × recall.</p>
<p>The last row, Class <code>{ALL_CLASSES}</code>, sums TP, FP and FN over the classes (precision, recall and
F1 from these sums); its AP is the mean AP of the classes that have ground-truth objects (mAP). A class
found on one side only gets a row too (its detections are false positives, or its objects false
negatives). A ratio whose denominator is 0 is written as 0.</p>
<p><b>MASK_FEATURES</b> (optional polygons): only objects whose centroid lies inside the mask (or on its
boundary) count, detections and ground truth alike.</p>
<p>Outputs: <b>OUT_ACCURACY_TABLE</b>, a table with the fields {', '.join(DETECTION_FIELDS)}: a GeoPackage
table, a <code>.csv</code> file (with a <code>.csvt</code> giving the field types) or any table format QGIS
writes. <b>OUT_ACCURACY_REPORT</b> (optional): an HTML (<code>.html</code>) or PDF (<code>.pdf</code>)
report with the table, the precision–recall curve of each class and these rules.</p>
"""


def class_text(value):
    """An attribute as a class: text, whole numbers without decimals; None for NULL."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def find_field(fields, names):
    """Index of the first field whose name is one of ``names`` (any case), else -1."""
    lower = {field.name().lower(): i for i, field in enumerate(fields)}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return -1


def run_crs(detected_crs, truth_crs):
    """The CRS the objects are compared in: the detections', unless only the ground truth's is projected."""
    if detected_crs.isValid() and not detected_crs.isGeographic():
        return detected_crs
    if truth_crs.isValid() and not truth_crs.isGeographic():
        return truth_crs
    return detected_crs if detected_crs.isValid() else truth_crs


class ComputeAccuracyForObjectDetection(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = DISPLAY_NAME
    GROUP_ID = "accuracy"
    HELP = HELP
    TAGS = ("deep learning", "accuracy", "object detection", "precision", "recall", "F1", "average precision", "AP",
            "mAP", "IoU", "true positive", "false positive", "ground truth", "validation", "arcgis", "arcpy")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        polygons = [QgsProcessing.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterFeatureSource("DETECTED_FEATURES", "Detected features", polygons))
        self.addParameter(QgsProcessingParameterFeatureSource("GROUND_TRUTH_FEATURES", "Ground truth features",
                                                              polygons))
        self.addParameter(QgsProcessingParameterFeatureSink("OUT_ACCURACY_TABLE", "Output accuracy table",
                                                            QgsProcessing.TypeVector))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUT_ACCURACY_REPORT", "Output accuracy report", "HTML files (*.html *.htm);;PDF files (*.pdf)",
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterField(
            "DETECTED_CLASS_VALUE_FIELD", "Detected class value field", parentLayerParameterName="DETECTED_FEATURES",
            type=QgsProcessingParameterField.Any, optional=True))
        self.addParameter(QgsProcessingParameterField(
            "GROUND_TRUTH_CLASS_VALUE_FIELD", "Ground truth class value field",
            parentLayerParameterName="GROUND_TRUTH_FEATURES", type=QgsProcessingParameterField.Any, optional=True))
        min_iou = QgsProcessingParameterNumber("MIN_IOU", "Minimum IoU", QgsProcessingParameterNumber.Double,
                                               config_default(DetectionAccuracyConfig, "min_iou"), False, 0.0, 1.0)
        self.addParameter(min_iou)
        self.addParameter(QgsProcessingParameterFeatureSource("MASK_FEATURES", "Mask features", polygons,
                                                              optional=True))

    # ------------------------------------------------------------------
    def source(self, parameters, name, context, optional=False):
        if optional and parameters.get(name) in (None, ""):
            return None
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(f"{name}: cannot open {parameters.get(name)!r}; give a polygon layer")
        if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PolygonGeometry:
            raise QgsProcessingException(
                f"{name}: the layer holds {QgsWkbTypes.displayString(source.wkbType())} geometries; give polygons "
                f"(buffer points or lines into polygons first)")
        return source

    def class_fields(self, parameters, context, detected, truth):
        """(detected field index, ground-truth field index), -1 for none."""
        names = {
            "DETECTED_CLASS_VALUE_FIELD": (self.parameterAsString(parameters, "DETECTED_CLASS_VALUE_FIELD", context)
                                           or "").strip(),
            "GROUND_TRUTH_CLASS_VALUE_FIELD": (self.parameterAsString(parameters, "GROUND_TRUTH_CLASS_VALUE_FIELD",
                                                                      context) or "").strip(),
        }
        if not any(names.values()):
            return -1, -1
        layers = {"DETECTED_CLASS_VALUE_FIELD": (detected, "DETECTED_FEATURES"),
                  "GROUND_TRUTH_CLASS_VALUE_FIELD": (truth, "GROUND_TRUTH_FEATURES")}
        given = [n for n in names.values() if n][0]
        indices = []
        for parameter, (source, layer_parameter) in layers.items():
            wanted = names[parameter] or given
            index = find_field(source.fields(), [wanted])
            if index < 0:
                what = (f"the field '{wanted}' does not exist in {layer_parameter}" if names[parameter] else
                        f"empty, and {layer_parameter} has no field '{wanted}' like the other layer")
                fields = ", ".join(f.name() for f in source.fields()) or "(none)"
                raise QgsProcessingException(f"{parameter}: {what}; give one of its fields ({fields}), or leave "
                                             f"both class fields empty (every feature is one class)")
            indices.append(index)
        return tuple(indices)

    def read(self, source, name, crs, context, class_index, confidence_index, feedback):
        """[(WKB in ``crs``, class, confidence)] of ``source``."""
        from . import layer_inputs

        transform = None
        if source.sourceCrs().isValid() and crs.isValid() and source.sourceCrs() != crs:
            transform = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        request = QgsFeatureRequest()
        request.setSubsetOfAttributes([i for i in (class_index, confidence_index) if i >= 0])
        objects, skipped, no_confidence = [], 0, 0
        field_name = source.fields().at(class_index).name() if class_index >= 0 else ""
        for feature in source.getFeatures(request):
            if feedback.isCanceled():
                raise QgsProcessingException(f"{DISPLAY_NAME} canceled: nothing was written")
            geometry = feature.geometry()
            if not geometry.isNull() and QgsWkbTypes.isCurvedType(geometry.wkbType()):
                geometry = QgsGeometry(geometry.constGet().segmentize())  # shapely reads no curves
            data = layer_inputs.prepare_geometry(geometry, 0.0, transform)
            if data is None:
                skipped += 1
                continue
            value = SINGLE_CLASS
            if class_index >= 0:
                value = class_text(feature.attribute(class_index))
                if value is None:
                    parameter = "DETECTED" if name == "DETECTED_FEATURES" else "GROUND_TRUTH"
                    raise QgsProcessingException(
                        f"{parameter}_CLASS_VALUE_FIELD: feature {feature.id()} of {name} has no {field_name}; "
                        f"every feature needs a class")
            confidence = 1.0
            if confidence_index >= 0:
                raw = feature.attribute(confidence_index)
                try:
                    confidence = float(raw)
                except (TypeError, ValueError):
                    confidence, no_confidence = 0.0, no_confidence + 1
            objects.append((data, value, confidence))
        if skipped:
            feedback.pushWarning(f"{name}: {skipped} features with a null or empty geometry left out")
        if no_confidence:
            feedback.pushWarning(f"{name}: {no_confidence} detections without a confidence value rank last")
        return objects

    def build_config(self, parameters, context, feedback):
        detected = self.source(parameters, "DETECTED_FEATURES", context)
        truth = self.source(parameters, "GROUND_TRUTH_FEATURES", context)
        mask = self.source(parameters, "MASK_FEATURES", context, optional=True)
        crs = run_crs(detected.sourceCrs(), truth.sourceCrs())
        detected_class, truth_class = self.class_fields(parameters, context, detected, truth)

        confidence_index = find_field(detected.fields(), CONFIDENCE_FIELD_NAMES)
        if confidence_index >= 0 and not detected.fields().at(confidence_index).isNumeric():
            confidence_index = -1
        if confidence_index < 0:
            feedback.pushWarning("DETECTED_FEATURES: no numeric Confidence (or Score) field; every detection has "
                                 "confidence 1, so each precision–recall curve is one point and AP = precision × "
                                 "recall")
        else:
            feedback.pushInfo(f"DETECTED_FEATURES: confidence from the field "
                              f"{detected.fields().at(confidence_index).name()}")

        detections = [DetectedObject(wkb=w, class_value=c, confidence=s) for w, c, s in
                      self.read(detected, "DETECTED_FEATURES", crs, context, detected_class, confidence_index, feedback)]
        truths = [TruthObject(wkb=w, class_value=c) for w, c, _ in
                  self.read(truth, "GROUND_TRUTH_FEATURES", crs, context, truth_class, -1, feedback)]
        mask_wkb = None
        if mask is not None:
            mask_wkb = [w for w, _, _ in self.read(mask, "MASK_FEATURES", crs, context, -1, -1, feedback)]
        feedback.pushInfo(f"{len(detections)} detections and {len(truths)} ground-truth objects, compared in "
                          f"{crs.authid() or crs.description()}")
        report = self.parameterAsFileOutput(parameters, "OUT_ACCURACY_REPORT", context) or None
        return check_config(DetectionAccuracyConfig(
            detections=detections,
            ground_truth=truths,
            min_iou=self.parameterAsDouble(parameters, "MIN_IOU", context),
            mask_wkb=mask_wkb,
            out_accuracy_report=report,
            crs=crs.authid() or crs.description(),
            has_confidence=confidence_index >= 0,
        ))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        config = self.build_config(parameters, context, feedback)
        rows = run_accuracy(config, feedback, DISPLAY_NAME)["rows"]
        feedback.pushInfo(rows_text(DETECTION_FIELDS, rows))
        dest_id = write_table(self, parameters, "OUT_ACCURACY_TABLE", context, TABLE_COLUMNS, rows)
        return {"OUT_ACCURACY_TABLE": dest_id, "OUT_ACCURACY_REPORT": config.out_accuracy_report}
