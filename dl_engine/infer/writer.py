"""The Classify Pixels output: a single-band class-value GeoTIFF with the model's colours.

- Values: the emd's class values (training index i -> Classes[i-1].Value), 0 = background.
- NoData where the input has no data: the largest value of the type that is no class value
  (255 for uint8 unless 255 is a class; uint16 / 65535 when values exceed 255).
- A colour table: each class its emd colour, background and NoData black (a TIFF colour
  table holds no alpha; NoData is transparent through the NoData value), so QGIS shows the
  raster paletted; class names go into the band's metadata (CLASS_NAMES, JSON).
- Tiled, DEFLATE-compressed, BigTIFF when needed. Rows arrive in strips of any height and
  are written in whole rows of blocks (no compressed block is written twice), on a writer
  thread; memory holds about two block rows of the output.
- Written to a hidden temporary name beside the output and moved into place by ``commit``;
  ``abort`` removes it, so a failed or cancelled run leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
from rasterio.windows import Window

from ..destinations import os_error, writable_file
from .grid import InferGrid

BLOCK = 256


@dataclass(frozen=True)
class ClassTable:
    lut: np.ndarray  # training index -> class value
    dtype: str
    nodata: int
    colormap: Optional[Dict[int, Tuple[int, int, int, int]]]  # None where GeoTIFF has no colour tables
    names: Dict[int, str]  # class value -> name (0: background)


def class_table(classes: Sequence) -> ClassTable:
    """``classes``: model.ClassInfo in index order 1..K (index 0 is background)."""
    values = [0] + [int(c.value) for c in classes]
    used = set(values)
    dtype, nodata = "int32", min(values) - 1
    for name, hi in (("uint8", 255), ("uint16", 65535)):
        if min(values) >= 0 and max(values) <= hi:
            free = next((v for v in range(hi, -1, -1) if v not in used), None)
            if free is not None:
                dtype, nodata = name, free
                break
    colormap = None
    if dtype != "int32":
        colormap = {0: (0, 0, 0, 0), nodata: (0, 0, 0, 0)}
        rng = random.Random(0)
        for c in classes:
            drawn = tuple(rng.randrange(256) for _ in range(3))  # for classes without an emd colour
            rgb = c.color if c.color is not None else drawn
            colormap[int(c.value)] = (int(rgb[0]), int(rgb[1]), int(rgb[2]), 255)
    names = {0: "background"}
    names.update({int(c.value): str(c.name) for c in classes})
    return ClassTable(np.asarray(values, dtype=np.int64), dtype, int(nodata), colormap, names)


def temp_path_for(out_path: str) -> str:
    folder, name = os.path.split(os.path.abspath(out_path))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.partial-{os.getpid()}{ext or '.tmp'}")


def prepare_output(out_path: str, parameter: str) -> str:
    """Create the output's folder; refuse a path that cannot be written. Returns the temp name."""
    writable_file(parameter, out_path)  # the rule every tool's destination follows
    folder = os.path.dirname(os.path.abspath(out_path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise os_error(parameter, e, folder) from None
    return temp_path_for(out_path)


def commit(temp: str, out_path: str) -> None:
    """Move a finished temporary file into place (and drop a stale .aux.xml of an older output)."""
    os.replace(temp, out_path)
    stale = out_path + ".aux.xml"
    if os.path.exists(stale):
        os.remove(stale)


class ClassRasterWriter:
    def __init__(self, out_path: str, grid: InferGrid, table: ClassTable, parameter: str,
                 tags: Optional[Dict[str, str]] = None):
        self.out_path = out_path
        self.temp = prepare_output(out_path, parameter)
        self.width, self.height = grid.width, grid.height
        self.dtype = np.dtype(table.dtype)
        self.block = BLOCK
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype=table.dtype,
                       crs=grid.crs, transform=grid.transform, nodata=table.nodata, tiled=True,
                       blockxsize=self.block, blockysize=self.block, compress="DEFLATE", bigtiff="IF_SAFER")
        self.ds = rasterio.open(self.temp, "w", **profile)
        try:
            if table.colormap is not None:
                self.ds.write_colormap(1, table.colormap)
            self.ds.set_band_description(1, "class value")
            self.ds.update_tags(1, CLASS_NAMES=json.dumps({str(k): v for k, v in table.names.items()}))
            if tags:
                self.ds.update_tags(**tags)
        except BaseException:
            self.abort()
            raise
        self._rows: List[np.ndarray] = []  # buffered strips, starting at grid row self._row
        self._buffered = 0
        self._row = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer-write")
        self._pending: List[Future] = []

    def write_rows(self, row: int, strip: np.ndarray) -> None:
        """Rows ``row .. row + len(strip)`` of the whole width; strips must come in order."""
        if row != self._row + self._buffered:
            raise ValueError(f"rows must arrive in order: expected {self._row + self._buffered}, got {row}")
        self._rows.append(np.asarray(strip, self.dtype))
        self._buffered += strip.shape[0]
        if self._buffered >= self.block:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        data = np.concatenate(self._rows) if len(self._rows) > 1 else self._rows[0]
        whole = data.shape[0] if final else (data.shape[0] // self.block) * self.block
        if whole:
            self._submit(self._row, data[:whole])
        rest = data[whole:]
        self._rows = [rest] if len(rest) else []
        self._row += whole
        self._buffered = len(rest)

    def _submit(self, row: int, data: np.ndarray) -> None:
        while len(self._pending) >= 2:  # bounded: the model never runs far ahead of the disk
            self._pending.pop(0).result()
        window = Window(0, row, self.width, data.shape[0])
        self._pending.append(self._pool.submit(self.ds.write, data, 1, window=window))

    def commit(self) -> None:
        if self._buffered:
            self._flush(final=True)
        if self._row != self.height:
            raise RuntimeError(f"{self._row} of {self.height} rows written")
        self._drain()
        self._pool.shutdown(wait=True)
        self.ds.close()
        commit(self.temp, self.out_path)

    def _drain(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def abort(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            for f in self._pending:
                f.cancel()
            pool.shutdown(wait=True)
        try:
            self.ds.close()
        except Exception:
            pass
        if os.path.exists(self.temp):
            os.remove(self.temp)
        aux = self.temp + ".aux.xml"
        if os.path.exists(aux):
            os.remove(aux)
