"""RETINANET on a ResNet has arcgis.learn's RetinaNet layout (issue 15): its state dict is the one
arcgis.learn 2.4.4 builds (recorded in tests/data/arcgis_layouts/retinanet_*), its anchors, box coding
and post-processing are those Pro runs, its packages take arcgis.learn's inferencing keys, packages
written before still load in our old layout, and packages arcgis.learn trained load in Detect Objects
and as PRETRAINED_MODEL.

Where the arcgis.learn oracle is installed (../shared/tools/arcgis-oracle/install.sh), the round
trips run against arcgis.learn itself (scripts/arcgis_compare.py, scripts/make_arcgis_fixtures.py);
elsewhere only those tests are skipped, saying why.
"""

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import detection_helpers as dh
from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_retinanet as ar, detection, registry
from dl_engine.models.retinanet import RetinaNetDetector
from dl_engine.models.spec import ARCGIS_LEARN, OWN_NETWORK, BuildContext
from dl_engine.package import write_model_package
from dl_engine.train.pretrained import load_pretrained, pretrained_network
from test_package_helpers import make_record
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("retinanet_*.json"))

SPEC = registry.get_spec("RETINANET")


def build(backbone="RESNET18", classes=2, chip=64, bands=3, network=None, **arguments):
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes + 1, chip_size=chip,
                       arguments={**SPEC.arguments, **arguments}, pretrained=False, log=lambda m: None,
                       network=network)
    return SPEC.build(ctx).module


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return dh.squares_export(tmp_path_factory.mktemp("retina") / "voc", cells=3)


@pytest.mark.parametrize("layout", [pytest.param(p, marks=pytest.mark.heavy) if "resnet101" in p.stem or
                                    "resnet152" in p.stem else p for p in LAYOUTS], ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(recorded["backbone"].upper(), recorded["classes"], recorded["chip_size"])
    assert isinstance(module, ar.ArcgisRetinaNet)
    assert [[k, list(v.shape)] for k, v in module.state_dict().items()] == recorded["state_dict"]


def test_layouts_were_recorded_for_every_resnet():
    assert {json.loads(p.read_text())["backbone"] for p in LAYOUTS} == set(detection.ARCGIS_RETINANET_BACKBONES)


def test_anchors_are_arcgis_learns():
    """Chip 64 on a ResNet: levels of 8, 4, 2, 1, 1 cells (P3..P7), 9 anchors a cell (774 in all, as
    arcgis.learn's forward gives); (y, x) centres in -1..1, 4 cells x scale x (sqrt(r), 1/sqrt(r))."""
    module = build().eval()
    with torch.no_grad():
        cls, box, sizes = module.raw(torch.randn(1, 3, 64, 64))
    assert sizes == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    anchors = module.anchors(sizes, torch.device("cpu"))
    assert anchors.shape == (774, 4) and cls.shape == (1, 774, 2) and box.shape == (1, 774, 4)
    first = anchors[0].tolist()  # ratio 0.5, scale 1 on the top-left cell of P3
    assert first[:2] == pytest.approx([-0.875, -0.875])
    assert first[2:] == pytest.approx([4 * math.sqrt(0.5) * 2 / 8, 4 * math.sqrt(2) * 2 / 8])
    assert anchors[-1].tolist()[:2] == [0.0, 0.0]  # P7's single cell is the chip's centre


def test_box_coding_is_arcgis_learns():
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.2, -0.3, 0.4, 0.2]])
    boxes = torch.tensor([[0.05, -0.02, 0.6, 0.45], [0.25, -0.25, 0.3, 0.3]])
    decoded = ar.decode(ar.encode(boxes, anchors), anchors)
    assert torch.allclose(decoded[:, :2], boxes[:, :2], atol=1e-6)  # centres come back
    # Pro takes a box's size from the centre outputs (fastai's notebook): anchor x exp(0.1 x (dy, dx))
    acts = torch.tensor([[1.0, -2.0, 3.0, 3.0]])
    assert torch.allclose(ar.decode(acts, anchors[:1])[0, 2:], 0.5 * torch.exp(torch.tensor([0.1, -0.2])))
    px = ar.to_pixels(torch.tensor([[-1.0, -0.5, 0.0, 1.0]]), 64, 128)  # (y0, x0, y1, x1) -> x0, y0, x1, y1
    assert px.tolist() == [[32.0, 0.0, 128.0, 32.0]]
    assert torch.allclose(ar.to_unit(px, 64, 128), torch.tensor([[-1.0, -0.5, 0.0, 1.0]]))


