"""Write a trained model's files into OUT_FOLDER the way ArcGIS Pro's Train Deep Learning
Model does (esri-formats.md §3): <name>.emd, <name>.pth, our inference function .py,
model_metrics.html, ModelCharacteristics/, training_validation_loss.json and <name>.dlpk.

Everything is written into a hidden staging folder inside OUT_FOLDER first and moved into
place only when complete, so a failure leaves OUT_FOLDER as it was (older files of the same
name are put back) and never a half-written package.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from typing import Callable, List, Mapping

from ..errors import InputError
from ..models.registry import get_spec
from . import arcgis_configurations, inference_function, report
from .emd import build_emd, is_builtin_function, write_emd
from .record import TrainedModel

CHARACTERISTICS = "ModelCharacteristics"
METRICS_HTML = "model_metrics.html"
LOSS_JSON = "training_validation_loss.json"


@dataclass
class PackagePaths:
    folder: str  # OUT_FOLDER
    emd: str
    pth: str
    dlpk: str
    html: str
    files: List[str] = field(default_factory=list)  # every file written, relative to folder ("/" separated)


def write_model_package(record: TrainedModel, state_dict: Mapping, out_folder, log: Callable[[str], None] = print,
                        dlpk: bool = True) -> PackagePaths:
    """Write the package of ``record`` with weights ``state_dict`` (name → tensor) into
    ``out_folder`` (created if missing), replacing files of the same name. ``dlpk=False``:
    the model folder only (AutoDL's trials, zipped later if at all)."""
    name = _check_name(record.name)
    out = os.path.abspath(os.fspath(out_folder))
    created = make_dirs(out)
    staging = os.path.join(out, f".{name}.partial-{os.getpid()}")
    try:
        shutil.rmtree(staging, ignore_errors=True)  # a crashed earlier run of this process id
        os.makedirs(staging)
        files = _write_files(record, state_dict, staging, name)
        if dlpk:
            write_dlpk(staging, files, f"{name}.dlpk")
            files.append(f"{name}.dlpk")
        _move_into(staging, out, files)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_dirs(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    paths = PackagePaths(folder=out, emd=os.path.join(out, f"{name}.emd"), pth=os.path.join(out, f"{name}.pth"),
                         dlpk=os.path.join(out, f"{name}.dlpk") if dlpk else "", html=os.path.join(out, METRICS_HTML),
                         files=files)
    log(f"Model package written: {paths.dlpk or paths.emd}")
    return paths


def _check_name(name: str) -> str:
    name = str(name or "").strip()
    if not name or name in (".", "..") or any(c in name for c in '/\\:\x00'):
        raise InputError("OUT_FOLDER", f"{name!r} cannot name the model files; give an output folder with a plain name")
    return name


def _write_files(record: TrainedModel, state_dict: Mapping, folder: str, name: str) -> List[str]:
    """Every package file but the .dlpk, into ``folder``; their relative paths, the emd first."""
    import torch

    emd = build_emd(record)
    files = [f"{name}.emd", f"{name}.pth"]
    write_emd(emd, os.path.join(folder, files[0]))
    torch.save(_plain_state(state_dict), os.path.join(folder, files[1]))

    py = emd["InferenceFunction"]
    if not is_builtin_function(py):  # Pro's own copy (arcgis.learn's layout) is not shipped
        _write_text(folder, py, inference_function.source(py, get_spec(record.model_type).kind))
        files.append(py)
    configuration = emd.get("ModelConfigurationFile")
    if configuration:  # arcgis.learn's ModelExtension layout: Pro imports our configuration class from it
        _write_text(folder, configuration, arcgis_configurations.source(emd["ModelFileConfigurationClass"]))
        files.append(configuration)

    os.makedirs(os.path.join(folder, CHARACTERISTICS))
    best = report.best_index(record.history, record.best_epoch)
    loss_png = report.loss_graph_png(record.history, best)
    results_png = report.show_results_png(record.samples, record.class_map, emd["Classes"])
    confusion_png = report.confusion_matrix_png(record)  # object classifiers only, else None
    for file_name, png in (("loss_graph.png", loss_png), ("show_results.png", results_png),
                           ("confusion_matrix.png", confusion_png)):
        if png:
            rel = f"{CHARACTERISTICS}/{file_name}"
            with open(os.path.join(folder, CHARACTERISTICS, file_name), "wb") as f:
                f.write(png)
            files.append(rel)

    html_text = report.model_metrics_html(record, emd, loss_png, results_png, confusion_png=confusion_png)
    _write_text(folder, METRICS_HTML, html_text)
    _write_text(folder, LOSS_JSON, json.dumps(report.training_validation_loss(record.history)))
    files += [METRICS_HTML, LOSS_JSON]
    return files


def _plain_state(state_dict: Mapping) -> dict:
    """name → CPU tensor and nothing else, so it loads with torch.load(weights_only=True)."""
    import torch

    out = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor")
        out[str(key)] = value.detach().cpu()
    return out


def _write_text(folder: str, rel: str, text: str) -> None:
    with open(os.path.join(folder, rel), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_dlpk(folder: str, files: List[str], dlpk: str) -> None:
    """A zip of ``files`` flat at its root (as shutil.make_archive on the model folder gives),
    ModelCharacteristics/ kept as a sub-folder. The weights (.pth) are stored: trained float
    weights deflate by under 10 % and deflating them costs about 3 s per 100 MB (a ResNet-50);
    every other member is deflated."""
    with zipfile.ZipFile(os.path.join(folder, dlpk), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for d in sorted({rel.rsplit("/", 1)[0] + "/" for rel in files if "/" in rel}):
            zf.writestr(zipfile.ZipInfo(d), b"")
        for rel in files:
            zf.write(os.path.join(folder, *rel.split("/")), arcname=rel,
                     compress_type=zipfile.ZIP_STORED if rel.endswith(".pth") else zipfile.ZIP_DEFLATED)


def _move_into(staging: str, out: str, files: List[str]) -> None:
    """Move the staged files over those in ``out``; on any error, undo every move so the
    older files are back where they were."""
    backup = os.path.join(staging, ".replaced")
    undo = []  # (from, to) renames that reverse what was done, in order
    created: List[str] = []
    try:
        for rel in files:
            src = os.path.join(staging, *rel.split("/"))
            dst = os.path.join(out, *rel.split("/"))
            created += make_dirs(os.path.dirname(dst))
            if os.path.lexists(dst):
                if os.path.isdir(dst) and not os.path.islink(dst):
                    raise InputError("OUT_FOLDER", f"{dst} is a folder; the model file of that name cannot be written")
                old = os.path.join(backup, *rel.split("/"))
                os.makedirs(os.path.dirname(old), exist_ok=True)
                os.replace(dst, old)
                undo.append((old, dst))
            os.replace(src, dst)
            undo.append((dst, src))
    except BaseException:
        for a, b in reversed(undo):
            try:
                os.replace(a, b)
            except OSError:
                pass
        remove_dirs(created)
        raise


def make_dirs(path: str) -> List[str]:
    """``os.makedirs``; returns the folders it created, outermost first."""
    missing = []
    p = path
    while p and not os.path.exists(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    os.makedirs(path, exist_ok=True)
    return list(reversed(missing))


def remove_dirs(created: List[str]) -> None:
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass
