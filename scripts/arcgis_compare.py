#!/usr/bin/env python
"""Does arcgis.learn read our packages as we do, and we theirs (issue 15)? Run with this plugin's
Python; it calls the arcgis.learn oracle's Python (../shared/tools/arcgis-oracle/install.sh; found
through $ORACLE_HOME, default ~/.cache/arcgis-oracle) for arcgis.learn's side.

  python scripts/arcgis_compare.py compare PACKAGE.dlpk|.emd --chips EXPORT_FOLDER [--max-chips 16] [--json OUT]
      arcgis.learn: <ModelName>.from_model(PACKAGE), then arcgis.learn's own pre- and post-processing;
      ours: our inference tool's model loading (dl_engine.infer.model.load_model) and normalisation.
      Same chips (the export's images/), same weights; the kind of model (scripts/arcgis_kinds/:
      pixel, detection, classification) decides what is compared (class maps and logits; boxes,
      scores and labels; class probabilities). Prints the figures; exit 0 when the two agree.
  python scripts/arcgis_compare.py layout [--model UnetClassifier] --backbone resnet34 [--classes 3] [--chip 64] [--out FILE]
      arcgis.learn's state-dict keys and shapes for that model (tests/data/arcgis_layouts/ were
      recorded with it) and whether ours has the same.

The oracle's side runs this same file with ``_oracle_predict`` / ``_oracle_layout`` (it imports
arcgis.learn there, never dl_engine).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/: arcgis_kinds
import arcgis_kinds  # noqa: E402  (standard library at import: both Pythons load it)

ORACLE_HOME = Path(os.environ.get("ORACLE_HOME", os.path.expanduser("~/.cache/arcgis-oracle")))


def oracle_python() -> Path | None:
    """The oracle's interpreter, or None when arcgis.learn is not installed there."""
    py = ORACLE_HOME / "venv" / "bin" / "python"
    site = list((ORACLE_HOME / "venv" / "lib").glob("python3*/site-packages/arcgis/learn"))
    return py if py.is_file() and site else None


@contextlib.contextmanager
def oracle_env():
    """The environment for one run of the oracle's Python, with a temporary folder of its own that
    is removed afterwards: arcgis.learn unpacks every .dlpk it loads into TMPDIR and never removes
    it (100-250 MB a package)."""
    (ORACLE_HOME / "tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oracle-run-", dir=ORACLE_HOME / "tmp") as tmp:
        yield dict(os.environ, ORACLE_HOME=str(ORACLE_HOME), TORCH_HOME=str(ORACLE_HOME / "torch_home"),
                   TMPDIR=tmp, PYTHONPATH="")


def _run_oracle(*args: str) -> dict:
    py = oracle_python()
    if py is None:
        raise SystemExit(f"the arcgis.learn oracle is not installed under {ORACLE_HOME} "
                         "(../shared/tools/arcgis-oracle/install.sh)")
    with oracle_env() as env:
        done = subprocess.run([str(py), __file__, *args], capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"arcgis.learn's side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- arcgis.learn's side (the oracle's Python) ---------------------------------------------------

def _oracle_layout(model_name: str, backbone: str, classes: int, chip: int) -> dict:
    """The state dict of ``<model_name>.from_model`` on an emd whose weights are not loaded (what
    from_model builds for inference), unless the kind module gives its own ``oracle_layout``."""
    kind = arcgis_kinds.kind_module(model_name)
    recorded = kind.oracle_layout(model_name, backbone, classes, chip) if hasattr(kind, "oracle_layout") else None
    if recorded is not None:  # a kind module's own, for the ModelNames it knows better
        return recorded
    learn = arcgis_kinds.quiet_arcgis()
    from arcgis.learn.models import _arcgis_model

    _arcgis_model.ArcGISModel.load = lambda self, *a, **k: None  # build only: there are no weights
    tmp = Path(tempfile.mkdtemp(prefix="arcgis-layout-"))
    emd = {"ModelName": model_name, "ModelFile": "none.pth", "ImageHeight": chip, "ImageWidth": chip,
           "ExtractBands": [0, 1, 2], "ModelParameters": {"backbone": backbone},
           "Classes": [{"Value": i + 1, "Name": f"c{i + 1}", "Color": [0, 0, 0]} for i in range(classes)],
           **getattr(kind, "LAYOUT_EMD", {}).get(model_name, {})}
    (tmp / "layout.emd").write_text(json.dumps(emd))
    with contextlib.redirect_stdout(io.StringIO()):
        model = getattr(learn, model_name).from_model(str(tmp / "layout.emd"))
    return arcgis_kinds.layout_record(model_name, backbone, classes, chip, model.learn.model.state_dict(),
                                      f"{model_name}.from_model(emd of backbone {backbone!r}, {classes} classes, "
                                      f"chip {chip}, 3 bands; weights not loaded).learn.model.state_dict()")


# ---- our side -------------------------------------------------------------------------------------

def read_chips(folder: Path, limit: int):
    """(N, bands, h, w) float32 of the first ``limit`` images of an export (sorted by name)."""
    import numpy as np
    import rasterio

    paths = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in (".tif", ".tiff", ".png", ".jpg"))
    if not paths:
        raise SystemExit(f"{folder}/images holds no chips")
    arrays = []
    for p in paths[:limit]:
        with rasterio.open(p) as src:
            arrays.append(src.read().astype(np.float32))
    return np.stack(arrays)


