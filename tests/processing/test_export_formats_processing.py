"""The instance, per-feature tile and image-pair formats and their options through
``processing.run`` on the real samples.

RCNN_Masks, Labeled_Tiles, MultiLabeled_Tiles, Imagenet, CycleGAN and
Panoptic_Segmentation; ROTATION_ANGLE, CROP_MODE, BLACKEN_AROUND_FEATURE and
PROCESS_ITEMS_SEPARATELY; the errors that name IN_RASTER2, IN_INSTANCE_DATA,
INSTANCE_CLASS_VALUE_FIELD and ROTATION_ANGLE. Layouts as in
shared/reference/esri-formats.md.
"""

import json
import os
import re

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsProcessingException,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

from dlt_helpers import (chips, elevation, fmt, geotransform, keyword_index, read, run_export,
                         trees, voc_boxes)

gdal.UseExceptions()

ESRI_FILES = ("map.txt", "stats.txt", "esri_accumulated_stats.json", "esri_model_definition.emd")
STEM = re.compile(r"^\d{12}$")


def emd(folder):
    return json.loads((folder / "esri_model_definition.emd").read_text())


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def pixel_offset(chip_path, raster_path):
    """(column, row) of a chip's upper-left corner in the raster's pixel grid."""
    chip_gt, gt = geotransform(chip_path)[0], geotransform(raster_path)[0]
    return (chip_gt[0] - gt[0]) / gt[1], (chip_gt[3] - gt[3]) / gt[5]


def source_boxes(data_dir):
    """The 61 tree boxes in raster pixels (xmin, ymin, xmax, ymax), from the DeepForest VOC file."""
    return [tuple(box[1:]) for box in voc_boxes(str(data_dir / "trees_osbs" / "OSBS_029.xml"))]


def two_class_trees(data_dir):
    """The trees as a memory layer with every other tree class 2 ("Snag")."""
    source = QgsVectorLayer(trees(data_dir)[1], "trees", "ogr")
    layer = QgsVectorLayer(f"Polygon?crs={source.crs().authid()}", "two classes", "memory")
    provider = layer.dataProvider()
    provider.addAttributes([QgsField("classvalue", QVariant.Int), QgsField("classname", QVariant.String)])
    layer.updateFields()
    for i, feature in enumerate(sorted(source.getFeatures(), key=lambda f: f.id())):
        new = QgsFeature(layer.fields())
        new.setGeometry(QgsGeometry(feature.geometry()))
        new.setAttributes([1, "Tree"] if i % 2 == 0 else [2, "Snag"])
        provider.addFeature(new)
    layer.updateExtents()
    return layer


def building_instances(data_dir):
    """The buildings (EPSG:4326) as instances of class 7 "Building", in a memory layer."""
    source = QgsVectorLayer(elevation(data_dir)[1], "buildings", "ogr")
    layer = QgsVectorLayer("MultiPolygon?crs=EPSG:4326", "instances", "memory")
    provider = layer.dataProvider()
    provider.addAttributes([QgsField("kind", QVariant.Int), QgsField("ClassName", QVariant.String)])
    layer.updateFields()
    for feature in source.getFeatures():
        new = QgsFeature(layer.fields())
        new.setGeometry(QgsGeometry(feature.geometry()))
        new.setAttributes([7, "Building"])
        provider.addFeature(new)
    layer.updateExtents()
    assert layer.featureCount() == 84
    return layer


def instance_ids(mask):
    """Sorted instance ids of an instance mask (any band count), background excluded."""
    return sorted(set(np.unique(mask).tolist()) - {0})


# ---------------------------------------------------------------------------
# The help lists every format; nothing is "not supported yet"
# ---------------------------------------------------------------------------


