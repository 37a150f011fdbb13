"""What a model type is: ``ModelSpec`` (one per MODEL_TYPE keyword), and what its builder
takes (``BuildContext``) and gives (``BuiltModel``). Standard library only: the family
modules (pixel.py, detection.py, classification.py) declare their specs with these, and
the registry (registry.py) imports those modules, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError

# Where a spec without an ``order`` goes: after the built-in types, in registration order.
LAST = 1_000_000

# Module layouts a trained network can have (the emd's Engine.network; registry.network_of_emd):
# arcgis.learn's own (its packages load in arcgis.learn and theirs here) or this engine's own.
ARCGIS_LEARN = "arcgis.learn"
OWN_NETWORK = "deeplearningtools"
# The emd_params key by which a spec says which layout it built (package/emd.py records it).
NETWORK_KEY = "Network"
# The run's arguments: the layout the builder made, for the spec's emd_params (a PRETRAINED_MODEL's
# layout may differ from a new model's). Not an ARGUMENTS name.
BUILT_NETWORK = "network"


@dataclass
class BuildContext:
    """What a builder needs to make a network."""

    backbone: str  # BACKBONE_MODEL as given: arcpy keyword (RESNET34) or "timm:<name>"
    in_channels: int  # bands the model sees (len(Normalization.extract_bands))
    num_classes: int  # model outputs (ClassMap.num_classes)
    chip_size: int
    arguments: Dict[str, Any]  # the model's arguments, defaults filled in
    pretrained: bool = True  # use cached pretrained backbone weights when there are any
    weight_init_scheme: str = "RANDOM"  # RANDOM, RED_BAND, ALL_RANDOM: first conv for bands beyond RGB
    log: Callable[[str], None] = print
    rgb_bands: Optional[List[int]] = None  # input channels that are red, green, blue (default the first three)
    warn: Optional[Callable[[str], None]] = None  # the one warning when no pretrained weights load (default: log)
    # Which module layout to build: None for a new model (the spec's default); from a trained emd,
    # registry.network_of_emd: OWN_NETWORK or ARCGIS_LEARN.
    network: Optional[str] = None
    # The trained emd a network is rebuilt from (registry.build_from_emd), for what it says beyond the
    # weights (a classifier's MetaDataMode: multi-label); None for a new model.
    emd: Optional[Dict[str, Any]] = None
    # How the input is normalised (data/normalization.py Normalization.mode): "imagenet" (8-bit RGB)
    # or "band_stats"; None: not said (3 bands count as 8-bit RGB). Networks that take other input
    # than ours (arcgis.learn's YOLOv3: RGB / 255) convert from it.
    normalization: Optional[str] = None


@dataclass
class BuiltModel:
    module: Any  # torch.nn.Module: forward(x (N,C,H,W) float) -> logits (N,num_classes,H,W) for pixel models
    backbone_name: str  # resolved backbone name written to the emd (e.g. "resnet34", "timm:convnext_tiny")
    pretrained_loaded: bool  # pretrained backbone weights were found and loaded
    encoder_parameters: List[Any] = field(default_factory=list)  # backbone parameters (FREEZE freezes these)
    # where the backbone's weights came from (emd PretrainedWeights): "timm/resnet34.a1_in1k (Hugging
    # Face hub)", "imported: <path>", or "random" (models/weights.py)
    pretrained_source: str = "random"


@dataclass
class ModelSpec:
    keyword: str  # arcpy MODEL_TYPE: "UNET"
    model_name: str  # emd ModelName: "UnetClassifier"
    model_type: str  # emd ModelType: "ImageClassification", "ObjectDetection", …
    kind: str  # task family the trainer runs (train/families.py): pixel, detection, instance, classification
    formats: Tuple[str, ...]  # metadata formats it trains on
    arguments: Dict[str, Any]  # model-specific ARGUMENTS and their defaults
    # The network: called with a BuildContext; imports torch (and the network's module) when called.
    build: Callable[[BuildContext], BuiltModel]
    emd_params: Callable[[Dict[str, Any], str], Dict[str, Any]]  # (arguments, backbone_name) -> emd keys
    default_backbone: str = "RESNET34"
    # Inference: predict(module, x) with x the normalised (N, C, H, W) batch. None = pixel
    # models: module(x) gives logits (N, K, H, W). Detectors return one dict per image with
    # "boxes" (n, 4) xmin, ymin, xmax, ymax in chip pixels, "scores" (n,), "labels" (n,)
    # class indices 1..K, and for instance models "masks" (n, H, W) probabilities;
    # classifiers return (N, K) probabilities.
    predict: Optional[Callable[[Any, Any], Any]] = None
    # What the Processing tools show after the keyword: "U-Net (pixel classification)".
    description: str = ""
    # Position in MODEL_TYPE (the arcpy enumeration's order, INTERFACE.md).
    order: int = LAST
    # Position in Train Using AutoDL's NETWORKS (arcpy's order there); None: AutoDL does not train it.
    autodl_order: Optional[int] = None
    # Backbones (emd names, "resnet34") for which ``build`` makes arcgis.learn's own network, so that
    # packages arcgis.learn trained load (registry.network_of_emd); empty: none.
    arcgis_backbones: Tuple[str, ...] = ()
    # Those of them on which a NEW model gets arcgis.learn's layout (so its package crosses to ArcGIS);
    # None: all of ``arcgis_backbones``.
    arcgis_new_backbones: Optional[Tuple[str, ...]] = None
    # How many anchors a new model takes from k-means of its training boxes when its "anchors"
    # argument is not given (train/anchors.py; YOLOV3: 9, as arcgis.learn's YOLOv3); 0: none.
    data_anchors: int = 0

    @property
    def crossing_backbones(self) -> Tuple[str, ...]:
        """Backbones on which a model trained here loads in arcgis.learn and ArcGIS Pro."""
        return tuple(self.arcgis_backbones if self.arcgis_new_backbones is None else self.arcgis_new_backbones)


def choose_network(model_name: str, backbones: Sequence[str], backbone_name: str, network: Optional[str] = None,
                   new_backbones: Optional[Sequence[str]] = None, given: Optional[str] = None) -> str:
    """Which module layout a model is (the one rule for every model type): arcgis.learn's own on the
    ``backbones`` the spec rebuilds it for (emd names, "resnet34"), else ours. ``network``: what a
    trained emd records (registry.network_of_emd); None for a new model, which takes arcgis.learn's
    layout on ``new_backbones`` (default: ``backbones``). ``given``: the backbone as the emd spells it."""
    name = str(backbone_name).lower()
    if network is None:
        return ARCGIS_LEARN if name in (backbones if new_backbones is None else new_backbones) else OWN_NETWORK
    if network == ARCGIS_LEARN and name not in backbones:
        raise InputError("IN_MODEL_DEFINITION", f"an arcgis.learn {model_name} with the backbone {given or backbone_name} "
                                                f"cannot be rebuilt; this plugin rebuilds it on {', '.join(backbones)}")
    return network
