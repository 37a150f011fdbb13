#!/usr/bin/env python3
"""Layout benchmark: is arcgis.learn's FASTERRCNN / MASKRCNN network on RESNET34 and RESNET18 as
good as this plugin's own?

A new model on those backbones gets the layout ``spec.choose_network`` picks with
``new_backbones=detection.ARCGIS_RCNN_NEW`` (resnet50/101/152 only, when this was written):
ours (``models/rcnn.py``, an FPN detector; its packages do not load in ArcGIS) or
arcgis.learn's (``models/arcgis_rcnn.py``: on resnet18/34 no FPN, one stride-32 map, 32 px
anchors; its packages load in ArcGIS). This benchmark trains both, alike, and scores them.

Data: the real sample ``trees_osbs/OSBS_029.tif`` (RGB, 0.1 m, 400 x 400 px, 61 tree crowns of
17-64 px), cut as ``quality_bench.prepare`` cuts it: the west 60 % exported for training with
the engine's ``run_export`` (PASCAL_VOC_rectangles for FASTERRCNN, RCNN_Masks for MASKRCNN;
``--chip`` px chips, ``--stride`` apart), the east 40 % held out (25 crowns, never exported).

Every run: Train Deep Learning Model (``run_training``) with the same settings for both layouts
(``--epochs``, ``--batch``, ``--lr`` fixed so that the learning-rate finder does not pick a
different rate per layout, STOP_TRAINING off so that both train every epoch, the seed); the
layout is chosen by setting ``detection.ARCGIS_RCNN_NEW`` in this process (``rcnn_network``
reads it when a model is built), and the package's emd (its Engine block) is read back to show
which was built. Weights: random for both (the engine's weight loader answers None, as it does
offline with nothing cached), or with ``--pretrained`` whatever the engine finds for the
backbone (both layouts take the same encoder from ``backbones.create_encoder``). Then Detect
Objects (``run_inference``, threshold 0.05 so that the whole precision-recall curve is there)
on the held-out raster, scored by Compute Accuracy For Object Detection
(``compute_detection_accuracy``, MIN_IOU 0.5, MASK_FEATURES the held-out extent): its AP, and
its F1 with the tool's default threshold 0.5.

    .venv/bin/python benchmarks/layout_bench.py --epochs 20 --repeats 2    # both models
    .venv/bin/python benchmarks/layout_bench.py --models FASTERRCNN --backbones RESNET34
    .venv/bin/python benchmarks/layout_bench.py --quick                    # smoke check, ~2 min

Prints a row per run (model, backbone, layout, seed, held-out AP, F1 at 0.5, the validation AP
the trainer reported, training seconds, epochs), a summary per model and backbone with the mean
AP of each layout and the ratio arcgis.learn / ours, and writes everything to
``benchmarks/output/layout_bench.json``. Wall-clock seconds: other jobs on the machine slow
both layouts alike only if they run all the time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import quality_bench as qb  # noqa: E402  (its data cut, export, engine snapshot and random weights)

OUT = qb.OUT
qb.WORK = WORK = os.path.join(OUT, "layout", str(os.getpid()))  # exports, models, detections (removed at the end)
FORMATS = {"FASTERRCNN": "PASCAL_VOC_rectangles", "MASKRCNN": "RCNN_Masks"}
LAYOUTS = ("ours", "arcgis")
THRESHOLD = 0.05  # Detect Objects' threshold for the AP: every detection the model returns
TOOL_THRESHOLD = 0.5  # Detect Objects' default threshold, for the F1


@dataclass
class Run:
    model: str
    backbone: str
    layout: str  # asked: ours / arcgis
    seed: int
    network: str  # what the emd's Engine block records
    ap: float  # held-out AP at IoU 0.5
    f1: float  # held-out F1 of the detections at TOOL_THRESHOLD
    fit_ap: float  # AP at IoU 0.5 on the training part (the raster it was trained on): how well it fits
    valid_ap: Optional[float]  # the trainer's validation AP (last epoch)
    detections: int
    seconds: float  # training
    infer_seconds: float
    epochs: int


@contextmanager
def layout(name: str, backbone: str):
    """New models on ``backbone`` get arcgis.learn's layout (``arcgis``) or ours (``ours``):
    ``rcnn_network`` reads ``detection.ARCGIS_RCNN_NEW`` from the module when it builds one."""
    from dl_engine.models import detection
    saved = detection.ARCGIS_RCNN_NEW
    others = tuple(b for b in saved if b != backbone.lower())
    detection.ARCGIS_RCNN_NEW = others + ((backbone.lower(),) if name == "arcgis" else ())
    try:
        yield
    finally:
        detection.ARCGIS_RCNN_NEW = saved


def train(ds: "qb.Dataset", model: str, backbone: str, name: str, seed: int, args) -> tuple:
    """Train Deep Learning Model in layout ``name``; (emd, network built, validation AP, epochs, seconds)."""
    from dl_engine.events import Events
    from dl_engine.train.config import TrainConfig
    from dl_engine.train.run import run_training

    out = os.path.join(WORK, f"{model}_{backbone}_{name}_{seed}")
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(in_folder=ds.export, out_folder=out, model_type=model, backbone=backbone,
                         max_epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr, stop_training=False,
                         seed=seed, write_dlpk=False, num_workers=0)
    t0 = time.time()
    with layout(name, backbone), qb.random_weights(not args.pretrained):
        result = run_training(config, Events(enabled=False))
    took = time.time() - t0
    with open(result.emd, encoding="utf-8") as f:
        network = json.load(f).get("Engine", {}).get("network", "?")
    valid_ap = (result.history[-1] if result.history else {}).get("average_precision",
                                                                  result.metrics.get("average_precision"))
    return result.emd, network, valid_ap, len(result.history), took


def held_out(ds: "qb.Dataset", emd: str, tag: str, raster: Optional[str] = None) -> tuple:
    """Detect Objects on the held-out raster (or ``raster``, a part of the same image); (AP at IoU
    0.5, F1 at TOOL_THRESHOLD, detections, seconds), the objects whose centroid is in it counted."""
    import rasterio
    import shapely
    from dl_engine.accuracy.config import DetectedObject, DetectionAccuracyConfig, TruthObject
    from dl_engine.accuracy.detection import compute_detection_accuracy
    from dl_engine.events import Events
    from dl_engine.infer.config import InferConfig
    from dl_engine.infer.run import run_inference

    out = os.path.join(WORK, f"{tag}_objects.geojson")
    t0 = time.time()
    raster = raster or ds.holdout
    run_inference(InferConfig(tool="detect_objects", in_raster=raster, model=emd, out_path=out,
                              arguments=f"threshold {THRESHOLD}", num_workers=0), Events(enabled=False))
    took = time.time() - t0
    with open(out, encoding="utf-8") as f:
        features = json.load(f)["features"]
    found = [DetectedObject(shapely.to_wkb(shapely.geometry.shape(ft["geometry"])), "1",
                            float(ft["properties"]["Confidence"]) / 100.0) for ft in features]
    with rasterio.open(raster) as src:
        extent = [shapely.to_wkb(shapely.box(*src.bounds))]
    truth = [TruthObject(w, "1") for w in ds.truth_wkb]

    def score(detections):
        if not detections:  # the tool refuses an empty layer: nothing found
            return None
        return compute_detection_accuracy(DetectionAccuracyConfig(detections, truth, min_iou=0.5, mask_wkb=extent),
                                          Events(enabled=False)).overall

    every, kept = score(found), score([d for d in found if d.confidence >= TOOL_THRESHOLD])
    return (every.ap if every else 0.0), (kept.f1_score if kept else 0.0), len(found), took


# ---- the table -------------------------------------------------------------------------------------

def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def table(runs: List[Run]) -> str:
    lines = [f"{'model':<11} {'backbone':<9} {'layout':<7} {'seed':>4} {'network':<18} {'AP':>6} {'F1@.5':>6} "
             f"{'fitAP':>6} {'valAP':>6} {'dets':>5} {'train s':>8} {'infer s':>7} {'epochs':>6}"]
    for r in runs:
        valid = f"{r.valid_ap:6.3f}" if r.valid_ap is not None else f"{'-':>6}"
        lines.append(f"{r.model:<11} {r.backbone:<9} {r.layout:<7} {r.seed:>4} {r.network:<18} {r.ap:6.3f} "
                     f"{r.f1:6.3f} {r.fit_ap:6.3f} {valid} {r.detections:>5} {r.seconds:8.0f} {r.infer_seconds:7.1f} "
                     f"{r.epochs:>6}")
    lines.append("")
    lines.append(f"{'model':<11} {'backbone':<9} {'AP ours':>8} {'AP arcgis':>9} {'arcgis/ours':>11} "
                 f"{'s ours':>7} {'s arcgis':>8}  seeds")
    for key in dict.fromkeys((r.model, r.backbone) for r in runs):
        by = {name: [r for r in runs if (r.model, r.backbone) == key and r.layout == name] for name in LAYOUTS}
        ap = {name: _mean(r.ap for r in by[name]) for name in LAYOUTS}
        secs = {name: _mean(r.seconds for r in by[name]) for name in LAYOUTS}
        ratio = f"{ap['arcgis'] / ap['ours']:11.2f}" if ap["ours"] > 0 else f"{'-':>11}"
        spread = "; ".join(f"{name} " + " ".join(f"{r.ap:.3f}" for r in by[name]) for name in LAYOUTS if by[name])
        lines.append(f"{key[0]:<11} {key[1]:<9} {ap['ours']:8.3f} {ap['arcgis']:9.3f} {ratio} "
                     f"{secs['ours']:7.0f} {secs['arcgis']:8.0f}  {spread}")
    return "\n".join(lines)


def write(args, engine: str, seeds: List[int], runs: List[Run], wall: float) -> None:
    """The figures so far (after every run: a run cut short keeps what it measured)."""
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, args.json)
    with open(path + ".tmp", "w") as f:
        json.dump({"engine": engine, "settings": {k: v for k, v in vars(args).items() if k != "json"}, "seeds": seeds,
                   "threshold": THRESHOLD, "seconds": round(wall), "runs": [asdict(r) for r in runs]}, f, indent=1)
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="FASTERRCNN,MASKRCNN", help="FASTERRCNN, MASKRCNN or both (default)")
    p.add_argument("--backbones", default="RESNET34,RESNET18", help="default RESNET34,RESNET18")
    p.add_argument("--layouts", default="ours,arcgis", help="ours, arcgis or both (default)")
    p.add_argument("--epochs", type=int, default=20, help="MAX_EPOCHS of every run (default 20)")
    p.add_argument("--repeats", type=int, default=1, help="seeds per model, backbone and layout (default 1)")
    p.add_argument("--chip", type=int, default=128, help="chip size of the exports (default 128)")
    p.add_argument("--stride", type=int, default=64, help="stride of the exports (default 64: 18 chips)")
    p.add_argument("--batch", type=int, default=4, help="BATCH_SIZE (default 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="LEARNING_RATE, the same for both layouts (default 1e-3)")
    p.add_argument("--pretrained", action="store_true",
                   help="the backbone weights the engine finds (cached / downloaded) instead of random ones")
    p.add_argument("--quick", action="store_true", help="a smoke check: 64 px chips, 1 epoch, RESNET18, 1 seed")
    p.add_argument("--keep", action="store_true", help="keep the models and detections (benchmarks/output/layout/)")
    p.add_argument("--no-snapshot", action="store_true", help="import the working tree's engine, not a copy")
    p.add_argument("--json", default="layout_bench.json", help="the figures' file in benchmarks/output")
    args = p.parse_args(argv)
    if args.quick:
        args.chip, args.stride, args.epochs, args.repeats, args.backbones = 64, 64, 1, 1, "RESNET18"
    os.environ.setdefault("DLT_WEIGHTS_OFFLINE", "1")
    engine = qb._paths(not args.no_snapshot, None)
    import torch

    models = [m.strip().upper() for m in args.models.split(",") if m.strip()]
    backbones = [b.strip().upper() for b in args.backbones.split(",") if b.strip()]
    layouts = [name.strip() for name in args.layouts.split(",") if name.strip()]
    bad = [name for name in layouts if name not in LAYOUTS] + [m for m in models if m not in FORMATS]
    if bad:
        p.error(f"unknown: {', '.join(bad)} (layouts: {', '.join(LAYOUTS)}; models: {', '.join(FORMATS)})")
    seeds = [42 + i for i in range(max(1, args.repeats))]
    print(f"layout bench of {engine}'s engine: {args.epochs} epochs, chips {args.chip} px stride {args.stride}, "
          f"batch {args.batch}, lr {args.lr:g}, {'pretrained' if args.pretrained else 'random'} weights, "
          f"{len(seeds)} seed(s); torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    t_all = time.time()
    runs: List[Run] = []
    data: Dict[str, "qb.Dataset"] = {}
    for model in models:
        fmt = FORMATS[model]
        if fmt not in data:
            data[fmt] = qb.prepare("trees", False, metadata_format=fmt, tile=args.chip, stride=args.stride,
                                   folder_name=f"trees_{fmt}")
            print(f"exported the training part as {fmt}: {data[fmt].chips} chips", flush=True)
        ds = data[fmt]
        for seed in seeds:  # every backbone and layout once before the next seed: a cut-short run has them all
            for backbone in backbones:
                for name in layouts:
                    tag = f"{model}_{backbone}_{name}_{seed}"
                    emd, network, valid_ap, epochs, took = train(ds, model, backbone, name, seed, args)
                    ap, f1, found, infer_s = held_out(ds, emd, tag)
                    fit_ap = held_out(ds, emd, tag + "_fit", os.path.join(os.path.dirname(ds.holdout), "train.tif"))[0]
                    runs.append(Run(model, backbone, name, seed, network, ap, f1, fit_ap, valid_ap, found, took,
                                    infer_s, epochs))
                    valid = f"{valid_ap:.3f}" if valid_ap is not None else "-"
                    print(f"  {model} {backbone} {name} seed {seed}: emd network {network}; held-out AP {ap:.3f}, "
                          f"F1@{TOOL_THRESHOLD} {f1:.3f} ({found} detections), AP on the training part {fit_ap:.3f}, "
                          f"validation AP {valid}, {epochs} epochs, {took:.0f} s training, {infer_s:.1f} s detecting",
                          flush=True)
                    write(args, engine, seeds, runs, time.time() - t_all)
                    if not args.keep:
                        shutil.rmtree(os.path.dirname(emd), ignore_errors=True)
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)
    shutil.rmtree(os.path.join(OUT, f"quality_snapshot_{os.getpid()}"), ignore_errors=True)
    wall = time.time() - t_all
    print()
    print(table(runs))
    print(f"\n{wall:.0f} s in all; load average {os.getloadavg()[0]:.2f} at the end")
    write(args, engine, seeds, runs, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
