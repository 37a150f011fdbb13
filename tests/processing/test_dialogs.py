"""The dialogs as an analyst meets them (issue 17 item 6): refusals with the dialog's labels,
spin boxes with the bounds of the engine's rules, BACKBONE_MODEL as a drop-down, help text,
CELL_SIZE typed as text."""

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProcessingParameterNumber

from dlt_helpers import EXPORT_ALG, elevation
from dlt_infer_helpers import CLASSIFY_PIXELS_ALG, dsm, fake_infer_python, fake_model, run_alg
from dlt_train_helpers import TRAIN_ALG, fake_export, fake_python

NO_BOUND = 1e300  # QGIS's "no bound" is ±DBL_MAX

# Where the rule has an upper bound too (a ratio, a percentage, an angle), as the help states it.
MAXIMA = {"MIN_IOU": 1, "MAX_OVERLAP_RATIO": 1, "MIN_POLYGON_OVERLAP_RATIO": 1, "VALIDATION_PERCENTAGE": 100,
          "ROTATION_ANGLE": 360}


def algorithm(alg_id):
    return QgsApplication.processingRegistry().algorithmById(alg_id)


def numbers(provider):
    return [(a.id(), d) for a in provider.algorithms() for d in a.parameterDefinitions()
            if isinstance(d, QgsProcessingParameterNumber)]


def test_every_number_has_the_bounds_of_its_rule(provider):
    found = numbers(provider)
    assert len(found) >= 20
    for alg_id, definition in found:
        assert definition.minimum() > -NO_BOUND, f"{alg_id} {definition.name()} has no minimum"
        assert definition.minimum() >= 0, f"{alg_id} {definition.name()}: no number here may be negative"
        if definition.name() in MAXIMA:
            assert definition.maximum() == MAXIMA[definition.name()], (alg_id, definition.name())
        default = definition.defaultValue()
        if default is not None:
            assert definition.minimum() <= default <= definition.maximum(), (alg_id, definition.name())
    names = {d.name() for _, d in found}
    assert {"TILE_SIZE_X", "START_INDEX", "MAX_EPOCHS", "BATCH_SIZE", "CELL_SIZE"} <= names


def test_a_script_outside_the_bounds_gets_the_engines_words_with_the_label(provider, data_dir, tmp_path):
    """A stray mouse wheel cannot set Start index to −24 in the dialog; a script that passes it gets
    the engine's rule, naming the parameter as the dialog does."""
    raster, labels = elevation(data_dir)
    out = tmp_path / "chips"
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(EXPORT_ALG, {"IN_RASTER": raster, "IN_CLASS_DATA": labels, "OUT_FOLDER": str(out),
                             "START_INDEX": -24})
    message = str(raised.value)
    assert message.startswith("Start index"), message
    assert "(START_INDEX): must be a whole number of at least 0; got -24" in message
    assert not out.exists()


def test_refusals_give_the_dialog_label_with_the_id(provider, tmp_path, monkeypatch):
    # check_config (before any worker)
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    params = {"IN_FOLDER": fake_export(tmp_path / "export"), "OUT_FOLDER": str(tmp_path / "model")}
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(TRAIN_ALG, {**params, "BATCH_SIZE": 0})
    assert str(raised.value) == "Batch size (BATCH_SIZE): must be a whole number of at least 1; got 0"


def test_worker_refusals_give_the_dialog_label_with_the_id(provider, data_dir, tmp_path, monkeypatch):
    # an error event of the worker (the engine's InputError in the worker process)
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path, "error"))
    label = algorithm(CLASSIFY_PIXELS_ALG).parameterDefinition("IN_RASTER").description()
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path),
                                      "OUT_CLASSIFIED_RASTER": str(tmp_path / "out.tif")})
    assert label == "Input raster"
    assert str(raised.value).startswith("Input raster (IN_RASTER): the model was trained on 3 bands")


def test_labelled_leaves_other_messages_alone():
    from deep_learning_tools.processing_provider.base import labelled

    label = {"IN_RASTER": "Input raster"}.get
    assert labelled("IN_RASTER: no CRS", label) == "Input raster (IN_RASTER): no CRS"
    assert labelled("Input raster (IN_RASTER): no CRS", label) == "Input raster (IN_RASTER): no CRS"
    assert labelled("OTHER: x", label) == "OTHER: x"  # not a parameter of this algorithm
    assert labelled("Training canceled", label) == "Training canceled"


# ---- BACKBONE_MODEL: an editable drop-down in the dialog, free text for scripts ---------------------

@pytest.fixture
def train_dialog(provider, monkeypatch):
    from processing.gui import ParametersPanel
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    monkeypatch.setattr(ParametersPanel, "iface", None)  # pytest-qgis's stand-in has no browser model
    dialog = AlgorithmDialog(algorithm(TRAIN_ALG).create())
    yield dialog
    dialog.deleteLater()


def test_backbone_is_a_drop_down_of_every_backbone(train_dialog):
    from dl_engine.models.backbones import KEYWORDS
    from deep_learning_tools.processing_provider.backbone_widget import BackboneWidgetWrapper

    wrapper = train_dialog.mainWidget().wrappers["BACKBONE_MODEL"]
    assert isinstance(wrapper, BackboneWidgetWrapper)
    combo = wrapper.widget
    listed = [combo.itemText(i) for i in range(combo.count())]
    assert listed == list(KEYWORDS) and {"RESNET34", "DARKNET53", "EFFICIENTNET_LITE0"} <= set(listed)
    assert combo.isEditable() and wrapper.value() == "RESNET34"  # TrainConfig's default
    combo.setEditText("timm:convnext_tiny")
    assert wrapper.value() == "timm:convnext_tiny"
    assert wrapper.parameterValue() == "timm:convnext_tiny"  # what the dialog passes to the algorithm


def test_backbone_follows_the_model_type_until_chosen(train_dialog):
    panel = train_dialog.mainWidget()
    backbone, model_type = panel.wrappers["BACKBONE_MODEL"], panel.wrappers["MODEL_TYPE"]
    options = model_type.parameterDefinition().options()
    index = {label.split(" ", 1)[0]: i for i, label in enumerate(options)}
    model_type.setParameterValue(index["YOLOV3"], QgsProcessingContext())
    assert backbone.value() == "DARKNET53"  # YOLOv3's default
    backbone.setValue("resnet50")  # typed in any case: the listed keyword
    assert backbone.value() == "RESNET50"
    model_type.setParameterValue(index["UNET"], QgsProcessingContext())
    assert backbone.value() == "RESNET50"  # the user's choice stays


