"""The export runs in a worker process (issue 13 item 3): QGIS reads the layers (a memory layer, a
layer with unsaved edits, a raster of another provider) and hands them to
``python -m dl_engine export --job`` in a temporary job folder, which is gone after a success, a
failure and a cancel. And a killed ``qgis_process`` leaves no process of its export running and
no staging for the next run (issue 18 items 3 and 4)."""

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (QgsFeature, QgsGeometry, QgsProcessingException, QgsProcessingFeedback,
                       QgsProject, QgsRasterLayer, QgsVectorFileWriter, QgsVectorLayer)

from dlt_helpers import EXPORT_ALG, PLUGIN_NAME, chips, fmt, geotransform, read, run_export, trees
from process_tree import descendants, running  # tests/process_tree.py

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"


@pytest.fixture
def job_folders(tmp_path, monkeypatch):
    """Where this test's job folders go (Python's temporary folder, for this test only)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def worker_commands(monkeypatch):
    """The command lines the algorithm ran its worker with, each with its job folder's listing then."""
    from deep_learning_tools.processing_provider import export_training_data as module

    real = module.run_worker
    seen = []

    def recording(args, feedback=None, **kw):
        job = args[args.index("--job") + 1]
        seen.append((list(args), sorted(os.listdir(os.path.dirname(job))), kw.get("temporary")))
        return real(args, feedback, **kw)

    monkeypatch.setattr(module, "run_worker", recording)
    return seen


def pixel_polygon(raster, col0, row0, col1, row1):
    gt, _ = geotransform(raster)

    def at(col, row):
        return f"{gt[0] + col * gt[1]} {gt[3] + row * gt[5]}"

    return f"POLYGON(({at(col0, row0)}, {at(col1, row0)}, {at(col1, row1)}, {at(col0, row1)}, {at(col0, row0)}))"


def one_label_chip(alg, raster, layer, out):
    """Classified_Tiles of the whole 400 x 400 raster in one chip; its class raster."""
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": layer,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"),
        "TILE_SIZE_X": 400, "TILE_SIZE_Y": 400, "STRIDE_X": 400, "STRIDE_Y": 400,
    })
    assert result["NUM_TILES"] == 1
    name = os.path.splitext(os.path.basename(chips(str(out))[0]))[0]
    return read(str(out / "labels" / (name + ".tif")))


def test_a_memory_layer_is_exported_by_the_worker(alg, data_dir, tmp_path, job_folders, worker_commands):
    raster, _ = trees(data_dir)
    layer = QgsVectorLayer("Polygon?crs=EPSG:32617&field=classvalue:integer", "drawn", "memory")
    for polygon, value in ((pixel_polygon(raster, 20, 20, 60, 60), 2), (pixel_polygon(raster, 300, 100, 340, 180), 5)):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(polygon))
        feature.setAttributes([value])
        layer.dataProvider().addFeature(feature)
    label = one_label_chip(alg, raster, layer, tmp_path / "memory")
    assert label[40, 40] == 2 and label[140, 320] == 5 and label[200, 200] == 0
    assert set(np.unique(label)) == {0, 2, 5}
    (args, listing, temporary), = worker_commands
    assert args[:3] == ["-m", "dl_engine", "export"]
    assert listing == ["job.json", "labels.wkb"]  # the features as WKB; the raster file is read where it is
    assert temporary == [os.path.dirname(args[-1])]
    assert os.listdir(job_folders) == []


def test_unsaved_edits_are_exported(alg, data_dir, tmp_path, job_folders, worker_commands):
    raster, _ = trees(data_dir)
    path = str(tmp_path / "labels.gpkg")
    source = QgsVectorLayer("Polygon?crs=EPSG:32617&field=classvalue:integer", "saved", "memory")
    feature = QgsFeature(source.fields())
    feature.setGeometry(QgsGeometry.fromWkt(pixel_polygon(raster, 20, 20, 60, 60)))
    feature.setAttributes([2])
    source.dataProvider().addFeature(feature)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    written = QgsVectorFileWriter.writeAsVectorFormatV3(source, path, QgsProject.instance().transformContext(),
                                                       options)
    assert written[0] == QgsVectorFileWriter.NoError, written

    layer = QgsVectorLayer(path, "edited", "ogr")
    assert layer.isValid() and layer.startEditing()
    saved = next(layer.getFeatures())
    layer.changeGeometry(saved.id(), QgsGeometry.fromWkt(pixel_polygon(raster, 200, 200, 260, 240)))
    added = QgsFeature(layer.fields())
    added.setGeometry(QgsGeometry.fromWkt(pixel_polygon(raster, 300, 20, 380, 60)))
    added.setAttribute("classvalue", 7)
    assert layer.addFeature(added)
    try:
        label = one_label_chip(alg, raster, layer, tmp_path / "edited")
    finally:
        layer.rollBack()
    assert label[220, 230] == 2, "the moved feature is where the edit put it"
    assert label[40, 40] == 0, "not where the file has it"
    assert label[40, 340] == 7, "the added feature is there"
    on_disk = QgsVectorLayer(path, "disk", "ogr")
    assert on_disk.featureCount() == 1  # the edits stayed unsaved
    assert os.listdir(job_folders) == []