def test_every_format_offered_and_documented(alg):
    keywords = [label.split(" ", 1)[0] for label in alg.parameterDefinition("METADATA_FORMAT").options()]
    assert keywords == [
        "KITTI_rectangles", "PASCAL_VOC_rectangles", "Classified_Tiles", "RCNN_Masks", "Labeled_Tiles",
        "MultiLabeled_Tiles", "Export_Tiles", "CycleGAN", "Imagenet", "Panoptic_Segmentation",
    ]
    text = alg.shortHelpString() + " ".join(alg.parameterDefinition("METADATA_FORMAT").options())
    assert "not supported" not in text
    for keyword in keywords + ["PROCESS_ITEMS_SEPARATELY", "BOUNDING_BOX", "ROTATION_ANGLE", "IN_INSTANCE_DATA"]:
        assert keyword in alg.shortHelpString()


# ---------------------------------------------------------------------------
# The six formats
# ---------------------------------------------------------------------------


def test_rcnn_masks_one_id_per_tree(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "rcnn"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "RCNN_Masks"),
        "TILE_SIZE_X": 200, "TILE_SIZE_Y": 200, "STRIDE_X": 200, "STRIDE_Y": 200,
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) == 4
    assert sorted(os.listdir(out / "labels")) == ["Tree"]
    boxes = source_boxes(data_dir)
    for image in images:
        col, row = pixel_offset(image, raster)
        mask_path = out / "labels" / "Tree" / f"{stem(image)}.tif"
        assert geotransform(mask_path)[0] == geotransform(image)[0]
        mask = read(mask_path)
        mask = mask[np.newaxis] if mask.ndim == 2 else mask
        assert mask.shape[1:] == (200, 200)
        # Instance ids 1..N, 0 background; N is the number of trees on the chip.
        ids = instance_ids(mask)
        on_chip = [b for b in boxes if b[0] < col + 200 and b[2] > col and b[1] < row + 200 and b[3] > row]
        inside = [b for b in on_chip if col <= b[0] and b[2] <= col + 200 and row <= b[1] and b[3] <= row + 200]
        assert ids == list(range(1, len(ids) + 1))
        assert len(inside) <= len(ids) <= len(on_chip)
        # Each instance is one tree box (pixel bounds within a pixel of the box, clipped to the chip)...
        for i in ids:
            rows, cols = np.nonzero((mask == i).any(axis=0))
            got = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
            assert any(
                all(abs(g - e) <= 1.0 for g, e in zip(got, (max(b[0] - col, 0), max(b[1] - row, 0),
                                                          min(b[2] - col, 200), min(b[3] - row, 200))))
                for b in on_chip
            ), f"{stem(image)}: instance {i} at {got} is no tree"
            assert (mask == i).sum() == (mask == i).any(axis=0).sum()  # in one band only
        # ... and every tree wholly on the chip has its own id at its centre.
        centre_ids = set()
        for b in inside:
            cx, cy = int((b[0] + b[2]) / 2 - col), int((b[1] + b[3]) / 2 - row)
            here = set(mask[:, cy, cx].tolist()) - {0}
            assert here, f"{stem(image)}: no instance at the centre of tree {b}"
            centre_ids |= here
        assert len(centre_ids) >= len(inside) - 2  # small overlapping trees may share a centre pixel
    assert emd(out)["MetaDataMode"] == "RCNN_Masks"
    assert [(c["Value"], c["Name"]) for c in emd(out)["Classes"]] == [(1, "Tree")]


def test_labeled_tiles_one_chip_per_feature(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "labeled"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "Labeled_Tiles"),
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64,
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) == 61
    boxes = source_boxes(data_dir)
    centres = []
    for image in images:
        assert read(image).shape == (3, 64, 64)
        objects = voc_boxes(str(out / "labels" / f"{stem(image)}.xml"))
        assert len(objects) == 1 and objects[0][0] == "1"  # one object, named by the class value
        col, row = pixel_offset(image, raster)
        centres.append((col + 32, row + 32))
    # Each chip is centred on its own tree: chip centres are the 61 box centres.
    for b in boxes:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        assert any(abs(cx - x) <= 1 and abs(cy - y) <= 1 for x, y in centres), b
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["MetaDataMode"] == "Labeled_Tiles" and stats["NumTiles"] == 61
    assert emd(out)["CropTileMode"] == "Fixed_Size" and emd(out)["BlackenAroundFeature"] is False


