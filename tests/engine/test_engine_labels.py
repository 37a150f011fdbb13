"""Labels: Classified_Tiles against an independent rasterization, PASCAL VOC and
KITTI boxes against the polygon bounds, real sample data, overlap ratio, mask
polygons and classified-raster input."""

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import transform as warp_transform

import engine_helpers as h
from engine_helpers import SIZE, STARTS, T0, TILE, ClassInfo, RasterLabels


def _rasterize_window(geoms, values, chip_t, tile=TILE, dtype="uint8"):
    """Independent reference: every polygon (unclipped) burnt on the chip's pixel grid."""
    out = np.zeros((tile, tile), dtype)
    shapes = [(g, v) for g, v in zip(geoms, values)]
    if shapes:
        rasterize(shapes, out=out, transform=chip_t)
    return out


def _check_classified(out, geoms, values, grid_t=T0, width=SIZE, height=SIZE, dtype="uint8", tile=TILE):
    cs = h.chips(out)
    assert cs
    for c in cs:
        assert c.label.name == c.image.name  # same stem, same extension
        lab, meta = h.read(c.label)
        _, imeta = h.read(c.image)
        assert meta["count"] == 1 and meta["dtype"] == dtype
        assert meta["transform"] == imeta["transform"] and meta["crs"] == imeta["crs"]
        assert c.label.with_suffix(".tfw").is_file()
        col, row = h.offset_of(meta["transform"], grid_t)
        expected = _rasterize_window(geoms, values, meta["transform"], tile, dtype)
        expected[max(0, height - row):, :] = 0  # padding is background
        expected[:, max(0, width - col):] = 0
        np.testing.assert_array_equal(lab[0], expected, err_msg=f"label chip {c.label.name}")
    return cs


def test_classified_tiles_match_rasterization(tmp_path, rgb, shapes):
    raster, _ = rgb
    geoms, values = shapes
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values))
    cs = _check_classified(out, geoms, values)
    seen = set()
    for c in cs:
        seen |= set(np.unique(h.read(c.label)[0]).tolist())
    assert seen == {0, 1, 2, 3}  # 0 = background, every class drawn
    lines = h.map_lines(out)
    assert lines[0].endswith(".tif  labels\\" + cs[0].label.name + " ")


def test_classified_tiles_overlapping_stride(tmp_path, rgb, shapes):
    raster, _ = rgb
    geoms, values = shapes
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values),
             tile_size_x=96, tile_size_y=96, stride_x=40, stride_y=40, output_nofeature_tiles=True)
    _check_classified(out, geoms, values, tile=96)


def test_small_feature_inside_a_large_one_stays_visible(tmp_path, rgb):
    raster, _ = rgb
    big = h.pix_box(5.2, 5.3, 60.4, 60.6)
    small = h.pix_box(20.2, 20.3, 30.4, 30.6)
    out = tmp_path / "out"
    # The small feature comes first in the layer; it must not be painted over.
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels([small, big], [2, 1]))
    lab, meta = h.read(h.chips(out)[0].label)
    assert h.offset_of(meta["transform"], T0) == (0, 0)
    np.testing.assert_array_equal(lab[0], _rasterize_window([big, small], [1, 2], meta["transform"]))
    assert (lab[0] == 2).sum() == 10 * 11  # centres 20.5..29.5 x 20.5..30.5


def test_label_dtype_uint16_for_values_above_255(tmp_path, rgb):
    raster, _ = rgb
    geoms = [h.pix_box(10.3, 10.2, 40.6, 30.7), h.pix_box(100.3, 100.2, 140.6, 130.7)]
    values = [300, 7]
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values))
    _check_classified(out, geoms, values, dtype="uint16")
    classes = {c["Value"]: c["Name"] for c in h.emd(out)["Classes"]}
    assert classes == {7: "7", 300: "300"}


