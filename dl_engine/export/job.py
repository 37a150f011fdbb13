"""An export handed from QGIS's process to the worker (``python -m dl_engine export --job FILE``):
the ``ExportConfig`` as JSON, and its geometries (labels, instances, mask polygons) in a compact
binary file beside it: a header, the record count, then per feature its class value and its WKB.
No pickle: the worker only reads numbers and bytes. Standard library only: QGIS's process
writes it."""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from typing import Iterable, List, Optional

from ..job_files import read_geometries, read_job_file, write_geometries, write_job_file
from .config import ClassInfo, ExportConfig, RasterLabels, VectorLabels

JOB_FILE = "job.json"
_GEOMETRY_FIELDS = ("labels", "instance_labels", "mask_wkb")


def _classes_json(classes: Iterable[ClassInfo]) -> list:
    return [asdict(ci) for ci in classes]


def _classes(raw: list) -> List[ClassInfo]:
    return [ClassInfo(value=int(c["value"]), name=c.get("name"),
                      color=tuple(c["color"]) if c.get("color") is not None else None) for c in raw]


def _labels_json(labels, folder: str, name: str) -> Optional[dict]:
    if labels is None:
        return None
    if isinstance(labels, RasterLabels):
        return {"kind": "raster", "path": labels.path, "band": labels.band, "classes": _classes_json(labels.classes)}
    file = f"{name}.wkb"
    write_geometries(os.path.join(folder, file), labels.wkb, labels.values)
    return {"kind": "vector", "file": file, "classes": _classes_json(labels.classes)}


def _labels(raw: Optional[dict], folder: str):
    if raw is None:
        return None
    if raw["kind"] == "raster":
        return RasterLabels(path=raw["path"], classes=_classes(raw["classes"]), band=int(raw["band"]))
    wkb, values = read_geometries(os.path.join(folder, raw["file"]))
    return VectorLabels(wkb=wkb, values=values, classes=_classes(raw["classes"]))


def write_job(folder: str, config: ExportConfig) -> str:
    """The job for ``config`` in ``folder`` (an empty temporary folder); returns the job file's path."""
    plain = {f.name: getattr(config, f.name) for f in fields(ExportConfig) if f.name not in _GEOMETRY_FIELDS}
    plain["labels"] = _labels_json(config.labels, folder, "labels")
    plain["instance_labels"] = _labels_json(config.instance_labels, folder, "instances")
    if config.mask_wkb is not None:
        write_geometries(os.path.join(folder, "mask.wkb"), config.mask_wkb)
        plain["mask_wkb"] = "mask.wkb"
    return write_job_file(folder, JOB_FILE, {"export": plain})


def read_job(path: str) -> ExportConfig:
    """The ``ExportConfig`` of a job file written by ``write_job``."""
    folder = os.path.dirname(os.path.abspath(path))
    raw = dict(read_job_file(path)["export"])
    known = {f.name for f in fields(ExportConfig)}
    config = {k: v for k, v in raw.items() if k in known and k not in _GEOMETRY_FIELDS}
    for name in ("extent",):
        if config.get(name) is not None:
            config[name] = tuple(config[name])
    config["labels"] = _labels(raw.get("labels"), folder)
    config["instance_labels"] = _labels(raw.get("instance_labels"), folder)
    if raw.get("mask_wkb"):
        config["mask_wkb"] = read_geometries(os.path.join(folder, raw["mask_wkb"]))[0]
    return ExportConfig(**config)
