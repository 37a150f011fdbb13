"""Small exports with easy objects for the detector tests (no QGIS).

A raster of noisy texture with bright squares: class value 3 "Roof" bright in the red band,
class value 7 "Pool" bright in the blue band (non-contiguous values on purpose). Squares are
placed inside the export's tile grid (stride = tile) so no chip cuts one; about one cell in
five has none (negative chips, exported with OUTPUT_NOFEATURE_TILES)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

import engine_helpers as h
from dl_engine.export import ClassInfo

TILE = 64
CELLS = 6  # cells per side: a 384 x 384 raster → 36 chips
CLASSES = [ClassInfo(3, "Roof", (200, 30, 30)), ClassInfo(7, "Pool", (30, 30, 220))]


def squares_raster(folder, seed: int = 0, tile: int = TILE, cells: int = CELLS, min_side: int = 12,
                   max_side: int = 24, bands: int = 3) -> Tuple[str, list, List[int], List[tuple]]:
    """(raster path, polygons, class values, pixel boxes (x0, y0, x1, y1))."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    size = tile * cells
    data = rng.normal(90, 15, size=(bands, size, size))
    geoms, values, boxes = [], [], []
    for cy in range(cells):
        for cx in range(cells):
            count = rng.choice([0, 1, 1, 2, 2])
            placed: List[tuple] = []
            for _ in range(count):
                for _attempt in range(20):
                    s = int(rng.integers(min_side, max_side + 1))
                    x = cx * tile + int(rng.integers(2, tile - s - 2))
                    y = cy * tile + int(rng.integers(2, tile - s - 2))
                    box = (x, y, x + s, y + s)
                    if all(box[2] + 2 <= b[0] or b[2] + 2 <= box[0] or box[3] + 2 <= b[1] or b[3] + 2 <= box[1]
                           for b in placed):
                        break
                else:
                    continue
                placed.append(box)
                value = 3 if rng.random() < 0.5 else 7
                band = 0 if value == 3 else min(2, bands - 1)
                data[band, box[1]:box[3], box[0]:box[2]] += 110
                data[1, box[1]:box[3], box[0]:box[2]] += 30
                geoms.append(h.pix_box(*box))
                values.append(value)
                boxes.append(box)
    data = np.clip(data, 1, 255).astype("uint8")
    path = h.write_raster(Path(folder) / f"squares{seed}.tif", data)
    return path, geoms, values, boxes


def squares_export(folder, fmt: str = "PASCAL_VOC_rectangles", seed: int = 0, tile: int = TILE,
                   cells: int = CELLS, name: str = "export", **kw) -> str:
    raster, geoms, values, _ = squares_raster(folder, seed, tile, cells, **kw)
    out = Path(folder) / name
    h.export(raster, out, metadata_format=fmt, labels=h.vector_labels(geoms, values, CLASSES),
             tile_size_x=tile, tile_size_y=tile, stride_x=tile, stride_y=tile, workers=1,
             output_nofeature_tiles=True)
    return str(out)
