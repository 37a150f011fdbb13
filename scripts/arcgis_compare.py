#!/usr/bin/env python
"""Does arcgis.learn read our UNET packages as we do (issue 15)? Run with this plugin's Python;
it calls the arcgis.learn oracle's Python (../shared/tools/arcgis-oracle/install.sh; found
through $ORACLE_HOME, default ~/.cache/arcgis-oracle) for arcgis.learn's side.

  python scripts/arcgis_compare.py compare PACKAGE.dlpk|.emd --chips EXPORT_FOLDER [--max-chips 16] [--json OUT]
      arcgis.learn: UnetClassifier.from_model(PACKAGE), then Pro's own pixel classification
      (arcgis.learn.models._inferencing.util.pixel_classify_image: its normalisation, class values);
      ours: Classify Pixels' model loading (dl_engine.infer.model.load_model) and normalisation.
      Same chips (the export's images/), same weights: prints the share of pixels whose class
      values agree and the largest logit difference. Exit 0 when every pixel agrees.
  python scripts/arcgis_compare.py layout --backbone resnet34 [--classes 3] [--chip 64] [--out FILE]
      arcgis.learn's UnetClassifier state-dict keys and shapes (tests/data/arcgis_layouts/ were
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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORACLE_HOME = Path(os.environ.get("ORACLE_HOME", os.path.expanduser("~/.cache/arcgis-oracle")))
LOGIT_TOLERANCE = 1e-3  # float32 through two implementations of the same network


def oracle_python() -> Path | None:
    """The oracle's interpreter, or None when arcgis.learn is not installed there."""
    py = ORACLE_HOME / "venv" / "bin" / "python"
    site = list((ORACLE_HOME / "venv" / "lib").glob("python3*/site-packages/arcgis/learn"))
    return py if py.is_file() and site else None


