"""How the inference tools' outputs look when QGIS loads them: the model's class names and
colours (the emd's ``Classes``), and a layer name that says which model ran on which raster
("trees.dlpk — Detected objects on OSBS_029").

- Detected objects: outlines (no fill, the imagery stays visible) in the class colours,
  categorised by the class name field, labelled with the class and the confidence.
- Classified objects: categorised by the class label field, in the class colours.
- Accuracy assessment points: green where they agree with the ground truth, red where not.
- Classified pixels: a paletted raster renderer with the class values, names and colours,
  also saved as a ``.qml`` beside the file so it opens styled wherever it is opened later.

The style is set the way QGIS's own algorithms style their outputs: a
``QgsProcessingLayerPostProcessorInterface`` on the output's ``LayerDetails``, which QGIS
runs on the layer it loads when the algorithm has finished (``attach``).
"""

import os
from typing import Any, Callable, Dict, List, Optional

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSingleSymbolRenderer,
    QgsSymbol,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor

NAME_SEPARATOR = " — "
OUTLINE_WIDTH_MM = 0.6
LABEL_SIZE_PT = 8.0
OBJECT_FILL_OPACITY = 0.35  # classified polygons: the class colour over the imagery, which stays readable
NO_CLASS_COLOR = QColor(255, 255, 0)  # a model without classes: one bright outline
# Colours for classes the emd gives none for (ArcGIS Pro's unique-values defaults, in order).
FALLBACK_COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                   (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40))


# ---------------------------------------------------------------------------
# The model: its classes and its name
# ---------------------------------------------------------------------------


def model_classes(model_path: str, feedback=None) -> List[Dict[str, Any]]:
    """The emd's ``Classes`` (Value, Name, Color) of a .dlpk or .emd; [] when they cannot be
    read (a warning, not an error: the output is there, only its styling is missing). The
    package reader reads a .dlpk's emd from the zip; the weights stay packed."""
    try:
        from dl_engine.package.reader import open_package  # standard library only

        with open_package(model_path, "IN_MODEL_DEFINITION") as package:
            return list(package.classes)
    except Exception as error:  # InputError and anything else: styling is a nicety
        if feedback is not None:
            feedback.pushWarning(f"IN_MODEL_DEFINITION: the model's class names and colours cannot be read: {error}")
        return []


def layer_name(model_path: str, what: str, raster_name: str = "") -> str:
    """"trees.dlpk — Detected objects on OSBS_029"."""
    name = f"{os.path.basename(model_path)}{NAME_SEPARATOR}{what}"
    return f"{name} on {raster_name}" if raster_name else name


def class_color(entry: Dict[str, Any], index: int) -> QColor:
    """The emd class's ``Color`` ([r, g, b], 0–255), else a fixed colour by position."""
    color = entry.get("Color") if isinstance(entry, dict) else None
    if isinstance(color, (list, tuple)) and len(color) >= 3 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255 for c in color[:3]):
        return QColor(int(color[0]), int(color[1]), int(color[2]))
    return QColor(*FALLBACK_COLORS[index % len(FALLBACK_COLORS)])


def _named_classes(classes: List[Dict[str, Any]]):
    """(name, colour) of each emd class with a name, in the emd's order."""
    out = []
    for index, entry in enumerate(classes or []):
        if isinstance(entry, dict) and entry.get("Name") not in (None, ""):
            out.append((str(entry["Name"]), class_color(entry, index)))
    return out


# ---------------------------------------------------------------------------
# Vector styles
# ---------------------------------------------------------------------------


def outline_symbol(color: QColor) -> QgsFillSymbol:
    """A polygon outline in ``color``, without fill."""
    return QgsFillSymbol.createSimple({
        "style": "no", "color": "0,0,0,0", "outline_style": "solid",
        "outline_color": f"{color.red()},{color.green()},{color.blue()},255",
        "outline_width": str(OUTLINE_WIDTH_MM), "outline_width_unit": "MM",
    })


def object_symbol(geometry_type, color: QColor) -> QgsSymbol:
    """A classified object's symbol: polygons filled lightly with an outline in the class
    colour; points and lines in the class colour."""
    if geometry_type == QgsWkbTypes.PolygonGeometry:
        fill = QColor(color)
        fill.setAlphaF(OBJECT_FILL_OPACITY)
        return QgsFillSymbol.createSimple({
            "style": "solid", "color": f"{fill.red()},{fill.green()},{fill.blue()},{fill.alpha()}",
            "outline_color": f"{color.red()},{color.green()},{color.blue()},255",
            "outline_width": str(OUTLINE_WIDTH_MM), "outline_width_unit": "MM",
        })
    symbol = QgsSymbol.defaultSymbol(geometry_type)
    symbol.setColor(color)
    return symbol


def categorized(field: str, classes: List[Dict[str, Any]], make_symbol: Callable[[QColor], QgsSymbol]):
    """A categorised renderer on ``field`` with one category per emd class (its name, its
    colour); None when the model has no named classes."""
    named = _named_classes(classes)
    if not named:
        return None
    categories = [QgsRendererCategory(name, make_symbol(color), name) for name, color in named]
    return QgsCategorizedSymbolRenderer(field, categories)


def detection_label_expression(class_field: str, confidence_field: str) -> str:
    """"Tree 92%": the class name and the confidence (0–100), rounded."""
    return (f"concat({_quoted(class_field)}, ' ', format_number({_quoted(confidence_field)}, 0), '%')")


