"""One module per kind of arcgis.learn model for scripts/arcgis_compare.py (issue 15): how the
same chips go through arcgis.learn's network (in the oracle's Python) and through ours.

Each kind module gives:
- ``oracle_predict(package, chips_npy, out_npz) -> dict``: runs in the oracle's Python (imports
  arcgis.learn, never dl_engine): ``<ModelName>.from_model(package)``, then arcgis.learn's own
  pre- and post-processing on the chips (N, bands, h, w); arrays go to ``out_npz``, the returned
  dict (JSON) says what was loaded;
- ``our_predict(package, tiles) -> dict of arrays``: the same through our inference tool's model
  loading and normalisation (this plugin's Python);
- ``agreement(ours, theirs) -> dict``: the figures, with ``ok`` True when the two agree.
A kind module may also give ``oracle_layout(model_name, backbone, classes, chip) -> dict`` when
arcgis_compare's generic one (``from_model`` of an emd without weights) does not fit.

This package is imported by both Pythons: keep its top level free of arcgis, torch and dl_engine.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import warnings

# arcgis.learn's ModelName -> kind module.
MODEL_KINDS = {
    "UnetClassifier": "pixel",
    "DeepLab": "pixel",
    "PSPNetClassifier": "pixel",
    "FasterRCNN": "detection",
    "MaskRCNN": "detection",
    "RetinaNet": "detection",
    "SingleShotDetector": "detection",
    "YOLOv3": "detection",
    "FeatureClassifier": "classification",
}


def kind_module(model_name: str):
    kind = MODEL_KINDS.get(str(model_name))
    if kind is None:
        raise SystemExit(f"no comparison for ModelName {model_name!r}; known: {', '.join(MODEL_KINDS)}")
    return importlib.import_module(f"{__name__}.{kind}")


def quiet_arcgis():
    """arcgis.learn, imported without its banner and warnings (oracle side only)."""
    warnings.filterwarnings("ignore")
    with contextlib.redirect_stdout(io.StringIO()):
        import arcgis.learn as learn
    return learn


def model_name_of(package: str) -> str:
    """The emd's ModelName of a .emd or .dlpk (standard library only: both sides call it)."""
    import json
    import zipfile
    from pathlib import Path

    if str(package).lower().endswith(".dlpk"):
        with zipfile.ZipFile(package) as z:
            emd_name = next(n for n in z.namelist() if n.lower().endswith(".emd"))
            return str(json.loads(z.read(emd_name)).get("ModelName"))
    return str(json.loads(Path(package).read_text()).get("ModelName"))


def oracle_model(package: str):
    """``<ModelName>.from_model(package)``: a strict load of the package's weights (oracle side)."""
    learn = quiet_arcgis()
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(learn, model_name_of(package)).from_model(package)


def layout_record(model_name: str, backbone: str, classes: int, chip: int, state, how: str) -> dict:
    """What ``arcgis_compare.py layout`` records (tests/data/arcgis_layouts/): the state dict's names and
    shapes in order, and how arcgis.learn built the network (``how``)."""
    import arcgis

    return {"source": f"arcgis.learn {arcgis.__version__}: {how}; recorded by scripts/arcgis_compare.py layout",
            "model": model_name, "backbone": backbone, "classes": classes, "chip_size": chip, "in_channels": 3,
            "state_dict": [[k, list(v.shape)] for k, v in state.items()]}