def test_detect_applies_the_tools_threshold_and_overlap_over_all_classes():
    torch.manual_seed(0)
    module = build().eval()
    with torch.no_grad():
        for m in module.modules():  # outputs that score and spread like a trained network's
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 0.05)
    x = torch.randn(2, 3, 64, 64)
    default = detection.predict_as_pro(module, x)
    tool = detection.predict_as_pro(module, x, threshold=0.3, nms_overlap=0.1)
    assert len(tool) == 2 and any(len(d["scores"]) for d in default)
    for d, t in zip(default, tool):
        assert len(d["scores"]) <= module.max_detections and bool((d["scores"] > module.score_thresh).all())
        assert bool((t["scores"] > 0.3).all()) and t["labels"].dtype == torch.int64
        for out in (d, t):
            n = len(out["scores"])
            assert out["boxes"].shape == (n, 4) and bool((out["boxes"] >= 0).all() and (out["boxes"] <= 64).all())
            if n:
                assert out["labels"].min() >= 1 and out["labels"].max() <= 2
        from torchvision.ops import box_iou

        iou = box_iou(t["boxes"], t["boxes"]).fill_diagonal_(0)
        assert len(t["scores"]) == 0 or float(iou.max()) <= 0.1 + 1e-6  # labels aside


@pytest.mark.trains
def test_it_trains_on_an_export(voc):
    """A few steps on chips of a real export; a chip without objects is all background; a batch of
    one chip trains too (1 x 1 levels: the head's batch norm keeps its running statistics there)."""
    from dl_engine.data import DataConfig, prepare_data
    from dl_engine.train.detection_task import collate

    td = prepare_data(DataConfig(voc, validation_percentage=0, augmentation="NONE"))
    batch = collate([td.train_dataset()[i] for i in range(2)])
    torch.manual_seed(1)
    module = build(classes=td.class_map.num_classes - 1).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = sum(module(batch["image"], batch["targets"]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    empty = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}]
    one = module(batch["image"][:1], empty)
    assert float(one["loss_classifier"].detach()) > 0 and float(one["loss_box"].detach()) == 0


def _emd(**engine):
    emd = {"ModelName": "RetinaNet", "ModelParameters": {"scales": [1, 0.5], "ratios": [1], "backbone": "resnet18"},
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "Car"}], "ImageHeight": 64}
    if engine:
        emd["Engine"] = {"name": "deeplearningtools", "model_type": "RETINANET", **engine}
    return emd


@pytest.mark.heavy
def test_the_emd_says_which_network_to_rebuild():
    assert isinstance(registry.build_from_emd(_emd(network=ARCGIS_LEARN)), ar.ArcgisRetinaNet)
    assert isinstance(registry.build_from_emd(_emd(num_classes=2)), RetinaNetDetector)  # ours from before
    rebuilt = registry.build_from_emd(_emd())  # arcgis.learn wrote it
    assert isinstance(rebuilt, ar.ArcgisRetinaNet) and rebuilt.state_dict()["classifier.4.bias"].shape == (2,)
    assert registry.rebuilds_arcgis_network(_emd())
    densenet = {**_emd(), "ModelParameters": {"backbone": "densenet121"}}
    assert not registry.rebuilds_arcgis_network(densenet)
    with pytest.raises(InputError, match="RetinaNet with the backbone densenet121") as e:
        registry.build_from_emd(densenet)
    assert "resnet50" in e.value.message


def test_other_backbones_keep_our_network():
    assert isinstance(build("MOBILENET_V2"), RetinaNetDetector)
    assert SPEC.emd_params({}, "mobilenetv2_100")["Network"] == OWN_NETWORK
    emd = SPEC.emd_params({}, "resnet50")
    assert emd["Network"] == ARCGIS_LEARN and list(emd["ModelParameters"]) == ["scales", "ratios", "backbone",
                                                                                "backend"]
    assert emd["ModelParameters"]["ratios"] == [0.5, 1, 2] and isinstance(emd["ModelParameters"]["ratios"][1], int)


def test_a_package_fine_tuned_from_an_older_one_records_its_layout():
    """PRETRAINED_MODEL of our old layout (resnet18, no Engine.network): the new emd says so too, so
    the package it writes loads back."""
    arguments = dict(SPEC.arguments)
    built = SPEC.build(BuildContext(backbone="RESNET18", in_channels=3, num_classes=3, chip_size=64,
                                    arguments=arguments, pretrained=False, log=lambda m: None, network=OWN_NETWORK))
    assert isinstance(built.module, RetinaNetDetector)
    assert SPEC.emd_params(arguments, "resnet18")["Network"] == OWN_NETWORK


def _package(tmp_path, folder, module, name="retina"):
    record = make_record(folder, name=name, model_type="RETINANET", backbone="resnet18", backbone_keyword="RESNET18",
                         arguments=dict(SPEC.arguments), chip_size=64,
                         metrics={"average_precision": 0.5, "per_class": {}})
    return write_model_package(record, module.state_dict(), tmp_path / name, log=lambda m: None)


def _trained_looking(module):
    with torch.no_grad():  # batch norm statistics and head weights as after training
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        for head in (module.classifier, module.box_regressor):
            head[4].weight.normal_(0, 0.02)
    return module


