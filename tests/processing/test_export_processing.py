"""Export Training Data For Deep Learning through ``processing.run`` on real layers.

Asserts on what a user would check: chip georeferencing against the raster grid,
label pixels against QGIS's own rasterization of the reprojected polygons, VOC
boxes against the original box file, class names and colours, errors that name
the parameter, and cancel.
"""

import json
import os
import time

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from dlt_helpers import (chips, elevation, fmt, geotransform, keyword_index, read, run_export,
                         trees, voc_boxes)

gdal.UseExceptions()


def chip_offset(chip_path, raster_path):
    """(column, row) of the chip's upper-left pixel in the raster grid, checked to be whole pixels."""
    chip_gt, chip_srs = geotransform(chip_path)
    gt, srs = geotransform(raster_path)
    assert chip_srs is not None and chip_srs.IsSame(srs), chip_path
    assert chip_gt[1] == pytest.approx(gt[1]) and chip_gt[5] == pytest.approx(gt[5])
    assert chip_gt[2] == 0 and chip_gt[4] == 0
    col = (chip_gt[0] - gt[0]) / gt[1]
    row = (chip_gt[3] - gt[3]) / gt[5]
    assert col == pytest.approx(round(col), abs=1e-6) and row == pytest.approx(round(row), abs=1e-6)
    return int(round(col)), int(round(row))


def reprojected_copy(layer_path, crs, out_path):
    """The label layer reprojected by QGIS into ``crs``, written to a GeoPackage."""
    layer = QgsVectorLayer(layer_path, "labels", "ogr")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.ct = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance().transformContext())
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(out_path), QgsProject.instance().transformContext(),
                                                      options)
    assert result[0] == QgsVectorFileWriter.NoError, result
    return str(out_path)


def rasterize_like(chip_path, vector_path, burn=1):
    """gdal.Rasterize of ``vector_path`` onto the chip's grid (pixel-centre rule)."""
    gt, srs = geotransform(chip_path)
    ds = gdal.Open(chip_path)
    width, height = ds.RasterXSize, ds.RasterYSize
    ds = None
    target = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal.GDT_Byte)
    target.SetGeoTransform(gt)
    target.SetSpatialRef(srs)
    gdal.Rasterize(target, vector_path, burnValues=[burn])
    array = target.ReadAsArray()
    target = None
    return array


def memory_layer(geometry_type, crs, features, fields=(("classvalue", QVariant.Int),)):
    layer = QgsVectorLayer(f"{geometry_type}?crs={crs}", "memory labels", "memory")
    provider = layer.dataProvider()
    provider.addAttributes([QgsField(name, kind) for name, kind in fields])
    layer.updateFields()
    for wkt, attributes in features:
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature.setAttributes(list(attributes))
        provider.addFeature(feature)
    layer.updateExtents()
    assert layer.isValid()
    return layer


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


def test_trees_pascal_voc_boxes_match_source_boxes(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "voc"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
        "TILE_SIZE_X": 256, "TILE_SIZE_Y": 256, "STRIDE_X": 128, "STRIDE_Y": 128,
    })
    assert result["OUT_FOLDER"] == str(out)
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) > 0
    source = voc_boxes(str(data_dir / "trees_osbs" / "OSBS_029.xml"))
    assert len(source) == 61

    matched = 0
    for image in images:
        col, row = chip_offset(image, raster)
        stem = os.path.splitext(os.path.basename(image))[0]
        exported = voc_boxes(str(out / "labels" / f"{stem}.xml"))
        for _, xmin, ymin, xmax, ymax in source:
            inside = col <= xmin and xmax <= col + 256 and row <= ymin and ymax <= row + 256
            if not inside:
                continue
            expected = (xmin - col, ymin - row, xmax - col, ymax - row)
            assert any(
                all(abs(a - b) <= 1.0 for a, b in zip(box[1:], expected)) for box in exported
            ), f"{stem}: box {expected} missing in {exported}"
            matched += 1
        # Every exported box is a source box (maybe clipped at the chip edge).
        for _, *box in exported:
            assert 0 <= box[0] < box[2] <= 256 and 0 <= box[1] < box[3] <= 256
            assert any(
                abs(box[0] - max(s[1] - col, 0)) <= 1 and abs(box[1] - max(s[2] - row, 0)) <= 1
                and abs(box[2] - min(s[3] - col, 256)) <= 1 and abs(box[3] - min(s[4] - row, 256)) <= 1
                for s in source
            ), f"{stem}: exported box {box} is not a source box"
    assert matched >= 61  # every tree lies wholly inside at least one chip

    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert [(c["Value"], c["Name"]) for c in emd["Classes"]] == [(1, "Tree")]
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["MetaDataMode"] == "PASCAL_VOC_rectangles" and stats["NumTiles"] == len(images)
    assert (out / "map.txt").exists()