def compare(package: str, chips_folder: str, max_chips: int) -> dict:
    """The same chips through arcgis.learn and through our inference tool: the kind module's figures,
    with ``ok`` True when they agree."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    package = os.path.abspath(package)
    model_name = arcgis_kinds.model_name_of(package)
    kind = arcgis_kinds.kind_module(model_name)
    tiles = read_chips(Path(chips_folder), max_chips)
    with tempfile.TemporaryDirectory(prefix="arcgis-compare-") as tmp:
        chips = os.path.join(tmp, "chips.npy")
        np.save(chips, tiles)
        out = os.path.join(tmp, "arcgis.npz")
        side = _run_oracle("_oracle_predict", package, chips, out)
        theirs = dict(np.load(out, allow_pickle=False))
    ours = kind.our_predict(package, tiles)
    return {"package": package, "model": model_name, "arcgis_learn": side, "chips": int(tiles.shape[0]),
            "chip_shape": list(tiles.shape[1:]), **kind.agreement(ours, theirs)}


def our_layout(model_name: str, backbone: str, classes: int, chip: int) -> list:
    """Our network's state dict (names, shapes) in arcgis.learn's layout for ``model_name``."""
    sys.path.insert(0, str(ROOT))
    from dl_engine.models.registry import spec_for_model_name
    from dl_engine.models.spec import ARCGIS_LEARN, BuildContext

    spec = spec_for_model_name(model_name)
    if spec is None:
        raise SystemExit(f"this plugin has no model type for ModelName {model_name!r}")
    outputs = classes + (0 if spec.kind == "classification" else 1)
    ctx = BuildContext(backbone=backbone, in_channels=3, num_classes=outputs, chip_size=chip,
                       arguments=dict(spec.arguments), pretrained=False, log=lambda message: None,
                       network=ARCGIS_LEARN)
    return [[k, list(v.shape)] for k, v in spec.build(ctx).module.state_dict().items()]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_oracle_layout":
        print(json.dumps(_oracle_layout(argv[1], argv[2], int(argv[3]), int(argv[4]))))
        return 0
    if argv and argv[0] == "_oracle_predict":
        package, chips, out = argv[1:4]
        print(json.dumps(arcgis_kinds.kind_module(arcgis_kinds.model_name_of(package))
                         .oracle_predict(package, chips, out)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare")
    c.add_argument("package")
    c.add_argument("--chips", required=True, help="an export folder: its images/ are the chips")
    c.add_argument("--max-chips", type=int, default=16)
    c.add_argument("--json")
    lay = sub.add_parser("layout")
    lay.add_argument("--model", default="UnetClassifier", help="arcgis.learn's class name (the emd's ModelName)")
    lay.add_argument("--backbone", default="resnet34")
    lay.add_argument("--classes", type=int, default=3)
    lay.add_argument("--chip", type=int, default=64)
    lay.add_argument("--out")
    a = ap.parse_args(argv)
    if a.command == "layout":
        theirs = _run_oracle("_oracle_layout", a.model, a.backbone, str(a.classes), str(a.chip))
        ours = our_layout(a.model, a.backbone, a.classes, a.chip)
        same = ours == theirs["state_dict"]
        if a.out:
            Path(a.out).write_text(json.dumps(theirs, indent=0))
        print(json.dumps({"model": a.model, "backbone": a.backbone, "tensors": len(theirs["state_dict"]),
                          "same_as_ours": same}))
        return 0 if same else 1
    result = compare(a.package, a.chips, a.max_chips)
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
