"""What the three inference algorithms share (Classify Pixels / Detect Objects / Classify
Objects Using Deep Learning).

- The parameters they have in common (IN_RASTER, IN_MODEL_DEFINITION, ARGUMENTS,
  PROCESSING_MODE, EXTENT, CELL_SIZE, DEVICE), built and read in one place.
- Checks before the worker starts: ``InferConfig.check`` (the rules on each value, also the
  parameters' defaults are the config's) through ``base.check_config``, and what needs QGIS
  (the layers open, the model file exists, EXTENT overlaps the raster), each a
  ``QgsProcessingException`` that names the parameter.
- ``InferenceAlgorithm.run_engine``: ``python -m dl_engine infer --config cfg.json`` with a
  ``dl_engine.infer.config.InferConfig`` in a worker process (``worker.run_worker``: progress,
  log, cancel within 2 s, engine refusals as "PARAMETER: message").
- Reading the engine's GeoJSON output (OGR, feature by feature) for the feature sinks.

Plain ``QgsProcessingException`` only: QGIS 3.22 shows a traceback for any other exception
class raised from ``processAlgorithm``, subclasses of QgsProcessingException included.
"""

import json
import os
import re
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRectangle,
)

from dl_engine import checks  # standard library only
from dl_engine.errors import Canceled
from dl_engine.infer.arguments import TOOL_ARGUMENTS  # standard library only
from dl_engine.infer.config import InferConfig  # standard library only

from . import layer_inputs
from .base import DeepLearningAlgorithm, advanced, config_default, run_guarded
from .engine_process import run_worker


def argument_names(tool: str):
    """The ARGUMENTS names of an inference tool: the engine's TOOL_ARGUMENTS keys."""
    return tuple(TOOL_ARGUMENTS[tool])


def arguments_help(names) -> str:
    return ", ".join(f"<code>{n}</code>" for n in names)


COMMON_HELP = """
<p>The model runs in a separate Python process (the one that has PyTorch; the environment variable
<code>DLT_PYTHON</code> chooses another), so a crash or GPU error cannot take QGIS down; <i>Cancel</i>
stops it within two seconds and leaves no output behind.</p>
<p><b>IN_RASTER</b>: any QGIS raster layer (a GDAL file is read directly, other providers through a
temporary GeoTIFF); it must have the bands the model was trained on.
<b>IN_MODEL_DEFINITION</b>: the <code>.dlpk</code> package or <code>.emd</code> file of
<i>Train Deep Learning Model</i> (or of ArcGIS Pro, for the model types this version runs).
No Python file of a package is ever run.</p>
"""


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def raster_parameter() -> QgsProcessingParameterRasterLayer:
    return QgsProcessingParameterRasterLayer("IN_RASTER", "Input raster")


def model_parameter() -> QgsProcessingParameterFile:
    return QgsProcessingParameterFile(
        "IN_MODEL_DEFINITION",
        "Model definition (.dlpk or .emd)",
        behavior=QgsProcessingParameterFile.File,
        fileFilter="Model definition (*.dlpk *.emd *.DLPK *.EMD)",
    )


def arguments_parameter(names) -> QgsProcessingParameterString:
    return QgsProcessingParameterString(
        "ARGUMENTS", f"Arguments (name value;name value: {', '.join(names)})",
        config_default(InferConfig, "arguments"), optional=True
    )


def extent_parameter() -> QgsProcessingParameterExtent:
    return QgsProcessingParameterExtent("EXTENT", "Processing extent (empty: the whole raster)", optional=True)


def cell_size_parameter() -> QgsProcessingParameterNumber:
    number = QgsProcessingParameterNumber
    return number(
        "CELL_SIZE", "Cell size (raster CRS units; empty: the raster's)", number.Double,
        config_default(InferConfig, "cell_size"), optional=True
    )


def _number_or_none(value: Any) -> Optional[float]:
    """CELL_SIZE for reading a web layer: a number, or None for typed text (the check refuses it)."""
    return None if isinstance(value, str) else value


def device_parameter():
    return advanced(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)",
                                                 config_default(InferConfig, "device")))


# ---------------------------------------------------------------------------
# The algorithms' base
# ---------------------------------------------------------------------------


