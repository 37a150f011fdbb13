"""Object (tile) classification model type: FEATURE_CLASSIFIER (arcgis.learn's
FeatureClassifier), declared in ``SPECS`` for the model registry.

It trains on Labeled_Tiles and Imagenet exports (one class per chip: softmax over the
classes, cross-entropy) and on MultiLabeled_Tiles (any number of classes per chip: one
sigmoid per class, binary cross-entropy, a class is predicted above ``threshold``). The
classes are every class of the export, with no background.

The network: on the torchvision ResNets arcgis.learn offers (RESNET18 … RESNET152) it is
arcgis.learn's own FeatureClassifier layout (``arcgis_classifier.py``: fastai's ResNet body and
head), so packages cross to and from ArcGIS; on other backbones it is ours
(``classifier_net.FeatureClassifierNet``: a timm backbone, arcpy keyword or ``timm:<name>``,
followed by average+max pooling, dropout and a linear layer). Both take any band count and cached
pretrained weights. The emd records which (``NETWORK_KEY``); packages from before it was recorded
have ours. Importing this module is cheap (no torch).

ARGUMENTS, with arcgis.learn's names where it has them. The trainer's loss arguments
(class_balancing, focal_loss, ignore_classes, mixup) are applied by the classification task:
- oversample (False): repeat the chips of rarer classes so every class is seen about as
  often as the most common one (single-label data);
- backend ("pytorch"): the only backend;
- dropout (0.2): dropout before the last layer (arcgis.learn's layout: half of it also before
  the hidden layer, as fastai's ``ps``);
- threshold (0.5): multi-label: the probability above which a class is predicted.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..errors import InputError
from ..arguments import argument_bool as _bool
from ..formats import TILE, formats_where
from .spec import ARCGIS_LEARN, BUILT_NETWORK, NETWORK_KEY, BuildContext, BuiltModel, ModelSpec, choose_network

PARAMETER = "ARGUMENTS"
BACKEND = "pytorch"
FORMATS = formats_where(family=TILE)  # one chip per feature / per tile with labels
MULTI_LABEL_FORMATS = formats_where(multi_label=True)
# The backbones FEATURE_CLASSIFIER builds arcgis.learn's FeatureClassifier layout on (arcgis_classifier.py):
# torchvision's ResNets, which arcgis.learn 2.4.4 builds with fastai's cnn_learner.
ARCGIS_CLASSIFIER_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

FEATURE_CLASSIFIER_ARGUMENTS: Dict[str, Any] = {
    "class_balancing": False,
    "focal_loss": False,
    "ignore_classes": [],
    "mixup": False,
    "oversample": False,
    "backend": BACKEND,
    "dropout": 0.2,
    "threshold": 0.5,
}


def _fraction(value: Any, name: str, low: float, high: float, closed_high: bool) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    ok = low <= f <= high if closed_high else low <= f < high
    if not ok:
        upper = f"{high}" if closed_high else f"below {high}"
        raise InputError(PARAMETER, f"{name} {value!r} must be a number from {low} to {upper}")
    return f


def feature_classifier_options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    """FEATURE_CLASSIFIER's own arguments, checked (InputError("ARGUMENTS", …) when wrong)."""
    args = {**FEATURE_CLASSIFIER_ARGUMENTS, **(arguments or {})}
    backend = str(args.get("backend") or BACKEND).strip().lower()
    if backend != BACKEND:
        raise InputError(PARAMETER, f"backend {args.get('backend')!r} is not supported; this plugin trains with "
                                   f"PyTorch: leave backend out or give 'backend pytorch'")
    return {"oversample": _bool(args["oversample"], "oversample"), "backend": backend,
            "dropout": _fraction(args["dropout"], "dropout", 0.0, 1.0, closed_high=False),
            "threshold": _fraction(args["threshold"], "threshold", 0.0, 1.0, closed_high=True)}


def classifier_network(backbone_name: str, network: Optional[str] = None, given: Optional[str] = None) -> str:
    """Which network a FEATURE_CLASSIFIER is (spec.choose_network): arcgis.learn's FeatureClassifier
    layout on the backbones arcgis.learn builds it on, else ours."""
    return choose_network("FeatureClassifier", ARCGIS_CLASSIFIER_BACKBONES, backbone_name, network, given=given)


