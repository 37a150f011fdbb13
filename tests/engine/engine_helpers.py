"""Helpers for the engine tests: synthetic rasters, sample data, reading an export
back the way a user (or arcgis.learn) would. No QGIS here."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pytest import approx
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS

from dl_engine.events import LOG, PROGRESS, Events
from dl_engine.export import ClassInfo, ExportConfig, RasterLabels, VectorLabels, run_export

REPO = Path(__file__).resolve().parents[2]

# The synthetic raster most tests use: 300 x 300 px, 0.5 m, UTM 17N.
CRS_UTM = CRS.from_epsg(32617)
T0 = Affine(0.5, 0, 500000.0, 0, -0.5, 3320000.0)
SIZE = 300
TILE = 64
STARTS = [0, 64, 128, 192, 256]  # tile starts along 300 px with tile 64 / stride 64 (last padded to 320)


def data_path(*parts: str) -> Path:
    """A sample dataset: tests/data/<...> if the repository carries it, else ../shared/datasets/<...>."""
    for base in (REPO / "tests" / "data", REPO.parent / "shared" / "datasets"):
        p = base.joinpath(*parts)
        if p.exists():
            return p
    raise FileNotFoundError("/".join(parts))


# ---- building inputs ------------------------------------------------------------------------

def write_raster(path, data: np.ndarray, transform: Affine = T0, crs=CRS_UTM, nodata=None, **extra) -> str:
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[np.newaxis]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, transform=transform, crs=crs)
    if nodata is not None:
        profile["nodata"] = nodata
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


def random_image(bands=3, height=SIZE, width=SIZE, dtype="uint8", seed=0, low=1, high=255) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.random((bands, height, width)) * (high - low) + low).astype(dtype)
    return rng.integers(low, high, size=(bands, height, width)).astype(dtype)


def pix_box(x0, y0, x1, y1, transform: Affine = T0):
    """A rectangle given in source pixel coordinates (col, row), as a map-coordinate polygon."""
    (ax, ay), (bx, by) = transform * (x0, y0), transform * (x1, y1)
    return shapely.box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def pix_poly(coords: Sequence[Tuple[float, float]], transform: Affine = T0):
    return shapely.Polygon([transform * c for c in coords])


def vector_labels(geoms, values, classes=None) -> VectorLabels:
    return VectorLabels(wkb=[shapely.to_wkb(g) for g in geoms], values=list(values), classes=list(classes or []))


def config(raster, out, **kw) -> ExportConfig:
    kw.setdefault("tile_size_x", TILE)
    kw.setdefault("tile_size_y", TILE)
    kw.setdefault("stride_x", TILE)
    kw.setdefault("stride_y", TILE)
    kw.setdefault("workers", 2)
    return ExportConfig(raster=str(raster), out_folder=str(out), **kw)


def export(raster, out, **kw):
    return run_export(config(raster, out, **kw))


def recording_events(percents: Optional[list] = None, logs: Optional[list] = None) -> Events:
    """Events for run_export that append each progress percent and each log line to the lists."""
    def sink(event: dict) -> None:
        if event["event"] == PROGRESS and percents is not None:
            percents.append(event["percent"])
        elif event["event"] == LOG and logs is not None:
            logs.append(event["message"])
    return Events(sink=sink)


# ---- reading an export back -----------------------------------------------------------------

@dataclass
class Chip:
    index: int
    image: Path
    image2: Optional[Path]
    label: Optional[Path]


MAP_LINE = re.compile(r"^images\\(\d+)\.(\w+)(?: images2\\(\d+)\.\w+)?(?:  labels\\(\d+)\.(\w+))? $")


def map_lines(out) -> List[str]:
    raw = Path(out, "map.txt").read_bytes()
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n"), "map.txt must use CRLF line ends"
    return raw.decode().split("\r\n")[:-1]


def chips(out) -> List[Chip]:
    """The chips listed in map.txt (checked against the folders)."""
    result = []
    for line in map_lines(out):
        m = MAP_LINE.match(line)
        assert m, f"bad map.txt line {line!r}"
        parts = line.strip().split()
        image = Path(out, parts[0].replace("\\", "/"))
        image2 = label = None
        for p in parts[1:]:
            if p.startswith("images2\\"):
                image2 = Path(out, p.replace("\\", "/"))
            elif p.startswith("labels\\"):
                label = Path(out, p.replace("\\", "/"))
        for p in (image, image2, label):
            assert p is None or p.is_file(), f"{p} listed in map.txt is missing"
        result.append(Chip(int(m.group(1)), image, image2, label))
    return result


def read(path) -> Tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), dict(transform=src.transform, crs=src.crs, dtype=src.dtypes[0], count=src.count,
                                width=src.width, height=src.height, nodata=src.nodata, driver=src.driver)


def offset_of(chip_transform: Affine, grid_transform: Affine) -> Tuple[int, int]:
    """Whole-pixel offset (col, row) of a chip on a grid; fails if it is not whole pixels."""
    col = (chip_transform.c - grid_transform.c) / grid_transform.a
    row = (chip_transform.f - grid_transform.f) / grid_transform.e
    assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6, (col, row)
    assert math.isclose(chip_transform.a, grid_transform.a, rel_tol=1e-9)
    assert math.isclose(chip_transform.e, grid_transform.e, rel_tol=1e-9)
    assert chip_transform.b == 0 and chip_transform.d == 0
    return int(round(col)), int(round(row))


def stats_json(out) -> dict:
    return json.loads(Path(out, "esri_accumulated_stats.json").read_text())


def emd(out) -> dict:
    return json.loads(Path(out, "esri_model_definition.emd").read_text())


def world_file_lines(path) -> List[str]:
    return Path(path).read_text().splitlines()


def expected_world_file(t: Affine) -> List[str]:
    """Esri world file: a, d, b, e, then the CENTRE of the upper-left pixel; 10 decimals."""
    cx, cy = t * (0.5, 0.5)
    return [f"{v:.10f}" for v in (t.a, t.d, t.b, t.e, cx, cy)]


def snapshot(folder) -> Dict[str, bytes]:
    """Every file under folder (hidden ones too) with its bytes."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} | \
        {str(p.relative_to(folder)) + "/": b"" for p in sorted(folder.rglob("*")) if p.is_dir()}


