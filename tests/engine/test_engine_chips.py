"""Chips: georeferencing on the raster grid, pixels, padding, coverage, and the
options that change which chips are cut (OUTPUT_NOFEATURE_TILES, NoData,
EXTENT, CELL_SIZE, REFERENCE_SYSTEM, IN_RASTER2)."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.warp import reproject
from rasterio.enums import Resampling

import engine_helpers as h
from engine_helpers import SIZE, STARTS, T0, TILE


def _expected_chip(data: np.ndarray, col: int, row: int, tile: int, fill) -> np.ndarray:
    out = np.full((data.shape[0], tile, tile), fill, dtype=data.dtype)
    win = data[:, row:row + tile, col:col + tile]
    out[:, :win.shape[1], :win.shape[2]] = win
    return out


def test_chips_are_on_the_raster_grid_with_source_pixels(tmp_path, rgb):
    raster, data = rgb
    out = tmp_path / "out"
    res = h.export(raster, out, metadata_format="Export_Tiles")
    cs = h.chips(out)
    assert res.num_tiles == len(cs) == 25
    assert res.next_tile_index == 25
    positions = set()
    for c in cs:
        assert c.image.name == f"{c.index:012d}.tif"
        pixels, meta = h.read(c.image)
        assert meta["crs"] == h.CRS_UTM
        assert (meta["width"], meta["height"], meta["count"], meta["dtype"]) == (TILE, TILE, 3, "uint8")
        col, row = h.offset_of(meta["transform"], T0)
        positions.add((col, row))
        # Pixels are the source window; outside the raster (right/bottom edges) 0 (no NoData set).
        np.testing.assert_array_equal(pixels, _expected_chip(data, col, row, TILE, 0))
        # World file with the pixel-centre convention and 10 decimals.
        tfw = c.image.with_suffix(".tfw")
        assert tfw.is_file()
        assert h.world_file_lines(tfw) == h.expected_world_file(meta["transform"])
    assert positions == {(c, r) for c in STARTS for r in STARTS}
    # Chips are numbered row by row.
    assert [c.index for c in cs] == list(range(25))
    order = sorted(positions, key=lambda p: (p[1], p[0]))
    assert [h.offset_of(h.read(c.image)[1]["transform"], T0) for c in cs] == order


def test_every_pixel_lies_in_some_chip_with_overlapping_stride(tmp_path, rgb):
    raster, data = rgb
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", tile_size_x=80, tile_size_y=70, stride_x=50, stride_y=45)
    covered = np.zeros((SIZE, SIZE), bool)
    for c in h.chips(out):
        pixels, meta = h.read(c.image)
        assert (meta["width"], meta["height"]) == (80, 70)
        col, row = h.offset_of(meta["transform"], T0)
        assert col % 50 == 0 and row % 45 == 0
        np.testing.assert_array_equal(pixels[:, :SIZE - row, :SIZE - col][:, :70, :80],
                                      data[:, row:row + 70, col:col + 80])
        covered[row:row + 70, col:col + 80] = True
    assert covered.all()


def test_edge_chips_are_padded_with_nodata(tmp_path, nodata_raster):
    raster, data = nodata_raster
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles")
    edge = 0
    for c in h.chips(out):
        pixels, meta = h.read(c.image)
        assert meta["nodata"] == 255
        col, row = h.offset_of(meta["transform"], T0)
        np.testing.assert_array_equal(pixels, _expected_chip(data, col, row, TILE, 255))
        if col == 256 or row == 256:
            edge += 1
            assert (pixels[:, SIZE - row:, :] == 255).all() and (pixels[:, :, SIZE - col:] == 255).all()
    assert edge == 9


def test_chips_that_are_all_nodata_are_skipped(tmp_path, nodata_raster):
    raster, _ = nodata_raster
    out = tmp_path / "out"
    res = h.export(raster, out, metadata_format="Export_Tiles", output_nofeature_tiles=True)
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert (64, 64) not in positions
    assert positions == {(c, r) for c in STARTS for r in STARTS} - {(64, 64)}
    assert res.num_tiles == 24
    # The skipped chip still uses its number (as Pro 3.x does): indices have a gap.
    assert 6 not in [c.index for c in h.chips(out)]
    assert h.stats_json(out)["NextTileIndex"] == 25


def test_labels_on_nodata_only_do_not_make_a_chip(tmp_path, nodata_raster):
    raster, _ = nodata_raster
    out = tmp_path / "out"
    geoms = [h.pix_box(70.2, 70.3, 120.4, 120.6), h.pix_box(10.2, 10.3, 20.4, 20.6)]
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, [1, 1]))
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert positions == {(0, 0)}


def _chips_with_features(geoms, tile=TILE, starts=STARTS):
    found = set()
    for r in starts:
        for c in starts:
            box = h.pix_box(c, r, min(c + tile, SIZE), min(r + tile, SIZE))
            if any(shapely.intersection(g, box).area > 0 for g in geoms):
                found.add((c, r))
    return found


def test_output_nofeature_tiles(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out_f, out_t = tmp_path / "only_features", tmp_path / "all"
    r_f = h.export(raster, out_f, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    r_t = h.export(raster, out_t, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values),
                   output_nofeature_tiles=True)
    expected = _chips_with_features(geoms)
    got_f = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out_f)}
    assert got_f == expected
    assert r_f.num_tiles == len(expected) < 25
    got_t = h.chips(out_t)
    assert r_t.num_tiles == len(got_t) == 25
    empty = [c for c in got_t if not h.voc_objects(c.label)]
    assert len(empty) == 25 - len(expected)
    assert h.stats_json(out_f)["NumTiles"] == len(expected)
    assert h.stats_json(out_t)["NumTiles"] == 25
    assert h.stats_json(out_f)["NextTileIndex"] == h.stats_json(out_t)["NextTileIndex"] == 25


def test_extent_restricts_chips(tmp_path, rgb):
    raster, data = rgb
    out = tmp_path / "out"
    # Pixel columns 100..250, rows 50..200, given a little inside the pixel edges (snapped outwards).
    x0, y1 = T0 * (100.3, 50.2)
    x1, y0 = T0 * (249.6, 199.7)
    h.export(raster, out, metadata_format="Export_Tiles", extent=(x0, y0, x1, y1))
    grid_t = T0 * Affine.translation(100, 50)
    positions = set()
    for c in h.chips(out):
        pixels, meta = h.read(c.image)
        col, row = h.offset_of(meta["transform"], grid_t)
        positions.add((col, row))
        w, hh = min(TILE, 150 - col), min(TILE, 150 - row)
        np.testing.assert_array_equal(pixels[:, :hh, :w], data[:, 50 + row:50 + row + hh, 100 + col:100 + col + w])
    assert positions == {(c, r) for c in (0, 64, 128) for r in (0, 64, 128)}


def test_extent_partly_outside_raster_is_cut_to_it(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "out"
    x0, y1 = T0 * (-500, -500)
    x1, y0 = T0 * (100, 100)
    h.export(raster, out, metadata_format="Export_Tiles", extent=(x0, y0, x1, y1))
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert positions == {(0, 0), (64, 0), (0, 64), (64, 64)}


def test_cell_size_resamples(tmp_path):
    # A smooth ramp so bilinear resampling has a well-defined answer.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    data = np.stack([(xx * 0.5 + yy * 0.25) % 250, (yy * 0.6) % 250, np.full_like(xx, 77)]).astype("uint8")
    raster = h.write_raster(tmp_path / "ramp.tif", data)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", cell_size=1.0)
    cs = h.chips(out)
    grid_t = Affine(1.0, 0, T0.c, 0, -1.0, T0.f)
    positions = set()
    for c in cs:
        pixels, meta = h.read(c.image)
        assert meta["crs"] == h.CRS_UTM
        assert meta["transform"].a == 1.0 and meta["transform"].e == -1.0
        col, row = h.offset_of(meta["transform"], grid_t)
        positions.add((col, row))
        assert h.world_file_lines(c.image.with_suffix(".tfw")) == h.expected_world_file(meta["transform"])
        expected = np.zeros((3, TILE, TILE), "uint8")
        with rasterio.open(raster) as src:
            for b in range(3):
                reproject(rasterio.band(src, b + 1), expected[b], dst_transform=meta["transform"],
                          dst_crs=src.crs, resampling=Resampling.bilinear)
        w, hh = min(TILE, 150 - col), min(TILE, 150 - row)
        diff = np.abs(pixels[:, :hh, :w].astype(int) - expected[:, :hh, :w].astype(int))
        assert diff.max() <= 2
        assert (pixels[2, :hh, :w] == 77).all()
    # 150 x 150 cells of 1 m -> tile starts 0, 64, 128 (the last padded).
    assert positions == {(c, r) for c in (0, 64, 128) for r in (0, 64, 128)}
    e = h.emd(out)
    assert e["MinCellSize"]["x"] == e["MinCellSize"]["y"] == 1.0
    assert e["MinCellSize"]["spatialReference"]["wkid"] == 32617


def test_pixel_space_chips(tmp_path, rgb):
    raster, data = rgb
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", reference_system="PIXEL_SPACE")
    assert h.emd(out)["ImageSpaceUsed"] == "PIXEL_SPACE"
    positions = set()
    for c in h.chips(out):
        pixels, meta = h.read(c.image)
        assert meta["crs"] is None
        t = meta["transform"]
        # Image space: x = column, y = -row of the source image, 1 unit per pixel.
        assert (t.a, t.b, t.d, t.e) == (1, 0, 0, -1)
        col, row = int(t.c), int(-t.f)
        assert (col, row) == (t.c, -t.f)
        positions.add((col, row))
        np.testing.assert_array_equal(pixels, _expected_chip(data, col, row, TILE, 0))
    assert positions == {(c, r) for c in STARTS for r in STARTS}


def test_map_space_is_the_default_in_emd(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles")
    assert h.emd(out)["ImageSpaceUsed"] == "MAP_SPACE"


def test_additional_raster_goes_to_images2(tmp_path, rgb, rects):
    raster, data = rgb
    data2 = h.random_image(1, dtype="uint16", seed=5, low=1000, high=60000)
    raster2 = h.write_raster(tmp_path / "second.tif", data2)
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values), raster2=raster2)
    cs = h.chips(out)
    assert cs
    lines = h.map_lines(out)
    for c, line in zip(cs, lines):
        stem = f"{c.index:012d}"
        assert line == f"images\\{stem}.tif images2\\{stem}.tif  labels\\{stem}.tif "
        p2, m2 = h.read(c.image2)
        _, m1 = h.read(c.image)
        assert m2["transform"] == m1["transform"] and m2["crs"] == m1["crs"]
        assert (m2["count"], m2["dtype"]) == (1, "uint16")
        col, row = h.offset_of(m2["transform"], T0)
        np.testing.assert_array_equal(p2, _expected_chip(data2, col, row, TILE, 0))
        assert c.image2.with_suffix(".tfw").is_file()
    s = h.stats_json(out)
    e = h.emd(out)
    assert "BandStatsState2" in s and "InputRastersProps2" in s
    assert "AllTilesStats2" in e and "InputRastersProps2" in e
    assert e["InputRastersProps2"]["BandNames"] == [""]
    # Band statistics of images2 over every exported chip (padding excluded).
    vals = []
    for c in cs:
        p2, m2 = h.read(c.image2)
        col, row = h.offset_of(m2["transform"], T0)
        vals.append(p2[0, :SIZE - row, :SIZE - col].ravel())
    vals = np.concatenate(vals).astype(float)
    st = s["BandStatsState2"][0]
    assert st["Num"] == vals.size
    assert st["M1"] == pytest.approx(vals.mean(), rel=1e-9)
    assert st["M2"] == pytest.approx(((vals - vals.mean()) ** 2).sum(), rel=1e-9)
    assert st["Min"] == vals.min() and st["Max"] == vals.max()
    ats = e["AllTilesStats2"][0]
    assert ats["Mean"] == pytest.approx(vals.mean(), rel=1e-9)
    assert ats["StdDev"] == pytest.approx(vals.std(), rel=1e-9)


def test_export_tiles_without_labels(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles")
    assert not (out / "labels").exists()
    assert all(line == f"images\\{i:012d}.tif " for i, line in enumerate(h.map_lines(out)))
    s = h.stats_json(out)
    assert s["MetaDataMode"] == "Export_Tiles"
    assert s["NumClasses"] == 0
    assert "Classes" not in h.emd(out)


def test_pixel_space_with_extent_keeps_source_pixel_offsets(tmp_path, rgb):
    raster, data = rgb
    out = tmp_path / "out"
    x0, y1 = T0 * (100, 40)
    x1, y0 = T0 * (228, 168)
    h.export(raster, out, metadata_format="Export_Tiles", reference_system="PIXEL_SPACE", extent=(x0, y0, x1, y1))
    positions = set()
    for c in h.chips(out):
        pixels, meta = h.read(c.image)
        t = meta["transform"]
        col, row = int(t.c), int(-t.f)
        positions.add((col, row))
        np.testing.assert_array_equal(pixels, data[:, row:row + TILE, col:col + TILE])
    assert positions == {(100, 40), (164, 40), (100, 104), (164, 104)}


def test_raster_in_geographic_crs(tmp_path):
    t = Affine(0.0001, 0, -81.2, 0, -0.0001, 30.1)
    data = h.random_image(3, seed=12)
    raster = h.write_raster(tmp_path / "wgs84.tif", data, transform=t, crs=rasterio.crs.CRS.from_epsg(4326))
    g = h.pix_box(10.25, 20.5, 40.75, 50.25, transform=t)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels([g], [1]))
    (c,) = h.chips(out)
    pixels, meta = h.read(c.image)
    assert meta["crs"].to_epsg() == 4326
    assert h.offset_of(meta["transform"], t) == (0, 0)
    np.testing.assert_array_equal(pixels, data[:, :TILE, :TILE])
    assert h.world_file_lines(c.image.with_suffix(".tfw")) == h.expected_world_file(meta["transform"])
    ((v, box),) = h.voc_objects(c.label)
    assert box == pytest.approx((10.25, 20.5, 40.75, 50.25), abs=0.0051)
    assert h.emd(out)["MinCellSize"]["spatialReference"]["wkid"] == 4326


def test_alpha_band_pixels_are_nodata(tmp_path):
    from rasterio.enums import ColorInterp

    data = h.random_image(4, seed=13)
    data[3] = 255
    data[3, 64:128, 0:64] = 0  # chip (0, 64) fully transparent
    data[3, 0:10, :] = 0  # a transparent stripe
    path = tmp_path / "rgba.tif"
    h.write_raster(path, data, photometric="RGB", alpha="YES")
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == ColorInterp.alpha
    out = tmp_path / "out"
    h.export(path, out, metadata_format="Export_Tiles")
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert (0, 64) not in positions and len(positions) == 24
    s = h.stats_json(out)
    opaque = data[3] > 0
    assert s["BandStatsState"][0]["Num"] == opaque.sum()
    assert s["BandStatsState"][0]["M1"] == pytest.approx(data[0][opaque].astype(float).mean(), rel=1e-9)
    assert h.emd(out)["InputRastersProps"]["BandNames"][3] == "alpha"


def test_cell_size_with_labels(tmp_path, rgb, shapes):
    raster, _ = rgb
    geoms, values = shapes
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values), cell_size=0.75)
    grid_t = Affine(0.75, 0, T0.c, 0, -0.75, T0.f)
    n = 200  # 150 m / 0.75 m
    for c in h.chips(out):
        lab, meta = h.read(c.label)
        _, imeta = h.read(c.image)
        assert meta["transform"] == imeta["transform"]
        col, row = h.offset_of(meta["transform"], grid_t)
        expected = rasterio.features.rasterize(list(zip(geoms, values)), out_shape=(TILE, TILE),
                                               transform=meta["transform"], dtype="uint8")
        expected[max(0, n - row):, :] = 0
        expected[:, max(0, n - col):] = 0
        np.testing.assert_array_equal(lab[0], expected)


def test_labels_outside_extent_are_not_exported(tmp_path, rgb):
    raster, _ = rgb
    inside = h.pix_box(20.2, 20.3, 40.4, 40.6)
    outside = h.pix_box(200.2, 200.3, 240.4, 240.6)
    x0, y1 = T0 * (0, 0)
    x1, y0 = T0 * (128, 128)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels([inside, outside], [1, 2]),
             extent=(x0, y0, x1, y1))
    (c,) = h.chips(out)
    assert [v for v, _ in h.voc_objects(c.label)] == [1]
    assert [cl["ClassValue"] for cl in h.stats_json(out)["Classes"]] == [1]


def test_tile_larger_than_raster_gives_one_padded_chip(tmp_path, rgb):
    raster, data = rgb
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", tile_size_x=512, tile_size_y=400, stride_x=512,
             stride_y=400)
    (c,) = h.chips(out)
    pixels, meta = h.read(c.image)
    assert (meta["width"], meta["height"]) == (512, 400)
    assert h.offset_of(meta["transform"], T0) == (0, 0)
    np.testing.assert_array_equal(pixels[:, :SIZE, :SIZE], data)
    assert (pixels[:, SIZE:, :] == 0).all() and (pixels[:, :, SIZE:] == 0).all()
    e = h.emd(out)
    assert (e["ImageWidth"], e["ImageHeight"]) == (512, 400)
    first_line = (out / "stats.txt").read_text().splitlines()[0]
    assert first_line.startswith("images = 1 *3*") and sorted(first_line.split("*")[2:]) == ["400", "512"]


def test_additional_raster_on_another_grid_is_resampled_onto_the_chips(tmp_path, rgb):
    raster, _ = rgb
    yy, xx = np.mgrid[0:SIZE // 2, 0:SIZE // 2]
    coarse = ((xx + yy) % 200).astype("uint8")
    raster2 = h.write_raster(tmp_path / "coarse.tif", coarse, transform=Affine(1.0, 0, T0.c, 0, -1.0, T0.f))
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", raster2=raster2)
    cs = h.chips(out)
    assert len(cs) == 25
    for c in cs:
        p1, m1 = h.read(c.image)
        p2, m2 = h.read(c.image2)
        assert m2["transform"] == m1["transform"] and m2["crs"] == m1["crs"]
        assert (m2["width"], m2["height"], m2["count"]) == (TILE, TILE, 1)
        col, row = h.offset_of(m2["transform"], T0)
        # Away from the wrap-around of the ramp, each 2 x 2 block of fine pixels holds about its coarse value.
        w, hh = min(TILE, SIZE - col), min(TILE, SIZE - row)
        expected = np.kron(coarse, np.ones((2, 2)))[row:row + hh, col:col + w]
        ok = (expected > 5) & (expected < 190)
        assert np.abs(p2[0, :hh, :w].astype(float) - expected)[ok].max() <= 2
