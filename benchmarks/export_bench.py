#!/usr/bin/env python3
"""Export benchmark (issue 2, item 6).

One run builds (or reuses) two synthetic data sets under ``benchmarks/output/data/``

* ``1x``: 12000 x 12000 3-band uint8 GeoTIFF (EPSG:32617, 0.5 m pixels, 256x256 tiles,
  DEFLATE + horizontal predictor) with 20,000 label polygons;
* ``4x``: 24000 x 24000, same pixel size, 80,000 polygons (same density);

and then measures, on the chip windows the export reads with its defaults (256 x 256 tiles,
stride 128, the right/bottom windows padded):

* ``plain_read``   rasterio window reads of every window, nothing written;
* ``copy_bound``   read every window and write it as an LZW GeoTIFF chip (CRS + transform,
                   TILED, 128 x 128 blocks): what ArcGIS writes, without labels;
* ours             ``dl_engine.export.run_export`` for Classified_Tiles and PASCAL_VOC_rectangles
                   with every polygon, ``output_nofeature_tiles=True`` (so the chip count equals
                   the copy bound's window count), with all cores and with one worker, plus
                   Classified_Tiles with the default ``output_nofeature_tiles=False`` (its
                   chip count).

Each measurement runs in a fresh child process (this script with ``--measure``) so that the
peak memory figures belong to that measurement alone. The parent samples the RSS (and PSS)
of the child and all its descendants every 0.1 s and reports the peak of their sum; the
child also reports ``ru_maxrss`` of itself and of its largest (waited-for) worker.

Results: a table on stdout and ``benchmarks/output/export_bench.json``.
Run ``python benchmarks/export_bench.py --help`` for the options; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
# The measurements import the engine from a snapshot the parent took at the start of the run
# (the working tree may change while a long run goes on); see snapshot_engine().
ENGINE_PATH_ENV = "EXPORT_BENCH_ENGINE_PATH"
if os.environ.get(ENGINE_PATH_ENV):
    sys.path.insert(0, os.environ[ENGINE_PATH_ENV])

OUTPUT_DIR = os.path.join(HERE, "output")
SNAPSHOT_DIR = os.path.join(OUTPUT_DIR, "engine_snapshot")
DATA_DIR = os.path.join(OUTPUT_DIR, "data")
TMP_DIR = os.path.join(OUTPUT_DIR, "tmp")
JSON_PATH = os.path.join(OUTPUT_DIR, "export_bench.json")
RUNS_DIR = os.path.join(OUTPUT_DIR, "runs")

# --------------------------------------------------------------------------- data sets

DATA_VERSION = 1  # bump when the generator changes; cached files of another version are rebuilt
SIZES: Dict[str, Dict[str, int]] = {
    "1x": {"size": 12000, "polygons": 20000, "seed": 1},
    "4x": {"size": 24000, "polygons": 80000, "seed": 4},
}
CRS = "EPSG:32617"
PIXEL = 0.5  # metres
ORIGIN_X = 400000.0  # upper-left corner
ORIGIN_Y = 4500000.0
BLOCK = 256
TILE = 256
STRIDE = 128

MEASURES = [
    # name, label, metadata format (None: baseline), workers, output_nofeature_tiles
    ("plain_read", "plain read (no write)", None, None, None),
    ("copy_bound", "copy bound (LZW chips)", None, None, None),
    ("classified", "ours Classified_Tiles", "Classified_Tiles", 0, True),
    ("classified_w1", "ours Classified_Tiles w=1", "Classified_Tiles", 1, True),
    ("voc", "ours PASCAL_VOC", "PASCAL_VOC_rectangles", 0, True),
    ("voc_w1", "ours PASCAL_VOC w=1", "PASCAL_VOC_rectangles", 1, True),
    ("classified_nofeat_false", "ours Classified nofeature=False", "Classified_Tiles", 0, False),
    # Issue 3 formats: instance masks per class, and one chip per feature (chip count = features, not windows).
    ("rcnn", "ours RCNN_Masks", "RCNN_Masks", 0, True),
    ("labeled", "ours Labeled_Tiles (1 chip/feature)", "Labeled_Tiles", 0, True),
]
MEASURE_BY_NAME = {m[0]: m for m in MEASURES}


def data_paths(size_key: str) -> Tuple[str, str, str]:
    base = os.path.join(DATA_DIR, f"bench_{size_key}")
    return base + ".tif", base + "_polygons.npz", base + ".json"


def _stamp(size_key: str) -> dict:
    spec = SIZES[size_key]
    return {
        "version": DATA_VERSION,
        "size": spec["size"],
        "polygons": spec["polygons"],
        "seed": spec["seed"],
        "crs": CRS,
        "pixel": PIXEL,
        "origin": [ORIGIN_X, ORIGIN_Y],
    }


def make_polygons(size_key: str):
    """Random label polygons inside the raster: half rectangles (some rotated), half irregular
    star-shaped 5-12-vertex polygons; 2-40 m across; class values 1-3."""
    import numpy as np
    import shapely

    spec = SIZES[size_key]
    n = spec["polygons"]
    rng = np.random.default_rng(1000 + spec["seed"])
    extent = spec["size"] * PIXEL
    margin = 25.0
    cx = ORIGIN_X + rng.uniform(margin, extent - margin, n)
    cy = ORIGIN_Y - rng.uniform(margin, extent - margin, n)
    across = rng.uniform(2.0, 40.0, n)
    is_rect = rng.random(n) < 0.5
    values = rng.integers(1, 4, n).astype(np.uint8)
    geoms = []
    for i in range(n):
        r = across[i] / 2.0
        if is_rect[i]:
            h = r * rng.uniform(0.35, 1.0)
            corners = np.array([[-r, -h], [r, -h], [r, h], [-r, h]])
            if rng.random() < 0.6:  # rotated
                a = rng.uniform(0, math.pi)
                rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                corners = corners @ rot.T
        else:
            k = int(rng.integers(5, 13))
            angles = np.sort((np.arange(k) + rng.uniform(-0.35, 0.35, k)) * (2 * math.pi / k))
            radii = r * rng.uniform(0.5, 1.0, k)
            corners = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
        corners = corners + [cx[i], cy[i]]
        geoms.append(shapely.Polygon(corners))
    geoms = np.array(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    return geoms, values


def save_polygons(path: str, geoms, values) -> None:
    import numpy as np
    import shapely

    wkb = shapely.to_wkb(geoms)
    lengths = np.fromiter((len(b) for b in wkb), dtype=np.int64, count=len(wkb))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    blob = np.frombuffer(b"".join(wkb), dtype=np.uint8)
    tmp = path + ".part.npz"
    np.savez(tmp, blob=blob, offsets=offsets, values=values)
    os.replace(tmp, path)


def load_polygons(path: str) -> Tuple[List[bytes], List[int]]:
    import numpy as np

    with np.load(path) as z:
        blob = z["blob"].tobytes()
        offsets = z["offsets"]
        values = z["values"].astype(int).tolist()
    wkb = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    return wkb, values


# -- raster content: smooth multi-octave value noise (deterministic per pixel, so strips can be
# -- made independently), the label polygons painted in class colours, and sensor noise.

_G: dict = {}  # per-process state of the strip generator


def _hash01(ix, iy, seed: int):
    import numpy as np

    with np.errstate(over="ignore"):
        h = ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h = h ^ (iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        h = h ^ np.uint64((seed * 0x165667B1 + 0x27D4EB2F) & 0xFFFFFFFFFFFFFFFF)
        h = h ^ (h >> np.uint64(29))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(32))
        h = h * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(29))
    return ((h >> np.uint64(40)).astype(np.float32)) * np.float32(1.0 / (1 << 24))


def _smooth(t):
    return t * t * (3.0 - 2.0 * t)


def _value_noise(y0: int, h: int, width: int, spacing: int, seed: int):
    """Bilinear (smoothstep) value noise in [0, 1) for rows y0..y0+h, columns 0..width."""
    import numpy as np

    ly0 = y0 // spacing
    ly1 = (y0 + h - 1) // spacing + 1
    lx1 = (width - 1) // spacing + 1
    iy = np.arange(ly0, ly1 + 1, dtype=np.int64)[:, None]
    ix = np.arange(0, lx1 + 1, dtype=np.int64)[None, :]
    lat = _hash01(ix, iy, seed)
    fx = np.arange(width, dtype=np.float32) / np.float32(spacing)
    i0 = np.floor(fx).astype(np.int64)
    tx = _smooth(fx - i0)
    lx = lat[:, i0] * (1.0 - tx) + lat[:, i0 + 1] * tx
    fy = np.arange(y0, y0 + h, dtype=np.float32) / np.float32(spacing)
    j0 = np.floor(fy).astype(np.int64)
    ty = _smooth(fy - j0)[:, None]
    j0 = j0 - ly0
    return lx[j0] * (1.0 - ty) + lx[j0 + 1] * ty


OCTAVES = ((1024, 1.0), (256, 0.55), (64, 0.3), (16, 0.16), (4, 0.08), (2, 0.04))
CLASS_COLOURS = {1: (150, 92, 80), 2: (72, 120, 58), 3: (70, 96, 140)}


def _gen_init(size_key: str, poly_path: str) -> None:
    import numpy as np
    import shapely

    wkb, values = load_polygons(poly_path)
    geoms = shapely.from_wkb(wkb)
    spec = SIZES[size_key]
    rng = np.random.default_rng(2000 + spec["seed"])
    base = np.array([CLASS_COLOURS[v] for v in values], dtype=np.float32)
    colours = np.clip(base + rng.normal(0, 18, (len(values), 3)), 0, 255).astype(np.float32)
    _G.update(
        size=spec["size"],
        seed=spec["seed"],
        geoms=geoms,
        tree=shapely.STRtree(geoms),
        colours=np.vstack([np.zeros((1, 3), np.float32), colours]),  # index 0: no polygon
    )


def _gen_strip(strip: int):
    """One 256-row strip of the raster, (3, h, width) uint8."""
    import numpy as np
    import shapely
    from rasterio import features
    from rasterio.transform import from_origin

    size, seed = _G["size"], _G["seed"]
    y0 = strip * BLOCK
    h = min(BLOCK, size - y0)
    w = size
    fields = []
    for f in range(3):
        acc = np.zeros((h, w), np.float32)
        norm = 0.0
        for o, (spacing, amp) in enumerate(OCTAVES):
            acc += np.float32(amp) * _value_noise(y0, h, w, spacing, seed * 100 + f * 10 + o)
            norm += amp
        fields.append(acc / np.float32(norm) - np.float32(0.5))
    # terrain-like colours: correlated bands
    mix = np.array([[150, 60, -20], [140, 80, 10], [110, 40, 50]], np.float32)
    base = np.array([118, 122, 98], np.float32)
    img = np.empty((3, h, w), np.float32)
    for b in range(3):
        img[b] = base[b] + mix[b, 0] * fields[0] + mix[b, 1] * fields[1] + mix[b, 2] * fields[2]

    # paint the label polygons (ids 1..n) onto the strip
    tr = from_origin(ORIGIN_X, ORIGIN_Y - y0 * PIXEL, PIXEL, PIXEL)
    box = shapely.box(ORIGIN_X, ORIGIN_Y - (y0 + h) * PIXEL, ORIGIN_X + w * PIXEL, ORIGIN_Y - y0 * PIXEL)
    idx = _G["tree"].query(box)
    if len(idx):
        ids = features.rasterize(
            ((_G["geoms"][i], int(i) + 1) for i in idx), out_shape=(h, w), transform=tr, fill=0, dtype="int32"
        )
        inside = ids > 0
        if inside.any():
            col = _G["colours"][ids[inside]]  # (k, 3)
            shade = 1.0 + 0.5 * fields[2][inside]  # some texture on the roofs / fields
            for b in range(3):
                img[b][inside] = col[:, b] * shade
    rng = np.random.default_rng([seed, strip])
    img += rng.normal(0.0, 3.0, img.shape).astype(np.float32)
    return strip, np.clip(img, 0, 255).astype(np.uint8)


def build_data(size_key: str, jobs: int) -> dict:
    """Make (or reuse) the raster and polygons of one size; returns a description."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    os.makedirs(DATA_DIR, exist_ok=True)
    tif, npz, stamp_path = data_paths(size_key)
    stamp = _stamp(size_key)
    if os.path.exists(tif) and os.path.exists(npz) and os.path.exists(stamp_path):
        with open(stamp_path) as fh:
            old = json.load(fh)
        if old.get("stamp") == stamp:
            print(f"[data {size_key}] reusing {os.path.relpath(tif, REPO_ROOT)}", flush=True)
            return old
    spec = SIZES[size_key]
    size = spec["size"]
    t0 = time.time()
    print(f"[data {size_key}] building {spec['polygons']} polygons ...", flush=True)
    geoms, values = make_polygons(size_key)
    save_polygons(npz, geoms, values)
    del geoms
    print(f"[data {size_key}] building {size}x{size} raster with {jobs} process(es) ...", flush=True)
    part = tif + ".part.tif"
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(ORIGIN_X, ORIGIN_Y, PIXEL, PIXEL),
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        compress="DEFLATE",
        predictor=2,
        interleave="pixel",
        photometric="RGB",
        BIGTIFF="IF_SAFER",
    )
    nstrips = (size + BLOCK - 1) // BLOCK
    import multiprocessing as mp

    with rasterio.Env(GDAL_CACHEMAX=128), rasterio.open(part, "w", **profile) as dst:
        if jobs > 1:
            ctx = mp.get_context("spawn")
            with ctx.Pool(jobs, initializer=_gen_init, initargs=(size_key, npz)) as pool:
                pending = []
                nxt = 0
                done = 0
                # at most 2*jobs strips in flight: memory stays flat
                while done < nstrips:
                    while nxt < nstrips and len(pending) < 2 * jobs:
                        pending.append(pool.apply_async(_gen_strip, (nxt,)))
                        nxt += 1
                    strip, arr = pending.pop(0).get()
                    dst.write(arr, window=Window(0, strip * BLOCK, size, arr.shape[1]))
                    done += 1
                    if done % 10 == 0 or done == nstrips:
                        print(f"[data {size_key}]   {done}/{nstrips} strips, {time.time() - t0:.0f} s", flush=True)
        else:
            _gen_init(size_key, npz)
            for s in range(nstrips):
                strip, arr = _gen_strip(s)
                dst.write(arr, window=Window(0, strip * BLOCK, size, arr.shape[1]))
                if (s + 1) % 10 == 0:
                    print(f"[data {size_key}]   {s + 1}/{nstrips} strips, {time.time() - t0:.0f} s", flush=True)
    os.replace(part, tif)
    raw = size * size * 3
    info = {
        "stamp": stamp,
        "raster": os.path.relpath(tif, REPO_ROOT),
        "polygons_file": os.path.relpath(npz, REPO_ROOT),
        "raster_bytes": os.path.getsize(tif),
        "raw_bytes": raw,
        "compression_ratio": round(raw / os.path.getsize(tif), 3),
        "build_seconds": round(time.time() - t0, 1),
    }
    with open(stamp_path, "w") as fh:
        json.dump(info, fh, indent=1)
    print(
        f"[data {size_key}] done in {info['build_seconds']} s: {info['raster_bytes'] / 1e6:.0f} MB "
        f"(ratio {info['compression_ratio']})",
        flush=True,
    )
    return info


