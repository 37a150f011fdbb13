"""SSD packages arcgis.learn trained (SingleShotDetector, SSDVersion 2, on a ResNet) rebuild in its own
layout (issue 15): the state dict arcgis.learn 2.4.4 builds (tests/data/arcgis_layouts/singleshotdetector_*),
its anchors and Pro's per-class post-processing; they run in Detect Objects and fine-tune as
PRETRAINED_MODEL. New SSD models keep our own SSD (ssd.py: about twice arcgis.learn's validation AP
when both trained alike here), and so do the packages written before; detection.ARCGIS_SSD_NEW switches
new models to arcgis.learn's layout, whose packages our trainer writes as arcgis.learn's save() does.

Where the arcgis.learn oracle is installed the round trip runs against arcgis.learn itself
(scripts/make_arcgis_fixtures.py, scripts/arcgis_compare.py); elsewhere only that test is skipped.
"""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import detection_helpers as dh
from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_ssd, detection, registry
from dl_engine.models.spec import ARCGIS_LEARN, OWN_NETWORK, BuildContext
from dl_engine.models.ssd import SSD
from dl_engine.train.pretrained import load_pretrained, pretrained_network
from arcgis_helpers import (arcgis_compare, assert_arcgis_learn_loads, needs_oracle,  # noqa: F401
                            train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("singleshotdetector_*.json"))

SPEC = registry.get_spec("SSD")


def build(backbone="RESNET34", classes=2, chip=64, network=ARCGIS_LEARN, emd=None, **arguments):
    ctx = BuildContext(backbone=backbone, in_channels=3, num_classes=classes + 1, chip_size=chip,
                       arguments={**SPEC.arguments, **arguments}, pretrained=False, log=lambda m: None,
                       network=network, emd=emd)
    return SPEC.build(ctx).module


@pytest.mark.parametrize("layout", [pytest.param(p, marks=pytest.mark.heavy) if "resnet101" in p.stem or
                                    "resnet152" in p.stem else p for p in LAYOUTS], ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(recorded["backbone"].upper(), recorded["classes"], recorded["chip_size"])
    assert isinstance(module, arcgis_ssd.ArcgisSSD)
    assert [[k, list(v.shape)] for k, v in module.state_dict().items()] == recorded["state_dict"]


def test_layouts_were_recorded_for_every_resnet():
    assert {json.loads(p.read_text())["backbone"] for p in LAYOUTS} == set(detection.ARCGIS_SSD_BACKBONES)


def test_fine_grids_cut_the_body_and_match_arcgis_learns_head():
    """Grids [16, 8, 4] on 256 px (a layout recorded by hand with arcgis.learn 2.4.4: 214 tensors): the
    first grid is finer than 8 and far from layer4's 8 cells, so the body stops after layer3; each grid
    is reached by a 3x3 conv of stride 1 (16 from 16) or 2."""
    module = build(chip=256, grids=[16, 8, 4], zooms=[1.0], ratios=[[1.0, 1.0]])
    state = module.state_dict()
    assert len(state) == 214 and not any(k.startswith("0.7.") for k in state)
    assert state["1.sconvs.0.conv.weight"].shape == (256, 256, 3, 3)  # layer3's 256 channels in
    cls, box = module.eval().raw(torch.randn(1, 3, 256, 256))
    assert cls.shape == (1, 16 * 16 + 8 * 8 + 4 * 4, 3) and box.shape == (1, 336, 4)
    assert arcgis_ssd.conv_params(8, 1) == (1, 0, 8) and arcgis_ssd.conv_params(2, 4) == (None, None, None)


def test_anchors_are_arcgis_learns():
    anchors, cells = arcgis_ssd.make_anchors([2, 1], [1.0], [[1.0, 1.0], [1.0, 0.5]])
    assert anchors.shape == (2 * 4 + 2, 4) and cells.shape == (10, 1)
    assert anchors[0].tolist() == [0.25, 0.25, 0.5, 0.5]  # (y, x) centre of the first cell, a cell in size
    assert anchors[1].tolist() == [0.25, 0.25, 0.5, 0.25]  # ratio [1, 0.5]: the second size halved
    assert anchors[2].tolist()[:2] == [0.25, 0.75]  # the next cell along the row
    assert anchors[-1].tolist() == [0.5, 0.5, 1.0, 0.5] and cells[-1].item() == 1.0
    zero = arcgis_ssd.decode(torch.zeros(1, 4), anchors[:1], cells[:1])  # no offset: the anchor's corners
    assert zero.tolist() == [[0.0, 0.0, 0.5, 0.5]]


def test_emd_of_arcgis_learn_rebuilds_its_network():
    emd = {"ModelName": "SingleShotDetector", "backbone": "resnet18", "Grids": [4, 2], "Zooms": [1.0],
           "Ratios": [[1.0, 1.0]], "SSDVersion": 2, "ModelParameters": {"backbone": "resnet18", "backend": "pytorch"},
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "Car"}], "ImageHeight": 64}
    module = registry.build_from_emd(emd)  # no Engine block: arcgis.learn wrote it
    assert isinstance(module, arcgis_ssd.ArcgisSSD) and len(module.anchors) == 16 + 4  # Grids from the top level
    assert module.state_dict()["1.oconvs.1.oconv1.weight"].shape[0] == 2  # background + Car, one anchor
    assert registry.rebuilds_arcgis_network(emd)
    with pytest.raises(InputError, match="SingleShotDetector with the backbone densenet121"):
        registry.build_from_emd({**emd, "ModelParameters": {"backbone": "densenet121"}})


