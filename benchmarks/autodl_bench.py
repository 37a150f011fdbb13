#!/usr/bin/env python3
"""AutoDL benchmark: at an equal time budget, is Train Using AutoDL's best model better than
the default single model (Train Deep Learning Model, UNET with RESNET34)?

On the bundled sample data (tests/data/elevation: hag.tif, height above ground, with the
buildings.geojson footprints in EPSG:4326), as scripts/demo.sh uses it:

1. the engine exports the buildings as Classified_Tiles, 64 x 64 px tiles, stride 32 (cached
   under the output folder and reused while the inputs and settings are the same);
2. ``baseline``: ``run_training`` of UNET RESNET34 (automatic batch size up to 64, learning
   rate 2e-3, FREEZE false, the best epoch by MIOU, no early stopping as in AutoDL's trials,
   MAX_EPOCHS 10000) ended by a ``TrainControl`` deadline at start + budget: the default single
   model given the same time;
3. ``autodl MODE``: ``run_autodl`` with TOTAL_TIME_LIMIT = the budget, for each mode asked;
4. each model's validation mIoU (all runs: seed 42, 10 % validation, so the same validation
   chips) and the IoU of the building class on the whole hag.tif: ``run_inference``
   (classify_pixels, the tool's default tiling) and the footprints reprojected and rasterized
   on the output grid as demo.sh does.

Each run (training + its evaluation) is a fresh child process, so no run inherits another's
warm caches; its wall time is measured around the ``run_training`` / ``run_autodl`` call
(imports excluded) and printed against the budget (the budget is a promise: overrun seconds).

    .venv/bin/python benchmarks/autodl_bench.py                          # 10 min each, BASIC and ADVANCED
    .venv/bin/python benchmarks/autodl_bench.py --minutes 30 --device cuda
    .venv/bin/python benchmarks/autodl_bench.py --minutes 0.5 --modes BASIC --device cpu   # smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from machine_load import run_measured, wait_idle  # benchmarks/, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO]
DEFAULT_OUT = os.path.join(HERE, "output", "autodl_bench")
DATA_CANDIDATES = (os.path.join(REPO, "tests", "data", "elevation"),
                   os.path.join(os.path.dirname(REPO), "shared", "datasets", "elevation"))

TILE, STRIDE = 64, 32
SEED, VALIDATION = 42, 10.0
BASELINE = dict(model_type="UNET", backbone="RESNET34", max_epochs=10000, batch_size=64, auto_batch_size=True,
                learning_rate=2e-3, freeze=False, stop_training=False, monitor="MIOU")


# ---- the export -----------------------------------------------------------------------------------

def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def build_export(out: str, raster: str, footprints: str) -> tuple:
    """Classified_Tiles of the footprints on hag.tif (as the CLI's export does it); reused when
    the stamp (inputs' hashes, settings) matches. Returns (folder, chips, seconds or None)."""
    from dl_engine.export import ExportConfig, VectorLabels, run_export
    from dl_engine.export.geojson_labels import read_geojson_labels

    folder = os.path.join(out, "export")
    stamp_path = os.path.join(out, "export.json")
    stamp = {"raster": _md5(raster), "labels": _md5(footprints), "format": "Classified_Tiles", "tile": TILE,
             "stride": STRIDE}
    if os.path.isfile(os.path.join(folder, "map.txt")) and os.path.isfile(stamp_path):
        with open(stamp_path) as f:
            old = json.load(f)
        if {k: old.get(k) for k in stamp} == stamp:
            return folder, old["chips"], None
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    wkb, values, classes = read_geojson_labels(footprints, raster, None, 0.0)
    result = run_export(ExportConfig(raster=raster, out_folder=folder, metadata_format="Classified_Tiles",
                                     labels=VectorLabels(wkb, values, classes), tile_size_x=TILE, tile_size_y=TILE,
                                     stride_x=STRIDE, stride_y=STRIDE))
    seconds = time.perf_counter() - t0
    with open(stamp_path, "w") as f:
        json.dump({**stamp, "chips": result.num_tiles}, f, indent=2)
    return folder, result.num_tiles, seconds


# ---- the building IoU on the whole raster ---------------------------------------------------------

def building_iou(classified: str, footprints: str, dlpk: str) -> dict:
    """demo.sh's check: the footprints (EPSG:4326) reprojected and rasterized on the output grid;
    IoU of the package's first class (every footprint is class 1) over the valid pixels."""
    import numpy as np
    import rasterio
    from rasterio.features import rasterize
    from rasterio.warp import transform_geom
    from dl_engine.package.reader import open_package

    with open_package(dlpk, "IN_MODEL_DEFINITION") as package:
        classes = package.classes
    building = classes[0]
    with rasterio.open(classified) as ds:
        predicted = ds.read(1)
        valid = predicted != ds.nodata if ds.nodata is not None else np.ones(predicted.shape, bool)
        with open(footprints, encoding="utf-8") as f:
            features = json.load(f)["features"]
        shapes = [transform_geom("EPSG:4326", ds.crs, feat["geometry"]) for feat in features]
        truth = rasterize(shapes, out_shape=predicted.shape, transform=ds.transform, fill=0, default_value=1,
                          dtype="uint8").astype(bool)
    mine = (predicted == building["Value"]) & valid
    truth &= valid
    union = int(np.logical_or(mine, truth).sum())
    inter = int(np.logical_and(mine, truth).sum())
    return {"iou": inter / union if union else 0.0, "predicted_px": int(mine.sum()), "truth_px": int(truth.sum()),
            "class": building["Name"], "value": building["Value"]}


def evaluate(dlpk: str, raster: str, footprints: str, device: str, out_tif: str) -> dict:
    from dl_engine.infer import InferConfig, run_inference

    t0 = time.perf_counter()
    run_inference(InferConfig(tool="classify_pixels", in_raster=raster, model=dlpk, out_path=out_tif, device=device))
    figures = building_iou(out_tif, footprints, dlpk)
    figures["infer_seconds"] = time.perf_counter() - t0
    return figures


# ---- one run (in a child process) ---------------------------------------------------------------

def _events(label: str, verbose: bool, seen: dict):
    """Log lines (and with -v every epoch) on stderr, prefixed with the run; the device line
    is kept in ``seen``."""
    from dl_engine.events import Events

    def sink(e: dict) -> None:
        kind = e.get("event")
        if kind == "log":
            message = str(e.get("message", ""))
            if "device: " in message and "device" not in seen:
                seen["device"] = message.split("device: ", 1)[1]
            mark = "warning: " if e.get("level") == "warning" else ""
            print(f"  [{label}] {mark}{e.get('message', '')}", file=sys.stderr, flush=True)
        elif kind == "metric" and verbose:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in e.items()
                              if k not in ("event",) and isinstance(v, (int, float)) and not isinstance(v, bool))
            trial = f"{e['trial']}: " if e.get("trial") else ""
            print(f"  [{label}] {trial}{shown}", file=sys.stderr, flush=True)
    return Events(sink=sink)


def child(a) -> dict:
    import importlib
    importlib.import_module("torch")  # before the clock starts, in every run alike
    from dl_engine.autodl.config import AutoDLConfig
    from dl_engine.autodl.run import run_autodl
    from dl_engine.train import TrainConfig
    from dl_engine.train.control import TrainControl
    from dl_engine.train.run import run_training

    budget = a.minutes * 60.0
    folder = os.path.join(a.out, a.child if a.child == "baseline" else f"autodl_{a.mode.lower()}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    out = {"run": a.child, "mode": a.mode, "budget_s": budget, "folder": folder}
    label = "baseline" if a.child == "baseline" else f"autodl {a.mode}"
    seen = {}
    events = _events(label, a.verbose, seen)
    try:
        if a.child == "baseline":
            control = TrainControl()
            t0 = time.time()
            control.deadline = t0 + budget
            result = run_training(TrainConfig(in_folder=a.export, out_folder=os.path.join(folder, "model"),
                                              device=a.device, validation_percentage=VALIDATION, seed=SEED,
                                              **BASELINE),
                                  events, control=control)
            out["wall_s"] = time.time() - t0
            if control.training_started:
                out["setup_s"] = control.training_started - t0  # data, model, batch size probe
            if control.training_ended:
                out["after_training_s"] = time.time() - control.training_ended  # validation + package
                if control.training_started:
                    out["training_s"] = control.training_ended - control.training_started
            hist = result.history
            out.update(dlpk=result.out_model_file, network="UnetClassifier", backbone=BASELINE["backbone"],
                       valid_miou=_num(result.metrics.get("miou")), trials=1, epochs=len(hist),
                       best_epoch=result.best_epoch + 1 if hist else None, batch_size=result.batch_size,
                       stop_reason=result.stop_reason or "max epochs")
        else:
            t0 = time.time()
            result = run_autodl(AutoDLConfig(in_data=a.export, out_model=os.path.join(folder, "best.dlpk"),
                                             total_time_limit=budget / 3600.0, autodl_mode=a.mode, device=a.device,
                                             validation_percentage=VALIDATION, seed=SEED),
                                events)
            out["wall_s"] = time.time() - t0
            best = result.best
            out.update(dlpk=result.out_model_file, network=best.get("network"), backbone=best.get("backbone"),
                       valid_miou=_num(best.get("value")), trials=len(result.trials), epochs=best.get("epochs"),
                       best_epoch=best.get("best_epoch"), batch_size=best.get("batch_size"),
                       stop_reason=best.get("status"), leaderboard=result.leaderboard,
                       leaderboard_rows=[{k: r.get(k) for k in ("rank", "phase", "network", "backbone", "learning_rate",
                                                                "batch_size", "augmentation", "value", "epochs",
                                                                "seconds", "status", "message")}
                                         for r in result.trials])
    except Exception as e:  # noqa: BLE001 - reported in the table, the other runs go on
        import traceback
        traceback.print_exc()
        out["wall_s"] = time.time() - t0 if "t0" in locals() else None
        out["error"] = f"{type(e).__name__}: {e}"
        out["device"] = seen.get("device")
        return out
    out["device"] = seen.get("device")
    if not out.get("dlpk") or not os.path.isfile(out["dlpk"]):
        out["error"] = f"no package at {out.get('dlpk')!r}"
        return out
    try:
        out["raster"] = evaluate(out["dlpk"], a.raster, a.footprints, a.device, os.path.join(folder, "classified.tif"))
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        out["error"] = f"evaluation: {type(e).__name__}: {e}"
    return out


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


# ---- the parent ---------------------------------------------------------------------------------

def in_child(a, run: str, mode: str = "") -> dict:
    if a.wait_idle:
        wait_idle(a.wait_idle)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", run, "--minutes", repr(a.minutes), "--device",
           a.device, "--out", a.out, "--export", a.export, "--raster", a.raster, "--footprints", a.footprints]
    if mode:
        cmd += ["--mode", mode]
    if a.verbose:
        cmd.append("-v")
    label = "baseline UNET RESNET34" if run == "baseline" else f"AutoDL {mode}"
    print(f"-- {label}: budget {a.minutes * 60:.0f} s", file=sys.stderr, flush=True)
    p, wall, others = run_measured(cmd, stdout=subprocess.PIPE, text=True)  # stderr: the run's log, as it goes
    lines = p.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        out = {"run": run, "mode": mode, "error": f"child exited {p.returncode} without a result"}
    out["process_s"] = wall  # the whole child: start, imports, run, evaluation
    out["others"] = others
    out["label"] = label
    return out


def _f(v, fmt: str, width: int) -> str:
    return f"{'-' if v is None else format(v, fmt):>{width}}"


def _ratio(a, b):
    return a / b if a is not None and b else None


def print_report(report: dict) -> None:
    """The table (also ``--reprint``: from the last run's JSON)."""
    runs, budget = report["runs"], report["args"]["minutes"] * 60.0
    print()
    print(f"device: {report.get('device')}; {report.get('chips')} chips")
    head = (f"{'model':24} {'network / backbone':28} {'wall s':>7} {'budget':>6} {'overrun':>7} {'trials':>6} "
            f"{'epochs':>6} {'valid mIoU':>10} {'raster IoU':>10} {'bldg px':>7} {'others':>6}")
    print(head)
    for r in runs:
        net = f"{r.get('network') or '-'} {r.get('backbone') or ''}".strip()
        wall = r.get("wall_s")
        over = None if wall is None else wall - r.get("budget_s", budget)
        iou, px = (r.get("raster") or {}).get("iou"), (r.get("raster") or {}).get("predicted_px")
        print(f"{r['label']:24} {net[:28]:28} {_f(wall, '.1f', 7)} {budget:6.0f} {_f(over, '+.1f', 7)} "
              f"{_f(r.get('trials'), 'd', 6)} {_f(r.get('epochs'), '', 6)} {_f(r.get('valid_miou'), '.4f', 10)} "
              f"{_f(iou, '.4f', 10)} {_f(px, 'd', 7)} {r['others']:6.2f}")
        if r.get("error"):
            print(f"    error: {r['error']}")
    truth = next((r["raster"] for r in runs if r.get("raster")), None)
    if truth:
        print(f"bldg px: pixels classified as building, of {truth['truth_px']} in the footprints")
    base = runs[0]
    base_iou = (base.get("raster") or {}).get("iou")
    for r in runs[1:]:
        iou = (r.get("raster") or {}).get("iou")
        vm, ri = _ratio(r.get("valid_miou"), base.get("valid_miou")), _ratio(iou, base_iou)
        print(f"ratio {r['label']} / baseline: validation mIoU {_f(vm, '.3f', 0).strip()}, "
              f"raster building IoU {_f(ri, '.3f', 0).strip()}")
    print("wall s: the run_training / run_autodl call (package included, imports and evaluation excluded); "
          "overrun: wall s - budget; epochs: of the best model; valid mIoU: at its best epoch on the same "
          "validation chips; raster IoU: building class on the whole raster vs the footprints; others: CPU cores "
          "other jobs used meanwhile (above ~0.3 the run was slowed down by them)")
    for r in runs[1:]:
        if r.get("leaderboard_rows"):
            print(f"\n{r['label']} leaderboard ({r.get('leaderboard')}):")
            print(f"  {'rank':>4} {'phase':8} {'network':18} {'backbone':9} {'lr':>8} {'batch':>5} {'aug':7} "
                  f"{'mIoU':>7} {'epochs':>6} {'seconds':>7} status")
            for row in r["leaderboard_rows"]:
                print(f"  {str(row['rank']):>4} {row['phase']:8} {row['network']:18} {row['backbone']:9} "
                      f"{str(row['learning_rate']):>8} {str(row['batch_size']):>5} {row['augmentation']:7} "
                      f"{str(row['value']):>7} {str(row['epochs']):>6} {str(row['seconds']):>7} {row['status']}"
                      + (f" ({row['message']})" if row.get("message") else ""))
    for r in runs:
        if r.get("after_training_s") is not None:
            print(f"\n{r['label']}: setup {_f(r.get('setup_s'), '.1f', 0)} s (data, model, batch size probe), "
                  f"training loop {_f(r.get('training_s'), '.1f', 0)} s, after the loop "
                  f"{r['after_training_s']:.1f} s (last validation, package); stop reason: {r.get('stop_reason')}; "
                  f"batch size {r.get('batch_size')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="time budget of each run (default 10)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda (training and inference)")
    ap.add_argument("--modes", default="BASIC,ADVANCED", help="AutoDL modes, comma separated")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (export cache, models, JSON report)")
    ap.add_argument("--data", default=None, help="folder with hag.tif and buildings.geojson "
                                                 "(default: tests/data/elevation)")
    ap.add_argument("--wait-idle", type=float, default=30.0,
                    help="before each run wait up to this many seconds for other jobs to leave the CPUs idle "
                         "(0: do not wait)")
    ap.add_argument("--reprint", action="store_true", help="print the table of the last run again (its JSON)")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print every epoch's metrics")
    ap.add_argument("--child", choices=("baseline", "autodl"), help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="", help=argparse.SUPPRESS)
    ap.add_argument("--export", help=argparse.SUPPRESS)
    ap.add_argument("--raster", help=argparse.SUPPRESS)
    ap.add_argument("--footprints", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    if a.child:
        print(json.dumps(child(a), default=str))
        return 0

    if a.reprint:
        with open(os.path.join(a.out, "autodl_bench.json")) as f:
            print_report(json.load(f))
        return 0
    if not a.minutes > 0:
        ap.error("--minutes must be above 0")
    modes = [m.strip().upper() for m in a.modes.split(",") if m.strip()]
    data = a.data or next((d for d in DATA_CANDIDATES if os.path.isfile(os.path.join(d, "hag.tif"))),
                          DATA_CANDIDATES[0])
    a.raster, a.footprints = os.path.join(data, "hag.tif"), os.path.join(data, "buildings.geojson")
    for path in (a.raster, a.footprints):
        if not os.path.isfile(path):
            ap.error(f"{path} not found (--data)")
    os.makedirs(a.out, exist_ok=True)
    t_all = time.perf_counter()
    a.export, chips, export_s = build_export(a.out, a.raster, a.footprints)
    print(f"data: {a.raster} + {os.path.basename(a.footprints)} -> {chips} Classified_Tiles chips of {TILE} px, "
          f"stride {STRIDE} ({'exported in %.1f s' % export_s if export_s is not None else 'cached'}): {a.export}")
    print(f"budget {a.minutes:g} min ({a.minutes * 60:.0f} s) per run; device {a.device}; validation {VALIDATION:g} %, "
          f"seed {SEED}; modes {', '.join(modes)}", flush=True)

    runs = [in_child(a, "baseline")] + [in_child(a, "autodl", m) for m in modes]

    device = next((r["device"] for r in runs if r.get("device")), None)
    report = {"args": {k: v for k, v in vars(a).items() if k not in ("child", "mode")}, "chips": chips,
              "device": device, "runs": runs}
    with open(os.path.join(a.out, "autodl_bench.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    print_report(report)
    print(f"total {time.perf_counter() - t_all:.0f} s; figures in {os.path.join(a.out, 'autodl_bench.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
