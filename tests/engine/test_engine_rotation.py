"""ROTATION_ANGLE: rotated copies of every chip, numbered site * copies + turn,
georeferenced on the map, with labels rotated with the image."""

import math

import numpy as np
import pytest
import shapely
from affine import Affine

import engine_helpers as h
import export_format_helpers as fh
from engine_helpers import T0, TILE
from dl_engine.errors import InputError
from dl_engine.export import run_export

N = 192  # a 3 x 3 grid of 64 px tiles: site 4 is the interior tile (64, 64)
SITES = [(c, r) for r in (0, 64, 128) for c in (0, 64, 128)]
BOX = fh.raster_box(T0, N, N)

# Non-overlapping features (pixel coordinates), none with an edge on a pixel centre.
SHAPES = [
    (h.pix_poly([(70.3, 75.2), (120.7, 80.4), (90.1, 125.9)]), 1),
    (h.pix_box(100.2, 66.3, 126.4, 77.1), 2),  # interior tile, next to the triangle
    (h.pix_box(10.3, 20.6, 50.2, 45.7), 3),
    (h.pix_box(130.4, 30.2, 180.6, 150.3), 1),  # across tiles
    (h.pix_poly([(20.2, 140.1), (60.7, 130.3), (55.4, 185.8), (15.1, 170.2)]), 2),
]
GEOMS = [g for g, _ in SHAPES]
VALUES = [v for _, v in SHAPES]
assert not any(a.intersects(b) for i, a in enumerate(GEOMS) for b in GEOMS[i + 1:])


@pytest.fixture
def small(tmp_path):
    data = h.random_image(3, height=N, width=N, seed=8)
    return h.write_raster(tmp_path / "small.tif", data), data


def _site_centre(site):
    col, row = SITES[site]
    return T0 * (col + TILE / 2, row + TILE / 2)


def _check_georeferencing(t: Affine, centre, degrees, where):
    """A chip turned ``degrees`` counter-clockwise on the map about ``centre``, 0.5 m pixels."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    assert (t.a, t.b, t.d, t.e) == pytest.approx((0.5 * cos, 0.5 * sin, 0.5 * sin, -0.5 * cos), abs=1e-9), where
    assert t * (TILE / 2, TILE / 2) == pytest.approx(centre, abs=1e-6), where


def _by_index(out):
    return {int(e.stem): e for e in fh.map_entries(out)}


def _check_labels(entries, where=""):
    for n, e in entries.items():
        label, lt = fh.read(e.label)
        _, t = fh.read(e.image)
        assert lt == t
        expected = fh.centre_class_raster(GEOMS, VALUES, t, TILE, TILE)
        mism = int((label[0] != expected).sum())
        assert mism == 0, f"{where}chip {n}: {mism} label pixels differ from the rotated rasterization"


@pytest.mark.heavy
def test_rotation_90(tmp_path, small):
    raster, data = small
    out = tmp_path / "out"
    res = h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(GEOMS, VALUES),
                   rotation_angle=90.0, output_nofeature_tiles=True)
    entries = _by_index(out)
    assert sorted(entries) == list(range(9 * 4))
    assert res.next_tile_index == 36 and h.stats_json(out)["NextTileIndex"] == 36
    for n, e in entries.items():
        site, turn = divmod(n, 4)
        _, t = fh.read(e.image)
        _check_georeferencing(t, _site_centre(site), 90 * turn, f"chip {n}")
        # The world file carries the rotation terms too.
        assert h.world_file_lines(e.image.with_suffix(".tfw")) == h.expected_world_file(t)
        if turn == 0:
            assert h.offset_of(t, T0) == SITES[site]
    # The interior tile: each copy is the unrotated chip turned by k quarter turns (image and label).
    img0, _ = fh.read(entries[16].image)
    lbl0, _ = fh.read(entries[16].label)
    np.testing.assert_array_equal(img0, data[:, 64:128, 64:128])
    assert len(np.unique(lbl0)) == 3  # background, class 1 and class 2
    for k in (1, 2, 3):
        img, _ = fh.read(entries[16 + k].image)
        lbl, _ = fh.read(entries[16 + k].label)
        np.testing.assert_array_equal(img, np.rot90(img0, -k, axes=(1, 2)), err_msg=f"image turn {k}")
        np.testing.assert_array_equal(lbl, np.rot90(lbl0, -k, axes=(1, 2)), err_msg=f"label turn {k}")
    _check_labels(entries)


@pytest.mark.heavy  # a few seconds (make test runs it)
def test_rotation_30_full_chips_and_labels(tmp_path, small):
    raster, data = small
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(GEOMS, VALUES),
             rotation_angle=30.0, output_nofeature_tiles=True)
    entries = _by_index(out)
    assert sorted(entries) == list(range(9 * 12))
    for n, e in entries.items():
        site, turn = divmod(n, 12)
        img, t = fh.read(e.image)
        assert img.shape == (3, TILE, TILE)
        _check_georeferencing(t, _site_centre(site), 30 * turn, f"chip {n}")
        if site == 4:
            # Full-size and no blank corners: the rotated frame of the interior tile lies on the raster.
            assert (img != 0).all(), f"chip {n} has blank pixels"
    img0, _ = fh.read(entries[48].image)
    np.testing.assert_array_equal(img0, data[:, 64:128, 64:128])
    _check_labels(entries)


def test_rotated_image_is_the_raster_resampled(tmp_path):
    """On a linear ramp bilinear resampling is exact: every pixel of a rotated interior chip
    equals the ramp at its centre's place on the raster, within GDAL's default warp
    approximation (1/8 px; the ramp rises 5 per pixel diagonally, so 0.625)."""
    rows, cols = np.mgrid[0:N, 0:N]
    ramp = (2.0 * cols + 3.0 * rows + 10.0).astype("float32")[np.newaxis]
    raster = h.write_raster(tmp_path / "ramp.tif", ramp)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", rotation_angle=45.0)
    entries = _by_index(out)
    assert sorted(entries) == list(range(9 * 8))
    for turn in range(8):
        img, t = fh.read(entries[4 * 8 + turn].image)
        xs, ys = fh.pixel_centres(t, TILE, TILE)
        sc, sr = ~T0 * (xs, ys)
        expected = 2.0 * (sc - 0.5) + 3.0 * (sr - 0.5) + 10.0
        err = np.abs(img[0] - expected)
        assert err.max() <= 0.625, f"turn {turn}: off by {err.max() / 3.6:.2f} px"
        assert err.mean() < 0.1, f"turn {turn}"


def _expected_objects(t, geoms, values, w=TILE, hh=TILE, box=BOX):
    """VOC objects of a chip: each feature's part on the chip and the raster, in chip pixels."""
    objs = []
    chip = shapely.box(0, 0, w, hh)
    for g, v in zip(geoms, values):
        part = fh.to_chip_pixels(g.intersection(box), t).intersection(chip)
        if part.area > 0:
            objs.append((str(v), part.bounds))
    return sorted(objs)


