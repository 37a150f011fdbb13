"""The instance, per-feature tile and image-pair metadata formats read back as a user (or
arcgis.learn) would: RCNN_Masks, Labeled_Tiles (CROP_MODE, BLACKEN_AROUND_FEATURE), MultiLabeled_Tiles,
Imagenet, CycleGAN and Panoptic_Segmentation; their errors, cancel and append."""

import numpy as np
import pytest
from affine import Affine

import engine_helpers as h
import export_format_helpers as fh
from engine_helpers import STARTS, T0, TILE, ClassInfo
from dl_engine.errors import Canceled, InputError
from dl_engine.export import run_export

ESRI_FILES = {"map.txt", "stats.txt", "esri_accumulated_stats.json", "esri_model_definition.emd"}

# The rectangles of conftest.RECTS (pixel coordinates, class): one in the padded corner chip.
RECTS = [
    ((10.3, 20.6, 50.2, 45.7), 1),
    ((100.4, 30.2, 150.6, 90.3), 2),
    ((5.2, 70.1, 20.8, 75.4), 1),
    ((270.2, 275.4, 295.5, 298.8), 3),
    ((180.1, 140.3, 230.9, 170.6), 1),
]


def _present(geoms, region):
    """Indexes of the features with some area inside ``region``."""
    return [i for i, g in enumerate(geoms) if g.intersection(region).area > 0]


# ---- RCNN_Masks -------------------------------------------------------------------------------

# (pixel polygon, class). Class 1 is named, class 2 is not (folder "2"), class 3 is "Tree".
# A/B overlap inside chip (0, 0); E/F overlap on both sides of the chip border at column 192.
RCNN_FEATURES = [
    (h.pix_box(10.3, 20.6, 50.2, 45.7), 1),  # A
    (h.pix_poly([(30.3, 30.2), (60.7, 35.4), (40.1, 58.9)]), 1),  # B, overlaps A
    (h.pix_box(100.4, 30.2, 150.6, 90.3), 1),  # C, across four chips
    (h.pix_box(40.3, 100.2, 90.6, 120.7), 2),  # D, across column 64
    (h.pix_box(130.2, 140.3, 200.4, 170.6), 3),  # E
    (h.pix_box(180.3, 150.2, 220.6, 185.7), 3),  # F, overlaps E on both sides of column 192
    (h.pix_box(270.2, 275.4, 295.3, 298.8), 1),  # G, in the padded corner chip
]
RCNN_CLASSES = [ClassInfo(1, "Building"), ClassInfo(3, "Tree")]
FOLDER = {1: "Building", 2: "2", 3: "Tree"}


def _rcnn_labels():
    geoms = [g for g, _ in RCNN_FEATURES]
    values = [v for _, v in RCNN_FEATURES]
    return geoms, values, h.vector_labels(geoms, values, RCNN_CLASSES)


def _check_rcnn(out, geoms, values, folder_of, grid_box, label_ext="tif", labels_dir="labels"):
    """Every chip of an RCNN_Masks-like export against the features; returns {stem: {class: bands}}."""
    entries = fh.map_entries(out)
    assert entries
    seen = {}
    for e in entries:
        _, t = fh.read(e.image)
        region = fh.chip_polygon(t, TILE, TILE).intersection(grid_box)
        present = _present(geoms, region)
        classes = sorted({values[i] for i in present})
        # One file per class present, in labels/<class name>/, named like the image.
        found = sorted(d.name for d in (out / labels_dir).iterdir() if (d / f"{e.stem}.{label_ext}").is_file())
        assert found == sorted(folder_of[v] for v in classes), f"chip {e.stem}"
        seen[e.stem] = {}
        for v in classes:
            path = out / labels_dir / folder_of[v] / f"{e.stem}.{label_ext}"
            masks, lt = fh.read(path)
            assert lt == t, f"{path} is not georeferenced like its image"
            expected = [fh.centre_mask(geoms[i].intersection(region), t, TILE, TILE) for i in present
                        if values[i] == v]
            seen[e.stem][v] = fh.instance_ids_check(masks, expected, str(path.relative_to(out)))
    return entries, seen


