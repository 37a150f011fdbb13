"""The chip loop of one pool thread or process (``ChipCutter``): read a frame, decide
whether it becomes a chip, write the image (and images2) chip and its labels, accumulate
statistics."""

from __future__ import annotations

import os
import threading
from typing import List, Optional

import numpy as np
import shapely
from affine import Affine
from rasterio.enums import Resampling

from . import esri_files as ef
from .frames import Frame
from .label_formats import WRITERS, Chip, blacken_outside, image_rel
from .labels import RasterLabelReader, chip_inside_mask, class_counts
from .raster_io import GridReader, chip_profile, read_frame, valid_mask, write_chip
from .stats import BandStats, ExportTotals


class ChipCutter:
    """The chip loop of one pool thread or process, with its own dataset handles for the
    item being exported."""

    def __init__(self, plan):
        self.plan = plan
        self.item_index: Optional[int] = None
        self.reader = self.reader2 = self.labels = None

    def _open(self, item_index: int) -> None:
        if item_index == self.item_index:
            return
        self.close()
        plan, c = self.plan, self.plan.config
        grid = plan.items[item_index].grid
        self.reader = GridReader(plan.items[item_index].raster, grid, Resampling.bilinear)
        self.reader2 = GridReader(c.raster2, grid, Resampling.bilinear, parameter="IN_RASTER2") if c.raster2 else None
        self.labels = RasterLabelReader(plan.raster_labels, grid) if plan.raster_labels else None
        self.item_index = item_index

    def close(self) -> None:
        for r in (self.reader, self.reader2, self.labels):
            if r is not None:
                r.close()
        self.reader = self.reader2 = self.labels = None
        self.item_index = None

    def run(self, item_index: int, frames: List[Frame], stop: threading.Event) -> ExportTotals:
        self._open(item_index)
        totals = ExportTotals()
        for frame in frames:
            if stop.is_set():
                break
            self._chip(item_index, frame, totals)
        return totals

    def _chip(self, item_index: int, frame: Frame, totals: ExportTotals) -> None:
        plan, c = self.plan, self.plan.config
        item = plan.items[item_index]
        data, inside = read_frame(self.reader, frame, Resampling.bilinear)
        valid = valid_mask(data, inside, plan.info.nodata, plan.info.alpha_band)
        if not valid.any():
            return  # nothing but NoData: no chip
        region = _region_on_grid(frame, item.grid)
        if region.is_empty or not chip_inside_mask(plan.mask, region):
            return

        features = instances = label = None
        if plan.vector is not None:
            features = plan.vector.chip_features(region, c.min_polygon_overlap_ratio)
        if plan.instances is not None:
            instances = plan.instances.chip_features(region, c.min_polygon_overlap_ratio)
        if self.labels is not None:
            label = self.labels.read(frame)
            label[~inside] = 0
            cls_values, cls_counts = class_counts(label)

        kind = plan.label_kind
        if plan.fmt.feature_chips:
            if frame.feature not in features.ids:
                return  # the feature this chip is for is not on it (MIN_POLYGON_OVERLAP_RATIO, mask)
            has_labels = True
        elif label is not None:
            has_labels = len(cls_values) > 0
        elif kind is None:
            has_labels = True
        else:
            has_labels = len(features.values) > 0 or (instances is not None and len(instances.values) > 0)
        if not has_labels and not c.output_nofeature_tiles:
            return

        index = item.start + frame.site * len(plan.angles) + frame.turn
        out_t, crs = _georeferencing(frame, item.grid, c.reference_system)
        chip = Chip(plan.staging, ef.chip_stem(index), frame, out_t, crs, c.image_format, plan.info.count,
                    features, label, instances)
        if c.blacken_around_feature and plan.fmt.feature_chips:
            blacken_outside(data, chip)
        rel = image_rel(kind, chip, plan.label_ctx)
        self._write_image(rel, data, plan.info, chip)
        if totals.bands is None:
            totals.bands = BandStats.empty(plan.info.count)
        totals.bands.add_chip(data, None if valid.all() else valid)

        rel2 = None
        if self.reader2 is not None:
            data2, inside2 = read_frame(self.reader2, frame, Resampling.bilinear)
            rel2 = image_rel(kind, chip, plan.label_ctx, folder="images2")
            self._write_image(rel2, data2, plan.info2, chip)
            if totals.bands2 is None:
                totals.bands2 = BandStats.empty(plan.info2.count)
            totals.bands2.add_chip(data2, valid_mask(data2, inside2, plan.info2.nodata, plan.info2.alpha_band))

        label_rel = WRITERS[kind](chip, plan.label_ctx, inside) if kind else None
        if plan.fmt.feature_chips:
            own = features.subset(features.ids == frame.feature)
            totals.features.add_chip(own.values, own.areas)
        elif features is not None:
            totals.features.add_chip(features.values, features.areas)
        elif label is not None:
            totals.pixels.add_chip(cls_values, cls_counts)
        if instances is not None:
            totals.instances.add_chip(instances.values, instances.areas)
        totals.chips += 1
        totals.map_lines[index] = ef.map_line(rel, rel2, label_rel)

    def _write_image(self, rel: str, data: np.ndarray, info, chip: Chip) -> None:
        path = os.path.join(self.plan.staging, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = chip.frame
        write_chip(path, data, chip_profile(chip.image_format, info.dtype, info.count, f.width, f.height,
                                            chip.crs, chip.out_transform, info.nodata))


def _region_on_grid(frame: Frame, grid):
    """The part of the chip that lies on the grid (padding excluded), in map coordinates."""
    if frame.aligned:
        w_in = min(frame.width, grid.width - frame.grid_col)
        h_in = min(frame.height, grid.height - frame.grid_row)
        c0, r0 = max(0, -frame.grid_col), max(0, -frame.grid_row)
        if w_in <= c0 or h_in <= r0:
            return shapely.Polygon()
        x0, y0 = frame.transform * (c0, r0)
        x1, y1 = frame.transform * (w_in, h_in)
        return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    return frame.polygon().intersection(shapely.box(*grid.bounds))


def _georeferencing(frame: Frame, grid, reference_system: str):
    """(transform, crs) written into the chip files."""
    if reference_system != "PIXEL_SPACE":
        return frame.transform, grid.crs
    # Image space: x = column, y = -row of the source image, no CRS.
    to_source_pixels = Affine.translation(grid.source_col_off, grid.source_row_off) * ~grid.transform
    return Affine.scale(1, -1) * to_source_pixels * frame.transform, None
