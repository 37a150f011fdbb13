"""A Modeler chain that runs the export: Fix geometries → Export Training Data For Deep Learning.

``tests/data/export_model.model3`` is what the Modeler would save. It is built by
``build_model()``; run the tests with ``DLT_REGENERATE_MODEL=1`` to rewrite it.
"""

import json
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)
from qgis.PyQt.QtCore import QPointF

from dlt_helpers import DATA, EXPORT_ALG, chips

MODEL_FILE = DATA / "export_model.model3"


def build_model():
    model = QgsProcessingModelAlgorithm("Export tree boxes", "Deep learning tools tests")
    model.setHelpContent({"ALG_DESC": "Fix the label geometries, then export PASCAL VOC training data."})

    def parameter(definition, x):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(x, 60))
        model.addModelParameter(definition, component)

    parameter(QgsProcessingParameterRasterLayer("raster", "Image"), 120)
    parameter(QgsProcessingParameterVectorLayer("labels", "Labels", [QgsProcessing.TypeVectorPolygon]), 320)
    parameter(QgsProcessingParameterNumber("tile_size", "Tile size", QgsProcessingParameterNumber.Integer, 256), 520)

    fix = QgsProcessingModelChildAlgorithm("native:fixgeometries")
    fix.setChildId("fix")
    fix.setDescription("Fix geometries")
    fix.setPosition(QPointF(320, 180))
    fix.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("labels")])
    model.addChildAlgorithm(fix)

    export = QgsProcessingModelChildAlgorithm(EXPORT_ALG)
    export.setChildId("export")
    export.setDescription("Export Training Data For Deep Learning")
    export.setPosition(QPointF(320, 300))
    export.addParameterSources("IN_RASTER", [QgsProcessingModelChildParameterSource.fromModelParameter("raster")])
    export.addParameterSources("IN_CLASS_DATA", [QgsProcessingModelChildParameterSource.fromChildOutput("fix", "OUTPUT")])
    export.addParameterSources("METADATA_FORMAT", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    for name in ("TILE_SIZE_X", "TILE_SIZE_Y", "STRIDE_X", "STRIDE_Y"):
        export.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromModelParameter("tile_size")])
    output = QgsProcessingModelOutput("export_folder", "Export folder")
    output.setChildId("export")
    output.setChildOutputName("OUT_FOLDER")
    output.setPosition(QPointF(320, 420))
    export.setModelOutputs({"export_folder": output})
    model.addChildAlgorithm(export)
    model.updateDestinationParameters()
    return model


def load_model():
    if os.environ.get("DLT_REGENERATE_MODEL") or not MODEL_FILE.exists():
        assert build_model().toFile(str(MODEL_FILE))
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL_FILE))
    return model


def test_model_file_matches_builder(provider):
    saved, built = load_model(), build_model()
    assert sorted(saved.childAlgorithms()) == sorted(built.childAlgorithms()) == ["export", "fix"]
    assert saved.childAlgorithm("export").algorithmId() == EXPORT_ALG
    assert sorted(p.name() for p in saved.parameterDefinitions()) == sorted(
        p.name() for p in built.parameterDefinitions())


def test_model_runs_the_export(provider, data_dir, tmp_path):
    import processing

    model = load_model()
    out = tmp_path / "model-export"
    destination = [p.name() for p in model.destinationParameterDefinitions()]
    assert destination == ["export:export_folder"]
    result = processing.run(model, {
        "raster": str(data_dir / "trees_osbs" / "OSBS_029.tif"),
        "labels": str(data_dir / "trees_osbs" / "trees.gpkg"),
        "tile_size": 200,
        "export:export_folder": str(out),
    })
    assert result["export:export_folder"] == str(out)
    assert len(chips(str(out))) == 4
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["MetaDataMode"] == "PASCAL_VOC_rectangles" and stats["TileSizeX"] == 200
