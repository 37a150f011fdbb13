"""deeplearningtools:classifyobjectsusingdeeplearning — Classify Objects Using Deep Learning.

Thin: IN_FEATURES (optional) are reprojected to the raster's CRS and written to a temporary
GeoJSON with one id property per feature; the engine (tool ``classify_objects``, in a worker
process) writes them back as GeoJSON with the class label and confidence, and the results are
joined by that id to the input features: OUT_FEATURE_CLASS holds every input feature, with
its geometry (in the input layer's CRS) and attributes, plus CLASS_LABEL_FIELD and
``Confidence``. Without IN_FEATURES the engine classifies the image tile by tile: one polygon
per tile, in the raster's CRS.
"""

import json
from typing import Dict, Optional, Tuple

from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from dl_engine.infer.config import CONFIDENCE_FIELD, InferConfig  # standard library only

from . import output_styles
from .base import check_config, config_default
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
    first_present,
    geojson_crs,
    model_parameter,
    raster_parameter,
    remove_quietly,
    temporary_path,
)

ALGORITHM_ID = "classifyobjectsusingdeeplearning"
TOOL = "classify_objects"
ARGUMENT_NAMES = argument_names(TOOL)  # the engine's TOOL_ARGUMENTS names
# The property that carries each input feature's id through the engine and back.
ID_PROPERTY = "dlt_fid"

HELP = f"""
<p>Classifies objects — the features of a layer, or the tiles of the image — with a trained object
classification model (<code>FEATURE_CLASSIFIER</code>), as ArcGIS Pro's <i>Classify Objects Using
Deep Learning</i> does: each feature gets the class the model sees in the image around it.</p>
{COMMON_HELP}
<p><b>IN_FEATURES</b> (optional): the features to classify, in any CRS (they are reprojected to the
raster's). The output holds every feature with its geometry and attributes, plus
<b>CLASS_LABEL_FIELD</b> (default <code>ClassLabel</code>: the class name) and <code>Confidence</code>
(0–100); a feature the model did not classify (outside the raster) has empty values. An input field
of the same name is replaced. Without IN_FEATURES every image tile is classified: one polygon per
tile, in the raster's CRS.</p>
<p><b>ARGUMENTS</b>: <code>name value;name value</code> with {arguments_help(ARGUMENT_NAMES)}
(<code>batch_size</code>: objects per step; <code>tile_size</code>: without IN_FEATURES, the size of
the image tiles in pixels, default the model's chip size). An unknown name is an error that lists the valid ones. Advanced: <b>DEVICE</b> <code>auto</code>,
<code>cpu</code>, <code>cuda</code> or <code>cuda:N</code>.</p>
<p>Output: <b>OUT_FEATURE_CLASS</b>. Loaded into the project, it is named after the model and the
raster (<i>houses.dlpk — Classified objects on OSBS_029</i>) and categorised by CLASS_LABEL_FIELD in the
model's class colours.</p>
"""


def _ogr_variant(ogr_type) -> QVariant.Type:
    from osgeo import ogr

    return {
        ogr.OFTInteger: QVariant.Int,
        ogr.OFTInteger64: QVariant.LongLong,
        ogr.OFTReal: QVariant.Double,
    }.get(ogr_type, QVariant.String)


def output_fields(base: QgsFields, label_field: str, feedback=None) -> Tuple[QgsFields, int, int]:
    """``base`` plus the label (string) and confidence (double) fields; an existing field of
    the same name (any case) is replaced in place. Returns (fields, label index, confidence index)."""
    fields = QgsFields()
    indexes = {}
    wanted = {label_field.lower(): QgsField(label_field, QVariant.String),
              CONFIDENCE_FIELD.lower(): QgsField(CONFIDENCE_FIELD, QVariant.Double)}
    for field in base:
        key = field.name().lower()
        if key in wanted:
            if feedback is not None:
                feedback.pushWarning(f"IN_FEATURES: its field '{field.name()}' is replaced by the model's results")
            indexes[key] = fields.count()
            fields.append(wanted.pop(key))
        else:
            fields.append(QgsField(field))
    for key, field in wanted.items():
        indexes[key] = fields.count()
        fields.append(field)
    return fields, indexes[label_field.lower()], indexes[CONFIDENCE_FIELD.lower()]