# --------------------------------------------------------------------------- chip windows


def n_positions(length: int, tile: int = TILE, stride: int = STRIDE) -> int:
    """Window starts 0, stride, ... until the raster is covered (the last one padded)."""
    if length <= tile:
        return 1
    return int(math.ceil((length - tile) / stride)) + 1


def grid(size_key: str, rows_limit: Optional[int]) -> Tuple[int, int]:
    size = SIZES[size_key]["size"]
    cols = n_positions(size)
    rows = n_positions(size)
    if rows_limit is not None:
        rows = max(1, min(rows, rows_limit))
    return rows, cols


def windows(size: int, rows: int, cols: int):
    """(col_off, row_off, width, height) of each window clipped to the raster, row-major."""
    for r in range(rows):
        y = r * STRIDE
        h = min(TILE, size - y)
        for c in range(cols):
            x = c * STRIDE
            yield x, y, min(TILE, size - x), h


def limited_extent(size_key: str, rows: int):
    """The extent (xmin, ymin, xmax, ymax) whose chip grid is the first ``rows`` window rows,
    or None for the whole raster."""
    size = SIZES[size_key]["size"]
    if rows >= n_positions(size):
        return None
    height_px = (rows - 1) * STRIDE + TILE
    return (ORIGIN_X, ORIGIN_Y - height_px * PIXEL, ORIGIN_X + size * PIXEL, ORIGIN_Y)


