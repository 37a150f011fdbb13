"""FASTERRCNN and MASKRCNN have arcgis.learn's FasterRCNN / MaskRCNN layout (issue 15): the state
dict arcgis.learn 2.4.4 trains and saves (recorded in tests/data/arcgis_layouts/), the chip resized
inside the network as arcgis.learn does, packages that cross both ways; new models on resnet50..152,
packages written before keep our own network, packages arcgis.learn trained load in Detect Objects.
Our FasterRCNN packages ship our configuration class (dl_engine/package/arcgis_configurations/) as
ModelConfiguration.py, which ArcGIS Pro's ModelExtension path (_model_extension_inferencing) runs.

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

import data_helpers as dh
from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_rcnn, detection, registry
from dl_engine.models.rcnn import RCNNDetector
from dl_engine.models.spec import ARCGIS_LEARN, OWN_NETWORK, BuildContext
from dl_engine.package import write_model_package
from test_package_helpers import make_record
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted(p for p in (ROOT / "tests" / "data" / "arcgis_layouts").glob("*.json")
                 if p.name.startswith(("fasterrcnn_", "maskrcnn_")))
KEYWORDS = {"FasterRCNN": "FASTERRCNN", "MaskRCNN": "MASKRCNN"}
CONFIGURATION = ROOT / "dl_engine" / "package" / "arcgis_configurations" / "faster_rcnn.py"



def build(keyword="FASTERRCNN", backbone="RESNET18", classes=2, chip=32, bands=3, network=ARCGIS_LEARN, **args):
    spec = registry.get_spec(keyword)
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes + 1, chip_size=chip,
                       arguments={**spec.arguments, **args}, pretrained=False, log=lambda m: None, network=network)
    return spec.build(ctx).module


@pytest.mark.parametrize("layout", [pytest.param(p, marks=pytest.mark.heavy) if "resnet101" in p.name else p
                                    for p in LAYOUTS], ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(KEYWORDS[recorded["model"]], recorded["backbone"].upper(), recorded["classes"],
                   recorded["chip_size"])
    assert isinstance(module, arcgis_rcnn.ArcgisRCNN)
    assert [[k, list(v.shape)] for k, v in module.state_dict().items()] == recorded["state_dict"]


def test_layouts_were_recorded_with_and_without_fpn():
    recorded = {(json.loads(p.read_text())["model"], json.loads(p.read_text())["backbone"]) for p in LAYOUTS}
    assert {("FasterRCNN", "resnet18"), ("FasterRCNN", "resnet50")} <= recorded


@pytest.mark.heavy
def test_maskrcnn_is_fasterrcnn_plus_the_mask_head():
    boxes, masks = build("FASTERRCNN", "RESNET18").state_dict(), build("MASKRCNN", "RESNET18").state_dict()
    extra = [k for k in masks if k not in boxes]
    assert extra and all(k.startswith(("roi_heads.mask_head.", "roi_heads.mask_predictor.")) for k in extra)
    assert masks["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 3  # background + 2


def test_new_models_take_the_layout_on_resnet50_and_deeper():
    assert detection.rcnn_network("FasterRCNN", "resnet50") == ARCGIS_LEARN
    assert detection.rcnn_network("FasterRCNN", "resnet18") == OWN_NETWORK  # no FPN in arcgis.learn's
    assert isinstance(build(backbone="RESNET18", network=None), RCNNDetector)
    emd = detection.fasterrcnn_emd({}, "resnet50")
    # from_model passes ModelParameters and Kwargs both as keyword arguments: no option twice
    assert emd["ModelParameters"] == {"backbone": "resnet50", "backend": "pytorch"} and emd["Network"] == ARCGIS_LEARN
    assert emd["Kwargs"]["rpn_nms_thresh"] == 0.7
    mask = detection.maskrcnn_emd({"box_nms_thresh": 0.3}, "resnet101")
    assert mask["ModelParameters"] == {"backbone": "resnet101", "backend": "pytorch", "pointrend": False}
    assert registry.arguments_from_emd(registry.get_spec("MASKRCNN"), mask)["box_nms_thresh"] == 0.3
    with pytest.raises(InputError, match="densenet121"):
        detection.rcnn_network("MaskRCNN", "densenet121", ARCGIS_LEARN)


def test_the_emd_records_the_layout_built_not_a_new_models():
    # PRETRAINED_MODEL builds the package's layout: one of our resnet50 packages from before keeps ours
    spec = registry.get_spec("FASTERRCNN")
    args = dict(spec.arguments)
    spec.build(BuildContext(backbone="RESNET50", in_channels=3, num_classes=3, chip_size=32, arguments=args,
                            pretrained=False, log=lambda m: None, network=OWN_NETWORK))
    emd = spec.emd_params(args, "resnet50")
    assert emd["Network"] == OWN_NETWORK and emd["ModelParameters"]["rpn_nms_thresh"] == 0.7


def test_the_chip_is_resized_inside_and_boxes_come_back_in_chip_pixels():
    module = build(chip=32).eval()
    assert module.transform.min_size == (48.0,) and module.transform.max_size == 64  # 1.5 x, 2 x the chip
    torch.manual_seed(0)
    with torch.no_grad():
        dets = module(torch.randn(2, 3, 32, 32))
    assert len(dets) == 2
    for d in dets:
        assert len(d["boxes"]) and float(d["boxes"].max()) <= 32 and float(d["boxes"].min()) >= 0
        assert float(d["scores"].min()) >= 0.05 and set(d["labels"].tolist()) <= {1, 2}


@pytest.mark.trains
@pytest.mark.parametrize("keyword", ["FASTERRCNN", "MASKRCNN"])
def test_a_training_step_lowers_the_loss(keyword):
    torch.manual_seed(0)
    module = build(keyword, chip=32, rpn_batch_size_per_image=32, box_batch_size_per_image=16).train()
    images = torch.randn(2, 3, 32, 32)
    target = {"boxes": torch.tensor([[4.0, 5.0, 20.0, 18.0]]), "labels": torch.tensor([1])}
    if keyword == "MASKRCNN":
        mask = torch.zeros(1, 32, 32, dtype=torch.uint8)
        mask[0, 5:18, 4:20] = 1
        target["masks"] = mask
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    losses = []
    for _ in range(5):
        loss = sum(module(images, [target, target]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-2:]) < losses[0], losses


def _arcgis_emd(keyword, backbone, path: Path, module):
    """A package as arcgis.learn writes it (no Engine block), with ``module``'s weights."""
    torch.save(module.state_dict(), path / "m.pth")
    emd = {"Framework": "arcgis.learn.models._inferencing", "ModelName": {"FASTERRCNN": "FasterRCNN",
                                                                          "MASKRCNN": "MaskRCNN"}[keyword],
           "ModelType": "InstanceDetection" if keyword == "MASKRCNN" else "ObjectDetection",
           "ModelParameters": {"backbone": backbone, "backend": "pytorch"}, "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": 3, "Name": "Oak"}, {"Value": 7, "Name": "Pine"}], "ImageHeight": 32,
           "ImageWidth": 32, "ModelFile": "m.pth", "Kwargs": {"pretrained_backbone": True}}
    (path / "m.emd").write_text(json.dumps(emd))
    return str(path / "m.emd")


