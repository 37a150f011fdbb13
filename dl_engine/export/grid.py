"""The grid chips are cut from: the raster's pixel grid, limited by EXTENT and
resampled to CELL_SIZE when asked, and the tile positions on it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

from affine import Affine
from rasterio.crs import CRS

from ..errors import InputError


@dataclass(frozen=True)
class Grid:
    crs: Optional[CRS]
    transform: Affine  # map transform of pixel (0, 0) of the grid
    width: int
    height: int
    # Offset of the grid in the source raster's own pixels (PIXEL_SPACE georeferencing).
    source_col_off: int = 0
    source_row_off: int = 0

    @property
    def res(self) -> Tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        x0, y0 = self.transform * (0, 0)
        x1, y1 = self.transform * (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


@dataclass(frozen=True)
class Tile:
    ordinal: int  # row-major position on the grid; the chip index is start_index + ordinal
    col: int
    row: int


def tile_starts(length: int, tile: int, stride: int) -> list:
    """Start offsets along one axis. The last tile reaches the edge (and is padded
    past it) so that every pixel of the grid lands in at least one chip."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / stride) + 1
    return [i * stride for i in range(n)]


def iter_tiles(grid: Grid, tile_x: int, tile_y: int, stride_x: int, stride_y: int) -> Iterator[Tile]:
    cols = tile_starts(grid.width, tile_x, stride_x)
    rows = tile_starts(grid.height, tile_y, stride_y)
    ordinal = 0
    for r in rows:
        for c in cols:
            yield Tile(ordinal, c, r)
            ordinal += 1


def count_tiles(grid: Grid, tile_x: int, tile_y: int, stride_x: int, stride_y: int) -> int:
    return len(tile_starts(grid.width, tile_x, stride_x)) * len(tile_starts(grid.height, tile_y, stride_y))


def is_north_up(t: Affine) -> bool:
    return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0


def build_grid(src, extent: Optional[Tuple[float, float, float, float]], cell_size: Optional[float],
               reference_system: str) -> Grid:
    """The chip grid for an open rasterio dataset ``src``.

    Without CELL_SIZE the grid is the raster's own pixel grid (no resampling), cut to
    EXTENT on pixel boundaries; with CELL_SIZE it starts at the extent's top-left
    corner with square cells of that size.
    """
    t = src.transform
    pixel_only = not is_north_up(t)
    if pixel_only:
        # Rotated or pixel-only rasters: work on their pixel grid (x = column, y = -row).
        if reference_system == "MAP_SPACE" and not t.is_identity:
            raise InputError("IN_RASTER", "the raster's geotransform is rotated; MAP_SPACE needs a north-up raster "
                                           "(warp it first, or use REFERENCE_SYSTEM PIXEL_SPACE)")
        t = Affine(1, 0, 0, 0, -1, 0)
    src_bounds = (t.c, t.f + t.e * src.height, t.c + t.a * src.width, t.f)
    xmin, ymin, xmax, ymax = src_bounds
    if extent is not None:
        exmin, eymin, exmax, eymax = extent  # an area (ExportConfig.check / InferConfig.check)
        xmin, ymin, xmax, ymax = max(xmin, exmin), max(ymin, eymin), min(xmax, exmax), min(ymax, eymax)
        if xmin >= xmax or ymin >= ymax:
            raise InputError("EXTENT", f"the extent {tuple(extent)} does not overlap the raster "
                                        f"(raster bounds {tuple(round(v, 6) for v in src_bounds)} in its own CRS)")
    if cell_size is not None:  # above 0, and MAP_SPACE (ExportConfig.check / InferConfig.check)
        width = max(1, math.ceil((xmax - xmin) / cell_size - 1e-9))
        height = max(1, math.ceil((ymax - ymin) / cell_size - 1e-9))
        return Grid(src.crs, Affine(cell_size, 0, xmin, 0, -cell_size, ymax), width, height)
    # Snap the extent outwards to whole source pixels.
    col0 = max(0, math.floor((xmin - t.c) / t.a + 1e-9))
    col1 = min(src.width, math.ceil((xmax - t.c) / t.a - 1e-9))
    row0 = max(0, math.floor((t.f - ymax) / -t.e + 1e-9))
    row1 = min(src.height, math.ceil((t.f - ymin) / -t.e - 1e-9))
    crs = None if pixel_only else src.crs
    return Grid(crs, t * Affine.translation(col0, row0), max(1, col1 - col0), max(1, row1 - row0), col0, row0)
