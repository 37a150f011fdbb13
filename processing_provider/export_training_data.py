"""deeplearningtools:exporttrainingdatafordeeplearning — Export Training Data For Deep Learning.

Thin: QGIS reads the layers (any provider, unsaved edits included: ``layer_inputs``) into a
``dl_engine.export.ExportConfig``, checked here (``ExportConfig.check``), and writes it as a job
into a temporary folder (``dl_engine.export.job``: the labels as WKB, rasters that are not plain
files as GeoTIFFs). ``python -m dl_engine export --job`` runs it in a worker process with the
engine's Python (``engine_process.run_worker``: progress, log, cancel), so QGIS's own Python needs
no rasterio. The job folder is removed on every exit path, by the worker too when QGIS dies.
Rules about tile sizes, formats, folders, extents live in the engine.
"""

import shutil
import tempfile

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

from dl_engine import checks  # standard library only
from dl_engine.export.config import ExportConfig  # standard library only
from dl_engine.export.job import write_job  # standard library only

from .base import (PROCESSING_MODE, DeepLearningAlgorithm, KeywordEnum, advanced, check_config, config_default,
                   keyword_help, run_guarded)
from .engine_process import run_worker

CANCELED_MESSAGE = "Export canceled: nothing was written"

IMAGE_CHIP_FORMAT = KeywordEnum(
    "IMAGE_CHIP_FORMAT",
    "Image format",
    [
        ("TIFF", "GeoTIFF, any band count and data type"),
        ("PNG", "at most 3 bands of 8-bit data"),
        ("JPEG", "at most 3 bands of 8-bit data, lossy"),
        ("MRF", "Meta Raster Format"),
    ],
    "TIFF",
)

# Same order as the arcpy enumeration and dl_engine.export.config.METADATA_FORMATS.
METADATA_FORMAT = KeywordEnum(
    "METADATA_FORMAT",
    "Metadata format",
    [
        ("KITTI_rectangles", "object detection, KITTI label text files"),
        ("PASCAL_VOC_rectangles", "object detection, PASCAL VOC XML files"),
        ("Classified_Tiles", "pixel classification, one class-value raster per chip"),
        ("RCNN_Masks", "instance segmentation, one mask per class with an id per object (Mask R-CNN)"),
        ("Labeled_Tiles", "object classification, one chip per feature labelled with its class"),
        ("MultiLabeled_Tiles", "multi-label classification, every class in the chip"),
        ("Export_Tiles", "image chips without labels"),
        ("CycleGAN", "unpaired image translation, A/ from IN_RASTER and B/ from IN_RASTER2"),
        ("Imagenet", "object classification, chips in one folder per class"),
        ("Panoptic_Segmentation", "panoptic segmentation, classes plus instances of IN_INSTANCE_DATA"),
    ],
    "PASCAL_VOC_rectangles",
)

REFERENCE_SYSTEM = KeywordEnum(
    "REFERENCE_SYSTEM",
    "Reference system",
    [
        ("MAP_SPACE", "map coordinates"),
        ("PIXEL_SPACE", "image (pixel) coordinates"),
    ],
    "MAP_SPACE",
)

CROP_MODE = KeywordEnum(
    "CROP_MODE",
    "Crop mode (Labeled_Tiles, Imagenet)",
    [
        ("FIXED_SIZE", "chips of the tile size centred on each feature"),
        ("BOUNDING_BOX", "chips cropped to each feature's bounding box"),
    ],
    "FIXED_SIZE",
)

ENUMS = (IMAGE_CHIP_FORMAT, METADATA_FORMAT, REFERENCE_SYSTEM, PROCESSING_MODE, CROP_MODE)