@pytest.mark.heavy
def test_new_models_and_older_packages_keep_our_ssd(monkeypatch):
    assert isinstance(build(network=None), SSD)
    assert isinstance(build(network=OWN_NETWORK), SSD)  # a package written before (Engine.network absent)
    assert SPEC.emd_params(dict(SPEC.arguments), "resnet34")["Network"] == OWN_NETWORK
    monkeypatch.setattr(detection, "ARCGIS_SSD_NEW", detection.ARCGIS_SSD_BACKBONES)  # the switch
    assert isinstance(build(network=None), arcgis_ssd.ArcgisSSD)
    assert isinstance(build("MOBILENET_V3_SMALL", network=None), SSD)  # not a backbone arcgis.learn's SSD has
    emd = SPEC.emd_params(dict(SPEC.arguments), "resnet34")
    # as arcgis.learn's save(): Grids/Zooms/Ratios/SSDVersion beside ModelParameters, which holds no options
    assert emd["Network"] == ARCGIS_LEARN and emd["ModelConfiguration"] == "_DynamicSSD"
    assert emd["SSDVersion"] == 2 and emd["Grids"] == [4] and emd["backbone"] == "resnet34"
    assert emd["ModelParameters"] == {"backbone": "resnet34", "backend": "pytorch"}
    ours = SPEC.emd_params({**SPEC.arguments, "network": OWN_NETWORK}, "mobilenetv3_small_100")
    assert ours["Network"] == OWN_NETWORK and ours["ModelParameters"]["zooms"] == [0.7, 1.0, 1.3]


def test_ssd_version_1_packages_are_refused_by_name():
    emd = {"ModelName": "SingleShotDetector", "backbone": "resnet34", "Grids": [4, 2, 1], "Zooms": [1.0],
           "Ratios": [[1.0, 1.0]], "ModelParameters": {"backbone": "resnet34"}, "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": 1, "Name": "Car"}], "ImageHeight": 64}
    for version in (1, None):  # arcgis.learn <= 1.6.2 wrote SSDVersion 1 or none (its from_model reads 1)
        bad = {**emd, "SSDVersion": version} if version else emd
        with pytest.raises(InputError) as info:
            registry.build_from_emd(bad)
        assert info.value.parameter == "IN_MODEL_DEFINITION"
        assert "SSDVersion 1" in str(info.value) and "SSDVersion 2" in str(info.value)
    assert isinstance(registry.build_from_emd({**emd, "SSDVersion": 2}), arcgis_ssd.ArcgisSSD)


def test_a_one_by_one_grid_trains_on_a_batch_of_one():
    """arcgis.learn's BatchNorm on a 1 x 1 grid fails on one chip (BATCH_SIZE 1, a one-chip training
    set: the trainer keeps that last batch); ours normalises that step with the running statistics."""
    torch.manual_seed(0)
    module = build(classes=1, grids=[4, 2, 1]).train()
    target = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    losses = module(torch.randn(1, 3, 64, 64), target)
    loss = sum(losses.values())
    loss.backward()
    assert math.isfinite(float(loss.detach())) and module._modules["1"].sconvs[3].conv.weight.grad is not None


