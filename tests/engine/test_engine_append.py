"""START_INDEX: appending a second export to an earlier one, and refusing
appends that would break it (the earlier export left byte for byte as it was)."""

import numpy as np
import pytest
import shapely

import engine_helpers as h
from engine_helpers import SIZE, T0, TILE, ClassInfo, RasterLabels
from dl_engine.errors import Canceled, InputError
from dl_engine.export import run_export
from engine_helpers import band_values, check_band_stats


@pytest.fixture
def first(tmp_path, rgb, rects):
    """An earlier PASCAL VOC export in tmp_path/out (raster A, classes 1..3)."""
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    res = h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    return out, res


@pytest.fixture
def raster_b(tmp_path):
    return h.write_raster(tmp_path / "b.tif", h.random_image(3, seed=11, low=20, high=120))


def _labels_b():
    geoms = [h.pix_box(20.3, 200.2, 60.6, 240.7), h.pix_box(150.2, 150.3, 170.4, 190.6)]
    return h.vector_labels(geoms, [4, 1], [ClassInfo(4, "Car")])


def test_append_adds_chips_and_merges_stats(tmp_path, first, raster_b, rects):
    out, res1 = first
    n1 = res1.num_tiles
    s1 = h.stats_json(out)
    assert s1["NextTileIndex"] == 25
    lines1 = h.map_lines(out)
    res2 = h.export(raster_b, out, metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(), start_index=100)
    n2 = res2.num_tiles
    assert n2 > 0
    assert res2.next_tile_index == 125
    s = h.stats_json(out)
    assert s["NumTiles"] == n1 + n2
    assert s["NextTileIndex"] == 125
    lines = h.map_lines(out)
    assert lines[:n1] == lines1
    assert len(lines) == n1 + n2
    cs = h.chips(out)
    assert [c.index for c in cs][n1:] == sorted(c.index for c in cs if c.index >= 100)
    assert all(c.index >= 100 for c in cs[n1:])
    assert len(list((out / "images").glob("*.tif"))) == n1 + n2
    assert len(list((out / "labels").glob("*.xml"))) == n1 + n2
    # Band statistics over every chip now in the folder.
    check_band_stats(s["BandStatsState"], h.emd(out)["AllTilesStats"], band_values(out))
    # Feature statistics add up; classes are the union.
    fs = s["FeatureStats"]
    objs = [v for c in cs for v, _ in h.voc_objects(c.label)]
    assert [c["ClassValue"] for c in s["Classes"]] == [1, 2, 3, 4]
    assert fs["NumFeaturesPerClass"] == [objs.count(v) for v in (1, 2, 3, 4)]
    assert fs["NumImagesTotal"] == n1 + n2
    assert fs["NumFeaturesPerImage"]["Count"] == n1 + n2
    assert fs["NumFeaturesPerImage"]["Sum"] == len(objs)
    assert {c["Value"]: c["Name"] for c in h.emd(out)["Classes"]} == {1: "1", 2: "2", 3: "3", 4: "Car"}
    assert (out / "stats.txt").read_text().startswith(f"images = {n1 + n2} ")
    assert not h.staging_left(out) and not h.staging_left(tmp_path)


def test_append_at_next_tile_index(tmp_path, first, raster_b):
    out, res1 = first
    h.export(raster_b, out, metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(),
             start_index=res1.next_tile_index)
    idx = [c.index for c in h.chips(out)]
    assert len(idx) == len(set(idx))
    assert h.stats_json(out)["NextTileIndex"] == 50


def test_append_classified_raster_merges_pixel_stats(tmp_path, rgb, raster_b):
    raster, _ = rgb
    classes = np.zeros((SIZE, SIZE), "uint8")
    classes[10:60, 10:60] = 1
    classes[200:260, 100:200] = 2
    lab = h.write_raster(tmp_path / "classes.tif", classes)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=RasterLabels(lab))
    h.export(raster_b, out, metadata_format="Classified_Tiles", labels=RasterLabels(lab), start_index=25)
    s = h.stats_json(out)
    ps = s["ClassPixelStats"]
    assert ps["NumPixelsPerClass"] == [2 * 50 * 50, 2 * 60 * 100]
    assert ps["NumImagesTotal"] == s["NumTiles"] == len(h.chips(out))
    check_band_stats(s["BandStatsState"], h.emd(out)["AllTilesStats"], band_values(out))


