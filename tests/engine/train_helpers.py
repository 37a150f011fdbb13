"""A small export with a learnable signal, for the training tests (no QGIS).

A 256 x 256 px raster of noisy texture with bright red squares (class value 3, "Roof") and
blue discs (class value 7, "Pool") — non-contiguous values on purpose — exported as
Classified_Tiles of 32 px. A network learns it in a few hundred CPU steps."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import shapely

import engine_helpers as h
from dl_engine.export import ClassInfo

SIZE = 256
TILE = 32
CLASSES = [ClassInfo(3, "Roof", (200, 30, 30)), ClassInfo(7, "Pool", (30, 30, 220))]


def learnable_raster(folder, seed: int = 0, bands: int = 3, dtype: str = "uint8", size: int = SIZE):
    """(raster path, polygons, class values)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 12, size=(bands, size, size))
    geoms, values = [], []
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(size * size // 900):
        x, y = rng.uniform(4, size - 20, 2)
        s = rng.uniform(6, 14)
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
    if np.dtype(dtype).kind == "u" and np.dtype(dtype).itemsize == 1:
        data = np.clip(data, 1, 255)
    else:
        data = data * 40  # 16-bit-like range: per-band statistics normalisation
    path = h.write_raster(Path(folder) / f"learn{seed}_{bands}.tif", data.astype(dtype))
    return path, geoms, values


def learnable_export(folder, seed: int = 0, bands: int = 3, dtype: str = "uint8", tile: int = TILE,
                     size: int = SIZE, name: str = "export", **kw) -> str:
    raster, geoms, values = learnable_raster(folder, seed, bands, dtype, size)
    out = Path(folder) / name
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values, CLASSES),
             tile_size_x=tile, tile_size_y=tile, stride_x=tile, stride_y=tile, workers=1,
             output_nofeature_tiles=True, **kw)
    return str(out)
