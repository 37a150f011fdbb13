"""Statistics an export accumulates, in the shapes of esri_accumulated_stats.json.

Every accumulator can be merged with another one (parallel workers, and appending
to an earlier export with START_INDEX), and read back from the JSON it writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


@dataclass
class Summary:
    """Min/Max/Mean/Sum/Count of a series, as Esri writes it."""

    min: float = math.inf
    max: float = -math.inf
    sum: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.sum += value
        self.count += 1

    def merge(self, other: "Summary") -> None:
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sum += other.sum
        self.count += other.count

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def to_json(self, integer: bool = False) -> dict:
        cast = int if integer else float
        if not self.count:
            return {"Min": 0, "Max": 0, "Mean": 0, "Sum": 0, "Count": 0}
        return {"Min": cast(self.min), "Max": cast(self.max), "Mean": self.mean, "Sum": cast(self.sum), "Count": self.count}

    @classmethod
    def from_json(cls, d: dict) -> "Summary":
        if not d or not d.get("Count"):
            return cls()
        return cls(min=d["Min"], max=d["Max"], sum=d["Sum"], count=d["Count"])


def _histogram_moments(values: np.ndarray):
    """(count, mean, M2, min, max) of 8/16-bit data from its histogram: exact, and
    several times faster than float64 arithmetic over every pixel."""
    hist = np.bincount(values.ravel())
    levels = np.nonzero(hist)[0]
    counts = hist[levels].astype(np.float64)
    n = counts.sum()
    mean = float((levels * counts).sum() / n)
    m2 = float((counts * np.square(levels - mean)).sum())
    return int(n), mean, m2, float(levels[0]), float(levels[-1])


@dataclass
class BandStats:
    """Per-band count, mean and sum of squared deviations (Chan et al. merge).

    Written as BandStatsState (M1 = mean, M2 = sum of squared deviations, Num) and
    AllTilesStats (Mean, StdDev = sqrt(M2 / Num)).
    """

    num: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, bands: int) -> "BandStats":
        return cls(np.zeros(bands, np.int64), np.zeros(bands), np.zeros(bands),
                   np.full(bands, np.inf), np.full(bands, -np.inf))

    @property
    def bands(self) -> int:
        return len(self.num)

    def add_chip(self, data: np.ndarray, valid: Optional[np.ndarray]) -> None:
        """data: (bands, h, w); valid: (bands, h, w) bool or None when every pixel counts."""
        for b in range(data.shape[0]):
            values = data[b] if valid is None else data[b][valid[b]]
            if values.size == 0:
                continue
            if values.dtype.kind == "u" and values.dtype.itemsize <= 2:
                self.add(b, *_histogram_moments(values))
                continue
            values = values.astype(np.float64, copy=False)
            mean = float(values.mean())
            m2 = float(np.square(values - mean).sum())
            self.add(b, values.size, mean, m2, float(values.min()), float(values.max()))

    def add(self, b: int, n: int, mean: float, m2: float, vmin: float, vmax: float) -> None:
        """Merge n values of band b with their mean and M2 (parallel formula of Chan et al.)."""
        if n <= 0:
            return
        total = self.num[b] + n
        delta = mean - self.m1[b]
        self.m2[b] += m2 + delta * delta * self.num[b] * n / total
        self.m1[b] += delta * n / total
        self.num[b] = total
        self.min[b] = min(self.min[b], vmin)
        self.max[b] = max(self.max[b], vmax)

    def merge(self, other: "BandStats") -> None:
        for b in range(min(self.bands, other.bands)):
            if other.num[b]:
                self.add(b, int(other.num[b]), float(other.m1[b]), float(other.m2[b]), float(other.min[b]),
                         float(other.max[b]))

    def merged(self, other: "BandStats") -> "BandStats":
        """A new BandStats over both (M2 by the parallel formula, not summed as arcgis.learn
        does, which leaves out the spread between the folders' means)."""
        out = BandStats(self.num.copy(), self.m1.copy(), self.m2.copy(), self.min.copy(), self.max.copy())
        out.merge(other)
        return out

    @classmethod
    def merge_all(cls, items: List["BandStats"]) -> "BandStats":
        out = items[0]
        for s in items[1:]:
            out = out.merged(s)
        return out

    @property
    def mean(self) -> np.ndarray:
        return self.m1

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation sqrt(M2 / Num), as Pro's AllTilesStats.StdDev."""
        return np.sqrt(np.divide(self.m2, self.num, out=np.zeros_like(self.m2), where=self.num > 0))

    @staticmethod
    def _number(v: float):
        # Integral values (8/16-bit imagery) are written as integers, as Pro does.
        if not math.isfinite(v):
            return 0
        return int(v) if float(v).is_integer() else float(v)

    def state_json(self) -> List[dict]:
        return [{"Min": self._number(self.min[b]), "Max": self._number(self.max[b]), "Mean": 0, "StdDev": 0,
                 "M1": float(self.m1[b]), "M2": float(self.m2[b]), "Num": int(self.num[b])}
                for b in range(self.bands)]

    def all_tiles_json(self, band_names: List[str]) -> List[dict]:
        std = self.std
        return [{"BandName": band_names[b] if b < len(band_names) else "",
                 "Min": self._number(self.min[b]), "Max": self._number(self.max[b]),
                 "Mean": float(self.m1[b]), "StdDev": float(std[b])}
                for b in range(self.bands)]

    @classmethod
    def from_state_json(cls, items: List[dict]) -> "BandStats":
        """From ``BandStatsState`` (esri_accumulated_stats.json)."""
        s = cls.empty(len(items))
        for b, d in enumerate(items):
            if d.get("Num"):
                s.num[b], s.m1[b], s.m2[b] = int(d["Num"]), float(d["M1"]), float(d["M2"])
                s.min[b], s.max[b] = float(d["Min"]), float(d["Max"])
        return s

    @classmethod
    def from_all_tiles_json(cls, items: List[dict], num: int) -> "BandStats":
        """From the emd's ``AllTilesStats`` (Mean, StdDev, no count): ``num`` pixels assumed."""
        s = cls.empty(len(items))
        for b, d in enumerate(items):
            s.num[b] = num
            s.m1[b] = float(d["Mean"])
            s.m2[b] = float(d["StdDev"]) ** 2 * num
            s.min[b], s.max[b] = float(d["Min"]), float(d["Max"])
        return s

    @classmethod
    def from_arrays(cls, chips, valid=None, bands: Optional[int] = None) -> "BandStats":
        """From pixel arrays (bands, h, w); ``valid`` masks (bands, h, w) or (h, w) leave NoData out."""
        s = None if bands is None else cls.empty(bands)
        valid = iter(valid) if valid is not None else None
        for data in chips:
            mask = next(valid) if valid is not None else None
            if s is None:
                s = cls.empty(data.shape[0])
            if mask is not None and mask.ndim == 2:
                mask = np.broadcast_to(mask, data.shape)
            s.add_chip(data, mask)
        return s if s is not None else cls.empty(0)


@dataclass
class FeatureStats:
    """Label statistics for vector input (Esri "FeatureStats")."""

    images_total: int = 0
    features_per_image: Summary = field(default_factory=Summary)
    images_per_class: Dict[int, int] = field(default_factory=dict)
    features_per_class: Dict[int, int] = field(default_factory=dict)
    area_per_class: Dict[int, Summary] = field(default_factory=dict)

    def add_chip(self, values: np.ndarray, areas: np.ndarray) -> None:
        self.images_total += 1
        self.features_per_image.add(len(values))
        for v in np.unique(values):
            v = int(v)
            self.images_per_class[v] = self.images_per_class.get(v, 0) + 1
        for v, a in zip(values.tolist(), areas.tolist()):
            self.features_per_class[v] = self.features_per_class.get(v, 0) + 1
            self.area_per_class.setdefault(v, Summary()).add(a)

    def merge(self, other: "FeatureStats") -> None:
        self.images_total += other.images_total
        self.features_per_image.merge(other.features_per_image)
        for v, n in other.images_per_class.items():
            self.images_per_class[v] = self.images_per_class.get(v, 0) + n
        for v, n in other.features_per_class.items():
            self.features_per_class[v] = self.features_per_class.get(v, 0) + n
        for v, s in other.area_per_class.items():
            self.area_per_class.setdefault(v, Summary()).merge(s)

    def class_values(self) -> List[int]:
        return sorted(self.features_per_class)

    def to_json(self, class_values: List[int]) -> dict:
        return {
            "NumClasses": len(class_values),
            "NumImagesTotal": self.images_total,
            "NumFeaturesTotal": int(sum(self.features_per_class.values())),
            "NumImagesPerClass": [self.images_per_class.get(v, 0) for v in class_values],
            "NumFeaturesPerClass": [self.features_per_class.get(v, 0) for v in class_values],
            "NumFeaturesPerImage": self.features_per_image.to_json(integer=True),
            "FeatureAreaPerClass": [self.area_per_class.get(v, Summary()).to_json() for v in class_values],
        }

    @classmethod
    def from_json(cls, d: dict, class_values: List[int]) -> "FeatureStats":
        s = cls(images_total=d.get("NumImagesTotal", 0),
                features_per_image=Summary.from_json(d.get("NumFeaturesPerImage", {})))
        for i, v in enumerate(class_values):
            if i < len(d.get("NumFeaturesPerClass", [])):
                s.images_per_class[v] = d["NumImagesPerClass"][i]
                s.features_per_class[v] = d["NumFeaturesPerClass"][i]
                s.area_per_class[v] = Summary.from_json(d["FeatureAreaPerClass"][i])
        return s


@dataclass
class ClassPixelStats:
    """Label statistics for raster input (Esri "ClassPixelStats"); 0 (NoData) is not a class."""

    images_total: int = 0
    classes_per_image: Summary = field(default_factory=Summary)
    images_per_class: Dict[int, int] = field(default_factory=dict)
    pixels_per_class: Dict[int, int] = field(default_factory=dict)
    max_pixels: Dict[int, int] = field(default_factory=dict)
    min_pixels_present: Dict[int, int] = field(default_factory=dict)

    def add_chip(self, values: np.ndarray, counts: np.ndarray) -> None:
        """values/counts: np.unique of the label chip without 0."""
        self.images_total += 1
        self.classes_per_image.add(len(values))
        for v, n in zip(values.tolist(), counts.tolist()):
            self.images_per_class[v] = self.images_per_class.get(v, 0) + 1
            self.pixels_per_class[v] = self.pixels_per_class.get(v, 0) + n
            self.max_pixels[v] = max(self.max_pixels.get(v, 0), n)
            self.min_pixels_present[v] = min(self.min_pixels_present.get(v, n), n)

    def merge(self, other: "ClassPixelStats") -> None:
        self.images_total += other.images_total
        self.classes_per_image.merge(other.classes_per_image)
        for v in other.images_per_class:
            self.images_per_class[v] = self.images_per_class.get(v, 0) + other.images_per_class[v]
            self.pixels_per_class[v] = self.pixels_per_class.get(v, 0) + other.pixels_per_class[v]
            self.max_pixels[v] = max(self.max_pixels.get(v, 0), other.max_pixels[v])
            self.min_pixels_present[v] = min(self.min_pixels_present.get(v, other.min_pixels_present[v]),
                                             other.min_pixels_present[v])

    def class_values(self) -> List[int]:
        return sorted(self.pixels_per_class)

    def _per_class(self, v: int) -> dict:
        # Esri's per-class series runs over every image, those without the class count 0.
        present = self.images_per_class.get(v, 0)
        total = self.pixels_per_class.get(v, 0)
        count = self.images_total
        vmin = self.min_pixels_present.get(v, 0) if present == count else 0
        return {"Min": vmin, "Max": self.max_pixels.get(v, 0), "Mean": total / count if count else 0,
                "Sum": total, "Count": count}

    def to_json(self, class_values: List[int]) -> dict:
        return {
            "NumClasses": len(class_values),
            "NumImagesTotal": self.images_total,
            "NumImagesPerClass": [self.images_per_class.get(v, 0) for v in class_values],
            "NumPixelsPerClass": [self.pixels_per_class.get(v, 0) for v in class_values],
            "NumClassesPerImage": self.classes_per_image.to_json(integer=True),
            "PixelsPerClass": [self._per_class(v) for v in class_values],
        }

    @classmethod
    def from_json(cls, d: dict, class_values: List[int]) -> "ClassPixelStats":
        s = cls(images_total=d.get("NumImagesTotal", 0),
                classes_per_image=Summary.from_json(d.get("NumClassesPerImage", {})))
        for i, v in enumerate(class_values):
            if i < len(d.get("NumPixelsPerClass", [])):
                s.images_per_class[v] = d["NumImagesPerClass"][i]
                s.pixels_per_class[v] = d["NumPixelsPerClass"][i]
                per = d["PixelsPerClass"][i]
                s.max_pixels[v] = per["Max"]
                # Min is only exact when the class was in every image; otherwise keep the max as a bound.
                s.min_pixels_present[v] = per["Min"] if per["Min"] else per["Max"]
        return s


@dataclass
class ExportTotals:
    """What an export accumulates: chips, band and label statistics, map.txt lines.

    Workers fill one each; they are merged in the main thread (and with an
    earlier export when appending)."""

    chips: int = 0
    bands: Optional[BandStats] = None
    bands2: Optional[BandStats] = None
    features: FeatureStats = field(default_factory=FeatureStats)
    pixels: ClassPixelStats = field(default_factory=ClassPixelStats)
    instances: FeatureStats = field(default_factory=FeatureStats)  # Panoptic IN_INSTANCE_DATA
    map_lines: Dict[int, str] = field(default_factory=dict)

    def merge(self, other: "ExportTotals") -> None:
        self.chips += other.chips
        for name in ("bands", "bands2"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                if mine is None:
                    setattr(self, name, theirs)
                else:
                    mine.merge(theirs)
        self.features.merge(other.features)
        self.pixels.merge(other.pixels)
        self.instances.merge(other.instances)
        self.map_lines.update(other.map_lines)
