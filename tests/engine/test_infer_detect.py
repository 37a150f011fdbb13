"""Detect Objects Using Deep Learning, engine side, with a fake detector registered in the
model registry (it finds bright squares): boxes land at the right map coordinates, an
object across tile borders is reported once, NMS, instance outlines, EXTENT, arguments,
and packages of another kind are refused by name."""

import numpy as np
import pytest
import shapely

torch = pytest.importorskip("torch")

import engine_helpers as h  # noqa: E402
import infer_helpers as ih  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.infer import run_inference  # noqa: E402

pytestmark = pytest.mark.usefixtures("fake_models")  # reading fake packages needs the fake types

# (col, row, side) in pixels: with tile 32 / padding 8 the kept tile centres are 16 px apart,
# so most of these lie across the borders of two or four tiles.
SQUARES = [(14, 14, 6), (45, 58, 10), (100, 100, 8), (150, 20, 11), (120, 150, 14), (30, 170, 13), (181, 183, 9)]
CLASSES = [(5, "small", (250, 0, 0)), (9, "large", (0, 250, 0))]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect")
    raster = ih.squares_raster(folder, SQUARES, size=200)
    return folder, raster, ih.fake_package(folder / "model", "FAKEDETECTOR", CLASSES)


def expected_boxes(squares=SQUARES):
    return sorted(h.pix_box(c, r, c + s, r + s).bounds for c, r, s in squares)


def run(data, out, **kw):
    folder, raster, model = data
    result = run_inference(ih.config("detect_objects", raster, model, out, **kw))
    return result, ih.read_features(out)


def test_boxes_at_map_coordinates_once_each(data, tmp_path):
    result, fc = run(data, tmp_path / "objects.geojson")
    feats = fc["features"]
    assert result.features == len(feats) == len(SQUARES)
    got = sorted(shapely.geometry.shape(f["geometry"]).bounds for f in feats)
    assert np.allclose(got, expected_boxes(), atol=1e-6)
    by_bounds = {shapely.geometry.shape(f["geometry"]).bounds: f["properties"] for f in feats}
    for c, r, s in SQUARES:
        box = h.pix_box(c, r, c + s, r + s).bounds
        props = by_bounds[min(by_bounds, key=lambda b: np.abs(np.subtract(b, box)).sum())]
        small = s < 12
        assert props["Class"] == ("small" if small else "large") and props["ClassValue"] == (5 if small else 9)
        assert props["Confidence"] == pytest.approx(100 * ih.score_of([0, 0, s, s]), abs=1e-3)  # 0-100
    assert fc["type"] == "FeatureCollection" and fc["crs_wkt"] == h.CRS_UTM.to_wkt()
    assert fc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32617"


def test_without_pad_exclusion_duplicates_merge_and_nms_cleans_up(data, tmp_path):
    # every tile reports what it sees: parts of squares cut by a tile's edge come too,
    # but the same whole square seen by several tiles is written once
    _, fc = run(data, tmp_path / "all.geojson", arguments="exclude_pad_detections false")
    bounds = [shapely.geometry.shape(f["geometry"]).bounds for f in fc["features"]]
    assert len(bounds) > len(SQUARES) and len(set(bounds)) == len(bounds)
    for b in expected_boxes():
        assert any(np.allclose(b, g, atol=1e-6) for g in bounds)
    # RUN_NMS (any overlap): the whole squares, which score higher than their parts, remain
    _, fc = run(data, tmp_path / "nms.geojson", arguments="exclude_pad_detections false", run_nms=True,
                max_overlap_ratio=0.0)
    got = sorted(shapely.geometry.shape(f["geometry"]).bounds for f in fc["features"])
    assert np.allclose(got, expected_boxes(), atol=1e-6)


def test_field_names_threshold_and_larger_tiles(data, tmp_path):
    _, fc = run(data, tmp_path / "a.geojson", class_value_field="Label", confidence_score_field="Score",
                arguments="tile_size 64;padding 16;batch_size 2")
    assert len(fc["features"]) == len(SQUARES)
    assert set(fc["features"][0]["properties"]) == {"Label", "ClassValue", "Score"}
    _, fc = run(data, tmp_path / "none.geojson", arguments="threshold 0.95")
    assert fc["features"] == [] and fc["type"] == "FeatureCollection"


