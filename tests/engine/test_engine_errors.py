"""Bad input ends in an InputError naming the parameter, with nothing left
behind; cancel stops quickly and leaves nothing; workers give identical output."""

import time

import numpy as np
import pytest
import shapely
from affine import Affine

import engine_helpers as h
from engine_helpers import SIZE, T0, TILE, RasterLabels
from dl_engine.errors import Canceled, InputError
from dl_engine.events import Events
from dl_engine.export import run_export


def _far_away():
    return h.vector_labels([h.pix_box(5000.2, 5000.3, 5100.4, 5100.6)], [1])


def _rects():
    return h.vector_labels([h.pix_box(10.3, 20.6, 50.2, 45.7), h.pix_box(100.4, 30.2, 150.6, 90.3)], [1, 2])


def _outside_extent():
    x0, y1 = T0 * (400, 400)
    x1, y0 = T0 * (500, 500)
    return (x0, y0, x1, y1)


# (id, what to change in the request, the parameter named, text in the message)
BAD = [
    ("tile_x_0", dict(tile_size_x=0), "TILE_SIZE_X", None),
    ("tile_y_neg", dict(tile_size_y=-64), "TILE_SIZE_Y", None),
    ("stride_x_0", dict(stride_x=0), "STRIDE_X", None),
    ("stride_y_neg", dict(stride_y=-1), "STRIDE_Y", None),
    ("png_4_bands", dict(raster="rgba", image_format="PNG"), "IMAGE_CHIP_FORMAT", None),
    ("jpeg_4_bands", dict(raster="rgba", image_format="JPEG"), "IMAGE_CHIP_FORMAT", None),
    ("png_float32", dict(raster="float", image_format="PNG"), "IMAGE_CHIP_FORMAT", None),
    ("jpeg_uint16", dict(raster="uint16", image_format="JPEG"), "IMAGE_CHIP_FORMAT", None),
    ("labels_elsewhere", dict(labels=_far_away), "IN_CLASS_DATA", None),
    ("labels_empty", dict(labels=lambda: h.vector_labels([], [])), "IN_CLASS_DATA", None),
    ("labels_missing", dict(labels=lambda: None), "IN_CLASS_DATA", None),
    ("negative_class", dict(labels=lambda: h.vector_labels([h.pix_box(1.2, 1.3, 9.4, 9.6)], [-3])),
     "CLASS_VALUE_FIELD", None),
    ("extent_outside", dict(extent=_outside_extent, metadata_format="Export_Tiles"), "EXTENT", None),
    ("extent_empty", dict(extent=lambda: (T0.c + 10, T0.f - 10, T0.c + 5, T0.f - 5)), "EXTENT", None),
    ("unknown_format", dict(metadata_format="COCO"), "METADATA_FORMAT", "unknown format"),
    ("rotation_360", dict(rotation_angle=360.0), "ROTATION_ANGLE", "between 0 and 360"),
    ("unknown_format", dict(metadata_format="YOLO"), "METADATA_FORMAT", None),
    ("classified_raster_for_voc", dict(labels="classraster"), "IN_CLASS_DATA", None),
    ("classified_raster_for_kitti", dict(labels="classraster", metadata_format="KITTI_rectangles"),
     "IN_CLASS_DATA", None),
    ("cell_size_0", dict(cell_size=0.0), "CELL_SIZE", None),
    ("overlap_ratio", dict(min_polygon_overlap_ratio=1.5), "MIN_POLYGON_OVERLAP_RATIO", None),
    ("reference_system", dict(reference_system="WORLD_SPACE"), "REFERENCE_SYSTEM", None),
    ("unknown_image_format", dict(image_format="BMP"), "IMAGE_CHIP_FORMAT", None),
    ("raster_missing", dict(raster="missing"), "IN_RASTER", None),
    ("raster2_missing", dict(raster2="missing"), "IN_RASTER2", None),
    ("start_index_negative", dict(start_index=-1), "START_INDEX", None),
    ("labels_outside_extent", dict(labels=lambda: h.vector_labels([h.pix_box(200.2, 200.3, 240.4, 240.6)], [1]),
                                   extent=lambda: (T0.c, T0.f - 64, T0.c + 64, T0.f)), "IN_CLASS_DATA", None),
    ("cell_size_in_pixel_space", dict(cell_size=1.0, reference_system="PIXEL_SPACE", metadata_format="Export_Tiles"),
     "CELL_SIZE", None),
    ("rotated_raster_map_space", dict(raster="rotated", metadata_format="Export_Tiles"), "IN_RASTER", None),
    ("fractional_class_raster", dict(labels="fractional", metadata_format="Classified_Tiles"), "IN_CLASS_DATA", None),
    ("negative_class_raster", dict(labels="negative", metadata_format="Classified_Tiles"), "IN_CLASS_DATA", None),
    ("mask_without_area", dict(mask_wkb=lambda: [shapely.to_wkb(shapely.LineString([T0 * (0, 0), T0 * (50, 50)]))]),
     "IN_MASK_POLYGONS", None),
    ("labels_on_nodata_only", dict(raster="nodata", labels=lambda: h.vector_labels(
        [h.pix_box(70.2, 70.3, 120.4, 120.6)], [1])), "IN_CLASS_DATA", None),
]


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "inputs"
    src.mkdir()
    data = h.random_image(3, seed=1)
    nd = data.copy()
    nd[:, 64:128, 64:128] = 255
    classes = np.zeros((SIZE, SIZE), "uint8")
    classes[10:50, 10:50] = 1
    return {
        "rgb": h.write_raster(src / "rgb.tif", data),
        "rgba": h.write_raster(src / "rgba.tif", h.random_image(4, seed=2)),
        "float": h.write_raster(src / "float.tif", h.random_image(3, dtype="float32", seed=3)),
        "uint16": h.write_raster(src / "u16.tif", h.random_image(3, dtype="uint16", seed=3, high=3000)),
        "nodata": h.write_raster(src / "nd.tif", nd, nodata=255),
        "classraster": h.write_raster(src / "classes.tif", classes),
        "missing": str(src / "does_not_exist.tif"),
        "rotated": h.write_raster(src / "rotated.tif", data, transform=T0 * Affine.rotation(20)),
        "fractional": h.write_raster(src / "fractional.tif", classes.astype("float32") * 0.5),
        "negative": h.write_raster(src / "negative.tif", classes.astype("int16") - 2),
    }


