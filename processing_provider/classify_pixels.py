"""deeplearningtools:classifypixelsusingdeeplearning — Classify Pixels Using Deep Learning.

Thin: IN_RASTER becomes a GDAL path, the parameters an ``InferConfig`` (tool
``classify_pixels``), and the engine writes a single-band class-value GeoTIFF in a worker
process. The output is styled with the model's classes: a paletted renderer with the class
names and colours of the emd, set by a layer post-processor when QGIS loads the output and
saved as a ``.qml`` beside it, so the raster opens styled wherever it is opened later.
"""

import os
from typing import Any, Dict, List

from qgis.core import (
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterRasterDestination,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QColor

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
    model_classes,
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
<code>.qml</code> beside the output). Pixels the model does not classify (outside the raster's data)
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


# QGIS keeps a pointer to a post-processor only: the Python object must stay alive until the
# layer is loaded. One per output path (a later run replaces an earlier one).
_POST_PROCESSORS: Dict[str, "ClassStyle"] = {}


class ClassStyle(QgsProcessingLayerPostProcessorInterface):
    """Sets a paletted renderer with the model's class values, names and colours on the
    loaded output layer (as QGIS's own algorithms style their outputs)."""

    def __init__(self, classes: List[Dict[str, Any]]):
        super().__init__()
        self.classes = classes

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            apply_class_style(layer, self.classes)

    @classmethod
    def create(cls, key: str, classes: List[Dict[str, Any]]) -> "ClassStyle":
        processor = cls(classes)
        _POST_PROCESSORS[key] = processor
        return processor


def palette_classes(classes: List[Dict[str, Any]]) -> List[QgsPalettedRasterRenderer.Class]:
    """The emd's Classes as paletted renderer classes (random colours where the emd has none)."""
    import random

    rng = random.Random(0)
    out = []
    for entry in classes:
        try:
            value = int(entry.get("Value"))
        except (TypeError, ValueError):
            continue
        color = entry.get("Color")
        drawn = [rng.randrange(256) for _ in range(3)]
        if isinstance(color, (list, tuple)) and len(color) >= 3 and all(
            isinstance(c, (int, float)) and 0 <= c <= 255 for c in color[:3]
        ):
            qcolor = QColor(int(color[0]), int(color[1]), int(color[2]))
        else:
            qcolor = QColor(*drawn)
        name = str(entry.get("Name") or value)
        out.append(QgsPalettedRasterRenderer.Class(value, qcolor, name))
    return out


def apply_class_style(layer: QgsRasterLayer, classes: List[Dict[str, Any]]) -> bool:
    palette = palette_classes(classes)
    if not palette:
        return False
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return True


def save_class_style(path: str, classes: List[Dict[str, Any]], feedback=None) -> None:
    """``<output>.qml``: QGIS loads it as the default style of the raster wherever it is opened."""
    layer = QgsRasterLayer(path, "classified", "gdal")
    if not layer.isValid() or not apply_class_style(layer, classes):
        return
    message, ok = layer.saveDefaultStyle()
    if not ok and feedback is not None:
        feedback.pushWarning(f"the class style could not be saved beside {path}: {message}")


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
        """(InferConfig checked here, the destination as QGIS knows it); what needs the model is
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
        return check_config(config), destination

    def infer(self, parameters, context, feedback):
        # ``destination`` is the key under which QGIS loads the output; ``out`` the file.
        config, destination = self.build_config(parameters, context, feedback)
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

        classes = result.get("classes") if isinstance(result.get("classes"), list) else None
        if classes is None:
            classes = model_classes(config.model, feedback)
        if classes:
            save_class_style(out, classes, feedback)
            if context.willLoadLayerOnCompletion(destination):
                details = context.layerToLoadOnCompletionDetails(destination)
                details.setPostProcessor(ClassStyle.create(destination, classes))
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