def test_detect_is_pros():
    torch.manual_seed(0)
    module = build(grids=[4, 2]).eval()
    x = torch.randn(2, 3, 64, 64)
    out = detection.predict_as_pro(module, x, threshold=0.01, nms_overlap=0.2)
    assert len(out) == 2
    for d in out:
        n = len(d["scores"])
        assert n and d["boxes"].shape == (n, 4) and bool((d["scores"] > 0.01).all())
        assert set(d["labels"].tolist()) <= {1, 2} and d["labels"].dtype == torch.int64
        for c in (1, 2):  # NMS per class, on its 50 best
            assert int((d["labels"] == c).sum()) <= arcgis_ssd.TOP_K


@pytest.mark.trains
def test_it_trains_on_an_export(tmp_path):
    from dl_engine.data import DataConfig, prepare_data
    from dl_engine.train.detection_task import collate

    td = prepare_data(DataConfig(dh.squares_export(tmp_path / "voc", cells=2), validation_percentage=0,
                                 augmentation="NONE"))
    batch = collate([td.train_dataset()[i] for i in range(2)])
    torch.manual_seed(1)
    module = build(classes=td.class_map.num_classes - 1, grids=[4, 2]).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = sum(module(batch["image"], batch["targets"]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    none = module(batch["image"], empty)
    assert float(none["loss_classifier"].detach()) > 0 and float(none["loss_box"].detach()) == 0


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
def test_a_package_arcgis_learn_trained_runs_in_detect_objects(tmp_path):
    export = dh.squares_export(tmp_path / "data", cells=4)
    out = tmp_path / "arcgis_ssd"
    train_with_arcgis_learn(export, str(out), "--model", "SingleShotDetector", "--backbone", "resnet34",
                            "--epochs", "1", "--batch-size", "4", "--kwarg", "grids=[4, 2]", "--kwarg",
                            "zooms=[0.7, 1.0, 1.3]", "--kwarg", "ratios=[[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]]")
    dlpk = out / "arcgis_ssd.dlpk"
    emd = json.loads((out / "arcgis_ssd.emd").read_text())
    assert "Engine" not in emd and emd["ModelName"] == "SingleShotDetector" and emd["Grids"] == [4, 2]
    loaded = load_model(str(dlpk), "detect_objects")  # weights_only, the package's .py never run
    assert isinstance(loaded.module, arcgis_ssd.ArcgisSSD)
    result = arcgis_compare.compare(str(dlpk), export, 16)
    assert result["ok"] and result["matched"] == result["detections_arcgis"] > 0, result
    assert pretrained_network(str(dlpk)) == ARCGIS_LEARN  # PRETRAINED_MODEL: its layout, every tensor
    module = build(network=ARCGIS_LEARN, emd=emd)
    lines = []
    load_pretrained(str(dlpk), module, SPEC, "resnet34", SimpleNamespace(normalization=SimpleNamespace(bands_in=3)),
                    lines.append)
    assert "re-initialised" not in lines[-1], lines


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
def test_a_package_our_trainer_wrote_loads_in_arcgis_learn_and_predicts_the_same(tmp_path, monkeypatch):
    """A new SSD in arcgis.learn's layout (ARCGIS_SSD_NEW) on resnet18, trained here (1 epoch of 64 px
    chips), is a SingleShotDetector package: arcgis.learn's from_model loads it (check_model.py) and
    its network and Pro's post-processing give the boxes ours gives."""
    from dl_engine.train import TrainConfig
    from dl_engine.train.run import run_training

    monkeypatch.setattr(detection, "ARCGIS_SSD_NEW", detection.ARCGIS_SSD_BACKBONES)
    export = dh.squares_export(tmp_path / "data", cells=4)
    result = run_training(TrainConfig(in_folder=export, out_folder=str(tmp_path / "ssd"), model_type="SSD",
                                      backbone="RESNET18", batch_size=4, max_epochs=1, learning_rate=1e-3,
                                      validation_percentage=25, num_workers=0,
                                      # bias -1: scores above Pro's 0.05 after one epoch, boxes to compare
                                      arguments="grids [4, 2];bias -1"))
    emd = json.loads(Path(result.emd).read_text())
    assert emd["Engine"]["network"] == ARCGIS_LEARN and emd["Framework"] == "arcgis.learn.models._inferencing"
    assert emd["Grids"] == [4, 2] and emd["SSDVersion"] == 2
    assert emd["ModelParameters"] == {"backbone": "resnet18", "backend": "pytorch"}
    dlpk = str(Path(result.emd).with_suffix(".dlpk"))
    assert_arcgis_learn_loads(dlpk, timeout=600)
    compared = arcgis_compare.compare(dlpk, export, 16)
    assert compared["ok"] and compared["matched"] == compared["detections_arcgis"] > 0, compared
