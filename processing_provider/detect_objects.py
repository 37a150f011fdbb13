"""deeplearningtools:detectobjectsusingdeeplearning — Detect Objects Using Deep Learning.

Thin: IN_RASTER becomes a GDAL path, the parameters an ``InferConfig`` (tool
``detect_objects``); the engine writes the detections as a GeoJSON FeatureCollection in the
raster's CRS in a worker process, and they are copied here into the feature sink
OUT_DETECTED_OBJECTS with the fields CLASS_VALUE_FIELD (class name), ``ClassValue`` and
CONFIDENCE_SCORE_FIELD.
"""

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from dl_engine.arguments import parse_arguments  # standard library only
from dl_engine.infer.arguments import TOOL_ARGUMENTS, TOOL_NAMES  # standard library only
from dl_engine.infer.config import CLASS_VALUE_NUMBER_FIELD, InferConfig  # standard library only

from . import output_styles
from .base import PROCESSING_MODE, check_config, config_default, keyword_help
from .inference_base import (
    COMMON_HELP,
    GeoJsonReader,
    InferenceAlgorithm,
    argument_names,
    arguments_help,
    arguments_parameter,
    as_float,
    as_int,
    device_parameter,
    extent_parameter,
    first_present,
    geojson_crs,
    model_parameter,
    raster_parameter,
    remove_quietly,
    summary,
    temporary_path,
)

ALGORITHM_ID = "detectobjectsusingdeeplearning"
TOOL = "detect_objects"
ARGUMENT_NAMES = argument_names(TOOL)  # the engine's TOOL_ARGUMENTS names

HELP = f"""
<p>Finds objects in a raster with a trained object detection model and writes one polygon per
object, as ArcGIS Pro's <i>Detect Objects Using Deep Learning</i> does: a rectangle for box
detectors, the object's outline for instance segmentation (<code>MASKRCNN</code>). The polygons are
in the raster's CRS.</p>
{COMMON_HELP}
<p><b>ARGUMENTS</b>: <code>name value;name value</code> with {arguments_help(ARGUMENT_NAMES)}:
<code>padding</code> (pixels of overlap between tiles), <code>threshold</code> (the lowest confidence
kept, 0–1), <code>nms_overlap</code> (boxes of one class overlapping more than this are merged),
<code>batch_size</code>, <code>exclude_pad_detections</code> (<code>true</code>: drop detections in
a tile's padding), <code>tile_size</code>. An unknown name is an error that lists the valid ones.</p>
<p><b>RUN_NMS</b>: remove duplicate detections across tiles (non-maximum suppression);
<b>MAX_OVERLAP_RATIO</b> (0–1) is the overlap above which two detections count as the same object.
<b>CONFIDENCE_SCORE_FIELD</b> (default <code>Confidence</code>) and <b>CLASS_VALUE_FIELD</b> (default
<code>Class</code>) name the output fields of the confidence (0–100) and of the class name; the
field <code>ClassValue</code> holds the class value.</p>
<p>{keyword_help(PROCESSING_MODE)}. <b>EXTENT</b>: only this area (any CRS). Advanced:
<b>DEVICE</b> <code>auto</code>, <code>cpu</code>, <code>cuda</code> or <code>cuda:N</code>.</p>
<p>Output: <b>OUT_DETECTED_OBJECTS</b> (polygons). Loaded into the project, it is named after the model
and the raster (<i>trees.dlpk — Detected objects on OSBS_029</i>) and drawn as outlines in the model's
class colours, labelled with the class and the confidence.</p>
"""