class InferenceAlgorithm(DeepLearningAlgorithm):
    """Base of the inference algorithms: parameter readers and the worker run."""

    GROUP_ID = "inference"
    TOOL = ""  # InferConfig.tool

    # ---- reading parameters (quick checks) -------------------------------------------------
    def raster_input(self, parameters, context, feedback) -> Tuple[Any, str]:
        """IN_RASTER as (layer, GDAL-readable path)."""
        layer = self.parameterAsRasterLayer(parameters, "IN_RASTER", context)
        if layer is None:
            raise QgsProcessingException(
                f"IN_RASTER: cannot open {parameters.get('IN_RASTER')!r} as a raster layer; give a raster "
                f"file or a raster layer of the project"
            )
        if not layer.crs().isValid():
            feedback.pushWarning(f"IN_RASTER: layer '{layer.name()}' has no CRS; outputs will have none either")
        extent = self.extent(parameters, context, layer)  # a web layer is read at CELL_SIZE over EXTENT
        path = layer_inputs.raster_to_gdal_path(layer, "IN_RASTER", context.transformContext(), feedback,
                                                extent=QgsRectangle(*extent) if extent else None,
                                                cell_size=_number_or_none(self.cell_size(parameters, context)))
        return layer, path

    def model_path(self, parameters, context) -> str:
        path = (self.parameterAsFile(parameters, "IN_MODEL_DEFINITION", context) or "").strip()
        return check_model_file(path)

    def arguments(self, parameters, context) -> str:
        return (self.parameterAsString(parameters, "ARGUMENTS", context) or "").strip()

    def device(self, parameters, context) -> str:
        """DEVICE as typed, lower case (InferConfig.check says whether it is a device)."""
        device = (self.parameterAsString(parameters, "DEVICE", context) or "").strip().lower()
        return device or config_default(InferConfig, "device")

    def extent(self, parameters, context, raster_layer) -> Optional[List[float]]:
        """EXTENT in the raster's CRS as [xmin, ymin, xmax, ymax], or None for the whole raster."""
        if parameters.get("EXTENT") in (None, ""):
            return None
        rect = self.parameterAsExtent(parameters, "EXTENT", context, raster_layer.crs())
        extent = layer_inputs.rectangle_tuple(rect)
        if extent is None:
            raise QgsProcessingException(
                f"EXTENT: {parameters.get('EXTENT')!r} is empty; give xmin,xmax,ymin,ymax [CRS] with xmin < xmax "
                f"and ymin < ymax, or leave it empty for the whole raster"
            )
        if not QgsRectangle(*extent).intersects(raster_layer.extent()):
            raise QgsProcessingException(
                f"EXTENT: {_show_rect(extent)} (in the raster's CRS {raster_layer.crs().authid() or 'unknown'}) "
                f"does not overlap IN_RASTER ({_show_rect(layer_inputs.rectangle_tuple(raster_layer.extent()))}); "
                f"give an extent that overlaps the raster, or leave it empty"
            )
        return list(extent)

    def cell_size(self, parameters, context) -> Optional[float]:
        """CELL_SIZE, None when empty (InferConfig.check says whether it is a size; typed text stays
        text, which QGIS would read as 0, so the check says "got 'abc'")."""
        if not self.optional_number(parameters, "CELL_SIZE"):
            return None
        return checks.as_given(parameters.get("CELL_SIZE"), self.parameterAsDouble(parameters, "CELL_SIZE", context))

    # ---- running the engine ----------------------------------------------------------------
    def run_engine(self, config, feedback) -> Dict[str, Any]:
        """Run ``python -m dl_engine infer`` for an ``InferConfig``; the ``result`` event's fields."""
        return run_inference(config, feedback, what=self.displayName())

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        return run_guarded(lambda: self.infer(parameters, context, feedback), feedback, self.displayName())

    def infer(self, parameters, context, feedback):  # pragma: no cover - every algorithm has its own
        raise NotImplementedError


def check_model_file(path: str, parameter: str = "IN_MODEL_DEFINITION") -> str:
    """The model file as an absolute path; that it is a .dlpk/.emd is InferConfig.check's rule."""
    accepted = "give the .dlpk or .emd written by Train Deep Learning Model (or ArcGIS Pro)"
    if not path:
        raise QgsProcessingException(f"{parameter}: no model given; {accepted}")
    if not os.path.isfile(path):
        raise QgsProcessingException(f"{parameter}: file {path!r} does not exist; {accepted}")
    return os.path.abspath(path)


