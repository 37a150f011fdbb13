"""PSPNET on a ResNet has arcgis.learn's PSPNetClassifier layout (issue 15): its state dict is the
one arcgis.learn 2.4.4 builds (recorded in tests/data/arcgis_layouts/pspnetclassifier_*.json) for
use_unet (its default: fastai's DynamicUnet over the dilated body and the pyramid pooling; with
vggv2 wrapped as ``model``) and without it; packages take arcgis.learn's keys, packages written
before the layout still load in our own PSPNet, and packages arcgis.learn trained load in Classify
Pixels.

Where the arcgis.learn oracle is installed (../shared/tools/arcgis-oracle/install.sh), the round
trips run against arcgis.learn itself; elsewhere only those tests are skipped, saying why.
"""

import json
from pathlib import Path

import pytest
import torch

from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_pspnet, pixel, registry
from dl_engine.models.psp import PSPNet
from dl_engine.models.spec import ARCGIS_LEARN, BuildContext
from dl_engine.package import write_model_package
from test_package_helpers import exports, make_record  # noqa: F401 (fixtures)
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("pspnetclassifier_*.json"))

HEAVY_BACKBONES = ("resnet101", "resnet152")


def build(backbone="RESNET18", classes=3, chip=64, bands=3, network=None, **arguments):
    spec = registry.get_spec("PSPNET")
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes + 1, chip_size=chip,
                       arguments={**spec.arguments, **arguments}, pretrained=False, log=lambda m: None,
                       network=network)
    return spec.build(ctx).module


@pytest.mark.parametrize("layout", [pytest.param(p, marks=pytest.mark.heavy) if p.stem.split("_")[1] in HEAVY_BACKBONES
                                    else p for p in LAYOUTS], ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    # recorded through from_model (an emd without vggv2: the U-Net unwrapped) unless it says otherwise
    recorded = json.loads(layout.read_text())
    module = build(recorded["backbone"].upper(), recorded["classes"], recorded["chip_size"], network=ARCGIS_LEARN,
                   **recorded.get("model_parameters", {}))
    ours = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    assert ours == recorded["state_dict"]  # names, shapes and order


def test_layouts_were_recorded_for_every_resnet_and_variant():
    recorded = [json.loads(p.read_text()) for p in LAYOUTS]
    assert {r["backbone"] for r in recorded} == set(pixel.ARCGIS_PSPNET_BACKBONES)
    assert {json.dumps(r.get("model_parameters", {})) for r in recorded} >= {"{}", '{"vggv2": true}',
                                                                               '{"use_unet": false}'}


@pytest.mark.heavy
def test_a_new_model_is_arcgis_learns_default_and_keeps_the_input_size():
    torch.manual_seed(0)
    module = build(chip=64).eval()
    assert isinstance(module, arcgis_pspnet.PSPUnet)  # use_unet and vggv2, as PSPNetClassifier(data)
    assert isinstance(build(use_unet=False), arcgis_pspnet.ArcgisPSPNet)
    with torch.no_grad():
        for size in ((65, 65), (48, 80)):  # odd, not square
            out = module(torch.randn(1, 3, *size))
            assert out.shape == (1, 4, *size) and torch.isfinite(out).all()
        assert module.encoder(torch.randn(1, 3, 64, 64)).shape[-2:] == (8, 8)  # dilated: output stride 8


@pytest.mark.trains
@pytest.mark.parametrize("arguments", [{}, {"use_unet": False, "pyramid_sizes": [1, 2, 3]}])
def test_a_training_step_reaches_every_parameter(arguments):
    torch.manual_seed(0)
    spec = registry.get_spec("PSPNET")
    built = spec.build(BuildContext(backbone="RESNET18", in_channels=4, num_classes=3, chip_size=32,
                                    arguments={**spec.arguments, **arguments}, pretrained=False, log=lambda m: None))
    net = built.module.train()
    assert {id(p) for p in built.encoder_parameters} == {id(p) for p in net.encoder.parameters()}
    assert next(iter(net.encoder.parameters())).shape == (64, 4, 7, 7)  # 4 bands in
    logits = net(torch.randn(2, 4, 32, 32))
    assert logits.shape == (2, 3, 32, 32)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 32, 32))).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    net(torch.randn(1, 4, 32, 32)).sum().backward()  # a batch of one: the 1x1 pooled BatchNorm copes


def _emd(backbone="resnet34", **engine):
    emd = {"ModelName": "PSPNetClassifier", "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "Tree"}],
           "ModelParameters": {"pyramid_sizes": [1, 2, 3, 6], "use_unet": True, "backbone": backbone}, "ImageHeight": 32}
    if engine:
        emd["Engine"] = {"name": "deeplearningtools", "model_type": "PSPNET", **engine}
    return emd