# --------------------------------------------------------------------------- measurements (child)


def _folder_usage(path: str) -> Tuple[int, int]:
    files = total = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            files += 1
            try:
                total += os.path.getsize(os.path.join(root, n))
            except OSError:
                pass
    return files, total


def measure_plain_read(size_key: str, rows: int, cols: int, out: str) -> dict:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    tif = data_paths(size_key)[0]
    size = SIZES[size_key]["size"]
    n = 0
    checksum = 0
    t0 = time.perf_counter()
    with rasterio.open(tif) as src:
        for x, y, w, h in windows(size, rows, cols):
            a = src.read(window=Window(x, y, w, h))
            if w < TILE or h < TILE:
                p = np.zeros((a.shape[0], TILE, TILE), a.dtype)
                p[:, :h, :w] = a
                a = p
            checksum += int(a[0, 0, 0])
            n += 1
    secs = time.perf_counter() - t0
    return {"chips": n, "seconds": secs, "checksum": checksum}


def measure_copy_bound(size_key: str, rows: int, cols: int, out: str) -> dict:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    tif = data_paths(size_key)[0]
    size = SIZES[size_key]["size"]
    images = os.path.join(out, "images")
    os.makedirs(images)
    n = 0
    t0 = time.perf_counter()
    with rasterio.open(tif) as src:
        profile = dict(
            driver="GTiff",
            width=TILE,
            height=TILE,
            count=src.count,
            dtype=src.dtypes[0],
            crs=src.crs,
            compress="LZW",
            tiled=True,
            blockxsize=128,
            blockysize=128,
        )
        for x, y, w, h in windows(size, rows, cols):
            win = Window(x, y, w, h)
            a = src.read(window=win)
            if w < TILE or h < TILE:
                p = np.zeros((a.shape[0], TILE, TILE), a.dtype)
                p[:, :h, :w] = a
                a = p
            with rasterio.open(
                os.path.join(images, f"{n:09d}.tif"), "w", transform=src.window_transform(win), **profile
            ) as dst:
                dst.write(a)
            n += 1
    secs = time.perf_counter() - t0
    return {"chips": n, "seconds": secs}


