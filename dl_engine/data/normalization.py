"""Input normalisation as arcgis.learn chooses and computes it
(shared/reference/esri-formats.md §2.3, §2.4, §5.5).

- 8-bit RGB (3 bands — or 4 with the 4th named "alpha" —, Byte chips, statistics within
  0..255, no well-known non-RGB band name): pixels / 255, then ImageNet mean/std.
  ExtractBands [0, 1, 2]; the trained emd has no NormalizationStats.
- Anything else ("multispectral"): per-band min/max/mean/std from the exports' merged
  statistics (computed from the chips when an export has none, as arcgis.learn does),
  ``x' = (x - min) / (max - min)`` then ``(x' - scaled_mean) / scaled_std`` with
  ``scaled_mean = (mean - min) / (max - min + 1e-5)`` and ``scaled_std = std * scaled_mean / mean``.
  Bands with Max <= Min carry no information and are left out of ExtractBands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .band_stats import BandStats
from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EPS = 1e-5  # arcgis.learn's guard in (max - min + 1e-5)

# Well-known Esri band names (the export emd's list) that are not red, green or blue.
NON_RGB_BAND_NAMES = frozenset(n.lower() for n in (
    "Infrared", "CoastalBlue", "Yellow", "RedEdge", "ShortWaveInfrared", "NearInfrared", "NearInfrared_1",
    "NearInfrared_2", "MidInfrared", "MidInfrared_1", "MidInfrared_2", "Thermal", "Thermal_1", "Thermal_2",
    "Panchromatic", "QA"))

MAX_STATS_CHIPS = 300  # chips read to compute statistics when an export has none


@dataclass
class Normalization:
    """How chips are normalised for the model, and what the trained emd says about it."""

    mode: str  # "imagenet" or "band_stats"
    extract_bands: List[int]
    band_min: np.ndarray  # every band of the chips, float64
    band_max: np.ndarray
    band_mean: np.ndarray
    band_std: np.ndarray
    scaled_mean: np.ndarray
    scaled_std: np.ndarray

    @property
    def is_multispectral(self) -> bool:
        return self.mode == "band_stats"

    @property
    def bands_in(self) -> int:
        """Bands the model sees."""
        return len(self.extract_bands)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """(bands, h, w) raw chip → (len(extract_bands), h, w) float32 model input; NaN (NoData)
        becomes 0, the band mean."""
        x = self._normalize(image)
        return np.where(np.isfinite(x), x, np.float32(0.0)).astype(np.float32, copy=False)

    def _normalize(self, image: np.ndarray) -> np.ndarray:
        x = np.asarray(image, dtype=np.float32)[self.extract_bands]
        b = np.asarray(self.extract_bands)
        if self.mode == "imagenet":
            mean = (np.asarray(IMAGENET_MEAN, np.float32) * 255.0)[:, None, None]
            std = (np.asarray(IMAGENET_STD, np.float32) * 255.0)[:, None, None]
            return (x - mean) / std
        lo = self.band_min[b].astype(np.float32)[:, None, None]
        span = (self.band_max[b] - self.band_min[b]).astype(np.float32)[:, None, None]
        sm = self.scaled_mean[b].astype(np.float32)[:, None, None]
        ss = self.scaled_std[b].astype(np.float32)[:, None, None]
        return ((x - lo) / span - sm) / ss

    def nodata_fill(self) -> np.ndarray:
        """Raw value per band of the raster that normalises to 0 (the band mean): what NoData
        pixels become, in training (``normalize`` of NaN) and at inference alike."""
        if self.mode == "imagenet":
            fill = np.zeros(max(max(self.extract_bands) + 1, 3), np.float64)
            fill[np.asarray(self.extract_bands)] = np.asarray(IMAGENET_MEAN) * 255.0
            return fill
        return np.asarray(self.band_mean, np.float64)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Model input back to about 0..1 per band (for pictures of samples/results)."""
        x = np.asarray(x, np.float32)
        b = np.asarray(self.extract_bands)
        if self.mode == "imagenet":
            return x * np.asarray(IMAGENET_STD, np.float32)[:, None, None] + \
                np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
        return x * self.scaled_std[b].astype(np.float32)[:, None, None] + \
            self.scaled_mean[b].astype(np.float32)[:, None, None]

    def normalization_stats(self) -> Optional[Dict[str, List[float]]]:
        """The trained emd's ``NormalizationStats`` (every band; None for 8-bit RGB)."""
        if not self.is_multispectral:
            return None
        n = len(self.band_min)
        return {
            "band_min_values": _floats(self.band_min),
            "band_max_values": _floats(self.band_max),
            "band_mean_values": _floats(self.band_mean),
            "band_std_values": _floats(self.band_std),
            "scaled_min_values": [0.0] * n,
            "scaled_max_values": [1.0] * n,
            "scaled_mean_values": _floats(self.scaled_mean),
            "scaled_std_values": _floats(self.scaled_std),
        }

    def emd_keys(self) -> dict:
        """``IsMultispectral``, ``ExtractBands`` and, for multispectral input,
        ``NormalizationStats`` and ``DoNormalize``, as arcgis.learn writes them."""
        keys = {"IsMultispectral": self.is_multispectral, "ExtractBands": list(self.extract_bands)}
        if self.is_multispectral:
            keys["NormalizationStats"] = self.normalization_stats()
            keys["DoNormalize"] = True
        return keys


