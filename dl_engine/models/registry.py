"""The registry of model types, keyed by the arcpy MODEL_TYPE keyword (timm's
``_registry.py``, for ``ModelSpec`` records instead of entrypoint functions).

One ``ModelSpec`` per model type (spec.py) says what it trains on, how it is built, which
model arguments (ARGUMENTS) it takes, what it adds to the trained emd and how the
Processing tools show it. The built-in families declare theirs in ``pixel.SPECS``,
``detection.SPECS`` and ``classification.SPECS``; this module imports those three modules
by name (a missing or broken one is an ImportError here, not a silently shorter list) and
registers their specs. Adding a model type is adding its spec to a family module, or a new
family module named below; the trainer, the outputs and the inference tools only ever look
types up here.

Importing this module and listing the types (``specs()``, ``model_types()``) needs only the
standard library: torch and timm load when a spec's ``build`` or ``predict`` runs.

Tests that add types do it in a scope that puts the registry back afterwards::

    with registry.registered(spec):
        ...
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from ..errors import InputError
from . import classification, detection, pixel
from .spec import ARCGIS_LEARN, OWN_NETWORK, BuildContext, BuiltModel, ModelSpec

__all__ = ["BuildContext", "BuiltModel", "ModelSpec", "REGISTRY", "Registry", "arguments_from_emd",
           "arcgis_networks_text", "build_from_emd", "get_spec", "model_types", "network_of_emd", "rebuilds_arcgis_network", "register",
           "registered", "spec_for_model_name", "specs"]


class Registry:
    """Model types by keyword. ``register`` refuses a keyword or emd ModelName that is taken
    (as timm refuses a duplicate model name); ``registered`` adds types for a ``with`` block."""

    def __init__(self, specs: Iterable[ModelSpec] = ()):
        self._specs: Dict[str, ModelSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ModelSpec) -> ModelSpec:
        keyword = spec.keyword.upper()
        if keyword != spec.keyword:
            raise ValueError(f"model type keyword {spec.keyword!r} must be upper case")
        if keyword in self._specs:
            raise ValueError(f"model type {keyword} is already registered")
        taken = self.spec_for_model_name(spec.model_name)
        if taken is not None:
            raise ValueError(f"ModelName {spec.model_name} is already registered for {taken.keyword}")
        self._specs[keyword] = spec
        return spec

    @contextmanager
    def registered(self, *specs: ModelSpec) -> Iterator[Tuple[ModelSpec, ...]]:
        """Registers ``specs`` for the ``with`` block; afterwards the registry is as it was
        before (whatever the block registered or removed)."""
        saved = dict(self._specs)
        try:
            for spec in specs:
                self.register(spec)
            yield specs
        finally:
            self._specs = saved

    def specs(self) -> List[ModelSpec]:
        """Every type, in ``order`` (MODEL_TYPE's order), then in registration order."""
        return sorted(self._specs.values(), key=lambda spec: spec.order)

    def model_types(self) -> List[str]:
        return [spec.keyword for spec in self.specs()]

    def get_spec(self, keyword: str, parameter: str = "MODEL_TYPE") -> ModelSpec:
        spec = self._specs.get(str(keyword).upper())
        if spec is None:
            raise InputError(parameter, f"unknown model type {keyword!r}; this version trains "
                                       f"{', '.join(self.model_types())}")
        return spec

    def spec_for_model_name(self, model_name: str) -> Optional[ModelSpec]:
        """The spec whose emd ModelName is ``model_name`` (reading a package)."""
        for spec in self._specs.values():
            if spec.model_name == model_name:
                return spec
        return None


# One module per model family, imported above; each declares its types in SPECS.
REGISTRY = Registry((*pixel.SPECS, *detection.SPECS, *classification.SPECS))

register = REGISTRY.register
registered = REGISTRY.registered
specs = REGISTRY.specs
model_types = REGISTRY.model_types
get_spec = REGISTRY.get_spec
spec_for_model_name = REGISTRY.spec_for_model_name


def arguments_from_emd(spec: ModelSpec, emd: Dict[str, Any]) -> Dict[str, Any]:
    """The spec's arguments with the architecture values a trained emd records filled in:
    ModelParameters, and arcgis.learn's keyword-argument blocks (FasterRCNN's Kwargs, MaskRCNN's
    MaskRCNNkwargs: its from_model passes them beside ModelParameters)."""
    params = {}
    for key in ("Kwargs", "MaskRCNNkwargs", "ModelParameters"):
        if isinstance(emd.get(key), dict):
            params.update(emd[key])
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
                                               f"reads {', '.join(s.model_name for s in specs())}")
    params = emd.get("ModelParameters") or {}
    if in_channels is None:
        in_channels = len(emd.get("ExtractBands") or [0, 1, 2])
    if num_classes is None:  # classifiers (kind "classification") have no background output
        num_classes = len(emd.get("Classes") or []) + (0 if spec.kind == "classification" else 1)
    ctx = BuildContext(backbone=str(params.get("backbone") or spec.default_backbone), in_channels=int(in_channels),
                       num_classes=int(num_classes), chip_size=int(emd.get("ImageHeight") or 256),
                       arguments=arguments_from_emd(spec, emd), pretrained=False, log=lambda message: None,
                       network=network_of_emd(emd), emd=emd,
                       normalization="band_stats" if isinstance(emd.get("NormalizationStats"), dict) else "imagenet")
    return spec.build(ctx).module


def network_of_emd(emd: Dict[str, Any]) -> str:
    """The module layout a trained emd's weights have: ours record it in Engine.network (packages
    from before it was recorded have our own layout); a package without our Engine key was
    written by arcgis.learn."""
    engine = emd.get("Engine")
    if not isinstance(engine, dict):
        return ARCGIS_LEARN
    return str(engine.get("network") or OWN_NETWORK)


def rebuilds_arcgis_network(emd: Dict[str, Any]) -> bool:
    """Whether the network of a package arcgis.learn wrote can be rebuilt here (its ModelName's
    spec builds arcgis.learn's layout for its backbone)."""
    spec = spec_for_model_name(str(emd.get("ModelName", "")))
    params = emd.get("ModelParameters")
    backbone = str((params.get("backbone") if isinstance(params, dict) else None) or "").lower()
    return spec is not None and backbone in spec.arcgis_backbones


def arcgis_networks_text() -> str:
    """The arcgis.learn packages this version rebuilds, for refusals: "UnetClassifier on
    resnet18/resnet34, …" (every spec's ``arcgis_backbones``)."""
    parts = [f"{spec.model_name} on {'/'.join(spec.arcgis_backbones)}" for spec in specs() if spec.arcgis_backbones]
    return "; ".join(parts) or "none"