@pytest.mark.heavy
def test_package_takes_arcgis_learns_keys_and_loads_back(tmp_path, voc):
    torch.manual_seed(0)
    module = _trained_looking(build())
    paths = _package(tmp_path, voc, module)
    emd = json.loads(Path(paths.emd).read_text())
    assert emd["Framework"] == "arcgis.learn.models._inferencing"
    assert emd["ModelConfiguration"] == "_RetinaNet_Inference" and emd["ModelName"] == "RetinaNet"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectDetector.py"
    assert list(emd["ModelParameters"]) == ["scales", "ratios", "backbone", "backend"]
    assert "average_precision_score" in emd and "accuracy" not in emd  # as arcgis.learn 2.4.4's save()
    assert emd["Engine"]["network"] == ARCGIS_LEARN
    with zipfile.ZipFile(paths.dlpk) as z:
        assert not [n for n in z.namelist() if n.endswith(".py")]  # no inference code shipped
        assert set(torch.load(z.open("retina.pth"), weights_only=True)) == set(module.state_dict())
    loaded = load_model(paths.dlpk, "detect_objects")
    assert isinstance(loaded.module, ar.ArcgisRetinaNet)
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(loaded.spec.predict(loaded.module, x, threshold=0.1, nms_overlap=0.1),
                    detection.predict_as_pro(module.eval(), x, threshold=0.1, nms_overlap=0.1)):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path, voc):
    old = build(network=OWN_NETWORK)
    assert isinstance(old, RetinaNetDetector)
    paths = _package(tmp_path, voc, old)  # then made to look like an older package
    as_written_before(paths.emd, "DeepLearningToolsDetector.py")
    loaded = load_model(paths.emd, "detect_objects")
    assert isinstance(loaded.module, RetinaNetDetector)
    assert pretrained_network(paths.emd) == OWN_NETWORK


def test_foreign_packages_of_other_backbones_are_refused(tmp_path):
    emd = {**_emd(), "ModelParameters": {"backbone": "densenet121"}, "Framework": "arcgis.learn.models._inferencing",
           "ModelFile": "m.pth"}
    (tmp_path / "m.emd").write_text(json.dumps(emd))
    with pytest.raises(InputError, match="arcgis.learn's own"):
        load_model(str(tmp_path / "m.emd"), "detect_objects")


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
def test_arcgis_learn_builds_the_recorded_layout():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "arcgis_compare.py"), "layout", "--model",
                           "RetinaNet", "--backbone", "resnet18", "--classes", "2", "--chip", "64"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["same_as_ours"] is True


@pytest.mark.heavy
@needs_oracle
def test_our_package_loads_in_arcgis_learn_and_predicts_the_same(tmp_path, voc):
    torch.manual_seed(0)
    paths = _package(tmp_path, voc, _trained_looking(build()))
    assert_arcgis_learn_loads(paths.dlpk, timeout=600)
    result = arcgis_compare.compare(paths.dlpk, voc, 9)
    assert result["ok"] and result["matched"] == result["detections_arcgis"] > 0, result


def _uint16_export(folder):
    """4-band UInt16 squares: arcgis.learn trains it as multispectral (NormalizationStats)."""
    import rasterio

    import engine_helpers as h

    raster, geoms, values, _ = dh.squares_raster(folder, 0, dh.TILE, 4, bands=4)
    with rasterio.open(raster) as src:
        data = src.read().astype("uint16") * 10 + 100
    path = h.write_raster(Path(folder) / "squares_u16.tif", data)
    out = Path(folder) / "export"
    h.export(path, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values, dh.CLASSES),
             tile_size_x=dh.TILE, tile_size_y=dh.TILE, stride_x=dh.TILE, stride_y=dh.TILE, workers=1,
             output_nofeature_tiles=True)
    return str(out)


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("bands", [3, 4])  # 8-bit RGB; 4-band UInt16 (NormalizationStats from the emd)
def test_a_package_arcgis_learn_trained_runs_in_detect_objects(tmp_path, bands):
    export = dh.squares_export(tmp_path / "data", cells=4) if bands == 3 else _uint16_export(tmp_path / "data")
    out = tmp_path / "arcgis_retina"
    train_with_arcgis_learn(export, str(out), "--model", "RetinaNet", "--backbone", "resnet18", "--epochs",
                            "1", "--batch-size", "4")
    dlpk = out / "arcgis_retina.dlpk"
    emd = json.loads((out / "arcgis_retina.emd").read_text())
    assert "Engine" not in emd and emd["ModelName"] == "RetinaNet" and len(emd["ExtractBands"]) == bands
    loaded = load_model(str(dlpk), "detect_objects")  # weights_only, the package's .py never run
    assert isinstance(loaded.module, ar.ArcgisRetinaNet) and loaded.chip_size == 64
    assert sorted(c.value for c in loaded.classes) == [3, 7]
    result = arcgis_compare.compare(str(dlpk), export, 16)
    assert result["ok"] and result["matched"] == result["detections_arcgis"], result
    # PRETRAINED_MODEL: rebuilt in arcgis.learn's layout, every tensor loaded
    assert pretrained_network(str(dlpk)) == ARCGIS_LEARN
    module = build(bands=bands, network=ARCGIS_LEARN)
    lines = []
    load_pretrained(str(dlpk), module, SPEC, "resnet18",
                    SimpleNamespace(normalization=SimpleNamespace(bands_in=bands)), lines.append)
    assert "re-initialised" not in lines[-1], lines
