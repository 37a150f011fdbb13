"""Pixel classification model types: UNET, PSPNET, DEEPLAB (arcgis.learn's UnetClassifier,
PSPNetClassifier, DeepLab), declared in ``SPECS`` for the model registry.

Importing this module is cheap (no torch): the registry and the argument parser read the
specs; the networks are imported when one is built.

ARGUMENTS per model, with arcgis.learn's names. The loss arguments (class_balancing,
focal_loss, ignore_classes, mixup) are applied by the trainer; they are listed here so every
model type declares all it accepts. The loss is (1 - dice_loss_fraction) * cross-entropy (focal
with focal_loss) + dice_loss_fraction * dice (DICE_LOSS_FRACTION by default). Architecture arguments:
- PSPNET: pyramid_sizes ([1, 2, 3, 6]), use_unet (True; ``use_net`` is accepted as an alias,
  None = not given), keep_dilation (False: normal strides; True: a dilated backbone at
  output stride 8, as the original PSPNet), pointrend (only False), vggv2 and unet_aux_loss (only
  False): arcgis.learn's. On ResNets PSPNET is arcgis.learn's own network (arcgis_pspnet.py: output
  stride 8; vggv2, None = not given: True for a new model, False for an emd without it, as
  arcgis.learn; False: its U-Net without the wrapper).
- DEEPLAB: keep_dilation (False: output stride 16; True: output stride 8), pointrend (only False).
  On ResNets DEEPLAB is arcgis.learn's own network (arcgis_deeplab.py: output stride 8; there,
  as in arcgis.learn without pointrend, keep_dilation changes nothing).
"""

from __future__ import annotations

import ast
from typing import Any, Dict, List, Optional

from ..errors import InputError
from ..arguments import argument_bool as _bool
from ..formats import PIXEL, formats_where
from .spec import (ARCGIS_LEARN as ARCGIS_LAYOUT, BUILT_NETWORK, NETWORK_KEY, BuildContext, BuiltModel,
                   ModelSpec, choose_network)

PARAMETER = "ARGUMENTS"
BACKEND = "pytorch"
FORMATS = formats_where(family=PIXEL)  # samples with a class mask

# The backbones on which UNET, DEEPLAB and PSPNET build arcgis.learn's own layout (arcgis_unet.py,
# arcgis_deeplab.py, arcgis_pspnet.py): torchvision's ResNets, as arcgis.learn builds them.
ARCGIS_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCGIS_UNET_BACKBONES = ARCGIS_RESNETS
ARCGIS_DEEPLAB_BACKBONES = ARCGIS_RESNETS
ARCGIS_PSPNET_BACKBONES = ARCGIS_RESNETS

# The loss mixes cross-entropy (or focal) with dice by default: (1 - f) * CE + f * dice, with
# arcgis.learn's dice_loss_fraction f (whose own default, 0, is CE alone). Measured on held-out
# data (benchmarks/quality_bench.py, benchmarks/README.md), UNET EFFICIENTNET_LITE0 with every
# other default: buildings (rare foreground) IoU 0.009 -> 0.106 from ImageNet weights and
# 0.000 -> 0.161 from random ones (CE alone learned to paint everything background); tree crowns
# (a third of the pixels) 0.624 -> 0.629 and 0.579 -> 0.580.
DICE_LOSS_FRACTION = 0.5

LOSS_ARGUMENTS: Dict[str, Any] = {
    "class_balancing": False,
    "focal_loss": False,
    "dice_loss_fraction": DICE_LOSS_FRACTION,  # 0: cross-entropy (or focal) alone; 1: dice alone
    "dice_loss_average": "macro",  # macro: the mean of each class's dice; micro: all pixels pooled
    "ignore_classes": [],
    "mixup": False,
}


