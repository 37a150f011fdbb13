"""An accuracy run handed from QGIS's process to the worker (``python -m dl_engine accuracy --job
FILE``): the configuration as JSON and its polygons as WKB records beside it
(``dl_engine/job_files.py``), and back the figures the algorithms write into their outputs
(``result_fields``). Standard library only: QGIS's process writes the job and reads the result."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Dict, List, Optional, Union

from ..job_files import read_geometries, read_job_file, write_geometries, write_job_file
from .config import DetectedObject, DetectionAccuracyConfig, PixelAccuracyConfig, PolygonTruth, TruthObject

JOB_FILE = "accuracy-job.json"
PIXELS, DETECTION = "pixels", "detection"
AccuracyConfig = Union[PixelAccuracyConfig, DetectionAccuracyConfig]


def _plain(config, skip) -> Dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name not in skip}


def _write_objects(folder: str, name: str, objects, with_confidence: bool) -> dict:
    """Polygons in ``name``.wkb; their (string) classes and confidences in the JSON."""
    write_geometries(os.path.join(folder, f"{name}.wkb"), [o.wkb for o in objects])
    raw = {"file": f"{name}.wkb", "classes": [o.class_value for o in objects]}
    if with_confidence:
        raw["confidence"] = [o.confidence for o in objects]
    return raw


def _read_wkb(folder: str, raw: dict) -> List[bytes]:
    return read_geometries(os.path.join(folder, raw["file"]))[0]


def write_job(folder: str, config: AccuracyConfig) -> str:
    """The job for ``config`` in ``folder`` (an empty temporary folder); returns the job file's path."""
    if isinstance(config, PixelAccuracyConfig):
        plain = _plain(config, ("ground_truth",))
        truth = config.ground_truth
        if isinstance(truth, PolygonTruth):
            write_geometries(os.path.join(folder, "truth.wkb"), truth.wkb, truth.values)
            plain["ground_truth"] = {"polygons": "truth.wkb"}
        else:
            plain["ground_truth"] = {"raster": str(truth)}
        job = {"kind": PIXELS, "config": plain}
    else:
        plain = _plain(config, ("detections", "ground_truth", "mask_wkb"))
        plain["detections"] = _write_objects(folder, "detections", config.detections, True)
        plain["ground_truth"] = _write_objects(folder, "truth", config.ground_truth, False)
        if config.mask_wkb is not None:
            write_geometries(os.path.join(folder, "mask.wkb"), config.mask_wkb)
            plain["mask_wkb"] = {"file": "mask.wkb"}
        job = {"kind": DETECTION, "config": plain}
    return write_job_file(folder, JOB_FILE, job)


def read_job(path: str) -> AccuracyConfig:
    """The configuration of a job file written by ``write_job``."""
    folder = os.path.dirname(os.path.abspath(path))
    job = read_job_file(path)
    raw = dict(job["config"])
    if job.get("kind") == PIXELS:
        known = {f.name for f in fields(PixelAccuracyConfig)}
        values = {k: v for k, v in raw.items() if k in known and k != "ground_truth"}
        truth = raw["ground_truth"]
        if "polygons" in truth:
            wkb, classes = read_geometries(os.path.join(folder, truth["polygons"]))
            values["ground_truth"] = PolygonTruth(wkb=wkb, values=classes)
        else:
            values["ground_truth"] = truth["raster"]
        return PixelAccuracyConfig(**values)
    known = {f.name for f in fields(DetectionAccuracyConfig)}
    values = {k: v for k, v in raw.items() if k in known and k not in ("detections", "ground_truth", "mask_wkb")}
    detections = raw["detections"]
    values["detections"] = [DetectedObject(wkb=w, class_value=c, confidence=float(s)) for w, c, s in
                            zip(_read_wkb(folder, detections), detections["classes"], detections["confidence"])]
    truth = raw["ground_truth"]
    values["ground_truth"] = [TruthObject(wkb=w, class_value=c) for w, c in
                              zip(_read_wkb(folder, truth), truth["classes"])]
    values["mask_wkb"] = _read_wkb(folder, raw["mask_wkb"]) if raw.get("mask_wkb") else None
    return DetectionAccuracyConfig(**values)


def result_fields(result) -> Dict[str, Any]:
    """What the worker sends back (its ``result`` event): the table's fields and rows, the headline
    figures and, for pixels, the sample points as [x, y, classified, reference]."""
    rows = result.rows()
    if hasattr(result, "matrix"):  # PixelAccuracy
        matrix = result.matrix
        return {"fields": list(matrix.fields()), "rows": rows, "overall_accuracy": float(matrix.overall_accuracy),
                "kappa": float(matrix.kappa), "mean_iou": float(matrix.mean_iou), "total": int(matrix.total),
                "points": [[p.x, p.y, p.classified, p.reference] for p in result.points]}
    return {"rows": rows}


def result_points(result: Dict[str, Any]) -> List[tuple]:
    """The sample points of a pixel run's result, as (x, y, classified, reference)."""
    return [(float(x), float(y), int(c), int(r)) for x, y, c, r in result.get("points") or []]


def job_kind(config: AccuracyConfig) -> Optional[str]:
    return PIXELS if isinstance(config, PixelAccuracyConfig) else DETECTION
