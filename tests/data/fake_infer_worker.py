"""A stand-in for ``python -m dl_engine infer``: writes what the engine would (from the
InferConfig it is given) and prints the worker's JSON-line events.

    python fake_infer_worker.py MODE -m dl_engine infer --config FILE

(what a DLT_PYTHON wrapper script passes on). MODE:

- ``ok``: classify_pixels → a single-band UInt8 GeoTIFF on the raster's grid (or on EXTENT /
  CELL_SIZE) with class values 1 and 2 in vertical stripes, 0 = NoData, and a colour table;
  detect_objects → three boxes at known pixel positions; classify_objects → every input
  feature but the last with a label and a confidence (the last one is left out, as the engine
  leaves out features outside the raster), or without IN_FEATURES four tiles.
  GeoJSON in the raster's CRS with a top-level ``crs_wkt``.
- ``empty``: as ``ok``, but detect_objects finds nothing (an empty FeatureCollection).
- ``error``: an ``error`` event naming IN_RASTER (a band count mismatch), exit 2.
- ``slow``: progress, then sleeps; SIGTERM → a ``canceled`` event, exit 130.

Any other command (``export``, ``accuracy``: the other steps of a Modeler chain) runs the real engine.

When the environment variable FAKE_INFER_RECORD names a folder, the config is copied there
(``config.json``), IN_FEATURES too (``in_features.geojson``), and the pid (``pid``).

The events and the exit codes are the engine's own (dl_engine.events.Events and EXIT_*): the
runner puts the plugin folder on PYTHONPATH, as it does for the real worker.
"""

import json
import os
import shutil
import sys

from dl_engine.events import EXIT_BAD_INPUT, EXIT_CANCELED, EXIT_OK, Events

from fake_signals import catch_sigterm, sigterm_within  # beside this script

EVENTS = Events.json_lines()

# Detections in raster pixels: (col0, row0, col1, row1, class name, class value, confidence).
BOXES = [(10, 10, 30, 40, "Tree", 1, 91.5), (100, 50, 120, 60, "Tree", 1, 55.0), (5, 200, 25, 230, "Car", 2, 70.25)]


def open_raster(path):
    from osgeo import gdal

    dataset = gdal.Open(path)
    return dataset, dataset.GetGeoTransform(), dataset.GetProjection()


def to_map(gt, col, row):
    return gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]


