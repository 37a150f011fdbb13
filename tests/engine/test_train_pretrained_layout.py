"""PRETRAINED_MODEL builds the network in the package's own module layout: a UNET/ResNet package
written before UNET took arcgis.learn's UnetClassifier layout (no Engine.network) fine-tunes with
every tensor loaded, and one in arcgis.learn's layout (ours or arcgis.learn's) does too."""

import json
from types import SimpleNamespace

import pytest
import torch

from dl_engine.models.registry import build_from_emd, get_spec
from dl_engine.models.spec import ARCGIS_LEARN, OWN_NETWORK, BuildContext
from dl_engine.train.pretrained import load_pretrained, pretrained_network


def package(folder, engine):
    emd = {"Framework": "PyTorch", "ModelName": "UnetClassifier", "ModelFile": "m.pth",
           "ModelParameters": {"backbone": "resnet18"}, "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": 1, "Name": "tree", "Color": [0, 200, 0]}], "ImageHeight": 64, "ImageWidth": 64}
    if engine is not None:
        emd["Engine"] = engine
    folder.mkdir()
    torch.save(build_from_emd(emd).state_dict(), folder / "m.pth")
    (folder / "m.emd").write_text(json.dumps(emd))
    return str(folder / "m.emd")


@pytest.mark.parametrize("engine, layout", [
    ({"name": "deeplearningtools", "model_type": "UNET"}, OWN_NETWORK),  # before the layout was recorded
    ({"name": "deeplearningtools", "model_type": "UNET", "network": ARCGIS_LEARN}, ARCGIS_LEARN),
    (None, ARCGIS_LEARN),  # arcgis.learn wrote it
])
@pytest.mark.heavy
def test_a_unet_package_fine_tunes_in_its_own_layout(tmp_path, engine, layout):
    path = package(tmp_path / "pkg", engine)
    assert pretrained_network(path) == layout
    spec = get_spec("UNET")
    built = spec.build(BuildContext(backbone="RESNET18", in_channels=3, num_classes=2, chip_size=64,
                                    arguments=dict(spec.arguments), pretrained=False, log=lambda m: None,
                                    network=pretrained_network(path)))
    lines = []
    load_pretrained(path, built.module, spec, built.backbone_name,
                    SimpleNamespace(normalization=SimpleNamespace(bands_in=3)), lines.append)
    loaded = torch.load(path.replace("m.emd", "m.pth"), weights_only=True)
    assert all(torch.equal(built.module.state_dict()[k], v) for k, v in loaded.items())
    assert "re-initialised" not in lines[-1]


def test_fine_tuning_keeps_the_packages_architecture_arguments():
    """PRETRAINED_MODEL: the anchors (and other architecture arguments) the package records are
    used unless ARGUMENTS gives them, as arcgis.learn's from_model builds the network from them."""
    from dl_engine.arguments import given_names
    from dl_engine.train.pretrained import package_arguments

    spec = get_spec("YOLOV3")
    anchors = [[13, 13], [16, 16], [18, 18], [20, 20], [22, 22], [24, 24], [25, 25], [27, 27], [28, 28]]
    emd = {"ModelName": "YOLOv3", "ModelParameters": {"anchors": anchors, "n_bands": 3, "backbone": "DarkNet53"}}
    assert package_arguments(spec, emd, given_names("")) == {"anchors": anchors, "n_bands": 3}
    assert "anchors" not in package_arguments(spec, emd, given_names("ANCHORS [[1, 1]];batch_size 4"))
    # FasterRCNN keeps torchvision's options in Kwargs beside ModelParameters
    rcnn = get_spec("FASTERRCNN")
    emd = {"ModelName": "FasterRCNN", "ModelParameters": {"backbone": "resnet50"}, "Kwargs": {"rpn_nms_thresh": 0.6}}
    assert package_arguments(rcnn, emd, set()) == {"rpn_nms_thresh": 0.6}
    # a package of another type gives nothing (load_pretrained refuses it by name)
    assert package_arguments(rcnn, {"ModelName": "YOLOv3", "ModelParameters": {"anchors": anchors}}, set()) == {}


@pytest.mark.parametrize("keyword", ["UNET", "PSPNET", "DEEPLAB", "FEATURE_CLASSIFIER"])
@pytest.mark.parametrize("network", [None, OWN_NETWORK, ARCGIS_LEARN])
def test_the_emd_records_the_layout_built(keyword, network):
    """A RESNET package from before arcgis.learn's layouts fine-tunes in ours: the package it writes
    must say so, or it would not load back; a new model on a ResNet is arcgis.learn's."""
    from dl_engine.models.spec import NETWORK_KEY

    spec = get_spec(keyword)
    arguments = dict(spec.arguments)
    spec.build(BuildContext(backbone="RESNET18", in_channels=3, num_classes=3, chip_size=32, arguments=arguments,
                            pretrained=False, log=lambda m: None, network=network))
    assert spec.emd_params(arguments, "resnet18")[NETWORK_KEY] == (network or ARCGIS_LEARN)


@pytest.mark.parametrize("keyword, backbone, words", [
    ("FASTERRCNN", "RESNET34", "BACKBONE_MODEL RESNET50, RESNET101, RESNET152 give arcgis.learn's"),
    ("UNET", "MOBILENET_V2", "BACKBONE_MODEL RESNET18, RESNET34, RESNET50, RESNET101, RESNET152"),
    ("UNET", "RESNET18", None),  # arcgis.learn's network: nothing to say
])
def test_training_says_when_its_package_will_not_load_in_arcgis(keyword, backbone, words):
    from dl_engine.train.run import _say_whether_it_crosses

    spec = get_spec(keyword)
    arguments = dict(spec.arguments)
    built = spec.build(BuildContext(backbone=backbone, in_channels=3, num_classes=2, chip_size=64,
                                    arguments=arguments, pretrained=False, log=lambda m: None))
    lines = []
    _say_whether_it_crosses(spec, built.backbone_name, arguments, lines.append)
    if words is None:
        assert lines == []
    else:
        assert len(lines) == 1 and "will not load its package" in lines[0] and words in lines[0]