HELP = f"""
<p>Converts a raster and labelled features (or a classified raster) into image chips
and labels in the folder layout of ArcGIS Pro's <i>Export Training Data For Deep Learning</i>
(images/, labels/, map.txt, stats.txt, esri_accumulated_stats.json, esri_model_definition.emd),
ready for <i>Train Deep Learning Model</i> here or arcgis.learn.</p>
<p><b>IN_RASTER</b>: the imagery to cut into chips. <b>TILE_SIZE_X</b> and <b>TILE_SIZE_Y</b>: the chip size in
pixels. <b>STRIDE_X</b> and <b>STRIDE_Y</b>: the distance from one chip to the next, in pixels (the tile size: chips
side by side; half of it: chips overlapping by half).</p>
<p>Metadata formats (<b>METADATA_FORMAT</b>):</p>
<ul>
<li><code>KITTI_rectangles</code>, <code>PASCAL_VOC_rectangles</code>: object detection, one label file
(boxes) per chip.</li>
<li><code>Classified_Tiles</code>: pixel classification, one class-value raster per chip (0 = background).</li>
<li><code>RCNN_Masks</code>: instance segmentation, <code>labels/&lt;class name&gt;/&lt;n&gt;.tif</code> with
one id per object (1…N, 0 = background).</li>
<li><code>Labeled_Tiles</code>: one chip per feature, centred on it; <code>labels/&lt;n&gt;.xml</code> holds one
object named by its class value.</li>
<li><code>MultiLabeled_Tiles</code>: tiles whose label lists every class in the chip (comma-separated).</li>
<li><code>Export_Tiles</code>: image chips only (no IN_CLASS_DATA needed).</li>
<li><code>CycleGAN</code>: <code>A/</code> from IN_RASTER and <code>B/</code> from <b>IN_RASTER2</b> (required),
each a complete export; no IN_CLASS_DATA needed.</li>
<li><code>Imagenet</code>: one chip per feature, in <code>images/&lt;class name&gt;/</code>.</li>
<li><code>Panoptic_Segmentation</code>: class rasters in <code>labels/</code> plus instance masks from
<b>IN_INSTANCE_DATA</b> (required) in <code>labels2/&lt;instance class name&gt;/</code>.</li>
</ul>
<p>Enumerations are passed by index; each option label starts with the arcpy keyword:</p>
<ul>
<li>{keyword_help(IMAGE_CHIP_FORMAT)}</li>
<li>{keyword_help(METADATA_FORMAT)}</li>
<li>{keyword_help(REFERENCE_SYSTEM)}</li>
<li>{keyword_help(PROCESSING_MODE)}</li>
<li>{keyword_help(CROP_MODE)}</li>
</ul>
<p><b>IN_CLASS_DATA</b>: polygons, lines, points (with <b>BUFFER_RADIUS</b>, in the label layer's
units) from any provider and CRS (reprojected to the raster's), or a classified raster (Classified_Tiles).
Required for every format but Export_Tiles and CycleGAN. Invalid geometries are made valid.</p>
<p><b>CLASS_VALUE_FIELD</b>: integer class values ≥ 0. If empty, a field named
<code>classvalue</code> or <code>value</code> (any case) is used; if there is none, every feature is
class 1. Class names come from a <code>classname</code>/<code>class_name</code> field, colours from
a categorized renderer on the class field (or a paletted renderer of a classified raster).</p>
<p><b>OUT_FOLDER</b> must be empty or absent, unless <b>START_INDEX</b> &gt; 0 appends to an
earlier export of the same format and tile size. <b>OUTPUT_NOFEATURE_TILES</b> false writes
only chips that contain features. <b>IN_MASK_POLYGONS</b>: only chips completely inside
these polygons. <b>MIN_POLYGON_OVERLAP_RATIO</b>: drop a feature from a chip when less than
this share of it lies inside. <b>IN_RASTER2</b>: an additional raster written to images2/.</p>
<p><b>ROTATION_ANGLE</b>: 0, or an angle between 0 and 360 degrees: every chip is also exported
rotated by each multiple of the angle below 360 (labels rotated with it; 90 gives 4 chips per position).
<b>PROCESSING_MODE</b> <code>PROCESS_ITEMS_SEPARATELY</code> exports each source file of a VRT as its own
image (chips in one folder, numbered on). <b>CROP_MODE</b> (<code>FIXED_SIZE</code> chips of the tile size
centred on the feature, or <code>BOUNDING_BOX</code> the feature's bounding box) and
<b>BLACKEN_AROUND_FEATURE</b> (pixels outside the feature set to 0) apply to the formats with one chip
per feature, Labeled_Tiles and Imagenet; both are recorded in the emd (CropTileMode, BlackenAroundFeature).
<b>IN_INSTANCE_DATA</b> (Panoptic_Segmentation): instance features, with the class values of
<b>INSTANCE_CLASS_VALUE_FIELD</b> under the same rules as CLASS_VALUE_FIELD (points need BUFFER_RADIUS).</p>
<p>IN_RASTER may be any raster layer QGIS reads: files as they are; database layers, layers of other
providers and web layers are written to a temporary GeoTIFF first. A web layer (WMS, WMTS, XYZ tiles) has
no resolution of its own: give CELL_SIZE and EXTENT. The export runs in a worker process with the engine's
Python; a temporary folder hands it the labels and is removed when the run ends.</p>
<p>Advanced: <b>EXTENT</b> limits the export (ArcGIS Extent environment), <b>CELL_SIZE</b>
resamples to this resolution (map units; empty or 0 = the raster's),
<b>PARALLEL_PROCESSING_FACTOR</b> is the worker count (0 = every core).</p>
<p>Outputs: <b>OUT_FOLDER</b> and <b>NUM_TILES</b> (chips written by this run).</p>
"""


