"""Export Training Data For Deep Learning: cut chips and labels from a raster.

``run_export`` checks the request, cuts chips in parallel (one chip per worker in
memory), writes everything into a staging folder and moves it into place only at
the end, so a failed or cancelled run leaves nothing behind (and an earlier export
that is appended to stays intact).
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, replace
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import rasterio

from ..errors import Canceled, InputError
from ..events import Events
from ..formats import IMAGES, IMAGES2, LABELS, MetadataFormat, get_format
from . import esri_files as ef
from .config import ClassInfo, ExportConfig, ExportResult, RasterLabels, VectorLabels
from .existing import ExistingExport, read_existing
from .frames import Frame, feature_frame, grid_frames, rotate, rotations
from .grid import Grid, build_grid, count_tiles
from .items import raster_items
from .label_formats import LabelContext
from .pools import chip_pool
from .preflight import named_write_errors, preflight
from . import staging as staging_folders
from .labels import VectorLabelIndex, bucket_size_for, label_dtype_for_values, mask_union
from ..raster_info import RasterInfo, describe, open_raster, quiet_georeferencing, read_info
from .raster_io import check_chip_format
from .stats import ExportTotals

FRAMES_PER_TASK = 8
# GDAL's block cache defaults to 5 % of RAM; a row of source blocks (re-read by the next
# row of overlapping tiles) needs far less, and this keeps memory flat as rasters grow.
GDAL_CACHE_BYTES = 256 * 1024 * 1024
CANCELED_MESSAGE = "Export canceled: nothing was written"


@dataclass
class Item:
    """One raster exported on its own grid: the whole mosaic, or one of its files."""

    raster: str
    grid: Grid
    start: int  # chip number of its first site
    sites: List  # tile count (int) for grid formats, feature indexes for feature formats

    @property
    def site_count(self) -> int:
        return self.sites if isinstance(self.sites, int) else len(self.sites)


@dataclass
class _Plan:
    """Everything resolved before the first chip is cut."""

    config: ExportConfig
    items: List[Item]
    info: RasterInfo
    info2: Optional[RasterInfo]
    band_names: List[str]
    band_names2: Optional[List[str]]
    fmt: MetadataFormat  # the METADATA_FORMAT's row of dl_engine.formats
    vector: Optional[VectorLabelIndex]
    instances: Optional[VectorLabelIndex]
    raster_labels: Optional[RasterLabels]
    label_ctx: LabelContext
    mask: object
    angles: List[float]
    start_index: int
    next_index: int
    staging: str

    @property
    def label_kind(self) -> Optional[str]:
        return self.fmt.label_kind
    existing: Optional[ExistingExport]
    created_parent: Optional[str]  # the top folder this run created for OUT_FOLDER's parent, if any


def run_export(config: ExportConfig, events: Optional[Events] = None,
               cancel: Optional[Callable[[], bool]] = None) -> ExportResult:
    """Run one export, as run_training and run_inference run theirs: ``events`` gets progress
    (a percent, 0-100), log lines and a ``result`` event at the end; ``cancel()`` is asked
    between chips. Raises InputError (bad input, naming the parameter) and Canceled (nothing
    is left behind; an export appended to stays as it was)."""
    config.check()
    events = events or Events()
    cancel = cancel or (lambda: False)
    with quiet_georeferencing(), rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        config = preflight(config, events.log)
        with named_write_errors(config):
            if config.metadata_format == "CycleGAN":
                result = _run_cyclegan(config, events.progress, cancel, events.log)
            else:
                result = _run(config, events.progress, cancel, events.log)
    events.result(out_folder=result.out_folder, num_tiles=result.num_tiles,
                  next_tile_index=result.next_tile_index)
    return result


# Inside the run, ``progress(percent)``, ``cancel()`` and ``log(text)`` are plain callables.

def _run(config: ExportConfig, progress, cancel, log) -> ExportResult:
    plan = _plan(config, log)
    try:
        totals = _cut_chips(plan, progress, cancel, log)
        if cancel():
            raise Canceled(CANCELED_MESSAGE)
        if totals.chips == 0:
            _raise_nothing_exported(plan)
        classes = _finish(plan, totals)
    except BaseException:
        shutil.rmtree(plan.created_parent or plan.staging, ignore_errors=True)
        raise
    finally:
        staging_folders.release(plan.staging)
    progress(100.0)
    log(f"{totals.chips} chips written to {config.out_folder}")
    return ExportResult(config.out_folder, totals.chips, plan.next_index, classes)


def _run_cyclegan(c: ExportConfig, progress, cancel, log) -> ExportResult:
    """CycleGAN: A/ from IN_RASTER and B/ from IN_RASTER2, each a complete export."""
    _check_labels(c)
    if not c.raster2:
        raise InputError("IN_RASTER2", "CycleGAN needs a second raster (domain B); give IN_RASTER2")
    if c.start_index > 0:
        raise InputError("START_INDEX", "appending is not available for CycleGAN (two exports, A/ and B/); "
                                         "export into a new folder with START_INDEX 0")
    _remove_abandoned_staging(c, log)
    _check_output(c)
    parent = os.path.dirname(os.path.abspath(c.out_folder))
    created_parent = _first_missing(parent)
    os.makedirs(parent, exist_ok=True)
    staging = staging_folders.claim(parent, c.out_folder)
    try:
        parts = []
        for k, (name, raster, param) in enumerate((("A", c.raster, "IN_RASTER"), ("B", c.raster2, "IN_RASTER2"))):
            log(f"CycleGAN domain {name}: {raster}")
            part = replace(c, raster=raster, raster2=None, labels=None, out_folder=os.path.join(staging, name))
            try:
                parts.append(_run(part, lambda p, k=k: progress((100 * k + p) / 2), cancel, log))
            except InputError as exc:
                raise InputError(param if exc.parameter == "IN_RASTER" else exc.parameter, exc.message) from None
        if os.path.isdir(c.out_folder):
            os.rmdir(c.out_folder)
        os.replace(staging, c.out_folder)
    except BaseException:
        shutil.rmtree(created_parent or staging, ignore_errors=True)
        raise
    finally:
        staging_folders.release(staging)
    return ExportResult(c.out_folder, sum(p.num_tiles for p in parts), max(p.next_tile_index for p in parts), [])


# ---- checking the request --------------------------------------------------------------------

def _check_labels(c: ExportConfig) -> None:
    """The labels the format needs are there (the single values passed ``config.check()``)."""
    fmt = get_format(c.metadata_format)
    if not fmt.labelled:
        return
    if c.labels is None:
        raise InputError("IN_CLASS_DATA", f"{c.metadata_format} needs label data: a polygon, line or point layer, "
                                           "or a classified raster")
    if isinstance(c.labels, RasterLabels) and c.metadata_format != "Classified_Tiles":
        raise InputError("IN_CLASS_DATA", f"{c.metadata_format} needs features (boxes, instances or one chip per "
                                           "feature); a classified raster can be exported as Classified_Tiles. "
                                           "Give a polygon layer instead")
    if isinstance(c.labels, VectorLabels) and not len(c.labels.wkb):
        raise InputError("IN_CLASS_DATA", "the label layer has no features (within the raster's extent); "
                                           "give a layer with features on the raster")
    if c.metadata_format == "Panoptic_Segmentation" and (c.instance_labels is None or not len(c.instance_labels.wkb)):
        raise InputError("IN_INSTANCE_DATA", "Panoptic_Segmentation needs instance features (e.g. buildings, cars) "
                                              "besides the semantic classes of IN_CLASS_DATA; give a layer with features")


def _plan(c: ExportConfig, log) -> _Plan:
    _check_labels(c)
    paths = raster_items(c.raster, c.processing_mode == "PROCESS_ITEMS_SEPARATELY", log)
    info = read_info(paths[0], "IN_RASTER")
    grids = []
    for path in paths:
        with open_raster(path, "IN_RASTER") as src:
            item_info = describe(src, path)
            if (item_info.count, item_info.dtype) != (info.count, info.dtype):
                raise InputError("PROCESSING_MODE", f"the items of the mosaic differ: {os.path.basename(path)} has "
                                                     f"{item_info.count} band(s) of {item_info.dtype}, the first "
                                                     f"{info.count} of {info.dtype}; items must match to share one export")
            try:
                grids.append(build_grid(src, c.extent, c.cell_size, c.reference_system))
            except InputError:
                if len(paths) == 1 or c.extent is None:
                    raise
                log(f"{os.path.basename(path)} lies outside EXTENT; skipped")
    if not grids:
        raise InputError("EXTENT", "no item of the mosaic overlaps the extent")
    check_chip_format(c.image_format, info)
    info2 = band_names2 = None
    if c.raster2:
        info2 = read_info(c.raster2, "IN_RASTER2")
        check_chip_format(c.image_format, info2)
        band_names2 = list(info2.descriptions)
    band_names = list(c.band_names) if c.band_names else list(info.descriptions)
    if info.alpha_band is not None:
        band_names[info.alpha_band - 1] = "alpha"  # arcgis.learn keeps an RGB+alpha raster as RGB

    fmt = get_format(c.metadata_format)
    kind = fmt.label_kind
    vector = instances = raster_labels = None
    label_dtype = "uint8"
    bucket = bucket_size_for(grids[0], c.tile_size_x, c.tile_size_y)
    if kind and isinstance(c.labels, VectorLabels):
        vector = VectorLabelIndex(c.labels, bucket)
        _check_overlap(vector, grids)
        label_dtype = label_dtype_for_values(int(vector.values.max()))
    elif kind:
        raster_labels = c.labels
    if kind == "panoptic":
        instances = VectorLabelIndex(c.instance_labels, bucket)
    mask = mask_union(c.mask_wkb)

    _remove_abandoned_staging(c, log)
    existing = _check_output(c)
    if existing and existing.next_tile_index > c.start_index:
        raise InputError("START_INDEX", f"the export in {c.out_folder} already uses chip numbers below "
                                         f"{existing.next_tile_index}; set START_INDEX to {existing.next_tile_index} "
                                         "or more so that no chip is overwritten")
    if existing:
        existing.check_compatible(c, info, info2, kind)

    angles = rotations(c.rotation_angle)
    items, start = [], c.start_index
    for path, grid in zip(paths, grids):
        if fmt.feature_chips:
            sites = vector.features_in(grid.bounds).tolist()
        else:
            sites = count_tiles(grid, c.tile_size_x, c.tile_size_y, c.stride_x, c.stride_y)
        item = Item(path, grid, start, sites)
        items.append(item)
        start += item.site_count * len(angles)

    parent = c.out_folder if existing else os.path.dirname(os.path.abspath(c.out_folder))
    created_parent = _first_missing(parent)
    os.makedirs(parent, exist_ok=True)
    g = grids[0]
    log(f"Grid {g.width} x {g.height} px at {g.res[0]:g} x {g.res[1]:g}"
        f"{f' ({len(items)} items)' if len(items) > 1 else ''}: {start - c.start_index} chip positions "
        f"({c.tile_size_x} x {c.tile_size_y}, stride {c.stride_x} x {c.stride_y}"
        f"{f', {len(angles)} rotations' if len(angles) > 1 else ''}), numbered from {c.start_index}")
    ctx = LabelContext(label_dtype, _ClassNames(c.labels), _ClassNames(c.instance_labels))
    return _Plan(c, items, info, info2, band_names, band_names2, fmt, vector, instances, raster_labels, ctx, mask,
                 angles, c.start_index, start, staging_folders.claim(parent, c.out_folder), existing, created_parent)


class _ClassNames:
    """Class value -> name (the value as text when the layer gives none); picklable for worker processes."""

    def __init__(self, labels):
        self.names = {ci.value: ci.label for ci in (labels.classes if labels is not None else [])}

    def __call__(self, value: int) -> str:
        return self.names.get(value, str(value))


def _remove_abandoned_staging(c: ExportConfig, log) -> None:
    """Staging that a killed run into this OUT_FOLDER left (beside it, or inside it when appending)."""
    staging_folders.remove_abandoned(os.path.dirname(os.path.abspath(c.out_folder)), c.out_folder, log)
    if os.path.isdir(c.out_folder):
        staging_folders.remove_abandoned(c.out_folder, c.out_folder, log)


def _first_missing(path: str) -> Optional[str]:
    """The outermost folder of ``path`` that does not exist yet (removed again if the run fails)."""
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _check_overlap(vector: VectorLabelIndex, grids: List[Grid]) -> None:
    tb = vector.total_bounds()
    bounds = np.array([g.bounds for g in grids])
    gb = (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max())
    if tb is None:
        raise InputError("IN_CLASS_DATA", "no label feature has a usable geometry (all are empty or invalid)")
    if tb[0] > gb[2] or tb[2] < gb[0] or tb[1] > gb[3] or tb[3] < gb[1]:
        if all(g.crs is None for g in grids):  # nothing to reproject by: the raster is what lacks
            raise InputError("IN_RASTER", "the raster has no coordinate reference system and the label features "
                                          f"do not fall on its coordinates (features cover "
                                          f"{tuple(round(v, 3) for v in tb)}, the raster "
                                          f"{tuple(round(v, 3) for v in gb)}); assign the raster its CRS")
        raise InputError("IN_CLASS_DATA", "the label features do not overlap the raster (within EXTENT): "
                                           "features cover "
                                           f"{tuple(round(v, 3) for v in tb)}, the raster {tuple(round(v, 3) for v in gb)} "
                                           "(raster CRS); give labels on the raster")


def _check_output(c: ExportConfig) -> Optional[ExistingExport]:
    """None for a new export; the earlier export when appending with START_INDEX."""
    out = c.out_folder
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError("OUT_FOLDER", f"{out} is a file; give a new or empty folder")
    if not os.path.isdir(out) or not [e for e in os.listdir(out) if not staging_folders.is_staging(e)]:
        return None
    if c.start_index <= 0:
        raise InputError("OUT_FOLDER", f"{out} is not empty; give a new or empty folder, or set START_INDEX "
                                        "above 0 to append to the export already in it")
    existing = read_existing(out)
    if existing is None:
        raise InputError("START_INDEX", f"{out} is not empty and holds no export to append to "
                                         f"(no {ef.STATS_JSON}); give a new or empty folder")
    return existing


# ---- cutting chips ---------------------------------------------------------------------------

def _frames(plan: _Plan, item: Item) -> Iterator[Frame]:
    c = plan.config
    if plan.fmt.feature_chips:
        fixed = c.crop_mode == "FIXED_SIZE"
        base = (feature_frame(item.grid, ordinal, fid, plan.vector.feature_bounds(fid), fixed,
                              c.tile_size_x, c.tile_size_y) for ordinal, fid in enumerate(item.sites))
    else:
        base = grid_frames(item.grid, c.tile_size_x, c.tile_size_y, c.stride_x, c.stride_y)
    for frame in base:
        for turn, angle in enumerate(plan.angles):
            yield rotate(frame, turn, angle)


def _tasks(plan: _Plan) -> Iterator[Tuple[int, List[Frame]]]:
    for i, item in enumerate(plan.items):
        batch: List[Frame] = []
        for frame in _frames(plan, item):
            batch.append(frame)
            if len(batch) == FRAMES_PER_TASK:
                yield i, batch
                batch = []
        if batch:
            yield i, batch


def _cut_chips(plan: _Plan, progress, cancel, log) -> ExportTotals:
    workers = plan.config.workers or os.cpu_count() or 1
    subfolders = [IMAGES] + ([IMAGES2] if plan.config.raster2 else [])
    subfolders += [LABELS] if plan.label_kind not in (None, "imagenet") else []
    for sub in subfolders:
        os.makedirs(os.path.join(plan.staging, sub), exist_ok=True)
    totals = ExportTotals()
    done = 0
    total = max(plan.next_index - plan.start_index, 1)
    tasks = _tasks(plan)
    with chip_pool(plan, workers, total, log) as (pool, task, stop):
        pending = set()
        exhausted = False
        while True:
            # Keep a bounded number of batches in flight: memory does not grow with the raster.
            while not exhausted and len(pending) < workers * 3:
                t = next(tasks, None)
                if t is None:
                    exhausted = True
                    break
                pending.add(pool.submit(task, *t))
            if not pending:
                break
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in finished:
                n, part = fut.result()  # re-raises a worker's InputError
                totals.merge(part)
                done += n
            if cancel():
                stop.set()
                raise Canceled(CANCELED_MESSAGE)
            progress(min(done / total, 1.0) * 98)
    return totals


def _raise_nothing_exported(plan: _Plan) -> None:
    where = " inside IN_MASK_POLYGONS" if plan.mask is not None else ""
    if plan.label_kind:
        raise InputError("IN_CLASS_DATA", f"no chip{where} holds a label (feature or class pixel) on raster data; "
                                           "check that the labels overlap the raster's valid pixels, or set "
                                           "OUTPUT_NOFEATURE_TILES to export chips without labels")
    raise InputError("IN_RASTER", f"no chip{where} holds raster data (every pixel is NoData)")


# ---- writing the esri files and moving the export into place ---------------------------------

def _classes(declared: List[ClassInfo], values, existing: List[ClassInfo]) -> List[ClassInfo]:
    by_value = {ci.value: ci for ci in declared}
    values = set(values)
    for ci in existing:
        by_value.setdefault(ci.value, ci)
        values.add(ci.value)
    return [by_value.get(v, ClassInfo(v)) for v in sorted(values) if v != 0]


def _finish(plan: _Plan, totals: ExportTotals) -> List[ClassInfo]:
    c = plan.config
    if plan.existing:
        totals = plan.existing.merged_with(totals)
    classes = []
    if plan.label_kind:
        classes = _classes(c.labels.classes or [], set(totals.features.class_values()) |
                           set(totals.pixels.class_values()), plan.existing.classes if plan.existing else [])
    values = [ci.value for ci in classes]
    grids = [item.grid for item in plan.items]
    crs = grids[0].crs
    min_res = min(g.res for g in grids)
    max_res = max(g.res for g in grids)
    stats = {
        "Version": 1,
        "NumBands": plan.info.count,
        "TileSizeX": c.tile_size_x,
        "TileSizeY": c.tile_size_y,
        "NumClasses": len(classes),
        "NumTiles": totals.chips,
        "NumTilesAsDouble": totals.chips,
        "NextTileIndex": plan.next_index,
        "OutputFeatures": not isinstance(c.labels, RasterLabels),
        "MetaDataMode": c.metadata_format,
        "MinCellSize": ef.cell_size_json(min_res, crs),
        "MaxCellSize": ef.cell_size_json(max_res, crs),
        "Classes": ef.classes_json(classes, emd=False),
    }
    if isinstance(c.labels, RasterLabels) and plan.label_kind:
        stats["ClassPixelStats"] = totals.pixels.to_json(values)
    else:
        stats["FeatureStats"] = totals.features.to_json(values)
    stats["InputRastersProps"] = ef.rasters_props(plan.band_names)
    if plan.info2:
        stats["InputRastersProps2"] = ef.rasters_props(plan.band_names2)
    stats["BandStatsState"] = totals.bands.state_json()
    if totals.bands2 is not None:
        stats["BandStatsState2"] = totals.bands2.state_json()

    emd = ef.emd_template(
        metadata_format=c.metadata_format, tile_x=c.tile_size_x, tile_y=c.tile_size_y,
        reference_system=c.reference_system, min_res=min_res, max_res=max_res, crs=crs, classes=classes,
        band_names=plan.band_names, all_tiles_stats=totals.bands.all_tiles_json(plan.band_names),
        band_names2=plan.band_names2 if plan.info2 else None,
        all_tiles_stats2=totals.bands2.all_tiles_json(plan.band_names2) if totals.bands2 is not None else None,
        crop_mode=c.crop_mode, blacken_around_feature=c.blacken_around_feature)
    if plan.label_kind == "panoptic":
        instance_classes = _classes(c.instance_labels.classes or [], totals.instances.class_values(), [])
        emd["Panoptic_Segmentation_Instance_Classes"] = ef.classes_json(instance_classes, emd=True)

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
    """Move the new chips of an append into the earlier export's folders (any depth)."""
    for root, _dirs, files in os.walk(staging):
        rel = os.path.relpath(root, staging)
        dst_dir = os.path.normpath(os.path.join(out, rel))
        os.makedirs(dst_dir, exist_ok=True)
        for name in files:
            os.replace(os.path.join(root, name), os.path.join(dst_dir, name))