def test_multilabeled_tiles_list_every_class(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    out = tmp_path / "multi"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": two_class_trees(data_dir),
        "METADATA_FORMAT": fmt(alg, "MultiLabeled_Tiles"),
        "TILE_SIZE_X": 100, "TILE_SIZE_Y": 100, "STRIDE_X": 100, "STRIDE_Y": 100,
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) > 0
    seen = set()
    for image in images:
        objects = voc_boxes(str(out / "labels" / f"{stem(image)}.xml"))
        assert len(objects) == 1
        names = objects[0][0].split(",")
        assert names and set(names) <= {"Tree", "Snag"} and len(set(names)) == len(names)
        seen.add(tuple(sorted(names)))
    assert ("Snag", "Tree") in seen  # a chip with both classes lists both
    assert [(c["Value"], c["Name"]) for c in emd(out)["Classes"]] == [(1, "Tree"), (2, "Snag")]


def test_imagenet_class_folders(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    out = tmp_path / "imagenet"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": two_class_trees(data_dir),
        "METADATA_FORMAT": fmt(alg, "Imagenet"),
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64,
    })
    assert sorted(os.listdir(out / "images")) == ["Snag", "Tree"]
    tree_chips, snag_chips = chips(str(out), "images/Tree"), chips(str(out), "images/Snag")
    assert (len(tree_chips), len(snag_chips)) == (31, 30)
    assert result["NUM_TILES"] == 61
    assert not (out / "labels").exists()
    assert all(STEM.match(stem(p)) for p in tree_chips + snag_chips)
    map_txt = (out / "map.txt").read_text()
    assert "images\\Tree\\" in map_txt and "images\\Snag\\" in map_txt
    assert emd(out)["MetaDataMode"] == "Imagenet"


def test_cyclegan_two_complete_exports(alg, data_dir, tmp_path):
    raster, _ = elevation(data_dir)
    out = tmp_path / "cyclegan"
    result = run_export({
        "IN_RASTER": raster, "IN_RASTER2": str(data_dir / "elevation" / "hag.tif"), "OUT_FOLDER": str(out),
        "METADATA_FORMAT": fmt(alg, "CycleGAN"),
        "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 128, "STRIDE_Y": 128,
    })
    assert sorted(os.listdir(out)) == ["A", "B"]  # nothing at the root
    counts = {}
    for domain, source in (("A", raster), ("B", str(data_dir / "elevation" / "hag.tif"))):
        folder = out / domain
        for name in ESRI_FILES:
            assert (folder / name).is_file(), f"{domain}/{name}"
        images = chips(str(folder))
        counts[domain] = len(images)
        assert len(images) > 0
        first = images[0]
        col, row = pixel_offset(first, source)
        assert (col, row) == (0, 0)
        np.testing.assert_array_equal(read(first), read(source)[:128, :128])
        stats = json.loads((folder / "esri_accumulated_stats.json").read_text())
        assert stats["MetaDataMode"] == "CycleGAN" and stats["NumTiles"] == len(images)
    assert result["NUM_TILES"] == counts["A"] + counts["B"]


def test_panoptic_segmentation_with_instances(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    out = tmp_path / "panoptic"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "IN_INSTANCE_DATA": building_instances(data_dir), "INSTANCE_CLASS_VALUE_FIELD": "kind",
        "METADATA_FORMAT": fmt(alg, "Panoptic_Segmentation"),
        "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 128, "STRIDE_Y": 128,
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) > 0
    assert sorted(os.listdir(out / "labels2")) == ["Building"]
    with_instances = 0
    for image in images:
        semantic = read(out / "labels" / f"{stem(image)}.tif")
        assert semantic.shape == (128, 128) and set(np.unique(semantic)) <= {0, 1}
        instance_path = out / "labels2" / "Building" / f"{stem(image)}.tif"
        if not instance_path.exists():
            assert not semantic.any()
            continue
        with_instances += 1
        mask = read(instance_path)
        mask = mask[np.newaxis] if mask.ndim == 2 else mask
        ids = instance_ids(mask)
        assert ids == list(range(1, len(ids) + 1))
        # The same buildings: instance pixels are the semantic building pixels.
        assert np.array_equal(mask.any(axis=0), semantic > 0)
    assert with_instances > 0
    definition = emd(out)
    assert [(c["Value"], c["Name"]) for c in definition["Panoptic_Segmentation_Instance_Classes"]] == [
        (7, "Building")
    ]
    assert [c["Value"] for c in definition["Classes"]] == [1]


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


