"""Reading model windows from the input raster.

A window may reach past the grid (the padding of edge tiles): real pixels are read where the
raster has them (context beyond an EXTENT helps the model); beyond the raster the window is
filled by mirroring, which the models take better than a flat fill. ``valid`` marks pixels
that hold data: inside the raster, not transparent, and not NoData in every band.

Each reader thread opens its own handles (GDAL handles are not shared between threads).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..errors import InputError
from ..raster_info import RasterInfo, alpha_band_of, open_raster
from .grid import InferGrid

PARAMETER = "IN_RASTER"


def check_bands(desc: RasterInfo, model, parameter: str = PARAMETER) -> None:
    """The raster must have the bands the model was trained on (len(ExtractBands) of them
    for 8-bit RGB, every band of the training chips for multispectral models)."""
    norm = model.normalization
    have = len(desc.data_bands)
    expected = model.input_bands
    if have == expected:
        return
    alpha = " (besides its alpha band)" if desc.alpha_band else ""
    if norm.is_multispectral:
        what = (f"{expected}-band imagery (NormalizationStats of {expected} bands; ExtractBands "
                f"{list(norm.extract_bands)})")
    else:
        what = f"3-band 8-bit RGB imagery (ExtractBands {list(norm.extract_bands)})"
    raise InputError(parameter, f"the model was trained on {what}; {desc.path} has {have} band(s){alpha}. "
                               f"Give a raster with the training data's {expected} bands in the same order "
                               "(e.g. a virtual raster of those bands)")


class WindowSource:
    """Windows of the grid from one raster (see module doc). ``context``: how far windows may
    reach past the grid's edges."""

    def __init__(self, desc: RasterInfo, grid: InferGrid, context: int,
                 resampling: Resampling = Resampling.bilinear, fill: Optional[np.ndarray] = None):
        self.src = open_raster(desc.path, PARAMETER)
        self.bands = desc.data_bands
        self.dtype = np.dtype(desc.dtype)
        self.nodata = [desc.nodatavals[b - 1] for b in self.bands]
        # NoData pixels become the band mean (Normalization.nodata_fill), as in training: a value
        # such as -9999 must not reach the network
        self.fill = None if fill is None else [float(fill[i]) if i < len(fill) else 0.0
                                               for i in range(len(self.bands))]
        if grid.source_offset is not None:
            self.ds, self.offset, self.alpha_band = self.src, grid.source_offset, desc.alpha_band
        else:  # resampled: a warped VRT over the grid and its margin; its alpha band marks coverage
            t = grid.transform * Affine.translation(-context, -context)
            # the source's own alpha band is warped as the VRT's alpha; else GDAL adds one
            self.ds = WarpedVRT(self.src, crs=grid.crs or self.src.crs, transform=t, width=grid.width + 2 * context,
                                height=grid.height + 2 * context, resampling=resampling,
                                add_alpha=desc.alpha_band is None, src_alpha=desc.alpha_band or 0)
            self.offset = (context, context)
            self.alpha_band = alpha_band_of(self.ds) or self.ds.count
        self.count = len(self.bands)

    def read(self, col: int, row: int, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
        """(data (bands, height, width) in the raster's type, valid (height, width) bool) of the
        window whose top-left is grid pixel (col, row)."""
        x0, y0 = col + self.offset[0], row + self.offset[1]
        c0, r0 = max(x0, 0), max(y0, 0)
        c1, r1 = min(x0 + width, self.ds.width), min(y0 + height, self.ds.height)
        if c1 <= c0 or r1 <= r0:
            return np.zeros((self.count, height, width), self.dtype), np.zeros((height, width), bool)
        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.ds.read(self.bands, window=win)
        valid = self._valid(data, win)
        if self.fill is not None:
            self._fill(data)
        if data.dtype.kind == "f":
            data = np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        top, left = r0 - y0, c0 - x0
        pad = ((top, height - top - (r1 - r0)), (left, width - left - (c1 - c0)))
        if any(p for pair in pad for p in pair):
            mode = "reflect" if min(r1 - r0, c1 - c0) > 1 else "edge"
            data = np.pad(data, ((0, 0),) + pad, mode=mode)
            valid = np.pad(valid, pad, mode="constant", constant_values=False)
        return data, valid

    def _fill(self, data: np.ndarray) -> None:
        for band, nd, value in zip(data, self.nodata, self.fill):
            missing = np.isnan(band) if band.dtype.kind == "f" else np.zeros(band.shape, bool)
            if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
                missing |= band == nd
            if missing.any():
                info = np.iinfo(band.dtype) if band.dtype.kind in "iu" else None
                band[missing] = np.clip(round(value), info.min, info.max) if info else value

    def _valid(self, data: np.ndarray, win: Window) -> np.ndarray:
        shape = data.shape[1:]
        nodata_everywhere = np.ones(shape, bool)
        for band, nd in zip(data, self.nodata):
            if band.dtype.kind == "f":
                missing = np.isnan(band)
                if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
                    missing |= band == nd
            elif nd is not None:
                missing = band == nd
            else:
                return self._alpha(win, np.ones(shape, bool))
            nodata_everywhere &= missing
        return self._alpha(win, ~nodata_everywhere)

    def _alpha(self, win: Window, valid: np.ndarray) -> np.ndarray:
        if self.alpha_band is not None:
            valid &= self.ds.read(self.alpha_band, window=win) > 0
        return valid

    def close(self) -> None:
        if self.ds is not self.src:
            self.ds.close()
        self.src.close()
