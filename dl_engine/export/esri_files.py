"""The files of an export folder exactly as ArcGIS Pro writes them
(shared/reference/esri-formats.md §1 and §4): label files, map.txt, stats.txt,
esri_accumulated_stats.json and the template esri_model_definition.emd."""

from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence

import numpy as np

from ..formats import EMD, INDEX_DIGITS, MAP_TXT, STATS_JSON, STATS_TXT  # noqa: F401 (the layout's names)
from .config import ClassInfo

WELL_KNOWN_BAND_NAMES_KEY = "WellKnownBandNames (FYI, these band names can be used in ExtractBands)"
WELL_KNOWN_BAND_NAMES = [
    "Red", "Green", "Blue", "Infrared", "CoastalBlue", "Yellow", "RedEdge", "ShortWaveInfrared", "NearInfrared",
    "NearInfrared_1", "NearInfrared_2", "MidInfrared", "MidInfrared_1", "MidInfrared_2", "Thermal", "Thermal_1",
    "Thermal_2", "Panchromatic", "PseudoRed", "PseudoGreen", "PseudoBlue", "QA",
]


def chip_stem(index: int) -> str:
    return f"{index:0{INDEX_DIGITS}d}"


# ---- label files -------------------------------------------------------------------------------

def voc_xml(filename: str, width: int, height: int, depth: int, boxes: np.ndarray, values: Sequence[int]) -> str:
    """The ArcGIS variant of PASCAL VOC: <name> holds the class value, boxes are
    pixel floats with 2 decimals clipped to the chip, no pose/truncated/difficult."""
    parts = [
        '<?xml version="1.0"?>\n<annotation>\n',
        f"    <filename>{filename}</filename>\n",
        "    <source>\n        <annotation>ArcGIS Pro 2.1</annotation>\n    </source>\n",
        f"    <size>\n        <width>{width}</width>\n        <height>{height}</height>\n"
        f"        <depth>{depth}</depth>\n    </size>\n",
    ]
    for (x0, y0, x1, y1), v in zip(boxes, values):
        parts.append(
            f"    <object>\n        <name>{int(v)}</name>\n        <bndbox>\n"
            f"            <xmin>{x0:.2f}</xmin>\n            <ymin>{y0:.2f}</ymin>\n"
            f"            <xmax>{x1:.2f}</xmax>\n            <ymax>{y1:.2f}</ymax>\n"
            "        </bndbox>\n    </object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def kitti_txt(boxes: np.ndarray, values: Sequence[int]) -> str:
    """One 15-field line per object (class value, 3 unused, left top right bottom,
    7 unused), CRLF, as Pro writes it; arcgis.learn needs all 15 fields."""
    return "".join(f"{int(v):3d} 0.00 0 0 {x0:7.2f} {y0:7.2f} {x1:7.2f} {y1:7.2f} 0 0 0 0 0 0 0\r\n"
                   for (x0, y0, x1, y1), v in zip(boxes, values))


def map_line(image: str, image2: Optional[str], label: Optional[str]) -> str:
    r"""``images\n.tif [images2\n.tif]  labels\n.ext `` with backslashes and CRLF."""
    line = image.replace("/", "\\")
    if image2:
        line += " " + image2.replace("/", "\\")
    if label:
        line += "  " + label.replace("/", "\\")
    return line + " \r\n"


# ---- JSON --------------------------------------------------------------------------------------

def dumps_pro(obj) -> str:
    """Pro's JSON style: 2-space indent, ``"key" : value``, LF."""
    return json.dumps(obj, indent=2, separators=(",", " : ")) + "\n"


def write_text(path: str, text: str, newline: str = "\n") -> None:
    """Write via a temporary name and rename, so a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline=newline, encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def spatial_reference(crs) -> dict:
    if crs is None:
        return {}
    epsg = crs.to_epsg()
    if epsg:
        return {"wkid": epsg, "latestWkid": epsg}
    return {"wkt": crs.to_wkt()}


def cell_size_json(res, crs) -> dict:
    d = {"x": float(res[0]), "y": float(res[1])}
    sr = spatial_reference(crs)
    if sr:
        d["spatialReference"] = sr
    return d


def classes_json(classes: List[ClassInfo], emd: bool) -> List[dict]:
    out = []
    for c in classes:
        color = list(c.color) if c.color else [-1, -1, -1]
        if emd:
            out.append({"Value": int(c.value), "Name": c.label, "Color": color})
        else:
            out.append({"ClassValue": int(c.value), "ClassName": c.label, "Color": color})
    return out


def sensor_name(band_count: int) -> str:
    return "MultiSpectral" if band_count >= 4 else "Undefined"


def rasters_props(band_names: List[str]) -> dict:
    return {"RasterCount": 1, "SensorName": sensor_name(len(band_names)), "BandNames": list(band_names)}


CROP_TILE_MODE = {"FIXED_SIZE": "Fixed_Size", "BOUNDING_BOX": "Variable_Size"}  # as arcgis.learn reads it


def emd_template(*, metadata_format: str, tile_x: int, tile_y: int, reference_system: str, min_res, max_res, crs,
                 classes: List[ClassInfo], band_names: List[str], all_tiles_stats: List[dict],
                 band_names2: Optional[List[str]] = None, all_tiles_stats2: Optional[List[dict]] = None,
                 crop_mode: str = "FIXED_SIZE", blacken_around_feature: bool = False) -> dict:
    """The Pro 3.x template emd an export writes (placeholder strings included)."""
    emd = {
        "Framework": "e.g. TensorFlow or PyTorch",
        "ModelConfiguration": "e.g. UNet or FasterRCNN",
        "ModelType": "e.g. ObjectDetection or ImageClassification",
        "ModelFile": "e.g. ./trained.model",
        "Description": "e.g. which data model was trained on, when, by whom, mAP, etc",
        "ImageHeight": tile_y,
        "ImageWidth": tile_x,
        "ExtractBands": "e.g. [0, 1, 2]",
        "DataRange": "e.g. [0.1, 1.0] (optional)",
        "ModelPadding": "e.g. 64 (optional)",
        "BatchSize": "e.g. 8 (optional)",
        "PerProcessGPUMemoryFraction": "e.g. 0.8 (optional)",
        "MetaDataMode": metadata_format,
        "BlackenAroundFeature": bool(blacken_around_feature),
        "IsMultidimensional": False,
        "CropTileMode": CROP_TILE_MODE[crop_mode],
        "ImageSpaceUsed": reference_system,
        "MinCellSize": cell_size_json(min_res, crs),
        "MaxCellSize": cell_size_json(max_res, crs),
    }
    if classes:
        emd["Classes"] = classes_json(classes, emd=True)
    emd["InputRastersProps"] = rasters_props(band_names)
    if band_names2 is not None:
        emd["InputRastersProps2"] = rasters_props(band_names2)
    emd["AllTilesStats"] = all_tiles_stats
    if all_tiles_stats2 is not None:
        emd["AllTilesStats2"] = all_tiles_stats2
    emd[WELL_KNOWN_BAND_NAMES_KEY] = WELL_KNOWN_BAND_NAMES
    return emd


# ---- stats.txt ---------------------------------------------------------------------------------

_ROW = "{:<40s}{:>11d}{:>11d}{:>11d}{:>12.2f}{:>12.2f}{:>12.2f}"


def stats_txt(stats_json: dict) -> str:
    """The human-readable summary Pro writes next to the JSON (CRLF added by the caller)."""
    s = stats_json
    lines = [f"images = {s['NumTiles']} *{s['NumBands']}*{s['TileSizeY']}*{s['TileSizeX']}", ""]
    names = {c["ClassValue"]: c["ClassName"] for c in s.get("Classes", [])}
    values = [c["ClassValue"] for c in s.get("Classes", [])]
    if "FeatureStats" in s and s["NumClasses"]:
        fs = s["FeatureStats"]
        per = fs["NumFeaturesPerImage"]
        lines += ["Class feature statistics:", f"features = {fs['NumFeaturesTotal']}",
                  f"features per image = [min = {per['Min']}, mean = {per['Mean']:.2f}, max = {per['Max']}]",
                  f"classes = {len(values)}",
                  f"{'cls name':<40s}{'cls value':>11s}{'images':>11s}{'features':>11s}"
                  f"{'min size':>12s}{'mean size':>12s}{'max size':>12s}"]
        for i, v in enumerate(values):
            a = fs["FeatureAreaPerClass"][i]
            lines.append(_ROW.format(str(names[v])[:40], v, fs["NumImagesPerClass"][i], fs["NumFeaturesPerClass"][i],
                                     a["Min"], a["Mean"], a["Max"]))
    elif "ClassPixelStats" in s and s["NumClasses"]:
        ps = s["ClassPixelStats"]
        per = ps["NumClassesPerImage"]
        lines += ["Class pixel statistics:", f"classes = {len(values)}",
                  f"classes per image = [min = {per['Min']}, mean = {per['Mean']:.2f}, max = {per['Max']}]",
                  f"{'cls name':<40s}{'cls value':>11s}{'images':>11s}{'pixels':>11s}"
                  f"{'min size':>12s}{'mean size':>12s}{'max size':>12s}"]
        for i, v in enumerate(values):
            p = ps["PixelsPerClass"][i]
            lines.append(_ROW.format(str(names[v])[:40], v, ps["NumImagesPerClass"][i], ps["NumPixelsPerClass"][i],
                                     p["Min"], p["Mean"], p["Max"]))
    return "\r\n".join(lines) + "\r\n"