def test_rcnn_masks_instances(tmp_path, rgb):
    raster, data = rgb
    geoms, values, labels = _rcnn_labels()
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="RCNN_Masks", labels=labels)
    entries, seen = _check_rcnn(out, geoms, values, FOLDER, fh.raster_box())
    # A chip for every tile that holds a feature, and no other.
    expected = set()
    for row in STARTS:
        for col in STARTS:
            region = h.pix_box(col, row, col + TILE, row + TILE).intersection(fh.raster_box())
            if _present(geoms, region):
                expected.add(STARTS.index(row) * len(STARTS) + STARTS.index(col))
    assert {int(e.stem) for e in entries} == expected
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["2", "Building", "Tree"]
    # The image chips are the raster's pixels.
    for e in entries:
        img, t = fh.read(e.image)
        col, row = h.offset_of(t, T0)
        np.testing.assert_array_equal(img, fh.padded_window(data, col, row, TILE, TILE))
    # Overlapping instances of one class are kept apart: different bands, both complete.
    assert len(set(seen["000000000000"][1])) == 2, "A and B overlap; they must lie in different bands"
    chip_128 = f"{2 * 5 + 2:012d}"
    chip_192 = f"{2 * 5 + 3:012d}"
    assert len(set(seen[chip_128][3])) == 2, "E and F overlap in chip (128, 128)"
    assert len(set(seen[chip_192][3])) == 2, "E and F overlap in chip (192, 128)"
    # Classes in the emd/stats: names, values as text when there is no name.
    emd = h.emd(out)
    assert emd["MetaDataMode"] == "RCNN_Masks"
    assert [(c["Value"], c["Name"]) for c in emd["Classes"]] == [(1, "Building"), (2, "2"), (3, "Tree")]


def test_rcnn_masks_map_txt_names_a_label_file(tmp_path, rgb):
    raster, _ = rgb
    geoms, values, labels = _rcnn_labels()
    for fmt, img_ext, lbl_ext in (("TIFF", "tif", "tif"), ("PNG", "png", "png")):
        out = tmp_path / fmt
        h.export(raster, out, metadata_format="RCNN_Masks", labels=labels, image_format=fmt)
        for e in fh.map_entries(out):
            assert len(e.tokens) == 2, e.tokens
            assert e.tokens[0] == f"images\\{e.stem}.{img_ext}"
            parts = e.tokens[-1].split("\\")
            assert len(parts) == 3 and parts[0] == "labels" and parts[1] in FOLDER.values(), e.tokens
            assert parts[2] == f"{e.stem}.{lbl_ext}"
            assert e.label.is_file()
        if fmt == "PNG":
            _check_rcnn(out, geoms, values, FOLDER, fh.raster_box(), label_ext="png")


def test_rcnn_masks_overlap_inside_one_chip_kept_whole(tmp_path, rgb):
    """Three mutually overlapping instances of one class: three ids, each its full polygon."""
    raster, _ = rgb
    geoms = [h.pix_box(70.3, 70.2, 110.6, 110.7), h.pix_box(90.2, 80.4, 120.3, 120.6),
             h.pix_poly([(75.4, 100.3), (125.2, 72.1), (124.6, 124.2)])]
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="RCNN_Masks", labels=h.vector_labels(geoms, [4, 4, 4]))
    entries = fh.map_entries(out)
    assert [e.stem for e in entries] == [f"{6:012d}"]  # chip (64, 64) only
    masks, t = fh.read(out / "labels" / "4" / f"{6:012d}.tif")
    bands = fh.instance_ids_check(masks, [fh.centre_mask(g, t, TILE, TILE) for g in geoms], "chip 6")
    assert len(set(bands)) == 3
    # Each instance is complete: the overlap is in both.
    a = (masks == 1).any(0)
    b = (masks == 2).any(0)
    assert (a & b).any()


