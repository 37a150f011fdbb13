"""Opening and describing an input raster: one rule for export and inference.

Band numbers follow GDAL and rasterio: **1-based**. ``RasterInfo.alpha_band`` is the number of
the band whose colour interpretation is alpha (None when the raster has none). A pixel whose
alpha is 0 is transparent: NoData in every band. The alpha band is not imagery: export keeps
it in the chips but names it "alpha" (arcgis.learn then reads the chips as RGB), inference
leaves it out of the model's input (``data_bands``). Index a (bands, h, w) array read with
every band by ``alpha_band - 1``.

Also here: whether a grid sits on whole pixels of a raster (``aligned_offset``, then a plain
window read serves it, else a warped VRT), and the scope in which rasterio's
NotGeoreferencedWarning is expected and silenced (``quiet_georeferencing``).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from .errors import InputError


@dataclass(frozen=True)
class RasterInfo:
    """What export and inference need to know about an input raster."""

    path: str
    width: int
    height: int
    count: int
    dtype: str  # of band 1
    transform: Affine
    crs: object  # rasterio CRS or None
    nodata: Optional[float]  # the dataset's NoData value (band 1's)
    nodatavals: Tuple[Optional[float], ...]  # per band
    alpha_band: Optional[int]  # 1-based number of the alpha band, None when there is none
    descriptions: Tuple[str, ...]  # band descriptions ("" where a band has none)

    @property
    def data_bands(self) -> List[int]:
        """1-based numbers of the bands that hold imagery (all but the alpha band)."""
        return [b for b in range(1, self.count + 1) if b != self.alpha_band]


def open_raster(path: str, parameter: str = "IN_RASTER"):
    """``rasterio.open(path)``; an unreadable file is an InputError naming ``parameter``."""
    try:
        return rasterio.open(path)
    except Exception as exc:  # rasterio raises several types; all mean "cannot read"
        raise InputError(parameter, f"cannot open {path!r} as a raster ({exc}); give a file GDAL can read") from None


def alpha_band_of(src) -> Optional[int]:
    """1-based number of the first band of an open dataset whose colour interpretation is alpha."""
    try:
        interp = list(src.colorinterp)
    except Exception:  # a driver that cannot say
        return None
    return interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None


def describe(src, path: str) -> RasterInfo:
    """The RasterInfo of an open rasterio dataset."""
    return RasterInfo(path, src.width, src.height, src.count, src.dtypes[0], src.transform, src.crs, src.nodata,
                      tuple(src.nodatavals), alpha_band_of(src), tuple(d or "" for d in src.descriptions))


def read_info(path: str, parameter: str = "IN_RASTER") -> RasterInfo:
    """Open, describe and close."""
    with open_raster(path, parameter) as src:
        return describe(src, path)


def warn_without_crs(path: str, warn: Callable[[str], None], parameter: str = "IN_RASTER") -> None:
    """Say once that a raster has no CRS: what is made from it carries none (an unreadable raster
    is the run's own error)."""
    try:
        info = read_info(path, parameter)
    except InputError:
        return
    if info.crs is None:
        pixels = " and no georeferencing: coordinates are its pixel numbers" if info.transform.is_identity else ""
        warn(f"{parameter} has no coordinate reference system{pixels}; the output carries none, so it will not "
             f"line up with other layers. Assign the raster its CRS (Raster ▸ Projections ▸ Assign Projection) "
             f"and run again")


def aligned_offset(t: Affine, g: Affine) -> Optional[Tuple[int, int]]:
    """Where pixel (0, 0) of a grid with transform ``g`` lies in the pixels of a raster with
    transform ``t``, when the grid sits on whole raster pixels at the same resolution (a plain
    window read serves it); None when it needs resampling. Both transforms north-up."""
    if not (math.isclose(t.a, g.a, rel_tol=1e-9) and math.isclose(t.e, g.e, rel_tol=1e-9)):
        return None
    col, row = (g.c - t.c) / t.a, (g.f - t.f) / t.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))


@contextmanager
def quiet_georeferencing() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning for the length of one run: a raster without
    georeferencing (PIXEL_SPACE), and the in-memory rasterize/reproject targets of chips,
    have an identity transform on purpose. The filter is the process's (worker threads of
    the run see it) and is restored when the run ends; nothing is changed at import time,
    as the engine also runs inside QGIS's process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
        yield
