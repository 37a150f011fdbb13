"""deeplearningtools:computeaccuracyforpixelclassification — Compute Accuracy For Pixel Classification.

Thin: IN_RASTER becomes a GDAL path; IN_GROUND_TRUTH_DATA a GDAL path (a classified raster, reprojected
onto IN_RASTER's grid by the engine) or polygons reprojected here into IN_RASTER's CRS (WKB with their
class values, ``layer_inputs.vector_labels``: the export's rules). ``dl_engine.accuracy.pixels`` runs in
a worker process with the engine's Python (``accuracy_tables.run_accuracy``), reading the rasters in strips; its confusion matrix goes into the OUT_CONFUSION_MATRIX
sink and its sample points into OUT_POINTS.
"""

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)

from dl_engine.accuracy.config import (CLASS_VALUE_FIELD, POINT_FIELDS, SAMPLINGS,  # standard library only
                                       PixelAccuracyConfig, PolygonTruth)
from dl_engine.accuracy.job import result_points  # standard library only
from dl_engine.accuracy.tables import rows_text  # standard library only

from . import output_styles
from .accuracy_tables import DOUBLE, STRING, point_fields, run_accuracy, write_table
from .base import DeepLearningAlgorithm, KeywordEnum, advanced, check_config, config_default, keyword_help

ALGORITHM_ID = "computeaccuracyforpixelclassification"
DISPLAY_NAME = "Compute Accuracy For Pixel Classification"

_SAMPLING_HELP = {
    "STRATIFIED_RANDOM": "points in each class in proportion to its area",
    "EQUALIZED_STRATIFIED_RANDOM": "the same number of points in each class",
    "RANDOM": "points anywhere in the classified area",
    "ALL_PIXELS": "every pixel, no points",
}
SAMPLING = KeywordEnum("SAMPLING", "Sampling strategy", [(k, _SAMPLING_HELP[k]) for k in SAMPLINGS],
                       "STRATIFIED_RANDOM")

HELP = f"""
<p>Measures a classified raster (the output of <i>Classify Pixels Using Deep Learning</i>, or any raster of
class values) against ground truth, as ArcGIS Pro's tool of the same name does: a confusion matrix with
user's and producer's accuracy, the overall accuracy, Cohen's kappa and the intersection over union (IoU)
of each class.</p>
<p><b>IN_RASTER</b>: the classified raster (band 1, whole class values; NoData is left out).
<b>IN_GROUND_TRUTH_DATA</b>: a classified raster in any CRS and cell size (read onto IN_RASTER's grid by
nearest neighbour; its NoData and the area outside it are left out), or polygons in any CRS (reprojected
to IN_RASTER's) with their class in a field named <code>classvalue</code> or <code>value</code> (any case;
without one every polygon is class 1). As in the export's Classified_Tiles labels, pixels outside every
polygon are class 0 (background), and where polygons overlap the smaller one wins. To count only the
inside of the polygons, rasterize them (NoData outside) and give the raster.</p>
<p>{keyword_help(SAMPLING)}. Points are pixel centres drawn without replacement from the pixels where both
sides have data. <code>STRATIFIED_RANDOM</code> gives each class of IN_RASTER points in proportion to its
area (<b>NUM_RANDOM_POINTS</b> in all); <code>EQUALIZED_STRATIFIED_RANDOM</code> gives every class
NUM_RANDOM_POINTS / classes points (rounded up); <code>RANDOM</code> draws NUM_RANDOM_POINTS anywhere;
<code>ALL_PIXELS</code> uses every pixel of the overlap instead of points. A class with fewer pixels than
its share gives all of them. <b>MIN_POINT_DISTANCE</b> (units of IN_RASTER's CRS): no two points closer
than this (a warning says when fewer fit). Advanced: <b>RANDOM_SEED</b> (ArcGIS's Random Number Generator
environment): the same inputs and seed give the same points.</p>
<p><b>OUT_CONFUSION_MATRIX</b> is laid out as ArcGIS's confusion matrix: the field
<code>{CLASS_VALUE_FIELD}</code> names the row; rows <code>C_&lt;value&gt;</code> are IN_RASTER's classes
(classified), fields <code>C_&lt;value&gt;</code> the ground truth's (reference), for every class found on
either side; then the fields <code>Total</code>, <code>U_Accuracy</code> (user's accuracy = correct / row
total) and <code>Kappa</code>, and the rows <code>Total</code>, <code>P_Accuracy</code> (producer's accuracy =
correct / column total; its U_Accuracy cell is the overall accuracy), <code>Kappa</code> (Cohen's kappa, in
the Kappa field) and <code>IoU</code> (correct / (row total + column total − correct) per class; its
U_Accuracy cell is the mean IoU). A ratio whose denominator is 0 is written as 0. A GeoPackage table, a
<code>.csv</code> file (with a <code>.csvt</code> giving the field types) or any table format QGIS writes.</p>
<p><b>OUT_POINTS</b> (optional): the sample points in IN_RASTER's CRS with the fields
<code>{POINT_FIELDS[0]}</code> (IN_RASTER's class) and <code>{POINT_FIELDS[1]}</code> (the ground truth's), to
inspect on the map (nothing is written with ALL_PIXELS).</p>
<p>The rasters are read in strips, so memory stays flat on large rasters.</p>
"""