class ExportTrainingDataForDeepLearning(DeepLearningAlgorithm):
    ALGORITHM_ID = "exporttrainingdatafordeeplearning"
    DISPLAY_NAME = "Export Training Data For Deep Learning"
    GROUP_ID = "trainingdata"
    HELP = HELP
    TAGS = (
        "deep learning", "training data", "image chips", "tiles", "labels", "export",
        "Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles", "Export_Tiles",
        "RCNN_Masks", "Labeled_Tiles", "MultiLabeled_Tiles", "CycleGAN", "Imagenet", "Panoptic_Segmentation",
        "segmentation", "object detection", "instance segmentation", "classification", "arcgis", "arcpy",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        number = QgsProcessingParameterNumber

        def default(name):
            return config_default(ExportConfig, name)

        self.addParameter(QgsProcessingParameterRasterLayer("IN_RASTER", "Input raster"))
        self.addParameter(QgsProcessingParameterFolderDestination("OUT_FOLDER", "Output folder"))
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "IN_CLASS_DATA",
                "Input feature class or classified raster",
                optional=True,
                types=[QgsProcessing.TypeVectorAnyGeometry, QgsProcessing.TypeRaster],
            )
        )
        self.addParameter(IMAGE_CHIP_FORMAT.parameter())
        self.addParameter(number("TILE_SIZE_X", "Tile size X (pixels)", number.Integer, default("tile_size_x")))
        self.addParameter(number("TILE_SIZE_Y", "Tile size Y (pixels)", number.Integer, default("tile_size_y")))
        self.addParameter(number("STRIDE_X", "Stride X (pixels)", number.Integer, default("stride_x")))
        self.addParameter(number("STRIDE_Y", "Stride Y (pixels)", number.Integer, default("stride_y")))
        self.addParameter(
            QgsProcessingParameterBoolean(
                "OUTPUT_NOFEATURE_TILES", "Output tiles without features (false: only tiles with features)",
                default("output_nofeature_tiles"),
            )
        )
        self.addParameter(METADATA_FORMAT.parameter())
        self.addParameter(number("START_INDEX", "Start index (> 0 appends to an earlier export)", number.Integer,
                                  default("start_index")))
        self.addParameter(
            QgsProcessingParameterField(
                "CLASS_VALUE_FIELD",
                "Class value field",
                parentLayerParameterName="IN_CLASS_DATA",
                type=QgsProcessingParameterField.Numeric,
                optional=True,
            )
        )
        self.addParameter(number("BUFFER_RADIUS", "Buffer radius (label layer units)", number.Double, 0.0))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "IN_MASK_POLYGONS", "Mask polygons", [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            number("ROTATION_ANGLE", "Rotation angle (degrees)", number.Double, default("rotation_angle"))
        )
        self.addParameter(REFERENCE_SYSTEM.parameter())
        self.addParameter(PROCESSING_MODE.parameter())
        self.addParameter(
            QgsProcessingParameterBoolean(
                "BLACKEN_AROUND_FEATURE", "Blacken around feature (Labeled_Tiles, Imagenet)",
                default("blacken_around_feature"),
            )
        )
        self.addParameter(CROP_MODE.parameter())
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "IN_RASTER2", "Additional input raster (written to images2/)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "IN_INSTANCE_DATA",
                "Instance data (Panoptic_Segmentation)",
                optional=True,
                types=[QgsProcessing.TypeVectorAnyGeometry],
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "INSTANCE_CLASS_VALUE_FIELD",
                "Instance class value field",
                parentLayerParameterName="IN_INSTANCE_DATA",
                type=QgsProcessingParameterField.Numeric,
                optional=True,
            )
        )
        self.addParameter(
            number("MIN_POLYGON_OVERLAP_RATIO", "Minimum polygon overlap ratio (0–1)", number.Double,
                   default("min_polygon_overlap_ratio"))
        )
        self.addParameter(advanced(QgsProcessingParameterExtent("EXTENT", "Processing extent", optional=True)))
        self.addParameter(
            advanced(
                number("CELL_SIZE", "Cell size (map units; empty = the raster's)", number.Double, default("cell_size"),
                       optional=True)
            )
        )
        self.addParameter(
            advanced(
                number("PARALLEL_PROCESSING_FACTOR", "Parallel processing factor (workers, 0 = all cores)",
                       number.Integer, default("workers"))
            )
        )
        self.addOutput(QgsProcessingOutputNumber("NUM_TILES", "Number of chips written"))

    # ------------------------------------------------------------------
    def build_config(self, parameters, context, feedback, folder=None):
        """The ``ExportConfig`` for these parameters, checked (``ExportConfig.check``: the rules on
        each value; the layers open); what needs the raster's data or the labels is run_export's check.
        Rasters that a worker cannot open as they are go to GeoTIFFs in ``folder``."""
        from . import layer_inputs

        raster_layer = self.parameterAsRasterLayer(parameters, "IN_RASTER", context)
        if raster_layer is None:
            raise QgsProcessingException(
                f"IN_RASTER: cannot open the raster {parameters.get('IN_RASTER')!r}; give a raster layer or file"
            )
        transform_context = context.transformContext()
        raster_crs = raster_layer.crs()

        out_folder = self.parameterAsFileOutput(parameters, "OUT_FOLDER", context) or ""

        metadata_format = METADATA_FORMAT.keyword(self, parameters, context)

        extent = None
        if parameters.get("EXTENT") not in (None, ""):
            extent_rect = self.parameterAsExtent(parameters, "EXTENT", context, raster_crs)
            extent = layer_inputs.rectangle_tuple(extent_rect)
        cell_size = None
        if self.optional_number(parameters, "CELL_SIZE"):
            # 0 = the raster's (the help); typed text stays text (QGIS reads it as 0): ExportConfig.check
            # says "got 'abc'"
            cell_size = checks.as_given(parameters.get("CELL_SIZE"),
                                        self.parameterAsDouble(parameters, "CELL_SIZE", context)) or None
        # A web layer (no pixels of its own) is read at CELL_SIZE over EXTENT.
        raster_path = layer_inputs.raster_to_gdal_path(raster_layer, "IN_RASTER", transform_context, feedback, folder,
                                                       QgsRectangle(*extent) if extent else None,
                                                       None if isinstance(cell_size, str) else cell_size)
        label_rect = QgsRectangle(raster_layer.extent())
        if extent is not None:
            label_rect = label_rect.intersect(QgsRectangle(*extent))
            if label_rect.isEmpty():
                label_rect = QgsRectangle(*extent)  # no overlap: the engine says so, naming EXTENT

        labels = None
        class_layer = self.parameterAsLayer(parameters, "IN_CLASS_DATA", context)
        if parameters.get("IN_CLASS_DATA") not in (None, "") and class_layer is None:
            raise QgsProcessingException(
                f"IN_CLASS_DATA: cannot open {parameters.get('IN_CLASS_DATA')!r}; give a vector layer "
                f"(polygons, points, lines) or a classified raster"
            )
        buffer_radius = self.parameterAsDouble(parameters, "BUFFER_RADIUS", context)
        if isinstance(class_layer, QgsVectorLayer):
            labels = layer_inputs.vector_labels(
                class_layer,
                raster_crs,
                label_rect,
                transform_context,
                field_name=self.parameterAsString(parameters, "CLASS_VALUE_FIELD", context) or None,
                buffer_radius=buffer_radius,
                feedback=feedback,
            )
        elif isinstance(class_layer, QgsRasterLayer):
            labels = layer_inputs.raster_labels(class_layer, "IN_CLASS_DATA", transform_context, feedback, folder)
        elif class_layer is not None:
            raise QgsProcessingException(
                f"IN_CLASS_DATA: layer '{class_layer.name()}' is neither a vector nor a raster layer"
            )

        instance_labels = None
        if parameters.get("IN_INSTANCE_DATA") not in (None, ""):
            if metadata_format != "Panoptic_Segmentation":
                feedback.pushWarning(
                    f"IN_INSTANCE_DATA is used by Panoptic_Segmentation only; ignored for {metadata_format}"
                )
            else:
                instance_layer = self.parameterAsLayer(parameters, "IN_INSTANCE_DATA", context)
                if not isinstance(instance_layer, QgsVectorLayer):
                    what = (
                        f"layer '{instance_layer.name()}' is not a vector layer" if instance_layer is not None
                        else f"cannot open {parameters.get('IN_INSTANCE_DATA')!r}"
                    )
                    raise QgsProcessingException(
                        f"IN_INSTANCE_DATA: {what}; give a vector layer of instance features "
                        f"(polygons, or points with BUFFER_RADIUS)"
                    )
                instance_labels = layer_inputs.instance_labels(
                    instance_layer,
                    raster_crs,
                    label_rect,
                    transform_context,
                    field_name=self.parameterAsString(parameters, "INSTANCE_CLASS_VALUE_FIELD", context) or None,
                    buffer_radius=buffer_radius,
                    feedback=feedback,
                )

        mask_wkb = None
        if parameters.get("IN_MASK_POLYGONS") not in (None, ""):
            mask_source = self.parameterAsSource(parameters, "IN_MASK_POLYGONS", context)
            if mask_source is None:
                raise QgsProcessingException(
                    f"IN_MASK_POLYGONS: cannot open {parameters.get('IN_MASK_POLYGONS')!r}; give a polygon layer"
                )
            mask_wkb = layer_inputs.mask_polygons(mask_source, raster_crs, label_rect, transform_context, feedback)

        raster2 = None
        if parameters.get("IN_RASTER2") not in (None, ""):
            raster2_layer = self.parameterAsRasterLayer(parameters, "IN_RASTER2", context)
            if raster2_layer is None:
                raise QgsProcessingException(
                    f"IN_RASTER2: cannot open the raster {parameters.get('IN_RASTER2')!r}"
                )
            raster2 = layer_inputs.raster_to_gdal_path(raster2_layer, "IN_RASTER2", transform_context, feedback,
                                                       folder, QgsRectangle(*extent) if extent and
                                                       raster2_layer.crs() == raster_crs else None, cell_size)

        return check_config(ExportConfig(
            raster=raster_path,
            out_folder=out_folder,
            metadata_format=metadata_format,
            labels=labels,
            image_format=IMAGE_CHIP_FORMAT.keyword(self, parameters, context),
            tile_size_x=self.parameterAsInt(parameters, "TILE_SIZE_X", context),
            tile_size_y=self.parameterAsInt(parameters, "TILE_SIZE_Y", context),
            stride_x=self.parameterAsInt(parameters, "STRIDE_X", context),
            stride_y=self.parameterAsInt(parameters, "STRIDE_Y", context),
            output_nofeature_tiles=self.parameterAsBool(parameters, "OUTPUT_NOFEATURE_TILES", context),
            start_index=self.parameterAsInt(parameters, "START_INDEX", context),
            mask_wkb=mask_wkb,
            min_polygon_overlap_ratio=self.parameterAsDouble(parameters, "MIN_POLYGON_OVERLAP_RATIO", context),
            reference_system=REFERENCE_SYSTEM.keyword(self, parameters, context),
            raster2=raster2,
            extent=extent,
            cell_size=cell_size,
            workers=self.parameterAsInt(parameters, "PARALLEL_PROCESSING_FACTOR", context),
            band_names=layer_inputs.raster_band_names(raster_layer),
            rotation_angle=self.parameterAsDouble(parameters, "ROTATION_ANGLE", context),
            processing_mode=PROCESSING_MODE.keyword(self, parameters, context),
            crop_mode=CROP_MODE.keyword(self, parameters, context),
            blacken_around_feature=self.parameterAsBool(parameters, "BLACKEN_AROUND_FEATURE", context),
            instance_labels=instance_labels,
            # A raster without a CRS is read in the label layer's (the engine warns and says which)
            assumed_crs=(class_layer.crs().authid() or None) if (
                not raster_crs.isValid() and class_layer is not None and class_layer.crs().isValid()) else None,
        ))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        try:
            folder = tempfile.mkdtemp(prefix="dlt-export-")
        except OSError as error:
            raise QgsProcessingException(f"Export cannot make its job folder in {tempfile.gettempdir()}: "
                                         f"{error.strerror or error}") from None
        try:
            config = self.build_config(parameters, context, feedback, folder)
            if feedback.isCanceled():
                raise QgsProcessingException(CANCELED_MESSAGE)
            try:
                job = write_job(folder, config)
            except OSError as error:  # a full or read-only temporary folder
                raise QgsProcessingException(f"Export cannot write its job into {folder}: "
                                             f"{error.strerror or error}") from None
            result = run_guarded(lambda: run_worker(["-m", "dl_engine", "export", "--job", job], feedback,
                                                    what="Export", temporary=[folder]), feedback, "Export")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return {"OUT_FOLDER": result.get("out_folder") or config.out_folder, "NUM_TILES": int(result["num_tiles"])}
