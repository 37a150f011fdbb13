"""Helpers for the dataset-layer tests (dl_engine.data): exports made by our engine on
small synthetic rasters, and exports laid out by hand as ArcGIS Pro 2.x writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from affine import Affine

import engine_helpers as h
from dl_engine.export import ClassInfo

SIZE = 96  # synthetic rasters: 96 x 96 px, 0.5 m, tiles of 32 → 3 x 3 chips (+ padded edge chips)
TILE = 32

# Rectangles in source pixels (col0, row0, col1, row1) and their class values: non-contiguous (3, 7).
RECTS = [
    ((4.3, 5.2, 20.6, 18.1), 3),
    ((40.2, 36.3, 60.4, 58.7), 7),
    ((70.1, 6.4, 90.8, 26.5), 3),
    ((10.2, 66.1, 28.7, 90.3), 7),
]
CLASSES = [ClassInfo(3, "Oak", (10, 200, 30)), ClassInfo(7, "Pine")]


def raster(folder, bands=3, dtype="uint8", seed=1, low=1, high=255, size=SIZE, **kw) -> Tuple[str, np.ndarray]:
    data = h.random_image(bands, size, size, dtype=dtype, seed=seed, low=low, high=high)
    return h.write_raster(Path(folder) / f"r{seed}_{bands}_{dtype}.tif", data, **kw), data


def labels(rects=RECTS, classes=CLASSES):
    geoms = [h.pix_box(*r) for r, _ in rects]
    return h.vector_labels(geoms, [v for _, v in rects], classes)


def export(raster_path, out, fmt, tile=TILE, **kw) -> str:
    kw.setdefault("labels", labels() if fmt not in ("Export_Tiles",) else None)
    h.export(raster_path, out, metadata_format=fmt, tile_size_x=tile, tile_size_y=tile, stride_x=tile,
             stride_y=tile, workers=1, **kw)
    return str(out)


def map_lines(out) -> List[List[str]]:
    """Tokens of every map.txt line (as the tests read it, independently of dl_engine.data)."""
    raw = Path(out, "map.txt").read_bytes().decode()
    return [line.split() for line in raw.splitlines() if line.strip()]


def local(out, token: str) -> Path:
    return Path(out, *token.split("\\"))


def read_array(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# ---- an ArcGIS Pro 2.x export, by hand -------------------------------------------------------

PRO2_EMD = {
    "Framework": "e.g. CNTK",
    "ModelConfiguration": "some description",
    "ModelType": "e.g. ObjectDetection or ImageClassification",
    "ModelFile": "e.g. .\\trained.model",
    "ImageHeight": "e.g. 256",
    "ImageWidth": "e.g. 256",
    "ExtractBands": "e.g. [0, 1, 2]",
    "DataRange": "e.g. [0.1, 1.0] (optional)",
    "ModelPadding": "e.g. 64 (optional)",
    "BatchSize": "e.g. 8 (optional)",
    "PerProcessGPUMemoryFraction": "e.g. 0.8 (optional)",
    "Classes": [{"Value": 1, "Name": "Palm", "Color": [255, 0, 0]}, {"Value": 2, "Name": "Shrub",
                                                                     "Color": [-1, -1, -1]}],
    "WellKnownBandNames (FYI, these band names can be used in ExtractBands)": ["Red", "Green", "Blue"],
}


def pro_json(obj) -> str:
    """Pro's JSON style (2-space indent, "key" : value)."""
    return json.dumps(obj, indent=2, separators=(",", " : ")) + "\n"


def pro_voc(stem: str, width: int, height: int, objects: Sequence[Tuple[str, Tuple[float, ...]]]) -> str:
    """PASCAL VOC as Pro 2.x writes it (esri-formats.md §4.1)."""
    s = (f'<?xml version="1.0"?>\n<annotation>\n    <filename>{stem}.jpg</filename>\n    <source>\n'
         f"        <annotation>ArcGIS Pro 2.1</annotation>\n    </source>\n    <size>\n"
         f"        <width>{width}</width>\n        <height>{height}</height>\n        <depth>3</depth>\n"
         "    </size>\n")
    for name, (x0, y0, x1, y1) in objects:
        s += (f"    <object>\n        <name>{name}</name>\n        <bndbox>\n"
              f"            <xmin>{x0:.2f}</xmin>\n            <ymin>{y0:.2f}</ymin>\n"
              f"            <xmax>{x1:.2f}</xmax>\n            <ymax>{y1:.2f}</ymax>\n"
              "        </bndbox>\n    </object>\n")
    return s + "</annotation>\n"