def _request(inputs, out, change):
    kw = dict(metadata_format="PASCAL_VOC_rectangles", labels=_rects())
    for k, v in change.items():
        if k in ("raster", "raster2"):
            v = inputs[v]
        elif k == "labels" and v in ("classraster", "fractional", "negative"):
            v = RasterLabels(inputs[v])
        elif callable(v):
            v = v()
        kw[k] = v
    raster = kw.pop("raster", inputs["rgb"])
    return h.config(raster, out, **kw)


@pytest.mark.parametrize("change,parameter,text", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_parameter_and_leaves_nothing(tmp_path, inputs, change, parameter, text):
    parent = tmp_path / "exports"
    parent.mkdir()
    out = parent / "out"
    cfg = _request(inputs, out, change)
    with pytest.raises(InputError) as ei:
        run_export(cfg)
    assert ei.value.parameter == parameter, str(ei.value)
    if text:
        assert text in str(ei.value)
    assert not out.exists()
    assert list(parent.iterdir()) == [], "something was left in the output's parent folder"


@pytest.mark.parametrize("start_index", [0, 1])
def test_existing_output_folder(tmp_path, inputs, start_index):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = h.snapshot(out)
    with pytest.raises(InputError) as ei:
        run_export(h.config(inputs["rgb"], out, metadata_format="Export_Tiles", start_index=start_index))
    assert ei.value.parameter == ("OUT_FOLDER" if start_index == 0 else "START_INDEX")
    assert h.snapshot(out) == before
    assert not h.staging_left(tmp_path) and not h.staging_left(out)


def test_output_folder_that_is_a_file(tmp_path, inputs):
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(InputError) as ei:
        run_export(h.config(inputs["rgb"], out, metadata_format="Export_Tiles"))
    assert ei.value.parameter == "OUT_FOLDER"
    assert out.read_text() == "a file"


def test_empty_existing_output_folder_is_used(tmp_path, inputs):
    out = tmp_path / "out"
    out.mkdir()
    run_export(h.config(inputs["rgb"], out, metadata_format="Export_Tiles"))
    assert len(h.chips(out)) == 25
    assert not h.staging_left(tmp_path)


def test_failed_export_into_new_parent_folder_leaves_nothing(tmp_path, inputs):
    """An error found only while cutting chips (labels on NoData only) must not leave the
    output folder, its staging folder, nor a parent folder the run created."""
    out = tmp_path / "new" / "deeper" / "out"
    cfg = _request(inputs, out, dict(raster="nodata", labels=lambda: h.vector_labels(
        [h.pix_box(70.2, 70.3, 120.4, 120.6)], [1])))
    with pytest.raises(InputError):
        run_export(cfg)
    assert not (tmp_path / "new").exists(), sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                                                   if "inputs" not in p.parts)


