"""dl_engine.raster_info: one description of an input raster (1-based alpha band) for export and
inference, one pixel-alignment test, and the scope of the NotGeoreferencedWarning filter."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning

import engine_helpers as h
from engine_helpers import T0
from dl_engine.raster_info import aligned_offset, read_info

SIZE = 96
TILE = 32


@pytest.fixture
def rgba(tmp_path):
    """96 x 96 RGBA GeoTIFF (band 4 alpha): chip (32, 0) fully transparent, plus a stripe."""
    data = h.random_image(4, SIZE, SIZE, seed=21)
    data[3] = 255
    data[3, 0:TILE, TILE:2 * TILE] = 0
    data[3, 50:53, :] = 0
    path = tmp_path / "rgba.tif"
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=4, dtype="uint8",
                       transform=T0, crs=h.CRS_UTM, photometric="RGB", alpha="YES") as dst:
        dst.write(data)
    return str(path), data


def test_the_alpha_band_is_one_based_and_not_imagery(rgba):
    path, _ = rgba
    info = read_info(path)
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == ColorInterp.alpha
    assert (info.count, info.alpha_band, info.data_bands) == (4, 4, [1, 2, 3])
    assert (info.width, info.height, info.transform) == (SIZE, SIZE, T0)
    plain = read_info(h.write_raster(os.path.join(os.path.dirname(path), "rgb.tif"), rgba[1][:3]))
    assert (plain.alpha_band, plain.data_bands) == (None, [1, 2, 3])


def test_export_and_inference_mask_the_same_transparent_pixels(rgba, tmp_path):
    from dl_engine.export.grid import build_grid
    from dl_engine.export.raster_io import GridReader, valid_mask
    from dl_engine.infer.grid import plan_grid
    from dl_engine.infer.source import WindowSource

    path, data = rgba
    opaque = data[3] > 0
    info = read_info(path)

    # inference: the model sees the three image bands; alpha 0 is not valid
    with rasterio.open(path) as src:
        infer_grid = plan_grid(src, None, None)
        export_grid = build_grid(src, None, None, "MAP_SPACE")
    source = WindowSource(info, infer_grid, context=0)
    try:
        pixels, infer_valid = source.read(0, 0, SIZE, SIZE)
    finally:
        source.close()
    np.testing.assert_array_equal(pixels, data[:3])
    np.testing.assert_array_equal(infer_valid, opaque)

    # export: the chip reader's NoData mask, from the same RasterInfo
    reader = GridReader(path, export_grid, Resampling.bilinear)
    try:
        all_bands, inside = reader.read(0, 0, SIZE, SIZE)
    finally:
        reader.close()
    export_valid = valid_mask(all_bands, inside, info.nodata, info.alpha_band)
    for band in export_valid:
        np.testing.assert_array_equal(band, infer_valid)

    # a whole export: the band is named "alpha", transparent pixels are NoData in the statistics,
    # and the fully transparent chip is not written
    out = tmp_path / "out"
    result = h.export(path, out, metadata_format="Export_Tiles", tile_size_x=TILE, tile_size_y=TILE,
                      stride_x=TILE, stride_y=TILE)
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert result.num_tiles == 8 and (TILE, 0) not in positions
    assert h.emd(out)["InputRastersProps"]["BandNames"][3] == "alpha"
    stats = h.stats_json(out)["BandStatsState"]
    assert stats[0]["Num"] == opaque.sum()
    assert stats[0]["M1"] == pytest.approx(data[0][opaque].astype(float).mean(), rel=1e-9)


def test_aligned_offset():
    g = T0 * Affine.translation(5, 7)
    assert aligned_offset(T0, g) == (5, 7)
    assert aligned_offset(T0, T0 * Affine.translation(-3, 0)) == (-3, 0)
    assert aligned_offset(T0, T0 * Affine.translation(0.5, 0)) is None  # half a pixel off
    assert aligned_offset(T0, T0 * Affine.scale(2)) is None  # another resolution


def test_importing_the_engine_leaves_the_warning_filters_alone():
    code = ("import warnings; import dl_engine.raster_info, dl_engine.export.exporter, dl_engine.infer.source; "
            "from rasterio.errors import NotGeoreferencedWarning as W; "
            "assert not [f for f in warnings.filters if f[2] is W], warnings.filters")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(h.REPO))


def test_runs_silence_the_georeferencing_warning_only_while_they_run(tmp_path):
    from dl_engine.export import run_export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        raster = tmp_path / "pixels.tif"
        with rasterio.open(raster, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8") as dst:
            dst.write(h.random_image(3, 64, 64, seed=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        run_export(h.config(raster, tmp_path / "out", metadata_format="Export_Tiles", reference_system="PIXEL_SPACE",
                            tile_size_x=32, tile_size_y=32, stride_x=32, stride_y=32))
        assert warnings.filters == before
        assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
        with rasterio.open(raster):  # outside a run, rasterio's warning is the caller's again
            pass
    assert [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