def staging_left(parent) -> List[str]:
    return [p.name for p in Path(parent).iterdir() if ".partial-" in p.name]


# ---- statistics -----------------------------------------------------------------------------

def band_values(out, grid_t=T0, width=SIZE, height=SIZE, nodata=None, which="image"):
    """Per band, every pixel value of every exported chip, padding and NoData left out."""
    per_band = None
    for c in chips(out):
        data, meta = read(getattr(c, which))
        col, row = offset_of(meta["transform"], grid_t)
        inside = np.zeros(data.shape[1:], bool)
        inside[:max(0, height - row), :max(0, width - col)] = True
        if per_band is None:
            per_band = [[] for _ in range(data.shape[0])]
        for b in range(data.shape[0]):
            ok = inside.copy()
            if nodata is not None:
                ok &= data[b] != nodata
            per_band[b].append(data[b][ok].astype(np.float64))
    return [np.concatenate(v) for v in per_band]


def check_band_stats(state, all_tiles, values):
    assert len(state) == len(all_tiles) == len(values)
    for st, at, v in zip(state, all_tiles, values):
        assert st["Num"] == v.size
        assert st["M1"] == approx(v.mean(), rel=1e-9)
        assert st["M2"] == approx(((v - v.mean()) ** 2).sum(), rel=1e-9)
        assert st["Min"] == v.min() and st["Max"] == v.max()
        assert st["Mean"] == 0 and st["StdDev"] == 0  # as Pro writes the state
        assert at["Mean"] == approx(v.mean(), rel=1e-9)
        assert at["StdDev"] == approx(math.sqrt(st["M2"] / st["Num"]), rel=1e-12)
        assert at["StdDev"] == approx(v.std(), rel=1e-9)
        assert at["Min"] == v.min() and at["Max"] == v.max()


