"""What an export checks once the raster can be read and before its first chip is cut, and how
its write failures reach the user; ``run_export`` calls these wherever the export runs (QGIS's
process, the worker, the command line).

- ``preflight(config, log)``: OUT_FOLDER is writable (``destinations.writable_folder``, the rule
  every tool shares); the config's warnings (a stride larger than the tile); the tile size
  against memory with the raster's own band count and data type; a raster without a CRS.
- ``named_write_errors(config)``: disk full, read-only, permission denied, path too long while
  writing the export become ``InputError("OUT_FOLDER", …)`` with the space an export of this
  size needs.

A raster without a CRS (MAP_SPACE): when the QGIS side found the label layer's CRS to assume
(``ExportConfig.assumed_crs``), the raster is read through GDAL's ``vrt://…?a_srs=`` with that
CRS, so chips, labels and the emd carry it, and the log says so; without one, the log warns that
the chips carry no CRS.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Callable, Optional
from urllib.parse import quote

import numpy as np

from ..destinations import named_os_errors, writable_folder
from ..errors import InputError
from ..raster_info import RasterInfo, open_raster, read_info
from .config import ExportConfig

Log = Callable[..., None]


def preflight(config: ExportConfig, log: Log) -> ExportConfig:
    """The checks above; returns the config to run (the raster read with an assumed CRS)."""
    writable_folder("OUT_FOLDER", config.out_folder)
    for warning in config.warnings():
        log(warning, "warning")
    info = read_info(config.raster, "IN_RASTER")
    bands, itemsize = info.count, np.dtype(info.dtype).itemsize
    if config.raster2:
        info2 = read_info(config.raster2, "IN_RASTER2")
        bands, itemsize = bands + info2.count, max(itemsize, np.dtype(info2.dtype).itemsize)
    config.check_memory(bands, itemsize)
    return _crs(config, info, log)


def no_crs_message(assumed: Optional[str]) -> str:
    """The warning for IN_RASTER without a CRS (also the QGIS side's)."""
    if assumed:
        return (f"IN_RASTER has no coordinate reference system: the label layer's, {assumed}, is assumed (its "
                f"coordinates are read as {assumed} coordinates, and the chips carry it); assign the raster its "
                f"CRS if that is wrong")
    return ("IN_RASTER has no coordinate reference system: the chips and the export carry none, and labels are "
            "matched to the raster by their coordinates as they are; assign the raster its CRS")


def _crs(config: ExportConfig, info: RasterInfo, log: Log) -> ExportConfig:
    if info.crs or config.reference_system != "MAP_SPACE" or info.transform.is_identity:
        return config  # georeferenced, or pixel space on purpose
    assumed = (config.assumed_crs or "").strip() or None
    if assumed and config.processing_mode == "PROCESS_AS_MOSAICKED_IMAGE" and "://" not in config.raster:
        path = f"vrt://{os.path.abspath(config.raster)}?a_srs={quote(assumed, safe=':')}"
        try:
            with open_raster(path, "IN_RASTER") as src:
                ok = src.crs is not None
        except InputError:
            ok = False
        if ok:
            _labels_on_raster(config, info, assumed)
            log(no_crs_message(assumed), "warning")
            return replace(config, raster=path)
    log(no_crs_message(None), "warning")
    return config


def _labels_on_raster(config: ExportConfig, info: RasterInfo, assumed: str) -> None:
    """With a CRS only assumed, labels that miss the raster are the raster's fault, not theirs."""
    from .config import VectorLabels

    if not isinstance(config.labels, VectorLabels) or not len(config.labels.wkb):
        return
    import shapely

    bounds = shapely.total_bounds(shapely.from_wkb(config.labels.wkb))
    t = info.transform
    xs, ys = (t.c, t.c + t.a * info.width), (t.f, t.f + t.e * info.height)
    if np.isnan(bounds).any() or bounds[0] > max(xs) or bounds[2] < min(xs) or bounds[1] > max(ys) \
            or bounds[3] < min(ys):
        raise InputError("IN_RASTER", f"the raster has no coordinate reference system, and read as {assumed} (the "
                                      f"label layer's) its coordinates {tuple(round(v, 3) for v in (min(xs), min(ys), max(xs), max(ys)))} "
                                      f"do not meet the labels' {tuple(round(float(v), 3) for v in bounds)}; assign "
                                      f"the raster its CRS (Raster ▸ Projections ▸ Assign Projection)")


def export_bytes(config: ExportConfig, info: RasterInfo) -> int:
    """About what an export of this raster writes uncompressed: every chip position of the raster
    (less where chips are skipped) with its bands and a label."""
    step_x, step_y = min(config.stride_x, config.tile_size_x), min(config.stride_y, config.tile_size_y)
    chips = math.ceil(info.width / step_x) * math.ceil(info.height / step_y)
    return int(chips * config.tile_size_x * config.tile_size_y * (info.count * np.dtype(info.dtype).itemsize + 1))


def named_write_errors(config: ExportConfig):
    """A write failure (in this process or a chip worker) as InputError("OUT_FOLDER") that says
    about how much an export of this size needs."""
    return named_os_errors("OUT_FOLDER", os.path.abspath(config.out_folder),
                           lambda: export_bytes(config, read_info(config.raster, "IN_RASTER")))
