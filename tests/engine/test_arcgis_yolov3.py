"""YOLOV3 on DARKNET53 has arcgis.learn's YOLOv3 layout (issue 15): the state dict arcgis.learn 2.4.4
builds (recorded in tests/data/arcgis_layouts/), RGB seen as pixels / 255 as arcgis.learn feeds it,
Pro's post-processing, packages that cross both ways; other backbones and packages written before
keep our own YOLOv3; packages arcgis.learn trained load in Detect Objects.

Where the arcgis.learn oracle is installed (../shared/tools/arcgis-oracle/install.sh), the round
trips run against arcgis.learn itself (scripts/arcgis_compare.py, scripts/make_arcgis_fixtures.py);
elsewhere only those tests are skipped, saying why.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import data_helpers as dh
import engine_helpers as h
from dl_engine.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_yolov3, detection, registry
from dl_engine.models.spec import ARCGIS_LEARN, OWN_NETWORK, BuildContext
from dl_engine.models.yolov3 import YOLOv3
from dl_engine.package import write_model_package
from test_package_helpers import make_record
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("yolov3_*.json"))

ANCHORS = [[4, 5], [8, 6], [6, 10], [12, 12], [16, 10], [10, 18], [20, 20], [28, 24], [40, 36]]


def build(backbone="DARKNET53", classes=2, chip=32, bands=3, network=None, normalization=None, **args):
    spec = registry.get_spec("YOLOV3")
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes + 1, chip_size=chip,
                       arguments={**spec.arguments, **args}, pretrained=False, log=lambda m: None, network=network,
                       normalization=normalization)
    return spec.build(ctx)


def trained_looking(module, obj_bias=1.0):
    """BatchNorm statistics that are not the identity, and outputs confident enough to detect."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        for i in arcgis_yolov3.OUTPUTS:
            bias = module.module_list[i].conv.bias.view(3, -1)
            bias[:, 4] = obj_bias
            bias[:, 5:] = 0.0
    return module.eval()


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda p: p.stem)
@pytest.mark.heavy
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(classes=recorded["classes"], chip=recorded["chip_size"]).module
    assert isinstance(module, arcgis_yolov3.ArcgisYolov3)
    assert [[k, list(v.shape)] for k, v in module.state_dict().items()] == recorded["state_dict"]


def test_layouts_were_recorded_for_two_class_counts():
    assert {json.loads(p.read_text())["classes"] for p in LAYOUTS} >= {2, 5}


@pytest.mark.heavy
def test_the_body_is_darknet53_with_timms_weights_and_any_band_count():
    import timm

    built = build(bands=4)
    module = built.module
    assert {id(p) for p in built.encoder_parameters} == {id(p) for p in module.module_list[:11].parameters()}
    assert module.state_dict()["module_list.0.conv.weight"].shape == (32, 4, 3, 3)
    darknet = timm.create_model("darknet53", features_only=True, in_chans=4)
    module.load_body(darknet)
    assert torch.equal(module.module_list[0].conv.weight, darknet.stem_conv1.conv.weight)
    assert torch.equal(module.module_list[10].module_list[3][1].batch_norm.running_var,
                       darknet.stages_4.blocks[3].conv2.bn.running_var)
    with pytest.raises(ValueError, match="Darknet-53"):
        module.load_body(timm.create_model("resnet18", features_only=True, in_chans=4))


