"""DEEPLAB on a ResNet has arcgis.learn's DeepLab layout (issue 15): its state dict is the one
arcgis.learn 2.4.4 builds (recorded in tests/data/arcgis_layouts/deeplab_*.json), with its
dilation (output stride 8), its packages take arcgis.learn's inferencing keys, packages written
before the layout still load in our own DeepLabV3+, and packages arcgis.learn trained load in
Classify Pixels.

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
from dl_engine.models import arcgis_deeplab, pixel, registry
from dl_engine.models.deeplab import DeepLabV3Plus
from dl_engine.models.spec import BuildContext
from dl_engine.package import write_model_package
from test_package_helpers import exports, make_record  # noqa: F401 (fixtures)
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("deeplab_*.json"))

HEAVY_BACKBONES = ("resnet101", "resnet152")  # 40-60 M weights: seconds to build


def build(backbone="RESNET18", classes=3, chip=64, bands=3, network=None, **arguments):
    spec = registry.get_spec("DEEPLAB")
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes + 1, chip_size=chip,
                       arguments={**spec.arguments, **arguments}, pretrained=False, log=lambda m: None,
                       network=network)
    return spec.build(ctx).module


@pytest.mark.parametrize("layout", [pytest.param(p, marks=pytest.mark.heavy) if p.stem.split("_")[1] in HEAVY_BACKBONES
                                    else p for p in LAYOUTS], ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(recorded["backbone"].upper(), recorded["classes"], recorded["chip_size"])
    assert isinstance(module, arcgis_deeplab.ArcgisDeepLab)
    ours = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    assert ours == recorded["state_dict"]  # names, shapes and order


def test_layouts_were_recorded_for_every_resnet():
    assert {json.loads(p.read_text())["backbone"] for p in LAYOUTS} == set(pixel.ARCGIS_DEEPLAB_BACKBONES)


def _dilations(module, layer):
    return [m.dilation[0] for m in module.backbone[layer].modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]


def test_dilation_is_arcgis_learns():
    # resnet18 … 152 but 101: arcgis.learn's own Deeplab dilates every 3x3 conv of layer3 by 2, of layer4 by 4
    module = build("RESNET18")
    assert _dilations(module, 6) == [2] * 4 and _dilations(module, 7) == [4] * 4
    with torch.no_grad():
        assert module.backbone(torch.randn(1, 3, 64, 64)).shape[-2:] == (8, 8)  # output stride 8


@pytest.mark.heavy
def test_resnet101_is_torchvisions_deeplabv3():
    # arcgis.learn takes torchvision's deeplabv3_resnet101: named body, the first block of a layer
    # keeps the previous dilation
    module = build("RESNET101")
    assert list(module.state_dict())[0] == "backbone.conv1.weight"
    assert _dilations(module, 6) == [1] + [2] * 22 and _dilations(module, 7) == [2, 4, 4]


def test_logits_have_the_input_size_and_keep_dilation_changes_nothing():
    torch.manual_seed(0)
    module = build(chip=64).eval()
    with torch.no_grad():
        for size in ((65, 65), (48, 80)):  # odd, not square
            out = module(torch.randn(1, 3, *size))
            assert out.shape == (1, 4, *size) and torch.isfinite(out).all()
    kept = build(chip=64, keep_dilation=True)
    assert [[k, v.shape] for k, v in kept.state_dict().items()] == [[k, v.shape] for k, v in module.state_dict().items()]
    assert _dilations(kept, 7) == _dilations(module, 7)


@pytest.mark.trains
def test_a_training_step_reaches_every_parameter():
    """Our trainer's contract: one logits tensor; every parameter (the auxiliary head's too, which
    only arcgis.learn trains) gets a gradient, so DistributedDataParallel needs no
    find_unused_parameters; the encoder parameters are the ResNet body."""
    torch.manual_seed(0)
    spec = registry.get_spec("DEEPLAB")
    built = spec.build(BuildContext(backbone="RESNET18", in_channels=4, num_classes=3, chip_size=32,
                                    arguments=dict(spec.arguments), pretrained=False, log=lambda m: None))
    net = built.module.train()
    assert {id(p) for p in built.encoder_parameters} == {id(p) for p in net.backbone.parameters()}
    assert net.state_dict()["backbone.0.weight"].shape == (64, 4, 7, 7)  # 4 bands in
    logits = net(torch.randn(2, 4, 32, 32))
    assert logits.shape == (2, 3, 32, 32)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 32, 32))).backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(float(p.grad.abs().sum()) == 0 for p in net.aux_classifier.parameters())
    net.zero_grad()
    net(torch.randn(1, 4, 32, 32)).sum().backward()  # a batch of one: the image pooling's BatchNorm copes


def _emd(backbone="resnet34", **engine):
    emd = {"ModelName": "DeepLab", "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "Tree"}],
           "ModelParameters": {"pointrend": False, "keep_dilation": False, "backbone": backbone, "backend": "pytorch"},
           "ImageHeight": 32}
    if engine:
        emd["Engine"] = {"name": "deeplearningtools", "model_type": "DEEPLAB", **engine}
    return emd


@pytest.mark.heavy
def test_the_emd_says_which_network_to_rebuild():
    assert isinstance(registry.build_from_emd(_emd(network="arcgis.learn")), arcgis_deeplab.ArcgisDeepLab)
    assert isinstance(registry.build_from_emd(_emd(num_classes=2)), DeepLabV3Plus)  # ours from before: no network
    assert isinstance(registry.build_from_emd(_emd()), arcgis_deeplab.ArcgisDeepLab)  # arcgis.learn wrote it
    assert registry.rebuilds_arcgis_network(_emd())
    densenet = _emd("densenet121")
    assert not registry.rebuilds_arcgis_network(densenet)
    with pytest.raises(InputError, match="DeepLab with the backbone densenet121.*resnet18"):
        registry.build_from_emd(densenet)


def test_emd_params_as_arcgis_learn_writes_them():
    params = pixel.deeplab_emd({}, "resnet50")
    assert params["ModelConfiguration"] == "_deeplab_infrencing" and params["Network"] == "arcgis.learn"
    assert list(params["ModelParameters"]) == ["pointrend", "keep_dilation", "backbone", "backend"]
    assert params["ignore_mapped_class"] == [] and params["SupportsVariableTileSize"] is True
    assert pixel.deeplab_emd({}, "mobilenetv2_100")["Network"] == "deeplearningtools"
    assert isinstance(build("MOBILENET_V2"), DeepLabV3Plus)  # other backbones keep our network


def _package(tmp_path, folder, module, backbone="resnet18"):
    record = make_record(folder, name="deeplab", model_type="DEEPLAB", backbone=backbone,
                         backbone_keyword=backbone.upper(), arguments=dict(pixel.DEEPLAB_ARGUMENTS))
    return write_model_package(record, module.state_dict(), tmp_path / "deeplab", log=lambda m: None)


@pytest.mark.heavy
def test_package_takes_arcgis_learns_keys_and_loads_back(tmp_path, exports):  # noqa: F811
    module = build(classes=2, chip=32)  # the export has classes Oak and Pine
    paths = _package(tmp_path, exports["rgb"], module)
    emd = json.loads(Path(paths.emd).read_text())
    assert emd["Framework"] == "arcgis.learn.models._inferencing"
    assert emd["ModelConfiguration"] == "_deeplab_infrencing"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISImageClassifier.py"
    assert emd["ModelName"] == "DeepLab" and emd["ModelParameters"] == {
        "pointrend": False, "keep_dilation": False, "backbone": "resnet18", "backend": "pytorch"}
    assert emd["ignore_mapped_class"] == [] and emd["SupportsVariableTileSize"] is True
    assert emd["Engine"]["network"] == "arcgis.learn"
    with zipfile.ZipFile(paths.dlpk) as z:
        assert not [n for n in z.namelist() if n.endswith(".py")]  # no inference code shipped
        assert list(torch.load(z.open("deeplab.pth"), weights_only=True)) == list(module.state_dict())
    loaded = load_model(paths.dlpk, "classify_pixels")
    assert isinstance(loaded.module, arcgis_deeplab.ArcgisDeepLab)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), module.eval()(x))


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path, exports):  # noqa: F811
    old = build(classes=2, chip=32, network="deeplearningtools")
    assert isinstance(old, DeepLabV3Plus)
    paths = _package(tmp_path, exports["rgb"], old)  # then made to look like an older package
    as_written_before(paths.emd, "DeepLearningToolsClassifier.py")
    loaded = load_model(paths.emd, "classify_pixels")
    assert isinstance(loaded.module, DeepLabV3Plus)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), old.eval()(x))


def test_foreign_packages_of_other_backbones_are_refused(tmp_path):
    emd = {**_emd("densenet121"), "Framework": "arcgis.learn.models._inferencing", "ModelFile": "m.pth"}
    (tmp_path / "m.emd").write_text(json.dumps(emd))
    with pytest.raises(InputError, match="arcgis.learn's own") as err:
        load_model(str(tmp_path / "m.emd"), "classify_pixels")
    assert "DeepLab" in err.value.message


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
def test_arcgis_learn_builds_the_recorded_layout():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "arcgis_compare.py"), "layout", "--model", "DeepLab",
                           "--backbone", "resnet18", "--classes", "3", "--chip", "64"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["same_as_ours"] is True


@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("kind, bands", [("rgb", 3), ("ms", 4)])  # 8-bit RGB; 4-band UInt16 (NormalizationStats)
def test_our_package_loads_in_arcgis_learn_and_predicts_the_same(tmp_path, exports, kind, bands):  # noqa: F811
    torch.manual_seed(0)
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
    import data_helpers as dh

    raster, _ = dh.raster(tmp_path)
    export = dh.export(raster, tmp_path / "export", "Classified_Tiles", tile=16)  # classes 3 and 7
    out = tmp_path / "arcgis_deeplab"
    train_with_arcgis_learn(export, str(out), "--model", "DeepLab", "--backbone", "resnet18", "--epochs", "1",
                            "--batch-size", "4")
    dlpk = out / "arcgis_deeplab.dlpk"
    emd = json.loads((out / "arcgis_deeplab.emd").read_text())
    assert "Engine" not in emd and emd["ModelName"] == "DeepLab"
    loaded = load_model(str(dlpk), "classify_pixels")  # weights_only, the package's .py never run
    assert isinstance(loaded.module, arcgis_deeplab.ArcgisDeepLab)
    assert [c.value for c in loaded.classes] == [3, 7] and loaded.chip_size == 16
    result = arcgis_compare.compare(str(dlpk), export, 16)
    assert result["class_agreement"] == 1.0 and result["within_tolerance"], result
