"""What the two accuracy algorithms share on the QGIS side: the engine's import (with the fix when
it is missing), running it in QGIS's process, and writing a table (rows of dicts) into a feature
sink without geometry. Any destination QGIS writes works: a GeoPackage table, a ``.csv`` (OGR's
CSV driver; a ``.csvt`` beside it gives the field types, so QGIS loads numbers as numbers), ``.dbf``,
``.xlsx``, a temporary layer."""

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from dl_engine.events import Events  # standard library only

from .base import run_guarded
from .engine_process import feed_event

STRING, DOUBLE, INTEGER = "String", "Real", "Integer"
_QVARIANT = {STRING: QVariant.String, DOUBLE: QVariant.Double, INTEGER: QVariant.Int}


def engine(module: str):
    """``dl_engine.accuracy.<module>``, or a message saying what QGIS's Python lacks."""
    import importlib

    try:
        return importlib.import_module(f"dl_engine.accuracy.{module}")
    except ImportError as error:
        raise QgsProcessingException(
            f"The accuracy engine cannot be loaded ({error}). The plugin needs the Python packages numpy, "
            f"rasterio, shapely and matplotlib in QGIS's Python: see the plugin's README "
            f"(pip install -r requirements.txt)."
        ) from error


def run_engine(run, config, feedback, what: str):
    """``run(config, events, cancel)`` in QGIS's process, its events on the feedback."""
    events = Events(sink=lambda event: feed_event(feedback, event))
    return run_guarded(lambda: run(config, events, feedback.isCanceled), feedback, what)


def write_table(algorithm, parameters, name: str, context, columns, rows) -> str:
    """Write ``rows`` into the sink ``name`` as a table; ``columns`` are (field, STRING|DOUBLE|INTEGER).
    Returns the destination id."""
    fields = QgsFields()
    for field_name, kind in columns:
        fields.append(QgsField(field_name, _QVARIANT[kind]))
    sink, dest_id = algorithm.parameterAsSink(parameters, name, context, fields, QgsWkbTypes.NoGeometry,
                                              QgsCoordinateReferenceSystem())
    if sink is None:
        raise QgsProcessingException(f"{name}: cannot create the output table (check the path and format)")
    for row in rows:
        feature = QgsFeature(fields)
        feature.setAttributes([row.get(field_name) for field_name, _ in columns])
        if not sink.addFeature(feature, QgsFeatureSink.FastInsert):
            raise QgsProcessingException(f"{name}: writing a row failed: {sink.lastError()}")
    write_csvt(dest_id, [kind for _, kind in columns])
    return dest_id


def write_csvt(dest_id: str, kinds) -> None:
    """A ``.csvt`` beside a CSV destination: OGR then reads the fields with their types."""
    path = str(dest_id or "").split("|")[0]
    if os.path.splitext(path)[1].lower() != ".csv":
        return
    try:
        with open(os.path.splitext(path)[0] + ".csvt", "w", encoding="utf-8") as f:
            f.write(",".join(f'"{kind}"' for kind in kinds) + "\n")
    except OSError:
        pass  # the table is written; only the types are guessed when it is loaded


def point_fields(names):
    fields = QgsFields()
    for field_name in names:
        fields.append(QgsField(field_name, QVariant.Int))
    return fields
