"""Headless training: Train Deep Learning Model through ``qgis_process``.

Inside qgis_process ``sys.executable`` is qgis_process itself: the worker must still start
with a real Python that sees torch (the venv's site-packages reach it through PYTHONPATH).
Reuses the set-up of test_qgis_process.py (temporary profile, plugin enabled).
"""

import json
import os

import pytest

from dlt_helpers import EXPORT_ALG
from test_qgis_process import QGIS_PROCESS, qgis_process, qgis_process_env  # noqa: F401 (fixture)
from dlt_train_helpers import TRAIN_ALG, dlpk_and_emd, fake_export, fake_python, needs_engine

# Each test starts qgis_process (about a second): make test runs them; make test-fast keeps the export's
# qgis_process tests (test_qgis_process.py) as its headless check.
pytestmark = [pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed"),
              pytest.mark.heavy]


def results_of(completed):
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads(completed.stdout[completed.stdout.index("{"):])["results"]


def test_help_lists_the_parameters(qgis_process_env):
    described = qgis_process(qgis_process_env, "help", TRAIN_ALG)
    assert described.returncode == 0, described.stderr
    for name in ("IN_FOLDER", "OUT_FOLDER", "MAX_EPOCHS", "MODEL_TYPE", "BACKBONE_MODEL", "DEVICE",
                 "OUT_MODEL_FILE", "METRICS", "UNET"):
        assert name in described.stdout


def test_bad_input_names_the_parameter(qgis_process_env, tmp_path):
    (tmp_path / "not-an-export").mkdir()
    out = tmp_path / "model"
    result = qgis_process(qgis_process_env, "run", TRAIN_ALG, "--",
                          f"IN_FOLDER={tmp_path / 'not-an-export'}", f"OUT_FOLDER={out}")
    assert result.returncode != 0
    assert "IN_FOLDER" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()


def test_several_folders_reach_the_worker(qgis_process_env, tmp_path):
    env = dict(qgis_process_env, DLT_PYTHON=fake_python(tmp_path))
    first, second = fake_export(tmp_path / "a"), fake_export(tmp_path / "b")
    results = results_of(qgis_process(env, "--json", "run", TRAIN_ALG, "--", f"IN_FOLDER={first};{second}",
                                      f"OUT_FOLDER={tmp_path / 'model'}", "MAX_EPOCHS=4", "MODEL_TYPE=0"))
    assert results["OUT_MODEL_FILE"] == str(tmp_path / "model" / "fake.dlpk")
    config = json.loads(results["METRICS"])["config"]
    assert config["in_folder"] == f"{first};{second}" and config["max_epochs"] == 4


@pytest.mark.trains
@needs_engine
@pytest.mark.slow
def test_qgis_process_export_then_train(qgis_process_env, data_dir, tmp_path):
    chips = tmp_path / "chips"
    results_of(qgis_process(
        qgis_process_env, "--json", "run", EXPORT_ALG, "--",
        f"IN_RASTER={data_dir / 'elevation' / 'dsm.tif'}",
        f"IN_CLASS_DATA={data_dir / 'elevation' / 'buildings.geojson'}",
        f"OUT_FOLDER={chips}", "METADATA_FORMAT=2",
        "TILE_SIZE_X=64", "TILE_SIZE_Y=64", "STRIDE_X=64", "STRIDE_Y=64",
    ))
    out = tmp_path / "model"
    completed = qgis_process(
        qgis_process_env, "--json", "run", TRAIN_ALG, "--", f"IN_FOLDER={chips}", f"OUT_FOLDER={out}",
        "MAX_EPOCHS=1", "BATCH_SIZE=4", "MODEL_TYPE=0", "BACKBONE_MODEL=RESNET18", "LEARNING_RATE=0.001",
        "DEVICE=cpu",
    )
    results = results_of(completed)
    assert results["OUT_FOLDER"] == str(out)
    assert os.path.isfile(results["OUT_MODEL_FILE"]) and results["OUT_MODEL_FILE"].endswith(".dlpk")
    packages, emds = dlpk_and_emd(out)
    assert len(packages) == 1 and len(emds) == 1
    assert isinstance(json.loads(results["METRICS"]), dict)