def test_elevation_classified_tiles_match_qgis_rasterization(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    out = tmp_path / "ct"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"),
        "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 64, "STRIDE_Y": 64,
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) > 0

    raster_crs = QgsRasterLayer(raster, "dsm").crs()
    reference = reprojected_copy(labels, raster_crs, tmp_path / "buildings_utm.gpkg")
    dsm = read(raster)
    for image in images:
        col, row = chip_offset(image, raster)
        assert col % 64 == 0 and row % 64 == 0
        stem = os.path.splitext(os.path.basename(image))[0]
        label_path = str(out / "labels" / f"{stem}.tif")
        assert geotransform(label_path)[0] == pytest.approx(geotransform(image)[0])
        label = read(label_path)
        assert label.shape == (128, 128)
        assert set(np.unique(label)) <= {0, 1}
        expected = rasterize_like(label_path, reference)
        # Inside the raster the labels are the polygons; the padding beyond it is background.
        valid = np.zeros_like(label, dtype=bool)
        valid[: max(0, min(128, dsm.shape[0] - row)), : max(0, min(128, dsm.shape[1] - col))] = True
        mismatch = np.count_nonzero((label != expected) & valid)
        assert mismatch <= 0.005 * valid.sum(), f"{stem}: {mismatch} label pixels differ"
        assert not label[~valid].any()
        # Image pixels are the DSM's, Float32 unchanged.
        image_array = read(image)
        assert image_array.dtype == np.float32
        h, w = valid.sum(axis=0).max(), valid.sum(axis=1).max()
        np.testing.assert_array_equal(image_array[:h, :w], dsm[row: row + h, col: col + w])

    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    assert stats["MetaDataMode"] == "Classified_Tiles"
    assert stats["NumBands"] == 1


def test_raster_class_data_with_palette(alg, data_dir, tmp_path):
    """A classified raster as IN_CLASS_DATA: names and colours come from its palette."""
    raster, labels = elevation(data_dir)
    reference = reprojected_copy(labels, QgsRasterLayer(raster, "dsm").crs(), tmp_path / "b.gpkg")
    class_path = str(tmp_path / "classes.tif")
    src = gdal.Open(raster)
    target = gdal.GetDriverByName("GTiff").Create(class_path, src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
    target.SetGeoTransform(src.GetGeoTransform())
    target.SetProjection(src.GetProjection())
    src = None
    gdal.Rasterize(target, reference, burnValues=[3])
    target = None
    class_layer = QgsRasterLayer(class_path, "classes")
    renderer = QgsPalettedRasterRenderer(
        class_layer.dataProvider(), 1,
        [QgsPalettedRasterRenderer.Class(3, QColor(200, 30, 40), "Building")],
    )
    class_layer.setRenderer(renderer)
    out = tmp_path / "rl"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": class_layer,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"),
        "TILE_SIZE_X": 128, "TILE_SIZE_Y": 128, "STRIDE_X": 128, "STRIDE_Y": 128,
    })
    assert result["NUM_TILES"] > 0
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert [(c["Value"], c["Name"], c["Color"]) for c in emd["Classes"]] == [(3, "Building", [200, 30, 40])]
    for image in chips(str(out)):
        stem = os.path.splitext(os.path.basename(image))[0]
        label = read(str(out / "labels" / f"{stem}.tif"))
        assert set(np.unique(label)) <= {0, 3}


# ---------------------------------------------------------------------------
# Layers from QGIS: memory provider, other CRS, renderer colours, points, invalid geometries
# ---------------------------------------------------------------------------


