#!/usr/bin/env python3
"""Quality benchmark (issue 14, item 6): do the training defaults give a useful model?

On the real sample data (``tests/data`` or ``../shared/datasets``), each raster is cut into a
training part (the west 60 %) and a held-out part (the east 40 %, never exported): spatially
separate, not a random chip split. The training part is exported with the engine's own
``run_export`` (Classified_Tiles, 64 px chips, stride 32); every model is trained for the same
wall-clock time (``--seconds``, learning-rate finder included), classifies the held-out raster
with ``run_inference`` (Classify Pixels Using Deep Learning) and is scored with
``compute_pixel_accuracy`` (Compute Accuracy For Pixel Classification, every pixel): the IoU
of the foreground class against the labels.

Datasets: ``buildings`` (elevation/hag.tif, height above ground, 1 band Float32, 2 m, with the
building footprints) and ``trees`` (trees_osbs/OSBS_029.tif, RGB, 0.1 m, with the tree-crown
rectangles as pixel labels).

Runs, per dataset:

* ``defaults``      Train Deep Learning Model with its defaults (UNET; LEARNING_RATE empty, so
                    the learning-rate finder; FREEZE; STOP_TRAINING; AUGMENTATION DEFAULT; the
                    default loss) and BACKBONE_MODEL EFFICIENTNET_LITE0, from ImageNet weights
                    (offline: they ship in a package) and from random weights; the time is a cap
                    (a deadline, as AutoDL's trials have: the schedule is fitted to it), and the
                    run ends earlier when its MAX_EPOCHS are done;
* ``plain``         the same network (built by the engine's registry) on the same chips, trained by
                    a plain PyTorch loop written here: AdamW at a fixed 1e-3, cross-entropy + dice,
                    random flips and quarter turns, batch 8, until the time is up; its weights are
                    put into a package of the engine so that the same inference and accuracy
                    functions score it;
* ``autodl``        Train Using AutoDL (BASIC) with the same time (``--autodl``, on by default),
                    against ``defaults`` (pretrained), the default single model;
* ``epochs N``      (``--epochs 10,20``) Train Deep Learning Model with every default, pretrained
                    EFFICIENTNET_LITE0, MAX_EPOCHS N and no time limit: what MAX_EPOCHS buys.

Prints one table per dataset with the held-out IoU, the epochs and seconds each run took and
the ratio of IoU against its baseline (``plain`` with the same weights; ``defaults`` random for
pretrained-vs-random; ``defaults`` pretrained for AutoDL). The figures go to
``benchmarks/output/quality_bench.json``. Single runs on tiny data are noisy: ``--repeats``
averages several seeds.

    .venv/bin/python benchmarks/quality_bench.py                     # 90 s per run, both datasets
    .venv/bin/python benchmarks/quality_bench.py --seconds 120 --datasets buildings
    .venv/bin/python benchmarks/quality_bench.py --quick             # a smoke check (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "output")
WORK = os.path.join(OUT, "quality", str(os.getpid()))  # exports, models, classified rasters (removed at the end)
TRAIN_SHARE = 0.6  # the west part of each raster is exported for training; the rest is held out
BACKBONE = "EFFICIENTNET_LITE0"
PLAIN_LR = 1e-3
PLAIN_BATCH = 8
WORKERS = None  # loader workers of the engine's runs (None: the trainer's choice; 0 with --clock cpu)


def _paths(snapshot: bool, rev: Optional[str]) -> str:
    """The engine (a copy taken now, unless --no-snapshot: edits made to the working tree during a
    long run do not mix engine versions; or ``rev``'s, to measure an earlier version) and the test
    helpers that read the sample data. Returns what was measured."""
    import subprocess
    engine_root, what = REPO, "the working tree"
    if snapshot or rev:
        engine_root = os.path.join(OUT, f"quality_snapshot_{os.getpid()}")
        shutil.rmtree(engine_root, ignore_errors=True)
        os.makedirs(engine_root)
        if rev:
            archive = subprocess.run(["git", "-C", REPO, "archive", rev, "dl_engine"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", engine_root], input=archive, check=True)
            what = "git " + subprocess.run(["git", "-C", REPO, "rev-parse", "--short", rev], check=True,
                                           capture_output=True, text=True).stdout.strip()
        else:
            shutil.copytree(os.path.join(REPO, "dl_engine"), os.path.join(engine_root, "dl_engine"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            what = "a copy of the working tree"
    sys.path[:0] = [engine_root, os.path.join(REPO, "tests", "engine")]
    return what


def data_path(*parts: str) -> str:
    for base in (os.path.join(REPO, "tests", "data"), os.path.join(os.path.dirname(REPO), "shared", "datasets")):
        p = os.path.join(base, *parts)
        if os.path.exists(p):
            return p
    raise FileNotFoundError("/".join(parts))


# ---- data: a training part exported, a held-out part kept as a raster ----------------------------

@dataclass
class Dataset:
    name: str
    export: str  # the training part's export (Classified_Tiles unless prepare was asked for another)
    holdout: str  # the held-out raster
    truth_wkb: List[bytes]  # the labels, in the raster's CRS
    chips: int = 0


def _labels(name: str, crs):
    import engine_helpers as h
    if name == "buildings":
        geoms, _ = h.read_geojson_in(data_path("elevation", "buildings.geojson"), crs)
    else:
        geoms, _, _, _ = h.read_gpkg(data_path("trees_osbs", "trees.gpkg"))
    return geoms


RASTERS = {"buildings": ("elevation", "hag.tif"), "trees": ("trees_osbs", "OSBS_029.tif")}


def prepare(name: str, quick: bool, metadata_format: str = "Classified_Tiles", tile: int = 64, stride: int = 32,
            folder_name: Optional[str] = None) -> Dataset:
    """Cut ``name``'s raster into its training and held-out parts (in WORK/``folder_name``, default
    ``name``) and export the training part as ``metadata_format`` chips of ``tile`` px, ``stride`` apart."""
    import rasterio
    import shapely
    from rasterio.windows import Window
    from dl_engine.export import ClassInfo, ExportConfig, VectorLabels, run_export
    from dl_engine.events import Events

    folder = os.path.join(WORK, folder_name or name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with rasterio.open(data_path(*RASTERS[name])) as src:
        split = int(src.width * TRAIN_SHARE)
        parts = {"train": Window(0, 0, split, src.height), "holdout": Window(split, 0, src.width - split, src.height)}
        if quick:  # a small corner of each part
            parts = {"train": Window(0, 0, min(split, 128), min(src.height, 128)),
                     "holdout": Window(split, 0, min(src.width - split, 96), min(src.height, 96))}
        for part, window in parts.items():
            profile = src.profile.copy()
            profile.update(width=int(window.width), height=int(window.height),
                           transform=src.window_transform(window), tiled=False)
            profile.pop("blockxsize", None), profile.pop("blockysize", None)
            with rasterio.open(os.path.join(folder, f"{part}.tif"), "w", **profile) as dst:
                dst.write(src.read(window=window))
        geoms = _labels(name, src.crs)
    wkb = [shapely.to_wkb(g) for g in geoms]
    label = "Building" if name == "buildings" else "Tree"
    config = ExportConfig(raster=os.path.join(folder, "train.tif"), out_folder=os.path.join(folder, "export"),
                          metadata_format=metadata_format, tile_size_x=tile, tile_size_y=tile, stride_x=stride,
                          stride_y=stride, labels=VectorLabels(wkb=wkb, values=[1] * len(wkb),
                                                           classes=[ClassInfo(1, label)]), workers=1)
    result = run_export(config, Events(enabled=False))
    return Dataset(name, config.out_folder, os.path.join(folder, "holdout.tif"), wkb,
                   int(getattr(result, "num_tiles", 0) or 0))


def held_out_iou(ds: Dataset, model: str, tag: str) -> float:
    """Classify the held-out raster with the package; the foreground class's IoU, every pixel."""
    from dl_engine.accuracy.config import PixelAccuracyConfig, PolygonTruth
    from dl_engine.accuracy.pixels import compute_pixel_accuracy
    from dl_engine.events import Events
    from dl_engine.infer.config import InferConfig
    from dl_engine.infer.run import run_inference

    out = os.path.join(WORK, ds.name, f"{tag}_classified.tif")
    run_inference(InferConfig(tool="classify_pixels", in_raster=ds.holdout, model=model, out_path=out),
                  Events(enabled=False))
    result = compute_pixel_accuracy(PixelAccuracyConfig(
        in_raster=out, ground_truth=PolygonTruth(ds.truth_wkb, [1] * len(ds.truth_wkb)), sampling="ALL_PIXELS"),
        Events(enabled=False))
    matrix = result.matrix
    return float(matrix.iou[matrix.classes.index(1)]) if 1 in matrix.classes else 0.0


