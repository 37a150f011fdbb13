"""dl_engine.data.samples: one sample's image and labels read back, against the files
of the export (read here independently) and the features they were drawn from."""

from pathlib import Path

import numpy as np
import pytest

import data_helpers as dh
import export_format_helpers as fh
from dl_engine.errors import InputError
from dl_engine.data import SampleReader, open_folders

FORMATS = ["Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles", "Labeled_Tiles",
           "MultiLabeled_Tiles", "Imagenet", "RCNN_Masks"]
INDEX = {3: 1, 7: 2}  # pixel and detection formats: values 3, 7 → 1, 2 (0 = background)
TILE_INDEX = {3: 0, 7: 1}  # tile formats: every class, 0..K-1


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    path, _ = dh.raster(base)
    return {fmt: dh.export(path, base / fmt, fmt) for fmt in FORMATS}


def _reader(out, **kw):
    data = open_folders(out)
    return data, SampleReader.for_data(data, **kw)


def test_classified_tiles(exports):
    data, reader = _reader(exports["Classified_Tiles"])
    assert reader.class_map.names == ["NoData", "Oak", "Pine"]
    seen = set()
    for ref in data.samples:
        s = reader.read(ref)
        assert s.image.dtype == np.float32 and s.image.shape == (3, dh.TILE, dh.TILE)
        assert np.array_equal(s.image, dh.read_array(ref.image).astype(np.float32))
        label = dh.read_array(ref.label)[0]
        assert s.mask.dtype == np.int64 and s.mask.shape == label.shape
        expected = np.zeros(label.shape, np.int64)
        for value, index in INDEX.items():
            expected[label == value] = index
        assert np.array_equal(s.mask, expected)
        seen |= set(np.unique(s.mask).tolist())
    assert seen == {0, 1, 2}


def _boxes_of_chip(ref, rects):
    """Expected boxes: the rectangles inside the chip, in chip pixels (from the chip's georeferencing)."""
    _, t = fh.read(ref.image)
    out = []
    for r, v in rects:
        box = dh.h.box_in_chip(dh.h.pix_box(*r), t, dh.TILE, dh.TILE)
        if box[2] - box[0] > 0 and box[3] - box[1] > 0:
            out.append((box, INDEX[v]))
    return sorted(out)


@pytest.mark.parametrize("fmt", ["PASCAL_VOC_rectangles", "KITTI_rectangles"])
def test_boxes(exports, fmt):
    data, reader = _reader(exports[fmt])
    total = 0
    for ref in data.samples:
        s = reader.read(ref)
        assert s.boxes.dtype == np.float32 and s.boxes.shape[1] == 4 and s.box_classes.dtype == np.int64
        got = sorted((tuple(b), int(c)) for b, c in zip(s.boxes, s.box_classes))
        expected = _boxes_of_chip(ref, dh.RECTS)
        assert [c for _, c in got] == [c for _, c in expected]
        for (gb, _), (eb, _) in zip(got, expected):
            assert np.allclose(gb, eb, atol=0.006)  # 2 decimals in the files
        total += len(got)
    assert total >= len(dh.RECTS)


def test_labeled_tiles_and_imagenet(exports):
    for fmt in ("Labeled_Tiles", "Imagenet"):
        data, reader = _reader(exports[fmt])
        assert not reader.class_map.background and reader.class_map.names == ["Oak", "Pine"]
        labels = sorted(reader.read(ref).label for ref in data.samples)
        assert labels == sorted(TILE_INDEX[v] for _, v in dh.RECTS), fmt


def test_multilabeled_tiles(exports):
    data, reader = _reader(exports["MultiLabeled_Tiles"])
    for ref in data.samples:
        s = reader.read(ref)
        names = fh.xml_objects(ref.label)[0][0].split(",")
        expected = np.zeros(2, np.float32)
        for n in names:
            expected[{"Oak": 0, "Pine": 1}[n]] = 1
        assert np.array_equal(s.labels, expected)


def test_rcnn_masks(exports):
    data, reader = _reader(exports["RCNN_Masks"])
    n = 0
    for ref in data.samples:
        s = reader.read(ref)
        expected = []
        for folder, index in (("Oak", 1), ("Pine", 2)):
            p = Path(data.paths[0], "labels", folder, ref.stem + ".tif")
            if p.is_file():
                ids = dh.read_array(p)
                expected += [((ids == i).any(0), index) for i in np.unique(ids) if i]
        assert len(s.instance_masks) == len(expected) == len(s.boxes)
        for (m, c), got, gc, box in zip(expected, s.instance_masks, s.box_classes, s.boxes):
            assert np.array_equal(m, got) and c == gc
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            assert tuple(box) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            assert (s.mask[m] == c).all()
        n += len(expected)
    assert n >= len(dh.RECTS)