def test_rcnn_masks_append_merges_class_folders(tmp_path, rgb):
    raster, _ = rgb
    geoms, values, labels = _rcnn_labels()
    out = tmp_path / "out"
    r1 = h.export(raster, out, metadata_format="RCNN_Masks", labels=labels)
    before = fh.files_under(out)
    lines1 = h.map_lines(out)
    raster_b = h.write_raster(tmp_path / "b.tif", h.random_image(3, seed=5))
    geoms_b = [h.pix_box(20.2, 150.3, 60.7, 180.4), h.pix_box(200.3, 20.2, 240.6, 50.1),
               h.pix_box(210.4, 30.3, 250.2, 60.6)]
    values_b = [1, 5, 5]
    labels_b = h.vector_labels(geoms_b, values_b, [ClassInfo(1, "Building"), ClassInfo(5, "Car")])
    r2 = h.export(raster_b, out, metadata_format="RCNN_Masks", labels=labels_b, start_index=r1.next_tile_index)
    after = fh.files_under(out)
    for name, data in before.items():
        if name not in ESRI_FILES:
            assert after[name] == data, f"{name} of the first export changed"
    lines = h.map_lines(out)
    assert lines[:len(lines1)] == lines1
    assert len(lines) == r1.num_tiles + r2.num_tiles
    new = [e for e in fh.map_entries(out) if int(e.stem) >= r1.next_tile_index]
    assert len(new) == r2.num_tiles
    # The second run's chips go into the same class folders; Car is added.
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["2", "Building", "Car", "Tree"]
    assert any((out / "labels" / "Building" / f"{e.stem}.tif").is_file() for e in new)
    assert any(int(p.stem) < r1.next_tile_index for p in (out / "labels" / "Building").glob("*.tif"))
    for e in new:
        assert e.label.is_file()
    # The new chips hold the second raster's features.
    folder = {1: "Building", 5: "Car"}
    for e in new:
        _, t = fh.read(e.image)
        present = _present(geoms_b, fh.chip_polygon(t, TILE, TILE))
        for v in sorted({values_b[i] for i in present}):
            masks, _ = fh.read(out / "labels" / folder[v] / f"{e.stem}.tif")
            fh.instance_ids_check(masks, [fh.centre_mask(geoms_b[i], t, TILE, TILE) for i in present
                                          if values_b[i] == v], e.stem)
    s = h.stats_json(out)
    assert s["NumTiles"] == r1.num_tiles + r2.num_tiles
    assert s["NextTileIndex"] == 2 * r1.next_tile_index
    assert [(c["ClassValue"], c["ClassName"]) for c in s["Classes"]] == \
        [(1, "Building"), (2, "2"), (3, "Tree"), (5, "Car")]
    assert not h.staging_left(tmp_path) and not h.staging_left(out)


def test_rcnn_masks_feature_grazing_a_chip_adds_no_instance(tmp_path, rgb):
    """A feature that reaches 0.3 px into the next chip covers no pixel centre there: that chip's
    instance masks must equal the rasterization (no id), as its Classified_Tiles label would be."""
    raster, _ = rgb
    geoms = [h.pix_box(30.2, 10.3, 64.3, 40.6)]
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="RCNN_Masks", labels=h.vector_labels(geoms, [1]))
    instances = {}
    for e in fh.map_entries(out):
        _, t = fh.read(e.image)
        paths = sorted((out / "labels").glob(f"*/{e.stem}.tif"))
        assert [p.relative_to(out).parts[:2] for p in paths] == [("labels", "1")], f"chip {e.stem}: {paths}"
        masks, _ = fh.read(paths[0])
        expected = fh.centre_mask(geoms[0], t, TILE, TILE)
        fh.instance_ids_check(masks, [expected], str(paths[0].relative_to(out)))
        instances[h.offset_of(t, T0)] = int(expected.any())
    # The feature's chip holds its one instance; the grazed chip (64, 0) is written (the feature
    # touches it) but holds no instance, and no other chip is written.
    assert instances == {(0, 0): 1, (64, 0): 0}


# ---- Labeled_Tiles ----------------------------------------------------------------------------

def _feature_set():
    """The conftest rectangles plus one next to the first (so a chip holds another feature)."""
    rects = list(RECTS) + [((52.3, 25.2, 60.7, 40.1), 2)]
    return [h.pix_box(*r) for r, _ in rects], [v for _, v in rects]


