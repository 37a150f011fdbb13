"""Load a trained model for inference, safely, and say what it expects.

Packages are opened only through ``package.reader.open_package`` (zip-slip checks,
``weights_only`` loading, no Python file of a package is run). Only packages written by this
plugin can be rebuilt, and those of arcgis.learn whose layout the registry builds (a spec's
``arcgis_backbones``: a UnetClassifier on a ResNet, models/arcgis_unet.py, …); arcgis.learn's
other networks have other state dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..data.normalization import Normalization, imagenet
from ..package.reader import open_package

PARAMETER = "IN_MODEL_DEFINITION"

# Which registry kinds each tool applies, and how a model of another kind is described.
TOOL_KINDS = {
    "classify_pixels": ("pixel",),
    "detect_objects": ("detection", "instance"),
    "classify_objects": ("classification",),
}
KIND_WORDS = {
    "pixel": ("a pixel classification model", "Classify Pixels Using Deep Learning"),
    "detection": ("an object detection model", "Detect Objects Using Deep Learning"),
    "instance": ("an instance segmentation model", "Detect Objects Using Deep Learning"),
    "classification": ("an object classification model", "Classify Objects Using Deep Learning"),
}


@dataclass(frozen=True)
class ClassInfo:
    value: int
    name: str
    color: Optional[Tuple[int, int, int]]  # None: the emd has none ([-1, -1, -1])


@dataclass
class LoadedModel:
    path: str  # as given (.emd or .dlpk)
    emd: Dict[str, Any]
    spec: Any  # models.registry.ModelSpec
    module: Any  # torch.nn.Module in eval mode on the CPU (moved by the caller)
    classes: List[ClassInfo]  # the emd's Classes, in index order
    normalization: Normalization
    chip_size: int
    # Output indices a pixel model never predicts (arcgis.learn's emd ignore_mapped_class: Pro's
    # segment_image sets their scores below every other before the argmax).
    ignored_outputs: Tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def background(self) -> bool:
        """Index 0 is background (pixel and detection models); classifiers have none."""
        return self.kind != "classification"

    def class_of_index(self, index: int) -> Optional[ClassInfo]:
        i = int(index) - (1 if self.background else 0)
        return self.classes[i] if 0 <= i < len(self.classes) else None

    @property
    def input_bands(self) -> int:
        """Bands the raster must have: every band of the training chips."""
        n = self.normalization
        return len(n.band_min) if n.is_multispectral else 3


def load_model(path: str, tool: str, parameter: str = PARAMETER) -> LoadedModel:
    """The model of a .emd/.dlpk, checked to fit ``tool`` (raises InputError naming ``parameter``)."""
    from ..models.registry import arcgis_networks_text, build_from_emd, get_spec, rebuilds_arcgis_network

    with open_package(path, parameter) as pkg:
        # arcgis.learn's own packages load where we build its layout (UnetClassifier on a ResNet)
        if not pkg.is_ours and not rebuilds_arcgis_network(pkg.emd):
            raise InputError(parameter, f"{path} was not written by this plugin: its network "
                                       f"({pkg.model_name or pkg.emd.get('ModelConfiguration') or 'unknown'}, "
                                       f"Framework {pkg.emd.get('Framework', '?')}) is arcgis.learn's own, whose "
                                       "weights this plugin cannot rebuild; use a model trained with Train Deep "
                                       "Learning Model in QGIS, or an arcgis.learn package of these: "
                                       f"{arcgis_networks_text()}")
        try:
            spec = get_spec(pkg.model_type or "", parameter)
        except InputError as e:
            raise InputError(parameter, f"{path}: {e.message}") from None
        if spec.kind not in TOOL_KINDS[tool]:
            what, use = KIND_WORDS.get(spec.kind, (f"a {spec.kind} model", "another tool"))
            raise InputError(parameter, f"{path} is {what} ({spec.keyword}); use {use}")
        chip = pkg.chip_size
        if not chip or chip < 1:
            raise InputError(parameter, f"{path} gives no ImageHeight (the model's tile size)")
        classes = _classes(pkg.classes, path, parameter)
        normalization = normalization_from_emd(pkg.emd, parameter)
        num_classes = pkg.engine.get("num_classes") or (len(classes) + (0 if spec.kind == "classification" else 1))
        try:
            module = build_from_emd(pkg.emd, in_channels=normalization.bands_in, num_classes=int(num_classes))
        except InputError as e:
            raise InputError(parameter, e.message) from None
        state = pkg.load_state_dict()
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise InputError(parameter, f"{path}: the weights do not fit the network the emd describes "
                                       f"({first[1].strip() if len(first) > 1 else first[0]}); the package is "
                                       "damaged or its emd was edited") from None
        module.eval()
        return LoadedModel(path=path, emd=pkg.emd, spec=spec, module=module, classes=classes,
                           normalization=normalization, chip_size=int(chip),
                           ignored_outputs=_ignored_outputs(pkg.emd, int(num_classes), path, parameter))


def _ignored_outputs(emd: Dict[str, Any], outputs: int, path: str, parameter: str) -> Tuple[int, ...]:
    raw = emd.get("ignore_mapped_class") or []
    if not isinstance(raw, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in raw):
        raise InputError(parameter, f"{path}: ignore_mapped_class {raw!r} is not a list of output indices")
    bad = [k for k in raw if not 0 <= k < outputs]
    if bad:
        raise InputError(parameter, f"{path}: ignore_mapped_class {bad} lies outside the model's outputs "
                                   f"0..{outputs - 1}")
    return tuple(sorted(set(raw)))


def _classes(raw: List[Dict[str, Any]], path: str, parameter: str) -> List[ClassInfo]:
    out = []
    for c in raw:
        try:
            value = int(c["Value"])
        except (KeyError, TypeError, ValueError):
            raise InputError(parameter, f"{path}: a class in Classes has no integer Value: {c}") from None
        color = c.get("Color")
        rgb = tuple(int(v) for v in color[:3]) if isinstance(color, list) and len(color) >= 3 else None
        out.append(ClassInfo(value, str(c.get("Name", value)), rgb if rgb and min(rgb) >= 0 else None))
    if not out:
        raise InputError(parameter, f"{path} lists no Classes")
    return out


def normalization_from_emd(emd: Dict[str, Any], parameter: str = PARAMETER) -> Normalization:
    """What training used (data/normalization.py), from the emd keys alone: NormalizationStats
    when present, else ImageNet statistics on 8-bit RGB."""
    bands = emd.get("ExtractBands") or [0, 1, 2]
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bands):
        raise InputError(parameter, f"ExtractBands {bands} holds band names or negative numbers; this plugin's "
                                   "models give band indices")
    stats = emd.get("NormalizationStats")
    if not isinstance(stats, dict):
        if max(bands) > 2:
            raise InputError(parameter, f"ExtractBands {bands} without NormalizationStats: an 8-bit RGB model "
                                       "uses bands 0..2")
        return replace(imagenet(), extract_bands=list(bands))
    try:
        arrays = {k: np.asarray(stats[k], dtype=np.float64) for k in (
            "band_min_values", "band_max_values", "band_mean_values", "band_std_values",
            "scaled_mean_values", "scaled_std_values")}
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(parameter, f"NormalizationStats is incomplete or not numbers ({e})") from None
    n = len(arrays["band_min_values"])
    if any(len(a) != n for a in arrays.values()) or max(bands) >= n:
        raise InputError(parameter, f"NormalizationStats lists {n} band(s) but ExtractBands is {bands}")
    return Normalization("band_stats", list(bands), arrays["band_min_values"], arrays["band_max_values"],
                         arrays["band_mean_values"], arrays["band_std_values"], arrays["scaled_mean_values"],
                         arrays["scaled_std_values"])
