"""The export's command line: ``python -m dl_engine export --raster R --out-folder F ...`` (a person
or a script: log lines on stderr, one JSON line of results on stdout), or ``--job FILE``, a job
written by the Processing algorithm (``dl_engine/export/job.py``), run as a worker: JSON-lines
events on stdout, SIGTERM/SIGINT as a cancel (``dl_engine/worker.py``).

Exit codes: 0 done, 2 bad input, 130 canceled (1 crash, as a worker)."""

from __future__ import annotations

import json
import sys
from dataclasses import fields

from ..errors import Canceled, InputError
from ..events import LOG, Events
from .config import IMAGE_FORMATS, METADATA_FORMATS, REFERENCE_SYSTEMS, ExportConfig, RasterLabels, VectorLabels


def add_parser(sub) -> None:
    d = {f.name: f.default for f in fields(ExportConfig)}  # the defaults are ExportConfig's
    p = sub.add_parser("export", help="Export Training Data For Deep Learning")
    p.add_argument("--job", help="a job file written by the Processing algorithm (then no other flag is needed); "
                                 "events go to stdout as JSON lines")
    p.add_argument("--raster", help="input raster (anything GDAL opens); required without --job")
    p.add_argument("--out-folder", help="required without --job")
    p.add_argument("--format", default=d["metadata_format"], choices=METADATA_FORMATS)
    p.add_argument("--labels", help="GeoJSON label features (reprojected to the raster's CRS)")
    p.add_argument("--class-field", help="property with integer class values (default classvalue/value, else 1)")
    p.add_argument("--buffer-radius", type=float, default=0.0, help="buffer in the label file's units")
    p.add_argument("--class-raster", help="classified raster as labels (instead of --labels)")
    p.add_argument("--image-format", default=d["image_format"], choices=IMAGE_FORMATS)
    p.add_argument("--tile-size", type=int, nargs=2, default=(d["tile_size_x"], d["tile_size_y"]), metavar=("X", "Y"))
    p.add_argument("--stride", type=int, nargs=2, default=(d["stride_x"], d["stride_y"]), metavar=("X", "Y"))
    p.add_argument("--output-nofeature-tiles", action="store_true")
    p.add_argument("--start-index", type=int, default=d["start_index"])
    p.add_argument("--min-polygon-overlap-ratio", type=float, default=d["min_polygon_overlap_ratio"])
    p.add_argument("--reference-system", default=d["reference_system"], choices=REFERENCE_SYSTEMS)
    p.add_argument("--raster2")
    p.add_argument("--extent", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    p.add_argument("--cell-size", type=float)
    p.add_argument("--workers", type=int, default=d["workers"])


def _log_to_stderr(event: dict) -> None:
    """The export's log lines go to stderr; stdout holds only its result (one JSON line)."""
    if event["event"] == LOG:
        print(event["message"], file=sys.stderr)


def _config(a) -> ExportConfig:
    from .geojson_labels import read_geojson_labels

    labels = None
    if a.labels:
        wkb, values, classes = read_geojson_labels(a.labels, a.raster, a.class_field, a.buffer_radius)
        labels = VectorLabels(wkb, values, classes)
    elif a.class_raster:
        labels = RasterLabels(a.class_raster)
    return ExportConfig(
        raster=a.raster, out_folder=a.out_folder, metadata_format=a.format, labels=labels,
        image_format=a.image_format, tile_size_x=a.tile_size[0], tile_size_y=a.tile_size[1],
        stride_x=a.stride[0], stride_y=a.stride[1], output_nofeature_tiles=a.output_nofeature_tiles,
        start_index=a.start_index, min_polygon_overlap_ratio=a.min_polygon_overlap_ratio,
        reference_system=a.reference_system, raster2=a.raster2, extent=tuple(a.extent) if a.extent else None,
        cell_size=a.cell_size, workers=a.workers)


def _run_job(path: str) -> int:
    from ..worker import leave, run_job

    def job(events, cancel) -> None:
        from .exporter import run_export  # rasterio loads only for an export
        from .job import read_job
        run_export(read_job(path), events, cancel)

    return leave(run_job(job, "export"))


def run(a) -> int:
    if a.job:
        return _run_job(a.job)
    if not a.raster or not a.out_folder:
        print("error: --raster and --out-folder (or --job) required", file=sys.stderr)
        return 2
    from .exporter import run_export  # rasterio loads only for an export

    try:
        result = run_export(_config(a), Events(sink=_log_to_stderr))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Canceled, KeyboardInterrupt):
        print("canceled: nothing was written", file=sys.stderr)
        return 130
    print(json.dumps({"out_folder": result.out_folder, "num_tiles": result.num_tiles,
                      "next_tile_index": result.next_tile_index}))
    return 0