@pytest.mark.heavy
def test_rotation_angle_90_gives_four_times_the_chips(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    params = {
        "IN_RASTER": raster, "IN_CLASS_DATA": labels, "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
        "TILE_SIZE_X": 200, "TILE_SIZE_Y": 200, "STRIDE_X": 200, "STRIDE_Y": 200,
    }
    plain = run_export(dict(params, OUT_FOLDER=str(tmp_path / "plain")))
    rotated = run_export(dict(params, OUT_FOLDER=str(tmp_path / "rotated"), ROTATION_ANGLE=90.0))
    assert plain["NUM_TILES"] == 4
    assert rotated["NUM_TILES"] == 4 * plain["NUM_TILES"] == len(chips(str(tmp_path / "rotated")))
    # Chip 4k + t is tile k turned by t * 90 degrees (counter-clockwise on the map, so the picture turns
    # clockwise): full-size, the same pixels turned, the same trees with their boxes turned.
    for k, image in enumerate(chips(str(tmp_path / "plain"))):
        original = read(image).astype(int)
        boxes = voc_boxes(str(tmp_path / "plain" / "labels" / f"{stem(image)}.xml"))
        for t in range(4):
            name = f"{4 * k + t:012d}"
            turned = read(tmp_path / "rotated" / "images" / f"{name}.tif").astype(int)
            assert turned.shape == original.shape
            # Resampled on the turned grid: equal up to rounding (1 grey level on a few pixels).
            difference = np.abs(turned - np.rot90(original, -t, axes=(1, 2)))
            assert difference.max() <= 1 and np.count_nonzero(difference) < 0.05 * difference.size, (k, t)
            expected = [box[1:] for box in boxes]
            for _ in range(t):  # (x, y) -> (200 - y, x)
                expected = [(200 - y1, x0, 200 - y0, x1) for x0, y0, x1, y1 in expected]
            got = sorted(box[1:] for box in voc_boxes(str(tmp_path / "rotated" / "labels" / f"{name}.xml")))
            assert len(got) == len(expected)
            for g, e in zip(got, sorted(expected)):
                assert all(abs(a - b) <= 1.0 for a, b in zip(g, e)), (k, t, g, e)


def test_crop_mode_bounding_box(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "bbox"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "Labeled_Tiles"),
        "CROP_MODE": keyword_index(alg, "CROP_MODE", "BOUNDING_BOX"),
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64,
    })
    assert result["NUM_TILES"] == 61
    assert emd(out)["CropTileMode"] == "Variable_Size"
    boxes = source_boxes(data_dir)
    sizes = set()
    for image in chips(str(out)):
        height, width = read(image).shape[1:]
        sizes.add((width, height))
        col, row = pixel_offset(image, raster)
        # The chip is its tree's bounding box (on whole pixels).
        assert any(all(abs(a - e) <= 1 + 1e-6 for a, e in zip((col, row, col + width, row + height), b))
                   for b in boxes), (col, row, width, height)
    assert len(sizes) > 10