def test_mask_without_any_whole_chip(tmp_path, inputs):
    out = tmp_path / "out"
    mask = h.pix_box(10, 10, 40, 40)  # smaller than a chip
    with pytest.raises(InputError) as ei:
        run_export(h.config(inputs["rgb"], out, metadata_format="Export_Tiles", mask_wkb=[shapely.to_wkb(mask)]))
    assert "IN_MASK_POLYGONS" in str(ei.value)
    assert not out.exists() and not h.staging_left(tmp_path)


# ---- cancel -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_raster(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    return h.write_raster(d / "big.tif", h.random_image(3, height=1600, width=1600, seed=6))


def test_cancel_stops_quickly_and_leaves_nothing(tmp_path, big_raster):
    out = tmp_path / "out"
    first_progress = []

    def progress(event):
        if event["event"] == "progress" and not first_progress:
            first_progress.append(time.monotonic())

    cfg = h.config(big_raster, out, metadata_format="Classified_Tiles",
                   labels=h.vector_labels([h.pix_box(10.3, 10.2, 1500.6, 1500.7)], [1]))
    with pytest.raises(Canceled):
        run_export(cfg, Events(sink=progress), lambda: bool(first_progress))
    assert first_progress
    assert time.monotonic() - first_progress[0] < 2.0
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cancel_before_start(tmp_path, inputs):
    out = tmp_path / "out"
    with pytest.raises(Canceled):
        run_export(h.config(inputs["rgb"], out, metadata_format="Export_Tiles"), cancel=lambda: True)
    assert not out.exists() and not h.staging_left(tmp_path)


def test_progress_is_a_percent_that_reaches_100(tmp_path, inputs):
    seen = []
    run_export(h.config(inputs["rgb"], tmp_path / "out", metadata_format="Export_Tiles"), Events(sink=seen.append))
    percents = [e["percent"] for e in seen if e["event"] == "progress"]
    assert percents and percents[-1] == 100.0
    assert all(0 <= p <= 100 for p in percents)
    assert percents == sorted(percents)
    assert seen[-1] == {"event": "result", "out_folder": str(tmp_path / "out"), "num_tiles": 25,
                        "next_tile_index": 25}


# ---- parallel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["Classified_Tiles", "PASCAL_VOC_rectangles"])
@pytest.mark.heavy
def test_workers_give_identical_output(tmp_path, inputs, fmt):
    shapes = [h.pix_box(10.3, 20.6, 50.2, 45.7), h.pix_poly([(30.3, 100.2), (220.7, 110.4), (60.1, 280.9)]),
              h.pix_box(100.4, 30.2, 290.6, 90.3)]
    labels = h.vector_labels(shapes, [1, 2, 3])
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_export(h.config(inputs["rgb"], out, metadata_format=fmt, labels=labels, workers=workers,
                            tile_size_x=48, tile_size_y=48, stride_x=32, stride_y=32, output_nofeature_tiles=True))
        outs.append(h.snapshot(out))
    a, b = outs
    assert sorted(a) == sorted(b)
    for name in a:
        if name.startswith(("labels", "images")) or name == "map.txt":
            assert a[name] == b[name], f"{name} differs between 1 and 2 workers"
    sa, sb = (h.stats_json(tmp_path / f"w{w}") for w in (1, 2))
    assert sa["NumTiles"] == sb["NumTiles"] and sa["FeatureStats"]["NumFeaturesPerClass"] == \
        sb["FeatureStats"]["NumFeaturesPerClass"]
    for x, y in zip(sa["BandStatsState"], sb["BandStatsState"]):
        assert x["Num"] == y["Num"]
        assert x["M1"] == pytest.approx(y["M1"], rel=1e-9) and x["M2"] == pytest.approx(y["M2"], rel=1e-9)