@pytest.mark.heavy
def test_the_emd_says_which_network_to_rebuild():
    unwrapped = registry.build_from_emd(_emd())  # arcgis.learn wrote it, without vggv2: from_model's False
    assert isinstance(unwrapped, arcgis_pspnet.PSPDynamicUnet)
    wrapped = {**_emd(), "ModelParameters": {**_emd()["ModelParameters"], "vggv2": True}}
    assert isinstance(registry.build_from_emd(wrapped), arcgis_pspnet.PSPUnet)
    assert isinstance(registry.build_from_emd(_emd(num_classes=2)), PSPNet)  # ours from before: no network
    densenet = _emd("densenet121")
    assert not registry.rebuilds_arcgis_network(densenet)
    with pytest.raises(InputError, match="PSPNetClassifier with the backbone densenet121"):
        registry.build_from_emd(densenet)
    aux = {**_emd(), "ModelParameters": {**_emd()["ModelParameters"], "unet_aux_loss": True}}
    with pytest.raises(InputError, match="unet_aux_loss"):
        registry.build_from_emd(aux)


def test_emd_params_as_arcgis_learn_writes_them():
    params = pixel.pspnet_emd({}, "resnet50")
    assert params["ModelConfiguration"] == "_psp" and params["Network"] == "arcgis.learn"
    assert list(params["ModelParameters"]) == ["pyramid_sizes", "use_unet", "pointrend", "keep_dilation", "vggv2",
                                               "unet_aux_loss", "backbone", "backend"]
    assert params["ModelParameters"]["vggv2"] is True  # what a new model is
    assert params["ignore_mapped_class"] == [] and params["SupportsVariableTileSize"] is True
    assert pixel.pspnet_emd({}, "mobilenetv2_100")["Network"] == "deeplearningtools"


def _package(tmp_path, folder, module, backbone="resnet18", **arguments):
    record = make_record(folder, name="psp", model_type="PSPNET", backbone=backbone, backbone_keyword=backbone.upper(),
                         arguments={**pixel.PSPNET_ARGUMENTS, **arguments})
    return write_model_package(record, module.state_dict(), tmp_path / "psp", log=lambda m: None)


@pytest.mark.heavy
@pytest.mark.parametrize("arguments", [{}, {"use_unet": False}])
def test_package_takes_arcgis_learns_keys_and_loads_back(tmp_path, exports, arguments):  # noqa: F811
    module = build(classes=2, chip=32, **arguments)
    paths = _package(tmp_path, exports["rgb"], module, **arguments)
    emd = json.loads(Path(paths.emd).read_text())
    assert emd["Framework"] == "arcgis.learn.models._inferencing" and emd["ModelConfiguration"] == "_psp"
    assert emd["ModelName"] == "PSPNetClassifier" and emd["Engine"]["network"] == "arcgis.learn"
    loaded = load_model(paths.dlpk, "classify_pixels")
    assert type(loaded.module) is type(module)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), module.eval()(x))


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path, exports):  # noqa: F811
    old = build(classes=2, chip=32, network="deeplearningtools")
    assert isinstance(old, PSPNet)
    paths = _package(tmp_path, exports["rgb"], old)  # then made to look like an older package
    as_written_before(paths.emd, "DeepLearningToolsClassifier.py")
    assert isinstance(load_model(paths.emd, "classify_pixels").module, PSPNet)


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("kind, bands, arguments", [("rgb", 3, {}), ("ms", 4, {}), ("rgb", 3, {"use_unet": False})])
def test_our_package_loads_in_arcgis_learn_and_predicts_the_same(tmp_path, exports, kind, bands, arguments):  # noqa: F811
    torch.manual_seed(0)
    module = build(classes=2, chip=32, bands=bands, **arguments)
    with torch.no_grad():  # trained-looking statistics, so that BatchNorm is not the identity
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    paths = _package(tmp_path, exports[kind], module, **arguments)
    assert_arcgis_learn_loads(paths.dlpk, timeout=600)
    result = arcgis_compare.compare(paths.dlpk, str(exports[kind]), 8)
    assert result["class_agreement"] == 1.0 and result["within_tolerance"], result


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
def test_a_package_arcgis_learn_trained_runs_in_classify_pixels(tmp_path):
    import data_helpers as dh

    raster, _ = dh.raster(tmp_path)
    export = dh.export(raster, tmp_path / "export", "Classified_Tiles", tile=16)  # classes 3 and 7
    out = tmp_path / "arcgis_psp"
    train_with_arcgis_learn(export, str(out), "--model", "PSPNetClassifier", "--backbone", "resnet18",
                            "--epochs", "1", "--batch-size", "4")
    emd = json.loads((out / "arcgis_psp.emd").read_text())
    assert "Engine" not in emd and emd["ModelName"] == "PSPNetClassifier" and emd["ModelParameters"]["vggv2"] is True
    loaded = load_model(str(out / "arcgis_psp.dlpk"), "classify_pixels")
    assert isinstance(loaded.module, arcgis_pspnet.PSPUnet)
    result = arcgis_compare.compare(str(out / "arcgis_psp.dlpk"), export, 16)
    assert result["class_agreement"] == 1.0 and result["within_tolerance"], result