@pytest.mark.heavy
@pytest.mark.parametrize("keyword", ["FASTERRCNN", "MASKRCNN"])
def test_a_package_of_arcgis_learns_layout_loads_in_detect_objects(tmp_path, keyword):
    module = build(keyword, "RESNET18").eval()
    loaded = load_model(_arcgis_emd(keyword, "resnet18", tmp_path, module), "detect_objects")
    assert isinstance(loaded.module, arcgis_rcnn.ArcgisRCNN) and loaded.spec.keyword == keyword
    assert loaded.module.transform.min_size == (48.0,)  # the emd's chip, resized as arcgis.learn does
    theirs = module.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in loaded.module.state_dict().items())


@pytest.mark.heavy
def test_other_arcgis_backbones_are_refused_by_name(tmp_path):
    emd = _arcgis_emd("FASTERRCNN", "resnet18", tmp_path, build())
    data = json.loads(Path(emd).read_text())
    data["ModelParameters"]["backbone"] = "timm:convnext_tiny"
    Path(emd).write_text(json.dumps(data))
    with pytest.raises(InputError, match="arcgis.learn's own") as e:
        load_model(emd, "detect_objects")
    assert "FasterRCNN" in e.value.message


def _voc(tmp_path, fmt="PASCAL_VOC_rectangles", tile=32):
    raster, _ = dh.raster(tmp_path)
    return dh.export(raster, tmp_path / fmt, fmt, tile=tile)  # classes Oak=3, Pine=7