def test_a_raster_of_another_provider_goes_to_the_job_folder(alg, data_dir, tmp_path, job_folders, worker_commands):
    raster, labels = trees(data_dir)
    base = QgsRasterLayer(raster, "rgb")
    extent = base.extent()
    uri = (f"?crs={base.crs().authid()}&extent={extent.xMinimum()},{extent.yMinimum()},"
           f"{extent.xMaximum()},{extent.yMaximum()}&width=400&height=400"
           f"&formula=%22rgb@1%22&rgb:uri={raster}&rgb:provider=gdal")
    virtual = QgsRasterLayer(uri, "virtual", "virtualraster")
    if not virtual.isValid():
        pytest.skip("no virtualraster provider in this QGIS")
    result = run_export({
        "IN_RASTER": virtual, "OUT_FOLDER": str(tmp_path / "virtual"), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
        "TILE_SIZE_X": 200, "TILE_SIZE_Y": 200, "STRIDE_X": 200, "STRIDE_Y": 200,
    })
    assert result["NUM_TILES"] > 0
    (args, listing, _), = worker_commands
    assert [n for n in listing if n.startswith("in_raster_") and n.endswith(".tif")], listing
    assert os.listdir(job_folders) == []


class CancelAtFirstProgress(QgsProcessingFeedback):
    def setProgress(self, progress):  # noqa: N802 (QGIS API name)
        super().setProgress(progress)
        self.cancel()


@pytest.mark.heavy
def test_the_job_folder_is_removed_after_a_failure_and_a_cancel(alg, data_dir, tmp_path, job_folders,
                                                               worker_commands):
    raster, labels = trees(data_dir)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    params = {"IN_RASTER": raster, "IN_CLASS_DATA": labels, "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
              "TILE_SIZE_X": 32, "TILE_SIZE_Y": 32, "STRIDE_X": 8, "STRIDE_Y": 8, "OUTPUT_NOFEATURE_TILES": True,
              "PARALLEL_PROCESSING_FACTOR": 1}
    # The worker refuses (the engine checks OUT_FOLDER): its error, the parameter named.
    with pytest.raises(QgsProcessingException, match=r"\(OUT_FOLDER\): .* is not empty"):
        run_export(dict(params, OUT_FOLDER=str(taken)))
    assert len(worker_commands) == 1 and os.listdir(job_folders) == []
    # QGIS's side refuses before any worker starts.
    with pytest.raises(QgsProcessingException, match="TILE_SIZE_X"):
        run_export(dict(params, OUT_FOLDER=str(tmp_path / "bad"), TILE_SIZE_X=0))
    assert len(worker_commands) == 1 and os.listdir(job_folders) == []
    # Canceled while the worker cuts chips.
    with pytest.raises(QgsProcessingException, match="Export canceled"):
        run_export(dict(params, OUT_FOLDER=str(tmp_path / "canceled")), feedback=CancelAtFirstProgress())
    assert len(worker_commands) == 2 and os.listdir(job_folders) == []
    assert not (tmp_path / "canceled").exists()
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