class ComputeAccuracyForPixelClassification(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = DISPLAY_NAME
    GROUP_ID = "accuracy"
    HELP = HELP
    TAGS = ("deep learning", "accuracy", "pixel classification", "confusion matrix", "kappa", "IoU",
            "user's accuracy", "producer's accuracy", "ground truth", "accuracy assessment", "validation",
            "STRATIFIED_RANDOM", "EQUALIZED_STRATIFIED_RANDOM", "RANDOM", "ALL_PIXELS", "arcgis", "arcpy")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        number = QgsProcessingParameterNumber

        def default(name):
            return config_default(PixelAccuracyConfig, name)

        self.addParameter(QgsProcessingParameterRasterLayer("IN_RASTER", "Input raster (classified)"))
        self.addParameter(QgsProcessingParameterMapLayer(
            "IN_GROUND_TRUTH_DATA", "Ground truth data (classified raster or polygons)",
            types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterFeatureSink("OUT_CONFUSION_MATRIX", "Output confusion matrix",
                                                            QgsProcessing.TypeVector))
        self.addParameter(number("NUM_RANDOM_POINTS", "Number of random points", number.Integer,
                                 default("num_random_points"), False, 1))
        self.addParameter(SAMPLING.parameter())
        self.addParameter(number("MIN_POINT_DISTANCE", "Minimum point distance (units of the raster's CRS)",
                                 number.Double, default("min_point_distance"), False, 0.0))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "OUT_POINTS", "Accuracy assessment points", QgsProcessing.TypeVectorPoint, optional=True,
            createByDefault=False))
        self.addParameter(advanced(number("RANDOM_SEED", "Random seed", number.Integer, default("random_seed"),
                                          False, 0)))

    # ------------------------------------------------------------------
    def build_config(self, parameters, context, feedback):
        from . import layer_inputs

        raster = self.parameterAsRasterLayer(parameters, "IN_RASTER", context)
        if raster is None:
            raise QgsProcessingException(
                f"IN_RASTER: cannot open the raster {parameters.get('IN_RASTER')!r}; give a classified raster")
        transform_context = context.transformContext()
        raster_path = layer_inputs.raster_to_gdal_path(raster, "IN_RASTER", transform_context, feedback)

        truth_layer = self.parameterAsLayer(parameters, "IN_GROUND_TRUTH_DATA", context)
        if isinstance(truth_layer, QgsRasterLayer):
            labels = layer_inputs.raster_labels(truth_layer, "IN_GROUND_TRUTH_DATA", transform_context, feedback)
            truth, band = labels.path, labels.band
            feedback.pushInfo(f"IN_GROUND_TRUTH_DATA: the classified raster '{truth_layer.name()}' (band {band}), "
                              f"read onto IN_RASTER's grid by nearest neighbour")
        elif isinstance(truth_layer, QgsVectorLayer):
            if truth_layer.geometryType() != QgsWkbTypes.PolygonGeometry:
                raise QgsProcessingException(
                    f"IN_GROUND_TRUTH_DATA: layer '{truth_layer.name()}' does not hold polygons; give polygons with a "
                    f"class value field (classvalue or value) or a classified raster")
            labels = layer_inputs.vector_labels(
                truth_layer, raster.crs(), raster.extent(), transform_context, field_name=None, feedback=feedback,
                parameter="IN_GROUND_TRUTH_DATA", field_parameter="IN_GROUND_TRUTH_DATA")
            truth, band = PolygonTruth(wkb=list(labels.wkb), values=[int(v) for v in labels.values]), 1
        else:
            raise QgsProcessingException(
                f"IN_GROUND_TRUTH_DATA: cannot open {parameters.get('IN_GROUND_TRUTH_DATA')!r}; give a classified "
                f"raster or polygons with a class value field")

        return check_config(PixelAccuracyConfig(
            in_raster=raster_path,
            ground_truth=truth,
            num_random_points=self.parameterAsInt(parameters, "NUM_RANDOM_POINTS", context),
            sampling=SAMPLING.keyword(self, parameters, context),
            min_point_distance=self.parameterAsDouble(parameters, "MIN_POINT_DISTANCE", context),
            random_seed=self.parameterAsInt(parameters, "RANDOM_SEED", context),
            ground_truth_band=band,
        )), raster

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        config, raster = self.build_config(parameters, context, feedback)
        result = run_accuracy(config, feedback, DISPLAY_NAME)
        fields, rows = result["fields"], result["rows"]
        feedback.pushInfo(rows_text(fields, rows))
        feedback.pushInfo(f"overall accuracy {result['overall_accuracy']:.4f}, kappa {result['kappa']:.4f}, mean IoU "
                          f"{result['mean_iou']:.4f} ({result['total']} "
                          f"{'pixels' if config.sampling == 'ALL_PIXELS' else 'points'})")
        columns = [(CLASS_VALUE_FIELD, STRING)] + [(name, DOUBLE) for name in fields[1:]]
        outputs = {"OUT_CONFUSION_MATRIX": write_table(self, parameters, "OUT_CONFUSION_MATRIX", context, columns,
                                                       rows)}
        if parameters.get("OUT_POINTS") not in (None, ""):
            outputs["OUT_POINTS"] = self.write_points(parameters, context, feedback, result, raster, config)
        return outputs

    def write_points(self, parameters, context, feedback, result, raster, config):
        fields = point_fields(POINT_FIELDS)
        sink, dest_id = self.parameterAsSink(parameters, "OUT_POINTS", context, fields, QgsWkbTypes.Point,
                                             raster.crs())
        if sink is None:
            # An optional sink left unset (QGIS passes None): nothing to write.
            return None
        if config.sampling == "ALL_PIXELS":
            feedback.pushWarning("OUT_POINTS: ALL_PIXELS uses every pixel, not points; the layer is empty")
        for x, y, classified, reference in result_points(result):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
            feature.setAttributes([classified, reference])
            if not sink.addFeature(feature, QgsFeatureSink.FastInsert):
                raise QgsProcessingException(f"OUT_POINTS: writing a point failed: {sink.lastError()}")
        output_styles.style_output(context, dest_id, f"Accuracy assessment points on {raster.name()}",
                                   lambda layer: output_styles.style_agreement(layer, *POINT_FIELDS))
        return dest_id