def _match_features(entries, geoms, tx=TILE, ty=TILE):
    """Map each chip to the feature whose bounding-box centre is at its centre (±1 px)."""
    owner = {}
    for e in entries:
        _, t = fh.read(e.image)
        hits = []
        for i, g in enumerate(geoms):
            minx, miny, maxx, maxy = g.bounds
            px, py = ~t * ((minx + maxx) / 2, (miny + maxy) / 2)
            if abs(px - tx / 2) <= 1 and abs(py - ty / 2) <= 1:
                hits.append(i)
        assert len(hits) == 1, f"chip {e.stem} is centred on features {hits}"
        owner[e.stem] = hits[0]
    assert sorted(owner.values()) == list(range(len(geoms))), "one chip per feature"
    return owner


def test_labeled_tiles_fixed_size(tmp_path, rgb):
    raster, data = rgb
    geoms, values = _feature_set()
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Labeled_Tiles", labels=h.vector_labels(geoms, values))
    entries = fh.map_entries(out)
    assert len(entries) == len(geoms)
    owner = _match_features(entries, geoms)
    for e in entries:
        img, t = fh.read(e.image)
        assert img.shape == (3, TILE, TILE)
        col, row = h.offset_of(t, T0)  # on whole source pixels
        np.testing.assert_array_equal(img, fh.padded_window(data, col, row, TILE, TILE))
        assert e.label == out / "labels" / f"{e.stem}.xml"
        objs = fh.xml_objects(e.label)
        i = owner[e.stem]
        assert len(objs) == 1, f"{e.label.name}: {len(objs)} objects"
        name, box = objs[0]
        assert name == str(values[i])
        assert box == pytest.approx(h.box_in_chip(geoms[i], t, TILE, TILE), abs=0.006)
    # The first feature's chip also shows the small one next to it; still one object.
    first = next(s for s, i in owner.items() if i == 0)
    _, t = fh.read(out / "images" / f"{first}.tif")
    assert geoms[-1].intersection(fh.chip_polygon(t, TILE, TILE)).area > 0
    emd = h.emd(out)
    assert emd["MetaDataMode"] == "Labeled_Tiles"
    assert emd["CropTileMode"] == "Fixed_Size" and emd["BlackenAroundFeature"] is False
    s = h.stats_json(out)
    assert s["NumTiles"] == len(geoms)
    assert s["FeatureStats"]["NumFeaturesPerClass"] == [values.count(v) for v in (1, 2, 3)]


def test_labeled_tiles_bounding_box(tmp_path, rgb):
    raster, data = rgb
    geoms, values = _feature_set()
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Labeled_Tiles", labels=h.vector_labels(geoms, values),
             crop_mode="BOUNDING_BOX")
    entries = fh.map_entries(out)
    assert len(entries) == len(geoms)
    matched = set()
    for e in entries:
        img, t = fh.read(e.image)
        col, row = h.offset_of(t, T0)
        w, hh = img.shape[2], img.shape[1]
        # The chip is the bounding box of one feature, widened to whole pixels.
        hits = []
        for i, g in enumerate(geoms):
            inv = ~T0
            c0, r0 = inv * (g.bounds[0], g.bounds[3])
            c1, r1 = inv * (g.bounds[2], g.bounds[1])
            if (col, row, col + w, row + hh) == (int(np.floor(c0)), int(np.floor(r0)),
                                                 int(np.ceil(c1)), int(np.ceil(r1))):
                hits.append(i)
        assert len(hits) == 1, f"chip {e.stem} ({col}, {row}, {w} x {hh}) is no feature's bounding box"
        i = hits[0]
        matched.add(i)
        np.testing.assert_array_equal(img, data[:, row:row + hh, col:col + w])
        objs = fh.xml_objects(e.label)
        assert len(objs) == 1 and objs[0][0] == str(values[i])
        assert objs[0][1] == pytest.approx(h.box_in_chip(geoms[i], t, w, hh), abs=0.006)
        assert f"<width>{w}</width>" in e.label.read_text() and f"<height>{hh}</height>" in e.label.read_text()
    assert matched == set(range(len(geoms)))
    assert h.emd(out)["CropTileMode"] == "Variable_Size"


