"""The output grid (the raster's own, or the EXTENT / CELL_SIZE grid) and the tiles that
cover it: windows of ``tile`` pixels whose centres (``tile - 2 * padding``) tile the grid
exactly, so each output pixel comes from one window's centre, away from its borders."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Tuple

from affine import Affine

from ..errors import InputError
from ..export.grid import Grid, build_grid, is_north_up
from ..raster_info import aligned_offset


@dataclass(frozen=True)
class InferGrid:
    transform: Affine  # georeferencing of the output (the raster's own when no EXTENT/CELL_SIZE)
    crs: object  # rasterio CRS or None
    width: int
    height: int
    # Where grid pixel (0, 0) is in the raster's pixels when no resampling is needed, else None
    # (read through a warped VRT).
    source_offset: Optional[Tuple[int, int]]

    @property
    def pixels(self) -> int:
        return self.width * self.height


def plan_grid(src, extent: Optional[Sequence[float]], cell_size: Optional[float]) -> InferGrid:
    """The grid of an open rasterio dataset, limited by EXTENT and resampled to CELL_SIZE."""
    t = src.transform
    if extent is None and cell_size is None:
        return InferGrid(t, src.crs, src.width, src.height, (0, 0))
    if not is_north_up(t):
        which = "EXTENT" if extent is not None else "CELL_SIZE"
        raise InputError(which, "needs a north-up georeferenced raster; this raster's geotransform is rotated or "
                               "missing (leave EXTENT and CELL_SIZE empty to process it on its own grid)")
    g: Grid = build_grid(src, tuple(extent) if extent is not None else None, cell_size, "MAP_SPACE")
    offset = aligned_offset(t, g.transform)
    return InferGrid(g.transform, g.crs, g.width, g.height, offset)


@dataclass(frozen=True)
class Tile:
    index: int  # row-major
    col: int  # top-left of the kept centre on the grid
    row: int
    width: int  # kept centre, clipped to the grid
    height: int
    padding: int
    last_in_row: bool

    @property
    def window(self) -> Tuple[int, int]:
        """Top-left of the window the model reads (padding included)."""
        return self.col - self.padding, self.row - self.padding


@dataclass(frozen=True)
class TileLayout:
    width: int
    height: int
    tile: int
    padding: int

    @property
    def stride(self) -> int:
        return self.tile - 2 * self.padding

    @property
    def cols(self) -> int:
        return max(1, math.ceil(self.width / self.stride))

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.height / self.stride))

    def __len__(self) -> int:
        return self.cols * self.rows

    def __iter__(self) -> Iterator[Tile]:
        s = self.stride
        i = 0
        for r in range(self.rows):
            for c in range(self.cols):
                row, col = r * s, c * s
                yield Tile(i, col, row, min(s, self.width - col), min(s, self.height - row), self.padding,
                           c == self.cols - 1)
                i += 1


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` items, lazily (a large raster has millions of tiles)."""
    it = iter(items)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk
