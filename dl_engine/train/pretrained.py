"""PRETRAINED_MODEL: fine-tune from one of our packages (.dlpk or .emd), or from one arcgis.learn
trained whose network we rebuild (registry.arcgis_networks_text: a UnetClassifier on a ResNet, …).

The package must be of the same model type, backbone and band count; the network is built in the
package's module layout (``pretrained_network``: a UNET package from before arcgis.learn's layout
keeps our own), and its weights load wherever the shapes agree (a different class list only
re-initialises the last layer)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional

import torch

from ..errors import InputError
from ..models.registry import (arcgis_networks_text, arguments_from_emd, network_of_emd, rebuilds_arcgis_network,
                               spec_for_model_name)
from ..package.reader import open_package

PARAMETER = "PRETRAINED_MODEL"


def pretrained_network(path: Optional[str]) -> Optional[str]:
    """The module layout of PRETRAINED_MODEL's weights (registry.network_of_emd), for the
    network to be built in; None without a package (a new model's own choice)."""
    if not path:
        return None
    with open_package(path, PARAMETER) as pkg:
        return network_of_emd(pkg.emd)


def pretrained_emd(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """PRETRAINED_MODEL's emd (None without a package): the network is built from it."""
    if not path:
        return None
    with open_package(path, PARAMETER) as pkg:
        return dict(pkg.emd)


def package_arguments(spec, emd: Dict[str, Any], given: Iterable[str]) -> Dict[str, Any]:
    """The architecture arguments PRETRAINED_MODEL's package records (ModelParameters, arcgis.learn's
    Kwargs: registry.arguments_from_emd) that ARGUMENTS does not give: fine-tuning keeps the
    package's anchors, grids and the like, as arcgis.learn's from_model does, so its weights fit."""
    if spec_for_model_name(str(emd.get("ModelName", ""))) is not spec:
        return {}  # another model type: load_pretrained refuses it by name
    given = set(given)
    recorded = arguments_from_emd(spec, emd)
    return {k: v for k, v in recorded.items() if k not in given and v != spec.arguments.get(k)}


def load_pretrained(path: str, model: torch.nn.Module, spec, backbone_name: str, td,
                    log: Callable[[str], None]) -> None:
    with open_package(path, PARAMETER) as pkg:
        if not pkg.is_ours and not rebuilds_arcgis_network(pkg.emd):
            raise InputError(PARAMETER, f"{path} was not written by this plugin (its network, "
                                       f"{pkg.model_name or 'unknown'}, is arcgis.learn's own, of a kind or backbone whose "
                                       "weights this plugin cannot rebuild); give a .dlpk or .emd trained with "
                                       "Train Deep Learning Model in QGIS, or an arcgis.learn package of these: "
                                       f"{arcgis_networks_text()}")
        if pkg.model_type != spec.keyword:
            raise InputError(PARAMETER, f"{path} is a {pkg.model_type or pkg.model_name} model; MODEL_TYPE is "
                                       f"{spec.keyword}: choose MODEL_TYPE {pkg.model_type} or another package")
        if str(pkg.backbone).lower() != str(backbone_name).lower():
            raise InputError(PARAMETER, f"{path} has the backbone {pkg.backbone}; BACKBONE_MODEL gives "
                                       f"{backbone_name}: use BACKBONE_MODEL {pkg.backbone_keyword}")
        bands = td.normalization.bands_in
        if pkg.num_bands != bands:
            raise InputError(PARAMETER, f"{path} was trained on {pkg.num_bands} band(s); the training data "
                                       f"has {bands}")
        state = pkg.load_state_dict()
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) // 2:
        raise InputError(PARAMETER, f"{path}: its weights do not fit the network ({len(usable)} of {len(own)} "
                                   "tensors match); the package is damaged or of another architecture")
    model.load_state_dict(usable, strict=False)
    skipped = sorted(set(own) - set(usable))
    log(f"fine-tuning from {path}: {len(usable)} weight tensors loaded"
        + (f", {len(skipped)} re-initialised (different classes): {', '.join(skipped[:4])}"
           f"{'…' if len(skipped) > 4 else ''}" if skipped else ""))