@pytest.mark.parametrize("crop_mode", ["FIXED_SIZE", "BOUNDING_BOX"])
def test_labeled_tiles_blacken_around_feature(tmp_path, rgb, shapes, crop_mode):
    raster, data = rgb
    geoms, values = shapes  # triangle, two-part multipolygon, rectangle
    geoms = geoms + [h.pix_box(60.2, 120.3, 90.6, 150.4)]  # overlaps the triangle's chip
    values = values + [2]
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Labeled_Tiles", labels=h.vector_labels(geoms, values),
             blacken_around_feature=True, crop_mode=crop_mode)
    entries = fh.map_entries(out)
    assert len(entries) == len(geoms)
    owners = set()
    for e in entries:
        img, t = fh.read(e.image)
        col, row = h.offset_of(t, T0)
        w, hh = img.shape[2], img.shape[1]
        src = fh.padded_window(data, col, row, w, hh)
        # The chip's feature: the one named in its label whose box matches.
        (name, box), = fh.xml_objects(e.label)
        cands = [i for i, g in enumerate(geoms) if str(values[i]) == name and
                 np.allclose(box, h.box_in_chip(g, t, w, hh), atol=0.006)]
        assert len(cands) == 1
        i = cands[0]
        owners.add(i)
        inside = fh.centre_mask(geoms[i], t, w, hh)
        assert inside.any()
        assert (img[:, ~inside] == 0).all(), f"chip {e.stem}: pixels outside the feature are not black"
        np.testing.assert_array_equal(img[:, inside], src[:, inside])
    assert owners == set(range(len(geoms)))
    assert h.emd(out)["BlackenAroundFeature"] is True


# ---- MultiLabeled_Tiles -----------------------------------------------------------------------

def test_multilabeled_tiles_names_every_class(tmp_path, rgb):
    raster, _ = rgb
    geoms = [h.pix_box(*r) for r, _ in RECTS] + [h.pix_box(30.2, 50.3, 55.6, 60.4), h.pix_box(190.3, 100.2, 210.4, 135.6)]
    values = [v for _, v in RECTS] + [3, 2]
    names = {1: "Tree", 2: "Road", 3: "3"}
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="MultiLabeled_Tiles",
             labels=h.vector_labels(geoms, values, [ClassInfo(1, "Tree"), ClassInfo(2, "Road")]))
    entries = fh.map_entries(out)
    expected = {}
    for row in STARTS:
        for col in STARTS:
            region = h.pix_box(col, row, col + TILE, row + TILE).intersection(fh.raster_box())
            present = _present(geoms, region)
            if present:
                expected[STARTS.index(row) * 5 + STARTS.index(col)] = {values[i] for i in present}
    assert {int(e.stem) for e in entries} == set(expected)
    multi = 0
    for e in entries:
        img, t = fh.read(e.image)
        assert img.shape == (3, TILE, TILE)
        h.offset_of(t, T0)  # grid chips
        objs = fh.xml_objects(e.label)
        assert len(objs) == 1, f"{e.label.name}: {len(objs)} objects"
        got = objs[0][0].split(",")
        assert len(got) == len(set(got)), got
        assert set(got) == {names[v] for v in expected[int(e.stem)]}, f"chip {e.stem}"
        multi += len(got) > 1
    assert multi >= 2, "the data should give chips with several classes"
    assert h.emd(out)["MetaDataMode"] == "MultiLabeled_Tiles"


# ---- Imagenet ---------------------------------------------------------------------------------

