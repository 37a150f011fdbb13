"""Command line of the engine (no QGIS): ``python -m dl_engine export --help``,
``python -m dl_engine train --help``, ``python -m dl_engine infer --help``,
``python -m dl_engine autodl --help``, ``python -m dl_engine importweights --help``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import List, Optional

from .errors import Canceled, InputError
from .events import LOG, Events
from .export import IMAGE_FORMATS, METADATA_FORMATS, REFERENCE_SYSTEMS, ExportConfig, RasterLabels, VectorLabels


def _export_parser(sub) -> None:
    d = {f.name: f.default for f in fields(ExportConfig)}  # the defaults are ExportConfig's
    p = sub.add_parser("export", help="Export Training Data For Deep Learning")
    p.add_argument("--raster", required=True, help="input raster (anything GDAL opens)")
    p.add_argument("--out-folder", required=True)
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


def _run_export(a) -> int:
    from .export import run_export  # rasterio loads only for an export
    from .export.geojson_labels import read_geojson_labels

    labels = None
    if a.labels:
        wkb, values, classes = read_geojson_labels(a.labels, a.raster, a.class_field, a.buffer_radius)
        labels = VectorLabels(wkb, values, classes)
    elif a.class_raster:
        labels = RasterLabels(a.class_raster)
    config = ExportConfig(
        raster=a.raster, out_folder=a.out_folder, metadata_format=a.format, labels=labels,
        image_format=a.image_format, tile_size_x=a.tile_size[0], tile_size_y=a.tile_size[1],
        stride_x=a.stride[0], stride_y=a.stride[1], output_nofeature_tiles=a.output_nofeature_tiles,
        start_index=a.start_index, min_polygon_overlap_ratio=a.min_polygon_overlap_ratio,
        reference_system=a.reference_system, raster2=a.raster2, extent=tuple(a.extent) if a.extent else None,
        cell_size=a.cell_size, workers=a.workers)
    result = run_export(config, Events(sink=_log_to_stderr))
    print(json.dumps({"out_folder": result.out_folder, "num_tiles": result.num_tiles,
                      "next_tile_index": result.next_tile_index}))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dl_engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _export_parser(sub)
    from .train.cli import add_parser as _train_parser  # torch is imported only when training runs
    _train_parser(sub)
    from .infer.cli import add_parser as _infer_parser  # likewise: torch loads when inference runs
    _infer_parser(sub)
    from .autodl.cli import add_parser as _autodl_parser
    _autodl_parser(sub)
    from .models.cli import add_parser as _import_weights_parser  # Import Pretrained Weights
    _import_weights_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train.cli import run as _run_train
        return _run_train(args)
    if args.command == "autodl":
        from .autodl.cli import run as _run_autodl
        return _run_autodl(args)
    if args.command == "importweights":
        from .models.cli import run as _run_import_weights
        return _run_import_weights(args)
    if args.command == "infer":
        from .infer.cli import run as _run_infer
        return _run_infer(args)
    try:
        return _run_export(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Canceled, KeyboardInterrupt):
        print("canceled: nothing was written", file=sys.stderr)
        return 130
