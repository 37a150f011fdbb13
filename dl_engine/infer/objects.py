"""Classify Objects Using Deep Learning: one chip per input feature (or per image tile when
no features are given) through a classifier (``ModelSpec.predict`` gives (N, K)
probabilities, index i = Classes[i]).

Chips follow the emd as ArcGIS does (esri-formats.md §2.4): ``CropSizeFixed`` 1 (default) =
ImageHeight x ImageWidth pixels centred on the feature's extent; 0 = the feature's extent,
resampled to the chip size. ``BlackenAroundFeature`` 1 = pixels outside a polygon feature
set to 0 before normalisation.

Output: the features with their attributes plus CLASS_LABEL_FIELD (class name; for a
multi-label model every class at or above its threshold, joined by ";") and ``Confidence``
(0-100); features with no geometry or no image data under them get nulls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import shapely
from affine import Affine
from rasterio.features import geometry_mask

from .config import CONFIDENCE_FIELD
from .grid import InferGrid, TileLayout, batches
from .job import Clock, Job, Progress
from .prefetch import ThreadLocalResource, prefetch
from .source import WindowSource
from .vectors import FeatureWriter, read_features

OUT_PARAMETER = "OUT_FEATURE_CLASS"
CONFIDENCE = CONFIDENCE_FIELD  # the confidence output field (InferConfig.check keeps CLASS_LABEL_FIELD off it)


@dataclass
class Target:
    geometry: Any  # shapely, in the raster's CRS (None: no geometry)
    properties: Dict[str, Any]
    window: Optional[Tuple[int, int]] = None  # image tiles: top-left col, row on the grid


def classify_objects(job: Job) -> Dict[str, object]:
    c, grid = job.config, job.grid
    size = job.args.tile
    emd = job.model.emd
    fixed = _flag(emd.get("CropSizeFixed", 1))
    blacken = _flag(emd.get("BlackenAroundFeature", 0))
    if c.in_features:
        targets = [Target(g, p) for g, p in read_features(c.in_features)]
        total = len(targets)
        chips = f"of {size} px centred on each" if fixed else "of each feature's extent"
        job.events.log(f"{total} feature(s); chips {chips}{', blackened around the feature' if blacken else ''}")
    else:
        layout = TileLayout(grid.width, grid.height, size, 0)
        targets = (Target(_window_polygon(grid, t.col, t.row, t.width, t.height), {}, (t.col, t.row))
                   for t in layout)  # lazily: a large raster has many tiles
        total = len(layout)
        job.events.log(f"no IN_FEATURES: classifying {total} image tile(s) of {size} px")
    multi_label = _multi_label(job.model)
    dtype = job.raw_dtype if fixed else np.dtype("float32")
    sources = ThreadLocalResource(lambda: WindowSource(job.raster, grid, size, fill=job.model.normalization.nodata_fill()))

    def load(batch: List[Target]):
        src = sources.get()
        raw = np.zeros((len(batch), src.count, size, size), dtype)
        has_data = np.zeros(len(batch), bool)
        for k, target in enumerate(batch):
            chip = _chip(src, grid, target, size, fixed, blacken)
            if chip is not None:
                raw[k], has_data[k] = chip[0], chip[1]
        return batch, raw, has_data

    writer = FeatureWriter(c.out_path, grid.crs, OUT_PARAMETER)
    progress = Progress(job.events, total, "features" if c.in_features else "tiles")
    reader = prefetch(batches(targets, job.args.batch_size), load, job.workers, job.depth)
    classified = 0
    clock = Clock()
    try:
        for batch, raw, has_data in clock.waiting(reader):
            job.check_cancel()
            with clock.model():
                probs = job.predictor.classify(raw[has_data]) if has_data.any() else np.zeros((0, 1))
            j = 0
            for k, target in enumerate(batch):
                label = confidence = None
                if has_data[k]:
                    label, confidence = _label(job.model, probs[j], multi_label)
                    j += 1
                    classified += 1
                if target.window is not None and not has_data[k]:
                    continue  # an image tile without data: nothing to say
                writer.write(target.geometry, {**target.properties, c.class_label_field: label,
                                               CONFIDENCE: confidence})
            progress.advance(len(batch))
        job.check_cancel()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
        sources.close()
    return {"tiles": total, "features": writer.count, "classified": classified, **clock.figures()}


def _multi_label(model) -> Optional[float]:
    """The probability threshold of a multi-label classifier (MultiLabeled_Tiles), else None:
    ModelParameters' (ours in our layout), Engine.arguments' (ours in arcgis.learn's layout,
    whose ModelParameters are arcgis.learn's), else Pro's default 0.5."""
    if not getattr(model.module, "is_multi_label", False):
        return None
    params = model.emd.get("ModelParameters") or {}
    engine = model.emd.get("Engine") if isinstance(model.emd.get("Engine"), dict) else {}
    try:
        return float(params.get("threshold", (engine.get("arguments") or {}).get("threshold", 0.5)))
    except (TypeError, ValueError):
        return 0.5


def _label(model, probs: np.ndarray, multi_label: Optional[float]):
    """(class name, confidence 0-100). Multi-label: every class at or above the threshold,
    joined by ";" (confidence: the highest of them); else the most probable class."""
    if multi_label is not None:
        hits = [i for i in np.argsort(-probs) if probs[i] >= multi_label]
        names = [model.class_of_index(int(i)).name for i in hits if model.class_of_index(int(i))]
        return ";".join(names), round(100.0 * float(probs[hits[0]]), 4) if hits else 0.0
    i = int(np.argmax(probs))
    info = model.class_of_index(i)
    return (info.name if info else None), round(100.0 * float(probs[i]), 4)


def _flag(value) -> bool:
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return str(value).strip().lower() == "true"


def _window_polygon(grid: InferGrid, col: int, row: int, width: int, height: int):
    t = grid.transform
    return shapely.Polygon([t * (col, row), t * (col + width, row), t * (col + width, row + height),
                            t * (col, row + height)])


def _chip(src: WindowSource, grid: InferGrid, target: Target, size: int, fixed: bool, blacken: bool):
    """(raw (bands, size, size), has data) of a target, or None without geometry."""
    if target.window is not None:
        col, row = target.window
        data, valid = src.read(col, row, size, size)
        return data, bool(valid.any())
    geom = target.geometry
    if geom is None:
        return None
    inv = ~grid.transform
    xmin, ymin, xmax, ymax = geom.bounds
    cols, rows = zip(*(inv * (x, y) for x, y in ((xmin, ymin), (xmax, ymax), (xmin, ymax), (xmax, ymin))))
    c0, c1, r0, r1 = min(cols), max(cols), min(rows), max(rows)
    if fixed or c1 - c0 < 1 or r1 - r0 < 1:
        col = int(round((c0 + c1) / 2 - size / 2))
        row = int(round((r0 + r1) / 2 - size / 2))
        data, valid = src.read(col, row, size, size)
        chip_t = grid.transform * Affine.translation(col, row)
        if not fixed:
            data = data.astype(np.float32)
    else:
        col, row = int(math.floor(c0)), int(math.floor(r0))
        w, h = int(math.ceil(c1)) - col, int(math.ceil(r1)) - row
        data, valid = src.read(col, row, w, h)
        data, valid = _resize(data, valid, size)
        chip_t = grid.transform * Affine.translation(col, row) * Affine.scale(w / size, h / size)
    if blacken and geom.geom_type in ("Polygon", "MultiPolygon"):
        outside = geometry_mask([geom], out_shape=(size, size), transform=chip_t, all_touched=True)
        data[:, outside] = 0
        valid = valid & ~outside
    return data, bool(valid.any())


def _resize(data: np.ndarray, valid: np.ndarray, size: int):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(data.astype(np.float32))[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()
    v = F.interpolate(torch.from_numpy(valid.astype(np.float32))[None, None], size=(size, size), mode="nearest")
    return x, v[0, 0].numpy() > 0.5
