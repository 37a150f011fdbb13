"""deeplearningtools:traindeeplearningmodel through processing.run: the INTERFACE parameters,
quick checks that name the parameter, the worker plumbing (with a fake worker) and, once the
engine has landed, a real tiny training export → train."""

import json
import os
import sysconfig
import time

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from dlt_helpers import REPO
from dlt_train_helpers import (TRAIN_ALG, dlpk_and_emd, export_buildings, fake_export, fake_python, model_type_index,
                           needs_engine, tiny_training_params)

INTERFACE_PARAMETERS = [
    "IN_FOLDER", "OUT_FOLDER", "MAX_EPOCHS", "MODEL_TYPE", "BATCH_SIZE", "ARGUMENTS", "LEARNING_RATE",
    "BACKBONE_MODEL", "PRETRAINED_MODEL", "VALIDATION_PERCENTAGE", "STOP_TRAINING", "FREEZE", "AUGMENTATION",
    "AUGMENTATION_PARAMETERS", "CHIP_SIZE", "RESIZE_TO", "WEIGHT_INIT_SCHEME", "MONITOR", "TENSORBOARD", "DEVICE",
]
MODEL_TYPES = ["UNET", "PSPNET", "DEEPLAB", "SSD", "RETINANET", "FASTERRCNN", "MASKRCNN", "YOLOV3",
               "FEATURE_CLASSIFIER"]


@pytest.fixture
def train_alg(provider):
    return QgsApplication.processingRegistry().algorithmById(TRAIN_ALG)


def train(params, feedback=None):
    import processing

    return processing.run(TRAIN_ALG, params, feedback=feedback)


def test_interface(train_alg):
    assert train_alg.displayName() == "Train Deep Learning Model"
    assert train_alg.group() == "Training" and train_alg.groupId() == "training"
    assert [p.name() for p in train_alg.parameterDefinitions()] == INTERFACE_PARAMETERS
    advanced = {p.name() for p in train_alg.parameterDefinitions() if p.flags() & p.FlagAdvanced}
    assert advanced == {"DEVICE"}
    assert {o.name() for o in train_alg.outputDefinitions()} == {"OUT_MODEL_FILE", "OUT_FOLDER", "METRICS"}
    assert train_alg.outputDefinition("OUT_MODEL_FILE").type() == "outputFile"
    assert train_alg.outputDefinition("OUT_FOLDER").type() == "outputFolder"
    assert train_alg.outputDefinition("METRICS").type() == "outputString"

    def keywords(name):
        return [label.split(" ")[0] for label in train_alg.parameterDefinition(name).options()]

    from dl_engine.train.config import MONITORS, WEIGHT_INIT_SCHEMES, TrainConfig

    assert keywords("MODEL_TYPE") == MODEL_TYPES
    assert keywords("AUGMENTATION") == ["DEFAULT", "NONE", "CUSTOM"]
    assert keywords("WEIGHT_INIT_SCHEME") == list(WEIGHT_INIT_SCHEMES)
    assert keywords("MONITOR") == list(MONITORS)
    defaults = {p.name(): p.defaultValue() for p in train_alg.parameterDefinitions()}
    assert keywords("MODEL_TYPE")[defaults["MODEL_TYPE"]] == "UNET"
    assert keywords("AUGMENTATION")[defaults["AUGMENTATION"]] == "DEFAULT"
    assert keywords("WEIGHT_INIT_SCHEME")[defaults["WEIGHT_INIT_SCHEME"]] == "RANDOM"
    assert keywords("MONITOR")[defaults["MONITOR"]] == "VALID_LOSS"
    assert (defaults["MAX_EPOCHS"], defaults["BATCH_SIZE"], defaults["VALIDATION_PERCENTAGE"]) == (20, 2, 10)
    assert defaults["BACKBONE_MODEL"] == "RESNET34" and defaults["DEVICE"] == "auto"
    assert defaults["STOP_TRAINING"] is True and defaults["FREEZE"] is True and defaults["TENSORBOARD"] is False
    for name in ("LEARNING_RATE", "CHIP_SIZE", "RESIZE_TO"):
        assert defaults[name] is None
        assert train_alg.parameterDefinition(name).flags() & train_alg.parameterDefinition(name).FlagOptional
    for name in ("ARGUMENTS", "PRETRAINED_MODEL", "AUGMENTATION_PARAMETERS"):
        assert train_alg.parameterDefinition(name).flags() & train_alg.parameterDefinition(name).FlagOptional
    # Same defaults as the engine's config.
    engine = TrainConfig(in_folder="", out_folder="")
    assert (engine.max_epochs, engine.batch_size, engine.backbone, engine.validation_percentage) == (
        20, 2, "RESNET34", 10)
    help_text = train_alg.shortHelpString()
    for keyword in MODEL_TYPES + ["DEFAULT", "CUSTOM", "RED_BAND", "ALL_RANDOM", "MIOU", "DICE"]:
        assert keyword in help_text
    for name in ("OUT_MODEL_FILE", "METRICS", "resume true", "DLT_PYTHON"):
        assert name in help_text


@pytest.mark.parametrize("case, parameter", [
    ("missing_folder", "IN_FOLDER"),
    ("empty_folder", "IN_FOLDER"),
    ("not_an_export", "IN_FOLDER"),
    ("one_of_two_bad", "IN_FOLDER"),
    ("negative_epochs", "MAX_EPOCHS"),
    ("zero_batch", "BATCH_SIZE"),
    ("negative_learning_rate", "LEARNING_RATE"),
    ("validation_100", "VALIDATION_PERCENTAGE"),
    ("chip_size_0", "CHIP_SIZE"),
    ("pretrained_missing", "PRETRAINED_MODEL"),
    ("pretrained_not_a_model", "PRETRAINED_MODEL"),
    ("out_is_in", "OUT_FOLDER"),
    ("model_type_out_of_range", "MODEL_TYPE"),
])
def test_bad_input_names_the_parameter(train_alg, tmp_path, case, parameter):
    good = fake_export(tmp_path / "export")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    (tmp_path / "weights.pth").write_text("x")
    params = {"IN_FOLDER": good, "OUT_FOLDER": str(tmp_path / "model")}
    params.update({
        "missing_folder": {"IN_FOLDER": str(tmp_path / "nope")},
        "empty_folder": {"IN_FOLDER": str(tmp_path / "empty")},
        "not_an_export": {"IN_FOLDER": str(tmp_path / "other")},
        "one_of_two_bad": {"IN_FOLDER": f"{good};{tmp_path / 'other'}"},
        "negative_epochs": {"MAX_EPOCHS": -3},
        "zero_batch": {"BATCH_SIZE": 0},
        "negative_learning_rate": {"LEARNING_RATE": -0.1},
        "validation_100": {"VALIDATION_PERCENTAGE": 100},
        "chip_size_0": {"CHIP_SIZE": 0},
        "pretrained_missing": {"PRETRAINED_MODEL": str(tmp_path / "nope.dlpk")},
        "pretrained_not_a_model": {"PRETRAINED_MODEL": str(tmp_path / "weights.pth")},
        "out_is_in": {"OUT_FOLDER": good},
        "model_type_out_of_range": {"MODEL_TYPE": 99},
    }[case])
    with pytest.raises(QgsProcessingException) as raised:
        train(params)
    message = str(raised.value)
    assert parameter in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "model").exists()


def test_not_an_export_says_what_is_accepted(train_alg, tmp_path):
    (tmp_path / "chips").mkdir()
    with pytest.raises(QgsProcessingException) as raised:
        train({"IN_FOLDER": str(tmp_path / "chips"), "OUT_FOLDER": str(tmp_path / "model")})
    message = str(raised.value)
    assert "(IN_FOLDER):" in message
    assert "esri_model_definition.emd" in message and "Export Training Data For Deep Learning" in message


def test_every_interface_model_type_is_available(train_alg):
    from deep_learning_tools.processing_provider.train_deep_learning_model import available_model_types

    # tests register fake types only inside registry.registered(), which puts the registry back
    assert available_model_types() == MODEL_TYPES


def test_model_type_not_in_this_version(train_alg, tmp_path, monkeypatch):
    """A build whose engine lacks a type (e.g. a torch without detection models) says so by name."""
    from deep_learning_tools.processing_provider import train_deep_learning_model as alg_module

    available = [k for k in MODEL_TYPES if k != "SSD"]
    monkeypatch.setattr(alg_module, "available_model_types", lambda: available)
    with pytest.raises(QgsProcessingException) as raised:
        train({"IN_FOLDER": fake_export(tmp_path / "export"), "OUT_FOLDER": str(tmp_path / "model"),
               "MODEL_TYPE": model_type_index("SSD")})
    assert str(raised.value).endswith(f"(MODEL_TYPE): SSD is not available in this version; available: {', '.join(available)}")


def test_parameters_reach_the_worker(train_alg, tmp_path, monkeypatch):
    """What the worker receives (a fake Python set through DLT_PYTHON echoes its config)."""
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    first, second = fake_export(tmp_path / "a"), fake_export(tmp_path / "b")
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    result = train({
        "IN_FOLDER": f" {first} ; {second};", "OUT_FOLDER": str(tmp_path / "model"), "MAX_EPOCHS": 3,
        "BATCH_SIZE": 8, "BACKBONE_MODEL": "timm:convnext_tiny", "ARGUMENTS": "class_balancing true",
        "VALIDATION_PERCENTAGE": 20, "STOP_TRAINING": False, "FREEZE": False, "AUGMENTATION": 2,
        "AUGMENTATION_PARAMETERS": "rotate(degrees=30)", "CHIP_SIZE": 224, "RESIZE_TO": 256,
        "WEIGHT_INIT_SCHEME": 1, "MONITOR": 4, "TENSORBOARD": True, "DEVICE": "cuda:1",
    }, feedback=feedback)
    assert result["OUT_FOLDER"] == str(tmp_path / "model")
    assert result["OUT_MODEL_FILE"] == str(tmp_path / "model" / "fake.dlpk")
    echoed = json.loads(result["METRICS"])
    config = echoed["config"]
    assert config["in_folder"] == f"{first};{second}"
    assert {k: config[k] for k in (
        "out_folder", "model_type", "max_epochs", "batch_size", "arguments", "learning_rate", "backbone",
        "pretrained_model", "validation_percentage", "stop_training", "freeze", "augmentation",
        "augmentation_parameters", "chip_size", "resize_to", "weight_init_scheme", "monitor", "tensorboard",
        "device")} == {
        "out_folder": str(tmp_path / "model"), "model_type": "UNET", "max_epochs": 3, "batch_size": 8,
        "arguments": "class_balancing true", "learning_rate": None, "backbone": "timm:convnext_tiny",
        "pretrained_model": None, "validation_percentage": 20.0, "stop_training": False, "freeze": False,
        "augmentation": "CUSTOM", "augmentation_parameters": "rotate(degrees=30)", "chip_size": 224,
        "resize_to": 256, "weight_init_scheme": "RED_BAND", "monitor": "MIOU", "tensorboard": True,
        "device": "cuda:1",
    }
    assert echoed["argv"][:3] == ["-m", "dl_engine", "train"] and echoed["argv"][3] == "--config"
    assert not os.path.exists(echoed["argv"][4])  # the temporary config file is removed
    pythonpath = echoed["pythonpath"].split(os.pathsep)
    assert os.path.samefile(pythonpath[0], str(REPO))  # the plugin folder first
    assert sysconfig.get_paths()["stdlib"] not in pythonpath  # another Python keeps its own stdlib
    assert 50.0 in progress


