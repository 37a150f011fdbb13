"""Small exports a FEATURE_CLASSIFIER learns in seconds on the CPU (no QGIS).

``feature_raster``: features on a jittered grid, one per 40 px cell, so a chip centred on a
feature shows little of its neighbours: red squares (class value 3, "Roof") and blue discs
(class value 7, "Pool"; non-contiguous values on purpose) on noisy grey texture. The class
is visible in the colour, so a classifier beats chance quickly.

``feature_export``: Labeled_Tiles (one chip per feature, FIXED_SIZE or BOUNDING_BOX) or
Imagenet; ``multilabel_export``: MultiLabeled_Tiles, one chip per cell holding a roof, a
pool or both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import shapely

import engine_helpers as h
from dl_engine.export import ClassInfo
from dl_engine.train import TrainConfig

CLASSES = [ClassInfo(3, "Roof", (200, 30, 30)), ClassInfo(7, "Pool", (30, 30, 220))]
CELL = 40
TILE = 32


def feature_raster(folder, seed: int = 0, cells: int = 9, bands: int = 3):
    """(raster path, polygons, class values): one feature per CELL px cell."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    size = cells * CELL
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 12, size=(bands, size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    geoms, values = [], []
    for row in range(cells):
        for col in range(cells):
            s = rng.uniform(8, 14)
            x = col * CELL + rng.uniform(4, CELL - 4 - s)
            y = row * CELL + rng.uniform(4, CELL - 4 - s)
            if rng.random() < 0.5:
                data[0, int(y):int(y + s), int(x):int(x + s)] += 90
                geoms.append(h.pix_box(int(x), int(y), int(x + s), int(y + s)))
                values.append(3)
            else:
                cx, cy, r = x + s / 2, y + s / 2, s / 2
                inside = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
                data[min(2, bands - 1)][inside] += 90
                data[0][inside] -= 40
                geoms.append(h.pix_poly(list(shapely.Point(cx, cy).buffer(r, 16).exterior.coords)))
                values.append(7)
    data = np.clip(data, 1, 255).astype("uint8")
    path = h.write_raster(Path(folder) / f"features{seed}_{bands}.tif", data)
    return path, geoms, values


def feature_export(folder, metadata_format: str = "Labeled_Tiles", seed: int = 0, tile: int = TILE, cells: int = 9,
                   name: str = "export", **kw) -> str:
    raster, geoms, values = feature_raster(folder, seed, cells, bands=kw.pop("bands", 3))
    out = Path(folder) / name
    h.export(raster, out, metadata_format=metadata_format, labels=h.vector_labels(geoms, values, CLASSES),
             tile_size_x=tile, tile_size_y=tile, stride_x=tile, stride_y=tile, workers=1, **kw)
    return str(out)


def multilabel_raster(folder, seed: int = 0, cells: int = 10):
    """(raster path, polygons, class values): each CELL px cell holds a roof, a pool or both
    (the roof in the left half, the pool in the right half)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    size = cells * CELL
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 12, size=(3, size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    geoms, values = [], []
    for row in range(cells):
        for col in range(cells):
            content = rng.integers(0, 3)  # 0 roof, 1 pool, 2 both
            x0, y0 = col * CELL, row * CELL
            if content in (0, 2):
                s = int(rng.uniform(8, 13))
                x, y = x0 + int(rng.uniform(3, 18 - s)) + 2, y0 + int(rng.uniform(4, CELL - 4 - s))
                data[0, y:y + s, x:x + s] += 90
                geoms.append(h.pix_box(x, y, x + s, y + s))
                values.append(3)
            if content in (1, 2):
                r = rng.uniform(4, 6.5)
                cx, cy = x0 + CELL - 4 - r - rng.uniform(0, 4), y0 + rng.uniform(4 + r, CELL - 4 - r)
                inside = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
                data[2][inside] += 90
                data[0][inside] -= 40
                geoms.append(h.pix_poly(list(shapely.Point(cx, cy).buffer(r, 16).exterior.coords)))
                values.append(7)
    data = np.clip(data, 1, 255).astype("uint8")
    return h.write_raster(Path(folder) / f"multi{seed}.tif", data), geoms, values


def multilabel_export(folder, seed: int = 0, cells: int = 10, name: str = "multi", **kw) -> str:
    """MultiLabeled_Tiles, one chip per cell: labels "3", "7" or "3,7" (as class names)."""
    raster, geoms, values = multilabel_raster(folder, seed, cells)
    out = Path(folder) / name
    h.export(raster, out, metadata_format="MultiLabeled_Tiles", labels=h.vector_labels(geoms, values, CLASSES),
             tile_size_x=CELL, tile_size_y=CELL, stride_x=CELL, stride_y=CELL, workers=1, **kw)
    return str(out)


def config(export, out, **kw) -> TrainConfig:
    kw.setdefault("model_type", "FEATURE_CLASSIFIER")
    kw.setdefault("backbone", "RESNET18")
    kw.setdefault("batch_size", 16)
    kw.setdefault("max_epochs", 6)
    kw.setdefault("learning_rate", 2e-3)
    kw.setdefault("validation_percentage", 25)
    kw.setdefault("num_workers", 0)
    kw.setdefault("stop_training", False)
    return TrainConfig(in_folder=str(export), out_folder=str(out), **kw)


def read_emd(out) -> dict:
    out = Path(out)
    return json.loads((out / f"{out.name}.emd").read_text())


def listing(folder) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)
