"""Object and instance detection model types: SSD, RETINANET, FASTERRCNN, YOLOV3 (boxes from
PASCAL_VOC_rectangles / KITTI_rectangles exports) and MASKRCNN (instances from RCNN_Masks),
registered in the model registry with arcgis.learn's ModelNames (SingleShotDetector,
RetinaNet, FasterRCNN, YOLOv3, MaskRCNN), declared in ``SPECS``.

Importing this module is cheap (no torch): the registry and the argument parser read the
specs; the networks (ssd.py, retinanet.py, rcnn.py, yolov3.py on det_base.py) are imported
when one is built. Every backbone comes from ``backbones.create_encoder`` (arcpy keywords or
``timm:<name>``, any band count, pretrained weights cached or downloaded on first use).

ARGUMENTS per model, with arcgis.learn's names and defaults:
- SSD: grids ([4]: one 4 x 4 grid of anchors; several grids = several levels), zooms
  ([0.7, 1.0, 1.3]: anchor size as a share of a grid cell), ratios ([[1.0, 1.0], [1.0, 0.5],
  [0.5, 1.0]]: [width, height] multipliers), drop (0.3: dropout in the head), bias (-4.0:
  initial bias of the class scores), focal_loss (false: sigmoid cross-entropy; true: focal
  loss), location_loss_factor (None: box and class losses weigh the same; a number 0..1 =
  the box loss's share). Packages arcgis.learn trained (resnet18..152, SSDVersion 2) rebuild
  in its SingleShotDetector layout (arcgis_ssd.py: grids in the order given, Pro's detections).
- RETINANET: scales ([1, 2^-1/3, 2^-2/3] ≈ [1, 0.8, 0.63]: anchor sizes per FPN level, as a
  share of 4 x the level's stride), ratios ([0.5, 1, 2]: anchor height / width).
- FASTERRCNN and MASKRCNN: torchvision's (arcgis.learn passes them through): rpn_* and box_*
  (see RCNN_ARGUMENTS); MASKRCNN also pointrend (only false). On resnet50/101/152 a new model is
  arcgis.learn's own network (arcgis_rcnn.py; its packages cross to arcgis.learn both ways), and
  packages arcgis.learn trained on resnet18..152 rebuild in it; other backbones are ours (rcnn.py).
- YOLOV3: anchors (None: for a new model, k-means of the training boxes as arcgis.learn
  (train/anchors.py), or where they have fewer than 9 distinct sizes, YOLOv3's 9 COCO anchors,
  defined for 416 px, scaled to the chip size; else 9 [width, height] pairs in pixels),
  n_bands (None: the data's band count; when given it must match the data). On DARKNET53 (arcgis.learn's only YOLOv3 backbone) the network
  is arcgis.learn's YOLOv3 (arcgis_yolov3.py): anchors stay in the order given (anchor k on
  output level k // 3, finest first) and detections are Pro's (its threshold and NMS overlap).

Inference (``predict``): one dict per image with "boxes" (n, 4) xmin, ymin, xmax, ymax in
chip pixels, "scores", "labels" 1..K (and "masks" (n, H, W) probabilities for MASKRCNN):
every detection scoring at least 0.05 after per-class non-maximum suppression (IoU 0.5)
inside the tile, at most 100 per tile; the caller applies its own threshold.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence

from ..errors import InputError
from ..arguments import argument_bool as _bool
from ..formats import DETECTION, formats_where
from .spec import ARCGIS_LEARN, BUILT_NETWORK, NETWORK_KEY, BuildContext, BuiltModel, ModelSpec, choose_network

PARAMETER = "ARGUMENTS"
BACKEND = "pytorch"
BOX_FORMATS = formats_where(family=DETECTION)
INSTANCE_FORMATS = formats_where(label_kind="rcnn")

SCORE_THRESH = 0.05  # detections returned by predict (the caller thresholds further)
NMS_THRESH = 0.5  # per-class non-maximum suppression inside a tile
MAX_DETECTIONS = 100  # per tile

# YOLOv3's anchors (width, height) for a 416 px input (Redmon & Farhadi; arcgis.learn's default).
YOLO_ANCHORS_416 = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
                    [373, 326]]

SSD_ARGUMENTS: Dict[str, Any] = {
    "grids": [4],
    "zooms": [0.7, 1.0, 1.3],
    "ratios": [[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]],
    "drop": 0.3,
    "bias": -4.0,
    "focal_loss": False,
    "location_loss_factor": None,
}
# Backbones (emd names) on which RETINANET builds arcgis.learn's RetinaNet layout (arcgis_retinanet.py).
ARCGIS_RETINANET_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# Backbones (emd names) on which SSD rebuilds arcgis.learn's SingleShotDetector (arcgis_ssd.py).
ARCGIS_SSD_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# and those on which a new SSD gets it: none. Trained alike (our trainer, same export, epochs and
# seeds, random ResNet-18 weights), arcgis.learn's reached about half our validation AP (issue 15);
# ARCGIS_SSD_BACKBONES here makes new models load in arcgis.learn (their emd is its save()'s).
ARCGIS_SSD_NEW: Sequence[str] = ()
RETINANET_ARGUMENTS: Dict[str, Any] = {
    "scales": [1.0, 2 ** (-1 / 3), 2 ** (-2 / 3)],
    "ratios": [0.5, 1.0, 2.0],
}
# torchvision's FasterRCNN / MaskRCNN keyword arguments and defaults.
RCNN_ARGUMENTS: Dict[str, Any] = {
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_test": 1000,
    "rpn_nms_thresh": 0.7,
    "rpn_fg_iou_thresh": 0.7,
    "rpn_bg_iou_thresh": 0.3,
    "rpn_batch_size_per_image": 256,
    "rpn_positive_fraction": 0.5,
    "box_score_thresh": SCORE_THRESH,
    "box_nms_thresh": NMS_THRESH,
    "box_detections_per_img": MAX_DETECTIONS,
    "box_fg_iou_thresh": 0.5,
    "box_bg_iou_thresh": 0.5,
    "box_batch_size_per_image": 512,
    "box_positive_fraction": 0.25,
}
MASKRCNN_ARGUMENTS: Dict[str, Any] = {**RCNN_ARGUMENTS, "pointrend": False}
# Backbones (emd names) on which FASTERRCNN / MASKRCNN rebuild arcgis.learn's layout (arcgis_rcnn.py),
# and those on which a new model gets it: arcgis.learn's resnet18/34 networks have no FPN (one
# stride-32 map, 32 px anchors), weaker on small objects than ours, which new models keep there.
ARCGIS_RCNN_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCGIS_RCNN_NEW = ("resnet50", "resnet101", "resnet152")
# The configuration class a FasterRCNN package of arcgis.learn's layout names for Pro's ModelExtension path.
FASTERRCNN_CONFIGURATION = "DLToolsFasterRCNN"
YOLOV3_ARGUMENTS: Dict[str, Any] = {"anchors": None, "n_bands": None}
# Backbones (emd names) on which YOLOV3 builds arcgis.learn's YOLOv3 layout (arcgis_yolov3.py): its only one.
ARCGIS_YOLOV3_BACKBONES = ("darknet53",)

_FRACTIONS = ("rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction",
              "box_score_thresh", "box_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh",
              "box_positive_fraction")


# ---- checking arguments -------------------------------------------------------------------------

def _listed(value: Any) -> List[Any]:
    if isinstance(value, str):
        import ast

        text = value.strip()
        try:
            value = ast.literal_eval(text if text.startswith(("[", "(")) else f"[{text}]")
        except (ValueError, SyntaxError):
            return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _numbers(value: Any, name: str, example: str, integer: bool = False) -> List[float]:
    try:
        out = [float(v) for v in _listed(value)]
    except (TypeError, ValueError):
        out = []
    if not out or any(not math.isfinite(v) or v <= 0 for v in out) or \
            (integer and any(v != int(v) for v in out)):
        kind = "positive whole numbers" if integer else "positive numbers"
        raise InputError(PARAMETER, f"{name} {value!r} is not a list of {kind} such as {example}")
    return [int(v) for v in out] if integer else out


def _pairs(value: Any, name: str, example: str) -> List[List[float]]:
    """A list of [a, b] pairs (a flat list of an even count of numbers is read as pairs)."""
    items = _listed(value)
    if items and all(not isinstance(v, (list, tuple)) for v in items) and len(items) % 2 == 0:
        items = [items[i:i + 2] for i in range(0, len(items), 2)]
    if items and all(isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(p, (list, tuple)) for p in v)
                     for v in items):  # YOLO's nesting per output level: [[[w, h] x 3] x 3]
        items = [p for level in items for p in level]
    try:
        pairs = [[float(a), float(b)] for a, b in items]
    except (TypeError, ValueError):
        pairs = []
    if not pairs or any(not (math.isfinite(v) and v > 0) for p in pairs for v in p):
        raise InputError(PARAMETER, f"{name} {value!r} is not a list of [a, b] pairs of positive numbers such as "
                                   f"{example}")
    return pairs


def ssd_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    args = {**SSD_ARGUMENTS, **(arguments or {})}
    drop = float(args["drop"])
    if not 0 <= drop < 1:
        raise InputError(PARAMETER, f"drop {args['drop']!r} must be a dropout probability from 0 to less than 1")
    factor = args.get("location_loss_factor")
    if factor is not None:
        try:
            factor = float(factor)
        except (TypeError, ValueError):
            factor = -1.0
        if not 0 < factor < 1:
            raise InputError(PARAMETER, f"location_loss_factor {args['location_loss_factor']!r} must be a number "
                                       "between 0 and 1 (the box loss's share of the loss), or left out")
    return {"grids": _numbers(args["grids"], "grids", "[4] or [4, 2, 1]", integer=True),
            "zooms": _numbers(args["zooms"], "zooms", "[0.7, 1.0, 1.3]"),
            "ratios": _pairs(args["ratios"], "ratios", "[[1.0, 1.0], [1.0, 0.5], [0.5, 1.0]]"),
            "drop": drop, "bias": float(args["bias"]), "focal_loss": _bool(args["focal_loss"], "focal_loss"),
            "location_loss_factor": factor}


def retinanet_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    args = {**RETINANET_ARGUMENTS, **(arguments or {})}
    return {"scales": _numbers(args["scales"], "scales", "[1, 0.8, 0.63]"),
            "ratios": _numbers(args["ratios"], "ratios", "[0.5, 1, 2]")}


def rcnn_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    args = {**RCNN_ARGUMENTS, **(arguments or {})}
    out: Dict[str, Any] = {}
    for name, default in RCNN_ARGUMENTS.items():
        value = args[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if name in _FRACTIONS:
            if not 0 <= number <= 1:
                raise InputError(PARAMETER, f"{name} {value!r} must be a number from 0 to 1")
            out[name] = number
        else:
            if not (math.isfinite(number) and number >= 1 and number == int(number)):
                raise InputError(PARAMETER, f"{name} {value!r} must be a whole number of at least 1")
            out[name] = int(number)
    if out["rpn_bg_iou_thresh"] > out["rpn_fg_iou_thresh"] or out["box_bg_iou_thresh"] > out["box_fg_iou_thresh"]:
        raise InputError(PARAMETER, "the background IoU thresholds (rpn_bg_iou_thresh, box_bg_iou_thresh) must not "
                                   "exceed the foreground ones (rpn_fg_iou_thresh, box_fg_iou_thresh)")
    return out


def maskrcnn_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    args = {**MASKRCNN_ARGUMENTS, **(arguments or {})}
    if _bool(args.get("pointrend", False), "pointrend"):
        raise InputError(PARAMETER, "pointrend is not supported; leave it false")
    return rcnn_options(args)


def yolo_options(arguments: Dict[str, Any], chip_size: int, in_channels: int = None,
                 keep_order: bool = False) -> Dict[str, Any]:
    """``keep_order``: the anchors in the order given (arcgis.learn's layout: anchor k on output
    level k // 3, finest first, whatever its size); else smallest first."""
    args = {**YOLOV3_ARGUMENTS, **(arguments or {})}
    if args.get("anchors") in (None, "", "None"):
        scale = float(chip_size) / 416.0
        anchors = [[round(w * scale, 2), round(h * scale, 2)] for w, h in YOLO_ANCHORS_416]
    else:
        anchors = _pairs(args["anchors"], "anchors", "[[10, 13], [16, 30], …] (9 [width, height] pairs in pixels)")
        if len(anchors) != 9:
            raise InputError(PARAMETER, f"anchors has {len(anchors)} [width, height] pairs; YOLOv3 takes 9 (3 per "
                                       "output level, smallest first)")
    if not keep_order:
        anchors = sorted(anchors, key=lambda p: p[0] * p[1])
    n_bands = args.get("n_bands")
    if n_bands not in (None, "", "None"):
        try:
            n_bands = int(n_bands)
        except (TypeError, ValueError):
            n_bands = -1
        if n_bands < 1:
            raise InputError(PARAMETER, f"n_bands {args['n_bands']!r} must be a whole number of bands")
        if in_channels is not None and n_bands != int(in_channels):
            raise InputError(PARAMETER, f"n_bands is {n_bands}, and the training data has {in_channels} band(s); "
                                       "leave n_bands out (it follows the data)")
    else:
        n_bands = in_channels
    return {"anchors": anchors, "n_bands": n_bands}


def _no_focal(ctx: BuildContext, keyword: str) -> None:
    if _bool(ctx.arguments.get("focal_loss", False), "focal_loss"):
        extra = " (RetinaNet always trains with focal loss)" if keyword == "RETINANET" else ""
        raise InputError(PARAMETER, f"focal_loss applies to SSD, not {keyword}{extra}; leave it out")


# ---- builders ---------------------------------------------------------------------------------

def _encoder(ctx: BuildContext):
    from .backbones import create_encoder

    return create_encoder(ctx.backbone, ctx.in_channels, pretrained=ctx.pretrained,
                          weight_init_scheme=ctx.weight_init_scheme, log=ctx.log,
                          rgb_bands=getattr(ctx, "rgb_bands", None), warn=getattr(ctx, "warn", None))


def _built(module, encoder) -> BuiltModel:
    return BuiltModel(module=module, backbone_name=encoder.name, pretrained_loaded=encoder.pretrained_loaded,
                      encoder_parameters=list(encoder.model.parameters()), pretrained_source=encoder.pretrained_source)


def ssd_network(backbone_name: str, network=None) -> str:
    """Which SSD a model is (spec.choose_network): a new one arcgis.learn's on ARCGIS_SSD_NEW."""
    return choose_network("SingleShotDetector", ARCGIS_SSD_BACKBONES, backbone_name, network,
                          new_backbones=ARCGIS_SSD_NEW)


def build_ssd(ctx: BuildContext) -> BuiltModel:
    """Our SSD (ssd.py) for new models (ARCGIS_SSD_NEW) and the packages written before;
    arcgis.learn's (arcgis_ssd.py, SSDVersion 2) for the packages arcgis.learn trained and ours
    fine-tuned from them (PRETRAINED_MODEL)."""
    from .backbones import resolve_backbone
    from .ssd import SSD

    network = ssd_network(resolve_backbone(ctx.backbone)[0], ctx.network)
    emd = ctx.emd or {}
    if network == ARCGIS_LEARN and emd and "Engine" not in emd:
        _ssd_version_2(emd)
    arguments = dict(ctx.arguments)
    for key in ("Grids", "Zooms", "Ratios"):  # arcgis.learn's SSD emd keeps them beside ModelParameters
        if key in emd and key.lower() not in (emd.get("ModelParameters") or {}):
            arguments[key.lower()] = emd[key]
    opts = ssd_options(arguments)
    if isinstance(ctx.arguments, dict):
        ctx.arguments[BUILT_NETWORK] = network  # the emd records the layout built
    encoder = _encoder(ctx)
    if network == ARCGIS_LEARN:
        from . import arcgis_ssd

        return _built(arcgis_ssd.build(encoder, ctx.num_classes, ctx.chip_size, **opts), encoder)
    return _built(SSD(encoder, ctx.num_classes, ctx.chip_size, **opts), encoder)


def _ssd_version_2(emd: Dict[str, Any]) -> None:
    """arcgis.learn <= 1.6.2 wrote SSDVersion 1 (another head; no SSDVersion key reads as 1, as in
    its from_model): refused before its weights fail to load."""
    version = emd.get("SSDVersion", 1)
    if str(version) != "2":
        raise InputError("IN_MODEL_DEFINITION", f"this SingleShotDetector has SSDVersion {version} (arcgis.learn "
                                                "1.6.2 or earlier), whose network is not rebuilt here; packages "
                                                "with SSDVersion 2 (arcgis.learn 1.7 and later) load")


def arcgis_layout(model_name: str, backbones: Sequence[str], backbone_name: str, network=None) -> str:
    """Which network a model is (spec.choose_network): arcgis.learn's layout on ``backbones``."""
    return choose_network(model_name, backbones, backbone_name, network)


def build_retinanet(ctx: BuildContext) -> BuiltModel:
    from .backbones import resolve_backbone

    _no_focal(ctx, "RETINANET")
    opts = retinanet_options(ctx.arguments)
    network = arcgis_layout("RetinaNet", ARCGIS_RETINANET_BACKBONES, resolve_backbone(ctx.backbone)[0], ctx.network)
    if isinstance(ctx.arguments, dict):
        ctx.arguments[BUILT_NETWORK] = network  # the emd records the layout built (PRETRAINED_MODEL's)
    encoder = _encoder(ctx)
    if network == ARCGIS_LEARN:
        from . import arcgis_retinanet

        return _built(arcgis_retinanet.build(encoder, ctx.num_classes, **opts), encoder)
    from .retinanet import RetinaNetDetector

    return _built(RetinaNetDetector(encoder, ctx.num_classes, **opts), encoder)


def rcnn_network(model_name: str, backbone_name: str, network=None) -> str:
    """Which Faster/Mask R-CNN a model is (spec.choose_network): arcgis.learn's layout (arcgis_rcnn.py)
    on ARCGIS_RCNN_BACKBONES, a new model's on ARCGIS_RCNN_NEW; else ours (rcnn.py)."""
    return choose_network(model_name, ARCGIS_RCNN_BACKBONES, backbone_name, network, new_backbones=ARCGIS_RCNN_NEW)


def _build_rcnn(ctx: BuildContext, model_name: str, masks: bool, opts: Dict[str, Any]) -> BuiltModel:
    from .backbones import resolve_backbone

    backbone_name = resolve_backbone(ctx.backbone)[0]
    network = rcnn_network(model_name, backbone_name, ctx.network)
    if isinstance(ctx.arguments, dict):  # the emd records the layout built (PRETRAINED_MODEL's may differ
        ctx.arguments[BUILT_NETWORK] = network  # from a new model's), as yolov3 records its anchors
    encoder = _encoder(ctx)
    if network == ARCGIS_LEARN:
        from . import arcgis_rcnn

        return _built(arcgis_rcnn.build(encoder, backbone_name, ctx.num_classes, ctx.chip_size, masks=masks, **opts),
                      encoder)
    from .rcnn import RCNNDetector

    return _built(RCNNDetector(encoder, ctx.num_classes, masks=masks, **opts), encoder)


def build_fasterrcnn(ctx: BuildContext) -> BuiltModel:
    _no_focal(ctx, "FASTERRCNN")
    return _build_rcnn(ctx, "FasterRCNN", False, rcnn_options(ctx.arguments))


def build_maskrcnn(ctx: BuildContext) -> BuiltModel:
    _no_focal(ctx, "MASKRCNN")
    return _build_rcnn(ctx, "MaskRCNN", True, maskrcnn_options(ctx.arguments))


def build_yolov3(ctx: BuildContext) -> BuiltModel:
    from .backbones import resolve_backbone

    _no_focal(ctx, "YOLOV3")
    network = arcgis_layout("YOLOv3", ARCGIS_YOLOV3_BACKBONES, resolve_backbone(ctx.backbone)[0], ctx.network)
    opts = yolo_options(ctx.arguments, ctx.chip_size, ctx.in_channels, keep_order=network == ARCGIS_LEARN)
    # The resolved anchors (pixels) and band count go back into the run's arguments, so the
    # emd's ModelParameters record exactly what was built (arcgis.learn writes both), and the
    # layout built (PRETRAINED_MODEL's, which may differ from a new model's).
    if isinstance(ctx.arguments, dict):
        ctx.arguments["anchors"] = opts["anchors"]
        ctx.arguments["n_bands"] = opts["n_bands"]
        ctx.arguments[BUILT_NETWORK] = network
    encoder = _encoder(ctx)
    if network == ARCGIS_LEARN:
        from . import arcgis_yolov3

        rgb = ctx.normalization == "imagenet" or (ctx.normalization is None and ctx.in_channels == 3)
        module = arcgis_yolov3.build(encoder, ctx.in_channels, ctx.num_classes, opts["anchors"], imagenet_input=rgb)
        return BuiltModel(module=module, backbone_name=encoder.name, pretrained_loaded=encoder.pretrained_loaded,
                          encoder_parameters=module.body_parameters(), pretrained_source=encoder.pretrained_source)
    from .yolov3 import YOLOv3

    return _built(YOLOv3(encoder, ctx.num_classes, opts["anchors"]), encoder)


def predict(module, x) -> List[Dict[str, Any]]:
    """Detections of a normalised batch x (N, C, H, W); see the module doc."""
    import torch

    with torch.no_grad():
        return module(x)


def predict_as_pro(module, x, threshold=None, nms_overlap=None) -> List[Dict[str, Any]]:
    """``predict``; a network in arcgis.learn's layout whose detect takes the tool's threshold and
    NMS overlap (RetinaNet) applies them as ArcGIS Pro does for its packages."""
    import torch

    with torch.no_grad():
        if getattr(module, "takes_thresholds", False):
            return module.detect(x, threshold=threshold, nms_overlap=nms_overlap)
        return module(x)


# ---- emd keys ---------------------------------------------------------------------------------

def _params(backbone_name: str, **extra) -> Dict[str, Any]:
    return {"backbone": backbone_name, "backend": BACKEND, **extra}


def ssd_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    opts = ssd_options(arguments)
    network = arguments.get(BUILT_NETWORK) or ssd_network(backbone_name)
    # Grids/Zooms/Ratios/SSDVersion and a top-level backbone as arcgis.learn's save() writes them
    # (its from_model reads them there); ours also keeps every option in ModelParameters, which
    # arcgis.learn's ModelParameters lack (Engine.arguments records them for its layout).
    params = _params(backbone_name) if network == ARCGIS_LEARN else _params(backbone_name, **opts)
    return {"ModelConfiguration": "_DynamicSSD", "backbone": backbone_name, "Grids": opts["grids"],
            "Zooms": opts["zooms"], "Ratios": opts["ratios"], "SSDVersion": 2, "ModelParameters": params,
            NETWORK_KEY: network}


def retinanet_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    opts = retinanet_options(arguments)
    # as arcgis.learn's save() writes them: scales and ratios (whole numbers as integers) first
    params = {k: [int(v) if v == int(v) else v for v in opts[k]] for k in ("scales", "ratios")}
    return {"ModelConfiguration": "_RetinaNet_Inference", "ModelParameters": {**params, **_params(backbone_name)},
            NETWORK_KEY: arguments.get(BUILT_NETWORK) or arcgis_layout("RetinaNet", ARCGIS_RETINANET_BACKBONES,
                                                                        backbone_name)}


def fasterrcnn_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    opts = rcnn_options(arguments)
    network = arguments.get(BUILT_NETWORK) or rcnn_network("FasterRCNN", backbone_name)
    # arcgis.learn's FasterRCNN is a ModelExtension: Kwargs holds the torchvision keyword
    # arguments (DatasetType is written by the package writer). In its layout the package ships
    # our configuration class (package/arcgis_configurations/) as ModelConfiguration.py, which
    # Pro's _model_extension_inferencing imports. from_model passes ModelParameters and Kwargs
    # both as keyword arguments, so in arcgis.learn's layout the options are in Kwargs alone.
    params = _params(backbone_name) if network == ARCGIS_LEARN else _params(backbone_name, **opts)
    emd = {"ModelConfiguration": "_model_extension_inferencing", "Kwargs": dict(opts), "ModelParameters": params,
           NETWORK_KEY: network}
    if network == ARCGIS_LEARN and str(backbone_name).lower() in ARCGIS_RCNN_BACKBONES:  # what the class builds
        emd.update(ModelConfigurationFile="ModelConfiguration.py", ModelFileConfigurationClass=FASTERRCNN_CONFIGURATION)
    return emd


def maskrcnn_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    opts = maskrcnn_options(arguments)
    network = arguments.get(BUILT_NETWORK) or rcnn_network("MaskRCNN", backbone_name)
    # as FasterRCNN: from_model passes ModelParameters and MaskRCNNkwargs both as keyword arguments
    params = _params(backbone_name, pointrend=False, **({} if network == ARCGIS_LEARN else opts))
    return {"ModelConfiguration": "_maskrcnn_inferencing", "MaskRCNNkwargs": dict(opts),
            "SupportsVariableTileSize": True, "ModelParameters": params, NETWORK_KEY: network}


def yolov3_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    args = {**YOLOV3_ARGUMENTS, **(arguments or {})}
    anchors = args.get("anchors")
    if anchors not in (None, "", "None"):
        anchors = _pairs(anchors, "anchors", "9 [width, height] pairs")
    n_bands = args.get("n_bands")
    # in arcgis.learn's order: anchors and n_bands, then backbone and backend
    return {"ModelConfiguration": "_yolov3_inference",
            "ModelParameters": {"anchors": anchors, "n_bands": None if n_bands in (None, "", "None") else int(n_bands),
                                **_params(backbone_name)},
            NETWORK_KEY: arguments.get(BUILT_NETWORK) or arcgis_layout("YOLOv3", ARCGIS_YOLOV3_BACKBONES,
                                                                        backbone_name)}


def _spec(keyword: str, model_name: str, kind: str, formats: Sequence[str], arguments: Dict[str, Any], build,
          emd_params, default_backbone: str, description: str, order: int, autodl_order=None, **extra) -> ModelSpec:
    model_type = "InstanceDetection" if kind == "instance" else "ObjectDetection"
    extra.setdefault("predict", predict)
    return ModelSpec(keyword=keyword, model_name=model_name, model_type=model_type, kind=kind, formats=tuple(formats),
                     arguments=arguments, build=build, emd_params=emd_params, default_backbone=default_backbone,
                     description=description, order=order, autodl_order=autodl_order, **extra)


SSD = _spec("SSD", "SingleShotDetector", "detection", BOX_FORMATS, SSD_ARGUMENTS, build_ssd, ssd_emd, "RESNET34",
            "Single Shot Detector (object detection)", order=3, autodl_order=0,
            arcgis_backbones=ARCGIS_SSD_BACKBONES, arcgis_new_backbones=tuple(ARCGIS_SSD_NEW),
            predict=predict_as_pro)
RETINANET = _spec("RETINANET", "RetinaNet", "detection", BOX_FORMATS, RETINANET_ARGUMENTS, build_retinanet,
                  retinanet_emd, "RESNET50", "RetinaNet (object detection)", order=4, autodl_order=1,
                  arcgis_backbones=ARCGIS_RETINANET_BACKBONES, predict=predict_as_pro)
FASTERRCNN = _spec("FASTERRCNN", "FasterRCNN", "detection", BOX_FORMATS, RCNN_ARGUMENTS, build_fasterrcnn,
                   fasterrcnn_emd, "RESNET50", "Faster R-CNN (object detection)", order=5, autodl_order=2,
                   arcgis_backbones=ARCGIS_RCNN_BACKBONES, arcgis_new_backbones=ARCGIS_RCNN_NEW)
MASKRCNN = _spec("MASKRCNN", "MaskRCNN", "instance", INSTANCE_FORMATS, MASKRCNN_ARGUMENTS, build_maskrcnn,
                 maskrcnn_emd, "RESNET50", "Mask R-CNN (instance segmentation)", order=6,
                 arcgis_backbones=ARCGIS_RCNN_BACKBONES, arcgis_new_backbones=ARCGIS_RCNN_NEW)
YOLOV3 = _spec("YOLOV3", "YOLOv3", "detection", BOX_FORMATS, YOLOV3_ARGUMENTS, build_yolov3, yolov3_emd, "DARKNET53",
               "YOLOv3 (object detection)", order=7, autodl_order=3, arcgis_backbones=ARCGIS_YOLOV3_BACKBONES,
               predict=predict_as_pro, data_anchors=len(YOLO_ANCHORS_416))

SPECS = (SSD, RETINANET, FASTERRCNN, MASKRCNN, YOLOV3)  # registered by registry.py
