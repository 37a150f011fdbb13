"""The export under faults and odd input (issue 18 items 2, 5, 6 and 7), at engine level so it
holds wherever the export runs: a full disk (a real small tmpfs where the machine lets us mount
one; a writer that raises ENOSPC everywhere), a read-only folder, a path too long, tiles that
would not fit in memory with the raster's own bands, a raster without a CRS, a stride larger
than the tile; and a property test over tiny exports (sizes, strides, extents, band counts,
data types, label values): each run either writes a correct export or raises InputError naming
a parameter, and never leaves staging behind."""

import errno
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dl_engine import memory_budget
from dl_engine.errors import InputError
from dl_engine.events import Events
from dl_engine.export import ExportConfig, VectorLabels, run_export

from reliability_helpers import CRS_UTM, box_in_pixels, raster, staging_left

EXPORT_PARAMETERS = {"IN_RASTER", "OUT_FOLDER", "IN_CLASS_DATA", "TILE_SIZE_X", "TILE_SIZE_Y", "STRIDE_X", "STRIDE_Y",
                     "EXTENT", "IMAGE_CHIP_FORMAT", "METADATA_FORMAT", "START_INDEX", "CELL_SIZE", "CLASS_VALUE_FIELD"}


def labels(*boxes, values=None) -> VectorLabels:
    return VectorLabels([shapely.to_wkb(box_in_pixels(*b)) for b in boxes], values or [1] * len(boxes))


def export(tmp_path, raster_path, out=None, fmt="Classified_Tiles", boxes=((4, 4, 20, 20),), **kw):
    """run_export with one worker thread; returns (result, warnings logged)."""
    warnings = []
    events = Events(sink=lambda e: warnings.append(e["message"]) if e.get("level") == "warning" else None)
    kw.setdefault("workers", 1)
    config = ExportConfig(str(raster_path), str(out or tmp_path / "out"), fmt, labels(*boxes) if boxes else None,
                          **kw)
    return run_export(config, events), warnings


def refused(tmp_path, raster_path, out=None, **kw) -> InputError:
    with pytest.raises(InputError) as raised:
        export(tmp_path, raster_path, out, **kw)
    return raised.value


# ---- full disk, read-only, permissions, long paths ----------------------------------------------------

