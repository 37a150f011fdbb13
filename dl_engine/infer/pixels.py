"""Classify Pixels Using Deep Learning: tiles with overlap through the model, the centre of
each tile kept (the padding border, where the model lacks context, is discarded: no seams),
class indices mapped to the emd's class values, written strip by strip (writer.py)."""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .grid import Tile, TileLayout, batches
from .job import Clock, Job, Progress
from .prefetch import ThreadLocalResource, prefetch
from .source import WindowSource
from .writer import ClassRasterWriter, class_table

OUT_PARAMETER = "OUT_CLASSIFIED_RASTER"


def read_tiles(source: WindowSource, tiles: List[Tile], tile: int, dtype) -> Tuple[np.ndarray, List[np.ndarray]]:
    """(raw (n, bands, tile, tile), valid centre of each tile)."""
    raw = np.empty((len(tiles), source.count, tile, tile), dtype)
    valid = []
    for k, t in enumerate(tiles):
        data, ok = source.read(*t.window, tile, tile)
        raw[k] = data
        p = t.padding
        valid.append(ok[p:p + t.height, p:p + t.width])
    return raw, valid


def classify_pixels(job: Job) -> Dict[str, object]:
    args, grid, model = job.args, job.grid, job.model
    layout = TileLayout(grid.width, grid.height, args.tile, args.padding)
    table = class_table(model.classes)
    writer = ClassRasterWriter(job.config.out_path, grid, table, OUT_PARAMETER,
                               tags={"MODEL": str(job.config.model), "TILE_SIZE": str(args.tile),
                                     "PADDING": str(args.padding)})
    sources = ThreadLocalResource(lambda: WindowSource(job.raster, grid, args.padding, fill=job.model.normalization.nodata_fill()))
    counts = np.zeros(len(table.lut), np.int64)
    nodata_pixels = 0
    strip = np.empty((layout.stride, grid.width), table.dtype)
    lut = table.lut.astype(table.dtype)
    progress = Progress(job.events, len(layout), "tiles")
    dtype = job.raw_dtype

    def load(tiles: List[Tile]):
        return (tiles,) + read_tiles(sources.get(), tiles, args.tile, dtype)

    reader = prefetch(batches(layout, args.batch_size), load, job.workers, job.depth)
    clock = Clock()
    skipped = 0
    try:
        for tiles, raw, valid in clock.waiting(reader):
            job.check_cancel()
            # tiles without data (an image's NoData collar) skip the model
            busy = [k for k, v in enumerate(valid) if v.any()]
            if busy:
                with clock.model():
                    index = job.predictor.classify_pixels(raw if len(busy) == len(tiles) else raw[busy],
                                                          args.predict_background, args.test_time_augmentation)
            row_of = {k: i for i, k in enumerate(busy)}
            p = args.padding
            for k, t in enumerate(tiles):
                ok = valid[k]
                if k in row_of:
                    centre = index[row_of[k], p:p + t.height, p:p + t.width]
                    values = lut[centre]
                    values[~ok] = table.nodata
                    counts += np.bincount(centre[ok].ravel(), minlength=len(counts))[:len(counts)]
                else:
                    values = table.nodata
                strip[:t.height, t.col:t.col + t.width] = values
                nodata_pixels += int(ok.size - np.count_nonzero(ok))
                if t.last_in_row:
                    writer.write_rows(t.row, strip[:t.height].copy())
            skipped += len(tiles) - len(busy)
            progress.advance(len(tiles))
        job.check_cancel()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()  # stops the reader threads before their handles close
        sources.close()
    class_counts = {str(int(v)): int(n) for v, n in zip(table.lut, counts)}
    return {"tiles": len(layout), "class_counts": class_counts, "nodata_pixels": nodata_pixels,
            "nodata": table.nodata, "dtype": table.dtype, "skipped_tiles": skipped, **clock.figures()}
