"""Compute Accuracy For Pixel Classification: a confusion matrix of a classified raster against
ground truth, read in strips of rows so that memory stays flat on rasters of any size.

**Grid.** Everything is compared on IN_RASTER's pixel grid (band 1). A ground-truth raster is read
onto that grid by nearest neighbour (GDAL's warper, so any CRS works); ground-truth polygons (WKB in
IN_RASTER's CRS) are burnt into each strip, larger polygons first so that smaller ones stay visible,
and pixels outside every polygon are class 0 (background), as in the export's Classified_Tiles
labels. A pixel counts where IN_RASTER has data (its NoData, alpha or mask says so) and so does a
ground-truth raster.

**Sampling** (points are pixel centres, drawn without replacement from the counted pixels with
numpy's generator seeded by RANDOM_SEED, so the same inputs and seed give the same points):

- STRATIFIED_RANDOM: each class of IN_RASTER gets points in proportion to its area (largest
  remainders, NUM_RANDOM_POINTS in all);
- EQUALIZED_STRATIFIED_RANDOM: every class of IN_RASTER gets ceil(NUM_RANDOM_POINTS / classes);
- RANDOM: NUM_RANDOM_POINTS points anywhere;
- ALL_PIXELS: no points, every counted pixel enters the matrix.

A class with fewer pixels than its share gives all of them. **MIN_POINT_DISTANCE** (map units of
IN_RASTER's CRS): candidates are taken in random order and a point closer than this to one already
kept is dropped; more candidates are drawn until each class has its share or no candidate is left
(a warning then says how many fit).

**Table** (ArcGIS's Compute Confusion Matrix layout): rows are IN_RASTER's classes ``C_<value>``
(the classified data), columns the ground truth's classes, the classes being every value found on
either side; then the fields Total, U_Accuracy (user's accuracy: correct / row total) and Kappa, and
the rows Total, P_Accuracy (producer's accuracy: correct / column total; its U_Accuracy cell holds
the overall accuracy), Kappa (Cohen's kappa in the Kappa field) and IoU (each class's intersection
over union, correct / (row total + column total − correct); its U_Accuracy cell holds the mean IoU
over the classes). Ratios with a zero denominator are 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import Canceled, InputError
from ..events import Events
from .config import (CLASS_PREFIX, CLASS_VALUE_FIELD, IOU, KAPPA, P_ACCURACY, TOTAL, U_ACCURACY, PixelAccuracyConfig,
                     PolygonTruth)
from .tables import ratio, rounded, write_csv

CANCELED = "Compute Accuracy For Pixel Classification canceled: nothing was written"
MAX_CANDIDATE_FACTOR = 256  # MIN_POINT_DISTANCE: at most this many candidates per point asked for
MAX_CLASS_VALUES = 4096  # more distinct values than this is not a classified raster


# ---- the confusion matrix -----------------------------------------------------------------------

@dataclass
class ConfusionMatrix:
    classes: List[int]
    counts: np.ndarray  # counts[i, j]: classified classes[i], ground truth classes[j]

    @classmethod
    def from_pairs(cls, pairs: Dict[Tuple[int, int], int], classes: Optional[Sequence[int]] = None):
        values = sorted(set(classes or ()) | {c for c, _ in pairs} | {r for _, r in pairs})
        index = {v: i for i, v in enumerate(values)}
        counts = np.zeros((len(values), len(values)), dtype=np.int64)
        for (c, r), n in pairs.items():
            counts[index[c], index[r]] += n
        return cls(values, counts)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def correct(self) -> np.ndarray:
        return np.diag(self.counts)

    @property
    def row_totals(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    @property
    def column_totals(self) -> np.ndarray:
        return self.counts.sum(axis=0)

    @property
    def users_accuracy(self) -> List[float]:
        return [ratio(c, t) for c, t in zip(self.correct, self.row_totals)]

    @property
    def producers_accuracy(self) -> List[float]:
        return [ratio(c, t) for c, t in zip(self.correct, self.column_totals)]

    @property
    def overall_accuracy(self) -> float:
        return ratio(int(self.correct.sum()), self.total)

    @property
    def kappa(self) -> float:
        n = self.total
        if not n:
            return 0.0
        observed = self.correct.sum() / n
        expected = float((self.row_totals.astype(float) * self.column_totals.astype(float)).sum()) / (n * n)
        return ratio(observed - expected, 1.0 - expected)

    @property
    def iou(self) -> List[float]:
        return [ratio(c, r + t - c) for c, r, t in zip(self.correct, self.row_totals, self.column_totals)]

    @property
    def mean_iou(self) -> float:
        values = self.iou
        return float(np.mean(values)) if values else 0.0

    def fields(self) -> List[str]:
        return [CLASS_VALUE_FIELD] + [class_field(v) for v in self.classes] + [TOTAL, U_ACCURACY, KAPPA]

    def rows(self) -> List[Dict[str, object]]:
        """OUT_CONFUSION_MATRIX in ArcGIS's layout (module docstring)."""
        names = [class_field(v) for v in self.classes]
        rows = []
        users = self.users_accuracy
        for i, name in enumerate(names):
            row = {CLASS_VALUE_FIELD: name}
            row.update({n: int(self.counts[i, j]) for j, n in enumerate(names)})
            row.update({TOTAL: int(self.row_totals[i]), U_ACCURACY: rounded(users[i]), KAPPA: 0.0})
            rows.append(row)

        def summary(label, per_class, total=0, u_accuracy=0.0, kappa=0.0):
            row = {CLASS_VALUE_FIELD: label}
            row.update(dict(zip(names, per_class)))
            row.update({TOTAL: total, U_ACCURACY: u_accuracy, KAPPA: kappa})
            return row

        rows.append(summary(TOTAL, [int(v) for v in self.column_totals], self.total))
        rows.append(summary(P_ACCURACY, [rounded(v) for v in self.producers_accuracy], 0,
                            rounded(self.overall_accuracy)))
        rows.append(summary(KAPPA, [0.0] * len(names), 0, 0.0, rounded(self.kappa)))
        rows.append(summary(IOU, [rounded(v) for v in self.iou], 0, rounded(self.mean_iou)))
        return rows