def test_classified_tiles_multipolygon_across_chips(tmp_path, rgb):
    raster, _ = rgb
    multi = shapely.MultiPolygon([h.pix_box(50.2, 50.3, 80.4, 70.6), h.pix_box(120.2, 60.3, 140.4, 200.6)])
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels([multi], [5]))
    cs = _check_classified(out, [multi], [5])
    assert h.stats_json(out)["FeatureStats"]["NumFeaturesPerClass"] == [len(cs)]


# ---- PASCAL VOC / KITTI --------------------------------------------------------------------

def _expected_boxes(chip_t, rects_geoms, values):
    """(value, box) of each rectangle with area in the chip, in chip pixels, clipped, input order."""
    x0, y0 = chip_t * (0, 0)
    col, row = h.offset_of(chip_t, T0)
    chip_box = h.pix_box(col, row, min(col + TILE, SIZE), min(row + TILE, SIZE))
    found = []
    for g, v in zip(rects_geoms, values):
        if shapely.intersection(g, chip_box).area > 0:
            found.append((v, h.box_in_chip(g, chip_t, TILE, TILE)))
    return found


def test_pascal_voc_boxes_and_file_structure(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    cs = h.chips(out)
    assert cs
    for c in cs:
        assert c.label.suffix == ".xml" and c.label.stem == c.image.stem
        _, meta = h.read(c.image)
        expected = _expected_boxes(meta["transform"], geoms, values)
        assert expected
        got = h.voc_objects(c.label)
        assert [v for v, _ in got] == [v for v, _ in expected]  # <name> is the class value
        for (_, gb), (_, eb) in zip(got, expected):
            assert gb == pytest.approx(eb, abs=0.0051)
        # The file is exactly the ArcGIS variant (structure, indentation, 2 decimals).
        text = c.label.read_text()
        assert text == h.expected_voc(c.image.name, TILE, TILE, 3, got)
        assert "\r" not in text
        assert not re.search(r"<(folder|path|segmented|pose|truncated|difficult|database)>", text)
    line = h.map_lines(out)[0]
    stem = cs[0].image.stem
    assert line == f"images\\{stem}.tif  labels\\{stem}.xml "


def test_pascal_voc_box_clipped_at_chip_edge(tmp_path, rgb):
    raster, _ = rgb
    g = h.pix_box(50.25, 10.5, 90.75, 20.25)  # crosses the boundary between chip (0,0) and (64,0)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels([g], [4]))
    cs = h.chips(out)
    assert len(cs) == 2
    a, b = (h.voc_objects(c.label) for c in cs)
    assert a == [(4, (50.25, 10.5, 64.0, 20.25))]
    assert b == [(4, (0.0, 10.5, 26.75, 20.25))]
    assert "<xmax>64.00</xmax>" in cs[0].label.read_text()


def test_kitti_lines(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="KITTI_rectangles", labels=h.vector_labels(geoms, values))
    cs = h.chips(out)
    assert cs
    for c in cs:
        assert c.label.suffix == ".txt" and c.label.stem == c.image.stem
        raw = c.label.read_bytes()
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
        _, meta = h.read(c.image)
        expected = _expected_boxes(meta["transform"], geoms, values)
        lines = raw.decode().split("\r\n")[:-1]
        assert len(lines) == len(expected)
        for line, (v, box) in zip(lines, expected):
            fields = line.split()
            assert len(fields) == 15
            assert line[:3] == f"{v:3d}"
            assert fields[1:4] == ["0.00", "0", "0"] and fields[8:] == ["0"] * 7
            assert [float(f) for f in fields[4:8]] == pytest.approx(box, abs=0.0051)
            assert line == (f"{v:3d} 0.00 0 0 " + " ".join(f"{x:7.2f}" for x in map(float, fields[4:8]))
                            + " 0 0 0 0 0 0 0")
    assert h.map_lines(out)[0].endswith(".txt ")


# ---- real data -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trees():
    tif = h.data_path("trees_osbs", "OSBS_029.tif")
    geoms, values, names, srs = h.read_gpkg(h.data_path("trees_osbs", "trees.gpkg"))
    boxes = h.read_voc_pixel_boxes(h.data_path("trees_osbs", "OSBS_029.xml"))
    assert srs == 32617 and len(geoms) == len(boxes) == 61
    return tif, geoms, values, names, boxes


@pytest.mark.parametrize("tile", [400, 256])
def test_trees_voc_boxes_equal_original_pixel_boxes(tmp_path, trees, tile):
    tif, geoms, values, names, boxes = trees
    out = tmp_path / "out"
    labels = h.vector_labels(geoms, values, [ClassInfo(1, "Tree")])
    h.export(tif, out, metadata_format="PASCAL_VOC_rectangles", labels=labels, tile_size_x=tile,
             tile_size_y=tile, stride_x=tile, stride_y=tile)
    with rasterio.open(tif) as src:
        t = src.transform
    first = [c for c in h.chips(out) if h.offset_of(h.read(c.image)[1]["transform"], t) == (0, 0)]
    assert len(first) == 1
    got = h.voc_objects(first[0].label)
    expected = sorted((1, (x0, y0, min(x1, tile), min(y1, tile))) for x0, y0, x1, y1 in boxes
                      if x0 < tile and y0 < tile)
    assert len(got) == len(expected)
    got = sorted(got)
    for (gv, gb), (ev, eb) in zip(got, expected):
        assert gv == ev == 1
        assert gb == pytest.approx(eb, abs=0.0051)
    e = h.emd(out)
    assert e["Classes"] == [{"Value": 1, "Name": "Tree", "Color": [-1, -1, -1]}]
    assert first[0].label.read_text().count("<depth>3</depth>") == 1


def test_trees_kitti(tmp_path, trees):
    tif, geoms, values, names, boxes = trees
    out = tmp_path / "out"
    h.export(tif, out, metadata_format="KITTI_rectangles", labels=h.vector_labels(geoms, values),
             tile_size_x=400, tile_size_y=400, stride_x=400, stride_y=400)
    (c,) = h.chips(out)
    lines = c.label.read_bytes().decode().split("\r\n")[:-1]
    got = sorted(tuple(float(f) for f in line.split()[4:8]) for line in lines)
    assert len(got) == len(boxes)
    for g, e in zip(got, sorted(boxes)):
        assert g == pytest.approx(e, abs=0.0051)
    assert all(line.startswith("  1 0.00 0 0 ") for line in lines)


def test_elevation_buildings_in_another_crs(tmp_path):
    dsm = h.data_path("elevation", "dsm.tif")
    with rasterio.open(dsm) as src:
        crs, t, w, ht = src.crs, src.transform, src.width, src.height
    geoms, props = h.read_geojson_in(h.data_path("elevation", "buildings.geojson"), crs)
    assert len(geoms) == 84
    values = [1] * len(geoms)
    out = tmp_path / "out"
    h.export(dsm, out, metadata_format="Classified_Tiles",
             labels=h.vector_labels(geoms, values, [ClassInfo(1, "Building", (255, 0, 0))]))
    cs = _check_classified(out, geoms, values, grid_t=t, width=w, height=ht)
    for c in cs:
        img, meta = h.read(c.image)
        assert meta["dtype"] == "float32" and meta["crs"] == crs and meta["nodata"] == -9999
    e = h.emd(out)
    assert e["Classes"] == [{"Value": 1, "Name": "Building", "Color": [255, 0, 0]}]
    s = h.stats_json(out)
    assert s["Classes"] == [{"ClassValue": 1, "ClassName": "Building", "Color": [255, 0, 0]}]
    # Every building pixel of the raster is in some chip.
    full = rasterize([(g, 1) for g in geoms], out_shape=(ht, w), transform=t)
    covered = np.zeros((ht, w), bool)
    for c in cs:
        col, row = h.offset_of(h.read(c.label)[1]["transform"], t)
        covered[row:row + TILE, col:col + TILE] = True
    assert covered[full == 1].all()


# ---- overlap ratio and mask ----------------------------------------------------------------

def test_min_polygon_overlap_ratio(tmp_path, rgb):
    raster, _ = rgb
    # 30 % of the feature in chip (0,0), 70 % in chip (64,0).
    g = h.pix_box(52.0, 10.3, 92.0, 30.6)
    other = h.pix_box(5.2, 40.3, 15.4, 50.6)  # keeps chip (0,0) exported
    labels = [g, other], [1, 2]
    out0, out5 = tmp_path / "r0", tmp_path / "r5"
    h.export(raster, out0, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(*labels))
    h.export(raster, out5, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(*labels),
             min_polygon_overlap_ratio=0.5)

    def by_pos(out):
        return {h.offset_of(h.read(c.image)[1]["transform"], T0): [v for v, _ in h.voc_objects(c.label)]
                for c in h.chips(out)}

    assert by_pos(out0) == {(0, 0): [1, 2], (64, 0): [1]}
    assert by_pos(out5) == {(0, 0): [2], (64, 0): [1]}
    assert h.stats_json(out5)["FeatureStats"]["NumFeaturesPerClass"] == [1, 1]
    assert h.stats_json(out0)["FeatureStats"]["NumFeaturesPerClass"] == [2, 1]


def test_mask_polygons_keep_only_chips_completely_inside(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    mask = h.pix_box(-3, -3, 150.5, 150.5)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values),
             mask_wkb=[shapely.to_wkb(mask)], output_nofeature_tiles=True)
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert positions == {(0, 0), (64, 0), (0, 64), (64, 64)}