@contextmanager
def tmpfs(folder: Path, options: str):
    """A tmpfs mounted at ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(mounted.stderr or mounted.stdout).strip() or 'not permitted'}); "
                    "the ENOSPC test with a failing writer covers the message")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_real_full_disk_names_out_folder_and_leaves_no_staging(tmp_path):
    source = raster(tmp_path / "r.tif", width=200, height=200, bands=3, dtype="uint16")
    with tmpfs(tmp_path / "small", "size=256k") as disk:
        error = refused(tmp_path, source, disk / "export", tile_size_x=64, tile_size_y=64, stride_x=32, stride_y=32,
                        boxes=((0, 0, 200, 200),), output_nofeature_tiles=True)
        assert error.parameter == "OUT_FOLDER" and "the disk is full" in error.message
        assert "needed" in error.message and "free" in error.message
        assert os.listdir(disk) == [] and not staging_left(disk)


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     rasterio.errors.RasterioIOError("TIFFAppendToStrip: No space left on device")])
def test_a_writer_that_hits_a_full_disk_names_out_folder(tmp_path, monkeypatch, failure):
    from dl_engine.export import chips

    def full(*args, **kwargs):
        raise failure

    monkeypatch.setattr(chips, "write_chip", full)
    error = refused(tmp_path, raster(tmp_path / "r.tif"), tile_size_x=16, tile_size_y=16, stride_x=16, stride_y=16)
    assert error.parameter == "OUT_FOLDER" and "the disk is full" in error.message and "needed" in error.message
    assert "Errno" not in error.message
    assert not (tmp_path / "out").exists() and not staging_left(tmp_path)


def test_disk_full_while_writing_the_esri_files(tmp_path, monkeypatch):
    from dl_engine.export import esri_files

    def full(path, text, newline="\n"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(esri_files, "write_text", full)
    error = refused(tmp_path, raster(tmp_path / "r.tif"), tile_size_x=16, tile_size_y=16, stride_x=16, stride_y=16)
    assert error.parameter == "OUT_FOLDER" and "the disk is full" in error.message
    assert not (tmp_path / "out").exists() and not staging_left(tmp_path)


def test_read_only_folder_is_refused_before_the_export_starts(tmp_path):
    source = raster(tmp_path / "r.tif")
    with tmpfs(tmp_path / "ro", "size=1m,ro") as disk:
        error = refused(tmp_path, source, disk / "export")
        assert error.parameter == "OUT_FOLDER" and "read-only" in error.message
        assert "Errno" not in error.message


def test_permission_denied_names_the_parameter(tmp_path):
    from dl_engine.destinations import os_error

    error = os_error("OUT_FOLDER", PermissionError(errno.EACCES, "Permission denied", "/data/x"), "/data")
    assert error.parameter == "OUT_FOLDER" and "permission denied" in error.message
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        error = refused(tmp_path, raster(tmp_path / "r.tif"), locked / "export")
        assert error.parameter == "OUT_FOLDER" and "not writable" in error.message


def test_a_path_too_long_is_named(tmp_path):
    error = refused(tmp_path, raster(tmp_path / "r.tif"), tmp_path / ("x" * 300))
    assert error.parameter == "OUT_FOLDER" and "longer than" in error.message


# ---- sizes against memory, with the raster's own bands ----------------------------------------------

def test_tile_too_big_for_the_rasters_bands_is_refused_before_writing(tmp_path, monkeypatch):
    source = raster(tmp_path / "r.tif", bands=4, dtype="float32")
    monkeypatch.setenv(memory_budget.ENV_OVERRIDE, str(64 << 20))
    config = ExportConfig(source, str(tmp_path / "out"), "Classified_Tiles", labels((4, 4, 20, 20)),
                          tile_size_x=1024, tile_size_y=1024, workers=1)
    config.check()  # one 8-bit band would fit: the value alone is plausible
    with pytest.raises(InputError) as raised:
        run_export(config)
    assert raised.value.parameter == "TILE_SIZE_X" and "4-band chip of 4-byte pixels" in raised.value.message
    assert "largest value that fits is" in raised.value.message
    assert not (tmp_path / "out").exists()


def test_huge_tile_is_refused_not_a_memory_error(tmp_path):
    error = refused(tmp_path, raster(tmp_path / "r.tif"), tile_size_x=100_000, tile_size_y=100_000)
    assert error.parameter == "TILE_SIZE_X" and "would need" in error.message and not staging_left(tmp_path)


# ---- warnings ------------------------------------------------------------------------------------------

def test_stride_larger_than_the_tile_is_warned(tmp_path):
    result, warnings = export(tmp_path, raster(tmp_path / "r.tif"), tile_size_x=8, tile_size_y=8, stride_x=20,
                              stride_y=8, boxes=((0, 0, 40, 40),))
    assert result.num_tiles > 0
    assert any("STRIDE_X 20 is larger than TILE_SIZE_X 8" in w and "skipped" in w for w in warnings)
    assert not any("STRIDE_Y" in w for w in warnings)


def test_raster_without_crs_takes_the_label_layers_and_says_so(tmp_path):
    source = raster(tmp_path / "r.tif", crs=None)
    result, warnings = export(tmp_path, source, tile_size_x=16, tile_size_y=16, stride_x=16, stride_y=16,
                              assumed_crs="EPSG:32617")
    assert any("IN_RASTER has no coordinate reference system" in w and "EPSG:32617" in w for w in warnings)
    chip = sorted((tmp_path / "out" / "images").glob("*.tif"))[0]
    with rasterio.open(chip) as src:
        assert src.crs == CRS_UTM  # the chips carry the assumed CRS


def test_raster_without_crs_and_nothing_assumed_warns_chips_carry_none(tmp_path):
    result, warnings = export(tmp_path, raster(tmp_path / "r.tif", crs=None), tile_size_x=16, tile_size_y=16,
                              stride_x=16, stride_y=16)
    assert result.num_tiles > 0 and any("carry none" in w for w in warnings)


def test_raster_without_crs_whose_labels_lie_elsewhere_blames_the_raster(tmp_path):
    error = refused(tmp_path, raster(tmp_path / "r.tif", crs=None), boxes=((10_000, 10_000, 10_020, 10_020),),
                    assumed_crs="EPSG:32617")
    assert error.parameter == "IN_RASTER" and "no coordinate reference system" in error.message


# ---- property: tiny exports ----------------------------------------------------------------------------

PIXEL_BOX = st.tuples(st.integers(-10, 60), st.integers(-10, 60), st.integers(1, 30), st.integers(1, 30)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))
INSIDE_BOX = st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(2, 30), st.integers(2, 30)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))  # on the raster's first pixels: mostly exported


@st.composite
def tiny_exports(draw):
    return dict(
        width=draw(st.integers(1, 48)), height=draw(st.integers(1, 48)), bands=draw(st.integers(1, 4)),
        dtype=draw(st.sampled_from(["uint8", "uint16", "float32"])),
        tile_x=draw(st.integers(-1, 64)), tile_y=draw(st.integers(1, 64)),
        stride_x=draw(st.integers(0, 80)), stride_y=draw(st.integers(1, 80)),
        boxes=draw(st.one_of(st.lists(INSIDE_BOX, min_size=1, max_size=3), st.lists(PIXEL_BOX, max_size=3))),
        values=draw(st.lists(st.one_of(st.integers(1, 300), st.integers(-1, 0)), min_size=3, max_size=3)),
        fmt=draw(st.sampled_from(["Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles", "Export_Tiles"])),
        extent=draw(st.one_of(st.none(), PIXEL_BOX)), nofeature=draw(st.booleans()),
        image_format=draw(st.sampled_from(["TIFF", "TIFF", "TIFF", "PNG"])))


def check_tiny_export(tmp_path_factory, case):
    folder = tmp_path_factory.mktemp("tiny")
    source = raster(folder / "r.tif", case["width"], case["height"], case["bands"], case["dtype"])
    extent = None
    if case["extent"] is not None:
        e = box_in_pixels(*case["extent"]).bounds
        extent = (e[0], e[1], e[2], e[3])
    boxes = case["boxes"]
    config = ExportConfig(source, str(folder / "out"), case["fmt"],
                          labels(*boxes, values=case["values"][:len(boxes)]) if boxes else None,
                          image_format=case["image_format"], tile_size_x=case["tile_x"], tile_size_y=case["tile_y"],
                          stride_x=case["stride_x"], stride_y=case["stride_y"], extent=extent,
                          output_nofeature_tiles=case["nofeature"], workers=1)
    try:
        result = run_export(config)
    except InputError as error:
        event(f"refused: {error.parameter}")
        assert error.parameter in EXPORT_PARAMETERS, error
        assert not (folder / "out").exists()
    else:
        event("exported")
        images = sorted((folder / "out" / "images").iterdir())
        chips = [p for p in images if p.suffix in (".tif", ".png")]
        assert result.num_tiles == len(chips) > 0
        map_lines = (folder / "out" / "map.txt").read_text().splitlines()
        assert len(map_lines) == result.num_tiles
        with rasterio.open(chips[0]) as src:
            assert (src.width, src.height) == (case["tile_x"], case["tile_y"])
            assert src.count == case["bands"]
    assert not staging_left(folder)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=tiny_exports())
def test_tiny_exports_succeed_or_name_a_parameter(tmp_path_factory, case):
    check_tiny_export(tmp_path_factory, case)


@pytest.mark.heavy
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=tiny_exports())
def test_tiny_exports_succeed_or_name_a_parameter_200(tmp_path_factory, case):
    check_tiny_export(tmp_path_factory, case)


# ---- inference writes -----------------------------------------------------------------------------------

def test_inference_write_failure_names_its_output(tmp_path, monkeypatch):
    from dl_engine.infer import run as infer_run
    from dl_engine.infer.config import InferConfig

    def full(config, events, cancel):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(infer_run, "_run", full)
    warnings = []
    config = InferConfig("classify_pixels", raster(tmp_path / "r.tif", crs=None), str(tmp_path / "m.dlpk"),
                         str(tmp_path / "o.tif"))
    with pytest.raises(InputError) as raised:
        infer_run.run_inference(config, Events(sink=lambda e: warnings.append(e.get("message", ""))))
    assert raised.value.parameter == "OUT_CLASSIFIED_RASTER" and "the disk is full" in raised.value.message
    assert any("IN_RASTER has no coordinate reference system" in w for w in warnings)