# ---- VOC / KITTI ----------------------------------------------------------------------------

def voc_objects(path) -> List[Tuple[int, Tuple[float, float, float, float]]]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    out = []
    for obj in root.findall("object"):
        b = obj.find("bndbox")
        out.append((int(obj.find("name").text),
                    tuple(float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return out


def expected_voc(filename: str, width: int, height: int, depth: int, objects) -> str:
    """The ArcGIS variant of PASCAL VOC, written out from esri-formats.md section 4.1."""
    s = ('<?xml version="1.0"?>\n'
         "<annotation>\n"
         f"    <filename>{filename}</filename>\n"
         "    <source>\n"
         "        <annotation>ArcGIS Pro 2.1</annotation>\n"
         "    </source>\n"
         "    <size>\n"
         f"        <width>{width}</width>\n"
         f"        <height>{height}</height>\n"
         f"        <depth>{depth}</depth>\n"
         "    </size>\n")
    for value, (x0, y0, x1, y1) in objects:
        s += ("    <object>\n"
              f"        <name>{value}</name>\n"
              "        <bndbox>\n"
              f"            <xmin>{x0:.2f}</xmin>\n"
              f"            <ymin>{y0:.2f}</ymin>\n"
              f"            <xmax>{x1:.2f}</xmax>\n"
              f"            <ymax>{y1:.2f}</ymax>\n"
              "        </bndbox>\n"
              "    </object>\n")
    return s + "</annotation>\n"


def box_in_chip(geom, chip_t: Affine, w: int, h: int) -> Tuple[float, float, float, float]:
    """Bounds of a (rectangular) feature in chip pixels (y down), clipped to the chip."""
    minx, miny, maxx, maxy = geom.bounds
    inv = ~chip_t
    xa, ya = inv * (minx, maxy)
    xb, yb = inv * (maxx, miny)
    return (min(max(xa, 0), w), min(max(ya, 0), h), min(max(xb, 0), w), min(max(yb, 0), h))


# ---- sample data ----------------------------------------------------------------------------

def gpkg_geometry_to_wkb(blob: bytes) -> bytes:
    """GeoPackage geometry blob → WKB: 'GP', version, flags, srs_id, envelope, WKB."""
    assert blob[:2] == b"GP"
    flags = blob[3]
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 7]
    return bytes(blob[8 + envelope:])


def read_gpkg(path, table=None):
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        if table is None:
            table = con.execute("select table_name from gpkg_contents where data_type='features'").fetchone()[0]
        geom_col, srs = con.execute("select column_name, srs_id from gpkg_geometry_columns where table_name=?",
                                    (table,)).fetchone()
        rows = con.execute(f'select "{geom_col}", classvalue, classname from "{table}" order by fid').fetchall()
    finally:
        con.close()
    geoms = [shapely.from_wkb(gpkg_geometry_to_wkb(r[0])) for r in rows]
    return geoms, [int(r[1]) for r in rows], [r[2] for r in rows], srs


def read_voc_pixel_boxes(path) -> List[Tuple[float, float, float, float]]:
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return [tuple(float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            for o in root.findall("object")]


def read_geojson_in(path, dst_crs) -> Tuple[list, list]:
    from rasterio.warp import transform_geom

    data = json.loads(Path(path).read_text())
    geoms, props = [], []
    for f in data["features"]:
        g = transform_geom("EPSG:4326", dst_crs, f["geometry"])
        geoms.append(shapely.geometry.shape(g))
        props.append(f["properties"])
    return geoms, props


__all__ = [n for n in dir() if not n.startswith("_")] + ["ClassInfo", "RasterLabels", "VectorLabels", "struct"]
