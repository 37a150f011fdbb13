#!/usr/bin/env python
"""Packages that arcgis.learn itself trains, for the tests of issue 15 (run it with the oracle's
Python, never ours: it imports arcgis.learn).

    ../shared/tools/arcgis-oracle/install.sh                    # once: ~15 min, ~10 GB
    source ~/.cache/arcgis-oracle/env.sh
    python scripts/make_arcgis_fixtures.py EXPORT_FOLDER OUT_FOLDER [--model UnetClassifier]
        [--backbone resnet18] [--epochs 1] [--kwarg name=value ...]

EXPORT_FOLDER is an export arcgis.learn's prepare_data reads, of the dataset type the model trains
on (ours: ``python -m dl_engine export … --format Classified_Tiles`` for UnetClassifier, DeepLab
and PSPNetClassifier; PASCAL_VOC_rectangles for FasterRCNN, RetinaNet, SingleShotDetector and
YOLOv3; RCNN_Masks for MaskRCNN; Labeled_Tiles for FeatureClassifier). arcgis.learn builds
``<model>(data, backbone=…, **kwargs)`` (``--kwarg`` values are JSON, else strings), trains it
for ``--epochs`` epochs and saves it into OUT_FOLDER as arcgis.learn does
(``save(..., save_inference_file=False)``: the emd names Pro's built-in inference function, so
no Esri code is written) and zipped as a .dlpk.

The packages are not kept in the repository: a ResNet-18 U-Net holds ~31 M weights (~124 MB).
The tests (tests/engine/test_arcgis_*.py) make them where the oracle is installed and skip
otherwise.
"""
import argparse
import contextlib
import io
import json
import os
import random
import sys
import warnings
from pathlib import Path

oracle = os.environ.get("ORACLE_HOME", os.path.expanduser("~/.cache/arcgis-oracle"))
os.environ.setdefault("TORCH_HOME", os.path.join(oracle, "torch_home"))
os.environ.setdefault("TMPDIR", os.path.join(oracle, "tmp"))
warnings.filterwarnings("ignore")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("out")
    ap.add_argument("--model", default="UnetClassifier", help="arcgis.learn's class (the emd's ModelName)")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--kwarg", action="append", default=[], metavar="NAME=VALUE",
                    help="another keyword argument of the model's constructor (a JSON value, else a string)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import numpy as np
    import torch

    kwargs = {}
    for item in a.kwarg:
        name, _, value = item.partition("=")
        try:
            kwargs[name] = json.loads(value)
        except ValueError:
            kwargs[name] = value

    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    with contextlib.redirect_stdout(io.StringIO()):
        import arcgis
        import arcgis.learn as L
        data = L.prepare_data(a.export, batch_size=a.batch_size, val_split_pct=0.2, seed=a.seed)
        model = getattr(L, a.model)(data, backbone=a.backbone, **kwargs)
        model.fit(a.epochs, lr=1e-3)
    out = Path(a.out).resolve()
    with contextlib.redirect_stdout(io.StringIO()):
        model.save(str(out), save_inference_file=False, compute_metrics=True)
    dlpk = out / f"{out.name}.dlpk"
    emd = json.loads((out / f"{out.name}.emd").read_text())
    print(json.dumps({"arcgis": arcgis.__version__, "dlpk": str(dlpk) if dlpk.exists() else None,
                      "emd": str(out / f"{out.name}.emd"), "ModelName": emd.get("ModelName"),
                      "backbone": emd.get("ModelParameters", {}).get("backbone")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
