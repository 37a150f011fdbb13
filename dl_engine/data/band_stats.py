"""Per-band statistics of an export: read from BandStatsState / AllTilesStats, merged
over several exports, or computed from the chips when an export has none (Pro 2.x)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import numpy as np


@dataclass
class BandStats:
    """Count, mean, sum of squared deviations (M2), min and max of every band.

    ``BandStatsState`` holds exactly these (M1 = mean, M2, Num); StdDev = sqrt(M2 / Num).
    """

    num: np.ndarray  # int64
    mean: np.ndarray
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

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation, sqrt(M2 / Num), as Pro's AllTilesStats.StdDev."""
        return np.sqrt(np.divide(self.m2, self.num, out=np.zeros_like(self.m2), where=self.num > 0))

    # ---- reading ----------------------------------------------------------------------------

    @classmethod
    def from_state_json(cls, items: Sequence[dict]) -> "BandStats":
        """From ``BandStatsState`` (esri_accumulated_stats.json)."""
        s = cls.empty(len(items))
        for b, d in enumerate(items):
            n = int(d.get("Num") or 0)
            if n:
                s.num[b], s.mean[b], s.m2[b] = n, float(d["M1"]), float(d["M2"])
                s.min[b], s.max[b] = float(d["Min"]), float(d["Max"])
        return s

    @classmethod
    def from_all_tiles_json(cls, items: Sequence[dict], num: int) -> "BandStats":
        """From the emd's ``AllTilesStats`` (Mean, StdDev, no count): ``num`` pixels assumed."""
        s = cls.empty(len(items))
        for b, d in enumerate(items):
            s.num[b] = num
            s.mean[b] = float(d["Mean"])
            s.m2[b] = float(d["StdDev"]) ** 2 * num
            s.min[b], s.max[b] = float(d["Min"]), float(d["Max"])
        return s

    @classmethod
    def from_arrays(cls, chips: Iterable[np.ndarray], valid: Optional[Iterable[Optional[np.ndarray]]] = None,
                    bands: Optional[int] = None) -> "BandStats":
        """From pixel arrays (bands, h, w); ``valid`` masks (bands, h, w) or (h, w) leave NoData out."""
        s = None if bands is None else cls.empty(bands)
        valid = iter(valid) if valid is not None else None
        for data in chips:
            mask = next(valid) if valid is not None else None
            if s is None:
                s = cls.empty(data.shape[0])
            for b in range(data.shape[0]):
                v = data[b]
                if mask is not None:
                    v = v[mask[b] if mask.ndim == 3 else mask]
                v = np.asarray(v, np.float64).ravel()
                if v.size:
                    mean = float(v.mean())
                    s.add(b, v.size, mean, float(np.square(v - mean).sum()), float(v.min()), float(v.max()))
        return s if s is not None else cls.empty(0)

    # ---- merging ----------------------------------------------------------------------------

    def add(self, b: int, n: int, mean: float, m2: float, vmin: float, vmax: float) -> None:
        """Merge n values of band b (parallel formula of Chan et al.)."""
        if n <= 0:
            return
        total = self.num[b] + n
        delta = mean - self.mean[b]
        self.m2[b] += m2 + delta * delta * self.num[b] * n / total
        self.mean[b] += delta * n / total
        self.num[b] = total
        self.min[b] = min(self.min[b], vmin)
        self.max[b] = max(self.max[b], vmax)

    def merged(self, other: "BandStats") -> "BandStats":
        """A new BandStats over both: Min/Max over both, mean weighted by Num, M2 combined
        with the parallel formula (not summed: arcgis.learn's sum leaves out the spread of
        the folder means), Num summed."""
        out = BandStats(self.num.copy(), self.mean.copy(), self.m2.copy(), self.min.copy(), self.max.copy())
        for b in range(min(self.bands, other.bands)):
            out.add(b, int(other.num[b]), float(other.mean[b]), float(other.m2[b]), float(other.min[b]),
                    float(other.max[b]))
        return out

    @classmethod
    def merge_all(cls, items: Sequence["BandStats"]) -> "BandStats":
        out = items[0]
        for s in items[1:]:
            out = out.merged(s)
        return out

    # ---- writing ----------------------------------------------------------------------------

    def state_json(self) -> List[dict]:
        return [{"Min": float(self.min[b]), "Max": float(self.max[b]), "Mean": 0, "StdDev": 0,
                 "M1": float(self.mean[b]), "M2": float(self.m2[b]), "Num": int(self.num[b])}
                for b in range(self.bands)]

    def all_tiles_json(self, band_names: Sequence[str] = ()) -> List[dict]:
        std = self.std
        return [{"BandName": band_names[b] if b < len(band_names) else "", "Min": float(self.min[b]),
                 "Max": float(self.max[b]), "Mean": float(self.mean[b]), "StdDev": float(std[b])}
                for b in range(self.bands)]
