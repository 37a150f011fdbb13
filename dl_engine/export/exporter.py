"""Export Training Data For Deep Learning: cut chips and labels from a raster.

``run_export`` checks the request, cuts chips in parallel (one chip per worker in
memory), writes everything into a staging folder and moves it into place only at
the end, so a failed or cancelled run leaves nothing behind (and an earlier export
that is appended to stays intact).
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from . import esri_files as ef
from .config import (METADATA_FORMATS, SUPPORTED_FORMATS, UNLABELLED_FORMATS, REFERENCE_SYSTEMS, ClassInfo,
                     ExportCanceled, ExportConfig, ExportError, ExportResult, RasterLabels, VectorLabels)
from .existing import ExistingExport, read_existing
from .grid import Grid, Tile, build_grid, count_tiles, iter_tiles
from .labels import (RasterLabelReader, VectorLabelIndex, bucket_size_for, chip_inside_mask, class_counts,
                     label_dtype_for_values, mask_union, pixel_boxes, rasterize_chip)
from .raster_io import (CHIP_FORMATS, LABEL_FORMAT_FOR, GridReader, RasterInfo, check_chip_format, chip_profile,
                        describe, open_raster, valid_mask, write_chip)
from .stats import BandStats, ExportTotals

LABEL_KIND = {"Classified_Tiles": "classified", "PASCAL_VOC_rectangles": "voc", "KITTI_rectangles": "kitti"}
TILES_PER_TASK = 8
# GDAL's block cache defaults to 5 % of RAM; a row of source blocks (re-read by the next
# row of overlapping tiles) needs far less, and this keeps memory flat as rasters grow.
GDAL_CACHE_BYTES = 256 * 1024 * 1024


@dataclass
class _Plan:
    """Everything resolved before the first chip is cut."""

    config: ExportConfig
    grid: Grid
    info: RasterInfo
    info2: Optional[RasterInfo]
    band_names: List[str]
    band_names2: Optional[List[str]]
    label_kind: Optional[str]  # classified | voc | kitti | None
    vector: Optional[VectorLabelIndex]
    raster_labels: Optional[RasterLabels]
    label_dtype: str
    mask: object
    start_index: int
    n_tiles: int
    staging: str
    existing: Optional[ExistingExport]
    created_parent: Optional[str]  # the top folder this run created for OUT_FOLDER's parent, if any

    @property
    def image_ext(self) -> str:
        return CHIP_FORMATS[self.config.image_format][0]

    @property
    def label_ext(self) -> Optional[str]:
        if self.label_kind == "classified":
            return CHIP_FORMATS[LABEL_FORMAT_FOR[self.config.image_format]][0]
        return {"voc": "xml", "kitti": "txt"}.get(self.label_kind)


def run_export(config: ExportConfig, progress: Optional[Callable[[float], None]] = None,
               is_canceled: Optional[Callable[[], bool]] = None,
               log: Optional[Callable[[str], None]] = None) -> ExportResult:
    log = log or (lambda msg: None)
    progress = progress or (lambda f: None)
    is_canceled = is_canceled or (lambda: False)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        return _run(config, progress, is_canceled, log)


def _run(config: ExportConfig, progress, is_canceled, log) -> ExportResult:
    plan = _plan(config, log)
    try:
        totals = _cut_chips(plan, progress, is_canceled, log)
        if is_canceled():
            raise ExportCanceled("export canceled")
        if totals.chips == 0:
            _raise_nothing_exported(plan)
        classes = _finish(plan, totals)
    except BaseException:
        shutil.rmtree(plan.created_parent or plan.staging, ignore_errors=True)
        raise
    progress(1.0)
    log(f"{totals.chips} chips written to {config.out_folder}")
    return ExportResult(config.out_folder, totals.chips, plan.start_index + plan.n_tiles, classes)


# ---- checking the request --------------------------------------------------------------------

def _check_values(c: ExportConfig) -> None:
    if c.metadata_format not in METADATA_FORMATS:
        raise ExportError("METADATA_FORMAT", f"unknown format {c.metadata_format!r}; use one of {', '.join(METADATA_FORMATS)}")
    if c.metadata_format not in SUPPORTED_FORMATS:
        raise ExportError("METADATA_FORMAT", f"{c.metadata_format} is not supported yet; this version exports "
                                             f"{', '.join(SUPPORTED_FORMATS)}")
    for name, v in (("TILE_SIZE_X", c.tile_size_x), ("TILE_SIZE_Y", c.tile_size_y),
                    ("STRIDE_X", c.stride_x), ("STRIDE_Y", c.stride_y)):
        if not isinstance(v, (int, np.integer)) or v <= 0:
            raise ExportError(name, f"must be a whole number of pixels greater than 0, got {v}")
    if c.start_index < 0:
        raise ExportError("START_INDEX", f"must be 0 or more, got {c.start_index}")
    if not 0 <= c.min_polygon_overlap_ratio <= 1:
        raise ExportError("MIN_POLYGON_OVERLAP_RATIO", f"must lie between 0 and 1, got {c.min_polygon_overlap_ratio}")
    if c.reference_system not in REFERENCE_SYSTEMS:
        raise ExportError("REFERENCE_SYSTEM", f"use MAP_SPACE or PIXEL_SPACE, got {c.reference_system!r}")
    if c.workers < 0:
        raise ExportError("PARALLEL_PROCESSING_FACTOR", f"must be 0 (every core) or a number of workers, got {c.workers}")
    if c.metadata_format in UNLABELLED_FORMATS:
        return
    if c.labels is None:
        raise ExportError("IN_CLASS_DATA", f"{c.metadata_format} needs label data: a polygon, line or point layer, "
                                           "or a classified raster")
    if isinstance(c.labels, RasterLabels) and c.metadata_format != "Classified_Tiles":
        raise ExportError("IN_CLASS_DATA", f"{c.metadata_format} needs features to draw boxes around; a classified "
                                           "raster can be exported as Classified_Tiles. Give a polygon layer instead")
    if isinstance(c.labels, VectorLabels) and not len(c.labels.wkb):
        raise ExportError("IN_CLASS_DATA", "the label layer has no features (within the raster's extent); "
                                           "give a layer with features on the raster")


def _plan(c: ExportConfig, log) -> _Plan:
    _check_values(c)
    with open_raster(c.raster, "IN_RASTER") as src:
        info = describe(src, c.raster)
        grid = build_grid(src, c.extent, c.cell_size, c.reference_system)
    check_chip_format(c.image_format, info)
    info2 = band_names2 = None
    if c.raster2:
        with open_raster(c.raster2, "IN_RASTER2") as src2:
            info2 = describe(src2, c.raster2)
        check_chip_format(c.image_format, info2)
        band_names2 = list(info2.descriptions)
    band_names = list(c.band_names) if c.band_names else list(info.descriptions)
    if info.alpha_band is not None:
        band_names[info.alpha_band] = "alpha"  # arcgis.learn keeps an RGB+alpha raster as RGB

    label_kind = LABEL_KIND.get(c.metadata_format) if c.metadata_format not in UNLABELLED_FORMATS else None
    vector = raster_labels = None
    label_dtype = "uint8"
    if label_kind and isinstance(c.labels, VectorLabels):
        vector = VectorLabelIndex(c.labels, bucket_size_for(grid, c.tile_size_x, c.tile_size_y))
        _check_overlap(vector, grid)
        label_dtype = label_dtype_for_values(int(vector.values.max()))
    elif label_kind:
        raster_labels = c.labels
    mask = mask_union(c.mask_wkb)

    existing = _check_output(c)
    start = c.start_index
    if existing and existing.next_tile_index > start:
        raise ExportError("START_INDEX", f"the export in {c.out_folder} already uses chip numbers below "
                                         f"{existing.next_tile_index}; set START_INDEX to {existing.next_tile_index} "
                                         "or more so that no chip is overwritten")
    if existing:
        existing.check_compatible(c, info, info2, label_kind)
    parent = c.out_folder if existing else os.path.dirname(os.path.abspath(c.out_folder))
    created_parent = _first_missing(parent)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(os.path.abspath(c.out_folder))}.partial-{uuid.uuid4().hex[:8]}")
    n_tiles = count_tiles(grid, c.tile_size_x, c.tile_size_y, c.stride_x, c.stride_y)
    log(f"Grid {grid.width} x {grid.height} px at {grid.res[0]:g} x {grid.res[1]:g}, {n_tiles} tile positions "
        f"({c.tile_size_x} x {c.tile_size_y}, stride {c.stride_x} x {c.stride_y}), chips numbered from {start}")
    return _Plan(c, grid, info, info2, band_names, band_names2, label_kind, vector, raster_labels, label_dtype, mask,
                 start, n_tiles, staging, existing, created_parent)


def _first_missing(path: str) -> Optional[str]:
    """The outermost folder of ``path`` that does not exist yet (removed again if the run fails)."""
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _check_overlap(vector: VectorLabelIndex, grid: Grid) -> None:
    tb = vector.total_bounds()
    gb = grid.bounds
    if tb is None:
        raise ExportError("IN_CLASS_DATA", "no label feature has a usable geometry (all are empty or invalid)")
    if tb[0] > gb[2] or tb[2] < gb[0] or tb[1] > gb[3] or tb[3] < gb[1]:
        raise ExportError("IN_CLASS_DATA", "the label features do not overlap the raster (within EXTENT): "
                                           "features cover "
                                           f"{tuple(round(v, 3) for v in tb)}, the raster {tuple(round(v, 3) for v in gb)} "
                                           "(raster CRS); give labels on the raster")


def _check_output(c: ExportConfig) -> Optional[ExistingExport]:
    """None for a new export; the earlier export when appending with START_INDEX."""
    out = c.out_folder
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError("OUT_FOLDER", f"{out} is a file; give a new or empty folder")
    if not os.path.isdir(out) or not os.listdir(out):
        return None
    if c.start_index <= 0:
        raise ExportError("OUT_FOLDER", f"{out} is not empty; give a new or empty folder, or set START_INDEX "
                                        "above 0 to append to the export already in it")
    existing = read_existing(out)
    if existing is None:
        raise ExportError("START_INDEX", f"{out} is not empty and holds no export to append to "
                                         f"(no {ef.STATS_JSON}); give a new or empty folder")
    return existing


# ---- cutting chips ---------------------------------------------------------------------------

class _Worker:
    """Per-thread dataset handles and the chip loop."""

    def __init__(self, plan: _Plan):
        self.plan = plan
        c = plan.config
        self.reader = GridReader(c.raster, plan.grid, Resampling.bilinear)
        self.reader2 = GridReader(c.raster2, plan.grid, Resampling.bilinear, parameter="IN_RASTER2") if c.raster2 else None
        self.labels = RasterLabelReader(plan.raster_labels, plan.grid) if plan.raster_labels else None

    def close(self) -> None:
        for r in (self.reader, self.reader2, self.labels):
            if r is not None:
                r.close()

    def run(self, tiles: List[Tile], stop: threading.Event) -> ExportTotals:
        totals = ExportTotals()
        for tile in tiles:
            if stop.is_set():
                break
            self._chip(tile, totals)
        return totals

    def _chip(self, tile: Tile, totals: ExportTotals) -> None:
        plan, c, grid = self.plan, self.plan.config, self.plan.grid
        tx, ty = c.tile_size_x, c.tile_size_y
        data, inside = self.reader.read(tile.col, tile.row, tx, ty)
        valid = valid_mask(data, inside, plan.info.nodata, plan.info.alpha_band)
        if not valid.any():
            return  # nothing but NoData: no chip
        map_t = grid.transform * Affine.translation(tile.col, tile.row)
        # The part of the chip that lies on the grid (padding excluded).
        w_in = min(tx, grid.width - tile.col)
        h_in = min(ty, grid.height - tile.row)
        x0, y0 = map_t * (0, 0)
        x1, y1 = map_t * (w_in, h_in)
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if not chip_inside_mask(plan.mask, box):
            return

        features = label = None
        if plan.vector is not None:
            features = plan.vector.chip_features(box, c.min_polygon_overlap_ratio)
            has_labels = len(features.values) > 0
        elif self.labels is not None:
            label = self.labels.read(tile.col, tile.row, tx, ty)
            label[~inside] = 0
            cls_values, cls_counts = class_counts(label)
            has_labels = len(cls_values) > 0
        else:
            has_labels = True
        if not has_labels and not c.output_nofeature_tiles:
            return

        index = plan.start_index + tile.ordinal
        stem = ef.chip_stem(index)
        if c.reference_system == "PIXEL_SPACE":
            # Image space: x = column, y = -row of the source image, no CRS.
            out_t = Affine(1, 0, grid.source_col_off + tile.col, 0, -1, -(grid.source_row_off + tile.row))
            crs = None
        else:
            out_t, crs = map_t, grid.crs
        image_rel = f"images/{stem}.{plan.image_ext}"
        write_chip(os.path.join(plan.staging, image_rel), data,
                   chip_profile(c.image_format, plan.info.dtype, plan.info.count, tx, ty, crs, out_t, plan.info.nodata))
        if totals.bands is None:
            totals.bands = BandStats.empty(plan.info.count)
        totals.bands.add_chip(data, None if valid.all() else valid)

        image2_rel = None
        if self.reader2 is not None:
            data2, inside2 = self.reader2.read(tile.col, tile.row, tx, ty)
            image2_rel = f"images2/{stem}.{plan.image_ext}"
            write_chip(os.path.join(plan.staging, image2_rel), data2,
                       chip_profile(c.image_format, plan.info2.dtype, plan.info2.count, tx, ty, crs, out_t,
                                    plan.info2.nodata))
            valid2 = valid_mask(data2, inside2, plan.info2.nodata, plan.info2.alpha_band)
            if totals.bands2 is None:
                totals.bands2 = BandStats.empty(plan.info2.count)
            totals.bands2.add_chip(data2, valid2)

        label_rel = None
        if plan.label_kind:
            label_rel = f"labels/{stem}.{plan.label_ext}"
            label_path = os.path.join(plan.staging, label_rel)
            if plan.label_kind == "classified":
                if label is None:
                    label = rasterize_chip(features, map_t, tx, ty, plan.label_dtype)
                    label[~inside] = 0
                write_chip(label_path, label[np.newaxis],
                           chip_profile(LABEL_FORMAT_FOR[c.image_format], label.dtype.name, 1, tx, ty, crs, out_t, None))
            else:
                boxes = pixel_boxes(features, map_t, tx, ty)
                text = (ef.voc_xml(f"{stem}.{plan.image_ext}", tx, ty, plan.info.count, boxes, features.values)
                        if plan.label_kind == "voc" else ef.kitti_txt(boxes, features.values))
                with open(label_path, "w", newline="", encoding="utf-8") as f:
                    f.write(text)
            if features is not None:
                totals.features.add_chip(features.values, features.areas)
            else:
                totals.pixels.add_chip(cls_values, cls_counts)
        totals.chips += 1
        totals.map_lines[index] = ef.map_line(image_rel, image2_rel, label_rel)


def _batches(plan: _Plan) -> Iterator[List[Tile]]:
    c = plan.config
    batch: List[Tile] = []
    for tile in iter_tiles(plan.grid, c.tile_size_x, c.tile_size_y, c.stride_x, c.stride_y):
        batch.append(tile)
        if len(batch) == TILES_PER_TASK:
            yield batch
            batch = []
    if batch:
        yield batch


def _cut_chips(plan: _Plan, progress, is_canceled, log) -> ExportTotals:
    c = plan.config
    for sub in ("images", "images2" if c.raster2 else None, "labels" if plan.label_kind else None):
        if sub:
            os.makedirs(os.path.join(plan.staging, sub), exist_ok=True)
    workers = c.workers or os.cpu_count() or 1
    log(f"Cutting chips with {workers} worker(s)")
    local = threading.local()
    opened: List[_Worker] = []
    lock = threading.Lock()
    stop = threading.Event()

    def task(tiles: List[Tile]) -> ExportTotals:
        w = getattr(local, "worker", None)
        if w is None:
            w = local.worker = _Worker(plan)
            with lock:
                opened.append(w)
        return w.run(tiles, stop)

    totals = ExportTotals()
    done_tiles = 0
    batches = _batches(plan)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
            pending = set()
            exhausted = False
            while True:
                # Keep a bounded number of batches in flight: memory does not grow with the raster.
                while not exhausted and len(pending) < workers * 3:
                    tiles = next(batches, None)
                    if tiles is None:
                        exhausted = True
                        break
                    pending.add(pool.submit(task, tiles))
                if not pending:
                    break
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in finished:
                    part = fut.result()  # re-raises a worker's ExportError
                    totals.merge(part)
                    done_tiles += TILES_PER_TASK
                if is_canceled():
                    stop.set()
                    for fut in pending:
                        fut.cancel()
                    raise ExportCanceled("export canceled")
                progress(min(done_tiles / max(plan.n_tiles, 1), 1.0) * 0.98)
    finally:
        stop.set()
        for w in opened:
            w.close()
    return totals


def _raise_nothing_exported(plan: _Plan) -> None:
    where = " inside IN_MASK_POLYGONS" if plan.mask is not None else ""
    if plan.label_kind:
        raise ExportError("IN_CLASS_DATA", f"no chip{where} holds a label (feature or class pixel) on raster data; "
                                           "check that the labels overlap the raster's valid pixels, or set "
                                           "OUTPUT_NOFEATURE_TILES to export chips without labels")
    raise ExportError("IN_RASTER", f"no chip{where} holds raster data (every pixel is NoData)")


# ---- writing the esri files and moving the export into place ---------------------------------

def _classes(plan: _Plan, totals: ExportTotals) -> List[ClassInfo]:
    if not plan.label_kind:
        return []
    declared = {ci.value: ci for ci in (plan.config.labels.classes or [])}
    values = set(totals.features.class_values()) | set(totals.pixels.class_values())
    if plan.existing:
        for ci in plan.existing.classes:
            declared.setdefault(ci.value, ci)
            values.add(ci.value)
    return [declared.get(v, ClassInfo(v)) for v in sorted(values) if v != 0]


def _finish(plan: _Plan, totals: ExportTotals) -> List[ClassInfo]:
    c, grid = plan.config, plan.grid
    if plan.existing:
        totals = plan.existing.merged_with(totals)
    classes = _classes(plan, totals)
    values = [ci.value for ci in classes]
    bands = totals.bands
    num_tiles = totals.chips
    stats = {
        "Version": 1,
        "NumBands": plan.info.count,
        "TileSizeX": c.tile_size_x,
        "TileSizeY": c.tile_size_y,
        "NumClasses": len(classes),
        "NumTiles": num_tiles,
        "NumTilesAsDouble": num_tiles,
        "NextTileIndex": plan.start_index + plan.n_tiles,
        "OutputFeatures": not isinstance(c.labels, RasterLabels),
        "MetaDataMode": c.metadata_format,
        "MinCellSize": ef.cell_size_json(grid.res, grid.crs),
        "MaxCellSize": ef.cell_size_json(grid.res, grid.crs),
        "Classes": ef.classes_json(classes, emd=False),
    }
    if isinstance(c.labels, RasterLabels) and plan.label_kind:
        stats["ClassPixelStats"] = totals.pixels.to_json(values)
    else:
        stats["FeatureStats"] = totals.features.to_json(values)
    stats["InputRastersProps"] = ef.rasters_props(plan.band_names)
    if plan.info2:
        stats["InputRastersProps2"] = ef.rasters_props(plan.band_names2)
    stats["BandStatsState"] = bands.state_json()
    if totals.bands2 is not None:
        stats["BandStatsState2"] = totals.bands2.state_json()

    emd = ef.emd_template(
        metadata_format=c.metadata_format, tile_x=c.tile_size_x, tile_y=c.tile_size_y,
        reference_system=c.reference_system, res=grid.res, crs=grid.crs, classes=classes,
        band_names=plan.band_names, all_tiles_stats=bands.all_tiles_json(plan.band_names),
        band_names2=plan.band_names2 if plan.info2 else None,
        all_tiles_stats2=totals.bands2.all_tiles_json(plan.band_names2) if totals.bands2 is not None else None)

    lines = [totals.map_lines[i] for i in sorted(totals.map_lines)]
    st = plan.staging
    if plan.existing:
        _move_into(st, c.out_folder)
        st = c.out_folder
    ef.write_text(os.path.join(st, ef.MAP_TXT), "".join(lines), newline="")
    ef.write_text(os.path.join(st, ef.STATS_TXT), ef.stats_txt(stats), newline="")
    ef.write_text(os.path.join(st, ef.STATS_JSON), ef.dumps_pro(stats))
    ef.write_text(os.path.join(st, ef.EMD), ef.dumps_pro(emd))
    if not plan.existing:
        if os.path.isdir(c.out_folder):
            os.rmdir(c.out_folder)  # empty (checked); replaced by the finished export
        os.replace(plan.staging, c.out_folder)
    else:
        shutil.rmtree(plan.staging, ignore_errors=True)
    return classes


def _move_into(staging: str, out: str) -> None:
    """Move the new chips of an append into the earlier export's sub-folders."""
    for sub in sorted(os.listdir(staging)):
        src_dir = os.path.join(staging, sub)
        dst_dir = os.path.join(out, sub)
        os.makedirs(dst_dir, exist_ok=True)
        for name in os.listdir(src_dir):
            os.replace(os.path.join(src_dir, name), os.path.join(dst_dir, name))
