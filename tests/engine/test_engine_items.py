"""PROCESSING_MODE: a mosaic (VRT of two GeoTIFFs) exported item by item
(PROCESS_ITEMS_SEPARATELY) or as one image (PROCESS_AS_MOSAICKED_IMAGE)."""

import numpy as np
import pytest
from affine import Affine

import engine_helpers as h
import export_format_helpers as fh
from engine_helpers import T0, TILE
from dl_engine.errors import InputError

# Item A: 100 x 128 at the mosaic's origin; item B: 120 x 90 at mosaic column 100, row 20.
A_W, A_H = 100, 128
B_W, B_H, B_COL, B_ROW = 120, 90, 100, 20
M_W, M_H = B_COL + B_W, A_H  # 220 x 128
TA = T0
TB = T0 * Affine.translation(B_COL, B_ROW)


@pytest.fixture
def mosaic(tmp_path):
    a = h.random_image(3, height=A_H, width=A_W, seed=21)
    b = h.random_image(3, height=B_H, width=B_W, seed=22)
    d = tmp_path / "mosaic"
    d.mkdir()
    h.write_raster(d / "a.tif", a, TA)
    h.write_raster(d / "b.tif", b, TB)
    vrt = fh.write_vrt(d / "mosaic.vrt", [("a.tif", 0, 0, A_W, A_H), ("b.tif", B_COL, B_ROW, B_W, B_H)],
                       M_W, M_H, 3, T0, h.CRS_UTM)
    whole = np.zeros((3, M_H, M_W), dtype="uint8")
    whole[:, :A_H, :A_W] = a
    whole[:, B_ROW:B_ROW + B_H, B_COL:B_COL + B_W] = b
    return vrt, a, b, whole


def _tiles(w, hh):
    from dl_engine.export.grid import tile_starts

    return [(c, r) for r in tile_starts(hh, TILE, TILE) for c in tile_starts(w, TILE, TILE)]


def test_vrt_reads_as_expected(mosaic):
    vrt, _, _, whole = mosaic
    data, t = fh.read(vrt)
    assert t == T0
    np.testing.assert_array_equal(data, whole)


def test_items_separately(tmp_path, mosaic):
    vrt, a, b, _ = mosaic
    out = tmp_path / "out"
    res = h.export(vrt, out, metadata_format="Export_Tiles", processing_mode="PROCESS_ITEMS_SEPARATELY")
    tiles_a, tiles_b = _tiles(A_W, A_H), _tiles(B_W, B_H)
    n_a, n_b = len(tiles_a), len(tiles_b)
    entries = {int(e.stem): e for e in fh.map_entries(out)}
    # One folder, numbers continuous: B's chips follow A's.
    assert sorted(entries) == list(range(n_a + n_b))
    assert sorted(p.name for p in (out / "images").glob("*.tif")) == [f"{i:012d}.tif" for i in range(n_a + n_b)]
    assert res.next_tile_index == n_a + n_b == h.stats_json(out)["NextTileIndex"] == h.stats_json(out)["NumTiles"]
    for n, e in entries.items():
        img, t = fh.read(e.image)
        data, grid_t, (col, row) = (a, TA, tiles_a[n]) if n < n_a else (b, TB, tiles_b[n - n_a])
        # On its own item's grid: whole pixels of that file, padded past its own edge (not the mosaic's).
        assert h.offset_of(t, grid_t) == (col, row), f"chip {n}"
        np.testing.assert_array_equal(img, fh.padded_window(data, col, row, TILE, TILE), err_msg=f"chip {n}")
    # B's first chip starts at B's own corner, which is not on the mosaic's 64 px tile grid.
    _, t = fh.read(entries[n_a].image)
    assert (t.c, t.f) == (TB.c, TB.f)


def test_mosaicked_is_one_image(tmp_path, mosaic):
    vrt, _, _, whole = mosaic
    out = tmp_path / "out"
    h.export(vrt, out, metadata_format="Export_Tiles")  # PROCESS_AS_MOSAICKED_IMAGE is the default
    tiles = _tiles(M_W, M_H)
    entries = {int(e.stem): e for e in fh.map_entries(out)}
    assert sorted(entries) == list(range(len(tiles)))
    for n, e in entries.items():
        img, t = fh.read(e.image)
        col, row = tiles[n]
        assert h.offset_of(t, T0) == (col, row)
        np.testing.assert_array_equal(img, fh.padded_window(whole, col, row, TILE, TILE), err_msg=f"chip {n}")


def test_items_separately_with_labels(tmp_path, mosaic):
    vrt, _, _, _ = mosaic
    on_a = h.pix_box(10.3, 20.2, 40.6, 50.7)
    on_b = h.pix_box(150.2, 40.3, 180.4, 70.6)  # B columns 50.2..80.4: B's chips 0 and 1
    out = tmp_path / "out"
    h.export(vrt, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels([on_a, on_b], [1, 2]),
             processing_mode="PROCESS_ITEMS_SEPARATELY")
    n_a = len(_tiles(A_W, A_H))
    entries = {int(e.stem): e for e in fh.map_entries(out)}
    assert sorted(entries) == [0, n_a, n_a + 1]
    for n, e in entries.items():
        _, t = fh.read(e.image)
        h.offset_of(t, TA if n < n_a else TB)
        geom, value = (on_a, 1) if n < n_a else (on_b, 2)
        objs = h.voc_objects(e.label)
        assert [v for v, _ in objs] == [value]
        assert objs[0][1] == pytest.approx(h.box_in_chip(geom, t, TILE, TILE), abs=0.006)
    assert h.stats_json(out)["NextTileIndex"] == n_a + len(_tiles(B_W, B_H))


def test_items_separately_rcnn_masks(tmp_path, mosaic):
    """A new format across items: instance masks on each item's own grid."""
    vrt, _, _, _ = mosaic
    geoms = [h.pix_box(80.3, 30.2, 99.6, 60.7), h.pix_box(101.2, 30.4, 130.6, 60.3)]  # either side of A | B
    out = tmp_path / "out"
    h.export(vrt, out, metadata_format="RCNN_Masks", labels=h.vector_labels(geoms, [1, 1]),
             processing_mode="PROCESS_ITEMS_SEPARATELY")
    n_a = len(_tiles(A_W, A_H))
    entries = {int(e.stem): e for e in fh.map_entries(out)}
    assert sorted(entries) == [1, n_a]
    for n, e in entries.items():
        _, t = fh.read(e.image)
        geom = geoms[0] if n < n_a else geoms[1]
        masks, _ = fh.read(e.label)
        fh.instance_ids_check(masks, [fh.centre_mask(geom, t, TILE, TILE)], f"chip {n}")


def test_items_that_differ_are_refused(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    h.write_raster(d / "a.tif", h.random_image(3, height=64, width=64, seed=1), TA)
    h.write_raster(d / "b.tif", h.random_image(1, height=64, width=64, seed=2), T0 * Affine.translation(64, 0))
    vrt = fh.write_vrt(d / "m.vrt", [("a.tif", 0, 0, 64, 64), ("b.tif", 64, 0, 64, 64)], 128, 64, 1, T0, h.CRS_UTM)
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(InputError) as ei:
        h.export(vrt, parent / "out", metadata_format="Export_Tiles", processing_mode="PROCESS_ITEMS_SEPARATELY")
    assert ei.value.parameter == "PROCESSING_MODE"
    assert list(parent.iterdir()) == []


def test_items_separately_on_a_plain_raster(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "out"
    res = h.export(raster, out, metadata_format="Export_Tiles", processing_mode="PROCESS_ITEMS_SEPARATELY")
    assert res.num_tiles == 25
