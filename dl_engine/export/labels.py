"""Label data per chip: vector features found through a bucket index and clipped
to the chip, or a classified raster read onto the chip grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import rasterize

from ..errors import InputError
from .config import RasterLabels, VectorLabels
from .grid import Grid
from .raster_io import GridReader, read_frame


@dataclass
class ChipFeatures:
    """The label features of one chip, clipped to it."""

    geometries: np.ndarray  # shapely geometries (clipped), map coordinates
    values: np.ndarray  # int64 class values
    areas: np.ndarray  # area of the clipped part, square map units
    ids: np.ndarray  # index of each feature in the label index
    whole_areas: np.ndarray  # area of the whole feature: the same draw order in every chip

    def subset(self, keep) -> "ChipFeatures":
        return ChipFeatures(self.geometries[keep], self.values[keep], self.areas[keep], self.ids[keep],
                            self.whole_areas[keep])

    @classmethod
    def empty(cls) -> "ChipFeatures":
        return cls(np.empty(0, object), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64), np.empty(0))


class VectorLabelIndex:
    """Features kept as WKB with their bounds in a uniform bucket grid.

    Memory is the encoded size of the features plus ~50 bytes each; a chip decodes
    only the features whose bounds touch it.
    """

    def __init__(self, labels: VectorLabels, bucket_size: float):
        self.wkb = np.empty(len(labels.wkb), dtype=object)
        self.wkb[:] = labels.wkb
        self.values = np.asarray(labels.values, dtype=np.int64)
        if len(self.values) != len(self.wkb):
            raise InputError("IN_CLASS_DATA", "every feature needs one class value")
        if len(self.values) and (self.values.min() < 0):
            raise InputError("CLASS_VALUE_FIELD", "class values must be integers >= 0 (0 is background); "
                                                   f"found {int(self.values.min())}")
        self.bounds = np.empty((len(self.wkb), 4))
        for start in range(0, len(self.wkb), 20000):  # decode in batches: memory stays small
            geoms = shapely.from_wkb(self.wkb[start:start + 20000], on_invalid="ignore")
            self.bounds[start:start + len(geoms)] = shapely.bounds(geoms)
        keep = np.isfinite(self.bounds).all(axis=1)  # empty or undecodable geometries have NaN bounds
        self.wkb, self.values, self.bounds = self.wkb[keep], self.values[keep], self.bounds[keep]
        self.size = bucket_size
        self._build_buckets()

    def __len__(self) -> int:
        return len(self.values)

    def total_bounds(self) -> Optional[Tuple[float, float, float, float]]:
        if not len(self):
            return None
        return (self.bounds[:, 0].min(), self.bounds[:, 1].min(), self.bounds[:, 2].max(), self.bounds[:, 3].max())

    def _bucket_range(self, xmin, ymin, xmax, ymax):
        return (np.floor(xmin / self.size).astype(np.int64), np.floor(ymin / self.size).astype(np.int64),
                np.floor(xmax / self.size).astype(np.int64), np.floor(ymax / self.size).astype(np.int64))

    def _build_buckets(self) -> None:
        bx0, by0, bx1, by1 = self._bucket_range(*self.bounds.T)
        keys: List[np.ndarray] = []
        ids: List[np.ndarray] = []
        nx = bx1 - bx0 + 1
        ny = by1 - by0 + 1
        # Most features sit in one bucket; expand the few that span several.
        for dx in range(int(nx.max()) if len(nx) else 0):
            for dy in range(int(ny.max()) if len(ny) else 0):
                sel = np.nonzero((dx < nx) & (dy < ny))[0]
                keys.append(self._key(bx0[sel] + dx, by0[sel] + dy))
                ids.append(sel)
        if keys:
            k = np.concatenate(keys)
            i = np.concatenate(ids)
            order = np.argsort(k, kind="stable")
            self._keys, self._ids = k[order], i[order]
        else:
            self._keys, self._ids = np.empty(0, np.int64), np.empty(0, np.int64)

    @staticmethod
    def _key(bx, by):
        return (np.asarray(bx, np.int64) << 32) ^ (np.asarray(by, np.int64) & 0xFFFFFFFF)

    def query(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        """Indexes of features whose bounds intersect the box, in input order."""
        bx0, by0, bx1, by1 = (int(v) for v in self._bucket_range(np.array(xmin), np.array(ymin),
                                                                   np.array(xmax), np.array(ymax)))
        found = []
        for bx in range(bx0, bx1 + 1):
            for by in range(by0, by1 + 1):
                key = self._key(bx, by)
                lo = np.searchsorted(self._keys, key, "left")
                hi = np.searchsorted(self._keys, key, "right")
                if hi > lo:
                    found.append(self._ids[lo:hi])
        if not found:
            return np.empty(0, np.int64)
        cand = np.unique(np.concatenate(found))
        b = self.bounds[cand]
        hit = (b[:, 0] <= xmax) & (b[:, 2] >= xmin) & (b[:, 1] <= ymax) & (b[:, 3] >= ymin)
        return cand[hit]

    def chip_features(self, region, min_overlap: float) -> ChipFeatures:
        """Features clipped to ``region`` (a polygon in map coordinates); those with
        less than ``min_overlap`` of their area (length for lines) inside are dropped."""
        idx = self.query(*region.bounds)
        if not len(idx):
            return ChipFeatures.empty()
        geoms = shapely.from_wkb(self.wkb[idx])
        clipped = shapely.intersection(geoms, region)
        # A feature that only touches the chip's edge has no share inside it.
        share = _inside_share(geoms, clipped)
        keep = ~shapely.is_empty(clipped) & (share > 0) & (share >= min_overlap - 1e-12)
        clipped = clipped[keep]
        return ChipFeatures(clipped, self.values[idx][keep], shapely.area(clipped), idx[keep],
                            shapely.area(geoms[keep]))

    def feature_bounds(self, i: int) -> Tuple[float, float, float, float]:
        return tuple(self.bounds[i])

    def features_in(self, bounds: Tuple[float, float, float, float]) -> np.ndarray:
        """Indexes of features whose bounds intersect ``bounds`` (all of them, in order)."""
        b = self.bounds
        return np.nonzero((b[:, 0] <= bounds[2]) & (b[:, 2] >= bounds[0]) &
                          (b[:, 1] <= bounds[3]) & (b[:, 3] >= bounds[1]))[0]


def _inside_share(whole: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Share of each feature inside the chip: by area, by length for lines, 1 for points."""
    area = shapely.area(whole)
    length = shapely.length(whole)
    share = np.where(shapely.is_empty(part), 0.0, 1.0)
    has_area = area > 0
    share[has_area] = shapely.area(part[has_area]) / area[has_area]
    lines = ~has_area & (length > 0)
    share[lines] = shapely.length(part[lines]) / length[lines]
    return share