def test_imagenet_class_folders(tmp_path, rgb):
    raster, data = rgb
    geoms, values = _feature_set()
    names = {1: "Tree", 2: "Road", 3: "3"}
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Imagenet",
             labels=h.vector_labels(geoms, values, [ClassInfo(1, "Tree"), ClassInfo(2, "Road")]))
    assert not (out / "labels").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(ESRI_FILES | {"images"})
    entries = fh.map_entries(out)
    assert all(len(e.tokens) == 1 for e in entries)
    assert len(entries) == len(geoms)
    owner = _match_features(entries, geoms)
    for e in entries:
        parts = e.tokens[0].split("\\")
        assert len(parts) == 3 and parts[0] == "images"
        assert parts[1] == names[values[owner[e.stem]]]
        assert e.image.is_file()
        img, t = fh.read(e.image)
        col, row = h.offset_of(t, T0)
        np.testing.assert_array_equal(img, fh.padded_window(data, col, row, TILE, TILE))
    on_disk = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.tif"))
    assert on_disk == sorted("/".join(e.tokens[0].split("\\")[1:]) for e in entries)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["3", "Road", "Tree"]
    assert h.emd(out)["MetaDataMode"] == "Imagenet"


def test_imagenet_append_keeps_earlier_chips(tmp_path, rgb):
    raster, _ = rgb
    geoms, values = _feature_set()
    labels = h.vector_labels(geoms, values, [ClassInfo(1, "Tree"), ClassInfo(2, "Road")])
    out = tmp_path / "out"
    r1 = h.export(raster, out, metadata_format="Imagenet", labels=labels)
    lines1 = h.map_lines(out)
    r2 = h.export(raster, out, metadata_format="Imagenet", labels=labels, start_index=r1.next_tile_index)
    lines = h.map_lines(out)
    assert lines[:len(lines1)] == lines1, "map.txt lost the earlier export's chips"
    assert len(lines) == r1.num_tiles + r2.num_tiles
    assert h.stats_json(out)["NumTiles"] == r1.num_tiles + r2.num_tiles
    for e in fh.map_entries(out):
        assert e.image.is_file()


# ---- CycleGAN ---------------------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path):
    """Domain A: 128 x 128 RGB; domain B: 160 x 100, 1 band uint16, elsewhere."""
    a = h.random_image(3, height=128, width=128, seed=3)
    b = h.random_image(1, height=100, width=160, dtype="uint16", seed=4, low=1, high=4000)
    tb = Affine(0.5, 0, 501000.0, 0, -0.5, 3321000.0)
    return (h.write_raster(tmp_path / "a.tif", a), a, T0), (h.write_raster(tmp_path / "b.tif", b, tb), b, tb)


def test_cyclegan_two_complete_exports(tmp_path, pair):
    (ra, a, ta), (rb, b, tb) = pair
    out = tmp_path / "out"
    res = h.export(ra, out, metadata_format="CycleGAN", raster2=rb)
    assert sorted(p.name for p in out.iterdir()) == ["A", "B"]
    for name, data, t in (("A", a, ta), ("B", b, tb)):
        d = out / name
        assert sorted(p.name for p in d.iterdir()) == sorted(ESRI_FILES | {"images"}), name
        s = h.stats_json(d)
        assert s["MetaDataMode"] == "CycleGAN" and h.emd(d)["MetaDataMode"] == "CycleGAN"
        assert s["NumBands"] == data.shape[0]
        entries = fh.map_entries(d)
        nx = len(range(0, data.shape[2], TILE))
        ny = len(range(0, data.shape[1], TILE))
        assert len(entries) == nx * ny == s["NumTiles"], name
        for e in entries:
            assert len(e.tokens) == 1
            img, ct = fh.read(e.image)
            col, row = h.offset_of(ct, t)
            np.testing.assert_array_equal(img, fh.padded_window(data, col, row, TILE, TILE))
        assert not (d / "labels").exists() and not (d / "images2").exists()
    assert res.num_tiles == 4 + 6
    assert not h.staging_left(tmp_path)


def test_cyclegan_without_raster2(tmp_path, pair):
    (ra, _, _), _ = pair
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(InputError) as ei:
        h.export(ra, parent / "out", metadata_format="CycleGAN")
    assert ei.value.parameter == "IN_RASTER2"
    assert list(parent.iterdir()) == []


def test_cyclegan_bad_raster2_leaves_nothing(tmp_path, pair):
    """Domain A is cut before B is opened; a B that cannot be read must take A with it."""
    (ra, _, _), _ = pair
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    out = tmp_path / "new" / "out"
    with pytest.raises(InputError) as ei:
        h.export(ra, out, metadata_format="CycleGAN", raster2=str(bad))
    assert ei.value.parameter == "IN_RASTER2"
    assert not (tmp_path / "new").exists()


