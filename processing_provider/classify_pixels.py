"""deeplearningtools:classifypixelsusingdeeplearning — Classify Pixels Using Deep Learning.

Thin: IN_RASTER becomes a GDAL path, the parameters an ``InferConfig`` (tool
``classify_pixels``), and the engine writes a single-band class-value GeoTIFF in a worker
process. The output is styled with the model's classes (output_styles.py): a paletted renderer
with the class names and colours of the emd, set by a layer post-processor when QGIS loads the
output and saved as a ``.qml`` beside it, so the raster opens styled wherever it is opened later.
"""

import os

from qgis.core import QgsProcessingException, QgsProcessingParameterRasterDestination

from . import output_styles
from .base import PROCESSING_MODE, check_config, keyword_help
from .inference_base import (
    COMMON_HELP,
    InferenceAlgorithm,
    argument_names,
    arguments_help,
    arguments_parameter,
    as_int,
    cell_size_parameter,
    device_parameter,
    extent_parameter,
    model_parameter,
    raster_parameter,
    remove_quietly,
    summary,
    temporary_path,
)

ALGORITHM_ID = "classifypixelsusingdeeplearning"
TOOL = "classify_pixels"
ARGUMENT_NAMES = argument_names(TOOL)  # the engine's TOOL_ARGUMENTS names
GEOTIFF_EXTENSIONS = (".tif", ".tiff")

HELP = f"""
<p>Classifies every pixel of a raster with a trained pixel classification model (<code>UNET</code>,
<code>PSPNET</code>, <code>DEEPLAB</code>), as ArcGIS Pro's <i>Classify Pixels Using Deep Learning</i>
does. The output is a single-band raster of class values on the grid of IN_RASTER (or of EXTENT and
CELL_SIZE), with the model's class names and colours (a paletted style, also saved as a
<code>.qml</code> beside the output), named after the model and the raster
(<i>landcover.dlpk — Classified pixels on OSBS_029</i>). Pixels the model does not classify (outside the raster's data)
are NoData.</p>
{COMMON_HELP}
<p><b>ARGUMENTS</b>: <code>name value;name value</code> with {arguments_help(ARGUMENT_NAMES)}:
<code>padding</code> (pixels of context around each tile that are cut off again, default a quarter
of the tile), <code>batch_size</code> (tiles per step), <code>predict_background</code>
(<code>true</code>: class 0 / background is a class of its own), <code>test_time_augmentation</code>
(<code>true</code>: average over flipped and rotated copies), <code>tile_size</code> (pixels, default
the model's chip size). An unknown name is an error that lists the valid ones.</p>
<p>{keyword_help(PROCESSING_MODE)} (items = the files of a VRT/mosaic, each classified on its own).</p>
<p><b>EXTENT</b>: only this area (in any CRS; it is converted to the raster's). <b>CELL_SIZE</b>:
classify at this resolution (raster CRS units; the raster is resampled). Advanced: <b>DEVICE</b>
<code>auto</code>, <code>cpu</code>, <code>cuda</code> or <code>cuda:N</code>.</p>
<p>Output: <b>OUT_CLASSIFIED_RASTER</b> (GeoTIFF; another format is converted by GDAL).</p>
"""


class ClassifyPixelsUsingDeepLearning(InferenceAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = "Classify Pixels Using Deep Learning"
    TOOL = TOOL
    HELP = HELP
    TAGS = (
        "deep learning", "inference", "classify", "pixel classification", "segmentation", "land cover",
        "dlpk", "emd", "pytorch", "UNET", "PSPNET", "DEEPLAB", "arcgis", "arcpy",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(raster_parameter())
        self.addParameter(model_parameter())
        self.addParameter(arguments_parameter(ARGUMENT_NAMES))
        self.addParameter(PROCESSING_MODE.parameter())
        self.addParameter(extent_parameter())
        self.addParameter(cell_size_parameter())
        self.addParameter(device_parameter())
        self.addParameter(QgsProcessingParameterRasterDestination("OUT_CLASSIFIED_RASTER", "Classified raster"))

    def build_config(self, parameters, context, feedback):
        """(InferConfig checked here, the destination as QGIS knows it, the raster layer); what needs the model is
        the worker's check."""
        from dl_engine.infer.config import InferConfig

        model = self.model_path(parameters, context)
        layer, raster_path = self.raster_input(parameters, context, feedback)
        destination = self.parameterAsOutputLayer(parameters, "OUT_CLASSIFIED_RASTER", context)
        config = InferConfig(
            tool=self.TOOL,
            in_raster=raster_path,
            model=model,
            out_path=os.path.abspath(destination) if destination else "",
            arguments=self.arguments(parameters, context),
            processing_mode=PROCESSING_MODE.keyword(self, parameters, context),
            extent=self.extent(parameters, context, layer),
            cell_size=self.cell_size(parameters, context),
            device=self.device(parameters, context),
        )
        return check_config(config), destination, layer

    def infer(self, parameters, context, feedback):
        # ``destination`` is the key under which QGIS loads the output; ``out`` the file.
        config, destination, layer = self.build_config(parameters, context, feedback)
        out = config.out_path
        geotiff = os.path.splitext(out)[1].lower() in GEOTIFF_EXTENSIONS
        if not geotiff:  # the engine writes GeoTIFF; GDAL converts it at the end
            config.out_path = temporary_path("classified", ".tif")
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        try:
            result = self.run_engine(config, feedback)
            written = result.get("out_path") or config.out_path
            if not os.path.isfile(written):
                raise QgsProcessingException(f"{self.displayName()} reported {written} but did not write it")
            if not geotiff:
                translate(written, out)
        finally:
            if not geotiff:
                remove_quietly(config.out_path, config.out_path + ".aux.xml")

        classes = output_styles.model_classes(config.model, feedback)
        if classes:
            output_styles.save_class_style(out, classes, feedback)
        output_styles.attach(context, destination,
                             output_styles.layer_name(config.model, "Classified pixels", layer.name()),
                             lambda loaded: output_styles.style_class_raster(loaded, classes))
        names = {0: "background"}
        names.update({as_int(c.get("Value")): str(c.get("Name")) for c in classes if as_int(c.get("Value")) is not None})
        line = summary(result, names)
        feedback.pushInfo(f"OUT_CLASSIFIED_RASTER: {out}" + (f" — {line}" if line else ""))
        return {"OUT_CLASSIFIED_RASTER": destination}


def translate(source: str, destination: str) -> None:
    """Copy the engine's GeoTIFF into the requested format (by the destination's extension)."""
    from osgeo import gdal

    from qgis.core import QgsRasterFileWriter

    driver = QgsRasterFileWriter.driverForExtension(os.path.splitext(destination)[1]) or "GTiff"
    dataset = gdal.Translate(destination, source, format=driver)
    if dataset is None:
        remove_quietly(destination)
        raise QgsProcessingException(
            f"OUT_CLASSIFIED_RASTER: GDAL cannot write {destination} as {driver}; use a .tif file"
        )
    dataset = None
