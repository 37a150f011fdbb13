"""Chip frames: where a chip lies on the map.

A frame is an affine transform from chip pixels to map coordinates plus a size.
Grid tiles give axis-aligned frames on whole grid pixels (read without
resampling); ROTATION_ANGLE turns a frame about its centre; Labeled_Tiles and
Imagenet centre a frame on each feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np
import shapely
from affine import Affine

from .grid import Grid, iter_tiles


@dataclass(frozen=True)
class Frame:
    site: int  # ordinal of the tile or feature the chip is cut from
    turn: int  # 0 for the unrotated chip, k for the copy rotated by k * ROTATION_ANGLE
    transform: Affine  # chip pixel -> map
    width: int
    height: int
    # Top-left corner on the grid when the frame is axis-aligned on whole grid pixels, else None.
    grid_col: Optional[int] = None
    grid_row: Optional[int] = None
    feature: Optional[int] = None  # index of the feature a feature-centred chip is cut for

    @property
    def aligned(self) -> bool:
        return self.grid_col is not None

    def corners(self) -> np.ndarray:
        xs, ys = self.transform * (np.array([0, self.width, self.width, 0]), np.array([0, 0, self.height, self.height]))
        return np.stack([xs, ys], axis=1)

    def polygon(self):
        return shapely.Polygon(self.corners())


def rotations(angle: float) -> List[float]:
    """Angles of the copies: 0 and every multiple of ``angle`` below 360 degrees."""
    if not angle:
        return [0.0]
    n = int(math.ceil(360.0 / angle - 1e-9))
    return [k * angle for k in range(n)]


def rotate(frame: Frame, turn: int, degrees: float) -> Frame:
    """The frame turned by ``degrees`` (counter-clockwise on the map) about its centre."""
    if not degrees:
        return frame
    cx, cy = frame.transform * (frame.width / 2, frame.height / 2)
    t = Affine.translation(cx, cy) * Affine.rotation(degrees) * Affine.translation(-cx, -cy) * frame.transform
    return Frame(frame.site, turn, t, frame.width, frame.height, feature=frame.feature)


def grid_frames(grid: Grid, tile_x: int, tile_y: int, stride_x: int, stride_y: int) -> Iterator[Frame]:
    for tile in iter_tiles(grid, tile_x, tile_y, stride_x, stride_y):
        t = grid.transform * Affine.translation(tile.col, tile.row)
        yield Frame(tile.ordinal, 0, t, tile_x, tile_y, tile.col, tile.row)


def feature_frame(grid: Grid, ordinal: int, feature: int, bounds: Tuple[float, float, float, float],
                  fixed_size: bool, tile_x: int, tile_y: int) -> Frame:
    """A chip for one feature: ``tile_x`` x ``tile_y`` centred on it (FIXED_SIZE), or
    its bounding box on whole grid pixels (BOUNDING_BOX)."""
    inv = ~grid.transform
    c0, r0 = inv * (bounds[0], bounds[3])
    c1, r1 = inv * (bounds[2], bounds[1])
    c0, c1 = min(c0, c1), max(c0, c1)
    r0, r1 = min(r0, r1), max(r0, r1)
    if fixed_size:
        col = int(math.floor((c0 + c1) / 2 - tile_x / 2 + 0.5))
        row = int(math.floor((r0 + r1) / 2 - tile_y / 2 + 0.5))
        w, h = tile_x, tile_y
    else:
        # Snap coordinates within 1e-6 px of a pixel edge onto it, so float noise
        # (27.0000000004) does not add a row or column.
        col, row = int(math.floor(c0 + 1e-6)), int(math.floor(r0 + 1e-6))
        w = max(1, int(math.ceil(c1 - 1e-6)) - col)
        h = max(1, int(math.ceil(r1 - 1e-6)) - row)
    return Frame(ordinal, 0, grid.transform * Affine.translation(col, row), w, h, col, row, feature)