def test_scripts_still_pass_any_backbone_text(provider, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    definition = algorithm(TRAIN_ALG).parameterDefinition("BACKBONE_MODEL")
    assert definition.type() == "string"  # qgis_process and processing.run take text
    result = run_alg(TRAIN_ALG, {"IN_FOLDER": fake_export(tmp_path / "export"), "OUT_FOLDER": str(tmp_path / "m"),
                                 "BACKBONE_MODEL": "timm:convnext_tiny"})
    import json

    assert json.loads(result["METRICS"])["config"]["backbone"] == "timm:convnext_tiny"


# ---- OUT_FOLDER: a named place in the dialog, required from scripts --------------------------------

def open_dialog(alg_id, monkeypatch):
    """As the Toolbox opens a dialog: createCustomParametersWidget on the instance, then Processing's dialog."""
    from processing.gui import ParametersPanel
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    monkeypatch.setattr(ParametersPanel, "iface", None)
    instance = algorithm(alg_id).create()
    assert instance.createCustomParametersWidget(None) is None
    return AlgorithmDialog(instance)


def test_out_folder_defaults_to_a_named_folder_in_the_dialog(provider, data_dir, tmp_path, monkeypatch):
    from qgis.core import QgsProject, QgsRasterLayer

    monkeypatch.setenv("HOME", str(tmp_path))
    raster = QgsRasterLayer(elevation(data_dir)[0], "dsm")
    QgsProject.instance().addMapLayer(raster)
    try:
        dialog = open_dialog(EXPORT_ALG, monkeypatch)
        shown = dialog.mainWidget().wrappers["OUT_FOLDER"].parameterValue()
        expected = tmp_path / "deep_learning_tools" / "training_data-dsm"
        assert shown == str(expected)  # what Run passes, not a temporary folder
        expected.mkdir(parents=True)
        (expected / "map.txt").write_text("")  # an earlier export: the next dialog offers another folder
        again = algorithm(EXPORT_ALG).create()
        again.createCustomParametersWidget(None)
        assert again.parameterDefinition("OUT_FOLDER").defaultValue() == f"{expected}-2"
        train = algorithm(TRAIN_ALG).create()
        train.createCustomParametersWidget(None)
        assert train.parameterDefinition("OUT_FOLDER").defaultValue() == str(tmp_path / "deep_learning_tools" / "model-dsm")
        dialog.deleteLater()
    finally:
        QgsProject.instance().removeMapLayer(raster.id())


def test_scripts_must_still_give_out_folder(provider, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert algorithm(EXPORT_ALG).parameterDefinition("OUT_FOLDER").defaultValue() in (None, "")
    raster, labels = elevation(data_dir)
    with pytest.raises(QgsProcessingException):
        run_alg(EXPORT_ALG, {"IN_RASTER": raster, "IN_CLASS_DATA": labels})
    assert not (tmp_path / "deep_learning_tools").exists()


# ---- help: paragraphs, arcpy keywords, one example ----------------------------------------------------

def paragraphs(help_text):
    import re

    return [re.sub(r"<[^>]+>", "", p).strip() for p in re.findall(r"<p>(.*?)</p>", help_text, re.DOTALL)]


def test_every_help_is_paragraphs_with_one_example_at_the_end(provider):
    import re

    for alg in provider.algorithms():
        text = alg.shortHelpString()
        found = paragraphs(text)
        assert found, f"{alg.id()}: no <p> paragraph"
        for paragraph in found:
            assert re.search(r"[.:)]$", paragraph), f"{alg.id()}: a paragraph ends mid-sentence: …{paragraph[-80:]!r}"
        examples = [i for i, p in enumerate(found) if p.startswith("Example")]
        assert len(examples) == 1 and examples[0] == len(found) - 1, f"{alg.id()}: one Example paragraph, last"
        assert "qgis_process" in found[-1] and alg.id() in found[-1], alg.id()
        body = text.rsplit("<p><b>Example", 1)[0]
        unnamed = [d.name() for d in alg.parameterDefinitions() if f"<b>{d.name()}</b>" not in body]
        assert not unnamed, f"{alg.id()}: the help does not name {unnamed} (the arcpy keywords)"
        # scripting details only in the example
        assert not any("qgis_process" in p for p in found[:-1]), f"{alg.id()}: qgis_process outside the example"


def test_the_example_runs_as_written(provider):
    """The example's names are the algorithm's parameters; enumerations are shown as indexes."""
    import re

    for alg in provider.algorithms():
        example = paragraphs(alg.shortHelpString())[-1]
        command = re.search(r"qgis_process run (\S+) -- (.*?)\s*In Python", example, re.DOTALL)
        assert command and command.group(1) == alg.id(), example
        for token in re.findall(r"'[^']*'|\S+", command.group(2)):
            name, value = token.strip("'").split("=", 1)
            definition = alg.parameterDefinition(name)
            assert definition is not None, f"{alg.id()}: {name} is not a parameter"
            if definition.type() == "enum":
                assert value.isdigit() and int(value) < len(definition.options()), (alg.id(), name, value)
        required = {d.name() for d in alg.parameterDefinitions()
                    if not d.flags() & d.FlagOptional and d.defaultValue() is None}
        assert all(f"{name}=" in command.group(2) for name in required), (alg.id(), required)


# ---- CELL_SIZE typed as text is refused, not read as empty -------------------------------------------

def test_cell_size_typed_as_text_is_refused(provider, data_dir, tmp_path, monkeypatch):
    raster, labels = elevation(data_dir)
    out = tmp_path / "chips"
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(EXPORT_ALG, {"IN_RASTER": raster, "IN_CLASS_DATA": labels, "OUT_FOLDER": str(out),
                             "CELL_SIZE": "abc"})
    assert "(CELL_SIZE): " in str(raised.value) and "got 'abc'" in str(raised.value), str(raised.value)
    assert not out.exists()

    record = tmp_path / "record"
    monkeypatch.setenv("DLT_PYTHON", fake_infer_python(tmp_path))
    monkeypatch.setenv("FAKE_INFER_RECORD", str(record))
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(CLASSIFY_PIXELS_ALG, {"IN_RASTER": dsm(data_dir), "IN_MODEL_DEFINITION": fake_model(tmp_path / "m"),
                                      "OUT_CLASSIFIED_RASTER": str(tmp_path / "out.tif"), "CELL_SIZE": "abc"})
    assert str(raised.value).startswith("Cell size"), str(raised.value)
    assert "(CELL_SIZE): " in str(raised.value) and "got 'abc'" in str(raised.value)
    assert not record.exists()  # refused before the worker started


def test_qgis_refusals_give_the_label_too(provider, tmp_path):
    with pytest.raises(QgsProcessingException) as raised:
        run_alg(EXPORT_ALG, {"IN_RASTER": str(tmp_path / "missing.tif"), "OUT_FOLDER": str(tmp_path / "out")})
    assert "for Input raster (IN_RASTER)" in str(raised.value), str(raised.value)