# Objects of each chip (the VOC <name> text and box); chip 2's label file is missing.
PRO2_OBJECTS: Dict[int, List[Tuple[str, Tuple[float, float, float, float]]]] = {
    0: [("1", (3.25, 4.5, 20.75, 18.0)), ("1", (22.0, 1.1, 31.9, 9.95))],
    1: [("Palm", (0.0, 10.0, 12.5, 32.0)), ("2", (14.0, 14.0, 30.0, 30.0)), ("9", (1.0, 1.0, 5.0, 5.0))],
    2: [("1", (5.0, 5.0, 10.0, 10.0))],
    3: [],  # a chip without objects: a negative
}
PRO2_MISSING_LABEL = 2


def pro2_voc_export(folder, chips: int = 4, size: int = 32,
                    map_lines_count: Optional[int] = None) -> Tuple[str, Dict[int, np.ndarray]]:
    """An ArcGIS Pro 2.x PASCAL_VOC_rectangles export: 9-digit JPEG chips with .jgw world
    files, map.txt with CRLF, two spaces and a trailing space, old-style stats (no
    BandStatsState), the 2.x emd template, VOC with <name>1</name>; chip 2 has no label file.
    Returns the folder and the chip pixels (as written: JPEG is lossy, read them back)."""
    out = Path(folder)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    rng = np.random.default_rng(5)
    pixels = {}
    lines = []
    t = Affine(0.5, 0, 500000.0, 0, -0.5, 3320000.0)
    for i in range(chips):
        stem = f"{i:09d}"
        img = out / "images" / f"{stem}.jpg"
        data = rng.integers(0, 256, (3, size, size)).astype("uint8")
        with rasterio.open(img, "w", driver="JPEG", width=size, height=size, count=3, dtype="uint8",
                           quality=95) as dst:
            dst.write(data)
        ct = t * Affine.translation(i * size, 0)
        cx, cy = ct * (0.5, 0.5)
        (out / "images" / f"{stem}.jgw").write_text("".join(f"{v:.10f}\n" for v in (ct.a, ct.d, ct.b, ct.e, cx, cy)))
        pixels[i] = read_array(img)
        if i != PRO2_MISSING_LABEL:
            (out / "labels" / f"{stem}.xml").write_text(pro_voc(stem, size, size, PRO2_OBJECTS.get(i, [])))
        lines.append(f"images\\{stem}.jpg  labels\\{stem}.xml \r\n")
    if map_lines_count is not None:
        lines = lines[:map_lines_count]
    (out / "map.txt").write_bytes("".join(lines).encode())
    stats = {
        "Version": 1, "NumBands": 3, "TileSizeX": size, "TileSizeY": size, "NumClasses": 2, "NumTiles": chips,
        "OutputFeatures": True, "MetaDataMode": "PASCAL_VOC_rectangles",
        "Classes": [{"ClassValue": 1, "ClassName": "Palm"}, {"ClassValue": 2, "ClassName": "Shrub"}],
        "FeatureStats": {"NumClasses": 2, "NumImagesTotal": chips, "NumFeaturesTotal": 5,
                         "NumImagesPerClass": [3, 1], "NumFeaturesPerClass": [4, 1]},
    }
    (out / "esri_accumulated_stats.json").write_text(pro_json(stats))
    (out / "esri_model_definition.emd").write_text(pro_json(PRO2_EMD))
    (out / "stats.txt").write_bytes(b"images = 4 *3*32*32\r\n")
    return str(out), pixels


def write_esri_files(out, stats: dict, emd: dict, map_text: str = "") -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "esri_accumulated_stats.json").write_text(pro_json(stats))
    Path(out, "esri_model_definition.emd").write_text(pro_json(emd))
    Path(out, "map.txt").write_bytes(map_text.encode())