def tree_layer_in(crs_authid, data_dir, geometry="polygon", renderer_color=None):
    """The tree boxes as a memory layer in another CRS (or as centre points)."""
    source = QgsVectorLayer(str(data_dir / "trees_osbs" / "trees.gpkg"), "trees", "ogr")
    crs = QgsCoordinateReferenceSystem(crs_authid)
    transform = QgsCoordinateTransform(source.crs(), crs, QgsProject.instance().transformContext())
    features = []
    for feature in source.getFeatures():
        geom = QgsGeometry(feature.geometry())
        if geometry == "point":
            geom = geom.centroid()
        geom.transform(transform)
        features.append((geom.asWkt(), (feature["classvalue"], feature["classname"])))
    kind = "Point" if geometry == "point" else "Polygon"
    layer = memory_layer(kind, crs_authid, features,
                         fields=(("ClassValue", QVariant.Int), ("ClassName", QVariant.String)))
    if renderer_color is not None:
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(*renderer_color))
        layer.setRenderer(QgsCategorizedSymbolRenderer("ClassValue", [QgsRendererCategory(1, symbol, "tree")]))
    return layer


def test_memory_layer_in_other_crs_with_renderer_colors(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    layer = tree_layer_in("EPSG:4326", data_dir, renderer_color=(10, 200, 30))
    out = tmp_path / "kitti"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": layer,
        "METADATA_FORMAT": fmt(alg, "KITTI_rectangles"),
        "TILE_SIZE_X": 400, "TILE_SIZE_Y": 400, "STRIDE_X": 400, "STRIDE_Y": 400,
    })
    assert result["NUM_TILES"] == 1
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert [(c["Value"], c["Name"], c["Color"]) for c in emd["Classes"]] == [(1, "Tree", [10, 200, 30])]
    lines = (out / "labels" / (os.path.splitext(os.path.basename(chips(str(out))[0]))[0] + ".txt")).read_text()
    boxes = [line.split() for line in lines.splitlines() if line.strip()]
    assert len(boxes) == 61
    source = voc_boxes(str(data_dir / "trees_osbs" / "OSBS_029.xml"))
    for _, xmin, ymin, xmax, ymax in source:  # KITTI: class, trunc, occl, alpha, left top right bottom, ...
        assert any(
            all(abs(float(b[4 + i]) - v) <= 1.0 for i, v in enumerate((xmin, ymin, xmax, ymax))) for b in boxes
        ), (xmin, ymin, xmax, ymax)


def test_points_with_buffer_radius(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    layer = tree_layer_in("EPSG:32617", data_dir, geometry="point")
    out = tmp_path / "points"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": layer, "BUFFER_RADIUS": 1.0,
        "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
        "TILE_SIZE_X": 400, "TILE_SIZE_Y": 400, "STRIDE_X": 400, "STRIDE_Y": 400,
    })
    assert result["NUM_TILES"] == 1
    boxes = voc_boxes(str(out / "labels" / (os.path.splitext(os.path.basename(chips(str(out))[0]))[0] + ".xml")))
    assert len(boxes) == 61
    # 1 m radius at 0.1 m pixels: 20 px boxes, except where clipped at the image edge.
    widths = sorted(b[3] - b[1] for b in boxes)
    assert widths[len(widths) // 2] == pytest.approx(20, abs=1.01)

    with pytest.raises(QgsProcessingException, match="BUFFER_RADIUS"):
        run_export({
            "IN_RASTER": raster, "OUT_FOLDER": str(tmp_path / "points0"), "IN_CLASS_DATA": layer,
            "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
        })
    assert not (tmp_path / "points0").exists()


def test_invalid_and_multipart_geometries(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    gt, _ = geotransform(raster)
    x0, y0 = gt[0], gt[3]

    def px(col, row):
        return f"{x0 + col * 0.1} {y0 - row * 0.1}"

    bowtie = f"POLYGON(({px(10, 10)}, {px(50, 50)}, {px(50, 10)}, {px(10, 50)}, {px(10, 10)}))"
    multi = (f"MULTIPOLYGON((({px(100, 100)}, {px(120, 100)}, {px(120, 120)}, {px(100, 120)}, {px(100, 100)})),"
             f"(({px(200, 200)}, {px(230, 200)}, {px(230, 230)}, {px(200, 230)}, {px(200, 200)})))")
    layer = memory_layer("MultiPolygon", "EPSG:32617", [(bowtie, (2,)), (multi, (5,)), ("POLYGON EMPTY", (2,))])
    out = tmp_path / "valid"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": layer,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"),
        "TILE_SIZE_X": 400, "TILE_SIZE_Y": 400, "STRIDE_X": 400, "STRIDE_Y": 400,
    })
    assert result["NUM_TILES"] == 1
    label = read(str(out / "labels" / (os.path.splitext(os.path.basename(chips(str(out))[0]))[0] + ".tif")))
    assert set(np.unique(label)) == {0, 2, 5}
    assert label[30, 20] == 2 and label[30, 40] == 2  # both halves (left and right) of the bow-tie
    assert label[110, 110] == 5 and label[215, 215] == 5  # both parts of the multipolygon
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert [(c["Value"], c["Name"]) for c in emd["Classes"]] == [(2, "2"), (5, "5")]