def test_cyclegan_cancel_leaves_nothing(tmp_path, pair):
    (ra, _, _), (rb, _, _) = pair
    calls = []
    out = tmp_path / "exports" / "out"
    with pytest.raises(Canceled):
        run_export(h.config(ra, out, metadata_format="CycleGAN", raster2=rb), h.recording_events(calls),
                   lambda: any(p >= 50 for p in calls))  # while B is cut
    assert not (tmp_path / "exports").exists()


# ---- Panoptic_Segmentation --------------------------------------------------------------------

def test_panoptic_segmentation(tmp_path, rgb, shapes):
    raster, _ = rgb
    sem_geoms, sem_values = shapes  # classes 1..3, no overlap
    inst = [h.pix_box(70.3, 10.2, 100.6, 40.7), h.pix_box(85.2, 20.4, 110.3, 50.6),  # overlap, chip (64, 0)
            h.pix_box(200.2, 220.3, 230.4, 250.6), h.pix_box(10.3, 250.2, 30.6, 270.4)]
    inst_values = [7, 7, 8, 7]
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Panoptic_Segmentation",
             labels=h.vector_labels(sem_geoms, sem_values, [ClassInfo(1, "Grass"), ClassInfo(2, "Water")]),
             instance_labels=h.vector_labels(inst, inst_values, [ClassInfo(7, "Building", (255, 0, 0))]))
    entries = fh.map_entries(out)
    assert entries
    folder = {7: "Building", 8: "8"}
    box = fh.raster_box()
    for e in entries:
        _, t = fh.read(e.image)
        region = fh.chip_polygon(t, TILE, TILE).intersection(box)
        assert e.label == out / "labels" / f"{e.stem}.tif"
        sem, lt = fh.read(e.label)
        assert lt == t and sem.shape[0] == 1
        np.testing.assert_array_equal(sem[0], fh.centre_class_raster(
            [g.intersection(region) for g in sem_geoms], sem_values, t, TILE, TILE), err_msg=e.stem)
        present = _present(inst, region)
        found = sorted(d.name for d in (out / "labels2").iterdir() if (d / f"{e.stem}.tif").is_file())
        assert found == sorted({folder[inst_values[i]] for i in present}), e.stem
        for v in {inst_values[i] for i in present}:
            masks, it = fh.read(out / "labels2" / folder[v] / f"{e.stem}.tif")
            assert it == t
            fh.instance_ids_check(masks, [fh.centre_mask(inst[i].intersection(region), t, TILE, TILE)
                                          for i in present if inst_values[i] == v], e.stem)
        # A chip is there because it holds a semantic feature or an instance.
        assert present or _present(sem_geoms, region)
    assert (out / "labels2" / "Building" / f"{1:012d}.tif").is_file()
    emd = h.emd(out)
    assert emd["MetaDataMode"] == "Panoptic_Segmentation"
    assert [(c["Value"], c["Name"]) for c in emd["Classes"]] == [(1, "Grass"), (2, "Water"), (3, "3")]
    pic = emd["Panoptic_Segmentation_Instance_Classes"]
    assert [sorted(c) for c in pic] == [["Color", "Name", "Value"]] * 2
    assert [(c["Value"], c["Name"]) for c in pic] == [(7, "Building"), (8, "8")]
    assert pic[0]["Color"] == [255, 0, 0] and len(pic[1]["Color"]) == 3