def _package(tmp_path, folder, module, keyword="FASTERRCNN", backbone="resnet50"):
    spec = registry.get_spec(keyword)
    arguments = dict(spec.arguments)
    if isinstance(module, arcgis_rcnn.ArcgisRCNN):  # the layout built, as training records it
        arguments[detection.BUILT_NETWORK] = ARCGIS_LEARN
    record = make_record(folder, name="rcnn", model_type=keyword, backbone=backbone,
                         backbone_keyword=backbone.upper(), arguments=arguments, chip_size=32)
    return write_model_package(record, module.state_dict(), tmp_path / "rcnn", log=lambda m: None)


@pytest.mark.heavy
def test_our_package_takes_arcgis_learns_keys_and_loads_back(tmp_path):
    module = build(backbone="RESNET50").eval()
    paths = _package(tmp_path, _voc(tmp_path), module)
    emd = json.loads(Path(paths.emd).read_text())
    assert emd["Framework"] == "arcgis.learn.models._inferencing"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectDetector.py"
    assert emd["ModelName"] == "FasterRCNN" and emd["ModelParameters"] == {"backbone": "resnet50",
                                                                          "backend": "pytorch"}
    assert emd["Engine"]["network"] == ARCGIS_LEARN
    # Pro's ModelExtension path: the configuration file and class, keyed and ordered as arcgis.learn's save()
    assert emd["ModelConfiguration"] == "_model_extension_inferencing"
    assert emd["ModelConfigurationFile"] == "ModelConfiguration.py"
    assert emd["ModelFileConfigurationClass"] == "DLToolsFasterRCNN" and emd["DatasetType"] == "PASCAL_VOC_rectangles"
    keys = list(emd)
    assert keys[:10] == ["Framework", "ModelType", "InferenceFunction", "ModelConfiguration", "ExtractBands",
                         "Classes", "ModelConfigurationFile", "ModelFileConfigurationClass", "DatasetType", "Kwargs"]
    with zipfile.ZipFile(paths.dlpk) as z:
        assert [n for n in z.namelist() if n.endswith(".py")] == ["ModelConfiguration.py"]
        assert z.read("ModelConfiguration.py").decode() == CONFIGURATION.read_text()
        assert list(torch.load(z.open("rcnn.pth"), weights_only=True)) == list(module.state_dict())
    assert isinstance(load_model(paths.dlpk, "detect_objects").module, arcgis_rcnn.ArcgisRCNN)
    # our loader never runs the package's configuration file
    marker = tmp_path / "ran"
    (Path(paths.folder) / "ModelConfiguration.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    assert isinstance(load_model(paths.emd, "detect_objects").module, arcgis_rcnn.ArcgisRCNN)
    assert not marker.exists()


# ---- the configuration class Pro's ModelExtension path imports (ModelConfiguration.py) -------------

def _configuration_module():
    """The package's ModelConfiguration.py, imported from its file as Pro's from_model does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("DLToolsFasterRCNN", CONFIGURATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(classes=2, chip=32, bands=3):
    """What ModelExtension.from_model hands get_model (the attributes it reads)."""
    from types import SimpleNamespace

    return SimpleNamespace(chip_size=chip, classes=["background"] + [f"c{i}" for i in range(classes)],
                           _is_multispectral=bands != 3, _is_non8bit_rgb=False, _extract_bands=list(range(bands)))


def test_the_configuration_file_imports_torch_and_torchvision_alone():
    import ast

    tree = ast.parse(CONFIGURATION.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"inspect", "numpy", "torch", "torchvision"}, imported
    conf = _configuration_module().DLToolsFasterRCNN()
    assert all(callable(getattr(conf, name)) for name in ("get_model", "on_batch_begin", "transform_input",
                                                          "transform_input_multispectral", "loss", "post_process"))


def test_the_emd_names_the_configuration_class_the_package_ships():
    from dl_engine.package import arcgis_configurations

    emd = detection.fasterrcnn_emd({}, "resnet101")
    assert emd["ModelConfigurationFile"] == "ModelConfiguration.py"
    assert arcgis_configurations.SOURCES[emd["ModelFileConfigurationClass"]] == CONFIGURATION.name
    assert hasattr(_configuration_module(), emd["ModelFileConfigurationClass"])
    # arcgis.learn's layout without FPN (a package fine-tuned from one of arcgis.learn's) ships it too;
    # our own network has no ModelExtension keys
    no_fpn = detection.fasterrcnn_emd({detection.BUILT_NETWORK: ARCGIS_LEARN}, "resnet18")
    assert no_fpn["ModelFileConfigurationClass"] == emd["ModelFileConfigurationClass"]
    assert "ModelConfigurationFile" not in detection.fasterrcnn_emd({}, "resnet34")


FASTERRCNN_LAYOUTS = [p for p in LAYOUTS if p.name.startswith("fasterrcnn_")]


@pytest.mark.parametrize("layout", [pytest.param(p, marks=pytest.mark.heavy) if "resnet101" in p.name else p
                                    for p in FASTERRCNN_LAYOUTS], ids=lambda p: p.stem)
def test_the_configuration_builds_the_recorded_layout(layout):
    recorded = json.loads(layout.read_text())  # arcgis.learn's, which ours equals (test_state_dict_is_arcgis_learns)
    net = _configuration_module().DLToolsFasterRCNN().get_model(_data(recorded["classes"], recorded["chip_size"]),
                                                                recorded["backbone"])
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == recorded["state_dict"]


@pytest.mark.heavy
@pytest.mark.parametrize("backbone", ["RESNET18", "RESNET34", "RESNET50", "RESNET101", "RESNET152"])
def test_the_configuration_builds_our_network_and_detects_the_same(backbone):
    torch.manual_seed(0)
    ours = build(backbone=backbone).eval()
    with torch.no_grad():  # a confident class head, so that there are detections to compare
        ours.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-2.0, 2.0, 0.0]))
    conf = _configuration_module().DLToolsFasterRCNN()
    kwargs = detection.fasterrcnn_emd({}, backbone.lower())["Kwargs"]  # as from_model passes the emd's Kwargs
    net = conf.get_model(_data(), backbone.lower(), pretrained_backbone=False, ArcGISLearnVersion="2.0.1", **kwargs)
    assert [[k, v.shape] for k, v in net.state_dict().items()] == [[k, v.shape] for k, v in ours.state_dict().items()]
    net.load_state_dict(ours.state_dict())
    net.eval()
    # Pro: ImageNet statistics on 0..255, which transform_input undoes; ours: the same on 0..1
    chips = torch.rand(2, 3, 32, 32) * 255
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    pro_normed = (chips - 255 * mean) / (255 * std)
    with torch.no_grad():
        theirs = conf.post_process(net(conf.transform_input(pro_normed, thresh=0.05, nms_overlap=0.5)), 0.5, 0.05, 32,
                                   "cpu")
        mine = ours(pro_normed)
    assert net.roi_heads.score_thresh == 0.05 and net.roi_heads.nms_thresh == 0.5  # restored after post_process
    for (boxes, labels, scores), d in zip(theirs, mine):
        assert len(scores) == len(d["scores"]) > 0
        assert torch.allclose((boxes[:, [1, 0, 3, 2]] + 1) * 16, d["boxes"], atol=1e-3)
        assert torch.equal(labels, d["labels"]) and torch.allclose(scores, d["scores"], atol=1e-5)


def test_the_configuration_takes_normalisation_stats_for_multispectral_data():
    conf = _configuration_module().DLToolsFasterRCNN()
    net = conf.get_model(_data(bands=4), "resnet50", rpn_nms_thresh=0.6, wavelengths=[0.5, 0.6, 0.7, 0.8])
    assert net.rpn.nms_thresh == 0.6  # torchvision's arguments reach it; others are left out
    assert net.transform.image_mean == [0.0] * 4 and net.transform.image_std == [1.0] * 4
    x = torch.randn(1, 4, 32, 32)
    assert torch.equal(conf.transform_input_multispectral(x, thresh=0.3)[0], x[0])  # as normalised by Pro
    # the first convolution stays RGB: ModelExtension adapts it to the bands (_change_tail) before loading
    assert net.backbone.body.conv1.weight.shape[1] == 3


@pytest.mark.trains
def test_the_configuration_trains_as_a_model_extension():
    torch.manual_seed(0)
    conf = _configuration_module().DLToolsFasterRCNN()
    conf.get_model(_data(), "resnet50", rpn_batch_size_per_image=32, box_batch_size_per_image=16)
    boxes = torch.tensor([[[-0.7, -0.75, 0.1, 0.25]], [[-1.0, -1.0, -1.0, -1.0]]])  # fastai's y1, x1, y2, x2
    inputs, _ = conf.on_batch_begin(None, torch.randn(2, 3, 32, 32), [boxes, torch.tensor([[1], [0]])])
    assert inputs[1][0]["boxes"].tolist() == [[4.0, pytest.approx(4.8), 20.0, pytest.approx(17.6)]]
    assert len(inputs[1][1]["boxes"]) == 0  # a padding box is dropped
    loss = conf.loss(conf.model(*inputs))
    assert loss.ndim == 0 and loss > 0


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path):
    old = build(backbone="RESNET50", network=OWN_NETWORK)
    assert isinstance(old, RCNNDetector)
    paths = _package(tmp_path, _voc(tmp_path), old)
    as_written_before(paths.emd)  # as written before the layout was recorded
    assert isinstance(load_model(paths.emd, "detect_objects").module, RCNNDetector)


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
def test_arcgis_learn_builds_the_recorded_layout():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "arcgis_compare.py"), "layout", "--model",
                           "FasterRCNN", "--backbone", "resnet18", "--classes", "2", "--chip", "64"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["same_as_ours"] is True


@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("backbone, bands", [("resnet50", 3), ("resnet50", 4), ("resnet18", 3)])
def test_our_package_loads_in_arcgis_learn_and_detects_the_same(tmp_path, backbone, bands):
    """check_model.py (FasterRCNN.from_model) and Pro's own path: _model_extension_inferencing's
    ChildObjectDetector on the package, which imports its ModelConfiguration.py (our class).
    resnet18: arcgis.learn's layout without FPN (what fine-tuning one of its packages gives)."""
    torch.manual_seed(0)
    module = build(backbone=backbone.upper(), bands=bands)
    with torch.no_grad():  # a confident class head, so that detections pass the threshold
        module.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-2.0, 2.0, 0.0]))
    if bands == 3:
        folder = _voc(tmp_path)
    else:  # multispectral: NormalizationStats in the emd, Pro's transform_input_multispectral
        raster, _ = dh.raster(tmp_path, bands=bands, dtype="uint16", low=200, high=3000)
        folder = dh.export(raster, tmp_path / "ms", "PASCAL_VOC_rectangles", tile=32)
    paths = _package(tmp_path, folder, module, backbone=backbone)
    assert json.loads(Path(paths.emd).read_text())["ModelFileConfigurationClass"] == "DLToolsFasterRCNN"
    assert_arcgis_learn_loads(paths.dlpk, timeout=900)
    result = arcgis_compare.compare(paths.dlpk, folder, 4)
    assert result["arcgis_learn"]["loaded"].startswith("ChildObjectDetector"), result
    assert result["ok"] and result["matched"] > 0, result


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("model, fmt", [("FasterRCNN", "PASCAL_VOC_rectangles"), ("MaskRCNN", "RCNN_Masks")])
def test_a_package_arcgis_learn_trained_runs_in_detect_objects(tmp_path, model, fmt):
    raster, _ = dh.raster(tmp_path, size=192)
    rects = [((4.3 + 40 * i % 180, 5.2 + 37 * i % 170, 18.3 + 40 * i % 180, 17.2 + 37 * i % 170), 3 if i % 2 else 7)
             for i in range(12)]
    export = dh.export(raster, tmp_path / "export", fmt, tile=64, labels=dh.labels(rects))
    out = tmp_path / "arcgis_rcnn"
    train_with_arcgis_learn(export, str(out), "--model", model, "--backbone", "resnet18", "--epochs", "1",
                            "--batch-size", "4")
    dlpk = out / "arcgis_rcnn.dlpk"
    loaded = load_model(str(dlpk), "detect_objects")  # weights_only; the package's .py never run
    assert isinstance(loaded.module, arcgis_rcnn.ArcgisRCNN)
    assert [c.value for c in loaded.classes] == [3, 7] and loaded.chip_size == 64
    result = arcgis_compare.compare(str(dlpk), export, 4)
    assert result["ok"], result