def _run_oracle(*args: str) -> dict:
    py = oracle_python()
    if py is None:
        raise SystemExit(f"the arcgis.learn oracle is not installed under {ORACLE_HOME} "
                         "(../shared/tools/arcgis-oracle/install.sh)")
    env = dict(os.environ, ORACLE_HOME=str(ORACLE_HOME), TORCH_HOME=str(ORACLE_HOME / "torch_home"),
               TMPDIR=str(ORACLE_HOME / "tmp"), PYTHONPATH="")
    (ORACLE_HOME / "tmp").mkdir(exist_ok=True)
    done = subprocess.run([str(py), __file__, *args], capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"arcgis.learn's side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- arcgis.learn's side (the oracle's Python) ---------------------------------------------------

def _quiet_arcgis():
    warnings.filterwarnings("ignore")
    with contextlib.redirect_stdout(io.StringIO()):
        import arcgis.learn as learn
    return learn


def _oracle_layout(backbone: str, classes: int, chip: int) -> dict:
    learn = _quiet_arcgis()
    import arcgis
    from arcgis.learn.models._arcgis_model import _EmptyData

    # What UnetClassifier.from_emd sets up for inference, without weights to load.
    data = _EmptyData(path=Path(tempfile.gettempdir()), loss_func=None, c=classes + 1, chip_size=chip)
    data.class_mapping = {i + 1: f"c{i + 1}" for i in range(classes)}
    data.color_mapping = {i + 1: [0, 0, 0] for i in range(classes)}
    data.dataset_type, data._is_empty, data.emd, data.resize_to = "Classified_Tiles", True, {}, None
    with contextlib.redirect_stdout(io.StringIO()):
        model = learn.UnetClassifier(data, backbone=backbone)
    state = model.learn.model.state_dict()
    return {"source": f"arcgis.learn {arcgis.__version__}: UnetClassifier(data, backbone={backbone!r})"
                      f".learn.model.state_dict(), data: {classes} classes + NoData, chip {chip}, 3 bands; "
                      "recorded by scripts/arcgis_compare.py layout",
            "backbone": backbone, "classes": classes, "chip_size": chip, "in_channels": 3,
            "state_dict": [[k, list(v.shape)] for k, v in state.items()]}


def _oracle_predict(package: str, chips: str, out: str) -> dict:
    learn = _quiet_arcgis()
    import numpy as np
    import torch
    from arcgis.learn.models._inferencing.util import normalize_batch, norm, pixel_classify_image

    with contextlib.redirect_stdout(io.StringIO()):
        model = learn.UnetClassifier.from_model(package)  # strict load of the package's weights
    emd = model._model_emd
    net = model.learn.model.eval()
    tiles = np.load(chips).astype(np.float32)
    with torch.no_grad():
        values = pixel_classify_image(net, tiles, torch.device("cpu"), None, True, emd)
        normed = normalize_batch(tiles, emd) if "NormalizationStats" in emd else \
            norm(tiles.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        logits = net(torch.tensor(normed).float())
    np.savez(out, values=values.cpu().numpy(), logits=logits.cpu().numpy())
    return {"loaded": type(model).__name__, "backbone": emd["ModelParameters"]["backbone"]}


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


def our_prediction(package: str, tiles):
    """(class values (N, h, w), logits (N, K, h, w)) of Classify Pixels' model and normalisation."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from dl_engine.infer.model import load_model
    from dl_engine.infer.writer import class_table

    model = load_model(package, "classify_pixels")
    x = np.stack([model.normalization.normalize(t) for t in tiles])
    with torch.no_grad():
        logits = model.module(torch.from_numpy(x)).numpy()
    table = class_table(model.classes)
    return table.lut[logits.argmax(1)], logits


def compare(package: str, chips_folder: str, max_chips: int) -> dict:
    import numpy as np

    tiles = read_chips(Path(chips_folder), max_chips)
    with tempfile.TemporaryDirectory(prefix="arcgis-compare-") as tmp:
        chips = os.path.join(tmp, "chips.npy")
        np.save(chips, tiles)
        out = os.path.join(tmp, "arcgis.npz")
        side = _run_oracle("_oracle_predict", os.path.abspath(package), chips, out)
        theirs = dict(np.load(out))
    ours_values, ours_logits = our_prediction(os.path.abspath(package), tiles)
    agree = float((ours_values == theirs["values"]).mean())
    diff = float(np.abs(ours_logits - theirs["logits"]).max())
    return {"package": package, "arcgis_learn": side, "chips": int(tiles.shape[0]),
            "chip_shape": list(tiles.shape[1:]), "pixels": int(ours_values.size),
            "class_agreement": agree, "max_abs_logit_diff": diff,
            "logit_scale": float(np.abs(theirs["logits"]).max()), "within_tolerance": diff <= LOGIT_TOLERANCE}


def our_layout(backbone: str, classes: int, chip: int) -> list:
    sys.path.insert(0, str(ROOT))
    from dl_engine.models.registry import get_spec
    from dl_engine.models.spec import BuildContext

    spec = get_spec("UNET")
    ctx = BuildContext(backbone=backbone, in_channels=3, num_classes=classes + 1, chip_size=chip,
                       arguments=dict(spec.arguments), pretrained=False, log=lambda message: None)
    return [[k, list(v.shape)] for k, v in spec.build(ctx).module.state_dict().items()]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_oracle_layout":
        print(json.dumps(_oracle_layout(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if argv and argv[0] == "_oracle_predict":
        print(json.dumps(_oracle_predict(*argv[1:4])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare")
    c.add_argument("package")
    c.add_argument("--chips", required=True, help="an export folder: its images/ are the chips")
    c.add_argument("--max-chips", type=int, default=16)
    c.add_argument("--json")
    lay = sub.add_parser("layout")
    lay.add_argument("--backbone", default="resnet34")
    lay.add_argument("--classes", type=int, default=3)
    lay.add_argument("--chip", type=int, default=64)
    lay.add_argument("--out")
    a = ap.parse_args(argv)
    if a.command == "layout":
        theirs = _run_oracle("_oracle_layout", a.backbone, str(a.classes), str(a.chip))
        ours = our_layout(a.backbone, a.classes, a.chip)
        same = ours == theirs["state_dict"]
        if a.out:
            Path(a.out).write_text(json.dumps(theirs, indent=0))
        print(json.dumps({"backbone": a.backbone, "tensors": len(theirs["state_dict"]), "same_as_ours": same}))
        return 0 if same else 1
    result = compare(a.package, a.chips, a.max_chips)
    print(json.dumps(result, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0 if result["class_agreement"] == 1.0 and result["within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