@pytest.mark.parametrize("instances", [None, "empty"])
def test_panoptic_without_instances(tmp_path, rgb, shapes, instances):
    raster, _ = rgb
    geoms, values = shapes
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(InputError) as ei:
        h.export(raster, parent / "out", metadata_format="Panoptic_Segmentation",
                 labels=h.vector_labels(geoms, values),
                 instance_labels=None if instances is None else h.vector_labels([], []))
    assert ei.value.parameter == "IN_INSTANCE_DATA"
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("fmt", ["Panoptic_Segmentation", "Classified_Tiles"])
def test_overlap_pixel_has_one_class_in_every_chip(tmp_path, rgb, fmt):
    """Where two features overlap, a map pixel must get the same class in every (overlapping)
    chip that shows it, whichever share of each feature the chip holds."""
    raster, _ = rgb
    long_strip = h.pix_box(60.2, 25.3, 250.7, 30.6)  # class 1, 1010 px^2, mostly east of x = 64
    block = h.pix_box(50.2, 10.3, 70.4, 50.6)  # class 2, 814 px^2; the two overlap at x 60.2..70.4
    labels = h.vector_labels([long_strip, block], [1, 2])
    extra = {"instance_labels": h.vector_labels([block], [9])} if fmt == "Panoptic_Segmentation" else {}
    out = tmp_path / "out"
    h.export(raster, out, metadata_format=fmt, labels=labels, stride_x=32, stride_y=32, **extra)
    seen = {}  # source pixel -> {class: chips}
    for e in fh.map_entries(out):
        label, t = fh.read(e.label)
        col, row = h.offset_of(t, T0)
        for r, c in np.argwhere(label[0] > 0):
            seen.setdefault((row + r, col + c), {}).setdefault(int(label[0][r, c]), []).append(e.stem)
    overlap = [(r, c) for r in range(25, 31) for c in range(60, 70)]
    assert all(p in seen for p in overlap)
    torn = {p: v for p, v in seen.items() if len(v) > 1}
    assert not torn, (f"{len(torn)} pixels change class between chips, e.g. {next(iter(torn))}: "
                      f"{next(iter(torn.values()))}")


# ---- nothing half-written ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["RCNN_Masks", "Labeled_Tiles", "MultiLabeled_Tiles", "Imagenet",
                                 "Panoptic_Segmentation"])
def test_cancel_leaves_nothing(tmp_path, rgb, fmt):
    raster, _ = rgb
    geoms, values, labels = _rcnn_labels()
    extra = {}
    if fmt == "Panoptic_Segmentation":
        extra["instance_labels"] = h.vector_labels(geoms[:2], [9, 9])
    calls = []
    out = tmp_path / "new" / "out"
    with pytest.raises(Canceled):
        run_export(h.config(raster, out, metadata_format=fmt, labels=labels, workers=1, **extra),
                   h.recording_events(calls), lambda: bool(calls))
    assert calls
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("fmt", ["RCNN_Masks", "Labeled_Tiles", "MultiLabeled_Tiles", "Imagenet",
                                 "Panoptic_Segmentation"])
def test_labels_only_on_nodata_leave_nothing(tmp_path, nodata_raster, fmt):
    """An error found while cutting (every feature lies on NoData) leaves no folder behind."""
    raster, _ = nodata_raster
    labels = h.vector_labels([h.pix_box(80.2, 80.3, 110.4, 110.6)], [1])  # on the NoData block 64..128
    extra = {"instance_labels": labels} if fmt == "Panoptic_Segmentation" else {}
    out = tmp_path / "new" / "out"
    with pytest.raises(InputError) as ei:
        h.export(raster, out, metadata_format=fmt, labels=labels, tile_size_x=32, tile_size_y=32,
                 stride_x=32, stride_y=32, **extra)
    assert ei.value.parameter == "IN_CLASS_DATA"
    assert not (tmp_path / "new").exists()


def test_canceled_rcnn_append_leaves_the_earlier_export_as_it_was(tmp_path, rgb):
    raster, _ = rgb
    _, _, labels = _rcnn_labels()
    out = tmp_path / "out"
    r1 = h.export(raster, out, metadata_format="RCNN_Masks", labels=labels)
    before = h.snapshot(out)
    calls = []
    more = h.vector_labels([h.pix_box(20.2, 150.3, 60.7, 180.4)], [6], [ClassInfo(6, "Boat")])
    with pytest.raises(Canceled):
        run_export(h.config(raster, out, metadata_format="RCNN_Masks", labels=more, start_index=r1.next_tile_index),
                   h.recording_events(calls), lambda: bool(calls))
    assert h.snapshot(out) == before
    assert not h.staging_left(tmp_path) and not h.staging_left(out)