@pytest.mark.heavy
def test_blacken_around_feature(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "blacken"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "Labeled_Tiles"), "BLACKEN_AROUND_FEATURE": True,
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64,
    })
    assert result["NUM_TILES"] == 61
    assert emd(out)["BlackenAroundFeature"] is True
    source = read(raster)
    for image in chips(str(out)):
        data = read(image)
        _, xmin, ymin, xmax, ymax = voc_boxes(str(out / "labels" / f"{stem(image)}.xml"))[0]
        outside = np.ones(data.shape[1:], dtype=bool)
        outside[int(np.floor(ymin)): int(np.ceil(ymax)), int(np.floor(xmin)): int(np.ceil(xmax))] = False
        assert not data[:, outside].any(), f"{stem(image)}: pixels outside the tree are not 0"
        # Inside the tree the pixels are the raster's.
        col, row = (int(round(v)) for v in pixel_offset(image, raster))
        y0, x0 = int(np.ceil(ymin)), int(np.ceil(xmin))
        y1, x1 = int(np.floor(ymax)), int(np.floor(xmax))
        if y1 > y0 and x1 > x0 and row + y0 >= 0 and col + x0 >= 0:
            np.testing.assert_array_equal(
                data[:, y0:y1, x0:x1], source[:, row + y0: row + y1, col + x0: col + x1]
            )


def halves_vrt(data_dir, tmp_path):
    """A VRT of the two halves (left 200 and right 200 columns) of OSBS_029.tif."""
    raster, _ = trees(data_dir)
    left, right = str(tmp_path / "left.tif"), str(tmp_path / "right.tif")
    gdal.Translate(left, raster, srcWin=[0, 0, 200, 400])
    gdal.Translate(right, raster, srcWin=[200, 0, 200, 400])
    vrt = str(tmp_path / "halves.vrt")
    gdal.BuildVRT(vrt, [left, right]).FlushCache()
    return vrt, left, right


@pytest.mark.heavy
def test_process_items_separately(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    vrt, left, right = halves_vrt(data_dir, tmp_path)
    params = {
        "IN_RASTER": vrt, "METADATA_FORMAT": fmt(alg, "Export_Tiles"),
        "TILE_SIZE_X": 150, "TILE_SIZE_Y": 150, "STRIDE_X": 150, "STRIDE_Y": 150,
    }
    # The mosaic as one image: 3 x 3 tiles over 400 x 400 pixels.
    mosaic = run_export(dict(params, OUT_FOLDER=str(tmp_path / "mosaic")))
    assert mosaic["NUM_TILES"] == 9
    out = tmp_path / "items"
    result = run_export(dict(
        params, OUT_FOLDER=str(out),
        PROCESSING_MODE=keyword_index(alg, "PROCESSING_MODE", "PROCESS_ITEMS_SEPARATELY"),
    ))
    # Each 200 x 400 half on its own grid: 2 x 3 tiles, numbered on from one item to the next.
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) == 12
    assert [stem(p) for p in images] == [f"{i:012d}" for i in range(12)]
    source = read(raster)
    items = []
    for image in images:
        col, row = pixel_offset(image, raster)
        assert col == pytest.approx(round(col)) and row == pytest.approx(round(row))
        col, row = int(round(col)), int(round(row))
        items.append(0 if col < 200 else 1)
        # Tiles start at each item's own corner (column 200 for the right half), not on the mosaic's grid.
        assert (col - 200 * items[-1]) % 150 == 0 and row % 150 == 0
        chip = read(image)
        w, h = min(150, 200 * (items[-1] + 1) - col), min(150, 400 - row)
        np.testing.assert_array_equal(chip[:, :h, :w], source[:, row: row + h, col: col + w])
    assert items == [0] * 6 + [1] * 6
    assert json.loads((out / "esri_accumulated_stats.json").read_text())["NextTileIndex"] == 12


# ---------------------------------------------------------------------------
# Errors that name the parameter; nothing written
# ---------------------------------------------------------------------------


def instance_points(data_dir):
    layer = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    source = QgsVectorLayer(elevation(data_dir)[1], "buildings", "ogr")
    features = []
    for feature in source.getFeatures():
        new = QgsFeature()
        new.setGeometry(feature.geometry().centroid())
        features.append(new)
    layer.dataProvider().addFeatures(features)
    layer.updateExtents()
    return layer