def measure_ours(size_key: str, rows: int, cols: int, out: str, fmt: str, workers: int, nofeature: bool) -> dict:
    t_imp = time.perf_counter()
    import dl_engine
    from dl_engine.events import LOG, PROGRESS, Events
    from dl_engine.export import ExportConfig, VectorLabels, run_export

    import_s = time.perf_counter() - t_imp
    tif, npz, _ = data_paths(size_key)
    t_load = time.perf_counter()
    wkb, values = load_polygons(npz)
    load_s = time.perf_counter() - t_load
    cfg = ExportConfig(
        raster=tif,
        out_folder=out,
        metadata_format=fmt,
        labels=VectorLabels(wkb=wkb, values=values),
        output_nofeature_tiles=nofeature,
        workers=workers,
        extent=limited_extent(size_key, rows),
    )
    logs: List[str] = []
    last_progress = [0.0]

    def sink(event):
        if event["event"] == LOG:
            logs.append(str(event["message"]))
        elif event["event"] == PROGRESS:
            last_progress[0] = float(event["percent"])

    t0 = time.perf_counter()
    res = run_export(cfg, Events(sink=sink))
    secs = time.perf_counter() - t0
    images = os.path.join(out, "images")
    image_files = len([f for f in os.listdir(images) if f.lower().endswith((".tif", ".tiff"))]) if os.path.isdir(images) else None
    return {
        "chips": int(res.num_tiles),
        "seconds": secs,
        "next_tile_index": int(res.next_tile_index),
        "classes": [getattr(c, "value", None) for c in res.classes],
        "image_tifs": image_files,
        "engine_file": dl_engine.__file__,
        "import_seconds": import_s,
        "load_labels_seconds": load_s,
        "last_progress_percent": last_progress[0],
        "log_tail": logs[-8:],
    }


