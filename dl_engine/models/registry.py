"""The registry of model types, keyed by the arcpy MODEL_TYPE keyword.

One ``ModelSpec`` per model type says what it trains on, how it is built, which model
arguments (ARGUMENTS) it takes and what it adds to the trained emd. Adding a model type
is adding one module that calls ``register``; the trainer, the outputs and the inference
tools only ever look types up here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import InputError


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


@dataclass
class BuiltModel:
    module: Any  # torch.nn.Module: forward(x (N,C,H,W) float) -> logits (N,num_classes,H,W) for pixel models
    backbone_name: str  # resolved backbone name written to the emd (e.g. "resnet34", "timm:convnext_tiny")
    pretrained_loaded: bool  # pretrained backbone weights were found and loaded
    encoder_parameters: List[Any] = field(default_factory=list)  # backbone parameters (FREEZE freezes these)


@dataclass
class ModelSpec:
    keyword: str  # arcpy MODEL_TYPE: "UNET"
    model_name: str  # emd ModelName: "UnetClassifier"
    model_type: str  # emd ModelType: "ImageClassification", "ObjectDetection", …
    kind: str  # task family the trainer runs: "pixel" (later "detection", "instance", "classification")
    formats: Tuple[str, ...]  # metadata formats it trains on
    arguments: Dict[str, Any]  # model-specific ARGUMENTS and their defaults
    build: Callable[[BuildContext], BuiltModel]
    emd_params: Callable[[Dict[str, Any], str], Dict[str, Any]]  # (arguments, backbone_name) -> emd keys
    default_backbone: str = "RESNET34"
    # Inference: predict(module, x) with x the normalised (N, C, H, W) batch. None = pixel
    # models: module(x) gives logits (N, K, H, W). Detectors return one dict per image with
    # "boxes" (n, 4) xmin, ymin, xmax, ymax in chip pixels, "scores" (n,), "labels" (n,)
    # class indices 1..K, and for instance models "masks" (n, H, W) probabilities;
    # classifiers return (N, K) probabilities.
    predict: Optional[Callable[[Any, Any], Any]] = None


_REGISTRY: Dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.keyword] = spec
    return spec


# One module per model family; each registers its types when imported.
BUILTIN_MODULES = ("pixel", "detection", "classification")


def _load_builtin() -> None:
    import importlib
    for name in BUILTIN_MODULES:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as e:  # a family this version does not have yet
            if e.name != f"{__package__}.{name}":
                raise


def model_types() -> List[str]:
    _load_builtin()
    return list(_REGISTRY)


def get_spec(keyword: str, parameter: str = "MODEL_TYPE") -> ModelSpec:
    _load_builtin()
    spec = _REGISTRY.get(str(keyword).upper())
    if spec is None:
        raise InputError(parameter, f"unknown model type {keyword!r}; this version trains "
                                   f"{', '.join(_REGISTRY)}")
    return spec


def spec_for_model_name(model_name: str) -> Optional[ModelSpec]:
    """The spec whose emd ModelName is ``model_name`` (reading a package)."""
    _load_builtin()
    for spec in _REGISTRY.values():
        if spec.model_name == model_name:
            return spec
    return None


def arguments_from_emd(spec: ModelSpec, emd: Dict[str, Any]) -> Dict[str, Any]:
    """The spec's arguments with the architecture values a trained emd records
    (ModelParameters) filled in."""
    params = emd.get("ModelParameters") or {}
    return {**spec.arguments, **{k: v for k, v in params.items() if k in spec.arguments}}


def build_from_emd(emd: Dict[str, Any], in_channels: Optional[int] = None,
                   num_classes: Optional[int] = None) -> Any:
    """The network a trained emd describes, with random weights, ready for ``load_state_dict``
    of its .pth. Needs only ModelName and ModelParameters (backbone and architecture
    arguments); bands default to len(ExtractBands), classes to len(Classes) + 1 (background;
    no background for classifiers)."""
    spec = spec_for_model_name(str(emd.get("ModelName", "")))
    if spec is None:
        raise InputError("IN_MODEL_DEFINITION", f"unknown ModelName {emd.get('ModelName')!r}; this version "
                                               f"reads {', '.join(s.model_name for s in _REGISTRY.values())}")
    params = emd.get("ModelParameters") or {}
    if in_channels is None:
        in_channels = len(emd.get("ExtractBands") or [0, 1, 2])
    if num_classes is None:  # classifiers (kind "classification") have no background output
        num_classes = len(emd.get("Classes") or []) + (0 if spec.kind == "classification" else 1)
    ctx = BuildContext(backbone=str(params.get("backbone") or spec.default_backbone), in_channels=int(in_channels),
                       num_classes=int(num_classes), chip_size=int(emd.get("ImageHeight") or 256),
                       arguments=arguments_from_emd(spec, emd), pretrained=False, log=lambda message: None)
    return spec.build(ctx).module
