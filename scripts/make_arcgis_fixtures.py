#!/usr/bin/env python
"""Packages that arcgis.learn itself trains, for the tests of issue 15 (run it with the oracle's
Python, never ours: it imports arcgis.learn).

    ../shared/tools/arcgis-oracle/install.sh                    # once: ~15 min, ~10 GB
    source ~/.cache/arcgis-oracle/env.sh
    python scripts/make_arcgis_fixtures.py EXPORT_FOLDER OUT_FOLDER [--backbone resnet18] [--epochs 1]

EXPORT_FOLDER is a Classified_Tiles export (ours: ``python -m dl_engine export … --format
Classified_Tiles``). arcgis.learn trains a UnetClassifier on it for ``--epochs`` epochs and
saves it into OUT_FOLDER as arcgis.learn does (``save(..., save_inference_file=False)``: the emd
names Pro's built-in ArcGISImageClassifier.py, so no Esri code is written) and zipped as a .dlpk.

The package is not kept in the repository: a ResNet-18 U-Net holds ~31 M weights (~124 MB), and
no smaller backbone of arcgis.learn's is one we rebuild. tests/engine/test_arcgis_unet.py makes
it where the oracle is installed and skips otherwise.
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
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import numpy as np
    import torch

    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    with contextlib.redirect_stdout(io.StringIO()):
        import arcgis
        import arcgis.learn as L
        data = L.prepare_data(a.export, batch_size=a.batch_size, val_split_pct=0.2, seed=a.seed)
        model = L.UnetClassifier(data, backbone=a.backbone)
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