FORMAT_ERRORS = {
    "cyclegan without IN_RASTER2": ("IN_RASTER2", lambda d: {"METADATA_FORMAT": "CycleGAN"}),
    "panoptic without instances": ("IN_INSTANCE_DATA", lambda d: {"METADATA_FORMAT": "Panoptic_Segmentation"}),
    "rotation negative": ("ROTATION_ANGLE", lambda d: {"ROTATION_ANGLE": -10.0}),
    "rotation 360": ("ROTATION_ANGLE", lambda d: {"ROTATION_ANGLE": 360.0}),
    "rotation 400": ("ROTATION_ANGLE", lambda d: {"ROTATION_ANGLE": 400.0}),
    "instance field unknown": ("INSTANCE_CLASS_VALUE_FIELD", lambda d: {
        "METADATA_FORMAT": "Panoptic_Segmentation", "IN_INSTANCE_DATA": building_instances(d),
        "INSTANCE_CLASS_VALUE_FIELD": "no_such_field"}),
    "instance field not numeric": ("INSTANCE_CLASS_VALUE_FIELD", lambda d: {
        "METADATA_FORMAT": "Panoptic_Segmentation", "IN_INSTANCE_DATA": building_instances(d),
        "INSTANCE_CLASS_VALUE_FIELD": "ClassName"}),
    "instance raster": ("IN_INSTANCE_DATA", lambda d: {
        "METADATA_FORMAT": "Panoptic_Segmentation", "IN_INSTANCE_DATA": str(d / "elevation" / "hag.tif")}),
    "instance points without buffer": ("BUFFER_RADIUS", lambda d: {
        "METADATA_FORMAT": "Panoptic_Segmentation", "IN_INSTANCE_DATA": instance_points(d)}),
    "rcnn from a classified raster": ("IN_CLASS_DATA", lambda d: {
        "METADATA_FORMAT": "RCNN_Masks", "IN_CLASS_DATA": str(d / "elevation" / "hag.tif")}),
}


@pytest.mark.parametrize("case", sorted(FORMAT_ERRORS))
def test_errors_name_the_parameter(alg, data_dir, tmp_path, case):
    parameter, extra = FORMAT_ERRORS[case]
    raster, labels = elevation(data_dir)
    out = tmp_path / "out"
    params = {"IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
              "METADATA_FORMAT": "PASCAL_VOC_rectangles"}
    params.update(extra(data_dir))
    params["METADATA_FORMAT"] = fmt(alg, params["METADATA_FORMAT"])
    with pytest.raises(QgsProcessingException) as error:
        run_export(params)
    message = str(error.value)
    assert f"({parameter}):" in message, message
    assert "Traceback" not in message
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")]


def test_instance_points_with_buffer_radius(alg, data_dir, tmp_path):
    """Point instances use BUFFER_RADIUS (in the layer's units: degrees here); polygons would not."""
    raster, labels = elevation(data_dir)
    out = tmp_path / "points"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "IN_INSTANCE_DATA": instance_points(data_dir), "BUFFER_RADIUS": 0.00003,
        "METADATA_FORMAT": fmt(alg, "Panoptic_Segmentation"),
        "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 128, "STRIDE_Y": 128,
    })
    assert result["NUM_TILES"] > 0
    # No class field: every instance is class 1, named "1".
    assert sorted(os.listdir(out / "labels2")) == ["1"]
    assert [c["Value"] for c in emd(out)["Panoptic_Segmentation_Instance_Classes"]] == [1]


def test_instance_data_ignored_for_other_formats(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    out = tmp_path / "ct"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "IN_INSTANCE_DATA": building_instances(data_dir), "INSTANCE_CLASS_VALUE_FIELD": "no_such_field",
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"),
        "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 128, "STRIDE_Y": 128,
    })
    assert result["NUM_TILES"] > 0
    assert not (out / "labels2").exists()
    assert "Panoptic_Segmentation_Instance_Classes" not in emd(out)