def test_non_gdal_raster_layer_is_written_to_a_temporary_geotiff(alg, data_dir, tmp_path):
    """A raster from another provider (virtual raster calculator) still exports."""
    raster, labels = trees(data_dir)
    base = QgsRasterLayer(raster, "rgb")
    QgsProject.instance().addMapLayer(base)
    try:
        extent = base.extent()
        uri = (f"?crs={base.crs().authid()}&extent={extent.xMinimum()},{extent.yMinimum()},"
               f"{extent.xMaximum()},{extent.yMaximum()}&width=400&height=400"
               f"&formula=%22rgb@1%22&rgb:uri={raster}&rgb:provider=gdal")
        virtual = QgsRasterLayer(uri, "virtual", "virtualraster")
        if not virtual.isValid():
            pytest.skip("no virtualraster provider in this QGIS")
        out = tmp_path / "virtual"
        result = run_export({
            "IN_RASTER": virtual, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
            "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
            "TILE_SIZE_X": 200, "TILE_SIZE_Y": 200, "STRIDE_X": 200, "STRIDE_Y": 200,
        })
        assert result["NUM_TILES"] > 0
        first = chips(str(out))[0]
        col, row = chip_offset(first, raster)
        chip = read(first)
        source = read(raster)[0, row: row + 200, col: col + 200]
        valid = source != 255  # the source's NoData stays NoData
        np.testing.assert_array_equal(chip[valid], source[valid])
        dataset = gdal.Open(first)
        nodata = dataset.GetRasterBand(1).GetNoDataValue()
        dataset = None
        assert nodata is not None and (chip[~valid] == np.float32(nodata)).all()
    finally:
        QgsProject.instance().removeMapLayer(base.id())


# ---------------------------------------------------------------------------
# EXTENT, mask, append
# ---------------------------------------------------------------------------


@pytest.mark.heavy
def test_extent_in_another_crs_and_mask(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    layer = QgsRasterLayer(raster, "dsm")
    e = layer.extent()
    # The western half of the raster, given in EPSG:4326.
    half = f"{e.xMinimum()},{e.xMinimum() + e.width() / 2},{e.yMinimum()},{e.yMaximum()} [{layer.crs().authid()}]"
    out = tmp_path / "extent"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"), "OUTPUT_NOFEATURE_TILES": True,
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64, "EXTENT": half,
    })
    assert result["NUM_TILES"] > 0
    for image in chips(str(out)):
        col, _ = chip_offset(image, raster)
        assert col < 283 / 2

    transform = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                       QgsProject.instance().transformContext())
    x0, y0 = e.xMinimum() - 20, e.yMaximum() + 20  # beyond the raster's corner
    mask_rect = QgsGeometry.fromWkt(
        f"POLYGON(({x0} {y0}, {x0 + 150} {y0}, {x0 + 150} {y0 - 150}, {x0} {y0 - 150}, {x0} {y0}))"
    )
    mask_rect.transform(transform)
    mask = memory_layer("Polygon", "EPSG:4326", [(mask_rect.asWkt(), (1,))])
    out = tmp_path / "mask"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels, "IN_MASK_POLYGONS": mask,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"), "OUTPUT_NOFEATURE_TILES": True,
        "TILE_SIZE_X": 32, "TILE_SIZE_Y": 32, "STRIDE_X": 32, "STRIDE_Y": 32,
    })
    offsets = [chip_offset(image, raster) for image in chips(str(out))]
    assert result["NUM_TILES"] == len(offsets) > 0
    # The mask covers the raster's upper-left 130 m = 65 px: chips wholly inside it.
    assert all(col + 32 <= 66 and row + 32 <= 66 for col, row in offsets), offsets
    assert (0, 0) in offsets


