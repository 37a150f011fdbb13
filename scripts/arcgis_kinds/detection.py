"""Detectors (FasterRCNN, MaskRCNN; RetinaNet, SingleShotDetector, YOLOv3 as their entries in
``ORACLE_DETECTORS`` are added): the boxes, scores, labels (and instance masks) of the same chips
through Pro's own inference path and through Detect Objects' model loading, normalisation and the
spec's ``predict``.

arcgis.learn's side: ``<ModelName>.from_model(package)``, then what Pro's built-in inference
function runs for that ModelName (``ORACLE_DETECTORS``: its normalisation, its pre-processing
inside the model, its post-processing), one chip at a time; a ModelExtension (FasterRCNN) as Pro
runs it, from the package alone (``PRO_DETECTORS``: its inference class imports the package's
ModelConfiguration.py; no from_model of ours or arcgis.learn's class). Both sides run at the same score
threshold and NMS overlap (``SCORE_THRESH``, ``NMS_OVERLAP``: our predict's contract; Pro's
``threshold`` / ``nms_overlap`` parameters where its function takes them), so that every detection
the network makes is compared, not only the few above Pro's default threshold.

Agreement: per chip, each of arcgis.learn's detections is matched to one of ours with the same
label and IoU >= ``IOU_MATCH``; matched scores must agree within ``SCORE_TOLERANCE``, matched
instance masks (> 0.5) on at least ``MASK_AGREEMENT`` of their pixels. A detection left unmatched
on either side is tolerated only when its score is within ``SCORE_TOLERANCE`` of the threshold
(float noise decides whether it is kept).

Arrays cross between the two Pythons flattened: ``chip`` (M,) chip index, ``boxes`` (M, 4) xmin,
ymin, xmax, ymax in chip pixels, ``scores`` (M,) 0..1, ``labels`` (M,) class indices 1..K, and
``masks`` (M, h, w) probabilities for instance models.
"""
from __future__ import annotations

SCORE_THRESH = 0.05
NMS_OVERLAP = 0.5
IOU_MATCH = 0.99
SCORE_TOLERANCE = 1e-3
MASK_AGREEMENT = 0.99


# ---- arcgis.learn's side (the oracle's Python) ---------------------------------------------------

def _pro_model_extension_detector(package: str, tiles) -> tuple:
    """A ModelExtension package (FasterRCNN) as ArcGIS Pro runs it, from the package alone:
    the .dlpk unpacked, ``_model_extension_inferencing.ChildObjectDetector`` initialised on its
    emd (``ModelExtension.from_model``: the package's ModelConfiguration.py imported, its class's
    get_model, the weights loaded), configured (no padding, one chip a batch, the threshold and
    NMS overlap) and its ``vectorize`` run on each chip. arcpy, absent here, is given the one
    setting initialize reads (processorType "CPU"). Returns (emd, one dict per chip)."""
    import contextlib
    import io
    import json
    import sys
    import tempfile
    import types
    import zipfile
    from pathlib import Path

    import numpy as np

    from . import quiet_arcgis

    quiet_arcgis()  # first: arcgis's own lazy arcpy import refuses a stand-in
    stand_in = "arcpy" not in sys.modules
    if stand_in:
        sys.modules["arcpy"] = types.SimpleNamespace(env=types.SimpleNamespace(processorType="CPU"))
    try:
        from arcgis.learn.models._inferencing import _model_extension_inferencing as mx

        mx.arcpy = sys.modules["arcpy"]
    finally:
        if stand_in:
            del sys.modules["arcpy"]
    emd_path = Path(package)
    with tempfile.TemporaryDirectory(prefix="pro-dlpk-") as unpacked:
        if emd_path.suffix.lower() == ".dlpk":  # Pro unpacks a .dlpk and opens its emd
            with zipfile.ZipFile(package) as z:
                z.extractall(unpacked)
            emd_path = next(Path(unpacked).glob("*.emd"))
        emd = json.loads(emd_path.read_text())
        detector = mx.ChildObjectDetector()
        with contextlib.redirect_stdout(io.StringIO()):
            detector.initialize(str(emd_path), True)  # the weights are in memory once it returns
    detector.getConfiguration(padding=0, threshold=SCORE_THRESH, nms_overlap=NMS_OVERLAP, batch_size=1,
                              exclude_pad_detections="False")
    out = []
    for tile in tiles:
        polygons, scores, labels = detector.vectorize(raster_pixels=np.asarray(tile, np.float32))
        # each polygon: (y1, x1), (y1, x2), (y2, x2), (y2, x1) in chip pixels
        boxes = np.array([[p[0][1], p[0][0], p[2][1], p[2][0]] for p in polygons], np.float64).reshape(-1, 4)
        out.append({"boxes": boxes, "scores": np.asarray(scores, np.float64) / 100.0,
                    "labels": np.asarray(labels).astype(np.int64)})
    return emd, out