@pytest.mark.heavy
def test_other_backbones_and_old_packages_keep_our_yolov3():
    assert isinstance(build("RESNET18").module, YOLOv3)
    assert isinstance(build(network=OWN_NETWORK).module, YOLOv3)
    assert detection.yolov3_emd({}, "resnet18")["Network"] == OWN_NETWORK
    emd = detection.yolov3_emd({"anchors": ANCHORS, "n_bands": 3}, "darknet53")
    assert emd["Network"] == ARCGIS_LEARN and emd["ModelConfiguration"] == "_yolov3_inference"
    assert list(emd["ModelParameters"]) == ["anchors", "n_bands", "backbone", "backend"]  # arcgis.learn's order
    with pytest.raises(InputError, match="darknet53"):
        build("RESNET18", network=ARCGIS_LEARN)
    args = dict(registry.get_spec("YOLOV3").arguments)  # fine-tuning a DARKNET53 package of our old layout
    spec = registry.get_spec("YOLOV3")
    spec.build(BuildContext(backbone="DARKNET53", in_channels=3, num_classes=3, chip_size=32, arguments=args,
                            pretrained=False, log=lambda m: None, network=OWN_NETWORK))
    assert detection.yolov3_emd(args, "darknet53")["Network"] == OWN_NETWORK  # the layout built is recorded


@pytest.mark.heavy
def test_anchors_keep_their_order_in_arcgis_learns_layout():
    shuffled = ANCHORS[::-1]
    args = {"anchors": shuffled}
    module = build(**args).module
    assert module.anchor_wh.tolist() == shuffled  # anchor k on level k // 3, as arcgis.learn's ANCH_MASK
    assert build("RESNET18", anchors=shuffled).module.anchor_wh.tolist() == ANCHORS  # ours: smallest first


@pytest.mark.heavy
def test_rgb_reaches_the_network_as_pixels_over_255():
    """arcgis.learn removes its normalisation for YOLOv3: the same weights see our ImageNet-normalised
    chip exactly as arcgis.learn's network sees pixels / 255; multispectral input passes as it is."""
    rgb = build(normalization="imagenet").module.eval()
    plain = build(normalization="band_stats").module.eval()
    plain.load_state_dict(rgb.state_dict())
    pixels = torch.randint(0, 256, (1, 3, 32, 32)).float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = rgb._raw((pixels / 255 - mean) / std)
        theirs = plain._raw(pixels / 255)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-4)
    assert build().module.in_scale.flatten().tolist() == pytest.approx(IMAGENET_STD)  # 3 bands, not said: RGB


@pytest.mark.heavy
def test_boxes_are_decoded_and_scaled_as_pro_draws_them():
    """Outputs of zero with biases: every cell predicts its anchor at its centre, score = objectness x
    class; Pro maps boxes to the chip through (chip - 1) and clips them."""
    module = build(classes=2, chip=64, anchors=ANCHORS).module.eval()
    with torch.no_grad():
        for i in arcgis_yolov3.OUTPUTS:
            conv = module.module_list[i].conv
            conv.weight.zero_()
            conv.bias.view(3, -1).copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, -9.0, 1.0]))  # class 2
    spec = registry.get_spec("YOLOV3")
    det = spec.predict(module, torch.zeros(1, 3, 64, 64), threshold=0.5, nms_overlap=0.99)[0]
    score = 1 / (1 + np.exp(-2.0)) / (1 + np.exp(-1.0))
    assert det["scores"].numpy() == pytest.approx(np.full(len(det["scores"]), score), abs=1e-6)
    assert set(det["labels"].tolist()) == {2}
    # the stride-32 level's first anchor (index 6) at cell (0, 0): centre 16, 20 x 20 px
    x0, y0, x1, y1 = 16 - 10, 16 - 10, 16 + 10, 16 + 10
    expected = [v * 64 / 63 for v in (x0, y0, x1, y1)]
    assert any(np.allclose(b, expected, atol=1e-4) for b in det["boxes"].numpy())
    assert float(det["boxes"].min()) >= 0 and float(det["boxes"].max()) <= 64
    none = spec.predict(module, torch.zeros(1, 3, 64, 64), threshold=0.7, nms_overlap=0.1)[0]
    assert len(none["scores"]) == 0  # the tool's threshold applies inside, as in Pro
    fewer = spec.predict(module, torch.zeros(1, 3, 64, 64), threshold=0.5, nms_overlap=0.1)[0]
    assert 0 < len(fewer["scores"]) < len(det["scores"])  # and its NMS overlap


