"""Compute Accuracy For Pixel Classification's engine (dl_engine.accuracy.pixels): the confusion
matrix against numpy on the whole raster, ground truth on other grids and as polygons, the table's
layout, the sampling strategies (counts, seeds, distances) and bad input naming the parameter."""

import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from dl_engine.accuracy.config import PixelAccuracyConfig, PolygonTruth
from dl_engine.accuracy.pixels import ConfusionMatrix, allocate, compute_pixel_accuracy, strips
from dl_engine.errors import InputError

ORIGIN = (500000.0, 4000000.0)
PIXEL = 2.0
NODATA = 255


def write(path, array, transform=None, crs="EPSG:32618", nodata=NODATA, dtype=None):
    height, width = array.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype=dtype or array.dtype, crs=crs, transform=transform or from_origin(*ORIGIN, PIXEL, PIXEL),
                       nodata=nodata) as ds:
        ds.write(array, 1)
    return str(path)


@pytest.fixture
def pair(tmp_path):
    """A classified raster (3 classes, a NoData band at the top) and ground truth on its grid, 20 % changed."""
    rng = np.random.default_rng(1)
    classified = rng.integers(0, 3, (50, 60)).astype("uint8")
    reference = classified.copy()
    flip = rng.random(classified.shape) < 0.2
    reference[flip] = rng.integers(0, 4, int(flip.sum()))  # class 3: in the ground truth only
    classified[:3] = NODATA
    reference[-2:, :5] = NODATA
    return write(tmp_path / "classified.tif", classified), write(tmp_path / "truth.tif", reference), classified, reference


def numpy_matrix(classified, reference, valid, classes):
    index = {v: i for i, v in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(m, (np.vectorize(index.get)(classified[valid]), np.vectorize(index.get)(reference[valid])), 1)
    return m


def run(classified, truth, **kwargs):
    return compute_pixel_accuracy(PixelAccuracyConfig(classified, truth, **kwargs))


def test_all_pixels_equals_numpy_on_the_whole_raster(pair, tmp_path):
    c_path, r_path, c, r = pair
    result = run(c_path, r_path, sampling="ALL_PIXELS", block_size=16)  # strips of 4 rows
    valid = (c != NODATA) & (r != NODATA)
    expected = numpy_matrix(c, r, valid, [0, 1, 2, 3])
    m = result.matrix
    assert m.classes == [0, 1, 2, 3]
    assert np.array_equal(m.counts, expected)
    assert result.pixels_counted == m.total == valid.sum()
    # the measures, from numpy's matrix
    n = expected.sum()
    diag = np.diag(expected)
    rows, cols = expected.sum(1), expected.sum(0)
    assert m.overall_accuracy == pytest.approx(diag.sum() / n)
    pe = (rows * cols).sum() / n ** 2
    assert m.kappa == pytest.approx((diag.sum() / n - pe) / (1 - pe))
    assert m.users_accuracy[:3] == pytest.approx(list(diag[:3] / rows[:3]))
    assert m.users_accuracy[3] == 0  # no classified pixel of class 3: 0/0 is written as 0
    assert m.producers_accuracy == pytest.approx(list(diag / cols))
    assert m.iou == pytest.approx(list(diag / (rows + cols - diag)))
    # the block size changes nothing
    assert np.array_equal(run(c_path, r_path, sampling="ALL_PIXELS", block_size=4096).matrix.counts, expected)


def test_table_layout_is_arcgis_confusion_matrix():
    m = ConfusionMatrix([1, 2], np.array([[49, 4], [2, 40]]))
    assert m.fields() == ["ClassValue", "C_1", "C_2", "Total", "U_Accuracy", "Kappa"]
    rows = m.rows()
    assert [r["ClassValue"] for r in rows] == ["C_1", "C_2", "Total", "P_Accuracy", "Kappa", "IoU"]
    assert rows[0] == {"ClassValue": "C_1", "C_1": 49, "C_2": 4, "Total": 53, "U_Accuracy": round(49 / 53, 6),
                       "Kappa": 0.0}
    assert rows[2]["C_1"] == 51 and rows[2]["C_2"] == 44 and rows[2]["Total"] == 95
    assert rows[3]["C_1"] == round(49 / 51, 6) and rows[3]["U_Accuracy"] == round(89 / 95, 6)
    pe = (53 * 51 + 42 * 44) / 95 ** 2
    assert rows[4]["Kappa"] == round((89 / 95 - pe) / (1 - pe), 6) and rows[4]["C_1"] == 0
    iou = [49 / (53 + 51 - 49), 40 / (42 + 44 - 40)]
    assert rows[5]["C_1"] == round(iou[0], 6) and rows[5]["U_Accuracy"] == round(sum(iou) / 2, 6)


def test_ground_truth_on_a_finer_grid_is_read_by_nearest(tmp_path):
    rng = np.random.default_rng(2)
    c = rng.integers(1, 3, (12, 15)).astype("uint8")
    fine = rng.integers(1, 3, (36, 45)).astype("uint8")  # a third of the pixel size
    c_path = write(tmp_path / "c.tif", c)
    r_path = write(tmp_path / "fine.tif", fine, transform=from_origin(*ORIGIN, PIXEL / 3, PIXEL / 3))
    result = run(c_path, r_path, sampling="ALL_PIXELS")
    # the centre of classified pixel (i, j) lies in fine pixel (3i + 1, 3j + 1)
    sampled = fine[1::3, 1::3]
    assert np.array_equal(result.matrix.counts, numpy_matrix(c, sampled, np.ones(c.shape, bool), [1, 2]))


def test_ground_truth_in_another_crs_and_partly_outside(tmp_path):
    """A ground-truth raster in EPSG:4326 covering the left half: the right half is not counted."""
    c = np.ones((20, 20), dtype="uint8")
    c_path = write(tmp_path / "c.tif", c)
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds("EPSG:32618", "EPSG:4326", ORIGIN[0], ORIGIN[1] - 40,
                                                ORIGIN[0] + 20, ORIGIN[1])
    truth = np.ones((40, 20), dtype="uint8")
    r_path = write(tmp_path / "r4326.tif", truth, crs="EPSG:4326", nodata=None,
                   transform=from_origin(left, top, (right - left) / 20, (top - bottom) / 40))
    result = run(c_path, r_path, sampling="ALL_PIXELS")
    assert result.matrix.classes == [1]
    assert 180 <= result.pixels_counted <= 220  # about half of 400 (the edge falls within a pixel)


def test_polygon_ground_truth_outside_is_background(tmp_path):
    c = np.zeros((10, 10), dtype="uint8")
    c[2:6, 2:6] = 1  # 16 pixels
    c_path = write(tmp_path / "c.tif", c)
    x0, y0 = ORIGIN
    # a polygon over columns 3..6, rows 2..5 (pixel edges), class 1; a smaller class-2 one inside it wins
    big = box(x0 + 3 * PIXEL, y0 - 6 * PIXEL, x0 + 7 * PIXEL, y0 - 2 * PIXEL)
    small = box(x0 + 5 * PIXEL, y0 - 4 * PIXEL, x0 + 6 * PIXEL, y0 - 3 * PIXEL)  # pixel (row 3, col 5)
    truth = PolygonTruth(wkb=[small.wkb, big.wkb], values=[2, 1])
    result = run(c_path, truth, sampling="ALL_PIXELS", block_size=16)
    reference = np.zeros((10, 10), dtype="uint8")
    reference[2:6, 3:7] = 1
    reference[3, 5] = 2
    assert np.array_equal(result.matrix.counts, numpy_matrix(c, reference, np.ones(c.shape, bool), [0, 1, 2]))


def test_sample_points_are_reproducible_and_carry_both_values(pair):
    c_path, r_path, c, r = pair
    first = run(c_path, r_path, num_random_points=60, sampling="RANDOM", random_seed=7)
    again = run(c_path, r_path, num_random_points=60, sampling="RANDOM", random_seed=7, block_size=16)
    other = run(c_path, r_path, num_random_points=60, sampling="RANDOM", random_seed=8)
    cells = [(p.row, p.col) for p in first.points]
    assert len(cells) == len(set(cells)) == 60
    assert cells == [(p.row, p.col) for p in again.points]  # the same seed: the same points, whatever the strips
    assert cells != [(p.row, p.col) for p in other.points]
    for p in first.points:
        assert (p.classified, p.reference) == (c[p.row, p.col], r[p.row, p.col])
        assert c[p.row, p.col] != NODATA and r[p.row, p.col] != NODATA
        assert (p.x, p.y) == (ORIGIN[0] + (p.col + 0.5) * PIXEL, ORIGIN[1] - (p.row + 0.5) * PIXEL)
    assert first.matrix.total == 60


def test_stratified_counts(tmp_path):
    c = np.zeros((20, 50), dtype="uint8")  # 1000 px: 500 of class 0, 300 of class 1, 200 of class 2
    c[10:16] = 1
    c[16:] = 2
    c_path = write(tmp_path / "c.tif", c)
    r_path = write(tmp_path / "r.tif", c)

    def per_class(result):
        counts = {}
        for p in result.points:
            counts[p.classified] = counts.get(p.classified, 0) + 1
        return counts

    assert per_class(run(c_path, r_path, num_random_points=100)) == {0: 50, 1: 30, 2: 20}
    assert per_class(run(c_path, r_path, num_random_points=90, sampling="EQUALIZED_STRATIFIED_RANDOM")) == {
        0: 30, 1: 30, 2: 30}
    equalized = run(c_path, r_path, num_random_points=100, sampling="EQUALIZED_STRATIFIED_RANDOM")
    assert per_class(equalized) == {0: 34, 1: 34, 2: 34}  # rounded up: never fewer than asked
    assert sum(per_class(run(c_path, r_path, num_random_points=100, sampling="RANDOM")).values()) == 100


def test_allocate_rules():
    assert allocate("STRATIFIED_RANDOM", {0: 500, 1: 300, 2: 200}, 7) == {0: 4, 1: 2, 2: 1}
    assert sum(allocate("STRATIFIED_RANDOM", {0: 995, 1: 3, 2: 2}, 500).values()) == 500
    assert allocate("STRATIFIED_RANDOM", {0: 10, 1: 990}, 500) == {0: 5, 1: 495}
    assert allocate("EQUALIZED_STRATIFIED_RANDOM", {0: 5, 1: 990}, 100) == {0: 5, 1: 50}  # a small class: all it has
    assert allocate("RANDOM", {0: 3, 1: 4}, 100) == {None: 7}


def test_min_point_distance(tmp_path):
    c = np.zeros((40, 40), dtype="uint8")
    c[:, 20:] = 1
    c_path = write(tmp_path / "c.tif", c)
    result = run(c_path, c_path, num_random_points=30, min_point_distance=9.0, random_seed=3)
    points = result.points
    assert len(points) == 30
    for i, a in enumerate(points):
        for b in points[i + 1:]:
            assert math.hypot(a.x - b.x, a.y - b.y) >= 9.0
    # more than fit: as many as fit, no error
    crowded = run(c_path, c_path, num_random_points=400, min_point_distance=20.0, sampling="RANDOM")
    assert 0 < len(crowded.points) < 400


def test_csv_is_written(pair, tmp_path):
    c_path, r_path, *_ = pair
    out = tmp_path / "matrix.csv"
    run(c_path, r_path, sampling="ALL_PIXELS", out_confusion_matrix=str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ClassValue,C_0,C_1,C_2,C_3,Total,U_Accuracy,Kappa"
    assert [line.split(",")[0] for line in lines[1:]] == ["C_0", "C_1", "C_2", "C_3", "Total", "P_Accuracy", "Kappa",
                                                          "IoU"]


def test_strips_keep_memory_flat():
    windows = list(strips(10000, 3000, 256))
    assert all(w.width * w.height <= 256 * 256 for w in windows)
    assert sum(w.height for w in windows) == 3000


@pytest.mark.parametrize("change, parameter", [
    (dict(num_random_points=0), "NUM_RANDOM_POINTS"),
    (dict(sampling="SYSTEMATIC"), "SAMPLING"),
    (dict(min_point_distance=-1.0), "MIN_POINT_DISTANCE"),
    (dict(random_seed=-3), "RANDOM_SEED"),
    (dict(ground_truth=""), "IN_GROUND_TRUTH_DATA"),
    (dict(ground_truth=PolygonTruth([], [])), "IN_GROUND_TRUTH_DATA"),
    (dict(in_raster=""), "IN_RASTER"),
])
def test_bad_parameters_name_the_parameter(pair, change, parameter):
    c_path, r_path, *_ = pair
    settings = dict(in_raster=c_path, ground_truth=r_path)
    settings.update(change)
    with pytest.raises(InputError) as caught:
        compute_pixel_accuracy(PixelAccuracyConfig(**settings))
    assert caught.value.parameter == parameter


def test_no_overlap_and_no_class_values_are_named(tmp_path, pair):
    c_path, *_ = pair
    far = write(tmp_path / "far.tif", np.ones((5, 5), "uint8"), transform=from_origin(900000, 1000000, 2, 2))
    with pytest.raises(InputError) as caught:
        run(c_path, far)
    assert caught.value.parameter == "IN_GROUND_TRUTH_DATA" and "overlap" in caught.value.message
    far_polygons = PolygonTruth([box(0, 0, 1, 1).wkb], [1])
    with pytest.raises(InputError) as caught:
        run(c_path, far_polygons)
    assert caught.value.parameter == "IN_GROUND_TRUTH_DATA"
    image = write(tmp_path / "image.tif", np.full((5, 5), 0.37, "float32"), nodata=None)
    with pytest.raises(InputError) as caught:
        run(image, image, sampling="ALL_PIXELS")
    assert caught.value.parameter == "IN_RASTER"
    empty = write(tmp_path / "empty.tif", np.full((5, 5), NODATA, "uint8"))
    with pytest.raises(InputError) as caught:
        run(empty, empty)
    assert caught.value.parameter == "IN_GROUND_TRUTH_DATA" and "no pixel" in caught.value.message