def test_extent_limits_the_objects(data, tmp_path):
    t = h.T0
    # pixel columns 0..110, rows 0..120: the squares at (14, 14), (45, 58) and (100, 100)
    extent = [t.c, t.f + 120 * t.e, t.c + 110 * t.a, t.f]
    _, fc = run(data, tmp_path / "extent.geojson", extent=extent)
    got = sorted(shapely.geometry.shape(f["geometry"]).bounds for f in fc["features"])
    assert np.allclose(got, expected_boxes(SQUARES[:3]), atol=1e-6)


def test_instance_outlines(tmp_path):
    raster = ih.squares_raster(tmp_path, SQUARES, size=200)
    model = ih.fake_package(tmp_path / "m", "FAKEMASKS", CLASSES)
    run_inference(ih.config("detect_objects", raster, model, tmp_path / "masks.geojson"))
    feats = ih.read_features(tmp_path / "masks.geojson")["features"]
    assert len(feats) == len(SQUARES)
    areas = sorted(shapely.geometry.shape(f["geometry"]).area for f in feats)
    assert np.allclose(areas, sorted((s * 0.5) ** 2 for _, _, s in SQUARES))
    got = sorted(shapely.geometry.shape(f["geometry"]).bounds for f in feats)
    assert np.allclose(got, expected_boxes(), atol=1e-6)


def test_a_pixel_model_is_refused_with_the_tool_to_use(data, tmp_path):
    model = ih.fake_package(tmp_path / "m", "FAKEPIXELS", CLASSES)
    with pytest.raises(InputError) as e:
        run_inference(ih.config("detect_objects", data[1], model, tmp_path / "o.geojson"))
    assert e.value.parameter == "IN_MODEL_DEFINITION"
    assert "pixel classification model" in e.value.message and "Classify Pixels Using Deep Learning" in e.value.message
    detector = ih.fake_package(tmp_path / "d", "FAKEDETECTOR", CLASSES)
    with pytest.raises(InputError) as e:
        run_inference(ih.config("classify_pixels", data[1], detector, tmp_path / "o.tif"))
    assert "object detection model" in e.value.message and "Detect Objects Using Deep Learning" in e.value.message
    with pytest.raises(InputError) as e:
        run_inference(ih.config("detect_objects", data[1], detector, tmp_path / "o.geojson",
                                arguments="predict_background true"))
    assert e.value.parameter == "ARGUMENTS"
    assert ("valid arguments: batch_size, exclude_pad_detections, nms_overlap, padding, threshold, tile_size"
            in e.value.message)
    assert not list(tmp_path.glob("o.*"))


def test_mosaic_items_processed_separately(tmp_path):
    import export_format_helpers as fh
    from affine import Affine
    squares_a, squares_b = [(14, 14, 6), (60, 40, 10)], [(20, 70, 8), (50, 10, 13)]  # in each item's pixels
    ih.squares_raster(tmp_path, squares_a, size=100, name="a.tif")
    ih.squares_raster(tmp_path, squares_b, size=100, name="b.tif", transform=h.T0 * Affine.translation(100, 0))
    vrt = fh.write_vrt(tmp_path / "mosaic.vrt", [("a.tif", 0, 0, 100, 100), ("b.tif", 100, 0, 100, 100)], 200, 100, 3,
                       h.T0, h.CRS_UTM)
    model = ih.fake_package(tmp_path / "m", "FAKEDETECTOR", CLASSES)
    expected = expected_boxes(squares_a + [(c + 100, r, s) for c, r, s in squares_b])
    for mode in ("PROCESS_ITEMS_SEPARATELY", "PROCESS_AS_MOSAICKED_IMAGE"):
        out = tmp_path / f"{mode}.geojson"
        result = run_inference(ih.config("detect_objects", vrt, model, out, processing_mode=mode))
        got = sorted(shapely.geometry.shape(f["geometry"]).bounds for f in ih.read_features(out)["features"])
        assert np.allclose(got, expected, atol=1e-6), mode
        assert result.tiles == (2 * 49 if mode == "PROCESS_ITEMS_SEPARATELY" else 7 * 13)
