"""A Modeler chain export → train: Export Training Data For Deep Learning (Classified_Tiles)
feeds its OUT_FOLDER into Train Deep Learning Model's IN_FOLDER.

``tests/data/export_train_model.model3`` is what the Modeler would save. It is built by
``build_model()``; run the tests with ``DLT_REGENERATE_MODEL=1`` to rewrite it.
"""

import json
import os

import pytest

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
from dlt_train_helpers import TRAIN_ALG, dlpk_and_emd, fake_python, needs_engine

MODEL_FILE = DATA / "export_train_model.model3"
OUTPUT = "train:model_folder"


def build_model():
    model = QgsProcessingModelAlgorithm("Export and train a U-Net", "Deep learning tools tests")
    model.setHelpContent({"ALG_DESC": "Export Classified_Tiles training data, then train a U-Net (RESNET18) on it."})

    def parameter(definition, x):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(x, 60))
        model.addModelParameter(definition, component)

    integer = QgsProcessingParameterNumber.Integer
    parameter(QgsProcessingParameterRasterLayer("raster", "Image"), 120)
    parameter(QgsProcessingParameterVectorLayer("labels", "Labels", [QgsProcessing.TypeVectorPolygon]), 320)
    parameter(QgsProcessingParameterNumber("tile_size", "Tile size", integer, 64), 520)
    parameter(QgsProcessingParameterNumber("epochs", "Epochs", integer, 1), 720)

    static = QgsProcessingModelChildParameterSource.fromStaticValue
    from_parameter = QgsProcessingModelChildParameterSource.fromModelParameter

    export = QgsProcessingModelChildAlgorithm(EXPORT_ALG)
    export.setChildId("export")
    export.setDescription("Export Training Data For Deep Learning")
    export.setPosition(QPointF(320, 200))
    export.addParameterSources("IN_RASTER", [from_parameter("raster")])
    export.addParameterSources("IN_CLASS_DATA", [from_parameter("labels")])
    export.addParameterSources("METADATA_FORMAT", [static(2)])  # Classified_Tiles
    for name in ("TILE_SIZE_X", "TILE_SIZE_Y", "STRIDE_X", "STRIDE_Y"):
        export.addParameterSources(name, [from_parameter("tile_size")])
    model.addChildAlgorithm(export)  # its OUT_FOLDER is a temporary folder

    train = QgsProcessingModelChildAlgorithm(TRAIN_ALG)
    train.setChildId("train")
    train.setDescription("Train Deep Learning Model")
    train.setPosition(QPointF(520, 340))
    from_child = QgsProcessingModelChildParameterSource.fromChildOutput
    train.addParameterSources("IN_FOLDER", [from_child("export", "OUT_FOLDER")])
    train.addParameterSources("MAX_EPOCHS", [from_parameter("epochs")])
    train.addParameterSources("MODEL_TYPE", [static(0)])  # UNET
    train.addParameterSources("BACKBONE_MODEL", [static("RESNET18")])
    train.addParameterSources("BATCH_SIZE", [static(4)])
    train.addParameterSources("LEARNING_RATE", [static(0.001)])
    output = QgsProcessingModelOutput("model_folder", "Model folder")
    output.setChildId("train")
    output.setChildOutputName("OUT_FOLDER")
    output.setPosition(QPointF(520, 460))
    train.setModelOutputs({"model_folder": output})
    model.addChildAlgorithm(train)
    model.updateDestinationParameters()
    return model


def load_model():
    if os.environ.get("DLT_REGENERATE_MODEL") or not MODEL_FILE.exists():
        assert build_model().toFile(str(MODEL_FILE))
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL_FILE))
    return model


def run_model(data_dir, out):
    import processing

    model = load_model()
    assert [p.name() for p in model.destinationParameterDefinitions()] == [OUTPUT]
    return processing.run(model, {
        "raster": str(data_dir / "elevation" / "dsm.tif"),
        "labels": str(data_dir / "elevation" / "buildings.geojson"),
        "tile_size": 64,
        "epochs": 1,
        OUTPUT: str(out),
    })


def test_model_file_matches_builder(provider):
    saved, built = load_model(), build_model()
    assert sorted(saved.childAlgorithms()) == sorted(built.childAlgorithms()) == ["export", "train"]
    assert saved.childAlgorithm("train").algorithmId() == TRAIN_ALG
    assert sorted(p.name() for p in saved.parameterDefinitions()) == sorted(
        p.name() for p in built.parameterDefinitions())
    # The Modeler offers the export's OUT_FOLDER as a source for IN_FOLDER (a folder-type file parameter).
    assert saved.parameterDefinition(OUTPUT) is not None
    assert saved.childAlgorithm("train").parameterSources()["IN_FOLDER"][0].outputChildId() == "export"


def test_model_passes_the_export_to_training(provider, data_dir, tmp_path, monkeypatch):
    """The chain's plumbing, with a fake worker that echoes what it was given."""
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    out = tmp_path / "model"
    result = run_model(data_dir, out)
    assert result[OUTPUT] == str(out)
    train_results = result["CHILD_RESULTS"]["train"]
    config = json.loads(train_results["METRICS"])["config"]
    exported = config["in_folder"]
    assert exported == result["CHILD_RESULTS"]["export"]["OUT_FOLDER"]
    assert len(chips(exported)) > 0
    assert json.loads(open(os.path.join(exported, "esri_accumulated_stats.json")).read())["MetaDataMode"] == (
        "Classified_Tiles")
    assert (config["model_type"], config["backbone"], config["max_epochs"], config["batch_size"]) == (
        "UNET", "RESNET18", 1, 4)
    assert config["out_folder"] == str(out)


@pytest.mark.trains
@needs_engine
@pytest.mark.slow
def test_model_exports_and_trains(provider, data_dir, tmp_path):
    out = tmp_path / "model"
    result = run_model(data_dir, out)
    assert result[OUTPUT] == str(out)
    packages, emds = dlpk_and_emd(out)
    assert len(packages) == 1 and len(emds) == 1
    train_results = result["CHILD_RESULTS"]["train"]
    assert os.path.isfile(train_results["OUT_MODEL_FILE"])
    assert isinstance(json.loads(train_results["METRICS"]), dict)
