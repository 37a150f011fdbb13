"""Fixtures for the export engine tests (plain Python: no QGIS)."""

import pytest

# tests/conftest.py puts the repository on sys.path; pytest puts this folder there (rootdir-relative
# "prepend" import mode), so the helpers below import by name.

pytest.register_assert_rewrite("engine_helpers", "export_format_helpers")
import engine_helpers as h  # noqa: E402


@pytest.fixture
def fake_models():
    """infer_helpers' fake model types (FAKEPIXELS, FAKEDETECTOR, FAKEMASKS, FAKECLASSIFIER)
    registered for one test; the registry is as before afterwards."""
    import infer_helpers as ih
    from dl_engine.models.registry import registered

    with registered(*ih.fake_specs()) as specs:
        yield specs


@pytest.fixture
def rgb(tmp_path):
    """300 x 300 RGB uint8 GeoTIFF (values 1..254, no NoData), 0.5 m, EPSG:32617; returns (path, data)."""
    data = h.random_image(3, seed=1)
    return h.write_raster(tmp_path / "rgb.tif", data), data


# Rectangles in source pixel coordinates (col0, row0, col1, row1) with their class.
# None lies on a pixel centre; none leaves the raster; they do not overlap.
RECTS = [
    ((10.3, 20.6, 50.2, 45.7), 1),  # inside chip (0, 0)
    ((100.4, 30.2, 150.6, 90.3), 2),  # across four chips
    ((5.2, 70.1, 20.8, 75.4), 1),  # inside chip (0, 64)
    ((270.2, 275.4, 295.5, 298.8), 3),  # in the padded corner chip (256, 256)
    ((180.1, 140.3, 230.9, 170.6), 1),  # across chips (128|192, 128)
]


@pytest.fixture
def rects():
    """(pixel rectangle, class) pairs, their map polygons and the VectorLabels."""
    geoms = [h.pix_box(*r) for r, _ in RECTS]
    values = [v for _, v in RECTS]
    return RECTS, geoms, values


@pytest.fixture
def shapes():
    """Non-rectangular features for Classified_Tiles: a triangle, a multipolygon, a rectangle."""
    tri = h.pix_poly([(30.3, 100.2), (120.7, 110.4), (60.1, 180.9)])
    multi = __import__("shapely").MultiPolygon([h.pix_box(150.2, 10.3, 170.6, 40.4), h.pix_box(200.3, 15.2, 240.4, 50.1)])
    rect = h.pix_box(240.3, 200.2, 299.4, 290.6)
    return [tri, multi, rect], [1, 2, 3]


@pytest.fixture
def nodata_raster(tmp_path):
    """300 x 300 RGB uint8 with NoData 255: chip (64, 64) entirely NoData, NoData stripes elsewhere."""
    data = h.random_image(3, seed=2, low=1, high=255)  # 1..254
    data[:, 64:128, 64:128] = 255  # a whole chip of NoData
    data[:, 200:210, :] = 255  # a stripe across a row of chips
    data[1, 0:10, 0:10] = 255  # NoData in one band only
    return h.write_raster(tmp_path / "nodata.tif", data, nodata=255), data
