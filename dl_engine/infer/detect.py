"""Detect Objects Using Deep Learning: tiles through a detector (``ModelSpec.predict``),
boxes (or instance masks) to map polygons, duplicates across tile borders removed.

Per tile: detections below ``threshold`` are dropped and the rest suppressed at
``nms_overlap`` (a no-op when the model did it already). With ``exclude_pad_detections`` a
detection is kept only by the tile whose centre (the part inside the padding) holds the
centre of its box: the centres partition the grid, so an object seen by several overlapping
tiles is kept once, from the tile that sees it with the most context. Then, always, boxes of
one class from different tiles with IoU above 0.9 are merged (the same object seen twice), and
with RUN_NMS a class-wise NMS at MAX_OVERLAP_RATIO runs over the whole output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np
import rasterio.features
import shapely
import shapely.geometry
from affine import Affine

from .config import CLASS_VALUE_NUMBER_FIELD
from .grid import InferGrid, Tile, TileLayout, batches
from .items import raster_items
from .job import Clock, Job, Progress
from .nms import DUPLICATE_IOU, suppress
from .prefetch import ThreadLocalResource, prefetch
from ..raster_info import RasterInfo
from .source import WindowSource
from .vectors import FeatureWriter

OUT_PARAMETER = "OUT_DETECTED_OBJECTS"
MASK_THRESHOLD = 0.5  # instance mask probability that counts as the object


@dataclass
class Found:
    """Detections of the whole run, in map coordinates."""

    geometries: List[Any] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    tiles: List[int] = field(default_factory=list)

    def add(self, geometry, score: float, label: int, tile: int) -> None:
        self.geometries.append(geometry)
        self.scores.append(float(score))
        self.labels.append(int(label))
        self.tiles.append(int(tile))


def detect_objects(job: Job) -> Dict[str, object]:
    args = job.args
    found = Found()
    tile_base = 0
    total_tiles = 0
    items = raster_items(job)
    clock = Clock()
    for n, (desc, grid, reproject) in enumerate(items):
        layout = TileLayout(grid.width, grid.height, args.tile, args.padding)
        what = "tiles" if len(items) == 1 else f"item {n + 1}/{len(items)}: tiles"
        progress = Progress(job.events, len(layout), what, start=90.0 * n / len(items),
                            end=90.0 * (n + 1) / len(items))
        _detect_item(job, desc, grid, layout, found, tile_base, progress, reproject, clock)
        tile_base += len(layout)
        total_tiles += len(layout)
    job.check_cancel()
    kept = _deduplicate(found, job)
    writer = FeatureWriter(job.config.out_path, job.grid.crs, OUT_PARAMETER)
    try:
        c = job.config
        for i in kept:
            info = job.model.class_of_index(found.labels[i])
            writer.write(found.geometries[i], {c.class_value_field: info.name, CLASS_VALUE_NUMBER_FIELD: info.value,
                                               c.confidence_score_field: round(100.0 * found.scores[i], 4)})
        job.check_cancel()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {"tiles": total_tiles, "features": len(kept), "detections_before_merging": len(found.scores),
            **clock.figures()}


def _detect_item(job: Job, desc: RasterInfo, grid: InferGrid, layout: TileLayout, found: Found,
                 tile_base: int, progress: Progress, reproject, clock: Clock) -> None:
    args = job.args
    fill = job.model.normalization.nodata_fill()
    sources = ThreadLocalResource(lambda: WindowSource(desc, grid, args.padding, fill=fill))
    dtype = job.raw_dtype
    T = args.tile

    def load(tiles: List[Tile]):
        src = sources.get()
        raw = np.empty((len(tiles), src.count, T, T), dtype)
        valid = np.empty((len(tiles), T, T), bool)
        for k, t in enumerate(tiles):
            raw[k], valid[k] = src.read(*t.window, T, T)
        return tiles, raw, valid

    reader = prefetch(batches(layout, args.batch_size), load, job.workers, job.depth)
    try:
        for tiles, raw, valid in clock.waiting(reader):
            job.check_cancel()
            busy = [k for k in range(len(tiles)) if valid[k].any()]  # tiles without data skip the model
            if busy:
                with clock.model():
                    outputs = job.predictor.detect(raw if len(busy) == len(tiles) else raw[busy],
                                                   threshold=args.threshold, nms_overlap=args.nms_overlap)
                for out, k in zip(outputs, busy):
                    t = tiles[k]
                    _tile_detections(job, out, t, valid[k], grid, found, tile_base + t.index, reproject)
            progress.advance(len(tiles))
    finally:
        reader.close()
        sources.close()


def _tile_detections(job: Job, out: Dict[str, np.ndarray], t: Tile, valid: np.ndarray, grid: InferGrid,
                     found: Found, tile_id: int, reproject) -> None:
    args = job.args
    boxes = np.asarray(out.get("boxes", np.zeros((0, 4))), np.float64).reshape(-1, 4)
    if not len(boxes):
        return
    scores = np.asarray(out.get("scores"), np.float64).reshape(-1)
    labels = np.asarray(out.get("labels"), np.int64).reshape(-1)
    masks = out.get("masks")
    keep = (scores >= args.threshold) & (labels >= 1) & (labels <= len(job.model.classes))
    keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    idx = np.nonzero(keep)[0]
    if len(idx) > 1:
        idx = idx[suppress(boxes[idx], scores[idx], labels[idx], args.nms_overlap)]
    col0, row0 = t.window
    size = valid.shape[0]
    # the part of the window that is on the grid (the rest mirrors the raster's edge)
    lo_x, lo_y = max(0, -col0), max(0, -row0)
    hi_x, hi_y = min(size, grid.width - col0), min(size, grid.height - row0)
    p = t.padding
    tile_t = grid.transform * Affine.translation(col0, row0)
    for i in sorted(idx.tolist()):
        x0, y0, x1, y1 = boxes[i]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if args.exclude_pad_detections:
            inside = p <= cx < p + t.width and p <= cy < p + t.height
        else:
            inside = lo_x <= cx < hi_x and lo_y <= cy < hi_y
        if not inside or not valid[min(int(cy), size - 1), min(int(cx), size - 1)]:
            continue
        x0, x1 = np.clip([x0, x1], lo_x, hi_x)
        y0, y1 = np.clip([y0, y1], lo_y, hi_y)
        geom = None
        if masks is not None:
            geom = _mask_polygon(np.asarray(masks[i]), (x0, y0, x1, y1), tile_t)
        if geom is None:
            geom = shapely.Polygon([tile_t * (x0, y0), tile_t * (x1, y0), tile_t * (x1, y1), tile_t * (x0, y1)])
        if reproject is not None:
            geom = reproject(geom)
        found.add(geom, scores[i], labels[i], tile_id)


def _mask_polygon(mask: np.ndarray, box, tile_t: Affine):
    """The outline of an instance mask (probabilities in chip pixels) inside its box, in map
    coordinates, simplified by half a pixel; None when the mask is empty there."""
    mask = np.squeeze(mask)
    if mask.ndim != 2:
        return None
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(mask.shape[1], int(np.ceil(box[2]))), min(mask.shape[0], int(np.ceil(box[3])))
    on = (mask[y0:y1, x0:x1] > MASK_THRESHOLD).astype(np.uint8)
    if not on.any():
        return None
    t = tile_t * Affine.translation(x0, y0)
    parts = [shapely.geometry.shape(g) for g, v in rasterio.features.shapes(on, mask=on > 0, transform=t)]
    geom = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    geom = geom.simplify(abs(tile_t.a) * 0.5, preserve_topology=True)
    return geom if not geom.is_empty else None


def _deduplicate(found: Found, job: Job) -> np.ndarray:
    """Indices of the detections to write, in the order found."""
    n = len(found.scores)
    if n == 0:
        return np.zeros(0, np.int64)
    bounds = shapely.bounds(np.asarray(found.geometries, dtype=object))
    scores, labels = np.asarray(found.scores), np.asarray(found.labels)
    kept = suppress(bounds, scores, labels, DUPLICATE_IOU, groups=np.asarray(found.tiles))
    if job.config.run_nms:
        kept = kept[suppress(bounds[kept], scores[kept], labels[kept], float(job.config.max_overlap_ratio))]
    return np.sort(kept)