class ClassifyObjectsUsingDeepLearning(InferenceAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = "Classify Objects Using Deep Learning"
    TOOL = TOOL
    HELP = HELP
    TAGS = (
        "deep learning", "inference", "classify", "object classification", "feature classifier",
        "dlpk", "emd", "pytorch", "FEATURE_CLASSIFIER", "arcgis", "arcpy",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(raster_parameter())
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "IN_FEATURES", "Input features (empty: classify the image tiles)",
                [QgsProcessing.TypeVectorAnyGeometry], optional=True,
            )
        )
        self.addParameter(model_parameter())
        self.addParameter(arguments_parameter(ARGUMENT_NAMES))
        self.addParameter(QgsProcessingParameterString("CLASS_LABEL_FIELD", "Class label field",
                                                     config_default(InferConfig, "class_label_field")))
        self.addParameter(device_parameter())
        self.addParameter(QgsProcessingParameterFeatureSink("OUT_FEATURE_CLASS", "Classified objects"))

    def build_config(self, parameters, context, feedback):
        """(InferConfig checked here, raster layer, feature source or None); what needs the model
        is the worker's check."""
        model = self.model_path(parameters, context)
        source = None
        if parameters.get("IN_FEATURES") not in (None, ""):
            source = self.parameterAsSource(parameters, "IN_FEATURES", context)
            if source is None:
                raise QgsProcessingException(
                    f"IN_FEATURES: cannot open {parameters.get('IN_FEATURES')!r} as a vector layer; give a layer "
                    f"of points, lines or polygons, or leave it empty to classify the image tiles"
                )
        layer, raster_path = self.raster_input(parameters, context, feedback)
        config = InferConfig(
            tool=self.TOOL,
            in_raster=raster_path,
            model=model,
            out_path=temporary_path("classified_objects", ".geojson"),
            arguments=self.arguments(parameters, context),
            device=self.device(parameters, context),
            class_label_field=(self.parameterAsString(parameters, "CLASS_LABEL_FIELD", context) or "").strip(),
        )
        return check_config(config), layer, source

    def infer(self, parameters, context, feedback):
        config, layer, source = self.build_config(parameters, context, feedback)
        try:
            if source is not None:
                config.in_features = temporary_path("features", ".geojson")
                written = write_features(source, layer.crs(), context.transformContext(), config.in_features,
                                         feedback)
                feedback.pushInfo(f"IN_FEATURES: {written} features to classify")
            result = self.run_engine(config, feedback)
            path = result.get("out_path") or config.out_path
            if source is not None:
                dest_id, count, classified = self.join_back(parameters, context, feedback, config, source, path)
            else:
                dest_id, count, classified = self.tiles(parameters, context, feedback, config, layer, path)
        finally:
            remove_quietly(config.out_path, config.in_features)
        classes = output_styles.model_classes(config.model, feedback)
        output_styles.style_output(
            context, dest_id, output_styles.layer_name(config.model, "Classified objects", layer.name()),
            lambda out: output_styles.style_classified_objects(out, classes, config.class_label_field))
        feedback.pushInfo(f"OUT_FEATURE_CLASS: {classified} of {count} features classified")
        return {"OUT_FEATURE_CLASS": dest_id}

    # ---- with IN_FEATURES: the input features, joined with the results by id ----------------
    def join_back(self, parameters, context, feedback, config, source, path):
        results: Dict[int, Tuple[Optional[str], Optional[float]]] = {}
        with GeoJsonReader(path) as reader:
            for _geometry, properties, fid in reader:
                key = as_int(first_present(properties, ID_PROPERTY))
                if key is None:
                    key = fid
                results[key] = _label_and_confidence(properties, config.class_label_field)
        fields, label_index, confidence_index = output_fields(source.fields(), config.class_label_field, feedback)
        sink, dest_id = self.parameterAsSink(
            parameters, "OUT_FEATURE_CLASS", context, fields, source.wkbType(), source.sourceCrs()
        )
        if sink is None:
            raise QgsProcessingException("OUT_FEATURE_CLASS: cannot create the output layer (check the path and format)")
        count = classified = 0
        base_count = source.fields().count()
        for feature in source.getFeatures():
            if feedback.isCanceled():
                raise QgsProcessingException(f"{self.displayName()} canceled")
            # Replaced fields keep their place, new ones follow: the input's values line up.
            values = list(feature.attributes())[:base_count]
            values += [None] * (fields.count() - len(values))
            label, confidence = results.get(feature.id(), (None, None))
            values[label_index], values[confidence_index] = label, confidence
            classified += label is not None
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            out.setAttributes(values)
            if not sink.addFeature(out, QgsFeatureSink.FastInsert):
                raise QgsProcessingException(f"OUT_FEATURE_CLASS: writing a feature failed: {sink.lastError()}")
            count += 1
        if classified < count:
            feedback.pushWarning(
                f"{count - classified} features got no class (outside the raster, or without a usable geometry)"
            )
        return dest_id, count, classified

    # ---- without IN_FEATURES: one polygon per image tile, in the raster's CRS ---------------
    def tiles(self, parameters, context, feedback, config, layer, path):
        crs = layer.crs() if layer.crs().isValid() else (geojson_crs(path) or layer.crs())
        with GeoJsonReader(path) as reader:
            skip = {config.class_label_field.lower(), CONFIDENCE_FIELD.lower(), ID_PROPERTY}
            extra = [(n, t) for n, t in zip(reader.field_names, reader.field_types) if n.lower() not in skip]
            base = QgsFields()
            for name, ogr_type in extra:
                base.append(QgsField(name, _ogr_variant(ogr_type)))
            fields, label_index, confidence_index = output_fields(base, config.class_label_field)
            wkb_type = QgsWkbTypes.Polygon if len(reader) == 0 or reader.all_single_polygons() else \
                QgsWkbTypes.MultiPolygon
            sink, dest_id = self.parameterAsSink(parameters, "OUT_FEATURE_CLASS", context, fields, wkb_type, crs)
            if sink is None:
                raise QgsProcessingException(
                    "OUT_FEATURE_CLASS: cannot create the output layer (check the path and format)"
                )
            count = classified = 0
            for geometry, properties, _fid in reader:
                if feedback.isCanceled():
                    raise QgsProcessingException(f"{self.displayName()} canceled")
                values = [properties.get(name) for name, _ in extra]
                label, confidence = _label_and_confidence(properties, config.class_label_field)
                values.insert(label_index, label)
                values.insert(confidence_index, confidence)
                if wkb_type == QgsWkbTypes.MultiPolygon and not geometry.isNull():
                    geometry.convertToMultiType()
                out = QgsFeature(fields)
                out.setGeometry(geometry)
                out.setAttributes(values)
                if not sink.addFeature(out, QgsFeatureSink.FastInsert):
                    raise QgsProcessingException(f"OUT_FEATURE_CLASS: writing a feature failed: {sink.lastError()}")
                count += 1
                classified += label is not None
        return dest_id, count, classified