def labeling(expression: str) -> QgsVectorLayerSimpleLabeling:
    settings = QgsPalLayerSettings()
    settings.fieldName = expression
    settings.isExpression = True
    settings.placement = QgsPalLayerSettings.OverPoint
    text = QgsTextFormat()
    text.setSize(LABEL_SIZE_PT)
    text.setColor(QColor(Qt.black))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(0.8)
    buffer.setColor(QColor(Qt.white))
    text.setBuffer(buffer)
    settings.setFormat(text)
    return QgsVectorLayerSimpleLabeling(settings)


def style_detections(layer: QgsVectorLayer, classes: List[Dict[str, Any]], class_field: str,
                     confidence_field: str) -> None:
    """Outlines in the class colours (one outline colour when the model has no classes),
    labelled "class confidence%"."""
    renderer = categorized(class_field, classes, outline_symbol)
    layer.setRenderer(renderer or QgsSingleSymbolRenderer(outline_symbol(NO_CLASS_COLOR)))
    layer.setLabeling(labeling(detection_label_expression(class_field, confidence_field)))
    layer.setLabelsEnabled(True)
    layer.triggerRepaint()


def style_classified_objects(layer: QgsVectorLayer, classes: List[Dict[str, Any]], label_field: str) -> None:
    """Categorised by the class label field, in the class colours."""
    geometry_type = layer.geometryType()
    renderer = categorized(label_field, classes, lambda color: object_symbol(geometry_type, color))
    if renderer is not None:
        layer.setRenderer(renderer)
        layer.triggerRepaint()


AGREE_COLOR = QColor(26, 150, 65)
DISAGREE_COLOR = QColor(215, 25, 28)


def agreement_expression(classified_field: str, truth_field: str) -> str:
    return f"{_quoted(classified_field)} = {_quoted(truth_field)}"


def style_agreement(layer: QgsVectorLayer, classified_field: str, truth_field: str) -> None:
    """Accuracy assessment points: green where the classification agrees with the ground
    truth, red where it does not (categorised by that comparison)."""
    categories = []
    for value, color, label in ((True, AGREE_COLOR, "agrees with the ground truth"),
                                (False, DISAGREE_COLOR, "differs from the ground truth")):
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(color)
        categories.append(QgsRendererCategory(value, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer(agreement_expression(classified_field, truth_field), categories))
    layer.triggerRepaint()


# ---------------------------------------------------------------------------
# Raster styles
# ---------------------------------------------------------------------------


def palette_classes(classes: List[Dict[str, Any]]) -> List[QgsPalettedRasterRenderer.Class]:
    """The emd's Classes as paletted renderer classes (value, colour, name)."""
    out = []
    for index, entry in enumerate(classes or []):
        try:
            value = int(entry.get("Value"))
        except (AttributeError, TypeError, ValueError):
            continue
        out.append(QgsPalettedRasterRenderer.Class(value, class_color(entry, index), str(entry.get("Name") or value)))
    return out


def style_class_raster(layer: QgsRasterLayer, classes: List[Dict[str, Any]]) -> bool:
    """A paletted renderer with the class values, names and colours; False without classes."""
    palette = palette_classes(classes)
    if not palette:
        return False
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette))
    layer.triggerRepaint()
    return True


def save_class_style(path: str, classes: List[Dict[str, Any]], feedback=None) -> None:
    """``<output>.qml``: QGIS loads it as the default style of the raster wherever it is opened."""
    layer = QgsRasterLayer(path, "classified", "gdal")
    if not layer.isValid() or not style_class_raster(layer, classes):
        return
    message, ok = layer.saveDefaultStyle()
    if not ok and feedback is not None:
        feedback.pushWarning(f"the class style could not be saved beside {path}: {message}")


# ---------------------------------------------------------------------------
# Attaching a style to an output QGIS loads
# ---------------------------------------------------------------------------


# QGIS keeps a pointer to a post-processor only: the Python object must stay alive until the
# layer is loaded. One per output (a later run of the same output replaces an earlier one).
_POST_PROCESSORS: Dict[str, "OutputStyle"] = {}


class OutputStyle(QgsProcessingLayerPostProcessorInterface):
    """Names the loaded output layer and applies ``style(layer)`` to it."""

    def __init__(self, name: str, style: Optional[Callable[[Any], None]]):
        super().__init__()
        self.name = name
        self.style = style

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if layer is None or not layer.isValid():
            return
        if self.name:
            layer.setName(self.name)
        if self.style is not None:
            self.style(layer)


def attach(context, destination: str, name: str, style: Optional[Callable[[Any], None]] = None) -> Optional[OutputStyle]:
    """When QGIS loads ``destination`` on completion: the layer is called ``name`` and styled
    by ``style``. Nothing to do when the output is not loaded (a script's ``processing.run``)."""
    if not destination or not context.willLoadLayerOnCompletion(destination):
        return None
    details = context.layerToLoadOnCompletionDetails(destination)
    details.name = name
    if hasattr(details, "forceName"):  # else a file output is named after its file (a QGIS setting)
        details.forceName = True
    processor = OutputStyle(name, style)
    _POST_PROCESSORS[destination] = processor
    details.setPostProcessor(processor)
    return processor


def style_output(context, destination: str, name: str, style: Callable[[Any], None]) -> None:
    """Name and style an output: when QGIS loads it (``attach``), and at once when it is a
    layer of the run's own (a memory output, which ``processing.run`` hands back as the layer)."""
    from qgis.core import QgsProcessingUtils

    attach(context, destination, name, style)
    layer = context.temporaryLayerStore().mapLayer(destination) if destination else None
    if layer is None and destination:
        layer = QgsProcessingUtils.mapLayerFromString(destination, context, False)
    if layer is not None and layer.isValid() and layer.dataProvider().name() == "memory":
        layer.setName(name)
        style(layer)


def _quoted(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'