# ---- the clock --------------------------------------------------------------------------------------

class CpuClock:
    """``time`` as the engine's training and AutoDL modules see it, running on this process's CPU
    time: with one torch thread and no loader workers, a budget of N seconds is N seconds of one
    core's work however busy the machine is (on a shared machine wall-clock budgets measure the
    other jobs). Everything else of ``time`` passes through."""

    def __init__(self):
        import time as real
        self._real = real
        self._wall0, self._cpu0 = real.time(), real.process_time()

    def _now(self) -> float:
        return self._wall0 + (self._real.process_time() - self._cpu0)

    def time(self) -> float:
        return self._now()

    def perf_counter(self) -> float:
        return self._now()

    def monotonic(self) -> float:
        return self._now()

    def __getattr__(self, name):
        return getattr(self._real, name)


CLOCK = time  # what the runs below time themselves with (CpuClock() with --clock cpu)
TIMED_MODULES = ("dl_engine.train.control", "dl_engine.train.loop", "dl_engine.train.run",
                 "dl_engine.train.lr_finder", "dl_engine.autodl.run", "dl_engine.autodl.search",
                 "dl_engine.autodl.trial", "dl_engine.autodl.tune")


def use_cpu_clock() -> None:
    import importlib
    import torch
    global CLOCK
    torch.set_num_threads(1)
    CLOCK = CpuClock()
    for name in TIMED_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "time", None) is time:
            module.time = CLOCK