def _floats(a) -> List[float]:
    return [float(v) for v in a]


def is_rgb8(num_bands: int, dtype: str, band_stats: Optional[BandStats], band_names: Sequence[str] = ()) -> bool:
    """arcgis.learn's test for 8-bit RGB imagery (anything else is "multispectral")."""
    names = [str(n).strip().lower() for n in band_names]
    if num_bands == 4 and len(names) == 4 and names[3] == "alpha":
        num_bands = 3
    if num_bands != 3 or np.dtype(dtype) != np.uint8:
        return False
    if any(n in NON_RGB_BAND_NAMES for n in names):
        return False
    if band_stats is not None and band_stats.bands:
        counted = band_stats.num > 0
        if (band_stats.min[counted] < 0).any() or (band_stats.max[counted] > 255).any():
            return False
    return True


def imagenet() -> Normalization:
    mean = np.asarray(IMAGENET_MEAN) * 255.0
    std = np.asarray(IMAGENET_STD) * 255.0
    return Normalization("imagenet", [0, 1, 2], np.zeros(3), np.full(3, 255.0), mean, std,
                         np.asarray(IMAGENET_MEAN, float), np.asarray(IMAGENET_STD, float))


def from_band_stats(stats: BandStats) -> Normalization:
    """Per-band normalisation exactly as arcgis.learn's NormalizationStats."""
    lo = np.where(np.isfinite(stats.min), stats.min, 0.0).astype(np.float64)
    hi = np.where(np.isfinite(stats.max), stats.max, 0.0).astype(np.float64)
    mean = stats.mean.astype(np.float64)
    std = stats.std.astype(np.float64)
    scaled_mean = (mean - lo) / (hi - lo + EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled_std = std * scaled_mean / mean
    # A band whose mean is 0 has no arcgis.learn value (0/0): its plain scaled std is used instead.
    scaled_std = np.where(mean != 0, scaled_std, std / (hi - lo + EPS))
    extract = [b for b in range(stats.bands) if stats.num[b] > 0 and hi[b] > lo[b] and scaled_std[b] != 0
               and np.isfinite(scaled_std[b])]
    if not extract:
        raise InputError("IN_FOLDER", "every band of the chips holds a single value (Max <= Min in the export's "
                                     "band statistics); there is nothing to learn from")
    return Normalization("band_stats", extract, lo, hi, mean, std, scaled_mean, scaled_std)


def band_stats_from_chips(paths: Sequence[str], max_chips: int = MAX_STATS_CHIPS) -> BandStats:
    """Statistics of the chips themselves (NoData left out), from at most ``max_chips``
    evenly spread chips — for exports without BandStatsState (ArcGIS Pro 2.x)."""
    import rasterio

    paths = list(paths)
    if len(paths) > max_chips:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, max_chips)]
    stats = None
    for p in paths:
        with rasterio.open(p) as src:
            data = src.read(masked=True)
        chip = BandStats.from_arrays([np.ma.getdata(data)], [~np.ma.getmaskarray(data)])
        stats = chip if stats is None else stats.merged(chip)
    if stats is None:
        raise InputError("IN_FOLDER", "no chips to compute band statistics from")
    return stats


def normalization_for(data) -> Normalization:
    """The normalisation of an ``ExportData`` (folders.open_folders)."""
    stats = data.band_stats
    if is_rgb8(data.num_bands, data.dtype, stats, data.band_names):
        return imagenet()
    if stats is None:
        stats = band_stats_from_chips([s.image for s in data.samples])
    return from_band_stats(stats)