def _shape(geom):
    """GeoJSON-like mapping for rasterio: polygons built from coordinate arrays,
    about twice as fast as shapely's __geo_interface__ (rasterize's main cost)."""
    kind = geom.geom_type
    if kind == "Polygon":
        return {"type": "Polygon", "coordinates": [shapely.get_coordinates(geom.exterior).tolist()] +
                [shapely.get_coordinates(r).tolist() for r in geom.interiors]}
    if kind == "MultiPolygon":
        return {"type": "MultiPolygon", "coordinates": [_shape(p)["coordinates"] for p in geom.geoms]}
    return geom


def rasterize_chip(features: ChipFeatures, transform: Affine, width: int, height: int, dtype: str) -> np.ndarray:
    """Class-value raster of the chip; 0 = background. Larger features (by their
    whole area, so that every chip agrees) are drawn first so that small ones on
    top of them stay visible."""
    out = np.zeros((height, width), dtype=dtype)
    if len(features.values):
        order = np.argsort(-features.whole_areas, kind="stable")
        shapes = [(_shape(g), int(v)) for g, v in zip(features.geometries[order], features.values[order])]
        rasterize(shapes, out=out, transform=transform, all_touched=False)
    return out


def to_pixels(geometries: np.ndarray, transform: Affine) -> np.ndarray:
    """Geometries in chip pixel coordinates (x right, y down) of a possibly rotated chip."""
    inv = ~transform

    def apply(coords):
        x, y = coords[:, 0], coords[:, 1]
        return np.stack([inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f], axis=1)

    return shapely.transform(geometries, apply)