@pytest.mark.trains
@pytest.mark.heavy
def test_a_training_step_lowers_the_loss():
    torch.manual_seed(0)
    module = build(chip=32, anchors=ANCHORS).module.train()
    images = torch.randn(2, 3, 32, 32)
    target = {"boxes": torch.tensor([[4.0, 5.0, 20.0, 18.0]]), "labels": torch.tensor([1])}
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    losses = []
    for _ in range(4):
        loss = sum(module(images, [target, target]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], losses


def _arcgis_emd(path: Path, module, bands=3):
    """A package as arcgis.learn writes it (no Engine block), with ``module``'s weights."""
    torch.save(module.state_dict() if isinstance(module, torch.nn.Module) else {}, path / "m.pth")
    emd = {"Framework": "arcgis.learn.models._inferencing", "ModelConfiguration": "_yolov3_inference",
           "ModelType": "ObjectDetection", "ExtractBands": list(range(bands)), "ModelName": "YOLOv3",
           "ModelParameters": {"anchors": getattr(module, "anchor_wh", torch.tensor(ANCHORS)).tolist(),
                               "n_bands": bands, "backbone": "DarkNet53", "backend": "pytorch"},
           "Classes": [{"Value": 7, "Name": "Pine"}, {"Value": 3, "Name": "Oak"}], "ImageHeight": 32,
           "ImageWidth": 32, "ModelFile": "m.pth"}
    (path / "m.emd").write_text(json.dumps(emd))
    return str(path / "m.emd")


@pytest.mark.heavy
def test_a_package_of_arcgis_learns_layout_loads_in_detect_objects(tmp_path):
    module = trained_looking(build(anchors=ANCHORS[::-1]).module)
    loaded = load_model(_arcgis_emd(tmp_path, module), "detect_objects")
    assert isinstance(loaded.module, arcgis_yolov3.ArcgisYolov3) and loaded.spec.keyword == "YOLOV3"
    assert loaded.module.anchor_wh.tolist() == ANCHORS[::-1]  # the emd's order, as arcgis.learn reads them
    assert [c.value for c in loaded.classes] == [7, 3]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = loaded.module(x)[0], module(x)[0]
    assert len(ours["scores"]) and torch.equal(ours["boxes"], theirs["boxes"])


def test_other_arcgis_backbones_are_refused_by_name(tmp_path):
    emd = _arcgis_emd(tmp_path, None)  # refused before any weights are read
    data = json.loads(Path(emd).read_text())
    data["ModelParameters"]["backbone"] = "resnet50"
    Path(emd).write_text(json.dumps(data))
    with pytest.raises(InputError, match="arcgis.learn's own") as e:
        load_model(emd, "detect_objects")
    assert "YOLOv3" in e.value.message


def _voc(tmp_path, bands=3, tile=32):
    if bands == 3:
        raster, _ = dh.raster(tmp_path)
    else:  # 4-band UInt16: multispectral (NormalizationStats)
        raster = h.write_raster(tmp_path / "ms.tif", h.random_image(4, dh.SIZE, dh.SIZE, dtype="uint16", seed=3,
                                                                     low=200, high=3000))
    return dh.export(raster, tmp_path / f"voc{bands}", "PASCAL_VOC_rectangles", tile=tile)  # Oak=3, Pine=7


def _package(tmp_path, folder, module, backbone="darknet53", chip=32, bands=3):
    args = {"anchors": module.anchor_wh.tolist(), "n_bands": bands}
    record = make_record(folder, name="yolo", model_type="YOLOV3", backbone=backbone,
                         backbone_keyword=backbone.upper(), arguments=args, chip_size=chip)
    return write_model_package(record, module.state_dict(), tmp_path / "yolo", log=lambda m: None)


@pytest.mark.heavy
def test_our_package_takes_arcgis_learns_keys_and_loads_back(tmp_path):
    module = trained_looking(build(anchors=ANCHORS).module)
    paths = _package(tmp_path, _voc(tmp_path), module)
    emd = json.loads(Path(paths.emd).read_text())
    assert emd["Framework"] == "arcgis.learn.models._inferencing" and emd["ModelConfiguration"] == "_yolov3_inference"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectDetector.py"
    assert emd["ModelName"] == "YOLOv3" and emd["ModelParameters"] == {
        "anchors": ANCHORS, "n_bands": 3, "backbone": "darknet53", "backend": "pytorch"}
    assert emd["Engine"]["network"] == ARCGIS_LEARN and "NormalizationStats" not in emd
    with zipfile.ZipFile(paths.dlpk) as z:
        assert not [n for n in z.namelist() if n.endswith(".py")]  # no inference code shipped
        assert list(torch.load(z.open("yolo.pth"), weights_only=True)) == list(module.state_dict())
    loaded = load_model(paths.dlpk, "detect_objects")
    assert isinstance(loaded.module, arcgis_yolov3.ArcgisYolov3)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x)[0]["boxes"], module(x)[0]["boxes"])


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path):
    old = build(network=OWN_NETWORK).module
    assert isinstance(old, YOLOv3)
    paths = _package(tmp_path, _voc(tmp_path), old)
    as_written_before(paths.emd, "DeepLearningToolsDetector.py")  # as written before the layout was recorded
    assert isinstance(load_model(paths.emd, "detect_objects").module, YOLOv3)


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
def test_arcgis_learn_builds_the_recorded_layout():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "arcgis_compare.py"), "layout", "--model",
                           "YOLOv3", "--backbone", "darknet53", "--classes", "2", "--chip", "64"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["same_as_ours"] is True