def test_learning_rate_and_pretrained_model_pass_through(train_alg, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    emd = tmp_path / "earlier" / "earlier.emd"
    emd.parent.mkdir()
    emd.write_text("{}")
    result = train({"IN_FOLDER": fake_export(tmp_path / "a"), "OUT_FOLDER": str(tmp_path / "model"),
                    "LEARNING_RATE": 0.0005, "PRETRAINED_MODEL": str(emd)})
    config = json.loads(result["METRICS"])["config"]
    assert config["learning_rate"] == 0.0005 and config["pretrained_model"] == str(emd)
    assert config["chip_size"] is None and config["augmentation_parameters"] is None


def test_worker_error_event_becomes_a_named_exception(train_alg, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, "error"))
    with pytest.raises(QgsProcessingException, match=r"^Batch size \(BATCH_SIZE\): must be at least 1"):
        train({"IN_FOLDER": fake_export(tmp_path / "a"), "OUT_FOLDER": str(tmp_path / "model")})


# ---- real training (the engine) -------------------------------------------------------------------

@pytest.mark.trains
@needs_engine
@pytest.mark.slow
def test_export_then_train_unet(train_alg, data_dir, tmp_path):
    export = export_buildings(data_dir, tmp_path / "chips")
    out = tmp_path / "model"
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    result = train(tiny_training_params(export, out), feedback=feedback)
    assert result["OUT_FOLDER"] == str(out)
    assert result["OUT_MODEL_FILE"].endswith(".dlpk") and os.path.isfile(result["OUT_MODEL_FILE"])
    assert os.path.dirname(result["OUT_MODEL_FILE"]) == str(out)
    packages, emds = dlpk_and_emd(out)
    assert len(packages) == 1 and len(emds) == 1
    metrics = json.loads(result["METRICS"])
    assert isinstance(metrics, dict) and metrics
    emd = json.loads((out / emds[0]).read_text())
    assert emd["ModelName"] == "UnetClassifier"
    assert progress and progress[-1] == pytest.approx(100.0)


class CancelAfterFirstEpoch(QgsProcessingFeedback):
    """Cancels when the first epoch's line arrives (a checkpoint exists by then)."""

    def __init__(self):
        super().__init__()
        self.lines, self.canceled_at = [], None

    def pushInfo(self, text):  # noqa: N802 (QGIS API name)
        self.lines.append(text)
        if text.startswith("Epoch") and self.canceled_at is None:
            self.canceled_at = time.monotonic()
            self.cancel()


@pytest.mark.trains
@needs_engine
@pytest.mark.slow
def test_cancel_then_resume(train_alg, data_dir, tmp_path):
    """Cancel stops the real worker within 2 s and leaves a checkpoint; ARGUMENTS 'resume true'
    with the same parameters continues from it."""
    export = export_buildings(data_dir, tmp_path / "chips")
    out = tmp_path / "model"
    params = tiny_training_params(export, out, MAX_EPOCHS=3, STOP_TRAINING=False)
    feedback = CancelAfterFirstEpoch()
    with pytest.raises(QgsProcessingException) as raised:
        train(params, feedback=feedback)
    stopped_in = time.monotonic() - feedback.canceled_at
    assert stopped_in < 2.0, stopped_in
    assert str(raised.value).startswith("Training canceled") and "resume true" in str(raised.value)
    assert (out / "checkpoint").is_dir()
    assert dlpk_and_emd(out)[0] == []  # no package from a canceled run

    resumed = CancelAfterFirstEpoch()
    resumed.cancel = lambda: None  # this time, run to the end
    result = train(dict(params, ARGUMENTS="resume true"), feedback=resumed)
    assert any("resuming after epoch 1" in line for line in resumed.lines), resumed.lines
    assert sum(line.startswith("Epoch") for line in resumed.lines) == 2
    assert os.path.isfile(result["OUT_MODEL_FILE"])