def _maskrcnn_detector(model, tiles, emd) -> list:
    """MaskRCNN: Pro's ArcGISInstanceDetector -> _maskrcnn_inferencing: chips / 255 (or
    scale_batch with NormalizationStats), the network normalises and resizes inside;
    predict_mask_rcnn at the threshold (the masks before Pro turns them into contours)."""
    import numpy as np
    import torch
    from arcgis.learn.models._inferencing import _maskrcnn_inferencing as mi
    from arcgis.learn.models._inferencing.util import scale_batch

    net = model.learn.model.eval()
    out = []
    for tile in tiles:
        batch = tile[None].astype(np.float32)
        normed = scale_batch(batch, emd) if "NormalizationStats" in emd else batch / 255
        pred = mi.predict_mask_rcnn(net, normed, torch.device("cpu"), batch.shape[-1], threshold=SCORE_THRESH)[0]
        masks = pred["masks"].numpy()
        out.append({"boxes": pred["boxes"].numpy(), "scores": pred["scores"].numpy(),
                    "labels": pred["labels"].numpy().astype(np.int64),
                    "masks": masks[:, 0] if masks.ndim == 4 else masks})
    return out


def _yolov3_detector(model, tiles, emd) -> list:
    """YOLOv3: Pro's ArcGISObjectDetector -> _yolov3_inference: chips / 255 (NormalizationStats:
    normalize_batch), the network, arcgis.learn's postprocess (``_analyze_pred``) at the threshold
    and NMS overlap, fastai's ImageBBox (drops boxes without area) and back from -1..1 to chip
    pixels as Pro does ((v + 1) / 2 * chip). Pro's own score list is not filtered with the boxes
    (an Esri slip when a box is dropped): the scores here are filtered with them."""
    import numpy as np
    import torch
    from arcgis.learn.models._inferencing.util import normalize_batch

    net = model.learn.model.eval()
    chip = int(emd["ImageHeight"])
    out = []
    for tile in tiles:
        batch = tile[None].astype(np.float32)
        normed = normalize_batch(batch, emd) if "NormalizationStats" in emd else batch / 255.0
        with torch.no_grad():
            pred = net(torch.tensor(normed).float())[0]
        pp = model._analyze_pred(pred=pred, thresh=SCORE_THRESH, nms_overlap=NMS_OVERLAP)
        if pp is None or len(pp[0]) == 0:
            out.append({"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)})
            continue
        bbox, labels, scores = (t.detach().cpu() for t in pp)  # y1, x1, y2, x2 in -1..1
        bbox = bbox.clamp(-1, 1)
        ok = ((bbox[:, 2] - bbox[:, 0] > 0) & (bbox[:, 3] - bbox[:, 1] > 0)).numpy()
        boxes = ((bbox.numpy() + 1) / 2 * chip)[:, [1, 0, 3, 2]]
        out.append({"boxes": boxes[ok], "scores": scores.numpy()[ok], "labels": labels.numpy().astype(np.int64)[ok]})
    return out


def _retinanet_detector(model, tiles, emd) -> list:
    """RetinaNet: Pro's ArcGISObjectDetector -> _RetinaNet_Inference: ImageNet statistics on 0..255
    (NormalizationStats: normalize_batch), the network, ``_analyze_pred`` at the threshold and NMS
    overlap (one label per anchor, NMS over all classes), fastai's ImageBBox (``_reconstruct``),
    then from -1..1 (y1, x1, y2, x2) to chip pixels as Pro does ((v + 1) / 2 * chip)."""
    import numpy as np
    import torch
    from arcgis.learn._utils.pascal_voc_rectangles import _reconstruct
    from arcgis.learn.models._inferencing.util import normalize_batch

    net = model.learn.model.eval()
    chip = int(emd["ImageHeight"])
    size = type("Chip", (), {"size": [chip, chip]})()
    classes = ["background"] + [c["Name"] for c in emd["Classes"]]
    mean, std = 255 * np.array([0.485, 0.456, 0.406], np.float32), 255 * np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    for tile in tiles:
        batch = tile[None].astype(np.float32)
        normed = normalize_batch(batch, emd) if "NormalizationStats" in emd else \
            ((batch.transpose(0, 2, 3, 1) - mean) / std).transpose(0, 3, 1, 2)
        with torch.no_grad():
            clas, bbox = net(torch.tensor(normed).float())
        pp = model._analyze_pred(pred=(clas[0], bbox[0]), thresh=SCORE_THRESH, nms_overlap=NMS_OVERLAP)
        image_bbox = _reconstruct(pp, size, pad_idx=0, classes=classes)
        if image_bbox is None:
            out.append({"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)})
            continue
        boxes, labels = image_bbox.data
        boxes = ((np.asarray(boxes, np.float64) + 1) / 2 * chip)[:, [1, 0, 3, 2]]
        out.append({"boxes": boxes, "scores": np.asarray(image_bbox.scores)[:len(boxes)],
                    "labels": np.asarray(labels).astype(np.int64)})
    return out


# Extra emd keys for arcgis_compare's generic layout (from_model of an emd without weights):
# YOLOv3 takes its anchors from the emd (without them it would compute them from training data).
LAYOUT_EMD = {"YOLOv3": {"ModelParameters": {"anchors": [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119],
                                                         [116, 90], [156, 198], [373, 326]], "n_bands": 3,
                                             "backbone": "DarkNet53"}}}


def _ssd_detector(model, tiles, emd) -> list:
    """SingleShotDetector: Pro's ArcGISObjectDetector -> _DynamicSSD: util.detect_objects_image_space
    (ImageNet statistics on 0..255 or NormalizationStats, the network, get_nms_preds: per class, the
    50 best above the threshold, NMS); boxes come as y1, x1, y2, x2 in chip pixels, scores 0..100."""
    import numpy as np
    import torch
    from arcgis.learn.models._inferencing import util

    net = model.learn.model.eval()
    names = [c["Name"] for c in emd["Classes"]]
    out = []
    for tile in tiles:
        boxes, scores, labels = util.detect_objects_image_space(
            net, tile[None].astype(np.float32), model._anchors, model._grid_sizes, torch.device("cpu"), names,
            NMS_OVERLAP, SCORE_THRESH, emd)
        out.append({"boxes": boxes[:, [1, 0, 3, 2]], "scores": scores / 100.0, "labels": labels.astype(np.int64)})
    return out


# ModelName -> function(package, tiles (N, bands, h, w) raw chips) -> (emd, one dict per chip as
# below): Pro's own inference class run on the package itself (no <ModelName>.from_model).
PRO_DETECTORS = {
    "FasterRCNN": _pro_model_extension_detector,
}

# ModelName -> function(arcgis.learn model, tiles (N, bands, h, w) raw chips, emd) -> one dict per
# chip (boxes xyxy in chip pixels, scores 0..1, labels 1..K[, masks (n, h, w)]) as Pro computes them.
ORACLE_DETECTORS = {
    "MaskRCNN": _maskrcnn_detector,
    "RetinaNet": _retinanet_detector,
    "SingleShotDetector": _ssd_detector,
    "YOLOv3": _yolov3_detector,
}


def _flatten(dets: list) -> dict:
    import numpy as np

    out = {"chip": np.concatenate([np.full(len(d["scores"]), i, np.int64) for i, d in enumerate(dets)] or
                                  [np.zeros(0, np.int64)]),
           "boxes": np.concatenate([np.asarray(d["boxes"], np.float64).reshape(-1, 4) for d in dets]),
           "scores": np.concatenate([np.asarray(d["scores"], np.float64).reshape(-1) for d in dets]),
           "labels": np.concatenate([np.asarray(d["labels"], np.int64).reshape(-1) for d in dets])}
    if dets and "masks" in dets[0]:
        out["masks"] = np.concatenate([np.asarray(d["masks"], np.float32) for d in dets])
    return out


def oracle_predict(package: str, chips: str, out: str) -> dict:
    import numpy as np

    from . import model_name_of, oracle_model

    name = model_name_of(package)
    tiles = np.load(chips).astype(np.float32)
    if name in PRO_DETECTORS:
        emd, dets = PRO_DETECTORS[name](package, tiles)
        np.savez(out, **_flatten(dets))
        return {"loaded": "ChildObjectDetector (_model_extension_inferencing)",
                "backbone": emd["ModelParameters"]["backbone"], "path": PRO_DETECTORS[name].__name__}
    if name not in ORACLE_DETECTORS:
        raise SystemExit(f"no arcgis.learn inference path for {name} in scripts/arcgis_kinds/detection.py; "
                         f"known: {', '.join([*PRO_DETECTORS, *ORACLE_DETECTORS])}")
    model = oracle_model(package)
    emd = model._model_emd
    np.savez(out, **_flatten(ORACLE_DETECTORS[name](model, tiles, emd)))
    return {"loaded": type(model).__name__, "backbone": emd["ModelParameters"]["backbone"],
            "path": ORACLE_DETECTORS[name].__name__}


def _ssd_layout(backbone: str, classes: int, chip: int) -> dict:
    """SingleShotDetector.from_model on an emd with our SSD defaults (Grids [4], Zooms, Ratios,
    SSDVersion 2): its from_emd reads the backbone and these from the emd's top level."""
    import contextlib
    import io
    import json
    import tempfile
    from pathlib import Path

    from arcgis.learn.models import _arcgis_model
    from . import layout_record, quiet_arcgis

    learn = quiet_arcgis()
    _arcgis_model.ArcGISModel.load = lambda self, *a, **k: None  # build only: there are no weights
    tmp = Path(tempfile.mkdtemp(prefix="arcgis-layout-"))
    emd = {"ModelName": "SingleShotDetector", "ModelFile": "none.pth", "ImageHeight": chip, "ImageWidth": chip,
           "ExtractBands": [0, 1, 2], "backbone": backbone, "ModelParameters": {"backbone": backbone},
           "Grids": [4], "Zooms": [0.7, 1.0, 1.3], "Ratios": [[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]], "SSDVersion": 2,
           "Classes": [{"Value": i + 1, "Name": f"c{i + 1}", "Color": [0, 0, 0]} for i in range(classes)]}
    (tmp / "layout.emd").write_text(json.dumps(emd))
    with contextlib.redirect_stdout(io.StringIO()):
        model = learn.SingleShotDetector.from_model(str(tmp / "layout.emd"))
    return layout_record("SingleShotDetector", backbone, classes, chip, model.learn.model.state_dict(),
                         f"SingleShotDetector.from_model(emd of backbone {backbone!r}, Grids [4], Zooms [0.7, 1.0, "
                         f"1.3], Ratios [[1, 1], [1, 0.5], [0.5, 1]], SSDVersion 2, {classes} classes, chip {chip}, "
                         "3 bands; weights not loaded).learn.model.state_dict()")


def oracle_layout(model_name: str, backbone: str, classes: int, chip: int):
    """What arcgis.learn trains and save() writes for FasterRCNN / MaskRCNN (from_model builds
    the ResNet-50 body with BatchNorm, whose num_batches_tracked save() never writes: the
    trained network has torchvision's FrozenBatchNorm2d there); None for the others and for
    resnet101/152 (the generic from_model layout: FrozenBatchNorm2d there either way, and the
    training path would download their weights)."""
    if model_name == "SingleShotDetector":
        return _ssd_layout(backbone, classes, chip)
    if model_name not in ("FasterRCNN", "MaskRCNN") or backbone in ("resnet101", "resnet152"):
        return None
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    import torch
    from . import layout_record, quiet_arcgis

    learn = quiet_arcgis()
    from arcgis.learn._utils.common import get_multispectral_data_params_from_emd
    from arcgis.learn._utils.pascal_voc_rectangles import ObjectDetectionCategoryList
    from arcgis.learn.models._arcgis_model import _EmptyData
    from fastai.vision import ImageList, imagenet_stats

    names = {i + 1: f"c{i + 1}" for i in range(classes)}
    tmp = Path(tempfile.mkdtemp(prefix="arcgis-layout-"))
    if model_name == "FasterRCNN":  # as FasterRCNN.from_model sets up its data
        data = (ImageList([], path=tmp).split_by_idx([])
                .label_const(0, label_cls=ObjectDetectionCategoryList, classes=list(names.values()))
                .transform(([], [])).databunch(device=torch.device("cpu")).normalize(imagenet_stats))
        data.c += 1
        data.classes = ["background"] + list(names.values())
        data.dataset_type = "PASCAL_VOC_rectangles"
    else:
        data = _EmptyData(path=tmp, loss_func=None, c=classes + 1, chip_size=chip)
        data.dataset_type = "RCNN_Masks"
    data.chip_size, data.class_mapping = chip, names
    data.color_mapping = {k: [0, 0, 0] for k in names}
    data._is_empty, data.emd, data.resize_to = True, {}, None
    data = get_multispectral_data_params_from_emd(data, {})
    with contextlib.redirect_stdout(io.StringIO()):
        model = getattr(learn, model_name)(data, backbone=backbone)  # as for training (pretrained backbone)
    return layout_record(model_name, backbone, classes, chip, model.learn.model.state_dict(),
                         f"{model_name}(data, backbone={backbone!r}).learn.model.state_dict() (what save() writes), "
                         f"{classes} classes + background, chip {chip}, 3 bands")


# ---- our side -------------------------------------------------------------------------------------

def our_predict(package: str, tiles) -> dict:
    """Detect Objects' model loading and normalisation, the spec's predict (score >= its threshold,
    per-class NMS), flattened as the oracle's side."""
    import inspect

    import numpy as np
    import torch

    from dl_engine.infer.model import load_model

    model = load_model(package, "detect_objects")
    x = np.stack([model.normalization.normalize(t) for t in tiles])
    # Detect Objects passes its threshold and NMS overlap to a predict that takes them (infer/predictor.py)
    options = {k: v for k, v in (("threshold", SCORE_THRESH), ("nms_overlap", NMS_OVERLAP))
               if k in inspect.signature(model.spec.predict).parameters}
    dets = model.spec.predict(model.module, torch.from_numpy(x), **options)
    keep = [d["scores"] >= SCORE_THRESH for d in dets]
    return _flatten([{k: v[m].numpy() for k, v in d.items()} for d, m in zip(dets, keep)])


def _iou(a, b):
    import numpy as np

    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def agreement(ours: dict, theirs: dict) -> dict:
    import numpy as np

    matched, unmatched_ours, unmatched_theirs, ious, score_diffs, mask_agree = 0, [], [], [], [], []
    chips = sorted(set(ours["chip"].tolist()) | set(theirs["chip"].tolist()))
    for c in chips:
        o, t = np.flatnonzero(ours["chip"] == c), np.flatnonzero(theirs["chip"] == c)
        iou = _iou(theirs["boxes"][t], ours["boxes"][o]) if len(o) and len(t) else np.zeros((len(t), len(o)))
        used = set()
        for i in np.argsort(-theirs["scores"][t], kind="stable"):
            cand = [j for j in range(len(o)) if j not in used and ours["labels"][o[j]] == theirs["labels"][t[i]]
                    and iou[i, j] >= IOU_MATCH]
            if not cand:
                unmatched_theirs.append(float(theirs["scores"][t[i]]))
                continue
            j = max(cand, key=lambda k: (iou[i, k], -abs(ours["scores"][o[k]] - theirs["scores"][t[i]])))
            used.add(j)
            matched += 1
            ious.append(float(iou[i, j]))
            score_diffs.append(float(abs(ours["scores"][o[j]] - theirs["scores"][t[i]])))
            if "masks" in ours and "masks" in theirs:
                a, b = ours["masks"][o[j]] > 0.5, theirs["masks"][t[i]] > 0.5
                mask_agree.append(float((a == b).mean()) if a.shape == b.shape else 0.0)
        unmatched_ours += [float(ours["scores"][o[j]]) for j in range(len(o)) if j not in used]
    near = lambda s: abs(s - SCORE_THRESH) <= SCORE_TOLERANCE  # noqa: E731
    stray = [s for s in unmatched_ours + unmatched_theirs if not near(s)]
    max_diff = max(score_diffs, default=0.0)
    masks_ok = min(mask_agree, default=1.0) >= MASK_AGREEMENT
    return {"detections_ours": int(len(ours["scores"])), "detections_arcgis": int(len(theirs["scores"])),
            "matched": matched, "unmatched_ours": len(unmatched_ours), "unmatched_arcgis": len(unmatched_theirs),
            "unmatched_beyond_threshold_noise": len(stray), "min_iou": min(ious, default=None),
            "max_score_diff": max_diff, "min_mask_agreement": min(mask_agree, default=None),
            "score_thresh": SCORE_THRESH, "nms_overlap": NMS_OVERLAP,
            "ok": not stray and max_diff <= SCORE_TOLERANCE and masks_ok}