# ---- a killed qgis_process ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def qgis_process_env(plugin_parent, tmp_path_factory):
    if not os.path.exists(QGIS_PROCESS) or not os.path.isdir("/proc/self"):
        pytest.skip("needs qgis_process.bin and /proc")
    home = tmp_path_factory.mktemp("qgis-process-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
    env.update(HOME=str(home), QGIS_CUSTOM_CONFIG_PATH=str(home / "qgis-config"), QGIS_PLUGINPATH=str(plugin_parent),
               PYTHONPATH=sysconfig.get_paths()["purelib"], QT_QPA_PLATFORM="offscreen")
    enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", PLUGIN_NAME], env=env, capture_output=True,
                             text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return env


@pytest.mark.heavy
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_qgis_process_leaves_no_process_and_no_staging(qgis_process_env, data_dir, tmp_path, how):
    raster, _ = trees(data_dir)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(qgis_process_env, TMPDIR=str(temp))
    out = tmp_path / "chips"
    args = [QGIS_PROCESS, "run", EXPORT_ALG, "--", f"IN_RASTER={raster}", f"OUT_FOLDER={out}",
            "METADATA_FORMAT=6", "TILE_SIZE_X=32", "TILE_SIZE_Y=32", "STRIDE_X=2", "STRIDE_Y=2",
            "OUTPUT_NOFEATURE_TILES=true", "PARALLEL_PROCESSING_FACTOR=2"]
    with open(tmp_path / "log.txt", "w") as log:
        host = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            staging = []
            while time.monotonic() < deadline and host.poll() is None:
                staging = [p for p in tmp_path.glob(".chips.partial-*") if p.is_dir()]
                if staging and any((staging[0] / "images").glob("*.tif")):
                    break
                time.sleep(0.1)
            assert staging and host.poll() is None, (tmp_path / "log.txt").read_text()[-3000:]
            family = descendants(host.pid)
            assert len(family) >= 3, "a worker and its two pool processes"
            host.send_signal(how)
            host.wait()
            deadline = time.monotonic() + 5.0
            while [p for p in family if running(p)] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [p for p in family if running(p)] == [], "processes of the export outlived qgis_process by 5 s"
        finally:
            host.kill()
            host.wait()
    assert not [p for p in os.listdir(temp) if p.startswith("dlt-")], os.listdir(temp)  # job and worker folders

    again = subprocess.run(args[:7] + ["TILE_SIZE_X=200", "TILE_SIZE_Y=200", "STRIDE_X=200", "STRIDE_Y=200"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(chips(str(out))) == 4
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


# ---- what the runner tells every worker ---------------------------------------------------------

REPORTER = r'''
import os, sys
from dl_engine.worker import leave, run_job


def job(events, cancel):
    config = sys.argv[1]
    events.result(host=os.environ.get("DLT_HOST_PID"), config_there=os.path.exists(config))


sys.exit(leave(run_job(job, "test")))
'''


def test_the_runner_names_its_host_and_the_files_the_worker_removes(tmp_path):
    """What train, inference and AutoDL pass (their config as ``temporary``): the worker reads it,
    and it is gone when the run is over (the worker removes it too when QGIS died first)."""
    from deep_learning_tools.processing_provider import engine_process

    script = tmp_path / "reporter.py"
    script.write_text(REPORTER)
    config = tmp_path / "dlt-train-config.json"
    config.write_text("{}")
    result = engine_process.run_worker([str(script), str(config)], None, python=sys.executable,
                                       temporary=[str(config)])
    assert result == {"host": str(os.getpid()), "config_there": True}
    assert not config.exists()


def test_a_web_layer_is_read_at_cell_size_over_extent(alg, tmp_path, job_folders):
    """XYZ tiles (here a local folder, as a web service is read): no pixel size of its own, so the
    export reads it at CELL_SIZE over EXTENT into the job folder; without CELL_SIZE it says so."""
    tiles = tmp_path / "tiles" / "0" / "0"
    tiles.mkdir(parents=True)
    pattern = (np.arange(256 * 256).reshape(256, 256) % 251).astype(np.uint8)
    image = gdal.GetDriverByName("MEM").Create("", 256, 256, 3)
    for band, shift in enumerate((0, 60, 120)):
        image.GetRasterBand(band + 1).WriteArray(pattern + np.uint8(shift))
    gdal.GetDriverByName("PNG").CreateCopy(str(tiles / "0.png"), image)
    image = None
    url = (tmp_path / "tiles").as_uri() + "/%7Bz%7D/%7Bx%7D/%7By%7D.png"
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmax=0&zmin=0", "tiles", "wms")
    assert layer.isValid()
    world = 20037508.342789244
    params = {"IN_RASTER": layer, "OUT_FOLDER": str(tmp_path / "web"), "METADATA_FORMAT": fmt(alg, "Export_Tiles"),
              "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 128, "STRIDE_Y": 128,
              "EXTENT": f"{-world},{world},{-world},{world} [EPSG:3857]"}
    with pytest.raises(QgsProcessingException, match=r"\(IN_RASTER\): .*'wms' provider.*give CELL_SIZE"):
        run_export(params)
    result = run_export(dict(params, CELL_SIZE=2 * world / 256))
    assert result["NUM_TILES"] == 4
    first = read(chips(str(tmp_path / "web"))[0])
    np.testing.assert_array_equal(first[0], pattern[:128, :128])
    np.testing.assert_array_equal(first[2], pattern[:128, :128] + 120)
    assert os.listdir(job_folders) == []
