"""UNET on a ResNet has arcgis.learn's UnetClassifier layout (issue 15): its state dict is the one
arcgis.learn 2.4.4 builds (recorded in tests/data/arcgis_layouts/), its packages take arcgis.learn's
inferencing keys, packages written before the layout was recorded still load, and packages
arcgis.learn trained load in Classify Pixels.

Where the arcgis.learn oracle is installed (../shared/tools/arcgis-oracle/install.sh), the round
trips run against arcgis.learn itself (scripts/arcgis_compare.py, scripts/make_arcgis_fixtures.py);
elsewhere only those tests are skipped, saying why.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_unet, pixel, registry
from dl_engine.models.spec import BuildContext
from dl_engine.models.unet import UNet
from dl_engine.package import write_model_package
from test_package_helpers import exports, make_record  # noqa: F401 (fixtures)
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("unetclassifier_*.json"))



def build(backbone="RESNET18", classes=3, chip=64, bands=3, network=None):
    spec = registry.get_spec("UNET")
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes + 1, chip_size=chip,
                       arguments=dict(spec.arguments), pretrained=False, log=lambda m: None, network=network)
    return spec.build(ctx).module


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(recorded["backbone"].upper(), recorded["classes"], recorded["chip_size"])
    assert isinstance(module, arcgis_unet.ArcgisUnet)
    ours = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    assert ours == recorded["state_dict"]  # names, shapes and order


def test_layouts_were_recorded_for_resnet18_and_34():
    assert {json.loads(p.read_text())["backbone"] for p in LAYOUTS} >= {"resnet18", "resnet34"}


def test_logits_have_the_input_size():
    module = build(chip=64).eval()
    with torch.no_grad():
        for size in (64, 65, 48):
            out = module(torch.randn(2, 3, size, size))
            assert out.shape == (2, 4, size, size) and torch.isfinite(out).all()


def test_encoder_parameters_are_the_resnet_body():
    built = pixel.build_unet(BuildContext(backbone="RESNET18", in_channels=4, num_classes=2, chip_size=32,
                                          arguments={}, pretrained=False, log=lambda m: None))
    body = {id(p) for p in built.module.layers[0].parameters()}
    assert body and {id(p) for p in built.encoder_parameters} == body
    assert built.module.state_dict()["layers.0.0.weight"].shape == (64, 4, 7, 7)  # 4 bands in


def _emd(**engine):
    emd = {"ModelName": "UnetClassifier", "ModelParameters": {"backbone": "resnet34", "backend": "pytorch"},
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "Tree"}], "ImageHeight": 32}
    if engine:
        emd["Engine"] = {"name": "deeplearningtools", "model_type": "UNET", **engine}
    return emd


@pytest.mark.heavy
def test_the_emd_says_which_network_to_rebuild():
    assert isinstance(registry.build_from_emd(_emd(network="arcgis.learn")), arcgis_unet.ArcgisUnet)
    assert isinstance(registry.build_from_emd(_emd(num_classes=2)), UNet)  # ours from before: no network
    assert isinstance(registry.build_from_emd(_emd()), arcgis_unet.ArcgisUnet)  # arcgis.learn wrote it
    assert registry.rebuilds_arcgis_network(_emd())
    densenet = {**_emd(), "ModelParameters": {"backbone": "densenet121"}}
    assert not registry.rebuilds_arcgis_network(densenet)
    with pytest.raises(InputError, match="densenet121"):
        registry.build_from_emd(densenet)


def test_other_backbones_keep_our_network():
    assert isinstance(build("MOBILENET_V2"), UNet)
    assert pixel.unet_emd({}, "mobilenetv2_100")["Network"] == "deeplearningtools"
    assert pixel.unet_emd({}, "resnet50")["Network"] == "arcgis.learn"


def _package(tmp_path, folder, module, backbone="resnet18"):
    record = make_record(folder, name="unet", model_type="UNET", backbone=backbone,
                         backbone_keyword=backbone.upper(), arguments=dict(pixel.UNET_ARGUMENTS))
    return write_model_package(record, module.state_dict(), tmp_path / "unet", log=lambda m: None)


@pytest.mark.heavy
def test_package_takes_arcgis_learns_keys_and_loads_back(tmp_path, exports):  # noqa: F811
    module = build(classes=2, chip=32)  # the export has classes Oak and Pine
    paths = _package(tmp_path, exports["rgb"], module)
    emd = json.loads(Path(paths.emd).read_text())
    assert emd["Framework"] == "arcgis.learn.models._inferencing" and emd["ModelConfiguration"] == "_unet"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISImageClassifier.py"
    assert emd["ModelName"] == "UnetClassifier" and emd["ModelParameters"] == {"backbone": "resnet18",
                                                                               "backend": "pytorch"}
    assert emd["Engine"]["network"] == "arcgis.learn"
    with zipfile.ZipFile(paths.dlpk) as z:
        assert not [n for n in z.namelist() if n.endswith(".py")]  # no inference code shipped
        assert set(torch.load(z.open("unet.pth"), weights_only=True)) == set(module.state_dict())
    loaded = load_model(paths.dlpk, "classify_pixels")
    assert isinstance(loaded.module, arcgis_unet.ArcgisUnet)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), module.eval()(x))


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path, exports):  # noqa: F811
    old = build(classes=2, chip=32, network="deeplearningtools")
    assert isinstance(old, UNet)
    paths = _package(tmp_path, exports["rgb"], old)  # then made to look like an older package
    as_written_before(paths.emd, "DeepLearningToolsClassifier.py")
    loaded = load_model(paths.emd, "classify_pixels")
    assert isinstance(loaded.module, UNet)


def test_foreign_packages_of_other_networks_are_still_refused(tmp_path):
    emd = {**_emd(), "ModelParameters": {"backbone": "densenet121"}, "Framework": "arcgis.learn.models._inferencing",
           "ModelFile": "m.pth"}
    (tmp_path / "m.emd").write_text(json.dumps(emd))
    with pytest.raises(InputError, match="arcgis.learn's own"):
        load_model(str(tmp_path / "m.emd"), "classify_pixels")


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
def test_arcgis_learn_builds_the_recorded_layout():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "arcgis_compare.py"), "layout",
                           "--backbone", "resnet18", "--classes", "3", "--chip", "64"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["same_as_ours"] is True


@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("kind, bands", [("rgb", 3), ("ms", 4)])  # 8-bit RGB; 4-band UInt16 (NormalizationStats)
def test_our_package_loads_in_arcgis_learn_and_predicts_the_same(tmp_path, exports, kind, bands):  # noqa: F811
    module = build(classes=2, chip=32, bands=bands)
    with torch.no_grad():  # trained-looking statistics, so that BatchNorm is not the identity
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    paths = _package(tmp_path, exports[kind], module)
    assert_arcgis_learn_loads(paths.dlpk, timeout=600)
    result = arcgis_compare.compare(paths.dlpk, str(exports[kind]), 8)
    assert result["class_agreement"] == 1.0 and result["within_tolerance"], result


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
def test_a_package_arcgis_learn_trained_runs_in_classify_pixels(tmp_path):
    # 16-px chips: enough of them for arcgis.learn's validation split, and its smallest U-Net layout
    import data_helpers as dh

    raster, _ = dh.raster(tmp_path)
    export = dh.export(raster, tmp_path / "export", "Classified_Tiles", tile=16)  # classes 3 and 7
    out = tmp_path / "arcgis_unet"
    train_with_arcgis_learn(export, str(out), "--backbone", "resnet18", "--epochs", "1", "--batch-size", "4")
    dlpk = out / "arcgis_unet.dlpk"
    emd = json.loads((out / "arcgis_unet.emd").read_text())
    assert "Engine" not in emd and emd["ModelName"] == "UnetClassifier"
    loaded = load_model(str(dlpk), "classify_pixels")  # weights_only, the package's .py never run
    assert isinstance(loaded.module, arcgis_unet.ArcgisUnet)
    assert [c.value for c in loaded.classes] == [3, 7] and loaded.chip_size == 16
    result = arcgis_compare.compare(str(dlpk), export, 16)
    assert result["class_agreement"] == 1.0 and result["within_tolerance"], result
