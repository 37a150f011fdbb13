"""Headless: the plugin loaded by ``qgis_process`` and the export run through it.

The call a user (or ``scripts/demo.sh``) makes:
  QGIS_PLUGINPATH=<dir holding deep_learning_tools> qgis_process.bin plugins enable deep_learning_tools
  QGIS_PLUGINPATH=... qgis_process.bin --json run deeplearningtools:exporttrainingdatafordeeplearning -- NAME=value ...
``/usr/bin/qgis_process.bin`` is called directly: Debian's ``qgis_process`` wrapper adds
``--noversioncheck`` from /etc/default/qgis, which qgis_process rejects. ``plugins enable``
writes into the user profile, so the test uses a temporary HOME and QGIS config path.
"""

import json
import os
import shutil
import subprocess
import sysconfig

import pytest

from dlt_helpers import EXPORT_ALG, PLUGIN_NAME, chips, voc_boxes

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"

pytestmark = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed")


@pytest.fixture(scope="module")
def qgis_process_env(plugin_parent, tmp_path_factory):
    home = tmp_path_factory.mktemp("qgis-process-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
    env.update(
        HOME=str(home),
        QGIS_CUSTOM_CONFIG_PATH=str(home / "qgis-config"),
        QGIS_PLUGINPATH=str(plugin_parent),
        # The venv's packages (rasterio, shapely, affine) for the system Python inside qgis_process.
        PYTHONPATH=sysconfig.get_paths()["purelib"],
        QT_QPA_PLATFORM="offscreen",
    )
    enabled = subprocess.run(
        [QGIS_PROCESS, "plugins", "enable", PLUGIN_NAME], env=env, capture_output=True, text=True, timeout=120
    )
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return env


def qgis_process(env, *args):
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.heavy
def test_plugin_listed_and_algorithm_help(qgis_process_env):
    listed = qgis_process(qgis_process_env, "plugins")
    assert f"* {PLUGIN_NAME}" in listed.stdout, listed.stdout + listed.stderr
    described = qgis_process(qgis_process_env, "help", EXPORT_ALG)
    assert described.returncode == 0, described.stderr
    for name in ("IN_RASTER", "OUT_FOLDER", "METADATA_FORMAT", "PARALLEL_PROCESSING_FACTOR", "NUM_TILES"):
        assert name in described.stdout


@pytest.mark.heavy
def test_qgis_process_run_exports(qgis_process_env, data_dir, tmp_path):
    out = tmp_path / "voc"
    result = qgis_process(
        qgis_process_env, "--json", "run", EXPORT_ALG, "--",
        f"IN_RASTER={data_dir / 'trees_osbs' / 'OSBS_029.tif'}",
        f"IN_CLASS_DATA={data_dir / 'trees_osbs' / 'trees.gpkg'}",
        f"OUT_FOLDER={out}",
        "METADATA_FORMAT=1", "TILE_SIZE_X=200", "TILE_SIZE_Y=200", "STRIDE_X=200", "STRIDE_Y=200",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["results"]["OUT_FOLDER"] == str(out)
    images = chips(str(out))
    assert payload["results"]["NUM_TILES"] == len(images) == 4
    total = sum(len(voc_boxes(str(out / "labels" / (os.path.basename(p)[:-4] + ".xml")))) for p in images)
    assert total >= 61


@pytest.mark.heavy  # a few seconds (make test runs it)
def test_qgis_process_run_panoptic_with_instances(qgis_process_env, data_dir, tmp_path):
    """Panoptic_Segmentation headless, with IN_INSTANCE_DATA / INSTANCE_CLASS_VALUE_FIELD on the command line."""
    out = tmp_path / "panoptic"
    trees = data_dir / "trees_osbs" / "trees.gpkg"
    result = qgis_process(
        qgis_process_env, "--json", "run", EXPORT_ALG, "--",
        f"IN_RASTER={data_dir / 'trees_osbs' / 'OSBS_029.tif'}",
        f"IN_CLASS_DATA={trees}", f"IN_INSTANCE_DATA={trees}", "INSTANCE_CLASS_VALUE_FIELD=classvalue",
        f"OUT_FOLDER={out}", "METADATA_FORMAT=9",
        "TILE_SIZE_X=200", "TILE_SIZE_Y=200", "STRIDE_X=200", "STRIDE_Y=200",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    images = chips(str(out))
    assert payload["results"]["NUM_TILES"] == len(images) == 4
    for image in images:
        name = os.path.basename(image)
        assert (out / "labels" / name).is_file()
        assert (out / "labels2" / "Tree" / name).is_file()
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert emd["MetaDataMode"] == "Panoptic_Segmentation"
    assert [(c["Value"], c["Name"]) for c in emd["Panoptic_Segmentation_Instance_Classes"]] == [(1, "Tree")]


@pytest.mark.heavy  # a qgis_process run of several seconds: make test only
def test_qgis_process_large_export_uses_worker_processes(qgis_process_env, data_dir, tmp_path):
    """Inside qgis_process sys.executable is not Python: the workers must still start, with the
    installation's own interpreter, and write the same chips as one worker does."""
    common = [f"IN_RASTER={data_dir / 'trees_osbs' / 'OSBS_029.tif'}",
              f"IN_CLASS_DATA={data_dir / 'trees_osbs' / 'trees.gpkg'}", "METADATA_FORMAT=2",
              "TILE_SIZE_X=32", "TILE_SIZE_Y=32", "STRIDE_X=16", "STRIDE_Y=16"]
    runs = {}
    for name, factor in (("procs", 2), ("single", 1)):
        result = qgis_process(qgis_process_env, "run", EXPORT_ALG, "--", *common,
                              f"OUT_FOLDER={tmp_path / name}", f"PARALLEL_PROCESSING_FACTOR={factor}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs[name] = result.stdout + result.stderr
    assert "Cutting chips in 2 worker processes" in runs["procs"], runs["procs"][-3000:]
    assert "could not start" not in runs["procs"]
    listing = {n: sorted(os.listdir(tmp_path / n / "labels")) for n in runs}
    assert listing["procs"] == listing["single"] and len(listing["procs"]) > 256


@pytest.mark.heavy  # a few seconds (make test runs it)
def test_qgis_process_reports_bad_input(qgis_process_env, data_dir, tmp_path):
    out = tmp_path / "bad"
    result = qgis_process(
        qgis_process_env, "run", EXPORT_ALG, "--",
        f"IN_RASTER={data_dir / 'trees_osbs' / 'OSBS_029.tif'}",
        f"IN_CLASS_DATA={data_dir / 'trees_osbs' / 'trees.gpkg'}",
        f"OUT_FOLDER={out}", "TILE_SIZE_X=0",
    )
    assert result.returncode != 0
    assert "TILE_SIZE_X" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()