def class_field(value: int) -> str:
    return f"{CLASS_PREFIX}{value}"


@dataclass
class SamplePoint:
    x: float  # pixel centre, IN_RASTER's CRS
    y: float
    row: int
    col: int
    classified: int
    reference: int


@dataclass
class PixelAccuracy:
    matrix: ConfusionMatrix
    points: List[SamplePoint]
    sampling: str
    pixels_counted: int  # pixels where both sides have data
    classified_pixels: Dict[int, int] = field(default_factory=dict)  # counted pixels per IN_RASTER class
    crs: str = ""

    def rows(self) -> List[Dict[str, object]]:
        return self.matrix.rows()

    def fields(self) -> List[str]:
        return self.matrix.fields()


# ---- reading ----------------------------------------------------------------------------------------

def strips(width: int, height: int, block_size: int) -> Iterator[Window]:
    """Full-width strips of about block_size² pixels, top to bottom: the pixels in raster order
    whatever the strip height, so the drawn points do not depend on it."""
    rows = max(1, (block_size * block_size) // max(1, width))
    for row_off in range(0, height, rows):
        yield Window(0, row_off, width, min(rows, height - row_off))


def as_classes(values: np.ndarray, valid: np.ndarray, parameter: str) -> np.ndarray:
    """Class values as int64; a float raster must hold whole numbers where it has data."""
    if np.issubdtype(values.dtype, np.floating):
        good = values[valid]
        bad = ~np.isfinite(good) | (good != np.round(good))
        if bad.any():
            raise InputError(parameter, f"holds the value {good[bad][0]!r}, not a class value; give a classified "
                                        f"raster (whole class values, NoData elsewhere)")
        values = np.where(valid, values, 0)
    return values.astype(np.int64, copy=False)


class ClassifiedRaster:
    def __init__(self, path: str, events: Events):
        try:
            self.ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise InputError("IN_RASTER", f"cannot open {path!r} as a raster ({error})") from None
        if self.ds.count > 1:
            events.warning(f"IN_RASTER has {self.ds.count} bands; band 1 holds the classes")

    def read(self, window: Window) -> Tuple[np.ndarray, np.ndarray]:
        valid = self.ds.read_masks(1, window=window) > 0
        values = self.ds.read(1, window=window)
        return as_classes(values, valid, "IN_RASTER"), valid

    def close(self):
        self.ds.close()


class RasterTruth:
    """A classified ground-truth raster read onto IN_RASTER's grid by nearest neighbour."""

    def __init__(self, path: str, band: int, grid, events: Events):
        from rasterio.vrt import WarpedVRT
        from rasterio.warp import transform_bounds

        try:
            self.src = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise InputError("IN_GROUND_TRUTH_DATA", f"cannot open {path!r} as a raster ({error})") from None
        if not 1 <= band <= self.src.count:
            raise InputError("IN_GROUND_TRUTH_DATA", f"has {self.src.count} band(s); band {band} does not exist")
        self.band = band
        src_crs = self.src.crs or grid.crs
        if self.src.crs is None and grid.crs is not None:
            events.warning("IN_GROUND_TRUTH_DATA has no CRS; taken to be IN_RASTER's")
        if grid.crs is not None and src_crs is not None:
            left, bottom, right, top = transform_bounds(src_crs, grid.crs, *self.src.bounds)
            g = grid.bounds
            if left >= g.right or right <= g.left or bottom >= g.top or top <= g.bottom:
                raise InputError("IN_GROUND_TRUTH_DATA", "does not overlap IN_RASTER (check both CRSs); give ground "
                                                         "truth over the classified area")
        same = (self.src.crs == grid.crs and self.src.transform.almost_equals(grid.transform)
                and self.src.shape == grid.shape)
        if same:
            self.reader, self.vrt = self.src, None
        else:
            options = dict(crs=grid.crs or src_crs, transform=grid.transform, width=grid.width, height=grid.height,
                           resampling=Resampling.nearest)
            if self.src.crs is None:
                options["src_crs"] = src_crs
            if self.src.nodata is None:
                options["add_alpha"] = True  # outside the ground truth: masked, not 0
            self.vrt = WarpedVRT(self.src, **options)
            self.reader = self.vrt

    def read(self, window: Window) -> Tuple[np.ndarray, np.ndarray]:
        valid = self.reader.read_masks(self.band, window=window) > 0
        values = self.reader.read(self.band, window=window)
        return as_classes(values, valid, "IN_GROUND_TRUTH_DATA"), valid

    def close(self):
        if self.vrt is not None:
            self.vrt.close()
        self.src.close()


class PolygonTruthReader:
    """Ground-truth polygons burnt into each strip; 0 outside every polygon."""

    def __init__(self, truth: PolygonTruth, grid):
        import shapely
        from shapely import wkb as shapely_wkb

        geometries, values = [], []
        for data, value in zip(truth.wkb, truth.values):
            try:
                geometry = shapely_wkb.loads(bytes(data))
            except Exception as error:
                raise InputError("IN_GROUND_TRUTH_DATA", f"a geometry cannot be read ({error})") from None
            if geometry.is_empty:
                continue
            if not geometry.is_valid:
                geometry = shapely.make_valid(geometry)
            value = int(value)
            if not 0 <= value < 2 ** 31:
                raise InputError("IN_GROUND_TRUTH_DATA", f"class value {value} is out of range; class values are "
                                                         f"whole numbers from 0")
            geometries.append(geometry)
            values.append(value)
        if not geometries:
            raise InputError("IN_GROUND_TRUTH_DATA", "no ground-truth polygon has a geometry")
        self.geometries = np.asarray(geometries, dtype=object)
        self.values = np.asarray(values, dtype=np.int64)
        self.areas = shapely.area(self.geometries)
        self.tree = shapely.STRtree(self.geometries)
        self.grid = grid
        b = grid.bounds
        if not len(self.tree.query(shapely.box(b.left, b.bottom, b.right, b.top))):
            raise InputError("IN_GROUND_TRUTH_DATA", "no ground-truth polygon overlaps IN_RASTER (check the layer's "
                                                     "CRS); give polygons over the classified area")

    def read(self, window: Window) -> Tuple[np.ndarray, np.ndarray]:
        import shapely
        from rasterio.features import rasterize
        from rasterio.windows import bounds as window_bounds
        from rasterio.windows import transform as window_transform

        shape = (int(window.height), int(window.width))
        left, bottom, right, top = window_bounds(window, self.grid.transform)
        found = self.tree.query(shapely.box(min(left, right), min(bottom, top), max(left, right), max(bottom, top)))
        values = np.zeros(shape, dtype=np.int64)
        if len(found):
            found = found[np.argsort(-self.areas[found], kind="stable")]  # larger first, smaller on top
            burnt = rasterize(((self.geometries[i], int(self.values[i])) for i in found), out_shape=shape,
                              transform=window_transform(window, self.grid.transform), fill=0, dtype="int32")
            values = burnt.astype(np.int64)
        return values, np.ones(shape, dtype=bool)

    def close(self):
        pass


# ---- counting ----------------------------------------------------------------------------------------

def count_values(values: np.ndarray) -> Dict[int, int]:
    if not values.size:
        return {}
    low, high = int(values.min()), int(values.max())
    if high - low < 1 << 20:
        counts = np.bincount(values - low)
        found = np.flatnonzero(counts)
        return {int(v + low): int(counts[v]) for v in found}
    unique, counts = np.unique(values, return_counts=True)
    return {int(v): int(n) for v, n in zip(unique, counts)}


def count_pairs(classified: np.ndarray, reference: np.ndarray) -> Dict[Tuple[int, int], int]:
    if not classified.size:
        return {}
    c_low, r_low = int(classified.min()), int(reference.min())
    c_span, r_span = int(classified.max()) - c_low + 1, int(reference.max()) - r_low + 1
    keys = (classified - c_low) * r_span + (reference - r_low)
    if c_span * r_span <= 1 << 22:
        counts = np.bincount(keys)
        found = np.flatnonzero(counts)
        unique, numbers = found, counts[found]
    else:
        unique, numbers = np.unique(keys, return_counts=True)
    return {(int(k // r_span + c_low), int(k % r_span + r_low)): int(n) for k, n in zip(unique, numbers)}


def add_counts(total: dict, more: dict) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + n


# ---- sampling ----------------------------------------------------------------------------------------

def allocate(sampling: str, counts: Dict[int, int], num_points: int) -> Dict[object, int]:
    """Points per stratum: {class: n} for the stratified samplings, {None: n} for RANDOM."""
    total = sum(counts.values())
    if sampling == "RANDOM":
        return {None: min(num_points, total)}
    classes = sorted(counts)
    if sampling == "EQUALIZED_STRATIFIED_RANDOM":
        share = math.ceil(num_points / len(classes))
        return {c: min(share, counts[c]) for c in classes}
    # STRATIFIED_RANDOM: proportional to the area, largest remainders (ties: the larger class, then the lower value)
    exact = {c: num_points * counts[c] / total for c in classes}
    quota = {c: min(int(math.floor(exact[c])), counts[c]) for c in classes}
    left = min(num_points, total) - sum(quota.values())
    for c in sorted(classes, key=lambda c: (-(exact[c] - math.floor(exact[c])), -counts[c], c)):
        if left <= 0:
            break
        if quota[c] < counts[c]:
            quota[c] += 1
            left -= 1
    while left > 0:  # classes full before their share: the rest to those with pixels left, larger first
        room = [c for c in sorted(classes, key=lambda c: (-counts[c], c)) if quota[c] < counts[c]]
        if not room:
            break
        for c in room:
            if left <= 0:
                break
            quota[c] += 1
            left -= 1
    return quota


def draw(rng: np.random.Generator, population: int, size: int) -> np.ndarray:
    """``size`` distinct integers of [0, population), in random order."""
    size = min(size, population)
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    if size * 4 >= population:
        return rng.permutation(population)[:size].astype(np.int64)
    chosen = np.zeros(0, dtype=np.int64)
    while len(chosen) < size:
        more = rng.integers(0, population, size=2 * (size - len(chosen)) + 16, dtype=np.int64)
        both = np.concatenate((chosen, more))
        _, first = np.unique(both, return_index=True)
        chosen = both[np.sort(first)]
    return chosen[:size]


def accept(candidates: List[Tuple[float, object, SamplePoint]], quota: Dict[object, int],
           min_distance: float) -> Tuple[List[SamplePoint], Dict[object, int]]:
    """Candidates in order of their key; a point is kept while its stratum has room and no kept
    point is closer than ``min_distance``."""
    kept: List[SamplePoint] = []
    taken = {s: 0 for s in quota}
    cells: Dict[Tuple[int, int], List[SamplePoint]] = {}
    for _, stratum, point in sorted(candidates, key=lambda c: c[0]):
        if taken[stratum] >= quota[stratum]:
            continue
        if min_distance > 0:
            cx, cy = int(math.floor(point.x / min_distance)), int(math.floor(point.y / min_distance))
            near = (p for dx in (-1, 0, 1) for dy in (-1, 0, 1) for p in cells.get((cx + dx, cy + dy), ()))
            if any(math.hypot(p.x - point.x, p.y - point.y) < min_distance for p in near):
                continue
            cells.setdefault((cx, cy), []).append(point)
        kept.append(point)
        taken[stratum] += 1
    return kept, taken


# ---- a run ------------------------------------------------------------------------------------------

def compute_pixel_accuracy(config: PixelAccuracyConfig, events: Optional[Events] = None,
                           cancel: Optional[Callable[[], bool]] = None) -> PixelAccuracy:
    """The confusion matrix (and the sample points) that ``config`` asks for; OUT_CONFUSION_MATRIX
    is written as CSV when ``out_confusion_matrix`` is set."""
    config.check()
    events = events or Events(enabled=False)

    def check_cancel():
        if cancel is not None and cancel():
            raise Canceled(CANCELED)

    classified = ClassifiedRaster(config.in_raster, events)
    grid = classified.ds
    truth = None
    try:
        if isinstance(config.ground_truth, PolygonTruth):
            truth = PolygonTruthReader(config.ground_truth, grid)
        else:
            truth = RasterTruth(str(config.ground_truth), config.ground_truth_band, grid, events)
        windows = list(strips(grid.width, grid.height, config.block_size))
        all_pixels = config.sampling == "ALL_PIXELS"

        def read(window):
            c, c_valid = classified.read(window)
            r, r_valid = truth.read(window)
            return c, r, c_valid & r_valid

        # Pass 1: pixels per class on each side (and, for ALL_PIXELS, the matrix itself).
        class_counts: Dict[int, int] = {}
        reference_counts: Dict[int, int] = {}
        pairs: Dict[Tuple[int, int], int] = {}
        share = 100.0 if all_pixels else 45.0
        for number, window in enumerate(windows):
            check_cancel()
            c, r, valid = read(window)
            c, r = c[valid], r[valid]
            add_counts(class_counts, count_values(c))
            add_counts(reference_counts, count_values(r))
            if all_pixels:
                add_counts(pairs, count_pairs(c, r))
            if len(class_counts) > MAX_CLASS_VALUES:
                raise InputError("IN_RASTER", f"holds more than {MAX_CLASS_VALUES} distinct values; give a "
                                              f"classified raster (class values), not an image")
            events.progress(share * (number + 1) / len(windows), "counting pixels")
        counted = sum(class_counts.values())
        if not counted:
            raise InputError("IN_GROUND_TRUTH_DATA", "IN_RASTER and the ground truth have no pixel with data in "
                                                     "common (do they overlap? check their CRS and NoData)")
        classes = sorted(set(class_counts) | set(reference_counts))
        events.log(f"{counted} pixels where both have data; classes of IN_RASTER: "
                   + ", ".join(f"{v} ({class_counts[v]} px)" for v in sorted(class_counts)))

        points: List[SamplePoint] = []
        if not all_pixels:
            points = sample_points(config, windows, read, class_counts, grid, events, check_cancel)
            for p in points:
                key = (p.classified, p.reference)
                pairs[key] = pairs.get(key, 0) + 1
        matrix = ConfusionMatrix.from_pairs(pairs, classes)
    finally:
        if truth is not None:
            truth.close()
        classified.close()

    result = PixelAccuracy(matrix=matrix, points=points, sampling=config.sampling, pixels_counted=counted,
                           classified_pixels=class_counts, crs=grid.crs.to_string() if grid.crs else "")
    if config.out_confusion_matrix:
        write_csv(config.out_confusion_matrix, matrix.fields(), matrix.rows())
    events.progress(100.0)
    return result


def sample_points(config: PixelAccuracyConfig, windows: Sequence[Window], read, class_counts: Dict[int, int], grid,
                  events: Events, check_cancel) -> List[SamplePoint]:
    stratified = config.sampling != "RANDOM"
    strata_counts = dict(class_counts) if stratified else {None: sum(class_counts.values())}
    quota = allocate(config.sampling, class_counts, config.num_random_points)
    asked = sum(quota.values())
    if asked < config.num_random_points and config.sampling != "EQUALIZED_STRATIFIED_RANDOM":
        events.warning(f"NUM_RANDOM_POINTS: only {asked} pixels can be sampled; every one of them is used")
    if config.sampling == "EQUALIZED_STRATIFIED_RANDOM":
        short = [f"{c} ({class_counts[c]} px)" for c, n in quota.items() if n < math.ceil(
            config.num_random_points / len(class_counts))]
        if short:
            events.warning("classes with fewer pixels than their share give all of them: " + ", ".join(short))
    distance = float(config.min_point_distance)
    factor = 1 if distance <= 0 else 4
    rng = np.random.default_rng(config.random_seed)
    while True:
        check_cancel()
        # The candidates of each stratum: distinct ordinals among its pixels in raster order, in random order.
        wanted = {s: draw(rng, strata_counts[s], quota[s] * factor) for s in quota}
        keys = {s: rng.random(len(w)) for s, w in wanted.items()}
        candidates = locate(windows, read, wanted, keys, stratified, grid, check_cancel, events)
        kept, taken = accept(candidates, quota, distance)
        short = {s: n for s, n in taken.items() if n < quota[s]}
        exhausted = all(len(wanted[s]) >= strata_counts[s] for s in short)
        if not short or exhausted or factor >= MAX_CANDIDATE_FACTOR:
            break
        factor *= 4
    if short:
        events.warning("MIN_POINT_DISTANCE: fewer points fit at least %g apart than asked: %s" % (
            distance, ", ".join(f"{'class ' + str(s) if s is not None else 'all'} {n} of {quota[s]}"
                                for s, n in short.items())))
    kept.sort(key=lambda p: (p.row, p.col))
    events.log(f"{len(kept)} points ({config.sampling}, seed {config.random_seed})")
    return kept


def locate(windows, read, wanted: Dict[object, np.ndarray], keys: Dict[object, np.ndarray], stratified: bool, grid,
           check_cancel, events: Events) -> List[Tuple[float, object, SamplePoint]]:
    """The pixels at the drawn ordinals: (random key, stratum, point) for each."""
    order = {s: np.argsort(w, kind="stable") for s, w in wanted.items()}
    sorted_ordinals = {s: wanted[s][order[s]] for s in wanted}
    sorted_keys = {s: keys[s][order[s]] for s in wanted}
    offsets = {s: 0 for s in wanted}
    found: List[Tuple[float, object, SamplePoint]] = []
    transform = grid.transform
    for number, window in enumerate(windows):
        check_cancel()
        c, r, valid = read(window)
        flat = np.flatnonzero(valid.ravel())
        c_valid = c.ravel()[flat]
        for s, ordinals in sorted_ordinals.items():
            if not len(ordinals):
                continue
            positions = flat[c_valid == s] if stratified else flat
            start = offsets[s]
            lo, hi = np.searchsorted(ordinals, [start, start + len(positions)])
            for k in range(lo, hi):
                local = int(positions[ordinals[k] - start])
                row, col = divmod(local, int(window.width))
                row += int(window.row_off)
                col += int(window.col_off)
                x, y = transform * (col + 0.5, row + 0.5)
                point = SamplePoint(x=float(x), y=float(y), row=row, col=col, classified=int(c.ravel()[local]),
                                    reference=int(r.ravel()[local]))
                found.append((float(sorted_keys[s][k]), s, point))
            offsets[s] = start + len(positions)
        events.progress(45.0 + 50.0 * (number + 1) / len(windows), "locating the points")
    return found