def test_mask_polygons_at_the_padded_edge(tmp_path, rgb):
    raster, _ = rgb
    # A mask covering the raster's bottom-right corner: the padded chip (256, 256) counts
    # as inside, since its padding is not raster.
    mask = h.pix_box(250, 250, 300, 300)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", mask_wkb=[shapely.to_wkb(mask)])
    positions = {h.offset_of(h.read(c.image)[1]["transform"], T0) for c in h.chips(out)}
    assert positions == {(256, 256)}


# ---- classified raster input ---------------------------------------------------------------

def test_classified_raster_same_crs_coarser_grid(tmp_path, rgb):
    raster, _ = rgb
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 4, size=(SIZE // 2, SIZE // 2)).astype("uint8")
    lab_t = Affine(T0.a * 2, 0, T0.c, 0, T0.e * 2, T0.f)
    lab_path = h.write_raster(tmp_path / "classes.tif", coarse, transform=lab_t)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=RasterLabels(lab_path))
    fine = np.kron(coarse, np.ones((2, 2), "uint8"))
    for c in h.chips(out):
        lab, meta = h.read(c.label)
        assert meta["dtype"] == "uint8"
        col, row = h.offset_of(meta["transform"], T0)
        expected = np.zeros((TILE, TILE), "uint8")
        win = fine[row:row + TILE, col:col + TILE]
        expected[:win.shape[0], :win.shape[1]] = win
        np.testing.assert_array_equal(lab[0], expected)