def _sizes(value: Any) -> List[int]:
    try:
        if isinstance(value, str):
            text = value.strip()
            value = ast.literal_eval(text if text.startswith(("[", "(")) else f"[{text}]")
        sizes = [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    except (ValueError, SyntaxError, TypeError):
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise InputError(PARAMETER, f"pyramid_sizes {value!r} is not a list of positive integers such as [1, 2, 3, 6]")
    return sizes


def _no_pointrend(arguments: Dict[str, Any]) -> None:
    if _bool(arguments.get("pointrend", False), "pointrend"):
        raise InputError(PARAMETER, "pointrend is not supported; leave it false")


def psp_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    """PSPNet's architecture arguments, checked; ``use_net`` (when given) decides use_unet."""
    args = {**PSPNET_ARGUMENTS, **(arguments or {})}
    _no_pointrend(args)
    use_unet = args["use_unet"] if args.get("use_net") is None else args["use_net"]
    return {"pyramid_sizes": _sizes(args["pyramid_sizes"]), "use_unet": _bool(use_unet, "use_unet"),
            "keep_dilation": _bool(args["keep_dilation"], "keep_dilation"), "vggv2": None if args["vggv2"] is None else _bool(args["vggv2"], "vggv2"),
            "unet_aux_loss": _bool(args["unet_aux_loss"], "unet_aux_loss")}


def deeplab_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    args = {**DEEPLAB_ARGUMENTS, **(arguments or {})}
    _no_pointrend(args)
    return {"keep_dilation": _bool(args["keep_dilation"], "keep_dilation")}


def _encoder(ctx: BuildContext, output_stride=None):
    from .backbones import create_encoder

    return create_encoder(ctx.backbone, ctx.in_channels, pretrained=ctx.pretrained,
                          weight_init_scheme=ctx.weight_init_scheme, log=ctx.log,
                          output_stride=output_stride, rgb_bands=getattr(ctx, "rgb_bands", None),
                          warn=getattr(ctx, "warn", None))


def _built(module, encoder) -> BuiltModel:
    return BuiltModel(module=module, backbone_name=encoder.name, pretrained_loaded=encoder.pretrained_loaded,
                      encoder_parameters=list(module.encoder.parameters()), pretrained_source=encoder.pretrained_source)


def network_for(spec: ModelSpec, backbone_name: str, network: Optional[str] = None) -> str:
    """Which layout a pixel model is (spec.choose_network on ``spec.arcgis_backbones``)."""
    return choose_network(spec.model_name, spec.arcgis_backbones, backbone_name, network)


def _network(spec: ModelSpec, ctx: BuildContext) -> str:
    """The layout to build, recorded in the run's arguments for the emd (BUILT_NETWORK)."""
    from .backbones import resolve_backbone

    network = network_for(spec, resolve_backbone(ctx.backbone)[0], ctx.network)
    if isinstance(ctx.arguments, dict):
        ctx.arguments[BUILT_NETWORK] = network
    return network


def _built_network(spec: ModelSpec, arguments: Dict[str, Any], backbone_name: str) -> str:
    """The layout the emd records: the one built, else a new model's."""
    return (arguments or {}).get(BUILT_NETWORK) or network_for(spec, backbone_name)


def build_unet(ctx: BuildContext) -> BuiltModel:
    network = _network(UNET, ctx)
    encoder = _encoder(ctx)
    if network == ARCGIS_LAYOUT:
        from . import arcgis_unet

        module = arcgis_unet.build(encoder, ctx.in_channels, ctx.num_classes, ctx.chip_size)
    else:
        from .unet import UNet

        module = UNet(encoder, ctx.in_channels, ctx.num_classes)
    return _built(module, encoder)


def build_pspnet(ctx: BuildContext) -> BuiltModel:
    opts = psp_options(ctx.arguments)
    if _network(PSPNET, ctx) == ARCGIS_LAYOUT:  # its own dilation (output stride 8)
        from . import arcgis_pspnet

        if opts["use_unet"] and opts["unet_aux_loss"]:
            raise InputError(PARAMETER, "unet_aux_loss (arcgis.learn's auxiliary head on the U-Net) is not "
                                        "supported; leave it false")
        # vggv2 not given: True for a new model (PSPNetClassifier's default), False for one rebuilt
        # from an emd that does not say (its from_model's default: packages from before vggv2)
        vggv2 = (ctx.network is None) if opts["vggv2"] is None else opts["vggv2"]
        if isinstance(ctx.arguments, dict):  # the emd records the wrapper built, so the package reloads
            ctx.arguments["vggv2"] = vggv2
        encoder = _encoder(ctx)
        module = arcgis_pspnet.build(encoder, ctx.num_classes, ctx.chip_size, opts["pyramid_sizes"],
                                     opts["use_unet"], vggv2)
        return _built(module, encoder)
    from .psp import PSPNet

    encoder = _encoder(ctx, output_stride=8 if opts["keep_dilation"] else None)
    module = PSPNet(encoder, ctx.in_channels, ctx.num_classes, opts["pyramid_sizes"], opts["use_unet"])
    return _built(module, encoder)


def build_deeplab(ctx: BuildContext) -> BuiltModel:
    opts = deeplab_options(ctx.arguments)
    if _network(DEEPLAB, ctx) == ARCGIS_LAYOUT:  # its own dilation (output stride 8)
        from . import arcgis_deeplab

        encoder = _encoder(ctx)
        return _built(arcgis_deeplab.build(encoder, ctx.num_classes), encoder)
    from .deeplab import DeepLabV3Plus

    encoder = _encoder(ctx, output_stride=8 if opts["keep_dilation"] else 16)
    return _built(DeepLabV3Plus(encoder, ctx.in_channels, ctx.num_classes), encoder)


def _params(backbone_name: str, **extra) -> Dict[str, Any]:
    return {"backbone": backbone_name, "backend": BACKEND, **extra}


def unet_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    # ignore_mapped_class holds class indices in arcgis.learn; our ignore_classes are applied
    # by the trainer and do not change the network, so it stays empty here. NETWORK_KEY: the layout
    # (package/emd.py gives arcgis.learn's layout arcgis.learn's inferencing keys).
    return {"ModelConfiguration": "_unet", "ignore_mapped_class": [], "SupportsVariableTileSize": True,
            "ModelParameters": _params(backbone_name), NETWORK_KEY: _built_network(UNET, arguments, backbone_name)}


def pspnet_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    # ModelParameters in the order of arcgis.learn's PSPNetClassifier._get_emd_params; vggv2 and
    # unet_aux_loss say which wrapper its U-Net has (arcgis_pspnet.py; our own network ignores them).
    opts = psp_options(arguments)
    return {"ModelConfiguration": "_psp",
            "ModelParameters": {"pyramid_sizes": opts["pyramid_sizes"], "use_unet": opts["use_unet"],
                                "pointrend": False, "keep_dilation": opts["keep_dilation"], "vggv2": opts["vggv2"] is not False,
                                "unet_aux_loss": opts["unet_aux_loss"], **_params(backbone_name)},
            "ignore_mapped_class": [], "SupportsVariableTileSize": True,
            NETWORK_KEY: _built_network(PSPNET, arguments, backbone_name)}


def deeplab_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    # Keys and order as arcgis.learn's DeepLab._get_emd_params (ModelParameters: pointrend,
    # keep_dilation, then backbone); keep_dilation only changes our own network.
    opts = deeplab_options(arguments)
    return {"ModelConfiguration": "_deeplab_infrencing",  # sic, as arcgis.learn spells it
            "ModelParameters": {"pointrend": False, "keep_dilation": opts["keep_dilation"], **_params(backbone_name)},
            "ignore_mapped_class": [], "SupportsVariableTileSize": True,
            NETWORK_KEY: _built_network(DEEPLAB, arguments, backbone_name)}


UNET_ARGUMENTS: Dict[str, Any] = dict(LOSS_ARGUMENTS)
PSPNET_ARGUMENTS: Dict[str, Any] = {**LOSS_ARGUMENTS, "pyramid_sizes": [1, 2, 3, 6], "use_unet": True,
                                    "use_net": None, "keep_dilation": False, "pointrend": False,
                                    "vggv2": None, "unet_aux_loss": False}
DEEPLAB_ARGUMENTS: Dict[str, Any] = {**LOSS_ARGUMENTS, "keep_dilation": False, "pointrend": False}

UNET = ModelSpec(keyword="UNET", model_name="UnetClassifier", model_type="ImageClassification", kind="pixel",
                 formats=FORMATS, arguments=UNET_ARGUMENTS, build=build_unet, emd_params=unet_emd,
                 description="U-Net (pixel classification)", order=0, autodl_order=5,
                 arcgis_backbones=ARCGIS_UNET_BACKBONES)
PSPNET = ModelSpec(keyword="PSPNET", model_name="PSPNetClassifier", model_type="ImageClassification", kind="pixel",
                   formats=FORMATS, arguments=PSPNET_ARGUMENTS, build=build_pspnet, emd_params=pspnet_emd,
                   description="Pyramid Scene Parsing Network (pixel classification)", order=1, autodl_order=6,
                   arcgis_backbones=ARCGIS_PSPNET_BACKBONES)
DEEPLAB = ModelSpec(keyword="DEEPLAB", model_name="DeepLab", model_type="ImageClassification", kind="pixel",
                    formats=FORMATS, arguments=DEEPLAB_ARGUMENTS, build=build_deeplab, emd_params=deeplab_emd,
                    description="DeepLabV3 (pixel classification)", order=2, autodl_order=4,
                    arcgis_backbones=ARCGIS_DEEPLAB_BACKBONES)

SPECS = (UNET, PSPNET, DEEPLAB)  # registered by registry.py