@pytest.mark.heavy
def test_start_index_appends(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "append"
    params = {
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
    }
    first = run_export(params)
    stats = json.loads((out / "esri_accumulated_stats.json").read_text())
    second = run_export(dict(params, START_INDEX=stats["NextTileIndex"]))
    assert second["NUM_TILES"] == first["NUM_TILES"]
    assert len(chips(str(out))) == first["NUM_TILES"] + second["NUM_TILES"]


# ---------------------------------------------------------------------------
# Bad input: a QgsProcessingException naming the parameter, nothing written
# ---------------------------------------------------------------------------


def four_band_raster(data_dir, tmp_path):
    path = str(tmp_path / "rgba.tif")
    src = gdal.Open(trees(data_dir)[0])
    target = gdal.GetDriverByName("GTiff").Create(path, src.RasterXSize, src.RasterYSize, 4, gdal.GDT_Byte)
    target.SetGeoTransform(src.GetGeoTransform())
    target.SetProjection(src.GetProjection())
    data = src.ReadAsArray()
    for band in range(3):
        target.GetRasterBand(band + 1).WriteArray(data[band])
    target.GetRasterBand(4).WriteArray(np.full(data.shape[1:], 255, np.uint8))
    target = None
    return path


BAD_INPUTS = {
    "unknown field": ("CLASS_VALUE_FIELD", lambda d, t: {"CLASS_VALUE_FIELD": "no_such_field"}),
    "text field": ("CLASS_VALUE_FIELD", lambda d, t: {"CLASS_VALUE_FIELD": "classname"}),
    "empty layer": ("IN_CLASS_DATA", lambda d, t: {"IN_CLASS_DATA": memory_layer("Polygon", "EPSG:32617", [])}),
    "no overlap": ("IN_CLASS_DATA", lambda d, t: {"IN_CLASS_DATA": elevation(d)[1]}),
    "tile size 0": ("TILE_SIZE_X", lambda d, t: {"TILE_SIZE_X": 0}),
    "negative tile size": ("TILE_SIZE_Y", lambda d, t: {"TILE_SIZE_Y": -5}),
    "stride 0": ("STRIDE_X", lambda d, t: {"STRIDE_X": 0}),
    "png 4 bands": ("IMAGE_CHIP_FORMAT", lambda d, t: {"IN_RASTER": four_band_raster(d, t), "IMAGE_CHIP_FORMAT": 1}),
    "jpeg float32": ("IMAGE_CHIP_FORMAT", lambda d, t: {
        "IN_RASTER": elevation(d)[0], "IN_CLASS_DATA": elevation(d)[1], "IMAGE_CHIP_FORMAT": 2}),
    "png float32": ("IMAGE_CHIP_FORMAT", lambda d, t: {
        "IN_RASTER": elevation(d)[0], "IN_CLASS_DATA": elevation(d)[1], "IMAGE_CHIP_FORMAT": 1}),
    "panoptic without instances": ("IN_INSTANCE_DATA", lambda d, t: {"METADATA_FORMAT": 9}),
    "negative class value": ("CLASS_VALUE_FIELD", lambda d, t: {"IN_CLASS_DATA": memory_layer(
        "Polygon", "EPSG:32617", [("POLYGON((404212 3285102, 404220 3285102, 404220 3285110, 404212 3285102))",
                                   (-1,))])}),
    "rotation 360": ("ROTATION_ANGLE", lambda d, t: {"ROTATION_ANGLE": 360.0}),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_parameter(alg, data_dir, tmp_path, case):
    parameter, extra = BAD_INPUTS[case]
    raster, labels = trees(data_dir)
    out = tmp_path / "out"
    params = {"IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
              "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles")}
    params.update(extra(data_dir, tmp_path))
    with pytest.raises(QgsProcessingException) as error:
        run_export(params)
    assert parameter in str(error.value), str(error.value)
    assert not out.exists()


def test_non_empty_folder_without_start_index(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(QgsProcessingException, match="OUT_FOLDER"):
        run_export({"IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels})
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_missing_class_data_for_a_labelled_format(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    with pytest.raises(QgsProcessingException, match="IN_CLASS_DATA"):
        run_export({"IN_RASTER": raster, "OUT_FOLDER": str(tmp_path / "x"),
                    "METADATA_FORMAT": fmt(alg, "Classified_Tiles")})


def test_export_tiles_needs_no_labels(alg, data_dir, tmp_path):
    raster, _ = trees(data_dir)
    out = tmp_path / "tiles"
    result = run_export({"IN_RASTER": raster, "OUT_FOLDER": str(out), "METADATA_FORMAT": fmt(alg, "Export_Tiles"),
                         "TILE_SIZE_X": 200, "TILE_SIZE_Y": 200, "STRIDE_X": 200, "STRIDE_Y": 200})
    assert result["NUM_TILES"] == 4 == len(chips(str(out)))


# ---------------------------------------------------------------------------
# Cancel
# ---------------------------------------------------------------------------


class CancelAfterFirstProgress(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.progress_calls = 0
        self.canceled_at = None

    def setProgress(self, progress):  # noqa: N802 (QGIS API name)
        self.progress_calls += 1
        super().setProgress(progress)
        if self.canceled_at is None:
            self.canceled_at = time.monotonic()
            self.cancel()


@pytest.mark.heavy
def test_cancel_leaves_no_output(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    out = tmp_path / "canceled"
    feedback = CancelAfterFirstProgress()
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        run_export({
            "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
            "METADATA_FORMAT": fmt(alg, "Classified_Tiles"), "OUTPUT_NOFEATURE_TILES": True,
            "TILE_SIZE_X": 16, "TILE_SIZE_Y": 16, "STRIDE_X": 8, "STRIDE_Y": 8,
        }, feedback=feedback)
    assert time.monotonic() - feedback.canceled_at < 2.0
    assert feedback.progress_calls >= 1
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith("canceled")]


@pytest.mark.heavy
def test_cancel_while_appending_keeps_the_earlier_export(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    out = tmp_path / "earlier"
    params = {
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "Classified_Tiles"), "OUTPUT_NOFEATURE_TILES": True,
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64,
    }
    run_export(params)

    def snapshot():
        return {
            os.path.relpath(os.path.join(root, name), out): os.path.getsize(os.path.join(root, name))
            for root, _, files in os.walk(out) for name in files
        }

    before = snapshot()
    stats = (out / "esri_accumulated_stats.json").read_text()
    next_index = json.loads(stats)["NextTileIndex"]
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        run_export(dict(params, START_INDEX=next_index, TILE_SIZE_X=64, STRIDE_X=8, STRIDE_Y=8),
                   feedback=CancelAfterFirstProgress())
    assert snapshot() == before
    assert (out / "esri_accumulated_stats.json").read_text() == stats


# ---------------------------------------------------------------------------
# IN_RASTER2, CELL_SIZE, PNG chips, workers
# ---------------------------------------------------------------------------


def test_additional_raster_cell_size_and_workers(alg, data_dir, tmp_path):
    raster, labels = elevation(data_dir)
    out = tmp_path / "pair"
    result = run_export({
        "IN_RASTER": raster, "IN_RASTER2": str(data_dir / "elevation" / "dtm.tif"), "OUT_FOLDER": str(out),
        "IN_CLASS_DATA": labels, "METADATA_FORMAT": fmt(alg, "Classified_Tiles"),
        "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64, "STRIDE_X": 64, "STRIDE_Y": 64,
        "CELL_SIZE": 4.0, "PARALLEL_PROCESSING_FACTOR": 1,
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) > 0
    assert len(chips(str(out), "images2")) == len(images)
    for image in images:
        gt, _ = geotransform(image)
        assert (gt[1], gt[5]) == (4.0, -4.0)
        stem = os.path.basename(image)
        assert geotransform(str(out / "images2" / stem))[0] == gt


def test_png_chips_of_rgb(alg, data_dir, tmp_path):
    raster, labels = trees(data_dir)
    out = tmp_path / "png"
    result = run_export({
        "IN_RASTER": raster, "OUT_FOLDER": str(out), "IN_CLASS_DATA": labels,
        "METADATA_FORMAT": fmt(alg, "PASCAL_VOC_rectangles"),
        "IMAGE_CHIP_FORMAT": keyword_index(alg, "IMAGE_CHIP_FORMAT", "PNG"),
        "TILE_SIZE_X": 200, "TILE_SIZE_Y": 200, "STRIDE_X": 200, "STRIDE_Y": 200,
        "REFERENCE_SYSTEM": keyword_index(alg, "REFERENCE_SYSTEM", "PIXEL_SPACE"),
    })
    images = chips(str(out))
    assert result["NUM_TILES"] == len(images) == 4
    assert all(image.endswith(".png") for image in images)
    emd = json.loads((out / "esri_model_definition.emd").read_text())
    assert emd["ImageSpaceUsed"] == "PIXEL_SPACE"
