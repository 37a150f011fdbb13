"""Helpers shared by the training tests (imported by the test modules)."""

import os
import stat
import sys

import pytest

from dlt_helpers import DATA, REPO, elevation, keyword_index, run_export

TRAIN_ALG = "deeplearningtools:traindeeplearningmodel"
FAKE_WORKER = DATA / "fake_worker.py"
ENGINE_RUN = REPO / "dl_engine" / "train" / "run.py"

# Tests that train for real run the moment the engine's trainer exists.
needs_engine = pytest.mark.skipif(
    not ENGINE_RUN.exists(), reason="the training engine (dl_engine/train/run.py) has not landed yet"
)


def fake_python(folder, mode="config"):
    """An executable standing in for the worker's Python (set DLT_PYTHON to it): it runs
    the fake worker in MODE with the arguments the runner passes."""
    script = folder / f"fake-python-{mode}"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_WORKER}" {mode} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def fake_export(folder):
    """A folder that passes the quick check (the engine reads the real content)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "esri_model_definition.emd").write_text("{}")
    (folder / "map.txt").write_text("")
    return str(folder)


def export_buildings(data_dir, out, tile=64):
    """Classified_Tiles of the elevation sample (DSM + building footprints)."""
    from qgis.core import QgsApplication

    from dlt_helpers import EXPORT_ALG

    raster, labels = elevation(data_dir)
    alg = QgsApplication.processingRegistry().algorithmById(EXPORT_ALG)
    result = run_export({
        "IN_RASTER": raster, "IN_CLASS_DATA": labels, "OUT_FOLDER": str(out),
        "METADATA_FORMAT": keyword_index(alg, "METADATA_FORMAT", "Classified_Tiles"),
        "TILE_SIZE_X": tile, "TILE_SIZE_Y": tile, "STRIDE_X": tile, "STRIDE_Y": tile,
    })
    return result["OUT_FOLDER"]


def model_type_index(keyword):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById(TRAIN_ALG)
    return keyword_index(alg, "MODEL_TYPE", keyword)


def tiny_training_params(in_folder, out_folder, **extra):
    """UNET + RESNET18, one epoch, small batches, a fixed learning rate: a few seconds on a CPU."""
    params = {
        "IN_FOLDER": str(in_folder), "OUT_FOLDER": str(out_folder), "MAX_EPOCHS": 1, "BATCH_SIZE": 4,
        "MODEL_TYPE": model_type_index("UNET"), "BACKBONE_MODEL": "RESNET18", "LEARNING_RATE": 0.001,
        "DEVICE": "cpu",
    }
    params.update(extra)
    return params


def dlpk_and_emd(out_folder):
    files = os.listdir(out_folder)
    return [f for f in files if f.endswith(".dlpk")], [f for f in files if f.endswith(".emd")]