def _refused(out, tmp_path, raster, **kw):
    before = h.snapshot(out)
    parent_before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as ei:
        h.export(raster, out, **kw)
    assert h.snapshot(out) == before, "the earlier export was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == parent_before
    return ei.value


def test_start_index_below_next_tile_index_is_refused(tmp_path, first, raster_b):
    out, _ = first
    err = _refused(out, tmp_path, raster_b, metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(),
                   start_index=10)
    assert err.parameter == "START_INDEX"
    assert "25" in err.message


@pytest.mark.parametrize("change", [
    dict(metadata_format="KITTI_rectangles"),
    dict(metadata_format="Classified_Tiles"),
    dict(image_format="PNG"),
    dict(tile_size_x=32, stride_x=32),
    dict(tile_size_y=128, stride_y=128),
])
def test_append_of_another_kind_is_refused(tmp_path, first, raster_b, change):
    out, _ = first
    kw = dict(metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(), start_index=25)
    kw.update(change)
    err = _refused(out, tmp_path, raster_b, **kw)
    assert err.parameter == "START_INDEX"


def test_append_of_another_band_count_is_refused(tmp_path, first):
    out, _ = first
    gray = h.write_raster(tmp_path / "gray.tif", h.random_image(1, seed=3))
    err = _refused(out, tmp_path, gray, metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(), start_index=25)
    assert err.parameter == "START_INDEX"


def test_append_into_folder_without_export_is_refused(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = _refused(out, tmp_path, raster, metadata_format="Export_Tiles", start_index=5)
    assert err.parameter == "START_INDEX"


def test_cancel_while_appending_leaves_earlier_export_intact(tmp_path, first, raster_b):
    out, _ = first
    before = h.snapshot(out)
    calls = []
    cfg = h.config(raster_b, out, metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(), start_index=25,
                   output_nofeature_tiles=True)
    with pytest.raises(Canceled):
        run_export(cfg, h.recording_events(calls), lambda: bool(calls))
    assert h.snapshot(out) == before
    assert not h.staging_left(out) and not h.staging_left(tmp_path)


def test_failed_append_leaves_earlier_export_intact(tmp_path, first, nodata_raster):
    """An append that finds nothing to export (labels only on NoData) changes nothing."""
    out, _ = first
    raster, _ = nodata_raster
    labels = h.vector_labels([h.pix_box(70.2, 70.3, 120.4, 120.6)], [1])
    err = _refused(out, tmp_path, raster, metadata_format="PASCAL_VOC_rectangles", labels=labels, start_index=25)
    assert err.parameter == "IN_CLASS_DATA"


def test_start_index_on_a_new_folder_numbers_chips_from_it(tmp_path, rgb):
    raster, _ = rgb
    out = tmp_path / "out"
    res = h.export(raster, out, metadata_format="Export_Tiles", start_index=1000)
    assert [c.index for c in h.chips(out)] == list(range(1000, 1025))
    assert (out / "images" / "000000001000.tif").is_file()
    assert res.next_tile_index == h.stats_json(out)["NextTileIndex"] == 1025


def test_append_with_or_without_additional_raster_is_refused(tmp_path, first, raster_b):
    out, _ = first
    err = _refused(out, tmp_path, raster_b, metadata_format="PASCAL_VOC_rectangles", labels=_labels_b(),
                   start_index=25, raster2=raster_b)
    assert err.parameter == "START_INDEX"


def test_append_from_features_to_a_classified_raster_export_is_refused(tmp_path, rgb):
    raster, _ = rgb
    classes = np.zeros((SIZE, SIZE), "uint8")
    classes[10:60, 10:60] = 1
    lab = h.write_raster(tmp_path / "classes.tif", classes)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=RasterLabels(lab))
    err = _refused(out, tmp_path, raster, metadata_format="Classified_Tiles", labels=_labels_b(), start_index=25)
    assert err.parameter == "START_INDEX"