def _label_and_confidence(properties, label_field: str) -> Tuple[Optional[str], Optional[float]]:
    label = first_present(properties, label_field, "ClassLabel", "class_name", "label")
    confidence = as_float(first_present(properties, CONFIDENCE_FIELD, "score"))
    return (None if label is None else str(label)), confidence


def write_features(source, raster_crs, transform_context, path: str, feedback=None) -> int:
    """IN_FEATURES as a GeoJSON FeatureCollection in the raster's CRS, written feature by feature;
    each feature carries its id as the property ``dlt_fid`` (and as the GeoJSON ``id``)."""
    transform = None
    if source.sourceCrs().isValid() and raster_crs.isValid() and source.sourceCrs() != raster_crs:
        transform = QgsCoordinateTransform(source.sourceCrs(), raster_crs, transform_context)
    request = QgsFeatureRequest().setNoAttributes()
    written = skipped = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"type": "FeatureCollection", "crs_wkt": %s, "features": [\n'
                % json.dumps(raster_crs.toWkt() if raster_crs.isValid() else None))
        for feature in source.getFeatures(request):
            if feedback is not None and feedback.isCanceled():
                raise QgsProcessingException("Classify Objects Using Deep Learning canceled")
            geometry = feature.geometry()
            if geometry is None or geometry.isNull() or geometry.isEmpty():
                skipped += 1
                continue
            if transform is not None:
                try:
                    geometry.transform(transform)
                except QgsCsException:
                    skipped += 1
                    continue
            record = {"type": "Feature", "id": feature.id(), "properties": {ID_PROPERTY: feature.id()},
                      "geometry": json.loads(geometry.asJson(17))}
            f.write((",\n" if written else "") + json.dumps(record))
            written += 1
        f.write("\n]}\n")
    if skipped and feedback is not None:
        feedback.pushWarning(f"IN_FEATURES: {skipped} features without a usable geometry are left unclassified")
    if not written:
        raise QgsProcessingException(
            "IN_FEATURES: the layer has no feature with a geometry; give features to classify, or leave it "
            "empty to classify the image tiles"
        )
    return written