def child_main(args) -> int:
    name = args.measure
    meta = MEASURE_BY_NAME[name]
    rows, cols = args.rows, args.cols
    out = args.out
    result: dict = {"measure": name, "size": args.size}
    try:
        if name == "plain_read":
            result.update(measure_plain_read(args.size, rows, cols, out))
        elif name == "copy_bound":
            result.update(measure_copy_bound(args.size, rows, cols, out))
        else:
            _, _, fmt, workers, nofeature = meta
            result.update(measure_ours(args.size, rows, cols, out, fmt, workers, nofeature))
        if name != "plain_read" and os.path.isdir(out):
            files, total = _folder_usage(out)
            result["output_files"] = files
            result["output_bytes"] = total
    except BaseException as exc:  # report, don't hide
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    kids_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["main_maxrss_mb"] = self_ru.ru_maxrss / 1024.0  # Linux: KiB
    result["children_maxrss_mb"] = kids_ru.ru_maxrss / 1024.0
    result["cpu_seconds"] = self_ru.ru_utime + self_ru.ru_stime + kids_ru.ru_utime + kids_ru.ru_stime
    with open(args.result, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0 if "error" not in result else 1


# --------------------------------------------------------------------------- memory sampler (parent)


def _proc_children_map() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces/parentheses
        rest = data[data.rfind(b")") + 2 :].split()
        kids.setdefault(int(rest[1]), []).append(int(entry))
    return kids


def _tree(pid: int) -> List[int]:
    kids = _proc_children_map()
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, ()))
    return out


def _mem_kib(pid: int) -> Tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Peak of the summed RSS / PSS of a process and its descendants."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.max_procs = 0
        self._stop_evt = threading.Event()

    def run(self):
        while not self._stop_evt.is_set():
            pids = _tree(self.pid)
            rss = pss = 0
            for p in pids:
                r, s = _mem_kib(p)
                rss += r
                pss += s
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.max_procs = max(self.max_procs, len(pids))
            self._stop_evt.wait(self.interval)

    def stop(self):
        self._stop_evt.set()
        self.join()