@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("bands", [3, 4])  # 8-bit RGB; 4-band UInt16 (NormalizationStats)
def test_our_package_loads_in_arcgis_learn_and_detects_the_same(tmp_path, bands):
    folder = _voc(tmp_path, bands)
    module = trained_looking(build(bands=bands, anchors=ANCHORS, normalization="imagenet" if bands == 3 else
                                   "band_stats").module)
    paths = _package(tmp_path, folder, module, bands=bands)
    assert_arcgis_learn_loads(paths.dlpk, timeout=900)
    result = arcgis_compare.compare(paths.dlpk, folder, 4)
    assert result["ok"] and result["matched"] > 0, result


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
def test_a_package_arcgis_learn_trained_runs_in_detect_objects(tmp_path):
    raster, _ = dh.raster(tmp_path, size=192)
    rects = [((4.3 + 40 * i % 180, 5.2 + 37 * i % 170, 18.3 + 40 * i % 180, 17.2 + 37 * i % 170), 3 if i % 2 else 7)
             for i in range(12)]
    export = dh.export(raster, tmp_path / "export", "PASCAL_VOC_rectangles", tile=64, labels=dh.labels(rects))
    out = tmp_path / "arcgis_yolov3"
    train_with_arcgis_learn(export, str(out), "--model", "YOLOv3", "--kwarg", "pretrained_backbone=false",
                            "--epochs", "1", "--batch-size", "4")
    emd = json.loads((out / "arcgis_yolov3.emd").read_text())
    assert "Engine" not in emd and emd["ModelParameters"]["backbone"] == "DarkNet53"
    loaded = load_model(str(out / "arcgis_yolov3.dlpk"), "detect_objects")  # weights_only; no package .py run
    assert isinstance(loaded.module, arcgis_yolov3.ArcgisYolov3)
    assert sorted(c.value for c in loaded.classes) == [3, 7] and loaded.chip_size == 64
    assert loaded.module.anchor_wh.tolist() == emd["ModelParameters"]["anchors"]  # k-means of the boxes
    result = arcgis_compare.compare(str(out / "arcgis_yolov3.dlpk"), export, 4)
    assert result["ok"], result
