"""PRETRAINED_MODEL: fine-tune from one of our packages (.dlpk or .emd).

The package must be of the same model type, backbone and band count; its weights load
wherever the shapes agree (a different class list only re-initialises the last layer)."""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import InputError
from ..package.reader import open_package

PARAMETER = "PRETRAINED_MODEL"


def load_pretrained(path: str, model: torch.nn.Module, spec, backbone_name: str, td,
                    log: Callable[[str], None]) -> None:
    with open_package(path, PARAMETER) as pkg:
        if not pkg.is_ours:
            raise InputError(PARAMETER, f"{path} was not written by this plugin (its network, "
                                       f"{pkg.model_name or 'unknown'}, is arcgis.learn's own); give a .dlpk or "
                                       ".emd trained with Train Deep Learning Model in QGIS")
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
