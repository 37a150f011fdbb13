"""The algorithms ask the engine's configuration dataclasses for every parameter rule and
default (``check()``, ``dataclasses.fields``) instead of restating them: a value the engine
refuses is refused here, before any worker starts, with the same "PARAMETER: message"; the
Processing defaults are the dataclass defaults; the inference ARGUMENTS names are the
engine's TOOL_ARGUMENTS."""

import dataclasses
import json

import pytest
from qgis.core import QgsApplication, QgsProcessingException

from dlt_infer_helpers import (CLASSIFY_OBJECTS_ALG, CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG, dsm, fake_infer_python,
                               fake_model, run_alg)
from dlt_train_helpers import TRAIN_ALG, fake_export, fake_python

from dl_engine.autodl.config import AutoDLConfig
from dl_engine.errors import InputError
from dl_engine.export.config import ExportConfig
from dl_engine.infer.arguments import TOOL_ARGUMENTS
from dl_engine.infer.config import InferConfig
from dl_engine.train.config import TrainConfig

AUTODL_ALG = "deeplearningtools:trainusingautodl"
EXPORT_ALG = "deeplearningtools:exporttrainingdatafordeeplearning"

# Processing parameter -> dataclass field, for every parameter the dataclass holds.
TRAIN_FIELDS = {
    "MAX_EPOCHS": "max_epochs", "MODEL_TYPE": "model_type", "BATCH_SIZE": "batch_size", "ARGUMENTS": "arguments",
    "LEARNING_RATE": "learning_rate", "BACKBONE_MODEL": "backbone", "VALIDATION_PERCENTAGE": "validation_percentage",
    "STOP_TRAINING": "stop_training", "FREEZE": "freeze", "AUGMENTATION": "augmentation", "CHIP_SIZE": "chip_size",
    "RESIZE_TO": "resize_to", "WEIGHT_INIT_SCHEME": "weight_init_scheme", "MONITOR": "monitor",
    "TENSORBOARD": "tensorboard", "DEVICE": "device",
}
AUTODL_FIELDS = {
    "TOTAL_TIME_LIMIT": "total_time_limit", "AUTODL_MODE": "autodl_mode", "SAVE_EVALUATED_MODELS":
    "save_evaluated_models", "DEVICE": "device",
}
EXPORT_FIELDS = {
    "IMAGE_CHIP_FORMAT": "image_format", "TILE_SIZE_X": "tile_size_x", "TILE_SIZE_Y": "tile_size_y",
    "STRIDE_X": "stride_x", "STRIDE_Y": "stride_y", "OUTPUT_NOFEATURE_TILES": "output_nofeature_tiles",
    "METADATA_FORMAT": "metadata_format", "START_INDEX": "start_index", "ROTATION_ANGLE": "rotation_angle",
    "REFERENCE_SYSTEM": "reference_system", "PROCESSING_MODE": "processing_mode",
    "BLACKEN_AROUND_FEATURE": "blacken_around_feature", "CROP_MODE": "crop_mode",
    "MIN_POLYGON_OVERLAP_RATIO": "min_polygon_overlap_ratio", "CELL_SIZE": "cell_size",
    "PARALLEL_PROCESSING_FACTOR": "workers",
}
INFER_FIELDS = {
    "ARGUMENTS": "arguments", "PROCESSING_MODE": "processing_mode", "CELL_SIZE": "cell_size", "DEVICE": "device",
    "RUN_NMS": "run_nms", "CONFIDENCE_SCORE_FIELD": "confidence_score_field", "CLASS_VALUE_FIELD":
    "class_value_field", "MAX_OVERLAP_RATIO": "max_overlap_ratio", "CLASS_LABEL_FIELD": "class_label_field",
}
TOOLS = {CLASSIFY_PIXELS_ALG: "classify_pixels", DETECT_OBJECTS_ALG: "detect_objects",
         CLASSIFY_OBJECTS_ALG: "classify_objects"}


def algorithm(alg_id):
    return QgsApplication.processingRegistry().algorithmById(alg_id)


def processing_default(alg, name):
    """A parameter's default as the engine would receive it (an enum's index → its keyword)."""
    definition = alg.parameterDefinition(name)
    value = definition.defaultValue()
    if definition.type() == "enum":
        return definition.options()[value].split(" ")[0]
    return value


def dataclass_defaults(config_class):
    return {f.name: f.default for f in dataclasses.fields(config_class)}


@pytest.mark.parametrize("alg_id, config_class, mapping", [
    (TRAIN_ALG, TrainConfig, TRAIN_FIELDS),
    (AUTODL_ALG, AutoDLConfig, AUTODL_FIELDS),
    (EXPORT_ALG, ExportConfig, EXPORT_FIELDS),
    (CLASSIFY_PIXELS_ALG, InferConfig, INFER_FIELDS),
    (DETECT_OBJECTS_ALG, InferConfig, INFER_FIELDS),
    (CLASSIFY_OBJECTS_ALG, InferConfig, INFER_FIELDS),
], ids=["train", "autodl", "export", "classify_pixels", "detect_objects", "classify_objects"])
def test_processing_defaults_are_the_dataclass_defaults(provider, alg_id, config_class, mapping):
    alg = algorithm(alg_id)
    defaults = dataclass_defaults(config_class)
    names = {p.name() for p in alg.parameterDefinitions()}
    checked = [name for name in mapping if name in names]
    assert checked, alg_id
    for name in checked:
        expected = defaults[mapping[name]]
        got = processing_default(alg, name)
        assert got == expected or (expected in ("", None) and got in ("", None)), (name, got, expected)