class DetectObjectsUsingDeepLearning(InferenceAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = "Detect Objects Using Deep Learning"
    TOOL = TOOL
    HELP = HELP
    TAGS = (
        "deep learning", "inference", "detect", "object detection", "boxes", "instance segmentation",
        "dlpk", "emd", "pytorch", "SSD", "RETINANET", "FASTERRCNN", "MASKRCNN", "YOLOV3", "arcgis", "arcpy",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        number = QgsProcessingParameterNumber
        self.addParameter(raster_parameter())
        self.addParameter(model_parameter())
        self.addParameter(arguments_parameter(ARGUMENT_NAMES))
        self.addParameter(QgsProcessingParameterBoolean("RUN_NMS", "Non maximum suppression",
                                                        config_default(InferConfig, "run_nms")))
        self.addParameter(
            QgsProcessingParameterString("CONFIDENCE_SCORE_FIELD", "Confidence score field",
                                        config_default(InferConfig, "confidence_score_field"))
        )
        self.addParameter(QgsProcessingParameterString("CLASS_VALUE_FIELD", "Class value field",
                                                     config_default(InferConfig, "class_value_field")))
        self.addParameter(number("MAX_OVERLAP_RATIO", "Max overlap ratio (0–1)", number.Double,
                                  config_default(InferConfig, "max_overlap_ratio")))
        self.addParameter(PROCESSING_MODE.parameter())
        self.addParameter(extent_parameter())
        self.addParameter(device_parameter())
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                "OUT_DETECTED_OBJECTS", "Detected objects", QgsProcessing.TypeVectorPolygon
            )
        )

    def build_config(self, parameters, context, feedback):
        """(InferConfig checked here, raster layer); what needs the model is the worker's check."""
        def text(name):
            return (self.parameterAsString(parameters, name, context) or "").strip()

        model = self.model_path(parameters, context)
        layer, raster_path = self.raster_input(parameters, context, feedback)
        config = InferConfig(
            tool=self.TOOL,
            in_raster=raster_path,
            model=model,
            out_path=temporary_path("detections", ".geojson"),
            arguments=self.arguments(parameters, context),
            processing_mode=PROCESSING_MODE.keyword(self, parameters, context),
            extent=self.extent(parameters, context, layer),
            device=self.device(parameters, context),
            run_nms=self.parameterAsBool(parameters, "RUN_NMS", context),
            confidence_score_field=text("CONFIDENCE_SCORE_FIELD"),
            class_value_field=text("CLASS_VALUE_FIELD"),
            max_overlap_ratio=self.parameterAsDouble(parameters, "MAX_OVERLAP_RATIO", context),
        )
        return check_config(config), layer

    def infer(self, parameters, context, feedback):
        config, layer = self.build_config(parameters, context, feedback)
        try:
            result = self.run_engine(config, feedback)
            path = result.get("out_path") or config.out_path
            crs = layer.crs() if layer.crs().isValid() else (geojson_crs(path) or layer.crs())
            with GeoJsonReader(path) as reader:
                fields = QgsFields()
                fields.append(QgsField(config.class_value_field, QVariant.String))
                fields.append(QgsField(CLASS_VALUE_NUMBER_FIELD, QVariant.Int))
                fields.append(QgsField(config.confidence_score_field, QVariant.Double))
                single = len(reader) == 0 or reader.all_single_polygons()
                wkb_type = QgsWkbTypes.Polygon if single else QgsWkbTypes.MultiPolygon
                sink, dest_id = self.parameterAsSink(parameters, "OUT_DETECTED_OBJECTS", context, fields, wkb_type, crs)
                if sink is None:
                    raise QgsProcessingException(
                        "OUT_DETECTED_OBJECTS: cannot create the output layer (check the path and format)"
                    )
                count = 0
                for geometry, properties, _fid in reader:
                    if feedback.isCanceled():
                        raise QgsProcessingException(f"{self.displayName()} canceled")
                    feature = QgsFeature(fields)
                    feature.setGeometry(_as_type(geometry, single))
                    value = as_int(first_present(properties, CLASS_VALUE_NUMBER_FIELD, "class_value", "value"))
                    name = first_present(properties, config.class_value_field, "Class", "class_name", "label")
                    feature.setAttributes([
                        None if name is None else str(name),
                        value,
                        as_float(first_present(properties, config.confidence_score_field, "Confidence", "score")),
                    ])
                    if not sink.addFeature(feature, QgsFeatureSink.FastInsert):
                        raise QgsProcessingException(
                            f"OUT_DETECTED_OBJECTS: writing a feature failed: {sink.lastError()}"
                        )
                    count += 1
        finally:
            remove_quietly(config.out_path)
        classes = output_styles.model_classes(config.model, feedback)
        output_styles.style_output(
            context, dest_id, output_styles.layer_name(config.model, "Detected objects", layer.name()),
            lambda out: output_styles.style_detections(out, classes, config.class_value_field,
                                                       config.confidence_score_field))
        line = summary(result)
        feedback.pushInfo(f"OUT_DETECTED_OBJECTS: {count} objects detected" + (f" — {line}" if line else ""))
        if count == 0:
            feedback.pushWarning(nothing_detected(config.arguments))
        return {"OUT_DETECTED_OBJECTS": dest_id}


def nothing_detected(arguments: str) -> str:
    """What to do when no object passed the confidence threshold (ARGUMENTS threshold)."""
    threshold = parse_arguments(arguments, TOOL_ARGUMENTS[TOOL], TOOL_NAMES[TOOL]).get("threshold")
    lower = max(round(float(threshold) / 2, 2), 0.05)
    return (f"No objects detected at the confidence threshold {float(threshold):g} (ARGUMENTS threshold, 0–1, "
            f"default {TOOL_ARGUMENTS[TOOL]['threshold']:g}). To see less certain detections, lower it: ARGUMENTS "
            f"'threshold {lower:g}'. Also check that the raster shows what the model was trained on (bands, cell "
            f"size).")


def _as_type(geometry, single: bool):
    if geometry.isNull() or geometry.isEmpty():
        return geometry
    if single:
        if geometry.isMultipart():
            geometry.convertToSingleType()
    else:
        geometry.convertToMultiType()
    return geometry