def test_classified_raster_in_another_crs_and_resolution(tmp_path, rgb):
    raster, _ = rgb
    # The label raster in EPSG:4326 with coarse class blocks, covering the image raster.
    with rasterio.open(raster) as src:
        b = src.bounds
    (lon0, lon1), (lat0, lat1) = warp_transform(h.CRS_UTM, "EPSG:4326", [b.left - 20, b.right + 20],
                                                [b.top + 20, b.bottom - 20])
    n = 40
    lab_t = Affine((lon1 - lon0) / n, 0, lon0, 0, (lat1 - lat0) / n, lat0)
    blocks = (np.add.outer(np.arange(n) // 5, np.arange(n) // 5) % 4).astype("uint8")
    lab_path = h.write_raster(tmp_path / "classes4326.tif", blocks, transform=lab_t, crs=CRS.from_epsg(4326))
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=RasterLabels(lab_path),
             output_nofeature_tiles=True)
    inv = ~lab_t
    total = agree = 0
    for c in h.chips(out):
        lab, meta = h.read(c.label)
        col, row = h.offset_of(meta["transform"], T0)
        rows, cols = np.mgrid[0:TILE, 0:TILE]
        xs, ys = meta["transform"] * (cols.ravel() + 0.5, rows.ravel() + 0.5)
        lon, lat = warp_transform(h.CRS_UTM, "EPSG:4326", xs, ys)
        lc, lr = inv * (np.array(lon), np.array(lat))
        expected = blocks[np.floor(lr).astype(int), np.floor(lc).astype(int)].reshape(TILE, TILE)
        expected[max(0, SIZE - row):, :] = 0
        expected[:, max(0, SIZE - col):] = 0
        total += expected.size
        agree += (expected == lab[0]).sum()
    # Nearest neighbour through GDAL's approximate transformer: all but a few boundary pixels agree.
    assert agree / total > 0.995


def test_classified_raster_pixel_stats(tmp_path, rgb):
    raster, _ = rgb
    classes = np.zeros((SIZE, SIZE), "uint8")
    classes[10:50, 10:100] = 1
    classes[150:290, 200:300] = 2
    classes[100:110, 5:15] = 5
    lab_path = h.write_raster(tmp_path / "classes.tif", classes)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles",
             labels=RasterLabels(lab_path, classes=[ClassInfo(2, "Water", (0, 0, 255))]))
    cs = h.chips(out)
    per_chip = []
    for c in cs:
        lab, meta = h.read(c.label)
        col, row = h.offset_of(meta["transform"], T0)
        expected = np.zeros((TILE, TILE), "uint8")
        win = classes[row:row + TILE, col:col + TILE]
        expected[:win.shape[0], :win.shape[1]] = win
        np.testing.assert_array_equal(lab[0], expected)
        v, n = np.unique(lab[0][lab[0] > 0], return_counts=True)
        assert len(v) > 0  # chips without class pixels are not exported
        per_chip.append(dict(zip(v.tolist(), n.tolist())))
    s = h.stats_json(out)
    assert s["OutputFeatures"] is False
    assert "FeatureStats" not in s
    ps = s["ClassPixelStats"]
    values = [1, 2, 5]
    assert [c["ClassValue"] for c in s["Classes"]] == values
    assert ps["NumClasses"] == 3
    assert ps["NumImagesTotal"] == len(cs) == s["NumTiles"]
    assert ps["NumImagesPerClass"] == [sum(v in d for d in per_chip) for v in values]
    assert ps["NumPixelsPerClass"] == [sum(d.get(v, 0) for d in per_chip) for v in values]
    assert ps["NumPixelsPerClass"] == [40 * 90, 140 * 100, 100]
    cpi = [len(d) for d in per_chip]
    assert ps["NumClassesPerImage"]["Min"] == min(cpi) and ps["NumClassesPerImage"]["Max"] == max(cpi)
    assert ps["NumClassesPerImage"]["Sum"] == sum(cpi) and ps["NumClassesPerImage"]["Count"] == len(cs)
    for i, v in enumerate(values):
        series = [d.get(v, 0) for d in per_chip]
        p = ps["PixelsPerClass"][i]
        assert p["Max"] == max(series) and p["Sum"] == sum(series) and p["Count"] == len(series)
        assert p["Min"] == min(series)
        assert p["Mean"] == pytest.approx(np.mean(series))
    e = h.emd(out)
    assert e["Classes"] == [{"Value": 1, "Name": "1", "Color": [-1, -1, -1]},
                            {"Value": 2, "Name": "Water", "Color": [0, 0, 255]},
                            {"Value": 5, "Name": "5", "Color": [-1, -1, -1]}]
    txt = (out / "stats.txt").read_bytes()
    assert txt.count(b"\n") == txt.count(b"\r\n")
    assert "Water" in txt.decode()