# --------------------------------------------------------------------------- machine load (parent)

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_times() -> Tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    total = sum(f[:8])
    return (total - idle) / _HZ, total / _HZ


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def wait_until_idle(max_wait: float, busy_cores: float = 0.3, quiet_s: int = 3) -> float:
    """Wait (at most ``max_wait`` s) until the machine has used less than ``busy_cores`` cores
    for ``quiet_s`` seconds in a row; returns the seconds waited."""
    if max_wait <= 0:
        return 0.0
    t0 = time.time()
    quiet = 0
    announced = False
    b0, _ = _cpu_times()
    while time.time() - t0 < max_wait:
        time.sleep(1.0)
        b1, _ = _cpu_times()
        quiet = quiet + 1 if (b1 - b0) < busy_cores else 0
        b0 = b1
        if quiet >= quiet_s:
            break
        if not announced and time.time() - t0 > 5:
            print("    (waiting for the machine to become idle ...)", flush=True)
            announced = True
    return time.time() - t0


# --------------------------------------------------------------------------- parent


def run_measure(name: str, size_key: str, rows: int, cols: int, verbose: bool, idle_wait: float = 0.0) -> dict:
    os.makedirs(TMP_DIR, exist_ok=True)
    out = os.path.join(TMP_DIR, f"{size_key}_{name}")
    if os.path.exists(out):
        shutil.rmtree(out)
    result_path = os.path.join(TMP_DIR, f"{size_key}_{name}.result.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--measure", name,
        "--size", size_key,
        "--rows", str(rows),
        "--cols", str(cols),
        "--out", out,
        "--result", result_path,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    waited = wait_until_idle(idle_wait)
    busy0, _ = _cpu_times()
    self0 = _self_cpu()
    t0 = time.time()
    stderr_path = os.path.join(TMP_DIR, f"{size_key}_{name}.stderr.txt")
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.stop()
    wall = time.time() - t0
    machine_busy = _cpu_times()[0] - busy0
    own = _self_cpu() - self0  # the memory sampler
    if os.path.exists(result_path):
        with open(result_path) as fh:
            res = json.load(fh)
    else:
        res = {"measure": name, "size": size_key, "error": f"child exited {rc} without a result"}
    with open(stderr_path) as fh:
        child_output = fh.read()
    if child_output.strip() and (verbose or "error" in res):
        res["child_output_tail"] = child_output[-4000:]
    res["returncode"] = rc
    res["waited_for_idle_s"] = round(waited, 1)
    # CPU the rest of the machine used meanwhile (other users' jobs), in cores: figures taken
    # while this is high are slowed down by them.
    res["other_load_cores"] = max(0.0, machine_busy - own - res.get("cpu_seconds", 0.0)) / max(wall, 1e-9)
    res["machine_busy_cores"] = machine_busy / max(wall, 1e-9)
    if res.get("chips"):
        res["cpu_ms_per_chip"] = 1000.0 * res.get("cpu_seconds", 0.0) / res["chips"]
    res["wall_seconds"] = wall
    res["tree_peak_rss_mb"] = sampler.peak_rss / 1024.0
    res["tree_peak_pss_mb"] = sampler.peak_pss / 1024.0
    res["max_processes"] = sampler.max_procs
    res["windows"] = rows * cols
    if res.get("chips") and res.get("seconds"):
        res["chips_per_s"] = res["chips"] / res["seconds"]
    if os.path.exists(out):
        shutil.rmtree(out, ignore_errors=True)
    return res


def fmt_row(cols: List[str], widths: List[int]) -> str:
    return "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


HEADER = ["raster", "measurement", "chips", "seconds", "chips/s", "vs copy", "peak RSS MB", "max proc MB",
          "out MB", "cpu ms/chip", "others"]
WIDTHS = [11, 32, 6, 7, 7, 7, 11, 11, 6, 11, 6]


def row_for(size_key: str, r: dict, copy_cps: Optional[float]) -> List[str]:
    size = SIZES[size_key]["size"]
    label = MEASURE_BY_NAME[r["measure"]][1]
    if "error" in r:
        return [f"{size}x{size}", label, "-", "-", "-", "-", f"{r.get('tree_peak_rss_mb', 0):.0f}", "-", "ERROR", "-", "-"]
    cps = r.get("chips_per_s")
    ratio = f"{cps / copy_cps:.2f}" if cps and copy_cps else "-"
    maxproc = max(r.get("main_maxrss_mb", 0), r.get("children_maxrss_mb", 0))
    outmb = f"{r['output_bytes'] / 1e6:.0f}" if r.get("output_bytes") is not None else "-"
    return [
        f"{size}x{size}",
        label,
        str(r["chips"]),
        f"{r['seconds']:.1f}",
        f"{cps:.0f}" if cps else "-",
        ratio,
        f"{r['tree_peak_rss_mb']:.0f}",
        f"{maxproc:.0f}",
        outmb,
        f"{r['cpu_ms_per_chip']:.1f}" if r.get("cpu_ms_per_chip") is not None else "-",
        f"{r.get('other_load_cores', 0):.1f}",
    ]


def snapshot_engine() -> dict:
    """Copy dl_engine/ (without caches) to benchmarks/output/engine_snapshot/ so every measurement
    of this run uses the same engine code; returns its fingerprint."""
    import hashlib

    src = os.path.join(REPO_ROOT, "dl_engine")
    dst = os.path.join(SNAPSHOT_DIR, "dl_engine")
    if os.path.exists(SNAPSHOT_DIR):
        shutil.rmtree(SNAPSHOT_DIR)
    if not os.path.isdir(src):
        return {"snapshot": None}
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha1()
    for root, dirs, files in os.walk(dst):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(root, f)
            h.update(os.path.relpath(path, dst).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    info = {"snapshot": os.path.relpath(SNAPSHOT_DIR, REPO_ROOT), "sha1": h.hexdigest()[:12]}
    try:
        info["git_head"] = subprocess.run(["git", "-C", REPO_ROOT, "log", "-1", "--format=%h %s"],
                                          capture_output=True, text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "dl_engine"],
                                capture_output=True, text=True, timeout=10).stdout
        info["uncommitted_changes"] = bool(status.strip())
    except Exception:
        pass
    os.environ[ENGINE_PATH_ENV] = SNAPSHOT_DIR  # inherited by the children
    sys.path.insert(0, SNAPSHOT_DIR)
    return info


def engine_available() -> Tuple[bool, str]:
    try:
        from dl_engine.export import run_export

        return callable(run_export), ""
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["mem_total_gb"] = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import numpy
        import rasterio
        import shapely

        info.update(rasterio=rasterio.__version__, gdal=rasterio.__gdal_version__, shapely=shapely.__version__, numpy=numpy.__version__)
    except Exception:
        pass
    try:
        info["git_head"] = subprocess.run(
            ["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except Exception:
        pass
    return info


def parent_main(args) -> int:
    t_start = time.time()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            sys.exit(f"unknown size {s!r}; choose from {', '.join(SIZES)}")
    names = [m.strip() for m in args.measures.split(",") if m.strip()] if args.measures else [m[0] for m in MEASURES]
    for n in names:
        if n not in MEASURE_BY_NAME:
            sys.exit(f"unknown measurement {n!r}; choose from {', '.join(MEASURE_BY_NAME)}")

    jobs = args.jobs or os.cpu_count() or 1
    data = {s: build_data(s, jobs) for s in sizes}
    if args.build_only:
        return 0

    engine = snapshot_engine() if not args.no_snapshot else {"snapshot": None}
    if engine.get("sha1"):
        print(f"[bench] engine snapshot {engine['sha1']} (HEAD {engine.get('git_head')}"
              f"{', with uncommitted changes' if engine.get('uncommitted_changes') else ''})", flush=True)
    ok, why = engine_available()
    if not ok:
        print(f"[bench] dl_engine.export not importable ({why}); the 'ours' measurements are skipped", flush=True)

    report = {
        "machine": machine_info(),
        "engine": engine,
        "settings": {"tile": TILE, "stride": STRIDE, "chip_format": "TIFF"},
        "sizes": {},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    rows_out: List[List[str]] = []
    print(fmt_row(HEADER, WIDTHS), flush=True)
    for s in sizes:
        full_rows = n_positions(SIZES[s]["size"])
        limit = args.limit_rows
        if s == "4x" and args.limit_rows_4x is not None:
            limit = args.limit_rows_4x
        if args.limit_windows is not None:
            lw = int(math.ceil(args.limit_windows / n_positions(SIZES[s]["size"])))
            limit = lw if limit is None else min(limit, lw)
        rows, cols = grid(s, limit)
        entry = {
            "data": data[s],
            "window_rows": rows,
            "window_cols": cols,
            "windows": rows * cols,
            "windows_full_raster": full_rows * cols,
            "extent": limited_extent(s, rows),
            "results": [],
        }
        report["sizes"][s] = entry
        copy_cps = None
        for n in names:
            meta = MEASURE_BY_NAME[n]
            if meta[2] is not None and not ok:
                r = {"measure": n, "size": s, "skipped": why}
                entry["results"].append(r)
                continue
            r = run_measure(n, s, rows, cols, args.verbose, args.wait_idle)
            entry["results"].append(r)
            if n == "copy_bound" and "error" not in r:
                copy_cps = r.get("chips_per_s")
            row = row_for(s, r, copy_cps)
            rows_out.append(row)
            print(fmt_row(row, WIDTHS), flush=True)
            if "error" in r:
                print(f"    ERROR: {r['error']}", flush=True)
                if args.verbose and r.get("traceback"):
                    print(r["traceback"], flush=True)
            elif meta[2] is not None and r.get("chips") != rows * cols and meta[4]:
                print(f"    note: {r.get('chips')} chips, but {rows * cols} windows", flush=True)
        # ratios against the copy bound, also into the JSON
        for r in entry["results"]:
            if copy_cps and r.get("chips_per_s"):
                r["ratio_vs_copy_bound"] = r["chips_per_s"] / copy_cps
        with open(JSON_PATH + ".part", "w") as fh:  # partial results survive an interrupted run
            json.dump(report, fh, indent=1)

    total = time.time() - t_start
    report["total_seconds"] = total
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with open(JSON_PATH, "w") as fh:
        json.dump(report, fh, indent=1)
    # every run is kept as well: a quick run must not replace the figures of a full one
    os.makedirs(RUNS_DIR, exist_ok=True)
    with open(os.path.join(RUNS_DIR, time.strftime("export_bench-%Y%m%d-%H%M%S.json")), "w") as fh:
        json.dump(report, fh, indent=1)
    if os.path.exists(JSON_PATH + ".part"):
        os.remove(JSON_PATH + ".part")

    print()
    print(f"Export benchmark: {TILE}x{TILE} chips, stride {STRIDE}, {report['machine'].get('cpus')} CPUs "
          f"({report['machine'].get('cpu', '?')})")
    if engine.get("sha1"):
        print(f"  engine: snapshot {engine['sha1']} of dl_engine/ at HEAD {engine.get('git_head')}"
              f"{' + uncommitted changes' if engine.get('uncommitted_changes') else ''}")
    for s in sizes:
        e = report["sizes"][s]
        d = e["data"]
        part = "" if e["windows"] == e["windows_full_raster"] else f" (first {e['window_rows']} of {n_positions(SIZES[s]['size'])} window rows)"
        print(f"  {s}: {SIZES[s]['size']}x{SIZES[s]['size']} px, {SIZES[s]['polygons']} polygons, "
              f"{d['raster_bytes'] / 1e6:.0f} MB DEFLATE (ratio {d['compression_ratio']}), "
              f"{e['windows']} windows{part}")
    print()
    print(fmt_row(HEADER, WIDTHS))
    print(fmt_row(["-" * w for w in WIDTHS], WIDTHS))
    for row in rows_out:
        print(fmt_row(row, WIDTHS))
    skipped = [r for e in report["sizes"].values() for r in e["results"] if "skipped" in r]
    if skipped:
        print(f"\n{len(skipped)} measurement(s) skipped: {skipped[0]['skipped']}")
    print("\nchips/s: chips over the measurement's own seconds; vs copy: chips/s over the copy bound's (same raster);\n"
          "peak RSS MB: peak of the summed RSS of the measurement's process tree, sampled every 0.1 s;\n"
          "max proc MB: largest ru_maxrss of one process; out MB: bytes written; cpu ms/chip: CPU time (all\n"
          "threads/processes) per chip; others: cores busy with other jobs on the machine meanwhile (> 0.3:\n"
          "the figure is slowed down by them).")
    print(f"total {total:.0f} s; JSON: {os.path.relpath(JSON_PATH, REPO_ROOT)}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1x,4x", help="comma-separated data sets to run (1x, 4x); default both")
    p.add_argument("--measures", default=None, help=f"comma-separated subset of: {', '.join(MEASURE_BY_NAME)}")
    p.add_argument("--limit-rows", type=int, default=None, help="measure only the first N rows of windows (every size)")
    p.add_argument("--limit-rows-4x", type=int, default=None, help="the same, for the 4x raster only")
    p.add_argument("--limit-windows", type=int, default=None,
                   help="measure about N windows per size (rounded up to whole rows of windows)")
    p.add_argument("--quick", action="store_true", help="shorthand for --limit-rows 16")
    p.add_argument("--jobs", type=int, default=0, help="processes for building the data (0: every core)")
    p.add_argument("--wait-idle", type=float, default=120.0,
                   help="before each measurement wait up to this many seconds for other jobs to leave the CPUs "
                        "idle (0: don't wait); default 120")
    p.add_argument("--no-snapshot", action="store_true",
                   help="import dl_engine from the working tree instead of a snapshot taken at the start")
    p.add_argument("--build-only", action="store_true", help="build/reuse the data sets and stop")
    p.add_argument("-v", "--verbose", action="store_true", help="keep child output and tracebacks")
    # child mode
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cols", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        return child_main(args)
    if args.quick and args.limit_rows is None:
        args.limit_rows = 16
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
