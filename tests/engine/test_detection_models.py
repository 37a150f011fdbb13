"""Detectors (SSD, RETINANET, FASTERRCNN, YOLOV3, MASKRCNN), engine side without the trainer:
the registry entries, their ARGUMENTS, the output contract of ``predict``, networks rebuilt
from emd keys alone, losses that fall on a real export, and the average precision metric."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

import detection_helpers as dh  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.data import DataConfig, prepare_data  # noqa: E402
from dl_engine.models.registry import BuildContext, build_from_emd, get_spec, model_types  # noqa: E402
from dl_engine.models.spec import NETWORK_KEY, OWN_NETWORK  # noqa: E402
from dl_engine.train import schedule  # noqa: E402
from dl_engine.arguments import parse_arguments
from dl_engine.train.arguments import TRAINER_ARGUMENTS  # noqa: E402
from dl_engine.train.detection_metrics import APAccumulator, average_precision, detection_metrics  # noqa: E402
from dl_engine.train.detection_task import DetectionTask  # noqa: E402

DETECTORS = ["SSD", "RETINANET", "FASTERRCNN", "YOLOV3", "MASKRCNN"]
FAST_RCNN = {"rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 100, "rpn_pre_nms_top_n_test": 200,
             "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32, "rpn_batch_size_per_image": 64}


def build(keyword, arguments=None, num_classes=3, chip=64, bands=3, backbone="RESNET18"):
    spec = get_spec(keyword)
    args = {**spec.arguments, **(arguments or {})}
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=num_classes, chip_size=chip,
                       arguments=args, log=lambda m: None)
    return spec, spec.build(ctx), args


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return dh.squares_export(tmp_path_factory.mktemp("voc"), cells=3)


@pytest.fixture(scope="module")
def masks_export(tmp_path_factory):
    return dh.squares_export(tmp_path_factory.mktemp("masks"), fmt="RCNN_Masks", cells=3)


def first_chips(folder, n=4):
    """A batch of ``n`` chips with objects (no augmentation) and the task that collates it."""
    td = prepare_data(DataConfig(folder, validation_percentage=0, augmentation="NONE"))
    ds = td.train_dataset()
    items = [ds[i] for i in range(len(ds))]
    items = [it for it in items if len(it["boxes"])][:n]
    task = DetectionTask(td.class_map, {})
    return task.collate(items), td


# ---- registry ------------------------------------------------------------------------------------

def test_registry_entries():
    names = {"SSD": "SingleShotDetector", "RETINANET": "RetinaNet", "FASTERRCNN": "FasterRCNN", "YOLOV3": "YOLOv3",
             "MASKRCNN": "MaskRCNN"}
    assert set(names) <= set(model_types())
    for keyword, model_name in names.items():
        spec = get_spec(keyword)
        assert spec.model_name == model_name
        assert spec.predict is not None
        if keyword == "MASKRCNN":
            assert (spec.kind, spec.model_type, spec.formats) == ("instance", "InstanceDetection", ("RCNN_Masks",))
        else:
            assert (spec.kind, spec.model_type) == ("detection", "ObjectDetection")
            assert set(spec.formats) == {"PASCAL_VOC_rectangles", "KITTI_rectangles"}
    assert get_spec("SSD").arguments["grids"] == [4]
    assert get_spec("SSD").arguments["zooms"] == [0.7, 1.0, 1.3]
    assert get_spec("SSD").arguments["ratios"] == [[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]]
    assert get_spec("RETINANET").arguments["scales"] == pytest.approx([1, 0.7937, 0.63], abs=1e-3)
    assert get_spec("RETINANET").arguments["ratios"] == [0.5, 1.0, 2.0]
    assert {"anchors", "n_bands"} <= set(get_spec("YOLOV3").arguments)
    assert get_spec("FASTERRCNN").arguments["box_batch_size_per_image"] == 512
    assert get_spec("MASKRCNN").arguments["pointrend"] is False


def test_arguments_parsed_and_unknown_ones_listed():
    spec = get_spec("SSD")
    accepted = {**TRAINER_ARGUMENTS, **spec.arguments}
    args = parse_arguments("grids [4, 2];zooms 1.0, 1.5;ratios [[1, 1], [2, 1]];focal_loss true", accepted, "SSD")
    assert args["grids"] == [4, 2] and args["zooms"] == [1.0, 1.5] and args["focal_loss"] is True
    with pytest.raises(InputError) as e:
        parse_arguments("scales [1, 2]", accepted, "SSD")
    assert e.value.parameter == "ARGUMENTS" and "grids" in e.value.message and "zooms" in e.value.message
    with pytest.raises(InputError) as e:
        parse_arguments("grids [4]", {**TRAINER_ARGUMENTS, **get_spec("RETINANET").arguments}, "RETINANET")
    assert "scales" in e.value.message and "ratios" in e.value.message


@pytest.mark.parametrize("keyword, arguments, words", [
    ("SSD", {"grids": [0]}, "grids"),
    ("SSD", {"ratios": [[1.0, -1.0]]}, "ratios"),
    ("SSD", {"drop": 1.5}, "drop"),
    ("RETINANET", {"scales": ["big"]}, "scales"),
    ("RETINANET", {"focal_loss": True}, "focal_loss"),
    ("FASTERRCNN", {"box_nms_thresh": 2.0}, "box_nms_thresh"),
    ("FASTERRCNN", {"rpn_batch_size_per_image": 0}, "rpn_batch_size_per_image"),
    ("MASKRCNN", {"pointrend": True}, "pointrend"),
    ("YOLOV3", {"anchors": [[10, 13], [16, 30]]}, "9"),
    ("YOLOV3", {"n_bands": 4}, "n_bands"),
])
def test_bad_model_arguments_are_named(keyword, arguments, words):
    with pytest.raises(InputError) as e:
        build(keyword, arguments)
    assert e.value.parameter == "ARGUMENTS" and words in e.value.message


# ---- networks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyword", [pytest.param(k, marks=pytest.mark.heavy) if k == "MASKRCNN" else k
                                     for k in DETECTORS])
def test_predict_contract_and_rebuild_from_emd(keyword):
    """Any band count; predict gives per-chip dicts; the emd keys alone rebuild the same network."""
    arguments = {"SSD": {"grids": [4, 2], "zooms": [1.0, 1.3], "ratios": [[1, 1]]},
                 "RETINANET": {"scales": [1.0, 0.5], "ratios": [1.0]},
                 "YOLOV3": {"anchors": [[6, 6], [8, 12], [12, 8], [14, 14], [16, 24], [24, 16], [28, 28], [40, 30],
                                        [50, 50]]}}.get(keyword, {})
    if "RCNN" in keyword:
        arguments = FAST_RCNN
    torch.manual_seed(0)
    spec, built, args = build(keyword, arguments, bands=4)
    model = built.module.eval()
    x = torch.randn(2, 4, 64, 64)
    out = spec.predict(model, x)
    assert isinstance(out, list) and len(out) == 2
    for det in out:
        n = len(det["scores"])
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,) and det["labels"].dtype == torch.int64
        if n:
            assert det["scores"].min() >= 0.05 and det["labels"].min() >= 1 and det["labels"].max() <= 2
            assert det["boxes"].min() >= 0 and det["boxes"].max() <= 64
            assert bool((det["boxes"][:, 2:] >= det["boxes"][:, :2]).all())
        assert ("masks" in det) == (keyword == "MASKRCNN")
        if keyword == "MASKRCNN":
            assert det["masks"].shape == (n, 64, 64)
    assert built.backbone_name == "resnet18" and built.encoder_parameters

    emd_keys = spec.emd_params(args, built.backbone_name)
    emd = {"ModelName": spec.model_name, "ImageHeight": 64, "ExtractBands": [0, 1, 2, 3],
           "Classes": [{"Value": 3, "Name": "Roof"}, {"Value": 7, "Name": "Pool"}],
           "ModelParameters": {**emd_keys["ModelParameters"], "backbone": "resnet18"},
           "Engine": {"network": emd_keys.get(NETWORK_KEY, OWN_NETWORK)}}  # our package: its layout recorded
    emd.update({k: v for k, v in emd_keys.items() if k not in ("ModelParameters", NETWORK_KEY)})  # SSD's Grids…
    rebuilt = build_from_emd(emd).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    again = spec.predict(rebuilt, x)
    for a, b in zip(out, again):
        assert torch.allclose(a["boxes"], b["boxes"]) and torch.allclose(a["scores"], b["scores"])


def test_emd_keys_per_model():
    ssd = get_spec("SSD").emd_params(dict(get_spec("SSD").arguments), "resnet34")
    assert ssd["ModelConfiguration"] == "_DynamicSSD" and ssd["backbone"] == "resnet34"
    assert ssd["Grids"] == [4] and ssd["Zooms"] == [0.7, 1.0, 1.3] and ssd["SSDVersion"] == 2
    assert ssd["Ratios"] == [[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]]
    retina = get_spec("RETINANET").emd_params(dict(get_spec("RETINANET").arguments), "resnet50")
    assert retina["ModelConfiguration"] == "_RetinaNet_Inference"
    assert retina["ModelParameters"]["scales"] == pytest.approx([1, 2 ** (-1 / 3), 2 ** (-2 / 3)])
    assert retina["ModelParameters"]["ratios"] == [0.5, 1.0, 2.0]
    frcnn = get_spec("FASTERRCNN").emd_params(dict(get_spec("FASTERRCNN").arguments), "resnet50")
    assert frcnn["ModelConfiguration"] == "_model_extension_inferencing"
    assert frcnn["Kwargs"]["box_detections_per_img"] == 100
    mask = get_spec("MASKRCNN").emd_params(dict(get_spec("MASKRCNN").arguments), "resnet50")
    assert mask["ModelConfiguration"] == "_maskrcnn_inferencing" and mask["SupportsVariableTileSize"] is True
    assert mask["ModelParameters"]["pointrend"] is False and mask["MaskRCNNkwargs"]["rpn_nms_thresh"] == 0.7
    # YOLOv3: the build resolves the default anchors for the chip and the band count into the arguments
    spec, built, args = build("YOLOV3", chip=416)
    yolo = spec.emd_params(args, built.backbone_name)
    assert yolo["ModelConfiguration"] == "_yolov3_inference" and yolo["ModelParameters"]["n_bands"] == 3
    assert yolo["ModelParameters"]["anchors"][0] == [10, 13] and len(yolo["ModelParameters"]["anchors"]) == 9
    _, _, args = build("YOLOV3", chip=208)
    assert args["anchors"][-1] == [186.5, 163.0]  # 373 x 326 at 416 px, halved


def test_ssd_anchors_follow_grids_zooms_ratios():
    spec = get_spec("SSD")  # our SSD (other backbones, packages written before); ResNets: test_arcgis_ssd.py
    built = spec.build(BuildContext(backbone="RESNET18", in_channels=3, num_classes=3, chip_size=64,
                                    arguments={**spec.arguments, "grids": [4, 1], "zooms": [1.0],
                                               "ratios": [[1.0, 1.0], [1.0, 0.5]]},
                                    log=lambda m: None, network=OWN_NETWORK))
    anchors = built.module.anchors(64, 64, torch.device("cpu"))
    assert anchors.shape == ((16 + 1) * 2, 4)
    assert anchors[0].tolist() == [0.0, 0.0, 16.0, 16.0]  # first cell, square: one cell
    assert anchors[1].tolist() == [0.0, 4.0, 16.0, 12.0]  # [1, 0.5]: as wide, half as high
    assert anchors[-2].tolist() == [0.0, 0.0, 64.0, 64.0]  # the 1 x 1 grid: the whole chip
    cls, box = built.module._raw(torch.randn(1, 3, 64, 64))
    assert cls.shape == (1, len(anchors), 2) and box.shape == (1, len(anchors), 4)


@pytest.mark.trains
@pytest.mark.parametrize("keyword", DETECTORS)
def test_loss_falls_on_an_export(keyword, voc, masks_export):
    """A few optimiser steps on four chips of a real export (random backbone weights)."""
    batch, td = first_chips(masks_export if keyword == "MASKRCNN" else voc)
    torch.manual_seed(1)
    fast = {**FAST_RCNN, "box_batch_size_per_image": 16} if keyword == "MASKRCNN" else FAST_RCNN
    _, built, _ = build(keyword, fast if "RCNN" in keyword else {}, num_classes=td.class_map.num_classes)
    model = built.module.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.95, 0.99))
    losses = []
    steps = 10
    for step in range(steps):  # the trainer's one-cycle schedule (warm-up from lr / 25)
        schedule.apply(opt, *schedule.one_cycle(step, steps, 1e-3))
        loss = sum(model(batch["image"], batch["targets"]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
    model.eval()  # validation loss in eval mode: no batch-norm statistics change
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    with torch.no_grad():
        valid = model(batch["image"], batch["targets"])
    assert all(math.isfinite(float(v)) for v in valid.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)


@pytest.mark.heavy
def test_negative_chips_train_as_background(voc):
    """A chip without objects is a valid target (every anchor background) and its loss is finite."""
    batch, td = first_chips(voc, n=2)
    for t in batch["targets"]:
        t["boxes"], t["labels"] = torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64)
    for keyword in ("SSD", "YOLOV3", "RETINANET"):
        _, built, _ = build(keyword, num_classes=td.class_map.num_classes)
        losses = built.module.train()(batch["image"], batch["targets"])
        total = sum(losses.values())
        assert math.isfinite(float(total.detach())) and float(total.detach()) > 0
        total.backward()


# ---- average precision ----------------------------------------------------------------------------

def test_average_precision_all_point_interpolation():
    # two objects; detections by score: hit, miss, hit → precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.7]), 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([1, 1]), np.array([0.9, 0.3]), 2) == pytest.approx(1.0)
    assert average_precision(np.zeros(0), np.zeros(0), 3) == 0.0
    assert math.isnan(average_precision(np.zeros(0), np.zeros(0), 0))


def test_detection_metrics_per_class_negatives_and_iou_thresholds():
    names = ["background", "Roof", "Pool"]
    acc = APAccumulator(3)
    task = DetectionTask.__new__(DetectionTask)
    gt = {"boxes": torch.tensor([[10., 10., 30., 30.], [40., 40., 60., 60.]]), "labels": torch.tensor([1, 1])}
    # a perfect Roof, a Roof shifted to IoU 0.6 with its object, and a Pool where there is none
    shifted = [40., 44.6, 60., 64.6]  # 20 x 15.4 overlap of 20 x 20 boxes: IoU 0.626
    det = {"boxes": torch.tensor([[10., 10., 30., 30.], shifted, [0., 0., 5., 5.]]),
           "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 2])}
    task.score(acc, det, gt)
    # a negative chip with one false Roof, scored lowest
    task.score(acc, {"boxes": torch.tensor([[1., 1., 9., 9.]]), "scores": torch.tensor([0.1]),
                     "labels": torch.tensor([1])},
               {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)})
    m = detection_metrics(APAccumulator.merge([acc.state()]), names)
    roof = m["per_class"]["Roof"]
    assert roof["average_precision"] == pytest.approx(1.0) and roof["objects"] == 2 and roof["detections"] == 3
    # IoU thresholds 0.50, 0.55, 0.60 count the shifted box, 0.65 … 0.95 do not (AP 1/2 there)
    assert roof["coco_ap"] == pytest.approx((3 * 1.0 + 7 * 0.5) / 10)
    assert m["per_class"]["Pool"] == {"average_precision": None, "coco_ap": None, "objects": 0, "detections": 1}
    assert m["average_precision"] == pytest.approx(1.0)  # the mean over classes with objects
    assert m["coco_map"] == pytest.approx(roof["coco_ap"])
    # the false Roof on the negative chip outranking a true one lowers AP
    acc2 = APAccumulator(3)
    nothing = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    task.score(acc2, {"boxes": torch.tensor([[1., 1., 9., 9.]]), "scores": torch.tensor([0.95]),
                      "labels": torch.tensor([1])}, nothing)
    task.score(acc2, det, gt)
    assert detection_metrics(acc2.state(), names)["average_precision"] == pytest.approx(2 / 3)


def test_mask_iou_scores_instances():
    acc = APAccumulator(2)
    masks = torch.zeros((1, 16, 16), dtype=torch.uint8)
    masks[0, 2:10, 2:10] = 1
    gt = {"boxes": torch.tensor([[2., 2., 10., 10.]]), "labels": torch.tensor([1]), "masks": masks}
    good = torch.zeros((2, 16, 16))
    good[0, 2:10, 2:10] = 0.9
    good[1, 2:10, 2:4] = 0.9  # right box, mask a quarter of the object
    det = {"boxes": torch.tensor([[2., 2., 10., 10.], [2., 2., 10., 10.]]), "scores": torch.tensor([0.5, 0.9]),
           "labels": torch.tensor([1, 1]), "masks": good}
    DetectionTask.score(acc, det, gt)
    m = detection_metrics(acc.state(), ["NoData", "Roof"])
    assert m["average_precision"] == pytest.approx(0.5)  # the better-scored detection's mask misses