# ---- the runs --------------------------------------------------------------------------------------

@dataclass
class Row:
    dataset: str
    run: str
    weights: str
    iou: List[float] = field(default_factory=list)
    epochs: List[int] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    note: str = ""

    @property
    def mean_iou(self) -> float:
        return sum(self.iou) / len(self.iou) if self.iou else float("nan")


@contextmanager
def random_weights(on: bool):
    """The engine's backbones without their pretrained weights (as offline with nothing cached)."""
    from dl_engine.models import weights
    if not on:
        yield
        return
    saved = weights.load_pretrained_state
    weights.load_pretrained_state = lambda *a, **k: None
    try:
        yield
    finally:
        weights.load_pretrained_state = saved


def product(ds: Dataset, tag: str, seconds: Optional[float], pretrained: bool, seed: int,
            max_epochs: Optional[int] = None, backbone: str = BACKBONE, overrides: Optional[Dict] = None):
    """Train Deep Learning Model with its defaults (and ``backbone``, and ``overrides`` of
    TrainConfig's fields); (IoU, epochs, seconds)."""
    from dl_engine.events import Events
    from dl_engine.train.config import TrainConfig
    from dl_engine.train.control import TrainControl
    from dl_engine.train.run import run_training

    out = os.path.join(WORK, ds.name, tag)
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(in_folder=ds.export, out_folder=out, backbone=backbone, seed=seed, write_dlpk=False,
                         num_workers=WORKERS)
    if max_epochs is not None:
        config.max_epochs = max_epochs
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    t0 = CLOCK.time()
    control = TrainControl(deadline=t0 + seconds if seconds is not None else None)
    with random_weights(not pretrained):
        result = run_training(config, Events(enabled=False), control=control)
    took = CLOCK.time() - t0
    return held_out_iou(ds, result.emd, tag), len(result.history), took