def pixel_boxes(features: ChipFeatures, transform: Affine, width: int, height: int) -> np.ndarray:
    """(n, 4) xmin, ymin, xmax, ymax of each clipped feature in chip pixels (y down)."""
    if not len(features.values):
        return np.empty((0, 4))
    boxes = shapely.bounds(to_pixels(features.geometries, transform))
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def instance_masks(geometries: np.ndarray, transform: Affine, width: int, height: int) -> np.ndarray:
    """(bands, h, w) instance ids 1..N, one per feature, 0 = background.

    Instances that overlap are kept apart by placing each one in the first band
    where it overlaps nothing already there (arcgis.learn reads every band).
    """
    bands: List[np.ndarray] = []
    next_id = 1
    for g in geometries:
        m = rasterize([(_shape(g), 1)], out_shape=(height, width), transform=transform, dtype="uint8").astype(bool)
        if not m.any() and g.area == 0:  # a line or point: keep the pixels it touches
            m = rasterize([(g, 1)], out_shape=(height, width), transform=transform, dtype="uint8",
                          all_touched=True).astype(bool)
        if not m.any():
            continue
        band = next((b for b in bands if not (b[m] > 0).any()), None)
        if band is None:
            band = np.zeros((height, width), dtype=np.int64)
            bands.append(band)
        band[m] = next_id
        next_id += 1
    if not bands:
        return np.zeros((1, height, width), dtype=np.uint8)
    return np.stack(bands).astype(label_dtype_for_values(next_id - 1))


def label_dtype_for_values(max_value: int) -> str:
    if max_value <= 255:
        return "uint8"
    if max_value <= 65535:
        return "uint16"
    return "uint32"


class RasterLabelReader:
    """A classified raster read onto the chip grid (nearest neighbour). Its NoData is 0."""

    def __init__(self, labels: RasterLabels, grid: Grid):
        self.reader = GridReader(labels.path, grid, Resampling.nearest, parameter="IN_CLASS_DATA")
        self.band = labels.band - 1
        if not 0 <= self.band < self.reader.count:
            raise InputError("IN_CLASS_DATA", f"the classified raster has no band {labels.band}")
        src_dtype = np.dtype(self.reader.dtype)
        self.dtype = src_dtype.name if src_dtype.kind == "u" else "uint16"

    def read(self, frame) -> np.ndarray:
        data, inside = read_frame(self.reader, frame, Resampling.nearest)
        band = data[self.band]
        bad = ~inside
        if self.reader.nodata is not None:
            bad |= np.isnan(band) if band.dtype.kind == "f" else band == self.reader.nodata
        elif band.dtype.kind == "f":
            bad |= np.isnan(band)
        band = np.where(bad, 0, band)
        if band.dtype.kind == "f" and not np.array_equal(band, np.round(band)):
            raise InputError("IN_CLASS_DATA", "the raster holds fractional values; a classified raster holds "
                                               "integer class values (0 = no class)")
        if band.dtype.kind in "if" and band.size and band.min() < 0:
            raise InputError("IN_CLASS_DATA", "the classified raster holds negative values; class values are "
                                               "integers >= 0 (0 = no class); set its NoData value if that is what they are")
        if band.size and band.max() > np.iinfo(self.dtype).max:
            raise InputError("IN_CLASS_DATA", f"class values above {np.iinfo(self.dtype).max} are not supported")
        return band.astype(self.dtype, copy=False)

    def close(self) -> None:
        self.reader.close()


def class_counts(label: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Classes (without 0) and their pixel counts in a label chip."""
    values, counts = np.unique(label, return_counts=True)
    nz = values != 0
    return values[nz].astype(np.int64), counts[nz].astype(np.int64)


def bucket_size_for(grid: Grid, tile_x: int, tile_y: int) -> float:
    rx, ry = grid.res
    return max(tile_x * rx, tile_y * ry, 1e-9) * 2


def mask_union(mask_wkb: Optional[List[bytes]]):
    """Prepared union of IN_MASK_POLYGONS, or None."""
    if not mask_wkb:
        return None
    geoms = shapely.from_wkb(np.array(mask_wkb, dtype=object), on_invalid="ignore")
    geoms = shapely.make_valid(geoms[~shapely.is_missing(geoms)])
    union = shapely.union_all(geoms)
    if union.is_empty or union.area == 0:
        raise InputError("IN_MASK_POLYGONS", "holds no polygon with an area; give polygons in which chips are to be cut")
    shapely.prepare(union)
    return union


def chip_inside_mask(mask, region) -> bool:
    return mask is None or mask.contains(region)
