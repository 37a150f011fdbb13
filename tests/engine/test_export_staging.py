"""Staging that cannot leak (issue 18 item 4): the hidden ``.<name>.partial-<hex>`` folder a killed
export left (beside OUT_FOLDER, or inside it when appending) is removed by the next run into the
same destination and named in its log; a staging folder whose run is still going (its lock held)
is left alone; none is ever taken for output. And the job file the Processing algorithm hands
to the worker (``dl_engine.export.job``) gives back the same configuration."""

import os
import subprocess
import sys

import engine_helpers as h
from dl_engine.export import run_export
from dl_engine.export.config import ClassInfo, RasterLabels
from dl_engine.export.job import read_geometries, read_job, write_job
from dl_engine.export.staging import LOCK_SUFFIX, is_staging

REMOVED = "removed staging left by an interrupted run: "


def abandoned(parent, out_name, hex8="0badc0de", with_lock=True):
    """What a run killed mid-export leaves: the staging folder with chips, and its lock file."""
    staging = parent / f".{out_name}.partial-{hex8}"
    (staging / "images").mkdir(parents=True)
    for i in range(3):
        (staging / "images" / f"{i:09d}.tif").write_bytes(b"half a chip")
    if with_lock:
        (parent / (staging.name + LOCK_SUFFIX)).write_text("12345")
    return staging


def export_logged(raster, out, **kw):
    logs = []
    result = run_export(h.config(raster, out, **kw), h.recording_events(logs=logs))
    return result, logs


def test_a_killed_runs_staging_is_removed_by_the_next_run_and_named(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "chips"
    left = abandoned(tmp_path, "chips")
    older = abandoned(tmp_path, "chips", "0000beef", with_lock=False)  # from a version without lock files
    other = abandoned(tmp_path, "other")  # another destination's: not ours to judge
    result, logs = export_logged(raster, out, metadata_format="Export_Tiles")
    assert result.num_tiles > 0
    assert f"{REMOVED}{left}" in logs and f"{REMOVED}{older}" in logs
    assert not left.exists() and not older.exists()
    assert not (tmp_path / (left.name + LOCK_SUFFIX)).exists()
    assert other.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name) == \
        sorted([other.name, other.name + LOCK_SUFFIX])
    assert len(h.chips(out)) == result.num_tiles  # none of the abandoned half chips


def test_a_staging_whose_run_is_alive_is_left_alone(tmp_path, rgb):
    raster, _ = rgb
    live = abandoned(tmp_path, "chips")
    lock = tmp_path / (live.name + LOCK_SUFFIX)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, sys, time\n"
                               "f = open(sys.argv[1], 'a')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "print('held', flush=True)\n"
                               "time.sleep(60)\n", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result, logs = export_logged(raster, tmp_path / "chips", metadata_format="Export_Tiles")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert result.num_tiles > 0
    assert live.exists() and lock.exists()
    assert not [line for line in logs if line.startswith(REMOVED)]


def test_an_append_removes_the_staging_a_killed_append_left_inside_the_export(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    first = h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    left = abandoned(out, "out")
    result, logs = export_logged(raster, out, metadata_format="PASCAL_VOC_rectangles",
                                 labels=h.vector_labels(geoms, values), start_index=first.next_tile_index)
    assert f"{REMOVED}{left}" in logs
    assert not h.staging_left(out) and not h.staging_left(tmp_path)
    assert len(h.chips(out)) == first.num_tiles + result.num_tiles == h.stats_json(out)["NumTiles"]


def test_staging_names_are_never_output(tmp_path, rgb):
    """An OUT_FOLDER that holds only staging entries is empty to a new export."""
    assert is_staging(".chips.partial-0badc0de") and is_staging(".chips.partial-0badc0de.lock")
    assert not is_staging("chips") and not is_staging(".chips.partial-notahex")
    raster, _ = rgb
    out = tmp_path / "chips"
    out.mkdir()
    (out / ".chips.partial-0badc0de.lock").write_text("")  # a lone lock: its run died after its folder went
    result, _ = export_logged(raster, out, metadata_format="Export_Tiles")
    assert result.num_tiles > 0 and not h.staging_left(out)


def test_the_job_file_gives_back_the_configuration(tmp_path, rects):
    _, geoms, values = rects
    labels = h.vector_labels(geoms, values, [ClassInfo(1, "Tree", (10, 200, 30)), ClassInfo(2)])
    config = h.config("/data/image.tif", tmp_path / "out", metadata_format="Panoptic_Segmentation", labels=labels,
                      instance_labels=h.vector_labels(geoms[:2], [7, 7]), mask_wkb=[geoms[0].wkb],
                      extent=(1.0, 2.0, 3.0, 4.0), band_names=["red", "green", "blue"], rotation_angle=45.0)
    job = write_job(str(tmp_path), config)
    back = read_job(job)
    assert back == config
    raster_labels = h.config("/data/image.tif", tmp_path / "out", metadata_format="Classified_Tiles",
                             labels=RasterLabels("/data/classes.tif", [ClassInfo(3, "Water", (0, 0, 255))], band=2))
    folder = tmp_path / "second"
    folder.mkdir()
    assert read_job(write_job(str(folder), raster_labels)) == raster_labels
    # Compact: the geometries' bytes and 12 bytes a feature, no pickle.
    size = os.path.getsize(tmp_path / "labels.wkb")
    assert size == 16 + sum(len(g.wkb) + 12 for g in geoms)
    assert read_geometries(str(tmp_path / "labels.wkb")) == ([g.wkb for g in geoms], list(values))
