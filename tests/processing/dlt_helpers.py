"""Helpers for the Processing tests (imported by the test modules)."""

import glob
import os
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"

PROVIDER_ID = "deeplearningtools"
EXPORT_ALG = "deeplearningtools:exporttrainingdatafordeeplearning"
PLUGIN_NAME = "deep_learning_tools"


def keyword_index(algorithm, parameter, keyword):
    """Index of an enum option by its arcpy keyword (how a script should find it)."""
    options = algorithm.parameterDefinition(parameter).options()
    for index, label in enumerate(options):
        if label.split(" ", 1)[0] == keyword:
            return index
    raise KeyError(f"{parameter} has no option {keyword}: {options}")


def chips(folder, sub="images"):
    return sorted(
        p for p in glob.glob(os.path.join(folder, sub, "*"))
        if os.path.splitext(p)[1].lower() in (".tif", ".png", ".jpg", ".mrf")
    )


def voc_boxes(xml_path):
    """[(name, xmin, ymin, xmax, ymax)] from a PASCAL VOC file."""
    root = ET.parse(xml_path).getroot()
    boxes = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        boxes.append(
            (
                obj.findtext("name"),
                *(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")),
            )
        )
    return boxes


def run_export(params, feedback=None):
    import processing

    return processing.run(EXPORT_ALG, params, feedback=feedback)


def fmt(alg, keyword):
    return keyword_index(alg, "METADATA_FORMAT", keyword)


def trees(data_dir):
    return str(data_dir / "trees_osbs" / "OSBS_029.tif"), str(data_dir / "trees_osbs" / "trees.gpkg")


def elevation(data_dir):
    return str(data_dir / "elevation" / "dsm.tif"), str(data_dir / "elevation" / "buildings.geojson")


def read(path):
    from osgeo import gdal

    ds = gdal.Open(str(path))
    try:
        return ds.ReadAsArray()
    finally:
        ds = None


def geotransform(path):
    """(geotransform, spatial reference) of a raster file."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    try:
        return ds.GetGeoTransform(), ds.GetSpatialRef()
    finally:
        ds = None