def run_inference(config, feedback, what: str = "Inference", python: Optional[str] = None) -> Dict[str, Any]:
    """``python -m dl_engine infer --config <temporary file>``; the ``result`` event's fields.
    Raises Canceled when canceled, QgsProcessingException otherwise."""
    if feedback is not None and feedback.isCanceled():
        raise Canceled(f"{what} canceled before it started")
    handle, config_path = tempfile.mkstemp(prefix="dlt-infer-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(config.to_json())
        return run_worker(["-m", "dl_engine", "infer", "--config", config_path], feedback, python=python, what=what,
                          temporary=[config_path])  # removed by the worker too, when QGIS dies first
    finally:
        try:
            os.remove(config_path)
        except OSError:
            pass


def summary(result: Dict[str, Any], class_names: Optional[Dict[int, str]] = None) -> str:
    """One line from the engine's ``result`` event: tiles, time, device, speed, pixels per class."""
    parts = []
    if isinstance(result.get("tiles"), (int, float)):
        parts.append(f"{int(result['tiles'])} tiles")
    if isinstance(result.get("seconds"), (int, float)):
        parts.append(f"in {float(result['seconds']):.1f} s")
    if result.get("device"):
        parts.append(f"on {result['device']}")
    if isinstance(result.get("megapixels_per_s"), (int, float)):
        parts.append(f"({float(result['megapixels_per_s']):.2f} Mpx/s)")
    line = " ".join(parts)
    counts = result.get("class_counts")
    if isinstance(counts, dict) and counts:
        names = class_names or {}

        def label(value):
            number = as_int(value)
            return names.get(number, str(value)) if number is not None else str(value)

        line += ("; " if line else "") + "pixels per class: " + ", ".join(
            f"{label(k)} {v}" for k, v in counts.items())
    return line


def temporary_path(prefix: str, suffix: str) -> str:
    """A fresh path in QGIS's processing temp folder (nothing is created there)."""
    from qgis.core import QgsProcessingUtils

    return QgsProcessingUtils.generateTempFilename(f"{prefix}{suffix}")


def remove_quietly(*paths: Optional[str]) -> None:
    for path in paths:
        if path:
            try:
                os.remove(path)
            except OSError:
                pass


def _show_rect(extent) -> str:
    if extent is None:
        return "(empty)"
    return "[" + ", ".join(f"{v:.6g}" for v in extent) + "]"


# ---------------------------------------------------------------------------
# The engine's GeoJSON output
# ---------------------------------------------------------------------------


def geojson_crs(path: str) -> Optional[QgsCoordinateReferenceSystem]:
    """The top-level ``crs_wkt`` of the engine's FeatureCollection (None where there is none).
    Reads only the head of the file: the engine writes ``crs_wkt`` before the features."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    match = re.search(r'"crs_wkt"\s*:\s*("(?:[^"\\]|\\.)*")', head)
    if not match:
        return None
    crs = QgsCoordinateReferenceSystem.fromWkt(json.loads(match.group(1)))
    return crs if crs.isValid() else None


class GeoJsonReader:
    """Features of a GeoJSON file one at a time through OGR (streaming for large files):
    ``(QgsGeometry, properties dict)``. ``polygon_type()`` is the single-part polygon type
    when every geometry is a Polygon."""

    def __init__(self, path: str, parameter: str = ""):
        from osgeo import ogr

        self.path = path
        try:
            self._ds = ogr.Open(path) if os.path.getsize(path) > 0 else None
        except (RuntimeError, OSError) as error:
            raise QgsProcessingException(f"the engine's output {path} cannot be read: {error}") from None
        if self._ds is None:
            raise QgsProcessingException(f"the engine's output {path} cannot be read as GeoJSON")
        self._layer = self._ds.GetLayer(0)
        definition = self._layer.GetLayerDefn()
        self.field_names = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
        self.field_types = [definition.GetFieldDefn(i).GetType() for i in range(definition.GetFieldCount())]

    def __len__(self) -> int:
        return max(0, self._layer.GetFeatureCount())

    def all_single_polygons(self) -> bool:
        from osgeo import ogr

        return ogr.GT_Flatten(self._layer.GetGeomType()) == ogr.wkbPolygon

    def __iter__(self) -> Iterator[Tuple[QgsGeometry, Dict[str, Any], Optional[int]]]:
        self._layer.ResetReading()
        for feature in self._layer:
            geometry = feature.GetGeometryRef()
            qgs = QgsGeometry()
            if geometry is not None:
                qgs.fromWkb(bytes(geometry.ExportToIsoWkb()))
            properties = {}
            for index, name in enumerate(self.field_names):
                properties[name] = feature.GetField(index) if feature.IsFieldSetAndNotNull(index) else None
            yield qgs, properties, feature.GetFID()

    def close(self) -> None:
        self._layer = None
        self._ds = None

    def __enter__(self) -> "GeoJsonReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def first_present(properties: Dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` present in ``properties`` (case-insensitive), or None."""
    lower = {k.lower(): k for k in properties}
    for name in names:
        key = name if name in properties else lower.get(name.lower())
        if key is not None and properties[key] is not None:
            return properties[key]
    return None


def as_float(value) -> Optional[float]:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def as_int(value) -> Optional[int]:
    number = as_float(value)
    return None if number is None or number != number else int(round(number))
