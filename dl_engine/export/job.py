"""An export handed from QGIS's process to the worker (``python -m dl_engine export --job FILE``):
the ``ExportConfig`` as JSON, and its geometries (labels, instances, mask polygons) in a compact
binary file beside it: a header, the record count, then per feature its class value and its WKB.
No pickle: the worker only reads numbers and bytes. Standard library only: QGIS's process
writes it."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, fields
from typing import Iterable, List, Optional, Sequence, Tuple

from .config import ClassInfo, ExportConfig, RasterLabels, VectorLabels

JOB_FILE = "job.json"
JOB_VERSION = 1
_MAGIC = b"DLTWKB1\n"
_COUNT = struct.Struct("<Q")
_RECORD = struct.Struct("<qI")  # class value, WKB length
_GEOMETRY_FIELDS = ("labels", "instance_labels", "mask_wkb")


def write_geometries(path: str, wkb: Sequence[bytes], values: Optional[Sequence[int]] = None) -> None:
    """WKB records with their class values (0 when there are none) into ``path``."""
    with open(path, "wb") as f:
        f.write(_MAGIC)
        f.write(_COUNT.pack(len(wkb)))
        for i, data in enumerate(wkb):
            f.write(_RECORD.pack(int(values[i]) if values is not None else 0, len(data)))
            f.write(data)


def read_geometries(path: str) -> Tuple[List[bytes], List[int]]:
    """(WKB list, class values) written by ``write_geometries``; ValueError when damaged."""
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError(f"{path} is not a geometry file of this version")
        (count,) = _COUNT.unpack(f.read(_COUNT.size))
        wkb: List[bytes] = []
        values: List[int] = []
        for _ in range(count):
            head = f.read(_RECORD.size)
            if len(head) != _RECORD.size:
                raise ValueError(f"{path} ends after {len(wkb)} of {count} geometries")
            value, size = _RECORD.unpack(head)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path} ends inside geometry {len(wkb) + 1} of {count}")
            wkb.append(data)
            values.append(value)
    return wkb, values


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
    path = os.path.join(folder, JOB_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": JOB_VERSION, "export": plain}, f)
    return path


def read_job(path: str) -> ExportConfig:
    """The ``ExportConfig`` of a job file written by ``write_job``."""
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    if job.get("version") != JOB_VERSION:
        raise ValueError(f"{path}: job version {job.get('version')!r}, this engine reads {JOB_VERSION}")
    raw = dict(job["export"])
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