def plain(ds: Dataset, tag: str, seconds: float, pretrained: bool, seed: int):
    """The plain recipe: the same network, AdamW at a fixed rate, CE + dice, flips and quarter
    turns, until the time is up; scored through an engine package holding its weights."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from dl_engine.data import DataConfig, prepare_data
    from dl_engine.events import Events
    from dl_engine.models.registry import BuildContext, get_spec
    from dl_engine.train.config import TrainConfig
    from dl_engine.train.run import run_training

    t0 = CLOCK.time()
    torch.manual_seed(seed)
    td = prepare_data(DataConfig(ds.export, validation_percentage=10.0, augmentation="NONE", seed=seed), warn=False)
    train = td.valid_dataset()  # no augmentation of the engine's
    train.refs = td.train
    items = [train[i] for i in range(len(train))]
    images = torch.from_numpy(np.stack([it["image"] for it in items])).float()
    masks = torch.from_numpy(np.stack([it["mask"] for it in items]).astype(np.int64))
    spec = get_spec("UNET")
    built = spec.build(BuildContext(backbone=BACKBONE, in_channels=td.normalization.bands_in,
                                    num_classes=td.class_map.num_classes, chip_size=images.shape[-1],
                                    arguments=dict(spec.arguments), pretrained=pretrained, log=lambda m: None))
    model = built.module
    opt = torch.optim.AdamW(model.parameters(), lr=PLAIN_LR, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    epochs, deadline = 0, t0 + seconds  # then the package is written, as the product writes its own after its deadline
    model.train()
    while CLOCK.time() < deadline:
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order) - PLAIN_BATCH + 1 if len(order) > PLAIN_BATCH else 1, PLAIN_BATCH):
            if CLOCK.time() >= deadline:
                break
            idx = order[start:start + PLAIN_BATCH]
            x, y = images[idx], masks[idx]
            k = int(torch.randint(0, 4, (1,), generator=gen))
            x, y = torch.rot90(x, k, (2, 3)), torch.rot90(y, k, (1, 2))
            if torch.rand(1, generator=gen) < 0.5:
                x, y = x.flip(3), y.flip(2)
            logits = model(x)
            probs = logits.softmax(1)
            onehot = F.one_hot(y, logits.shape[1]).permute(0, 3, 1, 2).float()
            inter = (probs * onehot).sum((0, 2, 3))
            dice = 1 - ((2 * inter + 1) / (probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)).mean()
            loss = F.cross_entropy(logits, y) + dice
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epochs += 1
    # a package of the engine's for this network and data (one step), holding the plain weights
    out = os.path.join(WORK, ds.name, tag)
    shutil.rmtree(out, ignore_errors=True)
    with random_weights(True):
        result = run_training(TrainConfig(in_folder=ds.export, out_folder=out, backbone=BACKBONE, max_steps=1,
                                          learning_rate=1e-9, seed=seed, write_dlpk=False, freeze=False,
                                          num_workers=WORKERS),
                              Events(enabled=False))
    pth = os.path.splitext(result.emd)[0] + ".pth"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, pth)
    took = CLOCK.time() - t0
    return held_out_iou(ds, result.emd, tag), epochs, took


def autodl(ds: Dataset, tag: str, seconds: float, seed: int):
    from dl_engine.autodl.config import AutoDLConfig
    from dl_engine.autodl.run import run_autodl
    from dl_engine.events import Events

    out = os.path.join(WORK, ds.name, tag, "best.dlpk")
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    t0 = CLOCK.time()
    result = run_autodl(AutoDLConfig(in_data=ds.export, out_model=out, total_time_limit=seconds / 3600.0, seed=seed,
                                     num_workers=WORKERS), Events(enabled=False))
    took = CLOCK.time() - t0
    best = result.best
    note = f"best {best.get('network')} {best.get('backbone')}, {len(result.trials)} trials"
    return held_out_iou(ds, result.out_model_file, tag), int(best.get("epochs") or 0), took, note


# ---- the table -------------------------------------------------------------------------------------

BASELINES = {  # (run, weights) -> (run, weights) of the row it is compared with
    ("defaults", "ImageNet"): ("plain", "ImageNet"),
    ("defaults", "random"): ("plain", "random"),
    ("plain", "ImageNet"): ("plain", "random"),
    ("autodl", "ImageNet"): ("defaults", "ImageNet"),
}


def table(rows: List[Row]) -> str:
    lines = []
    for name in dict.fromkeys(r.dataset for r in rows):
        mine = [r for r in rows if r.dataset == name]
        by = {(r.run, r.weights): r for r in mine}
        lines.append(f"\n{name}: held-out IoU of the foreground class")
        lines.append(f"  {'run':<14} {'weights':<9} {'IoU':>6} {'epochs':>7} {'seconds':>8}  vs baseline")
        for r in mine:
            base_key = BASELINES.get((r.run, r.weights))
            if r.run == "defaults" and r.weights == "ImageNet" and base_key not in by:
                base_key = None
            base = by.get(base_key) if base_key else None
            ratio = (f"{r.mean_iou / base.mean_iou:5.2f} x {base.run} {base.weights}"
                     if base and base.mean_iou > 0 else "")
            if r.run.startswith(("epochs", "try")) and ("defaults", "ImageNet") in by:
                d = by[("defaults", "ImageNet")]
                ratio = f"{r.mean_iou / d.mean_iou:5.2f} x defaults ImageNet" if d.mean_iou > 0 else ""
            spread = f"±{(max(r.iou) - min(r.iou)) / 2:.3f}" if len(r.iou) > 1 else ""
            lines.append(f"  {r.run:<14} {r.weights:<9} {r.mean_iou:6.3f} {sum(r.epochs) / len(r.epochs):7.1f} "
                         f"{sum(r.seconds) / len(r.seconds):8.1f}  {ratio}{spread and ' ' + spread}"
                         f"{'  (' + r.note + ')' if r.note else ''}")
        # pretrained against random, with the defaults
        a, b = by.get(("defaults", "ImageNet")), by.get(("defaults", "random"))
        if a and b and b.mean_iou > 0:
            lines.append(f"  pretrained / random (defaults): {a.mean_iou / b.mean_iou:.2f} x")
    return "\n".join(lines)


def _value(text: str):
    import ast
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=90.0, help="training time of every run (default 90)")
    p.add_argument("--datasets", default="buildings,trees", help="buildings, trees or both (default)")
    p.add_argument("--runs", default="defaults,plain,autodl",
                   help="which of defaults, plain, autodl (default all three)")
    p.add_argument("--epochs", default="", help="MAX_EPOCHS values to try with every default, e.g. 10,20,40")
    p.add_argument("--variants", default="",
                   help="defaults with changes, pretrained, as 'name:field=value,field=value;name2:…' (TrainConfig "
                        "fields, e.g. 'nostop:stop_training=false;b8:batch_size=8'): candidates for new defaults")
    p.add_argument("--repeats", type=int, default=1, help="seeds per run (the IoU is averaged)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu (default): budgets in CPU seconds of one thread, in-process loading, so that other "
                        "jobs on the machine do not change the figures; wall: wall-clock seconds, the trainer's "
                        "threads and loader workers")
    p.add_argument("--quick", action="store_true", help="a smoke check: small rasters, 8 s runs, no AutoDL")
    p.add_argument("--no-snapshot", action="store_true", help="import the working tree's engine, not a copy")
    p.add_argument("--json", default=None, help="the figures' file in benchmarks/output (quality_bench.json)")
    p.add_argument("--engine-rev", default=None, help="measure the engine of this git revision (e.g. HEAD~3)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = min(args.seconds, 8.0), 1
        args.runs = ",".join(r for r in args.runs.split(",") if r != "autodl")
        args.datasets = args.datasets.split(",")[0]
        args.epochs = ""
    os.environ.setdefault("DLT_WEIGHTS_OFFLINE", "1")  # the shipped EfficientNet-Lite0 weights; no network
    engine = _paths(not args.no_snapshot, args.engine_rev)
    import torch
    global WORKERS
    if args.clock == "cpu":
        use_cpu_clock()
        WORKERS = 0
    sys.path.insert(0, HERE)
    from machine_load import busy_cpu_seconds

    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    epochs = [int(e) for e in args.epochs.split(",") if e.strip()]
    variants = {}
    for entry in filter(None, (v.strip() for v in args.variants.split(";"))):
        name, _, fields = entry.partition(":")
        variants[name.strip()] = {k.strip(): _value(v) for k, v in (f.split("=", 1) for f in fields.split(",") if f)}
    seeds = [42 + i for i in range(max(1, args.repeats))]
    print(f"quality bench of {engine}'s engine: {args.seconds:.0f} {args.clock} s per run, {len(seeds)} seed(s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    rows: List[Row] = []
    t_all, busy0 = time.time(), busy_cpu_seconds()
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        ds = prepare(name, args.quick)
        print(f"{name}: exported the training part ({ds.chips} chips); held-out raster {ds.holdout}", flush=True)
        plan = []
        if "defaults" in runs:
            plan += [("defaults", "ImageNet"), ("defaults", "random")]
        if "plain" in runs:
            plan += [("plain", "ImageNet"), ("plain", "random")]
        if "autodl" in runs:
            plan += [("autodl", "ImageNet")]
        plan += [(f"epochs {n}", "ImageNet") for n in epochs]
        plan += [(f"try {name}", "ImageNet") for name in variants]
        for run, weights in plan:
            row = Row(name, run, weights)
            for seed in seeds:
                tag = f"{run.replace(' ', '')}_{weights}_{seed}"
                pretrained = weights == "ImageNet"
                if run == "defaults":
                    iou, ep, s = product(ds, tag, args.seconds, pretrained, seed)
                elif run == "plain":
                    iou, ep, s = plain(ds, tag, args.seconds, pretrained, seed)
                elif run == "autodl":
                    iou, ep, s, row.note = autodl(ds, tag, args.seconds, seed)
                elif run.startswith("try "):
                    iou, ep, s = product(ds, tag, args.seconds, True, seed, overrides=variants[run[4:]])
                    row.note = ", ".join(f"{k} {v}" for k, v in variants[run[4:]].items())
                else:
                    iou, ep, s = product(ds, tag, None, True, seed, max_epochs=int(run.split()[1]))
                row.iou.append(iou), row.epochs.append(ep), row.seconds.append(s)
                print(f"  {name} {run} {weights} seed {seed}: IoU {iou:.3f}, {ep} epochs, {s:.0f} s", flush=True)
            rows.append(row)
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.rmtree(os.path.join(OUT, f"quality_snapshot_{os.getpid()}"), ignore_errors=True)
    wall = time.time() - t_all
    cores = (busy_cpu_seconds() - busy0) / max(wall, 1e-9)
    print(table(rows))
    print(f"\n{wall:.0f} s in all; the machine was busy {cores:.2f} cores on average (this run included), "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, args.json or "quality_bench.json"), "w") as f:
        json.dump({"engine": engine, "clock": args.clock, "seconds": args.seconds, "seeds": seeds, "busy_cores": round(cores, 2),
                   "rows": [r.__dict__ for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