def box(gt, c0, r0, c1, r1):
    corners = [to_map(gt, c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
    return {"type": "Polygon", "coordinates": [[list(p) for p in corners]]}


def write_geojson(path, wkt, features):
    with open(path + ".part", "w", encoding="utf-8") as f:
        json.dump({"type": "FeatureCollection", "crs_wkt": wkt, "features": features}, f)
    os.replace(path + ".part", path)


def classify_pixels(config):
    from osgeo import gdal

    source, gt, wkt = open_raster(config["in_raster"])
    width, height = source.RasterXSize, source.RasterYSize
    if config.get("extent"):
        xmin, ymin, xmax, ymax = config["extent"]
        size = config.get("cell_size") or gt[1]
        gt = (xmin, size, 0.0, ymax, 0.0, -size)
        width, height = max(1, round((xmax - xmin) / size)), max(1, round((ymax - ymin) / size))
    elif config.get("cell_size"):
        size = config["cell_size"]
        width, height = max(1, round(width * gt[1] / size)), max(1, round(height * -gt[5] / size))
        gt = (gt[0], size, 0.0, gt[3], 0.0, -size)
    import numpy as np

    values = np.where((np.arange(width) // 10) % 2 == 0, 1, 2).astype("uint8")[None, :].repeat(height, 0)
    values[0, :] = 0  # a NoData row
    part = config["out_path"] + ".part.tif"
    out = gdal.GetDriverByName("GTiff").Create(part, width, height, 1, gdal.GDT_Byte)
    out.SetGeoTransform(gt)
    out.SetProjection(wkt)
    band = out.GetRasterBand(1)
    band.WriteArray(values)
    band.SetNoDataValue(0)
    table = gdal.ColorTable()
    table.SetColorEntry(1, (10, 20, 30, 255))
    table.SetColorEntry(2, (40, 50, 60, 255))
    band.SetRasterColorTable(table)
    band = out = None
    os.replace(part, config["out_path"])
    return {"out_path": config["out_path"], "width": width, "height": height}


def detect_objects(config, boxes=BOXES):
    _, gt, wkt = open_raster(config["in_raster"])
    features = []
    for c0, r0, c1, r1, name, value, score in boxes:
        features.append({"type": "Feature", "geometry": box(gt, c0, r0, c1, r1), "properties": {
            config["class_value_field"]: name, "ClassValue": value, config["confidence_score_field"]: score}})
    write_geojson(config["out_path"], wkt, features)
    return {"out_path": config["out_path"], "count": len(features)}


def classify_objects(config):
    dataset, gt, wkt = open_raster(config["in_raster"])
    features = []
    label = config["class_label_field"]
    if config.get("in_features"):
        with open(config["in_features"], encoding="utf-8") as f:
            given = json.load(f)["features"]
        for index, feature in enumerate(given[:-1]):
            properties = dict(feature["properties"])
            properties.update({label: "Building" if index % 2 == 0 else "Shed", "Confidence": 50.0 + index})
            features.append({"type": "Feature", "geometry": feature["geometry"], "properties": properties})
    else:
        half_w, half_h = dataset.RasterXSize // 2, dataset.RasterYSize // 2
        for index, (c, r) in enumerate(((0, 0), (half_w, 0), (0, half_h), (half_w, half_h))):
            features.append({"type": "Feature", "geometry": box(gt, c, r, c + half_w, r + half_h),
                             "properties": {"tile": index, label: "Tile", "Confidence": 10.0 * index}})
    write_geojson(config["out_path"], wkt, features)
    return {"out_path": config["out_path"], "count": len(features)}


def real_engine(argv):
    """A command other than ``infer`` (a Modeler chain's export or accuracy step) runs the real
    engine, as the runner would have with the real worker Python."""
    import runpy

    sys.argv = ["python -m dl_engine", *argv]
    runpy.run_module("dl_engine", run_name="__main__", alter_sys=True)


def main():
    mode = sys.argv[1]
    if "--job" in sys.argv and "-m" in sys.argv:  # a job the algorithm wrote for the real engine
        return real_engine(sys.argv[sys.argv.index("-m") + 2:])
    config_path = sys.argv[sys.argv.index("--config") + 1]
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    record = os.environ.get("FAKE_INFER_RECORD")
    if record:
        os.makedirs(record, exist_ok=True)
        shutil.copy(config_path, os.path.join(record, "config.json"))
        if config.get("in_features"):
            shutil.copy(config["in_features"], os.path.join(record, "in_features.geojson"))
        with open(os.path.join(record, "pid"), "w") as f:
            f.write(str(os.getpid()))
    if mode == "slow":
        catch_sigterm()
    EVENTS.progress(5.0, "loading the model")
    if mode in ("ok", "empty"):
        EVENTS.log(f"{config['tool']} on cpu")
        detect = detect_objects if mode == "ok" else (lambda c: detect_objects(c, boxes=[]))
        result = {"classify_pixels": classify_pixels, "detect_objects": detect,
                  "classify_objects": classify_objects}[config["tool"]](config)
        EVENTS.progress(100.0)
        EVENTS.result(**result)
        return EXIT_OK
    if mode == "error":
        EVENTS.error("IN_RASTER", "the model was trained on 3 bands; the raster has 1")
        return EXIT_BAD_INPUT
    if mode == "slow":
        EVENTS.progress(10.0, "tile 1 of 100")
        if sigterm_within(60):
            EVENTS.canceled("nothing was written")
            return EXIT_CANCELED
        return EXIT_OK
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3  # no engine exit code: the test called the fake wrongly


if __name__ == "__main__":
    sys.exit(main())