@pytest.mark.parametrize("alg_id", list(TOOLS))
def test_inference_argument_names_are_the_engines(provider, alg_id):
    from deep_learning_tools.processing_provider import classify_objects, classify_pixels, detect_objects

    module = {CLASSIFY_PIXELS_ALG: classify_pixels, DETECT_OBJECTS_ALG: detect_objects,
              CLASSIFY_OBJECTS_ALG: classify_objects}[alg_id]
    assert tuple(module.ARGUMENT_NAMES) == tuple(TOOL_ARGUMENTS[TOOLS[alg_id]])
    description = algorithm(alg_id).parameterDefinition("ARGUMENTS").description()
    for name in TOOL_ARGUMENTS[TOOLS[alg_id]]:
        assert name in description and name in algorithm(alg_id).shortHelpString()


# ---- the rule of the engine, here, before a worker starts -----------------------------------------

def engine_message(config):
    with pytest.raises(InputError) as raised:
        config.check()
    return f"{raised.value.parameter}: {raised.value.message}"


def shown(alg_id, engine_words):
    """The engine's "PARAMETER: message" as Processing shows it: with the dialog's label."""
    parameter, message = engine_words.split(": ", 1)
    return f"{algorithm(alg_id).parameterDefinition(parameter).description()} ({parameter}): {message}"


@pytest.mark.parametrize("change, parameter", [
    ({"VALIDATION_PERCENTAGE": 100}, "VALIDATION_PERCENTAGE"),
    ({"DEVICE": "gpu"}, "DEVICE"),
    ({"BATCH_SIZE": 0}, "BATCH_SIZE"),
    ({"CHIP_SIZE": -1}, "CHIP_SIZE"),
])
def test_training_refuses_what_the_engine_refuses(provider, tmp_path, monkeypatch, change, parameter):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    params = {"IN_FOLDER": fake_export(tmp_path / "export"), "OUT_FOLDER": str(tmp_path / "model"), **change}
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(TRAIN_ALG, params)
    message = str(raised.value)
    assert f"({parameter}): " in message, message
    field = TRAIN_FIELDS[parameter]
    value = float(change[parameter]) if parameter == "VALIDATION_PERCENTAGE" else change[parameter]
    config = dataclasses.replace(TrainConfig(in_folder=params["IN_FOLDER"], out_folder=str(tmp_path / "model")),
                                 **{field: value})
    assert message == shown(TRAIN_ALG, engine_message(config))  # the same words as the engine's command line
    assert not (tmp_path / "model").exists()


def test_training_accepts_mps(provider, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    result = run_alg(TRAIN_ALG, {"IN_FOLDER": fake_export(tmp_path / "export"), "OUT_FOLDER": str(tmp_path / "m"),
                                 "DEVICE": "mps", "VALIDATION_PERCENTAGE": 0})
    config = json.loads(result["METRICS"])["config"]
    assert config["device"] == "mps" and config["validation_percentage"] == 0


@pytest.mark.parametrize("change, parameter", [
    ({"DEVICE": "gpu"}, "DEVICE"),
    ({"TOTAL_TIME_LIMIT": 0}, "TOTAL_TIME_LIMIT"),
    ({"OUT_MODEL": "best.zip"}, "OUT_MODEL"),
])
def test_autodl_refuses_what_the_engine_refuses(provider, tmp_path, change, parameter):
    params = {"IN_DATA": fake_export(tmp_path / "export"), "OUT_MODEL": str(tmp_path / "out" / "best.dlpk"), **change}
    if parameter == "OUT_MODEL":
        params["OUT_MODEL"] = str(tmp_path / "out" / change["OUT_MODEL"])
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(AUTODL_ALG, params)
    assert f"({parameter}): " in str(raised.value), str(raised.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("alg_id", list(TOOLS))
def test_inference_refuses_gpu_and_accepts_mps(provider, data_dir, tmp_path, monkeypatch, alg_id):
    record = tmp_path / "record"
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path))
    monkeypatch.setenv("FAKE_INFER_RECORD", str(record))
    out_name = {CLASSIFY_PIXELS_ALG: "OUT_CLASSIFIED_RASTER", DETECT_OBJECTS_ALG: "OUT_DETECTED_OBJECTS",
                CLASSIFY_OBJECTS_ALG: "OUT_FEATURE_CLASS"}[alg_id]
    out = tmp_path / ("out.tif" if alg_id == CLASSIFY_PIXELS_ALG else "out.gpkg")
    params = {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path / "m"), out_name: str(out)}
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(alg_id, {**params, "DEVICE": "gpu"})
    assert "(DEVICE): 'gpu' is not a device" in str(raised.value), str(raised.value)
    assert not record.exists()  # refused before the worker started
    run_alg(alg_id, {**params, "DEVICE": "MPS"})
    assert json.loads((record / "config.json").read_text())["device"] == "mps"


def test_export_refuses_what_the_engine_refuses(provider, data_dir, tmp_path):
    from dlt_helpers import elevation

    raster, labels = elevation(data_dir)[:2]
    out = tmp_path / "chips"
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(EXPORT_ALG, {"IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
                             "TILE_SIZE_X": 0})
    message = str(raised.value)
    assert "(TILE_SIZE_X): " in message, message
    assert message == shown(EXPORT_ALG, engine_message(ExportConfig(raster=raster, out_folder=str(out), tile_size_x=0)))
    assert not out.exists()
