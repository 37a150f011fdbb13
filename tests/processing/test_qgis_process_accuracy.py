"""Both accuracy tools headless through ``qgis_process`` (as scripts/demo.sh runs the pixel one):
the sample data, a `.csv` and a GeoPackage table, the HTML report. Marked heavy: each run starts
QGIS (a few seconds)."""

import csv
import json
import os
import shutil
import subprocess
import sysconfig

import numpy as np
import pytest

from dlt_helpers import PLUGIN_NAME

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"

pytestmark = [pytest.mark.heavy,
              pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed")]


@pytest.fixture(scope="module")
def env(plugin_parent, tmp_path_factory):
    home = tmp_path_factory.mktemp("qgis-process-accuracy-home")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
    environment.update(HOME=str(home), QGIS_CUSTOM_CONFIG_PATH=str(home / "qgis-config"),
                       QGIS_PLUGINPATH=str(plugin_parent), PYTHONPATH=sysconfig.get_paths()["purelib"],
                       QT_QPA_PLATFORM="offscreen")
    enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", PLUGIN_NAME], env=environment, capture_output=True,
                             text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return environment


def qgis_process(env, alg, *params):
    done = subprocess.run([QGIS_PROCESS, "--json", "run", alg, "--", *params], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{"):])["results"]


def test_pixel_accuracy_csv_headless(env, data_dir, tmp_path):
    """hag.tif thresholded at 3 m against the building footprints (EPSG:4326): the IoU row is the
    building IoU computed with rasterio on the raster's grid."""
    import rasterio
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom

    with rasterio.open(data_dir / "elevation" / "hag.tif") as src:
        height = src.read(1)
        profile = src.profile
    classified = np.where(height > 3, 1, 0).astype("uint8")
    profile.update(dtype="uint8", nodata=255, count=1)
    raster = tmp_path / "classified.tif"
    with rasterio.open(raster, "w", **profile) as out:
        out.write(classified, 1)
    footprints = data_dir / "elevation" / "buildings.geojson"
    matrix = tmp_path / "matrix.csv"
    results = qgis_process(env, "deeplearningtools:computeaccuracyforpixelclassification", f"IN_RASTER={raster}",
                           f"IN_GROUND_TRUTH_DATA={footprints}", "SAMPLING=3", f"OUT_CONFUSION_MATRIX={matrix}")
    assert results["OUT_CONFUSION_MATRIX"] == str(matrix)
    rows = {row["ClassValue"]: row for row in csv.DictReader(open(matrix, newline="", encoding="utf-8"))}
    shapes = [transform_geom("EPSG:4326", profile["crs"], f["geometry"]) for f in json.load(open(footprints))["features"]]
    truth = rasterize(shapes, out_shape=classified.shape, transform=profile["transform"], fill=0, default_value=1,
                      dtype="uint8")
    building, reference = classified == 1, truth == 1
    assert float(rows["C_1"]["C_1"]) == (building & reference).sum()
    assert float(rows["Total"]["C_1"]) == reference.sum()
    assert float(rows["IoU"]["C_1"]) == pytest.approx((building & reference).sum() / (building | reference).sum(),
                                                      abs=1e-6)


def test_detection_accuracy_gpkg_headless(env, data_dir, tmp_path):
    """The tree crowns against themselves: every object found, AP 1."""
    trees = data_dir / "trees_osbs" / "trees.gpkg"
    table = tmp_path / "accuracy.gpkg"
    report = tmp_path / "report.html"
    results = qgis_process(env, "deeplearningtools:computeaccuracyforobjectdetection", f"DETECTED_FEATURES={trees}",
                           f"GROUND_TRUTH_FEATURES={trees}", f"OUT_ACCURACY_TABLE={table}",
                           f"OUT_ACCURACY_REPORT={report}", "DETECTED_CLASS_VALUE_FIELD=classname", "MIN_IOU=0.5")
    assert results["OUT_ACCURACY_REPORT"] == str(report) and report.exists()
    from osgeo import ogr

    dataset = ogr.Open(str(table))
    rows = {f.GetField("Class"): f.items() for f in dataset.GetLayer(0)}
    assert sorted(rows) == ["All", "Tree"]
    assert (rows["Tree"]["True_Positive"], rows["Tree"]["False_Positive"], rows["Tree"]["False_Negative"]) == (61, 0, 0)
    assert rows["All"]["AP"] == 1.0