def test_panoptic(tmp_path):
    path, _ = dh.raster(tmp_path)
    cars = [dh.h.pix_box(5.1, 5.2, 15.3, 15.4), dh.h.pix_box(12.1, 12.2, 25.3, 25.4), dh.h.pix_box(40, 40, 50, 50)]
    inst = dh.h.vector_labels(cars, [1, 2, 1], [dh.ClassInfo(1, "Car"), dh.ClassInfo(2, "Truck")])
    out = dh.export(path, tmp_path / "pan", "Panoptic_Segmentation", instance_labels=inst)
    data, reader = _reader(out)
    assert [c.name for c in data.instance_classes] == ["Car", "Truck"]
    n = 0
    for ref in data.samples:
        s = reader.read(ref)
        label = dh.read_array(ref.label)[0]
        assert np.array_equal(s.mask, np.select([label == 3, label == 7], [1, 2], 0))
        expected = []
        for folder, index in (("Car", 1), ("Truck", 2)):
            p = Path(out, "labels2", folder, ref.stem + ".tif")
            if p.is_file():
                ids = dh.read_array(p)
                expected += [((ids == i).any(0), index) for i in np.unique(ids) if i]
        assert len(s.instance_masks) == len(expected)
        for (m, c), got, gc in zip(expected, s.instance_masks, s.box_classes):
            assert np.array_equal(m, got) and c == gc
        n += len(expected)
    assert n >= 3


def test_pro2_voc_names_values_unknown_and_negatives(tmp_path):
    out, pixels = dh.pro2_voc_export(tmp_path / "pro2")
    data = open_folders(out, warn=False)
    reader = SampleReader.for_data(data)
    by_stem = {ref.stem: reader.read(ref) for ref in data.samples}
    s0 = by_stem["000000000"]
    assert np.array_equal(s0.image, pixels[0].astype(np.float32))
    assert np.array_equal(s0.boxes, np.array([b for _, b in dh.PRO2_OBJECTS[0]], np.float32))
    assert s0.box_classes.tolist() == [1, 1]
    # <name> Palm (a name) → 1, 2 → 2, 9 (no such class) skipped
    s1 = by_stem["000000001"]
    assert s1.box_classes.tolist() == [1, 2] and s1.boxes.tolist() == [[0, 10, 12.5, 32], [14, 14, 30, 30]]
    assert reader.objects_skipped == 1
    # a chip without objects is a negative: empty arrays, not dropped
    s3 = by_stem["000000003"]
    assert s3.boxes.shape == (0, 4) and s3.box_classes.shape == (0,)


def test_chip_size_crops_centre_or_at_random(exports):
    data, reader = _reader(exports["Classified_Tiles"], chip_size=20)
    full_reader = SampleReader.for_data(data)
    ref = data.samples[0]
    full = full_reader.read(ref)
    s = reader.read(ref)
    assert s.image.shape == (3, 20, 20) and s.mask.shape == (20, 20)
    assert np.array_equal(s.image, full.image[:, 6:26, 6:26]) and np.array_equal(s.mask, full.mask[6:26, 6:26])
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(10):
        r = reader.read(ref, rng)
        hits = [(i, j) for i in range(13) for j in range(13)
                if np.array_equal(r.image, full.image[:, i:i + 20, j:j + 20])]
        assert hits and np.array_equal(r.mask, full.mask[hits[0][0]:hits[0][0] + 20, hits[0][1]:hits[0][1] + 20])
        offsets.add(hits[0])
    assert len(offsets) > 1


def test_chip_size_crops_boxes(exports):
    data, reader = _reader(exports["PASCAL_VOC_rectangles"], chip_size=16)
    full_reader = SampleReader.for_data(data)
    for ref in data.samples:
        full, s = full_reader.read(ref), reader.read(ref)
        expected = []
        for b, c in zip(full.boxes, full.box_classes):
            x0, y0, x1, y1 = np.clip(b - 8, 0, 16)
            if x1 > x0 and y1 > y0:
                expected.append(([x0, y0, x1, y1], c))
        assert np.allclose(s.boxes, np.array([e[0] for e in expected], np.float32).reshape(-1, 4))
        assert s.box_classes.tolist() == [e[1] for e in expected]


def test_resize_to(exports):
    data, reader = _reader(exports["PASCAL_VOC_rectangles"], resize_to=64)
    full_reader = SampleReader.for_data(data)
    ref = data.samples[0]
    s, full = reader.read(ref), full_reader.read(ref)
    assert s.image.shape == (3, 64, 64)
    assert np.allclose(s.boxes, full.boxes * 2)


@pytest.mark.parametrize("size", [33, 0, -4, "x", 2.5])
def test_bad_chip_size(exports, size):
    data = open_folders(exports["Classified_Tiles"])
    with pytest.raises(InputError) as e:
        SampleReader.for_data(data, chip_size=size)
    assert e.value.parameter == "CHIP_SIZE"
    if size == 33:
        assert "larger than the exported chips (32 x 32" in e.value.message


def test_kitti_line_with_too_few_fields(exports, tmp_path):
    import shutil
    out = shutil.copytree(exports["KITTI_rectangles"], tmp_path / "kitti")
    data = open_folders(out)
    ref = data.samples[0]
    Path(ref.label).write_bytes(b"  3 0.00 0 0    1.00    2.00   10.00   12.00\r\n")
    with pytest.raises(InputError) as e:
        SampleReader.for_data(data).read(ref)
    assert e.value.parameter == "IN_FOLDER"
    assert ref.label in e.value.message and "line 1" in e.value.message and "15" in e.value.message


def test_broken_voc(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2")
    data = open_folders(out, warn=False)
    Path(data.samples[0].label).write_text("<annotation><object>")
    with pytest.raises(InputError) as e:
        SampleReader.for_data(data).read(data.samples[0])
    assert e.value.parameter == "IN_FOLDER" and data.samples[0].label in e.value.message