def build_feature_classifier(ctx: BuildContext) -> BuiltModel:
    from .backbones import create_encoder, resolve_backbone

    opts = feature_classifier_options(ctx.arguments)
    network = classifier_network(resolve_backbone(ctx.backbone)[0], ctx.network, ctx.backbone)
    if isinstance(ctx.arguments, dict):  # the emd records the layout built: PRETRAINED_MODEL's may
        ctx.arguments[BUILT_NETWORK] = network  # differ from a new model's (an old RESNET package: ours)
    encoder = create_encoder(ctx.backbone, ctx.in_channels, pretrained=ctx.pretrained,
                             weight_init_scheme=ctx.weight_init_scheme, log=ctx.log,
                             rgb_bands=getattr(ctx, "rgb_bands", None), warn=getattr(ctx, "warn", None))
    if network == ARCGIS_LEARN:
        from . import arcgis_classifier

        module = arcgis_classifier.build(encoder, ctx.num_classes, ps=opts["dropout"])
        # its weights hold no multi-label flag (ours in our layout do): a trained emd says it
        module.set_multi_label(ctx.emd is not None and multi_label_of_emd(ctx.emd))
    else:
        from .classifier_net import FeatureClassifierNet

        module = FeatureClassifierNet(encoder, ctx.num_classes, opts["dropout"])
    return BuiltModel(module=module, backbone_name=encoder.name, pretrained_loaded=encoder.pretrained_loaded,
                      encoder_parameters=list(module.encoder.parameters()), pretrained_source=encoder.pretrained_source)


def feature_classifier_emd(arguments: Dict[str, Any], backbone_name: str) -> Dict[str, Any]:
    # FeatureClassifier's data keys (MetaDataMode, CropSizeFixed, BlackenAroundFeature) come
    # from the training data and are added by package/emd.py. arcgis.learn's layout gets the
    # ModelParameters arcgis.learn writes (its from_model passes them to FeatureClassifier());
    # our threshold then stays in Engine.arguments (infer/objects.py reads it there).
    opts = feature_classifier_options(arguments)
    network = (arguments or {}).get(BUILT_NETWORK) or classifier_network(backbone_name)
    if network == ARCGIS_LEARN:
        return {"ModelConfiguration": "_FeatureClassifier", "ExpMap": False,
                "ModelParameters": {"backbone": backbone_name, "backend": BACKEND}, NETWORK_KEY: network}
    return {"ModelConfiguration": "_FeatureClassifier",
            "ModelParameters": {"backbone": backbone_name, "backend": BACKEND, "dropout": opts["dropout"],
                                "threshold": opts["threshold"]}, NETWORK_KEY: network}


def multi_label_of_emd(emd: Dict[str, Any]) -> bool:
    """Whether a trained classifier's emd describes a multi-label model (MultiLabeled_Tiles): what
    arcgis.learn's inference reads (MetaDataMode), or ours (ModelParameters.multi_label)."""
    params = emd.get("ModelParameters") if isinstance(emd.get("ModelParameters"), dict) else {}
    return emd.get("MetaDataMode") in MULTI_LABEL_FORMATS or bool(params.get("multi_label"))


def predict_feature_classifier(module, x):
    """(N, K) class probabilities of a normalised (N, C, H, W) batch: one sigmoid per class
    for a multi-label model, a softmax over the classes otherwise. The caller puts the
    module in eval mode."""
    import torch

    with torch.no_grad():
        logits = module(x).float()
    if bool(getattr(module, "is_multi_label", False)):
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


FEATURE_CLASSIFIER = ModelSpec(
    keyword="FEATURE_CLASSIFIER", model_name="FeatureClassifier", model_type="ObjectClassification",
    kind="classification", formats=FORMATS, arguments=FEATURE_CLASSIFIER_ARGUMENTS,
    build=build_feature_classifier, emd_params=feature_classifier_emd, predict=predict_feature_classifier,
    description="Feature classifier (object classification)", order=8,
    arcgis_backbones=ARCGIS_CLASSIFIER_BACKBONES)

SPECS = (FEATURE_CLASSIFIER,)  # registered by registry.py
