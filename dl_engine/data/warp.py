"""Resampling of chips in plain numpy: an affine map from output to input pixel
coordinates, bilinear for images, nearest for label rasters; and the same map applied to
boxes. Pixel coordinates are edge based: pixel (row, col) covers [col, col+1) x [row, row+1)."""

from __future__ import annotations

from typing import Tuple

import numpy as np


def affine_resample(data: np.ndarray, matrix: np.ndarray, out_shape: Tuple[int, int], nearest: bool = False,
                    fill: float = 0) -> np.ndarray:
    """Resample (c, h, w) or (h, w) ``data`` onto ``out_shape`` (h, w).

    ``matrix`` (2 x 3) maps an output point (x, y) to the input point
    ``(m00 x + m01 y + m02, m10 x + m11 y + m12)``. Points outside the input get ``fill``.
    """
    squeeze = data.ndim == 2
    if squeeze:
        data = data[np.newaxis]
    c, h, w = data.shape
    oh, ow = out_shape
    ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float64)
    xs += 0.5
    ys += 0.5
    sx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    sy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    if nearest:
        col = np.floor(sx).astype(np.int64)
        row = np.floor(sy).astype(np.int64)
        ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        out = np.full((c, oh, ow), fill, dtype=data.dtype)
        out[:, ok] = data[:, row[ok], col[ok]]
        return out[0] if squeeze else out
    # Bilinear between pixel centres; outside the input, fill.
    u, v = sx - 0.5, sy - 0.5
    x0, y0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fx, fy = (u - x0).astype(np.float32), (v - y0).astype(np.float32)
    inside = (sx >= 0) & (sx <= w) & (sy >= 0) & (sy <= h)
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    d = data.astype(np.float32, copy=False)
    top = d[:, y0c, x0c] * (1 - fx) + d[:, y0c, x1c] * fx
    bottom = d[:, y1c, x0c] * (1 - fx) + d[:, y1c, x1c] * fx
    out = top * (1 - fy) + bottom * fy
    out[:, ~inside] = fill
    if data.dtype.kind != "f":
        out = np.rint(out)
    out = out.astype(data.dtype, copy=False)
    return out[0] if squeeze else out


def invert(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_boxes(boxes: np.ndarray, forward: np.ndarray, width: int, height: int,
                    min_size: float = 1e-3) -> Tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) mapped by ``forward`` (input → output point), as the bounds of their
    mapped corners clipped to the output chip. Returns the boxes and a keep mask (boxes
    left with no width or height are dropped)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32), np.zeros(0, bool)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    cx = np.stack([x0, x1, x1, x0], 1)
    cy = np.stack([y0, y0, y1, y1], 1)
    tx = forward[0, 0] * cx + forward[0, 1] * cy + forward[0, 2]
    ty = forward[1, 0] * cx + forward[1, 1] * cy + forward[1, 2]
    out = np.stack([tx.min(1), ty.min(1), tx.max(1), ty.max(1)], 1)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    keep = ((out[:, 2] - out[:, 0]) > min_size) & ((out[:, 3] - out[:, 1]) > min_size)
    return out.astype(np.float32), keep


def resize_matrix(in_shape: Tuple[int, int], out_shape: Tuple[int, int]) -> np.ndarray:
    """Output → input map of a plain resize."""
    (h, w), (oh, ow) = in_shape, out_shape
    return np.array([[w / ow, 0.0, 0.0], [0.0, h / oh, 0.0]])