@pytest.mark.heavy
def test_rotated_voc_boxes(tmp_path, small):
    raster, _ = small
    rects = [h.pix_box(10.3, 20.6, 50.2, 45.7), h.pix_box(100.4, 30.2, 150.6, 90.3), h.pix_box(70.2, 140.3, 80.6, 150.7)]
    values = [1, 2, 3]
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(rects, values),
             rotation_angle=30.0)
    entries = _by_index(out)
    # A chip for every (site, turn) whose rotated frame holds part of a feature on the raster.
    expected = set()
    for site in range(9):
        for turn in range(12):
            c = _site_centre(site)
            t = Affine.translation(*c) * Affine.rotation(30 * turn) * Affine.translation(-c[0], -c[1]) * \
                T0 * Affine.translation(*SITES[site])
            if _expected_objects(t, rects, values):
                expected.add(site * 12 + turn)
    assert set(entries) == expected
    rotated_boxes = 0
    for n, e in entries.items():
        _, t = fh.read(e.image)
        got = sorted(fh.xml_objects(e.label))
        exp = _expected_objects(t, rects, values)
        assert [g[0] for g in got] == [x[0] for x in exp], f"chip {n}"
        for (_, gb), (_, eb) in zip(got, exp):
            assert gb == pytest.approx(eb, abs=0.006), f"chip {n}"
        rotated_boxes += n % 12 != 0
    assert rotated_boxes > 0


def test_rotated_labeled_tiles_stay_centred(tmp_path, small):
    raster, _ = small
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Labeled_Tiles", labels=h.vector_labels(GEOMS, VALUES),
             rotation_angle=90.0)
    entries = _by_index(out)
    assert sorted(entries) == list(range(len(GEOMS) * 4))
    for n, e in entries.items():
        i, turn = divmod(n, 4)
        _, t = fh.read(e.image)
        minx, miny, maxx, maxy = GEOMS[i].bounds
        px, py = ~t * ((minx + maxx) / 2, (miny + maxy) / 2)
        assert abs(px - TILE / 2) <= 1 and abs(py - TILE / 2) <= 1, f"chip {n}"
        (name, box), = fh.xml_objects(e.label)
        assert name == str(VALUES[i])
        assert box == pytest.approx(_expected_box(GEOMS[i], t), abs=0.006)


def _expected_box(g, t):
    return fh.to_chip_pixels(g.intersection(BOX), t).intersection(shapely.box(0, 0, TILE, TILE)).bounds


@pytest.mark.heavy
def test_rotated_rcnn_masks(tmp_path, small):
    """Instance masks of rotated chips: each id is its polygon rasterized on the rotated chip."""
    raster, _ = small
    geoms = GEOMS + [h.pix_box(80.4, 90.3, 110.6, 118.7)]  # overlaps the triangle
    values = [1] * len(geoms)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="RCNN_Masks", labels=h.vector_labels(geoms, values), rotation_angle=45.0)
    entries = _by_index(out)
    assert {n // 8 for n in entries} == set(range(9))
    for n, e in entries.items():
        _, t = fh.read(e.image)
        _check_georeferencing(t, _site_centre(n // 8), 45 * (n % 8), f"chip {n}")
        region = fh.chip_polygon(t, TILE, TILE).intersection(BOX)
        masks, lt = fh.read(e.label)
        assert lt == t
        fh.instance_ids_check(masks, [fh.centre_mask(g.intersection(region), t, TILE, TILE) for g in geoms
                                      if g.intersection(region).area > 0], f"chip {n}")


@pytest.mark.parametrize("angle", [-30.0, 360.0, 400.0, float("nan"), float("inf")])
def test_bad_rotation_angle(tmp_path, small, angle):
    raster, _ = small
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(InputError) as ei:
        run_export(h.config(raster, parent / "out", metadata_format="Export_Tiles", rotation_angle=angle))
    assert ei.value.parameter == "ROTATION_ANGLE"
    assert list(parent.iterdir()) == []
