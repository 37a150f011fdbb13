"""Windowed reading of a raster on the chip grid, and writing of chips.

Each worker thread opens its own dataset handles (GDAL handles are not shared
between threads); reads are windowed so memory stays one chip per worker.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Tuple

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.crs import CRS
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject
from rasterio.windows import Window

from ..errors import InputError
from ..raster_info import RasterInfo, aligned_offset, open_raster
from .grid import Grid, is_north_up

# Chip file extension and GDAL driver for each IMAGE_CHIP_FORMAT.
CHIP_FORMATS = {
    "TIFF": ("tif", "GTiff"),
    "PNG": ("png", "PNG"),
    "JPEG": ("jpg", "JPEG"),
    "MRF": ("mrf", "MRF"),
}
# Label rasters stay lossless: PNG next to JPEG chips, TIFF next to MRF chips.
LABEL_FORMAT_FOR = {"TIFF": "TIFF", "PNG": "PNG", "JPEG": "PNG", "MRF": "TIFF"}


def _grid_offset(src, grid: Grid) -> Optional[Tuple[int, int]]:
    """Pixel offset of the grid in ``src`` when no resampling is needed, else None. A rotated
    or ungeoreferenced raster is read in its own pixels (PIXEL_SPACE)."""
    if not is_north_up(src.transform):
        return (grid.source_col_off, grid.source_row_off) if grid.crs is None else None
    if (src.crs or None) != (grid.crs or None):
        return None
    return aligned_offset(src.transform, grid.transform)


class GridReader:
    """Reads windows of the chip grid from one raster, padding outside its edges.

    ``read`` returns (data, inside) where ``inside`` (h, w) is False for padding.
    Rasters on another grid or CRS are read through a GDAL warped VRT onto the grid.
    """

    def __init__(self, path: str, grid: Grid, resampling: Resampling, fill: Optional[float] = None,
                 parameter: str = "IN_RASTER"):
        self.src = open_raster(path, parameter)
        self.grid = grid
        offset = _grid_offset(self.src, grid)
        if offset is None:
            self.ds = WarpedVRT(self.src, crs=grid.crs or self.src.crs, transform=grid.transform,
                                width=grid.width, height=grid.height, resampling=resampling,
                                src_nodata=self.src.nodata, nodata=self.src.nodata)
            self.offset = (0, 0)
        else:
            self.ds = self.src
            self.offset = offset
        self.count = self.ds.count
        self.dtype = self.src.dtypes[0]
        self.nodata = self.src.nodata
        # Padding outside the raster gets its NoData value (0 when it has none).
        self.fill = fill if fill is not None else (self.nodata if self.nodata is not None else 0)

    def read(self, col: int, row: int, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
        out = np.full((self.count, height, width), self.fill, dtype=self.dtype)
        inside = np.zeros((height, width), dtype=bool)
        # The part of the window that lies on the grid (and, when aligned, on the source).
        oc, orow = self.offset
        c0 = max(col, -oc)
        r0 = max(row, -orow)
        c1 = min(col + width, self.grid.width, self.ds.width - oc)
        r1 = min(row + height, self.grid.height, self.ds.height - orow)
        if c1 > c0 and r1 > r0:
            win = Window(c0 + oc, r0 + orow, c1 - c0, r1 - r0)
            out[:, r0 - row:r1 - row, c0 - col:c1 - col] = self.ds.read(window=win)
            inside[r0 - row:r1 - row, c0 - col:c1 - col] = True
        return out, inside

    def close(self) -> None:
        if self.ds is not self.src:
            self.ds.close()
        self.src.close()


def valid_mask(data: np.ndarray, inside: np.ndarray, nodata: Optional[float], alpha_band: Optional[int]) -> np.ndarray:
    """(bands, h, w) True where a pixel holds data: inside the raster, not NoData, not transparent.
    ``data`` holds every band; ``alpha_band`` is 1-based (RasterInfo.alpha_band)."""
    valid = np.broadcast_to(inside, data.shape).copy()
    if nodata is not None:
        valid &= ~np.isnan(data) if (isinstance(nodata, float) and math.isnan(nodata)) else data != nodata
    elif data.dtype.kind == "f":
        valid &= ~np.isnan(data)
    if alpha_band is not None:
        valid &= data[alpha_band - 1] > 0
    return valid


def chip_profile(image_format: str, dtype: str, count: int, width: int, height: int, crs, transform: Affine,
                 nodata: Optional[float]) -> dict:
    _, driver = CHIP_FORMATS[image_format]
    profile = dict(driver=driver, width=width, height=height, count=count, dtype=dtype, crs=crs,
                   transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    if driver == "GTiff":
        # What Pro writes: LZW GeoTIFF with a .tfw world file and internal tiles.
        profile.update(compress="LZW", tfw="YES")
        if width % 16 == 0 and height % 16 == 0:
            profile.update(tiled=True, blockxsize=min(128, width), blockysize=min(128, height))
    elif driver == "JPEG":
        profile.update(quality=90)
    elif driver == "MRF":
        profile.update(compress="DEFLATE")
    return profile


# World files GDAL does not name as Esri does (.wld) are written here; GTiff writes its .tfw itself.
WORLD_FILE_EXT = {"PNG": ".pgw", "JPEG": ".jgw", "MRF": ".mfw"}


def write_chip(path: str, data: np.ndarray, profile: dict) -> None:
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    ext = WORLD_FILE_EXT.get(profile["driver"])
    if ext:
        _write_world_file(os.path.splitext(path)[0] + ext, profile["transform"])


def _write_world_file(path: str, t: Affine) -> None:
    # Lines 5-6 hold the centre of the upper-left pixel.
    cx, cy = t * (0.5, 0.5)
    with open(path, "w", newline="\n") as f:
        f.write("".join(f"{v:.10f}\n" for v in (t.a, t.d, t.b, t.e, cx, cy)))


def check_chip_format(image_format: str, info: RasterInfo, parameter: str = "IMAGE_CHIP_FORMAT") -> None:
    if image_format not in CHIP_FORMATS:
        raise InputError(parameter, f"unknown image format {image_format!r}; use one of {', '.join(CHIP_FORMATS)}")
    if image_format in ("PNG", "JPEG"):
        allowed = (1, 3) if image_format == "JPEG" else (1, 2, 3)
        if info.dtype != "uint8" or info.count not in allowed:
            raise InputError(parameter, f"{image_format} holds {' or '.join(map(str, allowed))} bands of 8-bit data; "
                                         f"the raster {os.path.basename(info.path)!r} has {info.count} band(s) of "
                                         f"{info.dtype}. Use TIFF or MRF, which keep any band count and data type")


# Stands in for a missing CRS when resampling between two frames of the same (pixel) space.
_PIXEL_SPACE_CRS = CRS.from_epsg(3857)


def read_frame(reader: GridReader, frame, resampling: Resampling) -> Tuple[np.ndarray, np.ndarray]:
    """(data, inside) of a chip frame: a plain window read when the frame sits on
    whole grid pixels, else a window around it resampled onto the (rotated) frame."""
    if frame.aligned:
        return reader.read(frame.grid_col, frame.grid_row, frame.width, frame.height)
    inv = ~reader.grid.transform
    corners = frame.corners()
    cols, rows = inv * (corners[:, 0], corners[:, 1])
    c0, r0 = int(math.floor(cols.min())) - 1, int(math.floor(rows.min())) - 1
    c1, r1 = int(math.ceil(cols.max())) + 1, int(math.ceil(rows.max())) + 1
    src, inside = reader.read(c0, r0, c1 - c0, r1 - r0)
    src_t = reader.grid.transform * Affine.translation(c0, r0)
    crs = reader.grid.crs or _PIXEL_SPACE_CRS
    out = np.full((src.shape[0], frame.height, frame.width), reader.fill, dtype=src.dtype)
    reproject(src, out, src_transform=src_t, dst_transform=frame.transform, src_crs=crs, dst_crs=crs,
              resampling=resampling, src_nodata=reader.nodata, dst_nodata=reader.fill, error_threshold=0)
    inside_out = np.zeros((frame.height, frame.width), dtype=np.uint8)
    reproject(inside.astype(np.uint8), inside_out, src_transform=src_t, dst_transform=frame.transform,
              src_crs=crs, dst_crs=crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=0,
              error_threshold=0)
    return out, inside_out.astype(bool)
