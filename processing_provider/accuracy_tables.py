"""What the two accuracy algorithms share on the QGIS side: running the engine in a worker process
with the engine's Python (``python -m dl_engine accuracy --job``, as the export does), and writing a table (rows of dicts) into a feature
sink without geometry. Any destination QGIS writes works: a GeoPackage table, a ``.csv`` (OGR's
CSV driver; a ``.csvt`` beside it gives the field types, so QGIS loads numbers as numbers), ``.dbf``,
``.xlsx``, a temporary layer."""

import os
import shutil
import tempfile

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

from dl_engine.accuracy.job import write_job  # standard library only

from .base import run_guarded
from .engine_process import run_worker

STRING, DOUBLE, INTEGER = "String", "Real", "Integer"
_QVARIANT = {STRING: QVariant.String, DOUBLE: QVariant.Double, INTEGER: QVariant.Int}


def run_accuracy(config, feedback, what: str) -> dict:
    """``config`` (checked) as a job in a temporary folder, run by ``python -m dl_engine accuracy``
    in a worker process (progress, log, cancel; QGIS's own Python needs no numpy/rasterio/shapely
    for it); returns the fields of the worker's ``result`` event (``dl_engine.accuracy.job``). The
    job folder is removed on every exit path."""
    try:
        folder = tempfile.mkdtemp(prefix="dlt-accuracy-")
    except OSError as error:
        raise QgsProcessingException(f"{what} cannot make its job folder in {tempfile.gettempdir()}: "
                                     f"{error.strerror or error}") from None
    try:
        try:
            job = write_job(folder, config)
        except OSError as error:  # a full or read-only temporary folder
            raise QgsProcessingException(f"{what} cannot write its job into {folder}: "
                                         f"{error.strerror or error}") from None
        return run_guarded(lambda: run_worker(["-m", "dl_engine", "accuracy", "--job", job], feedback, what=what,
                                              temporary=[folder]), feedback, what)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
