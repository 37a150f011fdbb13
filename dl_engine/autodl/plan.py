"""Every check of Train Using AutoDL's input, before anything is written: the export, the
budget, the networks that fit the export's format, the pretrained model and OUT_MODEL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..destinations import writable_file
from ..errors import InputError
from ..data.folders import open_folders
from ..models.registry import ModelSpec, get_spec, model_types
from .config import FORMATS, MODEL_EXTENSION, AutoDLConfig

# What the leaderboard ranks by, per kind of model (the MONITOR each trial keeps its best epoch by).
RANKING = {"pixel": "MIOU", "detection": "AVERAGE_PRECISION"}


@dataclass
class Plan:
    config: AutoDLConfig
    in_data: str
    data_format: str
    image_space: str  # MAP_SPACE / PIXEL_SPACE (which augmentations make sense)
    num_bands: int
    chips: int
    kind: str  # pixel / detection
    networks: List[ModelSpec]
    monitor: str  # the ranking metric, as a MONITOR keyword
    seconds: float  # the whole budget
    out_model: str  # absolute, ends in .dlpk
    leaderboard: str  # <stem>_leaderboard.csv beside OUT_MODEL
    evaluated: str  # <stem>_evaluated/ beside OUT_MODEL (SAVE_EVALUATED_MODELS)
    pretrained: Optional[Tuple[str, str, str]] = None  # (path, MODEL_TYPE, BACKBONE_MODEL) of PRETRAINED_MODEL

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.out_model))[0]


def autodl_networks() -> List[ModelSpec]:
    """Every network AutoDL trains (the specs with an ``autodl_order``), in that order."""
    return sorted((s for s in map(get_spec, model_types()) if s.autodl_order is not None), key=lambda s: s.autodl_order)


def networks_for(data_format: str) -> List[ModelSpec]:
    """Every network of this version that AutoDL can train on ``data_format``."""
    return [spec for spec in autodl_networks() if data_format in spec.formats]


def make_plan(config: AutoDLConfig) -> Plan:
    """The checks that need the data; the single values passed ``config.check()`` (run_autodl)."""
    seconds = float(config.total_time_limit) * 3600.0
    config.autodl_mode = str(config.autodl_mode or "BASIC").strip().upper()
    out_model = _out_model(config.out_model)
    data = _open_data(config.in_data)
    fmt = data.metadata_format
    if fmt not in FORMATS:
        raise InputError("IN_DATA", f"{data.paths[0]} is a {fmt} export; Train Using AutoDL trains on "
                                   f"{', '.join(FORMATS)} exports (for {fmt} use Train Deep Learning Model)")
    if not data.samples:
        raise InputError("IN_DATA", f"{data.paths[0]} holds no chips to train on; export again")
    fitting = networks_for(fmt)
    networks = _networks(config.networks, fmt, fitting)
    kind = networks[0].kind
    stem = os.path.splitext(out_model)[0]
    plan = Plan(config=config, in_data=";".join(data.paths), data_format=fmt, image_space=data.image_space,
                num_bands=data.num_bands, chips=len(data.samples), kind=kind, networks=networks,
                monitor=RANKING[kind], seconds=seconds, out_model=out_model, leaderboard=stem + "_leaderboard.csv",
                evaluated=stem + "_evaluated")
    if config.pretrained_model:
        plan.pretrained = _pretrained(config.pretrained_model, networks, data.num_bands)
    return plan


def _out_model(path: str) -> str:
    """OUT_MODEL (a .dlpk name or none: config.check) as an absolute .dlpk path in a writable folder."""
    path = os.path.abspath(os.path.expanduser(str(path).strip()))
    root, ext = os.path.splitext(path)
    if not ext:
        path = root + MODEL_EXTENSION
    if os.path.isdir(path):
        raise InputError("OUT_MODEL", f"{path} is a folder; give a .dlpk file path")
    if os.path.exists(path):  # a model of an earlier run: never replaced unasked
        raise InputError("OUT_MODEL", f"{path} already exists (the model of an earlier run?); give another OUT_MODEL "
                                      f"file name, or delete or move that file first. To train that model further, "
                                      f"give it as PRETRAINED_MODEL")
    return writable_file("OUT_MODEL", path, MODEL_EXTENSION)  # the rule every tool's destination follows


def _open_data(in_data: str):
    try:
        return open_folders(in_data, warn=False)
    except InputError as e:
        if e.parameter == "IN_FOLDER":
            raise InputError("IN_DATA", e.message) from None
        raise


def _networks(names: List[str], fmt: str, fitting: List[ModelSpec]) -> List[ModelSpec]:
    if not fitting:
        raise InputError("IN_DATA", f"no network of this version trains on {fmt}")
    if not names:
        return fitting
    known = {name.lower(): spec for spec in autodl_networks() for name in (spec.keyword, spec.model_name)}
    chosen: List[ModelSpec] = []
    unknown, misfits = [], []
    for name in names:
        spec = known.get(str(name).strip().lower())
        if spec is None:
            unknown.append(str(name))
        elif spec not in fitting:
            misfits.append(spec.model_name)
        elif spec not in chosen:
            chosen.append(spec)
    accepted = ", ".join(s.model_name for s in fitting)
    if unknown:
        raise InputError("NETWORKS", f"unknown network(s) {', '.join(unknown)}; networks for {fmt} data: {accepted}")
    if misfits:
        raise InputError("NETWORKS", f"{', '.join(misfits)} do(es) not train on {fmt} data; networks for {fmt}: "
                                    f"{accepted}")
    return chosen


def _pretrained(path: str, networks: List[ModelSpec], bands: int) -> Tuple[str, str, str]:
    from ..package.reader import open_package

    if not os.path.isfile(path):
        raise InputError("PRETRAINED_MODEL", f"{path} does not exist; give a .emd or .dlpk")
    with open_package(path, "PRETRAINED_MODEL") as pkg:
        if not pkg.is_ours:
            raise InputError("PRETRAINED_MODEL", f"{path} was not written by this plugin (its network, "
                                                f"{pkg.model_name or 'unknown'}, is arcgis.learn's own); give a "
                                                ".dlpk or .emd trained in QGIS")
        keyword, backbone, model_bands = pkg.model_type, pkg.backbone_keyword, pkg.num_bands
    names = {s.keyword: s for s in networks}
    if keyword not in names:
        raise InputError("PRETRAINED_MODEL", f"{path} is a {keyword} model, which is not among the networks to "
                                            f"train ({', '.join(s.model_name for s in networks)}); add "
                                            f"{get_spec(keyword).model_name if keyword in model_types() else keyword}"
                                            " to NETWORKS or give another model")
    if model_bands != bands:
        raise InputError("PRETRAINED_MODEL", f"{path} was trained on {model_bands} band(s); the training data has "
                                            f"{bands}")
    return os.path.abspath(path), keyword, backbone or names[keyword].default_backbone or "RESNET34"
